// The TCP server of the length-prefixed protocols (native, Kafka): one io_context per thread, a
// read coroutine per connection, responses written back in completion order (or request order,
// when the front-end asks) with gathered writes, and byte-bounded backpressure. With TLS the same
// connection runs over an asio::ssl::stream wrapping the socket.
#include "runnel/broker/server.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <deque>
#include <limits>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include "asio.h"
#include "runnel/broker/metrics.h"
#include "runnel/storage/log_store.h"

namespace runnel::broker {
namespace {

class ServerImpl;

std::string PeerAddress(const tcp::socket& socket) {
  boost::system::error_code ec;
  const tcp::endpoint peer = socket.remote_endpoint(ec);
  return ec ? std::string("unknown") : peer.address().to_string();
}

int64_t FrameBytes(const std::vector<std::string>& frame) {
  int64_t n = 0;
  for (const auto& p : frame) n += static_cast<int64_t>(p.size());
  return n;
}

using TlsStream = asio::ssl::stream<tcp::socket&>;

// The completion of the server's coroutines: an exception (none is expected) ends that coroutine
// alone instead of leaving io_context::run and terminating the process.
void Swallow(std::exception_ptr) {}

// An accept that failed for want of a resource (descriptors, buffers): retried after a pause.
bool ResourceShortage(const boost::system::error_code& ec) {
  return ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
         ec == asio::error::no_memory || ec.value() == ENFILE;
}

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(ServerImpl& server, tcp::socket socket, asio::ssl::context* tls);
  void Start();
  // Stop reading; close once every request got its response and it was written.
  void StopReading();
  void CloseAsync() {
    asio::post(socket_.get_executor(), [self = shared_from_this()] { self->Close(); });
  }
  void Close();
  // Closes the connection when a frame has been arriving for longer than the frame timeout or
  // it has been idle for longer than the idle timeout. Runs on the connection's executor.
  void CheckTimeouts(std::chrono::steady_clock::time_point now);
  void CheckTimeoutsAsync(std::chrono::steady_clock::time_point now) {
    asio::post(socket_.get_executor(),
               [self = shared_from_this(), now] { self->CheckTimeouts(now); });
  }

 private:
  asio::awaitable<void> ReadLoop();
  void OnResponse(size_t request_bytes, uint64_t seq, std::vector<std::string> frame);
  void Enqueue(std::vector<std::string> frame);
  void StartWrite();
  bool OverLimit() const;
  size_t PerConnectionBudget() const;
  // After a request was handed over: a session that just authenticated gets the full limits.
  void AfterHandle();
  void MaybeResume();
  void MaybeFinish();
  void AddInflight(int64_t n);
  // Reads what arrived into the decoder; false when the connection ended.
  asio::awaitable<bool> ReadSome();

  ServerImpl& server_;
  tcp::socket socket_;
  std::unique_ptr<TlsStream> tls_;  // null: plain TCP
  std::unique_ptr<char[]> tls_in_;  // TLS reads go through the stream: a buffer of our own
  std::string tls_out_;             // a gathered write, joined (one TLS record per chunk)
  asio::steady_timer resume_;
  std::shared_ptr<FrontEndSession> session_;
  wire::FrameDecoder decoder_;
  std::deque<std::vector<std::string>> out_;
  std::vector<std::string> writing_;  // buffers of the write in progress
  bool write_busy_ = false;
  bool read_done_ = false;
  bool closed_ = false;
  bool waiting_ = false;
  int64_t inflight_ = 0;
  size_t pending_requests_ = 0;
  // Ordered front-ends (Kafka): responses that arrived before an earlier request's answer.
  uint64_t next_seq_ = 0;      // of the next request read
  uint64_t next_write_ = 0;    // of the next response to queue
  std::map<uint64_t, std::vector<std::string>> early_;
  // When the frame now being received began (epoch: none is), and when bytes last arrived.
  std::chrono::steady_clock::time_point partial_since_{};
  std::chrono::steady_clock::time_point last_active_ = std::chrono::steady_clock::now();
};

class ServerImpl final : public Server {
 public:
  ServerImpl(Broker& broker, FrontEnd& frontend, const ServerOptions& o)
      : broker_(broker), frontend_(frontend), options_(o), acceptor_(io_for_accept()) {}

  Status Listen();
  uint16_t port() const override { return port_; }
  void Stop() override;
  ~ServerImpl() override { Stop(); }

