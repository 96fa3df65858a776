// TCP connection: blocking writes under a mutex, one reader thread per connection that matches
// responses to requests by correlation id and expires overdue requests.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

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
      if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
    }
    cv_.notify_all();
    reader_.join();
    if (fd_ >= 0) ::close(fd_);
  }

  std::string Describe() const override {
    return "tcp://" + options_.host + ":" + std::to_string(options_.port);
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
    int fd;
    uint32_t corr;
    {
      std::unique_lock lk(mu_);
      // A socket marked broken is being torn down by the reader; a request sent on it now fails
      // with it (IOError) and the caller's retry reconnects.
      if (stop_) return Status::Shutdown("connection closed");
      if (fd_ < 0) {
        lk.unlock();
        Result<int> c = Connect();
        lk.lock();
        if (!c.ok()) return c.status();
        fd_ = *c;
        cv_.notify_all();
      }
      fd = fd_;
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
    if (Status s = WriteAll(fd, iov); !s.ok()) {
      std::lock_guard lk(mu_);
      if (fd_ == fd && !broken_) {
        broken_ = true;
        broken_reason_ = s;
        ::shutdown(fd_, SHUT_RDWR);  // the reader fails everything pending, this request too
      }
    }
    return Status::OK();
  }

  Result<int> Connect() {
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
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
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

  static Status WriteAll(int fd, std::vector<iovec>& iov) {
    size_t i = 0;
    while (i < iov.size()) {
      const int cnt = static_cast<int>(std::min<size_t>(iov.size() - i, IOV_MAX));
      msghdr msg{};
      msg.msg_iov = iov.data() + i;
      msg.msg_iovlen = static_cast<size_t>(cnt);
      const ssize_t w = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
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

  // Fails every pending request and forgets the socket (the reader owns closing it).
  void Break(int fd, const Status& why) {
    std::map<uint32_t, Pending> failed;
    ::shutdown(fd, SHUT_RDWR);  // a writer blocked on this socket returns now
    {
      std::lock_guard write_lock(write_mu_);  // no writer uses `fd` while it is closed
      std::lock_guard lk(mu_);
      if (fd_ != fd) return;
      ::close(fd_);
      fd_ = -1;
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
    int fd = -1;
    wire::FrameDecoder decoder(options_.max_frame_bytes);
    while (true) {
      {
        std::unique_lock lk(mu_);
        if (stop_) break;
        if (fd_ < 0) {
          cv_.wait_for(lk, std::chrono::milliseconds(50));
          lk.unlock();
          ExpireOverdue();
          continue;
        }
        if (fd_ != fd) {
          fd = fd_;
          decoder = wire::FrameDecoder(options_.max_frame_bytes);
        }
      }
      pollfd p{fd, POLLIN, 0};
      const int rc = ::poll(&p, 1, 50);
      ExpireOverdue();
      if (rc == 0) continue;
      if (rc < 0 && errno == EINTR) continue;
      const ssize_t n = rc < 0 ? -1 : ::read(fd, buf.data(), buf.size());
      if (n <= 0) {
        Status why;
        {
          std::lock_guard lk(mu_);
          why = broken_reason_;
          broken_reason_ = Status::OK();
        }
        if (why.ok() && n < 0) why = Status::IOError(Errno("read"));
        Break(fd, why);
        continue;
      }
      decoder.Append(std::string_view(buf.data(), static_cast<size_t>(n)));
      for (;;) {
        auto f = decoder.Next();
        if (!f.ok()) {
          Break(fd, Status::IOError("bad frame from " + Describe() + ": " + f.status().message()));
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
  int fd_ = -1;
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
