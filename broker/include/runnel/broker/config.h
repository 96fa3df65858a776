// runneld's settings. The same long names work as flags and as keys of the TOML file given with
// --config (CLI11 reads both). Parsing and validation live here, apart from main(), so tests and
// the config fuzzer run exactly what the daemon runs.
#pragma once

#include <string>

#include "runnel/broker/broker.h"
#include "runnel/broker/server.h"
#include "runnel/common/result.h"

namespace CLI {
class App;
}

namespace runnel::broker {

// As given: sizes and durations are text ("64MiB", "7d") until ToDaemonConfig parses them.
struct DaemonFlags {
  std::string data_dir = "./runnel-data";
  std::string bind = "127.0.0.1";
  int port = 7070;
  int http_port = 7071;
  bool no_http = false;
  std::string kafka_port = "9092";  // a port, 0 (off) or "any"
  bool kafka_port_explicit = false;  // given as a flag or config key (a taken port is then fatal)
  std::string kafka_advertised_host;
  std::string kafka_group_initial_delay = "3s";
  int io_threads = 2;
  int worker_threads = 4;
  bool auto_create_topics = true;
  bool kafka_auto_create_topics = true;  // Kafka's auto.create.topics.enable
  int max_topics = 10'000;
  int default_partitions = 1;
  std::string retention = "7d";
  std::string retention_bytes = "-1";
  std::string retention_check_interval = "30s";
  std::string max_message_bytes = "1048588";
  std::string dedup_window = "5m";
  int max_connections = 10'000;
  std::string max_frame_bytes = "64MiB";
  std::string max_inflight_per_connection = "64MiB";
  std::string max_inflight_total = "1GiB";
  std::string max_queued_bytes = "256MiB";
  std::string max_uncompressed_batch_bytes = "64MiB";
  std::string frame_timeout = "30s";
  std::string idle_timeout = "10m";
  std::string max_wait = "30s";
  std::string log_level = "info";
  std::string ready_file;
  bool recover_truncate = false;  // open a store with a damaged WAL, dropping what follows it
  std::string auth_tokens;  // token file (auth.h); empty: access control off
  bool metrics_public = false;
  int http_max_connections = 256;
  std::string http_header_timeout = "10s";
  std::string http_body_timeout = "30s";
  std::string http_idle_timeout = "60s";
  std::string tls_cert;
  std::string tls_key;
};

// Registers every flag (and --config) on `app`, writing into `*flags`.
void AddDaemonFlags(CLI::App& app, DaemonFlags* flags);

struct KafkaListenerConfig {
  bool enabled = true;
  uint16_t port = 9092;          // 0 with enabled: any free port
  bool explicit_port = false;    // false: a taken port is a warning, not an error
  std::string advertised_host;   // what Metadata answers as this broker's host
  int32_t group_initial_delay_ms = 3000;  // group.initial.rebalance.delay.ms
  // Kafka's auto.create.topics.enable: Metadata (when the client allows it) and Produce may
  // create unknown topics, within BrokerOptions::auto_create_topics and max_topics.
  bool auto_create_topics = true;
};

struct DaemonConfig {
  BrokerOptions broker;
  ServerOptions server;  // the native port; the Kafka listener takes the same settings but port
  KafkaListenerConfig kafka;
  HttpOptions http;  // bind, port and metrics_public repeat the fields below
  int http_port = 7071;
  bool no_http = false;
  bool metrics_public = false;
  std::string log_level = "info";
  std::string ready_file;
};

// Parses sizes and durations, checks every range and loads the token file. InvalidArgument names
// the flag; IOError when the token file cannot be read.
Result<DaemonConfig> ToDaemonConfig(const DaemonFlags& flags);

}  // namespace runnel::broker
