// The HTTP endpoint (Beast): GET /health, /metrics, /api/v1/stats. Low traffic: one io_context
// on its own thread; metrics are rendered on that thread.
#include "asio.h"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <thread>

#include "runnel/broker/auth.h"
#include "runnel/broker/metrics.h"
#include "runnel/broker/server.h"
#include "runnel/common/json.h"

namespace runnel::broker {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;

class HttpImpl final : public HttpServer {
 public:
  HttpImpl(Broker& broker, bool metrics_public)
      : broker_(broker), metrics_public_(metrics_public), acceptor_(io_) {}
  ~HttpImpl() override { Stop(); }

  Status Listen(const std::string& bind, uint16_t port) {
    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(bind, ec);
    if (ec) return Status::InvalidArgument("bad bind address '" + bind + "': " + ec.message());
    const tcp::endpoint ep(addr, port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status::IOError("cannot listen for HTTP on " + bind + ":" + std::to_string(port) +
                             ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, Accept(), asio::detached);
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "runnel-http");
      io_.run();
    });
    return Status::OK();
  }

  uint16_t port() const override { return port_; }

  void Stop() override {
    if (stopped_.exchange(true)) return;
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  asio::awaitable<void> Accept() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket s = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      asio::co_spawn(io_, Session(std::move(s)), asio::detached);
    }
  }

  asio::awaitable<void> Session(tcp::socket socket) {
    beast::flat_buffer buffer;
    boost::system::error_code ec;
    for (;;) {
      http::request_parser<http::empty_body> parser;
      parser.header_limit(16 * 1024);
      co_await http::async_read(socket, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      const auto& req = parser.get();
      http::response<http::string_body> res = Route(req);
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      co_await http::async_write(socket, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !req.keep_alive()) break;
    }
    socket.shutdown(tcp::socket::shutdown_both, ec);
  }

  http::response<http::string_body> Route(const http::request<http::empty_body>& req) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::server, "runneld");
    const std::string target(req.target());
    const std::string path = target.substr(0, target.find('?'));
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::content_type, "text/plain");
      res.body() = "only GET is served\n";
      return res;
    }
    if (path == "/health") {
      // 503 while the store refuses writes (a full disk, EIO, a RocksDB background error), so
      // a load balancer or orchestrator sees what producers see; the reason is for the operator.
      res.set(http::field::content_type, "application/json");
      if (const Status health = broker_.store().Health(); !health.ok()) {
        res.result(http::status::service_unavailable);
        JsonWriter w;
        w.BeginObject().Field("status", "degraded").Field("reason", health.ToString()).EndObject();
        res.body() = w.str() + "\n";
      } else {
        res.body() = "{\"status\":\"ok\"}\n";
      }
      return res;
    }
    if (!(path == "/metrics" && metrics_public_)) {
      if (Status s = Authorize(req); !s.ok()) {
        broker_.metrics().auth_failures.fetch_add(s.code() == StatusCode::kUnauthenticated);
        broker_.metrics().auth_denied.fetch_add(s.code() == StatusCode::kPermissionDenied);
        res.result(s.code() == StatusCode::kUnauthenticated ? http::status::unauthorized
                                                            : http::status::forbidden);
        if (s.code() == StatusCode::kUnauthenticated)
          res.set(http::field::www_authenticate, "Bearer realm=\"runnel\"");
        res.set(http::field::content_type, "text/plain");
        res.body() = s.message() + "\n";
        return res;
      }
    }
    if (path == "/metrics") {
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res.body() = broker_.PrometheusText();
    } else if (path == "/api/v1/stats") {
      res.set(http::field::content_type, "application/json");
      res.body() = broker_.StatsJson() + "\n";
    } else {
      res.result(http::status::not_found);
      res.set(http::field::content_type, "text/plain");
      res.body() = "not found; try /health, /metrics or /api/v1/stats\n";
    }
    return res;
  }

  // With access control on: a bearer token with the admin operation.
  Status Authorize(const http::request<http::empty_body>& req) {
    const auto& tokens = broker_.options().auth;
    if (!tokens) return Status::OK();
    const auto raw = req[http::field::authorization];
    const std::string_view header(raw.data(), raw.size());
    constexpr std::string_view kBearer = "Bearer ";
    if (header.substr(0, kBearer.size()) != kBearer)
      return Status::Unauthenticated("authentication required: send Authorization: Bearer <token>");
    auto p = tokens->Authenticate(header.substr(kBearer.size()));
    if (!p.ok()) return p.status();
    return (*p)->Allows(Op::kAdmin);
  }

  Broker& broker_;
  bool metrics_public_;
  asio::io_context io_{1};
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::Start(Broker& broker, const std::string& bind,
                                                      uint16_t port, bool metrics_public) {
  auto s = std::make_unique<HttpImpl>(broker, metrics_public);
  RUNNEL_RETURN_IF_ERROR(s->Listen(bind, port));
  return std::unique_ptr<HttpServer>(std::move(s));
}

}  // namespace runnel::broker
