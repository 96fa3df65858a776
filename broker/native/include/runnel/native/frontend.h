// The native protocol front-end (common/PROTOCOL.md): decodes Runnel's own frames, checks each
// request against the session's token, calls the broker core and encodes the answer. Used by the
// TCP server (runneld's --port) and by the embedded connection.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runnel/broker/broker.h"
#include "runnel/broker/frontend.h"

namespace runnel::native {

// Thread-safe. Borrows the broker, which must outlive it.
//
// Threads: Handle answers ApiVersions, InitProducerId and Authenticate on the caller's thread;
// produce requests of one session go through its ProduceLane, in order; everything else runs on
// the broker's worker pool. Until a session authenticates (with access control on), every
// request but Authenticate is answered `unauthenticated` and the session is refused.
class NativeFrontEnd final : public broker::FrontEnd {
 public:
  explicit NativeFrontEnd(broker::Broker& broker);
  ~NativeFrontEnd() override;

  std::string_view name() const override { return "native"; }
  std::shared_ptr<broker::FrontEndSession> NewSession(std::string_view peer) override;
  void Handle(const std::shared_ptr<broker::FrontEndSession>& session, wire::Frame request,
              broker::ResponseFn respond) override;
  size_t ResponseReservation(const wire::Frame& request) const override;
  std::vector<std::string> FramingError(const Status& error) const override;
  bool ordered_responses() const override { return false; }

  class Impl;

 private:
  broker::Broker& broker_;
  std::unique_ptr<Impl> impl_;
};

// A response frame carrying only `error` (frame-level failures: a frame too large or malformed).
std::vector<std::string> ErrorFrame(const wire::FrameHeader& request, const Status& error);

// `body` with the frame header answering `request` in front.
std::vector<std::string> FrameAround(const wire::FrameHeader& request,
                                     std::vector<std::string> body);

}  // namespace runnel::native
