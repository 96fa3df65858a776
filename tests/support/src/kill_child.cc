// RunAndKill: fork + exec, read the report pipe while the child runs, SIGKILL, drain.
#include "runnel/testing/kill_child.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <thread>

namespace runnel::testing {

KilledChild RunAndKill(const std::string& program, const std::vector<std::string>& args,
                       int run_ms, size_t after_bytes) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  std::vector<std::string> argv_storage = args;
  argv_storage.insert(argv_storage.begin(), program);
  argv_storage.push_back(std::to_string(fds[1]));
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    close(fds[0]);
    std::vector<char*> argv;
    for (std::string& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(program.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  KilledChild result;
  char chunk[65536];
  auto drain = [&] {
    ssize_t n;
    while ((n = read(fds[0], chunk, sizeof chunk)) > 0)
      result.output.append(chunk, static_cast<size_t>(n));
    return n;
  };
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (result.output.size() < after_bytes && std::chrono::steady_clock::now() < give_up) {
    drain();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(run_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    drain();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &result.wait_status, 0);
  result.killed_by_sigkill =
      WIFSIGNALED(result.wait_status) && WTERMSIG(result.wait_status) == SIGKILL;
  fcntl(fds[0], F_SETFL, 0);
  while (drain() > 0) {
  }
  close(fds[0]);
  return result;
}

}  // namespace runnel::testing
