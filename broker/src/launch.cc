#include "runnel/broker/launch.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

namespace runnel::broker {

pid_t SpawnProcess(const std::vector<std::string>& args, const std::string& log_path) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (FILE* f = std::fopen(log_path.c_str(), "a")) {
      ::dup2(fileno(f), 1);
      ::dup2(fileno(f), 2);
    }
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::_Exit(127);
  }
  return pid;
}

std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<RunneldReady> WaitForReady(pid_t pid, const std::string& ready_file, int64_t timeout_ms) {
  auto field = [](const std::string& json, const std::string& key) {
    const size_t at = json.find(key);
    return at == std::string::npos ? 0 : std::strtol(json.c_str() + at + key.size(), nullptr, 10);
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    // runneld writes the file under a temporary name and renames it: it is whole or absent.
    const std::string s = ReadTextFile(ready_file);
    if (s.find('}') != std::string::npos) {
      return RunneldReady{static_cast<uint16_t>(field(s, "\"port\":")),
                          static_cast<uint16_t>(field(s, "\"http_port\":"))};
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return Status::IOError("runneld exited before listening (status " + std::to_string(status) +
                             ")");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  return Status::Timeout("runneld did not start listening within " + std::to_string(timeout_ms) +
                         " ms");
}

int StopProcess(pid_t pid, int signal) {
  if (pid <= 0) return 0;
  ::kill(pid, signal);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

int64_t ProcessRssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

}  // namespace runnel::broker
