// The broker core in-process: client::Connection objects that hand native frames straight to the
// native front-end over a Broker, with no socket. For tests, tools and small applications that want Runnel as a library.
#pragma once

#include <memory>

#include "runnel/broker/broker.h"
#include "runnel/broker/frontend.h"
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
  explicit EmbeddedBroker(std::unique_ptr<Broker> b);
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<FrontEnd> frontend_;  // the native one
};

}  // namespace runnel::broker
