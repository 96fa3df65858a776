// What the TCP server needs from a protocol front-end (native, Kafka, ...). Both protocols frame
// requests as a 4-byte big-endian length followed by api:i16 version:i16 correlation:i32, so one
// wire::FrameDecoder splits either stream; the front-end decodes the rest.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runnel/common/status.h"
#include "runnel/common/wire.h"

namespace runnel::broker {

// A response as buffers, written out back to back. Empty: nothing is sent (Kafka acks=0).
using ResponseFn = std::function<void(std::vector<std::string> frame)>;

// One per client connection: what a front-end remembers between requests (the authenticated
// principal, the produce lane). Touched by Handle only, one request at a time.
class FrontEndSession {
 public:
  virtual ~FrontEndSession() = default;
  // True once the session was refused (a request before authentication, or a bad token): the
  // connection reads nothing more and closes after writing the answers.
  bool refused = false;
  // True while access control is on and the session has not authenticated yet: the server holds
  // it to the pre-authentication limits (ServerOptions::pre_auth_*). Set by NewSession, cleared
  // by Handle on a successful authentication.
  bool unauthenticated = false;
};

// Thread-safe; outlives every server that uses it.
class FrontEnd {
 public:
  virtual ~FrontEnd() = default;
  // For logs and metrics: "native", "kafka".
  virtual std::string_view name() const = 0;
  // A session for a connection from `peer` (its IP address).
  virtual std::shared_ptr<FrontEndSession> NewSession(std::string_view peer) = 0;
  // Handles one request frame; `respond` runs exactly once, on any thread. Called by one
  // connection one frame at a time; the session's `refused` is final once Handle returns.
  virtual void Handle(const std::shared_ptr<FrontEndSession>& session, wire::Frame request,
                      ResponseFn respond) = 0;
  // The most response bytes `request` can produce beyond its own size, for admission control
  // (a fetch reserves its max_bytes). 0 for requests with small answers.
  virtual size_t ResponseReservation(const wire::Frame& request) const = 0;
  // The answer to a stream that cannot be framed (too large, malformed); the connection closes
  // after writing it. Empty: close without an answer.
  virtual std::vector<std::string> FramingError(const Status& error) const = 0;
  // True when responses must leave in request order (Kafka); false: in completion order.
  virtual bool ordered_responses() const = 0;
};

}  // namespace runnel::broker
