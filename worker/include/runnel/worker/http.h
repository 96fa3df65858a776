// A small HTTP/1.1 layer for workers: a client that POSTs with a deadline (webhooks) and a
// server for /metrics, stats and test doubles. Beast and Asio stay inside http.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runnel/common/result.h"

namespace runnel::worker {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query
  HttpHeaders headers;
  std::string body;
  // The value of header `name` (case-insensitive); "" when absent.
  std::string Header(std::string_view name) const;
  std::string Path() const { return target.substr(0, target.find('?')); }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
  HttpHeaders headers;
  int64_t delay_ms = 0;  // wait this long before answering
  bool hang = false;     // after the delay, close the connection without answering
};

// Serves requests on its own threads; the handler runs on them and must be thread-safe when
// `threads` > 1. Stop (or the destructor) closes the listener and every connection.
class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  // Listens on bind:port (port 0 picks a free one). IOError when the address is taken.
  static Result<std::unique_ptr<HttpServer>> Start(const std::string& bind, uint16_t port,
                                                   Handler handler, int threads = 1);
  virtual ~HttpServer() = default;
  virtual uint16_t port() const = 0;
  virtual void Stop() = 0;
};

struct HttpUrl {
  std::string host;
  uint16_t port = 80;
  std::string target = "/";
};
// "http://host[:port][/path]". InvalidArgument for anything else (https is not supported).
Result<HttpUrl> ParseHttpUrl(std::string_view url);

struct HttpResult {
  int status = 0;
  std::string body;
  HttpHeaders headers;
  std::string Header(std::string_view name) const;
};

// Keeps one connection alive between calls. Not thread-safe: one per thread.
class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request and reads the whole answer within timeout_ms. Timeout when the deadline
  // passed (the connection is then dropped), IOError when connecting or the exchange failed.
  Result<HttpResult> Send(const HttpUrl& url, std::string_view method, std::string body,
                          const HttpHeaders& headers, int64_t timeout_ms);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace runnel::worker
