// The broker core in-process: client::Connection objects that hand frames straight to a Broker,
// with no socket. For tests, tools and small applications that want Runnel as a library.
#pragma once

#include <memory>

#include "runnel/broker/broker.h"
#include "runnel/client/connection.h"

namespace runnel::broker {

// Thread-safe. Connections must not outlive the EmbeddedBroker. Request timeouts are not
// enforced in-process (every request is answered; long-polls end at their own deadline).
class EmbeddedBroker {
 public:
  static Result<std::unique_ptr<EmbeddedBroker>> Open(const BrokerOptions& options);
  ~EmbeddedBroker();

  std::shared_ptr<client::Connection> Connect();
  Broker& broker() { return *broker_; }

 private:
  explicit EmbeddedBroker(std::unique_ptr<Broker> b) : broker_(std::move(b)) {}
  std::unique_ptr<Broker> broker_;
};

}  // namespace runnel::broker
