#include "runnel/broker/embedded.h"

#include <atomic>

#include "runnel/native/frontend.h"

namespace runnel::broker {
namespace {

class EmbeddedConnection final : public client::Connection {
 public:
  explicit EmbeddedConnection(FrontEnd& fe) : frontend_(fe), session_(fe.NewSession("embedded")) {}

  void Send(wire::Api api, std::vector<std::string> body, int64_t /*timeout_ms*/,
            Callback done) override {
    wire::Frame f;
    f.header.api = static_cast<uint16_t>(api);
    f.header.correlation_id = next_corr_.fetch_add(1);
    size_t n = 0;
    for (const auto& p : body) n += p.size();
    f.header.length = static_cast<uint32_t>(wire::kHeaderAfterLength + n);
    if (body.size() == 1) {
      f.body = std::move(body[0]);
    } else {
      f.body.reserve(n);
      for (const auto& p : body) f.body.append(p);
    }
    frontend_.Handle(session_, std::move(f), [done = std::move(done)](std::vector<std::string> frame) {
      // frame[0] is the 12-byte header; the rest is the body.
      std::string out;
      if (frame.size() == 2) {
        out = std::move(frame[1]);
      } else {
        for (size_t i = 1; i < frame.size(); ++i) out.append(frame[i]);
      }
      done(std::move(out));
    });
  }

  std::string Describe() const override { return "embedded"; }

 private:
  FrontEnd& frontend_;
  std::shared_ptr<FrontEndSession> session_;
  std::atomic<uint32_t> next_corr_{1};
};

}  // namespace

Result<std::unique_ptr<EmbeddedBroker>> EmbeddedBroker::Open(const BrokerOptions& options) {
  RUNNEL_ASSIGN_OR_RETURN(auto b, Broker::Open(options));
  return std::unique_ptr<EmbeddedBroker>(new EmbeddedBroker(std::move(b)));
}

EmbeddedBroker::EmbeddedBroker(std::unique_ptr<Broker> b)
    : broker_(std::move(b)), frontend_(std::make_unique<native::NativeFrontEnd>(*broker_)) {}

EmbeddedBroker::~EmbeddedBroker() {
  // Requests still in flight (a parked long-poll) answer through the front-end: let them all
  // end before it goes, then the broker closes the store.
  broker_->BeginShutdown();
  broker_->WaitIdle();
  frontend_.reset();
}

std::shared_ptr<client::Connection> EmbeddedBroker::Connect() {
  return std::make_shared<EmbeddedConnection>(*frontend_);
}

}  // namespace runnel::broker
