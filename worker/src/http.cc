// HTTP client and server over Beast. The only translation unit of the worker that includes Asio.
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <pthread.h>

#include <atomic>
#include <cctype>
#include <charconv>
#include <thread>

#include "runnel/worker/http.h"

namespace runnel::worker {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string FindHeader(const HttpHeaders& headers, std::string_view name) {
  for (const auto& [k, v] : headers)
    if (IEquals(k, name)) return v;
  return {};
}

template <class Fields> HttpHeaders CopyHeaders(const Fields& fields) {
  HttpHeaders out;
  for (const auto& f : fields) out.emplace_back(std::string(f.name_string()), std::string(f.value()));
  return out;
}

}  // namespace

std::string HttpRequest::Header(std::string_view name) const { return FindHeader(headers, name); }
std::string HttpResult::Header(std::string_view name) const { return FindHeader(headers, name); }

Result<HttpUrl> ParseHttpUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme)
    return Status::InvalidArgument("only http:// URLs are supported: '" + std::string(url) + "'");
  std::string_view rest = url.substr(kScheme.size());
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  HttpUrl out;
  out.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  const size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos) {
    std::string_view port = authority.substr(colon + 1);
    unsigned p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || ptr != port.data() + port.size() || p == 0 || p > 65535)
      return Status::InvalidArgument("bad port in URL '" + std::string(url) + "'");
    out.port = static_cast<uint16_t>(p);
    authority = authority.substr(0, colon);
  }
  if (authority.empty()) return Status::InvalidArgument("no host in URL '" + std::string(url) + "'");
  out.host = std::string(authority);
  return out;
}

// ---- server --------------------------------------------------------------------------------------

namespace {

class ServerImpl final : public HttpServer {
 public:
  ServerImpl(Handler handler, int threads)
      : handler_(std::move(handler)),
        threads_(std::max(1, threads)),
        io_(std::make_unique<asio::io_context>()),
        acceptor_(std::make_unique<tcp::acceptor>(*io_)) {}
  ~ServerImpl() override { Stop(); }

  Status Listen(const std::string& bind, uint16_t port) {
    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(bind, ec);
    if (ec) return Status::InvalidArgument("bad bind address '" + bind + "': " + ec.message());
    const tcp::endpoint ep(addr, port);
    acceptor_->open(ep.protocol(), ec);
    if (!ec) acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_->bind(ep, ec);
    if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status::IOError("cannot listen for HTTP on " + bind + ":" + std::to_string(port) +
                             ": " + ec.message());
    }
    port_ = acceptor_->local_endpoint().port();
    asio::co_spawn(*io_, Accept(), asio::detached);
    for (int i = 0; i < threads_; ++i) {
      pool_.emplace_back([this] {
        pthread_setname_np(pthread_self(), "runnel-http");
        io_->run();
      });
    }
    return Status::OK();
  }

  uint16_t port() const override { return port_; }

  // Closes the listener and every connection: destroying the io_context destroys the suspended
  // sessions and their sockets.
  void Stop() override {
    if (stopped_.exchange(true)) return;
    io_->stop();
    for (auto& t : pool_)
      if (t.joinable()) t.join();
    acceptor_.reset();
    io_.reset();
  }

 private:
  asio::awaitable<void> Accept() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket s = co_await acceptor_->async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      asio::co_spawn(*io_, Session(std::move(s)), asio::detached);
    }
  }

  asio::awaitable<void> Session(tcp::socket socket) {
    beast::flat_buffer buffer;
    boost::system::error_code ec;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(16 * 1024);
      parser.body_limit(8u << 20);
      co_await http::async_read(socket, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      const auto& msg = parser.get();
      HttpRequest req;
      req.method = std::string(msg.method_string());
      req.target = std::string(msg.target());
      req.headers = CopyHeaders(msg);
      req.body = msg.body();
      HttpResponse answer = handler_(req);
      if (answer.delay_ms > 0) {
        asio::steady_timer timer(socket.get_executor(), std::chrono::milliseconds(answer.delay_ms));
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      if (answer.hang) break;
      http::response<http::string_body> res{static_cast<http::status>(answer.status), msg.version()};
      res.set(http::field::server, "runnel-worker");
      res.set(http::field::content_type, answer.content_type);
      for (const auto& [k, v] : answer.headers) res.set(k, v);
      res.body() = std::move(answer.body);
      res.keep_alive(msg.keep_alive());
      res.prepare_payload();
      co_await http::async_write(socket, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !res.keep_alive()) break;
    }
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.close(ec);
  }

  Handler handler_;
  const int threads_;
  std::unique_ptr<asio::io_context> io_;
  std::unique_ptr<tcp::acceptor> acceptor_;  // destroyed before io_
  uint16_t port_ = 0;
  std::vector<std::thread> pool_;
  std::atomic<bool> stopped_{false};
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& bind, uint16_t port,
                                                      Handler handler, int threads) {
  auto s = std::make_unique<ServerImpl>(std::move(handler), threads);
  RUNNEL_RETURN_IF_ERROR(s->Listen(bind, port));
  return std::unique_ptr<HttpServer>(std::move(s));
}

