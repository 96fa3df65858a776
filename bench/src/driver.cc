#include "runnel/bench/driver.h"

#include <unistd.h>

#include <cstdlib>
#include <sstream>

namespace runnel::bench {
namespace {

// The path of `program`: itself when it names a path, else the first match on $PATH.
Result<std::string> FindProgram(const std::string& program, const std::string& flag) {
  if (program.find('/') != std::string::npos) {
    if (::access(program.c_str(), X_OK) == 0) return program;
    return Status::NotFound(program + " is not an executable file (" + flag + ")");
  }
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return Status::NotFound(program + " not found on PATH (install it, or pass " + flag + ")");
}

}  // namespace

Result<std::unique_ptr<Driver>> MakeDriver(const std::string& target, const TargetOptions& options) {
  TargetOptions o = options;
  if (target == "runnel" || target == "runnel-embedded") {
    const bool embedded = target == "runnel-embedded";
    if (!embedded && o.broker.empty()) {
      auto path = FindProgram(o.runneld, "--runneld");
      if (!path.ok()) return path.status();
      o.runneld = *path;
    }
    return MakeRunnelDriver(o, embedded);
  }
  if (target == "redis" || target.starts_with("redis:")) {
    std::string policy = target == "redis" ? "" : target.substr(6);
    if (!policy.empty() && policy != "always" && policy != "everysec" && policy != "no")
      return Status::InvalidArgument("redis fsync policy must be always, everysec or no, not '" +
                                     policy + "'");
    if (o.redis_url.empty()) {
      auto path = FindProgram(o.redis_server, "--redis-server");
      if (!path.ok()) return path.status();
      o.redis_server = *path;
    } else if (!policy.empty()) {
      return Status::InvalidArgument(
          "with --redis the server's own fsync policy applies; name the target plain 'redis'");
    }
    return MakeRedisDriver(o, policy);
  }
  if (target == "kafka" || target == "kafka-mock") {
    if (target == "kafka" && o.kafka.empty())
      return Status::InvalidArgument("target kafka needs --kafka host:port (a running broker)");
    return MakeKafkaDriver(o, target == "kafka-mock");
  }
  return Status::InvalidArgument(
      "unknown target '" + target +
      "' (runnel, runnel-embedded, redis, redis:always, redis:everysec, redis:no, kafka, "
      "kafka-mock)");
}

}  // namespace runnel::bench
