// TCP connection: blocking writes under a mutex, one reader thread per connection that matches
// responses to requests by correlation id and expires overdue requests. A Transport carries the
// bytes: the socket itself, or an OpenSSL session over it. A (re)connect runs the TLS handshake
// and the Authenticate request before any request is sent.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "runnel/client/connection.h"

namespace runnel::client {
namespace {

using SteadyClock = std::chrono::steady_clock;

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

std::string TlsError(const char* what) {
  std::string out = std::string(what) + ": ";
  const unsigned long e = ERR_get_error();
  if (e == 0) return out + (errno ? std::strerror(errno) : "connection closed");
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return out + buf;
}

int MsLeft(SteadyClock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 60'000));
}

// Waits until `fd` is ready for `events` or the deadline passes (false).
bool WaitFd(int fd, short events, SteadyClock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, MsLeft(deadline));
    if (rc > 0) return true;
    if (rc == 0 || errno != EINTR) return false;
  }
}

// Moves bytes over a connected socket. The socket stays open as long as the transport lives.
class Transport {
 public:
  explicit Transport(int fd) : fd_(fd) {}
  virtual ~Transport() { ::close(fd_); }
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;
  int fd() const { return fd_; }
  // Writes everything (blocking); IOError.
  virtual Status WriteAll(std::vector<iovec>& iov) = 0;
  // Reads what is available once poll() reported the socket readable: > 0 bytes, 0 at the end of
  // the stream, -1 on an error (`*error` says which), -2 when nothing could be read yet.
  virtual ssize_t Read(char* buf, size_t n, Status* error) = 0;
  // Bytes already received and decrypted but not yet returned (poll() cannot see them).
  virtual bool Pending() { return false; }

 protected:
  const int fd_;
};

class PlainTransport final : public Transport {
 public:
  using Transport::Transport;
  Status WriteAll(std::vector<iovec>& iov) override {
    size_t i = 0;
    while (i < iov.size()) {
      const int cnt = static_cast<int>(std::min<size_t>(iov.size() - i, IOV_MAX));
      msghdr msg{};
      msg.msg_iov = iov.data() + i;
      msg.msg_iovlen = static_cast<size_t>(cnt);
      const ssize_t w = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        return Status::IOError(Errno("write"));
      }
      size_t left = static_cast<size_t>(w);
      while (i < iov.size() && left >= iov[i].iov_len) left -= iov[i++].iov_len;
      if (left > 0) {
        iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + left;
        iov[i].iov_len -= left;
      }
    }
    return Status::OK();
  }
  ssize_t Read(char* buf, size_t n, Status* error) override {
    const ssize_t r = ::read(fd_, buf, n);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) return -2;
    if (r < 0) *error = Status::IOError(Errno("read"));
    return r;
  }
};

