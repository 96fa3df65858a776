// runneld: the Runnel broker daemon. Flags or a TOML config file (CLI11 reads both), one data
// directory, the native protocol on --port and HTTP on --http-port.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "runnel/broker/broker.h"
#include "runnel/broker/config.h"
#include "runnel/broker/auth.h"
#include "runnel/broker/server.h"
#include "runnel/kafka/frontend.h"
#include "runnel/native/frontend.h"

namespace {


[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "runneld: %s\n", message.c_str());
  std::exit(1);
}

// Warns when other users may read `path` (records, offsets, tokens): runneld never widens or
// narrows an operator's existing permissions, it only says so.
void WarnIfOthersCanRead(const std::string& path, const char* what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || (st.st_mode & 077) == 0) return;
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  spdlog::warn("{} {} is open to other users (mode {}): chmod {} {}", what, path, mode,
               S_ISDIR(st.st_mode) ? "700" : "600", path);
}

// Holds an exclusive lock on <data-dir>/runneld.lock for the process lifetime, so a second
// runneld on the same directory fails at once with the holder's pid.
int LockDataDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);  // 0700 under the umask set in main
  if (ec) Die("cannot create data directory " + dir + ": " + ec.message());
  WarnIfOthersCanRead(dir, "data directory");
  const std::string path = dir + "/runneld.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) Die("data directory " + dir + " is unusable: cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    Die("data directory " + dir + " is locked by another runneld (pid " + pid + ")");
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) < 0) {
    Die("data directory " + dir + " is unusable: cannot write " + path);
  }
  return fd;
}

void SetupLogging(const std::string& level) {
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  for (const char* name : {"runneld", "storage"}) {
    auto logger = std::make_shared<spdlog::logger>(name, sink);
    spdlog::register_logger(logger);
  }
  spdlog::set_default_logger(spdlog::get("runneld"));
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") Die("--log-level: unknown level '" + level + "'");
  spdlog::set_level(lvl);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
}

