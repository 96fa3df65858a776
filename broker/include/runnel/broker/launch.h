// Starting runneld as a child process and waiting until it listens: shared by the integration
// tests and the benchmarks, which measure the real daemon. POSIX only; depends on common only.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "runnel/common/result.h"

namespace runnel::broker {

// Forks and execs args[0] with `args`, stdout and stderr appended to `log_path`. Returns the pid.
pid_t SpawnProcess(const std::vector<std::string>& args, const std::string& log_path);

struct ProcessOutput {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out;
  std::string err;
};
// Runs args[0] with `args` to completion, feeding `input` on stdin; captures stdout and stderr.
ProcessOutput RunProcess(const std::vector<std::string>& args, const std::string& input = {},
                         const std::vector<std::string>& env = {});

struct RunneldReady {
  uint16_t port = 0;
  uint16_t http_port = 0;
  uint16_t kafka_port = 0;  // 0: no Kafka listener
};
// Waits until the runneld `pid` wrote `ready_file` (its --ready-file). Fails if the process
// exited first or `timeout_ms` passed.
Result<RunneldReady> WaitForReady(pid_t pid, const std::string& ready_file, int64_t timeout_ms);

// runneld as a child process in a directory of its own: data in <dir>/data, output appended to
// <dir>/runneld.log, its ready file at <dir>/ready.json. The first Start binds a free loopback
// port (unless `port` is set); later Starts reuse it, so clients reconnect to the same address
// after a restart. The destructor stops a running process with SIGTERM.
struct RunneldOptions {
  std::string binary;  // path of runneld
  std::string dir;     // created if missing
  uint16_t port = 0;   // 0: any free port on the first start
  bool http = true;    // false: --no-http
  std::string log_level = "warn";
  std::vector<std::string> extra_args;
  int64_t ready_timeout_ms = 20'000;
  bool kafka = false;  // true: a Kafka listener on a free port (then the same one on restarts)
};

class RunneldProcess {
 public:
  explicit RunneldProcess(RunneldOptions options);
  ~RunneldProcess() { Stop(SIGTERM); }
  RunneldProcess(const RunneldProcess&) = delete;
  RunneldProcess& operator=(const RunneldProcess&) = delete;

  // Spawns runneld and waits until it listens. On failure the process is killed and the status
  // carries the end of its log.
  Status Start();
  // Signals the process (SIGTERM: graceful; SIGKILL: a crash) and waits; returns the wait status
  // (0 when it was not running).
  int Stop(int signal = SIGTERM);
  bool running() const { return pid_ > 0; }

  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  uint16_t http_port() const { return http_port_; }
  uint16_t kafka_port() const { return kafka_port_; }
  std::string data_dir() const { return options_.dir + "/data"; }
  std::string log_path() const { return options_.dir + "/runneld.log"; }
  std::string Log() const;
  const RunneldOptions& options() const { return options_; }

 private:
  RunneldOptions options_;
  pid_t pid_ = -1;
  uint16_t port_;
  uint16_t http_port_ = 0;
  uint16_t kafka_port_ = 0;
};

// Signals `pid` and waits for it; returns the wait status (0 if pid <= 0).
int StopProcess(pid_t pid, int signal);

// The resident set size of `pid` in KiB (-1 if unknown).
int64_t ProcessRssKiB(pid_t pid);

// The whole content of a small text file ("" if unreadable).
std::string ReadTextFile(const std::string& path);

}  // namespace runnel::broker