// OpenSSL writes with write(2), not send(MSG_NOSIGNAL): a peer that closed would raise SIGPIPE
// and kill the application. While one lives, SIGPIPE is blocked on this thread, and one it
// raised is taken off the thread's pending set before the old mask comes back.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeBlock() {
    sigset_t pending;
    sigpending(&pending);
    if (!was_pending_ && sigismember(&pending, SIGPIPE) == 1) {
      const timespec now{0, 0};
      while (sigtimedwait(&pipe_, nullptr, &now) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
};

// OpenSSL over a non-blocking socket. An SSL object must not be used by two threads at once, so
// the writer and the reader take turns under `mu_`, each call non-blocking, and wait for the
// socket outside the lock.
class TlsTransport final : public Transport {
 public:
  TlsTransport(int fd, SSL* ssl) : Transport(fd), ssl_(ssl) {}
  ~TlsTransport() override { SSL_free(ssl_); }

  Status WriteAll(std::vector<iovec>& iov) override {
    // Joined, so small pieces share a TLS record.
    std::string data;
    for (const auto& v : iov) data.append(static_cast<const char*>(v.iov_base), v.iov_len);
    size_t done = 0;
    while (done < data.size()) {
      size_t written = 0;
      int err;
      {
        std::lock_guard lk(mu_);
        SigpipeBlock no_sigpipe;
        ERR_clear_error();
        const int rc = SSL_write_ex(ssl_, data.data() + done, data.size() - done, &written);
        err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, rc);
        if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
          return Status::IOError(TlsError("TLS write"));
      }
      done += written;
      // WANT_READ: the reader thread takes in what the session waits for; look again shortly.
      if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        pollfd p{fd_, static_cast<short>(err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN), 0};
        ::poll(&p, 1, 10);
      }
    }
    return Status::OK();
  }

  ssize_t Read(char* buf, size_t n, Status* error) override {
    std::lock_guard lk(mu_);
    SigpipeBlock no_sigpipe;  // a read may answer a key update
    size_t got = 0;
    while (got < n) {
      size_t r = 0;
      ERR_clear_error();
      const int rc = SSL_read_ex(ssl_, buf + got, n - got, &r);
      if (rc == 1) {
        got += r;
        continue;
      }
      const int err = SSL_get_error(ssl_, rc);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
      if (got > 0) break;  // report the bytes now, the end or error on the next call
      if (err == SSL_ERROR_ZERO_RETURN) return 0;
      *error = Status::IOError(TlsError("TLS read"));
      return -1;
    }
    return got > 0 ? static_cast<ssize_t>(got) : -2;
  }

  bool Pending() override {
    std::lock_guard lk(mu_);
    return SSL_has_pending(ssl_) == 1;
  }

 private:
  std::mutex mu_;
  SSL* ssl_;
};