  Broker& broker() { return broker_; }
  FrontEnd& frontend() { return frontend_; }
  const ServerOptions& options() const { return options_; }
  Metrics& metrics() { return broker_.metrics(); }
  void Forget(const Conn* c) {
    std::lock_guard lk(mu_);
    for (auto it = conns_.begin(); it != conns_.end(); ++it) {
      if (it->lock().get() == c || it->expired()) {
        conns_.erase(it);
        break;
      }
    }
    metrics().connections.fetch_sub(1);
  }

 private:
  asio::io_context& io_for_accept() {
    const int n = std::max(1, options_.io_threads);
    for (int i = 0; i < n; ++i) ios_.push_back(std::make_unique<asio::io_context>(1));
    return *ios_[0];
  }
  asio::awaitable<void> AcceptLoop();
  // Runs AcceptLoop, and again should it ever end with an exception.
  void SpawnAcceptLoop() {
    asio::co_spawn(*ios_[0], AcceptLoop(), [this](std::exception_ptr e) {
      if (e && !stopped_.load()) SpawnAcceptLoop();
    });
  }
  // Every quarter of the shortest timeout, asks each connection to check its timeouts.
  asio::awaitable<void> SweepLoop();

  Broker& broker_;
  FrontEnd& frontend_;
  ServerOptions options_;
  std::unique_ptr<asio::ssl::context> tls_;
  std::vector<std::unique_ptr<asio::io_context>> ios_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  size_t next_io_ = 0;
  std::mutex mu_;
  std::list<std::weak_ptr<Conn>> conns_;
  std::atomic<bool> stopped_{false};
};

Conn::Conn(ServerImpl& server, tcp::socket socket, asio::ssl::context* tls)
    : server_(server),
      socket_(std::move(socket)),
      tls_(tls ? std::make_unique<TlsStream>(socket_, *tls) : nullptr),
      resume_(socket_.get_executor()),
      session_(server.frontend().NewSession(PeerAddress(socket_))),
      decoder_(server.options().max_frame_bytes) {}

void Conn::Start() {
  if (session_->unauthenticated) {
    decoder_.set_max_frame_bytes(
        std::min(server_.options().pre_auth_max_frame_bytes, server_.options().max_frame_bytes));
  }
  auto self = shared_from_this();
  asio::co_spawn(socket_.get_executor(), [self] { return self->ReadLoop(); },
                 [self](std::exception_ptr e) {
                   if (e) self->Close();
                 });
}

size_t Conn::PerConnectionBudget() const {
  const ServerOptions& o = server_.options();
  return session_->unauthenticated
             ? std::min(o.pre_auth_max_inflight_bytes, o.max_inflight_bytes_per_connection)
             : o.max_inflight_bytes_per_connection;
}

void Conn::AfterHandle() {
  if (!session_->unauthenticated &&
      decoder_.max_frame_bytes() != server_.options().max_frame_bytes) {
    decoder_.set_max_frame_bytes(server_.options().max_frame_bytes);
  }
}

bool Conn::OverLimit() const {
  return inflight_ > static_cast<int64_t>(PerConnectionBudget()) ||
         server_.metrics().inflight_bytes.load(std::memory_order_relaxed) >
             static_cast<int64_t>(server_.options().max_inflight_bytes_total);
}

void Conn::AddInflight(int64_t n) {
  inflight_ += n;
  server_.metrics().inflight_bytes.fetch_add(n, std::memory_order_relaxed);
}

void Conn::MaybeResume() {
  if (waiting_ && !OverLimit()) resume_.cancel();
}

// One read buffer per io thread: a connection holds no buffer while it waits for bytes, so idle
// connections cost a socket and a small object each. Bytes are copied into the frame decoder
// before the coroutine suspends again.
std::vector<char>& ReadBuffer() {
  thread_local std::vector<char> buf(64 * 1024);
  return buf;
}

constexpr size_t kTlsReadBytes = 16 * 1024;  // one TLS record

asio::awaitable<bool> Conn::ReadSome() {
  boost::system::error_code ec;
  size_t n = 0;
  if (tls_) {
    if (!tls_in_) tls_in_ = std::make_unique<char[]>(kTlsReadBytes);
    n = co_await tls_->async_read_some(asio::buffer(tls_in_.get(), kTlsReadBytes),
                                       asio::redirect_error(asio::use_awaitable, ec));
    if (ec || n == 0) co_return false;
    decoder_.Append(std::string_view(tls_in_.get(), n));
  } else {
    co_await socket_.async_wait(tcp::socket::wait_read,
                                asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return false;
    std::vector<char>& buf = ReadBuffer();
    n = socket_.read_some(asio::buffer(buf), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) co_return true;
    if (ec || n == 0) co_return false;
    decoder_.Append(std::string_view(buf.data(), n));
  }
  last_active_ = std::chrono::steady_clock::now();
  co_return true;
}

asio::awaitable<void> Conn::ReadLoop() {
  auto self = shared_from_this();
  boost::system::error_code ec;
  if (tls_) {
    // The handshake is held to the frame timeout like any partial frame.
    partial_since_ = std::chrono::steady_clock::now();
    co_await tls_->async_handshake(asio::ssl::stream_base::server,
                                   asio::redirect_error(asio::use_awaitable, ec));
    partial_since_ = {};
    if (ec) {
      server_.metrics().tls_handshake_failures.fetch_add(1);
      read_done_ = true;
      MaybeFinish();
      co_return;
    }
  } else {
    socket_.non_blocking(true, ec);
  }
  while (!read_done_) {
    // Admit complete frames already received, one at a time, while under the limits; a burst of
    // pipelined requests in one read is admitted only as far as the budget allows.
    while (!read_done_ && !OverLimit()) {
      auto next = decoder_.Next();
      if (!next.ok()) {
        // The stream is unusable: answer once, then close after the write.
        server_.metrics().protocol_errors.fetch_add(1);
        Status error = next.status();
        if (session_->unauthenticated && error.code() == StatusCode::kTooLarge) {
          error = Status::TooLarge(error.message() +
                                   " before authentication (authenticate first; larger frames "
                                   "are served after)");
        }
        auto frame = server_.frontend().FramingError(error);
        read_done_ = true;
        if (!frame.empty()) {
          AddInflight(FrameBytes(frame));
          out_.push_back(std::move(frame));
          StartWrite();
        }
        break;
      }
      if (!next->has_value()) break;
      partial_since_ = {};
      wire::Frame f = std::move(**next);
      // Requests hold their own bytes plus what their answer may take, until it is written.
      const size_t bytes = wire::kFrameHeaderBytes + f.body.size() +
                           std::min<size_t>(server_.frontend().ResponseReservation(f),
                                            PerConnectionBudget());
      AddInflight(static_cast<int64_t>(bytes));
      ++pending_requests_;
      auto executor = socket_.get_executor();
      const uint64_t seq = next_seq_++;
      server_.frontend().Handle(
          session_, std::move(f), [self, bytes, seq, executor](std::vector<std::string> frame) {
            asio::post(executor, [self, bytes, seq, frame = std::move(frame)]() mutable {
              self->OnResponse(bytes, seq, std::move(frame));
            });
          });
      // Refused (no or a bad token): read nothing more; close once the answer is written.
      if (session_->refused) read_done_ = true;
      AfterHandle();
    }
    if (read_done_) break;
    if (OverLimit()) {
      // Over our own limit: our responses wake us. Over the global limit only: poll.
      const bool own = inflight_ > static_cast<int64_t>(PerConnectionBudget());
      resume_.expires_after(own ? std::chrono::hours(1) : std::chrono::milliseconds(2));
      waiting_ = true;
      partial_since_ = {};  // stalled by us, not by the client
      co_await resume_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      waiting_ = false;
      continue;
    }
    if (decoder_.buffered() > 0 && partial_since_ == std::chrono::steady_clock::time_point{})
      partial_since_ = std::chrono::steady_clock::now();
    if (!co_await ReadSome()) break;
  }
  read_done_ = true;
  MaybeFinish();
}

void Conn::OnResponse(size_t request_bytes, uint64_t seq, std::vector<std::string> frame) {
  --pending_requests_;
  AddInflight(-static_cast<int64_t>(request_bytes));
  if (closed_) return;
  if (!server_.frontend().ordered_responses()) {
    Enqueue(std::move(frame));
  } else if (seq != next_write_) {
    // An earlier request is still being answered: hold this one (its bytes count in flight).
    AddInflight(FrameBytes(frame));
    early_.emplace(seq, std::move(frame));
  } else {
    Enqueue(std::move(frame));
    ++next_write_;
    for (auto it = early_.begin(); it != early_.end() && it->first == next_write_;
         it = early_.erase(it), ++next_write_) {
      AddInflight(-FrameBytes(it->second));
      Enqueue(std::move(it->second));
    }
  }
  StartWrite();
  MaybeResume();
  MaybeFinish();
}

void Conn::Enqueue(std::vector<std::string> frame) {
  if (frame.empty()) return;  // no answer (Kafka acks=0)
  AddInflight(FrameBytes(frame));
  out_.push_back(std::move(frame));
}

void Conn::StartWrite() {
  if (write_busy_ || out_.empty() || closed_) return;
  write_busy_ = true;
  writing_.clear();
  // Gather several queued responses into one write.
  size_t gathered = 0;
  while (!out_.empty() && writing_.size() < 64 && gathered < (4u << 20)) {
    for (auto& p : out_.front()) {
      gathered += p.size();
      writing_.push_back(std::move(p));
    }
    out_.pop_front();
  }
  auto done = [self = shared_from_this(), gathered](boost::system::error_code ec, size_t) {
    self->write_busy_ = false;
    self->writing_.clear();
    self->tls_out_.clear();
    self->AddInflight(-static_cast<int64_t>(gathered));
    if (ec) {
      self->Close();
      return;
    }
    self->StartWrite();
    self->MaybeResume();
    self->MaybeFinish();
  };
  if (tls_) {
    // An SSL stream writes one buffer per record: join the pieces so small answers share one.
    tls_out_.reserve(gathered);
    for (const auto& p : writing_) tls_out_.append(p);
    asio::async_write(*tls_, asio::buffer(tls_out_), std::move(done));
    return;
  }
  std::vector<asio::const_buffer> bufs;
  bufs.reserve(writing_.size());
  for (const auto& p : writing_) bufs.emplace_back(p.data(), p.size());
  asio::async_write(socket_, bufs, std::move(done));
}

void Conn::MaybeFinish() {
  if (read_done_ && pending_requests_ == 0 && out_.empty() && !write_busy_) Close();
}

void Conn::StopReading() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    if (self->closed_) return;
    self->read_done_ = true;
    boost::system::error_code ec;
    self->socket_.shutdown(tcp::socket::shutdown_receive, ec);
    self->resume_.cancel();
    self->MaybeFinish();
  });
}

