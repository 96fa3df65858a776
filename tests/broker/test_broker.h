// A broker for integration tests: a real runneld process on a free loopback port in a temp dir
// (RUNNEL_BROKER_MODE unset or "tcp"), or the broker core in-process ("embedded"). The same
// suite runs against both.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "runnel/broker/embedded.h"
#include "runnel/broker/launch.h"
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
      : extra_args_(std::move(extra_args)),
        process_(broker::RunneldOptions{RUNNEL_RUNNELD, dir_.path(), 0, true, "warn", extra_args_}) {
    Start();
  }
  ~TestBroker() { Stop(); }

  bool embedded() const { return EmbeddedMode(); }
  const std::string& data_dir() const { return data_dir_; }
  uint16_t port() const { return process_.port(); }
  uint16_t http_port() const { return process_.http_port(); }
  pid_t pid() const { return process_.pid(); }

  std::shared_ptr<client::Connection> Connect() {
    if (embedded()) return embedded_->Connect();
    client::TcpOptions o;
    o.port = port();
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
    // The same port on every start: clients reconnect to it after a restart.
    if (Status s = process_.Start(); !s.ok()) throw std::runtime_error(s.ToString());
  }

  // Graceful stop (SIGTERM) and wait; returns the exit status.
  int Stop() {
    if (embedded()) {
      embedded_.reset();
      return 0;
    }
    return process_.Stop(SIGTERM);
  }

  void Kill() { process_.Stop(SIGKILL); }

  void Restart() {
    Stop();
    Start();
  }

  std::string Log() const { return process_.Log(); }

  // Runs runneld with `args` to completion; returns (exit code, its output).
  static std::pair<int, std::string> RunToExit(const std::vector<std::string>& args) {
    std::vector<std::string> full = {RUNNEL_RUNNELD};
    full.insert(full.end(), args.begin(), args.end());
    const broker::ProcessOutput r = broker::RunProcess(full);
    return {r.exit_code, r.out + r.err};
  }

 private:
  std::vector<std::string> extra_args_;
  TempDir dir_;
  std::string data_dir_ = dir_.Sub("data");
  broker::RunneldProcess process_;
  std::unique_ptr<broker::EmbeddedBroker> embedded_;
};

}  // namespace runnel::testing