bool IsIpAddress(const std::string& host) {
  in6_addr a6;
  in_addr a4;
  return ::inet_pton(AF_INET, host.c_str(), &a4) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

class TcpConnection final : public Connection {
 public:
  explicit TcpConnection(TcpOptions o) : options_(std::move(o)) {
    reader_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "runnel-client");
      ReadLoop();
    });
  }

  ~TcpConnection() override {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
      if (conn_) ::shutdown(conn_->fd(), SHUT_RDWR);
    }
    cv_.notify_all();
    reader_.join();
    conn_.reset();
    if (tls_ctx_) SSL_CTX_free(tls_ctx_);
  }

  std::string Describe() const override {
    return std::string(options_.tls ? "tls://" : "tcp://") + options_.host + ":" +
           std::to_string(options_.port);
  }

  void Send(wire::Api api, std::vector<std::string> body, int64_t timeout_ms,
            Callback done) override {
    // `done` never runs under our locks: it may Send again.
    Status early = SendLocked(api, body, timeout_ms, done);
    if (!early.ok()) done(std::move(early));
  }

 private:
  struct Pending {
    Callback done;
    SteadyClock::time_point deadline;
  };

  // Registers `done` (moving it) and writes the frame; returns an error without touching `done`
  // when the request could not be registered.
  Status SendLocked(wire::Api api, std::vector<std::string>& body, int64_t timeout_ms,
                    Callback& done) {
    std::lock_guard write_lock(write_mu_);
    std::shared_ptr<Transport> t;
    uint32_t corr;
    {
      std::unique_lock lk(mu_);
      // A socket marked broken is being torn down by the reader; a request sent on it now fails
      // with it (IOError) and the caller's retry reconnects.
      if (stop_) return Status::Shutdown("connection closed");
      if (!conn_) {
        lk.unlock();
        Result<std::shared_ptr<Transport>> c = Connect();
        lk.lock();
        if (!c.ok()) return c.status();
        conn_ = std::move(c).value();
        cv_.notify_all();
      }
      t = conn_;
      corr = next_corr_++;
      const auto deadline =
          SteadyClock::now() + std::chrono::milliseconds(std::max<int64_t>(timeout_ms, 1));
      pending_.emplace(corr, Pending{std::move(done), deadline});
    }
    size_t n = 0;
    for (const auto& p : body) n += p.size();
    const std::string header = wire::EncodeFrameHeader(static_cast<uint16_t>(api), 0, corr, n);
    std::vector<iovec> iov;
    iov.push_back({const_cast<char*>(header.data()), header.size()});
    for (auto& p : body)
      if (!p.empty()) iov.push_back({p.data(), p.size()});
    if (Status s = t->WriteAll(iov); !s.ok()) {
      std::lock_guard lk(mu_);
      if (conn_ == t && !broken_) {
        broken_ = true;
        broken_reason_ = s;
        ::shutdown(t->fd(), SHUT_RDWR);  // the reader fails everything pending, this request too
      }
    }
    return Status::OK();
  }

  // TCP connect, then the TLS handshake and Authenticate when configured, within the connect
  // timeout.
  Result<std::shared_ptr<Transport>> Connect() {
    const auto deadline =
        SteadyClock::now() + std::chrono::milliseconds(std::max<int64_t>(options_.connect_timeout_ms, 1));
    RUNNEL_ASSIGN_OR_RETURN(const int fd, ConnectSocket());
    std::shared_ptr<Transport> t;
    if (options_.tls) {
      RUNNEL_ASSIGN_OR_RETURN(t, StartTls(fd, deadline));
    } else {
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      t = std::make_shared<PlainTransport>(fd);
    }
    if (!options_.token.empty()) RUNNEL_RETURN_IF_ERROR(Authenticate(*t, deadline));
    return t;
  }

  // Takes `fd` over: it is closed when this fails.
  Result<std::shared_ptr<Transport>> StartTls(int fd, SteadyClock::time_point deadline) {
    auto fail = [fd](Status s) {
      ::close(fd);
      return s;
    };
    if (!tls_ctx_) {
      SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
      if (!ctx) return fail(Status::IOError(TlsError("TLS setup")));
      SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
      if (options_.tls_verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
        const int ok = options_.tls_ca_file.empty()
                           ? SSL_CTX_set_default_verify_paths(ctx)
                           : SSL_CTX_load_verify_locations(ctx, options_.tls_ca_file.c_str(), nullptr);
        if (ok != 1) {
          SSL_CTX_free(ctx);
          return fail(Status::InvalidArgument(
              TlsError(("cannot load CA file '" + options_.tls_ca_file + "'").c_str())));
        }
      }
      tls_ctx_ = ctx;
    }
    SSL* ssl = SSL_new(tls_ctx_);
    if (!ssl) return fail(Status::IOError(TlsError("TLS setup")));
    auto t = std::make_shared<TlsTransport>(fd, ssl);  // owns both from here on
    SSL_set_fd(ssl, fd);
    const std::string name = options_.tls_server_name.empty() ? options_.host : options_.tls_server_name;
    if (options_.tls_verify) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      if (IsIpAddress(name)) {
        X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
      } else {
        X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
      }
    }
    if (!IsIpAddress(name)) {  // SNI (SSL_set_tlsext_host_name, without its C cast)
      SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(name.c_str()));
    }
    for (;;) {
      ERR_clear_error();
      int rc;
      {
        SigpipeBlock no_sigpipe;
        rc = SSL_connect(ssl);
      }
      if (rc == 1) break;
      const int err = SSL_get_error(ssl, rc);
      short events = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
      if (events == 0) {
        const long verify = SSL_get_verify_result(ssl);
        std::string why = TlsError(("TLS handshake with " + Describe() + " failed").c_str());
        if (verify != X509_V_OK)
          why += std::string(" (certificate: ") + X509_verify_cert_error_string(verify) + ")";
        return Status::IOError(why);
      }
      if (!WaitFd(fd, events, deadline))
        return Status::Timeout("TLS handshake with " + Describe() + " timed out");
    }
    return std::shared_ptr<Transport>(std::move(t));
  }

  // Sends Authenticate and waits for its answer on the bare transport (no reader yet).
  Status Authenticate(Transport& t, SteadyClock::time_point deadline) {
    proto::Writer w;
    proto::AuthenticateRequest req{options_.token};
    w.Put(req);
    const std::string body = w.Join();
    std::string header = wire::EncodeFrameHeader(static_cast<uint16_t>(wire::Api::kAuthenticate),
                                                  0, 0, body.size());
    std::vector<iovec> iov{{header.data(), header.size()},
                           {const_cast<char*>(body.data()), body.size()}};
    RUNNEL_RETURN_IF_ERROR(t.WriteAll(iov));
    wire::FrameDecoder decoder(options_.max_frame_bytes);
    char buf[4096];
    for (;;) {
      auto f = decoder.Next();
      if (!f.ok()) return Status::IOError("bad frame from " + Describe() + ": " + f.status().message());
      if (f->has_value()) {
        auto resp = proto::DecodeResponse<proto::AuthenticateResponse>((*f)->body);
        if (!resp.ok()) return resp.status().WithContext("authenticating to " + Describe());
        return Status::OK();
      }
      if (!t.Pending() && !WaitFd(t.fd(), POLLIN, deadline))
        return Status::Timeout("no answer to Authenticate from " + Describe() + " in time");
      Status error;
      const ssize_t n = t.Read(buf, sizeof buf, &error);
      if (n == 0) return Status::IOError("connection to " + Describe() + " closed while authenticating");
      if (n == -1) return error;
      if (n > 0) decoder.Append(std::string_view(buf, static_cast<size_t>(n)));
    }
  }

  Result<int> ConnectSocket() {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const std::string port = std::to_string(options_.port);
    if (int rc = ::getaddrinfo(options_.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
      return Status::IOError("cannot resolve " + options_.host + ": " + ::gai_strerror(rc));
    }
    Status last = Status::IOError("no address for " + options_.host);
    for (addrinfo* a = res; a; a = a->ai_next) {
      const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0) {
        last = Status::IOError(Errno("socket"));
        continue;
      }
      int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        rc = ::poll(&p, 1, static_cast<int>(options_.connect_timeout_ms));
        int err = 0;
        socklen_t len = sizeof err;
        if (rc == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
          rc = 0;
        } else {
          errno = rc == 0 ? ETIMEDOUT : (err ? err : errno);
          rc = -1;
        }
      }
      if (rc == 0) {
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ::freeaddrinfo(res);
        return fd;
      }
      last = Status::IOError("cannot connect to " + Describe() + ": " + std::strerror(errno));
      ::close(fd);
    }
    ::freeaddrinfo(res);
    return last;
  }

  // Fails every pending request and forgets the socket (the reader owns closing it).
  void Break(const std::shared_ptr<Transport>& t, const Status& why) {
    std::map<uint32_t, Pending> failed;
    ::shutdown(t->fd(), SHUT_RDWR);  // a writer blocked on this socket returns now
    {
      std::lock_guard write_lock(write_mu_);
      std::lock_guard lk(mu_);
      if (conn_ != t) return;
      conn_.reset();  // closed once the last user lets go
      broken_ = false;
      failed.swap(pending_);
    }
    cv_.notify_all();
    const Status s = why.ok() ? Status::IOError("connection to " + Describe() + " lost") : why;
    for (auto& [corr, p] : failed) p.done(s);
  }

  void ExpireOverdue() {
    std::vector<Callback> expired;
    {
      std::lock_guard lk(mu_);
      const auto now = SteadyClock::now();
      for (auto it = pending_.begin(); it != pending_.end();) {
        if (it->second.deadline <= now) {
          expired.push_back(std::move(it->second.done));
          it = pending_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& cb : expired) cb(Status::Timeout("no response from " + Describe() + " in time"));
  }

  void ReadLoop() {
    std::vector<char> buf(256 * 1024);
    std::shared_ptr<Transport> t;
    wire::FrameDecoder decoder(options_.max_frame_bytes);
    while (true) {
      {
        std::unique_lock lk(mu_);
        if (stop_) break;
        if (!conn_) {
          t.reset();
          cv_.wait_for(lk, std::chrono::milliseconds(50));
          lk.unlock();
          ExpireOverdue();
          continue;
        }
        if (conn_ != t) {
          t = conn_;
          decoder = wire::FrameDecoder(options_.max_frame_bytes);
        }
      }
      int rc = 1;
      if (!t->Pending()) {
        pollfd p{t->fd(), POLLIN, 0};
        rc = ::poll(&p, 1, 50);
      }
      ExpireOverdue();
      if (rc == 0) continue;
      if (rc < 0 && errno == EINTR) continue;
      Status read_error;
      ssize_t n = -1;
      if (rc < 0) {
        read_error = Status::IOError(Errno("poll"));
      } else {
        n = t->Read(buf.data(), buf.size(), &read_error);
      }
      if (n == -2) continue;
      if (n <= 0) {
        Status why;
        {
          std::lock_guard lk(mu_);
          why = broken_reason_;
          broken_reason_ = Status::OK();
        }
        if (why.ok() && n < 0) why = read_error;
        Break(t, why);
        continue;
      }
      decoder.Append(std::string_view(buf.data(), static_cast<size_t>(n)));
      for (;;) {
        auto f = decoder.Next();
        if (!f.ok()) {
          Break(t, Status::IOError("bad frame from " + Describe() + ": " + f.status().message()));
          break;
        }
        if (!f->has_value()) break;
        Callback done;
        {
          std::lock_guard lk(mu_);
          auto it = pending_.find((*f)->header.correlation_id);
          if (it == pending_.end()) {
            // A frame-level error from the server (correlation id 0) or a late answer to a
            // request that already timed out.
            continue;
          }
          done = std::move(it->second.done);
          pending_.erase(it);
        }
        done(std::move((*f)->body));
      }
    }
    // Stopping: fail what is left.
    std::map<uint32_t, Pending> left;
    {
      std::lock_guard lk(mu_);
      left.swap(pending_);
    }
    for (auto& [c, p] : left) p.done(Status::Shutdown("connection closed"));
  }

  const TcpOptions options_;
  std::mutex write_mu_;  // one writer at a time; also serializes connecting
  std::mutex mu_;        // guards everything below
  std::condition_variable cv_;
  std::shared_ptr<Transport> conn_;  // null: not connected
  SSL_CTX* tls_ctx_ = nullptr;       // made on the first TLS connect (under write_mu_)
  bool broken_ = false;
  Status broken_reason_;
  bool stop_ = false;
  uint32_t next_corr_ = 1;
  std::map<uint32_t, Pending> pending_;
  std::thread reader_;
};

}  // namespace