void Conn::CheckTimeouts(std::chrono::steady_clock::time_point now) {
  if (closed_) return;
  const ServerOptions& o = server_.options();
  const bool slow = o.frame_timeout_ms > 0 && partial_since_ != std::chrono::steady_clock::time_point{} &&
                    now - partial_since_ > std::chrono::milliseconds(o.frame_timeout_ms);
  const bool idle = o.idle_timeout_ms > 0 && pending_requests_ == 0 && out_.empty() &&
                    !write_busy_ && decoder_.buffered() == 0 &&
                    now - last_active_ > std::chrono::milliseconds(o.idle_timeout_ms);
  if (!slow && !idle) return;
  server_.metrics().connections_timed_out.fetch_add(1);
  Close();
}

void Conn::Close() {
  if (closed_) return;
  closed_ = true;
  read_done_ = true;
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  resume_.cancel();
  // Unsent responses are dropped: give their bytes back.
  int64_t unsent = 0;
  for (const auto& f : out_) unsent += FrameBytes(f);
  for (const auto& [seq, f] : early_) unsent += FrameBytes(f);
  out_.clear();
  early_.clear();
  AddInflight(-unsent);
  server_.Forget(this);
}

Status ServerImpl::Listen() {
  boost::system::error_code ec;
  if (options_.tls_cert_file.empty() != options_.tls_key_file.empty())
    return Status::InvalidArgument("TLS needs both a certificate and a key file");
  if (!options_.tls_cert_file.empty()) {
    tls_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    tls_->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                      asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                      asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
    // Idle connections give their OpenSSL record buffers back.
    SSL_CTX_set_mode(tls_->native_handle(), SSL_MODE_RELEASE_BUFFERS);
    tls_->use_certificate_chain_file(options_.tls_cert_file, ec);
    if (ec) {
      return Status::InvalidArgument("cannot load TLS certificate " + options_.tls_cert_file +
                                     ": " + ec.message());
    }
    tls_->use_private_key_file(options_.tls_key_file, asio::ssl::context::pem, ec);
    if (ec) {
      return Status::InvalidArgument("cannot load TLS key " + options_.tls_key_file + ": " +
                                     ec.message());
    }
    if (SSL_CTX_check_private_key(tls_->native_handle()) != 1) {
      return Status::InvalidArgument("TLS key " + options_.tls_key_file +
                                     " does not match certificate " + options_.tls_cert_file);
    }
  }
  const auto addr = asio::ip::make_address(options_.bind, ec);
  if (ec) return Status::InvalidArgument("bad bind address '" + options_.bind + "': " + ec.message());
  const tcp::endpoint ep(addr, options_.port);
  const std::string where = options_.bind + ":" + std::to_string(options_.port) + " (" +
                            std::string(frontend_.name()) + ")";
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (ec) {
    return Status::IOError("cannot listen on " + where + ": " + ec.message() +
                           (ec == asio::error::address_in_use
                                ? " (is another runneld or another program using the port?)"
                                : ""));
  }
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::IOError("cannot listen on " + where + ": " + ec.message());
  port_ = acceptor_.local_endpoint().port();
  // Asio creates an io_context's reactor (an epoll, an eventfd and a timerfd) and its socket and
  // timer services on first use, and throws when that fails. The first connection handed to an
  // io thread may come when every descriptor is taken (idle HTTP or Kafka clients), and a throw
  // there ends the process: make them all now, while descriptors are there.
  try {
    for (auto& io : ios_) {
      tcp::socket warm_socket(*io);
      asio::steady_timer warm_timer(*io);
    }
  } catch (const std::exception& e) {
    return Status::IOError("cannot start the io threads of " + where + ": " + e.what());
  }
  SpawnAcceptLoop();
  if (options_.frame_timeout_ms > 0 || options_.idle_timeout_ms > 0)
    asio::co_spawn(*ios_[0], SweepLoop(), Swallow);
  for (auto& io : ios_) {
    guards_.push_back(asio::make_work_guard(*io));
    threads_.emplace_back([ctx = io.get()] {
      pthread_setname_np(pthread_self(), "runnel-io");
      // An exception out of a handler must not end the thread (std::terminate): keep serving.
      for (;;) {
        try {
          ctx->run();
          return;
        } catch (...) {
        }
      }
    });
  }
  return Status::OK();
}

