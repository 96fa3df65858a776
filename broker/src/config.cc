#include "runnel/broker/config.h"

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdlib>
#include <limits>

#include "runnel/broker/auth.h"
#include "runnel/common/units.h"

namespace runnel::broker {

void AddDaemonFlags(CLI::App& app, DaemonFlags* f) {
  app.set_config("--config", "", "TOML config file (keys are the long flag names)");
  app.add_option("--data-dir", f->data_dir, "Data directory")->capture_default_str();
  app.add_option("--bind", f->bind, "Address to listen on")->capture_default_str();
  app.add_option("--port", f->port, "Native protocol port (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--http-port", f->http_port, "HTTP port for /health, /metrics, /api/v1/stats")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_flag("--no-http", f->no_http, "Do not serve HTTP");
  app.add_option("--kafka-port", f->kafka_port,
                 "Kafka protocol port (0: off; any: a free port, reported in --ready-file)")
      ->each([f](const std::string&) { f->kafka_port_explicit = true; })
      ->capture_default_str();
  app.add_option("--kafka-advertised-host", f->kafka_advertised_host,
                 "Host that Kafka Metadata tells clients to connect to (default: the --bind "
                 "address, or this machine's host name when binding a wildcard address)");
  app.add_option("--kafka-group-initial-delay", f->kafka_group_initial_delay,
                 "How long the first rebalance of an empty Kafka consumer group waits for more "
                 "members (Kafka's group.initial.rebalance.delay.ms; 0: none)")
      ->capture_default_str();
  app.add_option("--io-threads", f->io_threads, "Network threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--worker-threads", f->worker_threads, "Threads for reads and group operations")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--auto-create-topics", f->auto_create_topics,
                 "Create unknown topics on produce / metadata")
      ->capture_default_str();
  app.add_option("--kafka-auto-create-topics", f->kafka_auto_create_topics,
                 "Kafka clients may create unknown topics: Metadata when the client allows it "
                 "(auto.create.topics.enable), and Produce (needs --auto-create-topics too)")
      ->capture_default_str();
  app.add_option("--max-topics", f->max_topics,
                 "Creating a topic (explicitly or by auto-creation) beyond this many fails")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  app.add_option("--default-partitions", f->default_partitions, "Partitions of auto-created topics")
      ->check(CLI::Range(1, 10'000))
      ->capture_default_str();
  app.add_option("--retention", f->retention, "Default retention.ms (e.g. 7d, -1 = forever)")
      ->capture_default_str();
  app.add_option("--retention-bytes", f->retention_bytes, "Default retention.bytes per partition")
      ->capture_default_str();
  app.add_option("--retention-check-interval", f->retention_check_interval,
                 "How often retention trims logs (0: never in the background)")
      ->capture_default_str();
  app.add_option("--max-message-bytes", f->max_message_bytes, "Default max.message.bytes")
      ->capture_default_str();
  app.add_option("--dedup-window", f->dedup_window, "Default dedup.window.ms")
      ->capture_default_str();
  app.add_option("--max-connections", f->max_connections, "Connections beyond this are refused")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  app.add_option("--max-frame-bytes", f->max_frame_bytes, "Largest request frame")
      ->capture_default_str();
  app.add_option("--max-inflight-bytes-per-connection", f->max_inflight_per_connection,
                 "A connection stops reading beyond this many bytes in flight")
      ->capture_default_str();
  app.add_option("--max-inflight-bytes", f->max_inflight_total,
                 "All connections stop reading beyond this many bytes in flight")
      ->capture_default_str();
  app.add_option("--max-queued-bytes", f->max_queued_bytes,
                 "Committer queue bound; produce waits beyond it")
      ->capture_default_str();
  app.add_option("--max-uncompressed-batch-bytes", f->max_uncompressed_batch_bytes,
                 "A compressed batch that inflates beyond this is refused (decompression bombs)")
      ->capture_default_str();
  app.add_option("--frame-timeout", f->frame_timeout,
                 "A frame must arrive whole within this once it began (slow senders; 0: never)")
      ->capture_default_str();
  app.add_option("--idle-timeout", f->idle_timeout,
                 "Close connections idle this long (0: never)")
      ->capture_default_str();
  app.add_option("--max-wait", f->max_wait, "Longest long-poll a client may ask for")
      ->capture_default_str();
  app.add_option("--log-level", f->log_level, "trace, debug, info, warn, error, critical, off")
      ->capture_default_str();
  app.add_option("--auth-tokens", f->auth_tokens,
                 "Token file: every connection must authenticate, each token limited to its "
                 "topics, groups and operations (see broker/README.md)");
  app.add_flag("--metrics-public", f->metrics_public,
               "With --auth-tokens, serve HTTP /metrics without a token");
  app.add_option("--http-max-connections", f->http_max_connections,
                 "HTTP connections beyond this get a 503 and are closed")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  app.add_option("--http-header-timeout", f->http_header_timeout,
                 "An HTTP request's header must arrive within this of its first byte (0: never)")
      ->capture_default_str();
  app.add_option("--http-body-timeout", f->http_body_timeout,
                 "Reading an HTTP request's body, and writing the answer, within this (0: never)")
      ->capture_default_str();
  app.add_option("--http-idle-timeout", f->http_idle_timeout,
                 "Close a keep-alive HTTP connection idle this long (0: never)")
      ->capture_default_str();
  app.add_option("--tls-cert", f->tls_cert,
                 "PEM certificate chain: the native port speaks TLS only (needs --tls-key)");
  app.add_option("--tls-key", f->tls_key, "PEM private key of --tls-cert");
  app.add_flag("--recover-truncate", f->recover_truncate,
               "Start even though the store's WAL is damaged before its end, dropping everything "
               "after the damage (logged); back up the data directory first");
  app.add_option("--ready-file", f->ready_file,
                 "Write {\"port\":..,\"http_port\":..} here once listening (for scripts and tests)");
}

namespace {

Result<int64_t> Duration(const char* flag, const std::string& v) {
  auto r = ParseDurationMs(v);
  if (!r.ok()) return Status::InvalidArgument(std::string("--") + flag + ": " + r.status().message());
  return *r;
}

// A duration where 0 means "never" and a negative value makes no sense.
Result<int64_t> NonNegativeDuration(const char* flag, const std::string& v) {
  RUNNEL_ASSIGN_OR_RETURN(const int64_t ms, Duration(flag, v));
  if (ms < 0) return Status::InvalidArgument(std::string("--") + flag + ": " + v + " is out of range");
  return ms;
}

// A size that must fit `max` (and be positive unless `allow_negative`: -1 means unlimited).
Result<int64_t> Bytes(const char* flag, const std::string& v, int64_t max,
                      bool allow_negative = false) {
  auto r = ParseBytes(v);
  if (!r.ok()) return Status::InvalidArgument(std::string("--") + flag + ": " + r.status().message());
  if ((*r <= 0 && !(allow_negative && *r == -1)) || *r > max) {
    return Status::InvalidArgument(std::string("--") + flag + ": " + v + " is out of range (1 to " +
                                   FormatBytes(max) + (allow_negative ? ", or -1" : "") + ")");
  }
  return *r;
}

}  // namespace

Result<DaemonConfig> ToDaemonConfig(const DaemonFlags& f) {
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
  DaemonConfig c;
  if (f.data_dir.empty()) return Status::InvalidArgument("--data-dir: must not be empty");
  c.broker.store.data_dir = f.data_dir;
  c.broker.store.recover_truncate = f.recover_truncate;
  auto& tc = c.broker.store.default_topic_config;
  RUNNEL_ASSIGN_OR_RETURN(tc.retention_ms, Duration("retention", f.retention));
  RUNNEL_ASSIGN_OR_RETURN(tc.retention_bytes,
                          Bytes("retention-bytes", f.retention_bytes, kInt64Max, true));
  RUNNEL_ASSIGN_OR_RETURN(c.broker.store.retention_check_interval_ms,
                          NonNegativeDuration("retention-check-interval", f.retention_check_interval));
  RUNNEL_ASSIGN_OR_RETURN(const int64_t max_message,
                          Bytes("max-message-bytes", f.max_message_bytes, kInt32Max));
  tc.max_message_bytes = static_cast<int32_t>(max_message);
  RUNNEL_ASSIGN_OR_RETURN(tc.dedup_window_ms, Duration("dedup-window", f.dedup_window));
  if (Status s = tc.Validate(); !s.ok()) {
    return Status::InvalidArgument("invalid default topic config: " + s.message());
  }
  RUNNEL_ASSIGN_OR_RETURN(const int64_t queued,
                          Bytes("max-queued-bytes", f.max_queued_bytes, kInt64Max));
  c.broker.store.max_queued_bytes = static_cast<size_t>(queued);
  RUNNEL_ASSIGN_OR_RETURN(const int64_t inflated,
                          Bytes("max-uncompressed-batch-bytes", f.max_uncompressed_batch_bytes,
                                kInt64Max));
  c.broker.store.max_uncompressed_batch_bytes = static_cast<size_t>(inflated);
  c.broker.auto_create_topics = f.auto_create_topics;
  c.broker.max_topics = static_cast<size_t>(f.max_topics);
  c.broker.default_partitions = f.default_partitions;
  c.broker.worker_threads = f.worker_threads;
  RUNNEL_ASSIGN_OR_RETURN(const int64_t max_wait, Duration("max-wait", f.max_wait));
  if (max_wait < 0 || max_wait > kInt32Max) {
    return Status::InvalidArgument("--max-wait: " + f.max_wait + " is out of range");
  }
  c.broker.max_wait_ms = static_cast<int32_t>(max_wait);

  c.server.bind = f.bind;
  c.server.port = static_cast<uint16_t>(f.port);
  c.server.io_threads = f.io_threads;
  c.server.max_connections = static_cast<size_t>(f.max_connections);
  RUNNEL_ASSIGN_OR_RETURN(const int64_t frame,
                          Bytes("max-frame-bytes", f.max_frame_bytes, 0xffffffffLL));
  c.server.max_frame_bytes = static_cast<uint32_t>(frame);
  RUNNEL_ASSIGN_OR_RETURN(const int64_t per_conn,
                          Bytes("max-inflight-bytes-per-connection",
                                f.max_inflight_per_connection, kInt64Max));
  c.server.max_inflight_bytes_per_connection = static_cast<size_t>(per_conn);
  RUNNEL_ASSIGN_OR_RETURN(const int64_t total,
                          Bytes("max-inflight-bytes", f.max_inflight_total, kInt64Max));
  c.server.max_inflight_bytes_total = static_cast<size_t>(total);

  RUNNEL_ASSIGN_OR_RETURN(c.server.frame_timeout_ms,
                          NonNegativeDuration("frame-timeout", f.frame_timeout));
  RUNNEL_ASSIGN_OR_RETURN(c.server.idle_timeout_ms,
                          NonNegativeDuration("idle-timeout", f.idle_timeout));

  if (f.tls_cert.empty() != f.tls_key.empty())
    return Status::InvalidArgument("--tls-cert and --tls-key go together");
  c.server.tls_cert_file = f.tls_cert;
  c.server.tls_key_file = f.tls_key;
  if (!f.auth_tokens.empty()) {
    auto tokens = TokenSet::Load(f.auth_tokens);
    if (!tokens.ok()) return tokens.status().WithContext("--auth-tokens");
    c.broker.auth = *tokens;
  }
  if (f.metrics_public && f.auth_tokens.empty())
    return Status::InvalidArgument("--metrics-public only makes sense with --auth-tokens");
  c.metrics_public = f.metrics_public;
  c.http_port = f.http_port;
  c.no_http = f.no_http;
  c.http.bind = f.bind;
  c.http.port = static_cast<uint16_t>(f.http_port);
  c.http.metrics_public = f.metrics_public;
  c.http.max_connections = static_cast<size_t>(f.http_max_connections);
  RUNNEL_ASSIGN_OR_RETURN(c.http.header_timeout_ms,
                          NonNegativeDuration("http-header-timeout", f.http_header_timeout));
  RUNNEL_ASSIGN_OR_RETURN(c.http.body_timeout_ms,
                          NonNegativeDuration("http-body-timeout", f.http_body_timeout));
  RUNNEL_ASSIGN_OR_RETURN(c.http.idle_timeout_ms,
                          NonNegativeDuration("http-idle-timeout", f.http_idle_timeout));
  if (f.kafka_port == "any") {
    c.kafka.port = 0;
    c.kafka.enabled = true;
  } else {
    char* end = nullptr;
    const long port = std::strtol(f.kafka_port.c_str(), &end, 10);
    if (f.kafka_port.empty() || *end != '\0' || port < 0 || port > 65535) {
      return Status::InvalidArgument("--kafka-port: '" + f.kafka_port +
                                     "' is not a port (0 to 65535, or any)");
    }
    c.kafka.port = static_cast<uint16_t>(port);
    c.kafka.enabled = port != 0;
  }
  c.kafka.explicit_port = f.kafka_port_explicit;
  c.kafka.auto_create_topics = f.kafka_auto_create_topics;
  {
    RUNNEL_ASSIGN_OR_RETURN(const int64_t ms, NonNegativeDuration("kafka-group-initial-delay",
                                                                  f.kafka_group_initial_delay));
    if (ms > 300'000)
      return Status::InvalidArgument("--kafka-group-initial-delay: at most 5m");
    c.kafka.group_initial_delay_ms = static_cast<int32_t>(ms);
  }
  c.kafka.advertised_host = f.kafka_advertised_host;
  if (c.kafka.advertised_host.empty()) {
    c.kafka.advertised_host = f.bind;
    if (f.bind == "0.0.0.0" || f.bind == "::" || f.bind.empty()) {
      char name[256] = {};
      if (::gethostname(name, sizeof name - 1) == 0 && name[0] != '\0') c.kafka.advertised_host = name;
    }
  }
  c.log_level = f.log_level;
  c.ready_file = f.ready_file;
  return c;
}

}  // namespace runnel::broker
