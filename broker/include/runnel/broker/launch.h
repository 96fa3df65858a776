// Starting runneld as a child process and waiting until it listens: shared by the integration
// tests and the benchmarks, which measure the real daemon. POSIX only; depends on common only.
#pragma once

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
};
// Waits until the runneld `pid` wrote `ready_file` (its --ready-file). Fails if the process
// exited first or `timeout_ms` passed.
Result<RunneldReady> WaitForReady(pid_t pid, const std::string& ready_file, int64_t timeout_ms);

// Signals `pid` and waits for it; returns the wait status (0 if pid <= 0).
int StopProcess(pid_t pid, int signal);

// The resident set size of `pid` in KiB (-1 if unknown).
int64_t ProcessRssKiB(pid_t pid);

// The whole content of a small text file ("" if unreadable).
std::string ReadTextFile(const std::string& path);

}  // namespace runnel::broker
