// Raw sockets for the TCP-only integration tests: connect, read until close, a minimal HTTP GET,
// and one Prometheus sample.
#pragma once

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>

namespace runnel::testing {

inline int RawConnect(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// Reads until EOF or timeout; returns the bytes.
inline std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// The whole response (status line, headers, body). `headers`: extra "Name: value\r\n" lines.
inline std::string HttpGet(uint16_t port, const std::string& path, const std::string& headers = "") {
  const int fd = RawConnect(port);
  const std::string req =
      "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + "\r\n";
  REQUIRE(::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  std::string out = ReadAll(fd);
  ::close(fd);
  return out;
}

// True when the peer closed `fd` (EOF or reset) within `timeout_ms`.
inline bool ClosedWithin(int fd, int64_t timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  timeval tv{0, 100'000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return true;
  }
  return false;
}

// The value of the unlabelled sample `name` at /metrics.
inline double MetricValue(uint16_t http_port, const std::string& name,
                          const std::string& headers = "") {
  const std::string metrics = HttpGet(http_port, "/metrics", headers);
  const size_t at = metrics.find("\n" + name + " ");
  REQUIRE_MESSAGE(at != std::string::npos, name);
  return std::stod(metrics.substr(at + name.size() + 2));
}

// A counter the broker bumps after it closed a socket may trail the close a test saw: polls
// /metrics until `name` reaches `at_least` (at most 10 s, never asserted on) and returns its last
// value, for the caller to check.
inline double MetricReaching(uint16_t http_port, const std::string& name, double at_least,
                             const std::string& headers = "") {
  double v = MetricValue(http_port, name, headers);
  for (int i = 0; i < 200 && v < at_least; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    v = MetricValue(http_port, name, headers);
  }
  return v;
}

}  // namespace runnel::testing
