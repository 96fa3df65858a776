// SASL/PLAIN on the Kafka port: SaslHandshake (v0: a bare token follows; v1: SaslAuthenticate
// follows) and SaslAuthenticate. The password is a token of --auth-tokens; the user name is
// only informative. With access control off every login succeeds as "anonymous", so clients
// configured for SASL keep working against an open broker.
#include "kafka_impl.h"
#include "runnel/common/coding.h"

namespace runnel::kafka {
namespace {

// A PLAIN message is three short strings; anything much longer is not a login.
constexpr size_t kMaxPlainBytes = 4096;

}  // namespace

Result<std::shared_ptr<const Principal>> KafkaFrontEnd::Impl::PlainLogin(
    std::string_view message) {
  if (message.size() > kMaxPlainBytes)
    return Status::Unauthenticated("SASL/PLAIN message too long");
  // authzid NUL authcid NUL passwd (RFC 4616)
  const size_t first = message.find('\0');
  const size_t second = first == std::string_view::npos ? first : message.find('\0', first + 1);
  if (second == std::string_view::npos)
    return Status::Unauthenticated("malformed SASL/PLAIN message (want authzid\\0user\\0password)");
  const std::string_view password = message.substr(second + 1);
  if (!broker_.options().auth) {
    static const auto anonymous = std::make_shared<const Principal>(Principal{"anonymous", 7, {"*"}, {"*"}});
    return anonymous;
  }
  auto p = broker_.Authenticate(password);
  if (!p.ok()) return Status::Unauthenticated("authentication failed: invalid token");
  return p;
}

void KafkaFrontEnd::Impl::SaslHandshake(KafkaSession& session, const CallPtr& c,
                                        SaslHandshakeRequest& req) {
  SaslHandshakeResponse resp;
  resp.mechanisms.push_back("PLAIN");
  if (session.sasl != KafkaSession::Sasl::kNone) {
    resp.error_code = Code(Error::kIllegalSaslState);
    Reply(c, resp, true);
    session.refused = true;
    return;
  }
  if (req.mechanism != "PLAIN") {
    resp.error_code = Code(Error::kUnsupportedSaslMechanism);
    return Reply(c, resp, true);
  }
  session.sasl = c->version == 0 ? KafkaSession::Sasl::kRaw : KafkaSession::Sasl::kHandshake;
  Reply(c, resp);
}

void KafkaFrontEnd::Impl::SaslAuthenticate(KafkaSession& session, const CallPtr& c,
                                           SaslAuthenticateRequest& req) {
  SaslAuthenticateResponse resp;
  if (session.sasl != KafkaSession::Sasl::kHandshake) {
    resp.error_code = Code(Error::kIllegalSaslState);
    resp.error_message = "SaslAuthenticate must follow SaslHandshake v1";
    session.refused = true;
    return Reply(c, resp, true);
  }
  auto p = PlainLogin(req.auth_bytes);
  if (!p.ok()) {
    resp.error_code = Code(Error::kSaslAuthenticationFailed);
    resp.error_message = p.status().message();
    session.refused = true;  // Kafka closes the connection after a failed authentication
    return Reply(c, resp, true);
  }
  session.principal = *p;
  session.sasl = KafkaSession::Sasl::kDone;
  session.unauthenticated = false;
  Reply(c, resp);
}

void KafkaFrontEnd::Impl::RawSaslToken(KafkaSession& session, const wire::Frame& f,
                                       const CallPtr& c) {
  // After SaslHandshake v0 the client sends the PLAIN message as a bare size-prefixed blob; the
  // frame decoder took its first 8 bytes for api, version and correlation id.
  std::string message(8, '\0');
  EncodeFixed16BE(message.data(), f.header.api);
  EncodeFixed16BE(message.data() + 2, f.header.version);
  EncodeFixed32BE(message.data() + 4, f.header.correlation_id);
  message += f.body;
  auto p = PlainLogin(message);
  if (!p.ok()) return Refuse(session, c, p.status().message());
  session.principal = *p;
  session.sasl = KafkaSession::Sasl::kDone;
  session.unauthenticated = false;
  // The answer is an empty SASL token: just a zero size.
  c->respond({std::string(4, '\0')});
  broker_.EndRequest();
}

}  // namespace runnel::kafka