asio::awaitable<void> ServerImpl::AcceptLoop() {
  for (;;) {
    asio::io_context& target = *ios_[next_io_++ % ios_.size()];
    boost::system::error_code ec;
    tcp::socket socket =
        co_await acceptor_.async_accept(target, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (stopped_.load() || ec == asio::error::operation_aborted) co_return;
      // Out of descriptors and similar: back off and retry, never end the loop. The client waits
      // in the kernel's backlog until a descriptor frees.
      asio::steady_timer t(acceptor_.get_executor(),
                           std::chrono::milliseconds(ResourceShortage(ec) ? 50 : 10));
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (static_cast<size_t>(metrics().connections.load()) >= options_.max_connections) {
      metrics().connections_rejected.fetch_add(1);
      socket.close(ec);
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    metrics().connections.fetch_add(1);
    metrics().connections_accepted.fetch_add(1);
    auto conn = std::make_shared<Conn>(*this, std::move(socket), tls_.get());
    {
      std::lock_guard lk(mu_);
      conns_.push_back(conn);
    }
    conn->Start();
  }
}

asio::awaitable<void> ServerImpl::SweepLoop() {
  int64_t shortest = std::numeric_limits<int64_t>::max();
  for (int64_t t : {options_.frame_timeout_ms, options_.idle_timeout_ms})
    if (t > 0) shortest = std::min(shortest, t);
  const auto period = std::chrono::milliseconds(std::clamp<int64_t>(shortest / 4, 10, 1'000));
  asio::steady_timer timer(*ios_[0]);
  while (!stopped_.load()) {
    timer.expires_after(period);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_.load()) co_return;
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lk(mu_);
    for (auto& w : conns_)
      if (auto c = w.lock()) c->CheckTimeoutsAsync(now);
  }
}

void ServerImpl::Stop() {
  if (stopped_.exchange(true)) return;
  asio::post(*ios_[0], [this] {
    boost::system::error_code ec;
    acceptor_.close(ec);
  });
  std::vector<std::shared_ptr<Conn>> live;
  {
    std::lock_guard lk(mu_);
    for (auto& w : conns_)
      if (auto c = w.lock()) live.push_back(c);
  }
  for (auto& c : live) c->StopReading();
  broker_.BeginShutdown();  // long-polls answer now; late requests get `shutdown`
  broker_.WaitIdle();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.shutdown_grace_ms);
  while (metrics().connections.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // Force-close stragglers (peers that never read their responses), and give the closes a moment
  // to run before the io threads stop.
  for (auto& c : live) c->CloseAsync();
  const auto closed_by = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  while (metrics().connections.load() > 0 && std::chrono::steady_clock::now() < closed_by)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  guards_.clear();
  for (auto& io : ios_) io->stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace

Result<std::unique_ptr<Server>> Server::Start(Broker& broker, FrontEnd& frontend,
                                              const ServerOptions& options) {
  auto s = std::make_unique<ServerImpl>(broker, frontend, options);
  RUNNEL_RETURN_IF_ERROR(s->Listen());
  return std::unique_ptr<Server>(std::move(s));
}

}  // namespace runnel::broker
