// A broker for integration tests: a real runneld process on a free loopback port in a temp dir
// (RUNNEL_BROKER_MODE unset or "tcp"), or the broker core in-process ("embedded"). The same
// suite runs against both.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "runnel/broker/embedded.h"
#include "runnel/client/connection.h"
#include "runnel/testing/temp_dir.h"

namespace runnel::testing {

inline bool EmbeddedMode() {
  const char* m = std::getenv("RUNNEL_BROKER_MODE");
  return m && std::string(m) == "embedded";
}

class TestBroker {
 public:
  explicit TestBroker(std::vector<std::string> extra_args = {})
      : extra_args_(std::move(extra_args)) {
    Start();
  }
  ~TestBroker() { Stop(); }

  bool embedded() const { return EmbeddedMode(); }
  const std::string& data_dir() const { return data_dir_; }
  uint16_t port() const { return port_; }
  uint16_t http_port() const { return http_port_; }
  pid_t pid() const { return pid_; }

  std::shared_ptr<client::Connection> Connect() {
    if (embedded()) return embedded_->Connect();
    client::TcpOptions o;
    o.port = port_;
    return client::ConnectTcp(o);
  }

  void Start() {
    if (embedded()) {
      broker::BrokerOptions o;
      o.store.data_dir = data_dir_;
      for (const auto& a : extra_args_)
        if (a == "--auto-create-topics=false") o.auto_create_topics = false;
      auto b = broker::EmbeddedBroker::Open(o);
      if (!b.ok()) throw std::runtime_error(b.status().ToString());
      embedded_ = std::move(b).value();
      return;
    }
    const std::string ready = dir_.Sub("ready.json");
    ::unlink(ready.c_str());
    std::vector<std::string> args = {RUNNEL_RUNNELD, "--data-dir", data_dir_, "--port",
                                     std::to_string(port_), "--http-port", "0", "--ready-file",
                                     ready, "--log-level", "warn"};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    pid_ = Spawn(args, dir_.Sub("runneld.log"));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream in(ready);
      std::stringstream ss;
      ss << in.rdbuf();
      const std::string s = ss.str();
      if (s.find('}') != std::string::npos) {
        port_ = static_cast<uint16_t>(Field(s, "\"port\":"));
        http_port_ = static_cast<uint16_t>(Field(s, "\"http_port\":"));
        return;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("runneld exited at start: " + Log());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    throw std::runtime_error("runneld did not become ready: " + Log());
  }

  // Graceful stop (SIGTERM) and wait; returns the exit status.
  int Stop() {
    if (embedded()) {
      embedded_.reset();
      return 0;
    }
    if (pid_ <= 0) return 0;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  void Restart() {
    Stop();
    Start();
  }

  std::string Log() const {
    std::ifstream in(dir_.Sub("runneld.log"));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // Runs runneld with `args` to completion; returns (exit code, stderr).
  static std::pair<int, std::string> RunToExit(const std::vector<std::string>& args,
                                               const std::string& log) {
    std::vector<std::string> full = {RUNNEL_RUNNELD};
    full.insert(full.end(), args.begin(), args.end());
    const pid_t pid = Spawn(full, log);
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ss.str()};
  }

 private:
  static pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      FILE* f = std::fopen(log.c_str(), "a");
      if (f) {
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

  static long Field(const std::string& json, const std::string& key) {
    const size_t at = json.find(key);
    return at == std::string::npos ? 0 : std::strtol(json.c_str() + at + key.size(), nullptr, 10);
  }

  std::vector<std::string> extra_args_;
  TempDir dir_;
  std::string data_dir_ = dir_.Sub("data");
  uint16_t port_ = 0;
  uint16_t http_port_ = 0;
  pid_t pid_ = -1;
  std::unique_ptr<broker::EmbeddedBroker> embedded_;
};

}  // namespace runnel::testing
