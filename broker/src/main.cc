// runneld: the Runnel broker daemon. Flags or a TOML config file (CLI11 reads both), one data
// directory, the native protocol on --port and HTTP on --http-port.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
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
#include "runnel/broker/server.h"
#include "runnel/common/units.h"

namespace {

using runnel::Status;

struct Flags {
  std::string data_dir = "./runnel-data";
  std::string bind = "127.0.0.1";
  int port = 7070;
  int http_port = 7071;
  bool no_http = false;
  int io_threads = 2;
  int worker_threads = 4;
  bool auto_create_topics = true;
  int default_partitions = 1;
  std::string retention = "7d";
  std::string retention_bytes = "-1";
  std::string max_message_bytes = "1048588";
  std::string dedup_window = "5m";
  int max_connections = 10'000;
  std::string max_frame_bytes = "64MiB";
  std::string max_inflight_per_connection = "64MiB";
  std::string max_inflight_total = "1GiB";
  std::string max_queued_bytes = "256MiB";
  std::string max_wait = "30s";
  std::string log_level = "info";
  std::string ready_file;
};

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "runneld: %s\n", message.c_str());
  std::exit(1);
}

int64_t Duration(const std::string& flag, const std::string& v) {
  auto r = runnel::ParseDurationMs(v);
  if (!r.ok()) Die("--" + flag + ": " + r.status().message());
  return *r;
}
int64_t Bytes(const std::string& flag, const std::string& v) {
  auto r = runnel::ParseBytes(v);
  if (!r.ok()) Die("--" + flag + ": " + r.status().message());
  return *r;
}

// Holds an exclusive lock on <data-dir>/runneld.lock for the process lifetime, so a second
// runneld on the same directory fails at once with the holder's pid.
int LockDataDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) Die("cannot create data directory " + dir + ": " + ec.message());
  const std::string path = dir + "/runneld.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
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

}  // namespace

