// Crash-test harness: runs a child program that reports over a pipe, SIGKILLs it at a random
// moment, and returns everything it wrote before dying.
#pragma once

#include <string>
#include <vector>

namespace runnel::testing {

struct KilledChild {
  std::string output;              // every byte the child wrote to its report pipe
  bool killed_by_sigkill = false;  // false: it exited or crashed on its own (a test failure)
  int wait_status = 0;
};

// Starts `program` with `args` plus the report pipe's file descriptor as its last argument, lets
// it run for `run_ms`, SIGKILLs it, waits for it and drains the pipe. With `after_bytes`, the
// `run_ms` start only once the child reported that many bytes (so every round kills a child
// that was doing its work, however slow the machine), or after 120 s without them. Call only
// from a process with no other threads running (it forks).
KilledChild RunAndKill(const std::string& program, const std::vector<std::string>& args,
                       int run_ms, size_t after_bytes = 0);

}  // namespace runnel::testing