std::shared_ptr<Connection> ConnectTcp(const TcpOptions& options) {
  return std::make_shared<TcpConnection>(options);
}

Result<TcpOptions> ParseBrokerAddress(std::string_view address) {
  TcpOptions o;
  constexpr std::string_view kTls = "tls://", kTcp = "tcp://";
  if (address.substr(0, kTls.size()) == kTls) {
    o.tls = true;
    address.remove_prefix(kTls.size());
  } else if (address.substr(0, kTcp.size()) == kTcp) {
    address.remove_prefix(kTcp.size());
  }
  if (const char* token = std::getenv("RUNNEL_TOKEN"); token && *token) o.token = token;
  if (const char* ca = std::getenv("RUNNEL_TLS_CA"); ca && *ca) {
    o.tls = true;
    o.tls_ca_file = ca;
  }
  const size_t colon = address.rfind(':');
  std::string host(colon == std::string_view::npos ? address : address.substr(0, colon));
  if (!host.empty()) o.host = host;
  if (colon != std::string_view::npos) {
    const std::string port(address.substr(colon + 1));
    char* end = nullptr;
    const long v = std::strtol(port.c_str(), &end, 10);
    if (port.empty() || *end != '\0' || v <= 0 || v > 65535) {
      return Status::InvalidArgument("invalid broker address '" + std::string(address) +
                                     "' (expected host:port)");
    }
    o.port = static_cast<uint16_t>(v);
  }
  return o;
}

bool IsRetriable(const Status& s) {
  switch (s.code()) {
    case StatusCode::kIOError:
    case StatusCode::kTimeout:
    case StatusCode::kBusy:
    case StatusCode::kShutdown:
      return true;
    default:
      return false;
  }
}

}  // namespace runnel::client