int main(int argc, char** argv) {
  const auto t0 = std::chrono::steady_clock::now();
  Flags f;
  CLI::App app{"runneld: the Runnel message log broker"};
  app.set_config("--config", "", "TOML config file (keys are the long flag names)");
  app.add_option("--data-dir", f.data_dir, "Data directory")->capture_default_str();
  app.add_option("--bind", f.bind, "Address to listen on")->capture_default_str();
  app.add_option("--port", f.port, "Native protocol port (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--http-port", f.http_port, "HTTP port for /health, /metrics, /api/v1/stats")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_flag("--no-http", f.no_http, "Do not serve HTTP");
  app.add_option("--io-threads", f.io_threads, "Network threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--worker-threads", f.worker_threads, "Threads for reads and group operations")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--auto-create-topics", f.auto_create_topics,
                 "Create unknown topics on produce / metadata")
      ->capture_default_str();
  app.add_option("--default-partitions", f.default_partitions, "Partitions of auto-created topics")
      ->check(CLI::Range(1, 10'000))
      ->capture_default_str();
  app.add_option("--retention", f.retention, "Default retention.ms (e.g. 7d, -1 = forever)")
      ->capture_default_str();
  app.add_option("--retention-bytes", f.retention_bytes, "Default retention.bytes per partition")
      ->capture_default_str();
  app.add_option("--max-message-bytes", f.max_message_bytes, "Default max.message.bytes")
      ->capture_default_str();
  app.add_option("--dedup-window", f.dedup_window, "Default dedup.window.ms")
      ->capture_default_str();
  app.add_option("--max-connections", f.max_connections, "Connections beyond this are refused")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  app.add_option("--max-frame-bytes", f.max_frame_bytes, "Largest request frame")
      ->capture_default_str();
  app.add_option("--max-inflight-bytes-per-connection", f.max_inflight_per_connection,
                 "A connection stops reading beyond this many bytes in flight")
      ->capture_default_str();
  app.add_option("--max-inflight-bytes", f.max_inflight_total,
                 "All connections stop reading beyond this many bytes in flight")
      ->capture_default_str();
  app.add_option("--max-queued-bytes", f.max_queued_bytes,
                 "Committer queue bound; produce waits beyond it")
      ->capture_default_str();
  app.add_option("--max-wait", f.max_wait, "Longest long-poll a client may ask for")
      ->capture_default_str();
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error, critical, off")
      ->capture_default_str();
  app.add_option("--ready-file", f.ready_file,
                 "Write {\"port\":..,\"http_port\":..} here once listening (for scripts and tests)");
  CLI11_PARSE(app, argc, argv);

  SetupLogging(f.log_level);

  // Signals are taken synchronously by this thread; every thread started later inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  const int lock_fd = LockDataDir(f.data_dir);

  runnel::broker::BrokerOptions bo;
  bo.store.data_dir = f.data_dir;
  auto& tc = bo.store.default_topic_config;
  tc.retention_ms = Duration("retention", f.retention);
  tc.retention_bytes = Bytes("retention-bytes", f.retention_bytes);
  tc.max_message_bytes = static_cast<int32_t>(Bytes("max-message-bytes", f.max_message_bytes));
  tc.dedup_window_ms = Duration("dedup-window", f.dedup_window);
  if (Status s = tc.Validate(); !s.ok()) Die("invalid default topic config: " + s.message());
  bo.store.max_queued_bytes = static_cast<size_t>(Bytes("max-queued-bytes", f.max_queued_bytes));
  bo.auto_create_topics = f.auto_create_topics;
  bo.default_partitions = f.default_partitions;
  bo.worker_threads = f.worker_threads;
  bo.max_wait_ms = static_cast<int32_t>(Duration("max-wait", f.max_wait));

  auto broker = runnel::broker::Broker::Open(bo);
  if (!broker.ok()) {
    Die("cannot open data directory " + f.data_dir + ": " + broker.status().ToString());
  }

  runnel::broker::ServerOptions so;
  so.bind = f.bind;
  so.port = static_cast<uint16_t>(f.port);
  so.io_threads = f.io_threads;
  so.max_connections = static_cast<size_t>(f.max_connections);
  so.max_frame_bytes = static_cast<uint32_t>(Bytes("max-frame-bytes", f.max_frame_bytes));
  so.max_inflight_bytes_per_connection =
      static_cast<size_t>(Bytes("max-inflight-bytes-per-connection", f.max_inflight_per_connection));
  so.max_inflight_bytes_total = static_cast<size_t>(Bytes("max-inflight-bytes", f.max_inflight_total));
  auto server = runnel::broker::Server::Start(**broker, so);
  if (!server.ok()) {
    broker->reset();
    Die(server.status().message());
  }
  std::unique_ptr<runnel::broker::HttpServer> http;
  if (!f.no_http) {
    auto h = runnel::broker::HttpServer::Start(**broker, f.bind, static_cast<uint16_t>(f.http_port));
    if (!h.ok()) {
      (*server)->Stop();
      broker->reset();
      Die(h.status().message());
    }
    http = std::move(h).value();
  }
  const double startup_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("runneld listening on {}:{} (http {}), data dir {}, ready in {:.1f} ms", f.bind,
               (*server)->port(), http ? std::to_string(http->port()) : std::string("off"),
               f.data_dir, startup_ms);
  if (!f.ready_file.empty()) {
    const std::string tmp = f.ready_file + ".tmp";
    {
      std::ofstream out(tmp);
      out << "{\"port\":" << (*server)->port() << ",\"http_port\":" << (http ? http->port() : 0)
          << ",\"pid\":" << ::getpid() << ",\"startup_ms\":" << startup_ms << "}\n";
    }
    std::filesystem::rename(tmp, f.ready_file);
  }

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("{}: shutting down (finishing requests in flight)", sig == SIGINT ? "SIGINT" : "SIGTERM");
  const auto s0 = std::chrono::steady_clock::now();
  if (http) http->Stop();
  (*server)->Stop();
  broker->reset();  // flushes and closes RocksDB
  ::close(lock_fd);
  spdlog::info("runneld stopped cleanly in {:.0f} ms",
               std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count());
  return 0;
}