// Every connection takes a descriptor and RocksDB keeps files open: raise the soft limit to the
// hard one, and say so when even that is short of --max-connections.
void RaiseFileLimit(size_t max_connections) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    const rlim_t before = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &rl) == 0) {
      spdlog::debug("open files limit raised from {} to {}", before, rl.rlim_cur);
    } else {
      rl.rlim_cur = before;
    }
  }
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < max_connections + 1000) {
    spdlog::warn("the open files limit ({}) is below --max-connections + 1000: connections beyond "
                 "about {} will be refused (raise it with ulimit -n)",
                 rl.rlim_cur, rl.rlim_cur > 1000 ? rl.rlim_cur - 1000 : 0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const auto t0 = std::chrono::steady_clock::now();
  runnel::broker::DaemonFlags f;
  CLI::App app{"runneld: the Runnel message log broker"};
  runnel::broker::AddDaemonFlags(app, &f);
  CLI11_PARSE(app, argc, argv);

  auto config = runnel::broker::ToDaemonConfig(f);
  if (!config.ok()) Die(config.status().message());
  SetupLogging(f.log_level);
  RaiseFileLimit(config->server.max_connections);
  // Fetch answers are buffers of up to a few MiB, made and freed all the time. glibc serves
  // blocks above 128 KiB with mmap and gives them back at free, so each answer paid its page
  // faults again (a quarter of a fetch's time). Keep them in the heap; in-flight bytes are
  // bounded by the connection budgets, so what the heap keeps is bounded too.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);

  // Signals are taken synchronously by this thread; every thread started later inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  // Records, offsets and tokens are nobody else's business: every directory and file runneld
  // creates (RocksDB's included) is 0700 / 0600.
  ::umask(077);
  if (!f.auth_tokens.empty()) WarnIfOthersCanRead(f.auth_tokens, "token file");
  const int lock_fd = LockDataDir(f.data_dir);

  const runnel::broker::BrokerOptions& bo = config->broker;
  auto broker = runnel::broker::Broker::Open(bo);
  if (!broker.ok()) {
    Die("cannot open data directory " + f.data_dir + ": " + broker.status().ToString());
  }

  const runnel::broker::ServerOptions& so = config->server;
  runnel::native::NativeFrontEnd native(**broker);
  auto server = runnel::broker::Server::Start(**broker, native, so);
  if (!server.ok()) {
    broker->reset();
    Die(server.status().message());
  }
  // The Kafka listener: same settings as the native port (TLS included) on its own port. A taken
  // default port is a warning, so a machine that runs Kafka too still starts runneld.
  std::unique_ptr<runnel::kafka::KafkaFrontEnd> kafka;
  std::unique_ptr<runnel::broker::Server> kafka_server;
  if (config->kafka.enabled) {
    runnel::kafka::KafkaOptions ko;
    ko.advertised_host = config->kafka.advertised_host;
    ko.advertised_port = config->kafka.port;
    ko.group_initial_rebalance_delay_ms = config->kafka.group_initial_delay_ms;
    ko.auto_create_topics = config->kafka.auto_create_topics;
    kafka = std::make_unique<runnel::kafka::KafkaFrontEnd>(**broker, ko);
    runnel::broker::ServerOptions kso = so;
    kso.port = config->kafka.port;
    auto ks = runnel::broker::Server::Start(**broker, *kafka, kso);
    if (ks.ok()) {
      kafka_server = std::move(ks).value();
      kafka->SetAdvertisedPort(kafka_server->port());
    } else if (config->kafka.explicit_port) {
      (*server)->Stop();
      broker->reset();
      Die(ks.status().message());
    } else {
      spdlog::warn("{}; running without the Kafka listener (--kafka-port chooses another port, 0 "
                   "turns it off)", ks.status().message());
    }
  }
  std::unique_ptr<runnel::broker::HttpServer> http;
  if (!f.no_http) {
    auto h = runnel::broker::HttpServer::Start(**broker, config->http);
    if (!h.ok()) {
      if (kafka_server) kafka_server->Stop();
      (*server)->Stop();
      broker->reset();
      Die(h.status().message());
    }
    http = std::move(h).value();
  }
  if (!bo.auth && f.bind != "127.0.0.1" && f.bind != "::1" && f.bind != "localhost") {
    spdlog::warn("listening on {} without --auth-tokens: anyone who can reach the port may read, "
                 "write and delete every topic", f.bind);
  }
  if (bo.auth) {
    spdlog::info("access control on: {} tokens from {}{}", bo.auth->size(), f.auth_tokens,
                 so.tls_cert_file.empty() ? " (without TLS tokens cross the network in clear)" : "");
  }
  const double startup_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("runneld listening on {}:{} (kafka {}, http {}), data dir {}, ready in {:.1f} ms",
               f.bind, (*server)->port(),
               kafka_server ? std::to_string(kafka_server->port()) : std::string("off"),
               http ? std::to_string(http->port()) : std::string("off"), f.data_dir, startup_ms);
  if (!f.ready_file.empty()) {
    const std::string tmp = f.ready_file + ".tmp";
    {
      std::ofstream out(tmp);
      out << "{\"port\":" << (*server)->port() << ",\"http_port\":" << (http ? http->port() : 0)
          << ",\"kafka_port\":" << (kafka_server ? kafka_server->port() : 0)
          << ",\"pid\":" << ::getpid() << ",\"startup_ms\":" << startup_ms << "}\n";
    }
    std::filesystem::rename(tmp, f.ready_file);
  }

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("{}: shutting down (finishing requests in flight)", sig == SIGINT ? "SIGINT" : "SIGTERM");
  const auto s0 = std::chrono::steady_clock::now();
  if (http) http->Stop();
  if (kafka_server) kafka_server->Stop();
  (*server)->Stop();
  kafka_server.reset();
  kafka.reset();    // its group timer thread uses the broker: stop it first
  broker->reset();  // flushes and closes RocksDB
  ::close(lock_fd);
  spdlog::info("runneld stopped cleanly in {:.0f} ms",
               std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count());
  return 0;
}
