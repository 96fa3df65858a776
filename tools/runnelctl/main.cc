// runnelctl: the admin CLI. Topics, produce/consume, groups, pending entries, dead letters,
// record status, broker stats, and an offline dump and verify of a data directory. See
// tools/README.md.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>

#include "ctl.h"

namespace runnel::ctl {
namespace {

// Bash completion from the command tree: each command path completes to its subcommands and
// flags.
std::string CompletionScript(CLI::App& root) {
  std::map<std::string, std::pair<std::string, std::string>> paths;  // path -> (subs, flags)
  std::function<void(CLI::App*, const std::string&)> walk = [&](CLI::App* app, const std::string& path) {
    std::string subs, flags;
    for (CLI::App* sub : app->get_subcommands({})) {
      subs += (subs.empty() ? "" : " ") + sub->get_name();
      walk(sub, path.empty() ? sub->get_name() : path + " " + sub->get_name());
    }
    for (const CLI::Option* o : app->get_options({})) {
      for (const auto& l : o->get_lnames()) flags += " --" + l;
      for (const auto& s : o->get_snames()) flags += " -" + s;
    }
    paths[path] = {subs, flags};
  };
  walk(&root, "");
  std::string out =
      "# bash completion for runnelctl: source it, or install it with\n"
      "#   runnelctl completion bash > /etc/bash_completion.d/runnelctl\n"
      "_runnelctl_subs() {\n  case \"$1\" in\n";
  for (const auto& [path, sf] : paths) out += "    \"" + path + "\") echo \"" + sf.first + "\" ;;\n";
  out += "  esac\n}\n_runnelctl_words() {\n  case \"$1\" in\n";
  for (const auto& [path, sf] : paths)
    out += "    \"" + path + "\") echo \"" + sf.first + sf.second + "\" ;;\n";
  out +=
      "  esac\n}\n"
      "_runnelctl() {\n"
      "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" path=\"\" w i\n"
      "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
      "    w=\"${COMP_WORDS[i]}\"\n"
      "    case \" $(_runnelctl_subs \"$path\") \" in *\" $w \"*) path=\"${path:+$path }$w\" ;; esac\n"
      "  done\n"
      "  COMPREPLY=($(compgen -W \"$(_runnelctl_words \"$path\")\" -- \"$cur\"))\n"
      "}\n"
      "complete -F _runnelctl runnelctl\n";
  return out;
}

}  // namespace

void AddCompletionCommand(CLI::App& app) {
  auto shell = std::make_shared<std::string>();
  CLI::App* completion = app.add_subcommand("completion", "Print a shell completion script");
  completion->add_option("shell", *shell, "Shell (bash)")->required()->check(CLI::IsMember({"bash"}));
  // The callback owns `shell`: CLI11 writes the parsed value into it.
  completion->callback([&app, shell] { std::fputs(CompletionScript(app).c_str(), stdout); });
}

int Main(int argc, char** argv) {
  Context ctx;
  CLI::App app{"runnelctl: the Runnel admin CLI"};
  app.name("runnelctl");
  app.require_subcommand(1);
  app.fallthrough();  // global flags may follow the subcommand: runnelctl topic list --json
  if (const char* env = std::getenv("RUNNEL_BROKER"); env && *env) ctx.broker = env;
  app.add_option("--broker,-b", ctx.broker, "Broker host:port (env RUNNEL_BROKER)")
      ->capture_default_str();
  app.add_option("--token", ctx.token,
                 "Access token for a broker run with --auth-tokens (env RUNNEL_TOKEN)");
  app.add_option("--tls-ca", ctx.tls_ca,
                 "Speak TLS, trusting this PEM CA file (env RUNNEL_TLS_CA; or a tls:// "
                 "--broker for the system's trust store)");
  app.add_flag("--json", ctx.json, "Print one JSON document on stdout");
  app.add_option("--timeout", ctx.timeout, "Request timeout (5s, 1m)")->capture_default_str();
  std::string color = "auto";
  app.add_option("--color", color, "auto | always | never (auto: on a terminal, unless NO_COLOR)")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
  app.parse_complete_callback([&] {
    ctx.color = color == "always" ? ColorMode::kAlways : color == "never" ? ColorMode::kNever : ColorMode::kAuto;
    ctx.ParseTimeout();  // a bad --timeout is a usage error before anything runs
  });
  AddTopicCommands(app, ctx);
  AddDataCommands(app, ctx);
  AddGroupCommands(app, ctx);
  AddBrokerCommands(app, ctx);
  AddBackupCommands(app, ctx);
  AddVerifyCommands(app, ctx);
  AddCompletionCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "runnelctl: %s (see --help)\n", e.what());
    return kExitUsage;
  } catch (const CommandError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "runnelctl: %s\n", e.what());
    return e.code;
  }
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace runnel::ctl

int main(int argc, char** argv) { return runnel::ctl::Main(argc, argv); }
