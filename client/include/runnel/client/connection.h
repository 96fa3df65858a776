// A connection to a Runnel broker: an interface with a TCP implementation (here) and an embedded
// one (runnel/broker/embedded.h: the broker core in-process, no socket). Producer, Consumer and
// Admin work over either.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "runnel/common/protocol.h"
#include "runnel/common/result.h"
#include "runnel/common/wire.h"

namespace runnel::client {

// Thread-safe: any thread may Send concurrently; requests are multiplexed by correlation id.
class Connection {
 public:
  virtual ~Connection() = default;

  using Callback = std::function<void(Result<std::string> body)>;
  // Sends one request (body given as buffers written back to back). `done` runs exactly once
  // with the response body, IOError when the connection failed (the request may or may not have
  // been processed), or Timeout after `timeout_ms`. Callbacks run on the connection's reader
  // thread (TCP) or a broker thread (embedded): keep them short and never wait in them for
  // another response.
  virtual void Send(wire::Api api, std::vector<std::string> body, int64_t timeout_ms,
                    Callback done) = 0;
  // "tcp://host:port" or "embedded".
  virtual std::string Describe() const = 0;
};

struct TcpOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 7070;
  int64_t connect_timeout_ms = 5'000;  // TCP connect, TLS handshake and Authenticate together
  uint32_t max_frame_bytes = wire::kDefaultMaxFrameBytes + (1u << 20);
  // Sent in an Authenticate request on every (re)connect when not empty. A refused token fails
  // the request that connected with Unauthenticated (not retriable).
  std::string token;
  // TLS (1.2 or newer). The broker's certificate is verified against `tls_ca_file` (PEM), or the
  // system's trust store when that is empty, and must name `tls_server_name` (default: host; an
  // IP address is matched against the certificate's IP entries).
  bool tls = false;
  std::string tls_ca_file;
  std::string tls_server_name;
  bool tls_verify = true;  // false: encrypt without checking who answers (tests only)
};

// Connects lazily (on the first Send) and reconnects on the next Send after a failure, so one
// Connection outlives broker restarts. Never fails itself; connection errors reach callbacks.
std::shared_ptr<Connection> ConnectTcp(const TcpOptions& options);
// "host:port" (or ":port", or "host" for the default port 7070) -> TcpOptions; a "tls://"
// prefix turns TLS on. Token and CA file come from the environment when set: RUNNEL_TOKEN,
// RUNNEL_TLS_CA (which also turns TLS on).
Result<TcpOptions> ParseBrokerAddress(std::string_view address);

// Typed helpers. The request is encoded on the calling thread.
template <class Resp, class Req>
void CallAsync(Connection& c, Req req, int64_t timeout_ms,
               std::function<void(Result<Resp>)> done) {
  proto::Writer w;
  w.Put(req);
  c.Send(Req::kApi, w.TakeParts(), timeout_ms,
         [done = std::move(done)](Result<std::string> body) {
           if (!body.ok()) return done(body.status());
           done(proto::DecodeResponse<Resp>(*body));
         });
}

template <class Resp, class Req> Result<Resp> Call(Connection& c, Req req, int64_t timeout_ms) {
  auto promise = std::make_shared<std::promise<Result<Resp>>>();
  auto future = promise->get_future();
  CallAsync<Resp>(c, std::move(req), timeout_ms,
                  [promise](Result<Resp> r) { promise->set_value(std::move(r)); });
  return future.get();
}

// For requests whose response carries only the error.
template <class Req> Status CallStatus(Connection& c, Req req, int64_t timeout_ms) {
  return Call<proto::EmptyResponse>(c, std::move(req), timeout_ms).status();
}

// True for errors worth retrying with the same request: the connection broke, a deadline
// passed, the broker is busy or restarting.
bool IsRetriable(const Status& s);

}  // namespace runnel::client
