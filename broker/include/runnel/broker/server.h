// The network listeners of runneld: the TCP server for the length-prefixed protocols (native,
// Kafka; Asio, C++20 coroutines) and the HTTP server (Beast) for /health, /metrics and
// /api/v1/stats. These headers are free of Asio; the implementations keep it in two translation
// units.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "runnel/broker/broker.h"
#include "runnel/broker/frontend.h"
#include "runnel/common/result.h"

namespace runnel::broker {

struct ServerOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 7070;  // 0: any free port (see Server::port())
  int io_threads = 2;    // one io_context per thread; connections are spread round-robin
  size_t max_connections = 10'000;
  uint32_t max_frame_bytes = wire::kDefaultMaxFrameBytes;
  // Backpressure: a connection stops reading while its requests in flight plus its unsent
  // responses exceed this, and every connection stops while all of them together exceed the
  // total. Memory stays bounded whatever clients send or fail to read.
  size_t max_inflight_bytes_per_connection = 64u << 20;
  size_t max_inflight_bytes_total = 1u << 30;
  // Once a frame's first byte arrived, the whole frame must arrive within this (slowloris
  // defence); 0: no limit.
  int64_t frame_timeout_ms = 30'000;
  // A connection with nothing in flight and no bytes received for this long is closed (Kafka's
  // connections.max.idle.ms); clients reconnect on their next request. 0: never.
  int64_t idle_timeout_ms = 600'000;
  // Before a session authenticated (access control on, FrontEndSession::unauthenticated): frames
  // above this close the connection with an error naming the limit, and the connection stops
  // reading while more than pre_auth_max_inflight_bytes are in flight. Authenticate, ApiVersions
  // and the SASL requests fit easily; a stranger cannot make runneld buffer a 64 MiB frame.
  uint32_t pre_auth_max_frame_bytes = 64u << 10;
  size_t pre_auth_max_inflight_bytes = 256u << 10;
  int64_t shutdown_grace_ms = 10'000;  // how long Stop waits for responses to drain
  // TLS on the native port: both PEM files set, or neither (plain TCP). With TLS every connection
  // must complete the handshake within frame_timeout_ms; TLS 1.2 is the oldest version served.
  std::string tls_cert_file;  // the certificate chain, server certificate first
  std::string tls_key_file;   // its private key (unencrypted)
};

class Server {
 public:
  // Binds and starts serving `frontend`'s protocol. IOError with a clear message when the
  // address is unusable (port taken, bad bind address); InvalidArgument when the TLS files cannot
  // be loaded. Borrows the broker and the front-end, which must outlive the server.
  static Result<std::unique_ptr<Server>> Start(Broker& broker, FrontEnd& frontend,
                                               const ServerOptions& options);
  virtual ~Server() = default;
  virtual uint16_t port() const = 0;
  // Graceful: stops accepting and reading, answers requests in flight (long-polls at once), writes
  // what is queued (up to the grace period), closes connections. Idempotent.
  virtual void Stop() = 0;
};

// The HTTP port's limits. Connections beyond max_connections get a 503 and are closed. A
// request's header must arrive within header_timeout_ms of its first byte (of the connection, for
// the first request), the rest of the request and the writing of the answer each within
// body_timeout_ms, and a keep-alive connection may wait idle for its next request for
// idle_timeout_ms. 0: no limit.
struct HttpOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 7071;  // 0: any free port
  bool metrics_public = false;
  size_t max_connections = 256;
  int64_t header_timeout_ms = 10'000;
  int64_t body_timeout_ms = 30'000;
  int64_t idle_timeout_ms = 60'000;
};

// With access control on (BrokerOptions::auth), /metrics and /api/v1/stats need
// `Authorization: Bearer <token>` of a token with the admin operation (401 without a valid token,
// 403 without admin); `metrics_public` serves /metrics to anyone. /health is always public.
class HttpServer {
 public:
  // Binds and serves on its own thread; IOError when the address is unusable. Out of file
  // descriptors, accepting backs off and retries (the listener never stops).
  static Result<std::unique_ptr<HttpServer>> Start(Broker& broker, const HttpOptions& options);
  static Result<std::unique_ptr<HttpServer>> Start(Broker& broker, const std::string& bind,
                                                   uint16_t port, bool metrics_public = false) {
    HttpOptions o;
    o.bind = bind;
    o.port = port;
    o.metrics_public = metrics_public;
    return Start(broker, o);
  }
  virtual ~HttpServer() = default;
  virtual uint16_t port() const = 0;
  virtual void Stop() = 0;
};

}  // namespace runnel::broker