// ---- client --------------------------------------------------------------------------------------

struct HttpClient::Impl {
  asio::io_context io{1};
  std::optional<beast::tcp_stream> stream;
  std::string host;
  uint16_t port = 0;
  tcp::resolver::results_type endpoints;
  beast::flat_buffer buffer;

  void Close() {
    if (stream) {
      boost::system::error_code ec;
      stream->socket().shutdown(tcp::socket::shutdown_both, ec);
      stream->close();
    }
    stream.reset();
    buffer.clear();
  }

  // One exchange on the current or a new connection; `reused` says whether it was open before.
  asio::awaitable<void> Exchange(http::request<http::string_body>& req, int64_t timeout_ms,
                                 boost::system::error_code& ec, bool& reused,
                                 http::response<http::string_body>& res) {
    reused = stream.has_value();
    if (!stream) {
      stream.emplace(io);
      stream->expires_after(std::chrono::milliseconds(timeout_ms));
      co_await stream->async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
    }
    stream->expires_after(std::chrono::milliseconds(timeout_ms));
    co_await http::async_write(*stream, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    http::response_parser<http::string_body> parser;
    parser.body_limit(8u << 20);
    co_await http::async_read(*stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) res = parser.release();
  }
};

HttpClient::HttpClient() : impl_(std::make_unique<Impl>()) {}
HttpClient::~HttpClient() { impl_->Close(); }

Result<HttpResult> HttpClient::Send(const HttpUrl& url, std::string_view method, std::string body,
                                    const HttpHeaders& headers, int64_t timeout_ms) {
  Impl& m = *impl_;
  if (m.host != url.host || m.port != url.port || m.endpoints.empty()) {
    m.Close();
    boost::system::error_code ec;
    tcp::resolver resolver(m.io);
    m.endpoints = resolver.resolve(url.host, std::to_string(url.port), ec);
    if (ec) return Status::IOError("cannot resolve " + url.host + ": " + ec.message());
    m.host = url.host;
    m.port = url.port;
  }
  http::request<http::string_body> req{http::string_to_verb({method.data(), method.size()}), url.target, 11};
  req.set(http::field::host, url.host + ":" + std::to_string(url.port));
  req.set(http::field::user_agent, "runnel-worker");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = std::move(body);
  req.keep_alive(true);
  req.prepare_payload();

  for (int attempt = 0;; ++attempt) {
    boost::system::error_code ec;
    bool reused = false;
    http::response<http::string_body> res;
    m.io.restart();
    asio::co_spawn(m.io, m.Exchange(req, timeout_ms, ec, reused, res), asio::detached);
    m.io.run();
    if (!ec) {
      HttpResult out;
      out.status = static_cast<int>(res.result_int());
      out.headers = CopyHeaders(res);
      out.body = std::move(res.body());
      if (!res.keep_alive()) m.Close();
      return out;
    }
    m.Close();
    if (ec == beast::error::timeout)
      return Status::Timeout("no answer from " + url.host + ":" + std::to_string(url.port) +
                             " within " + std::to_string(timeout_ms) + " ms");
    // A kept-alive connection the server closed while idle: one fresh try.
    if (reused && attempt == 0 &&
        (ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::eof))
      continue;
    return Status::IOError("HTTP " + std::string(method) + " " + url.host + ":" +
                           std::to_string(url.port) + url.target + ": " + ec.message());
  }
}

}  // namespace runnel::worker
