// The HTTP endpoint (Beast): GET /health, /metrics, /api/v1/stats. Low traffic: one io_context
// on its own thread; metrics are rendered on that thread. Bounded like the TCP ports: a
// connection cap, header / body / keep-alive timeouts, and an accept loop that outlives
// running out of file descriptors.
#include "asio.h"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>

#include "runnel/broker/auth.h"
#include "runnel/broker/metrics.h"
#include "runnel/broker/server.h"
#include "runnel/common/json.h"

namespace runnel::broker {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;

// Why an accept failed for want of a resource (descriptors, buffers): retried after a pause.
bool ResourceShortage(const boost::system::error_code& ec) {
  return ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
         ec == asio::error::no_memory || ec.value() == ENFILE;
}

class HttpImpl final : public HttpServer {
 public:
  HttpImpl(Broker& broker, const HttpOptions& options)
      : broker_(broker), options_(options), acceptor_(io_) {}
  ~HttpImpl() override { Stop(); }

  Status Listen() {
    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(options_.bind, ec);
    if (ec) {
      return Status::InvalidArgument("bad bind address '" + options_.bind + "': " + ec.message());
    }
    const tcp::endpoint ep(addr, options_.port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status::IOError("cannot listen for HTTP on " + options_.bind + ":" +
                             std::to_string(options_.port) + ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
    SpawnAccept();
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "runnel-http");
      // An exception out of a handler must not end the thread (std::terminate): keep serving.
      for (;;) {
        try {
          io_.run();
          return;
        } catch (...) {
        }
      }
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
  // The completion of every coroutine: one that failed with an exception ends alone.
  static void Swallow(std::exception_ptr) {}

  static void ExpireAfter(beast::tcp_stream& stream, int64_t ms) {
    if (ms > 0) {
      stream.expires_after(std::chrono::milliseconds(ms));
    } else {
      stream.expires_never();
    }
  }

  // Runs Accept, and again should it ever end with an exception.
  void SpawnAccept() {
    asio::co_spawn(io_, Accept(), [this](std::exception_ptr e) {
      if (e && !stopped_.load()) SpawnAccept();
    });
  }

  asio::awaitable<void> Accept() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket s = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (stopped_.load() || ec == asio::error::operation_aborted) co_return;
        // Out of descriptors (or any other failure): pause and retry; the listener never stops.
        // The connection stays in the kernel's backlog until a descriptor frees.
        asio::steady_timer t(io_, std::chrono::milliseconds(ResourceShortage(ec) ? 100 : 10));
        co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      if (open_ >= options_.max_connections) {
        // Over the cap: a 503 written without waiting (it fits the socket's send buffer), close.
        static constexpr std::string_view k503 =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
            "Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n";
        s.non_blocking(true, ec);
        s.send(asio::buffer(k503.data(), k503.size()), 0, ec);
        s.shutdown(tcp::socket::shutdown_both, ec);
        s.close(ec);
        continue;
      }
      asio::co_spawn(io_, Session(std::move(s)), Swallow);
    }
  }

  asio::awaitable<void> Session(tcp::socket socket) {
    ++open_;
    struct Count {  // gives the slot back however the coroutine ends
      size_t& n;
      ~Count() { --n; }
    } count{open_};
    beast::tcp_stream stream(std::move(socket));
    // Bounded: a header is at most 16 KiB; pipelined requests wait in the kernel, not here.
    beast::flat_buffer buffer(kMaxBufferBytes);
    boost::system::error_code ec;
    for (bool first = true;; first = false) {
      if (!first && buffer.size() == 0) {
        // Keep-alive: the next request's first byte must come within the idle timeout.
        ExpireAfter(stream, options_.idle_timeout_ms);
        const size_t n = co_await stream.async_read_some(
            buffer.prepare(kReadChunkBytes), asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
        buffer.commit(n);
      }
      http::request_parser<http::empty_body> parser;
      parser.header_limit(16 * 1024);
      ExpireAfter(stream, options_.header_timeout_ms);
      co_await http::async_read_header(stream, buffer, parser,
                                       asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      ExpireAfter(stream, options_.body_timeout_ms);
      co_await http::async_read(stream, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      const auto& req = parser.get();
      http::response<http::string_body> res = Route(req);
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      ExpireAfter(stream, options_.body_timeout_ms);
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !req.keep_alive()) break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.socket().close(ec);
  }

  static constexpr size_t kMaxBufferBytes = 64 * 1024;
  static constexpr size_t kReadChunkBytes = 4 * 1024;

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
    if (!(path == "/metrics" && options_.metrics_public)) {
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
  const HttpOptions options_;
  asio::io_context io_{1};
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  size_t open_ = 0;        // sessions now; touched on the HTTP thread only
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::Start(Broker& broker,
                                                      const HttpOptions& options) {
  auto s = std::make_unique<HttpImpl>(broker, options);
  RUNNEL_RETURN_IF_ERROR(s->Listen());
  return std::unique_ptr<HttpServer>(std::move(s));
}

}  // namespace runnel::broker
