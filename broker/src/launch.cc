#include "runnel/broker/launch.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
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

ProcessOutput RunProcess(const std::vector<std::string>& args, const std::string& input,
                         const std::vector<std::string>& env) {
  ::signal(SIGPIPE, SIG_IGN);  // a child that exits without reading stdin must not kill us
  int in[2], out[2], err[2];
  if (::pipe(in) != 0 || ::pipe(out) != 0 || ::pipe(err) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) ::close(fd);
    for (const auto& kv : env) ::putenv(const_cast<char*>(kv.c_str()));
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::_Exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  // stdin is written from its own thread so a child that prints before reading cannot deadlock.
  std::thread writer([fd = in[1], &input] {
    size_t off = 0;
    while (off < input.size()) {
      const ssize_t n = ::write(fd, input.data() + off, input.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::close(fd);
  });
  ProcessOutput r;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  writer.join();
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
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
                          static_cast<uint16_t>(field(s, "\"http_port\":")),
                          static_cast<uint16_t>(field(s, "\"kafka_port\":"))};
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

RunneldProcess::RunneldProcess(RunneldOptions options)
    : options_(std::move(options)), port_(options_.port) {}

std::string RunneldProcess::Log() const { return ReadTextFile(log_path()); }

Status RunneldProcess::Start() {
  if (pid_ > 0) return Status::Busy("runneld is already running");
  std::error_code ec;
  std::filesystem::create_directories(options_.dir, ec);
  if (ec) return Status::IOError("cannot create " + options_.dir + ": " + ec.message());
  const std::string ready = options_.dir + "/ready.json";
  ::unlink(ready.c_str());
  std::vector<std::string> args = {options_.binary, "--data-dir", data_dir(), "--port",
                                   std::to_string(port_), "--ready-file", ready,
                                   "--log-level", options_.log_level};
  if (options_.http) {
    args.insert(args.end(), {"--http-port", std::to_string(http_port_)});
  } else {
    args.push_back("--no-http");
  }
  // Kafka: off unless asked for; the first start takes any free port, later ones the same.
  args.insert(args.end(), {"--kafka-port", !options_.kafka ? std::string("0")
                                           : kafka_port_ != 0 ? std::to_string(kafka_port_)
                                                               : std::string("any")});
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  pid_ = SpawnProcess(args, log_path());
  auto r = WaitForReady(pid_, ready, options_.ready_timeout_ms);
  if (!r.ok()) {
    StopProcess(pid_, SIGKILL);
    pid_ = -1;
    std::string log = Log();
    if (log.size() > 4096) log = "..." + log.substr(log.size() - 4096);
    return r.status().WithContext("runneld in " + options_.dir + " (log: " + log + ")");
  }
  port_ = r->port;
  http_port_ = r->http_port;
  kafka_port_ = r->kafka_port;
  return Status::OK();
}

int RunneldProcess::Stop(int signal) {
  const int status = StopProcess(pid_, signal);
  pid_ = -1;
  return status;
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
