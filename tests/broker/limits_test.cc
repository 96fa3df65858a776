// What careless or hostile clients cannot make runneld spend: descriptors (idle HTTP
// connections past the open-files limit), HTTP connections and slow HTTP clients, frames before
// authentication, consumer names, and topics. Each case runs a real runneld.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "raw_net.h"
#include "runnel/broker/auth.h"
#include "runnel/broker/launch.h"
#include "runnel/client/admin.h"
#include "runnel/client/connection.h"
#include "runnel/client/producer.h"
#include "runnel/common/coding.h"
#include "runnel/common/protocol.h"
#include "runnel/common/record_batch.h"
#include "runnel/testing/temp_dir.h"
#include "test_broker.h"

namespace runnel {
namespace {

using client::Admin;
using testing::ClosedWithin;
using testing::HttpGet;
using testing::RawConnect;
using testing::ReadAll;
using testing::TempDir;
using testing::TestBroker;

bool Alive(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, WNOHANG) == 0;
}

// GET /health until it answers 200 (the accept loop may be backing off) or `tries` are spent.
bool HealthAnswers(uint16_t http_port, int tries = 100) {
  for (int i = 0; i < tries; ++i) {
    if (HttpGet(http_port, "/health").find("200 OK") != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// A Kafka ApiVersions v0 request: header only (api 18, version 0, correlation 7, null client).
std::string KafkaApiVersions() {
  std::string f;
  PutFixed32BE(&f, 10);
  PutFixed16BE(&f, 18);
  PutFixed16BE(&f, 0);
  PutFixed32BE(&f, 7);
  PutFixed16BE(&f, 0xffff);
  return f;
}

// One record of `bytes` bytes to topic/0 through a raw native Produce; the partition's error.
proto::ItemError RawProduce(client::Connection& conn, const std::string& topic, size_t bytes) {
  RecordBatchBuilder builder;
  builder.Add(0, std::nullopt, std::string(bytes, 'v'), {});
  proto::ProduceRequest req;
  req.partitions.push_back({topic, 0, proto::Payload{builder.Build()}});
  auto r = client::Call<proto::ProduceResponse>(conn, std::move(req), 30'000);
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  REQUIRE(r->partitions.size() == 1);
  return r->partitions[0].error;
}

std::shared_ptr<client::Connection> Connect(uint16_t port, std::string token = "") {
  client::TcpOptions o;
  o.port = port;
  o.token = std::move(token);
  o.connect_timeout_ms = 5'000;
  return client::ConnectTcp(o);
}

TEST_CASE("idle HTTP connections past the open-files limit neither abort runneld nor stop a port") {
  if (::access("/usr/bin/prlimit", X_OK) != 0) {
    MESSAGE("skipped: needs /usr/bin/prlimit");
    return;
  }
  // runneld with 256 descriptors (a small container's ulimit -n) and no HTTP cap, so the idle
  // connections take every descriptor: each io thread then meets its first connection with none
  // left (Asio made its reactor lazily and threw: "terminate called without an active
  // exception"), and the HTTP accept loop meets EMFILE (it used to end there).
  TempDir dir;
  const std::string ready = dir.Sub("ready.json");
  const pid_t pid = broker::SpawnProcess(
      {"/usr/bin/prlimit", "--nofile=256:256", RUNNEL_RUNNELD, "--data-dir", dir.Sub("data"),
       "--port", "0", "--http-port", "0", "--kafka-port", "any", "--io-threads", "2",
       "--http-max-connections", "100000", "--log-level", "warn", "--ready-file", ready},
      dir.Sub("runneld.log"));
  auto up = broker::WaitForReady(pid, ready, 20'000);
  REQUIRE_MESSAGE(up.ok(), up.status().ToString() << broker::ReadTextFile(dir.Sub("runneld.log")));

  constexpr int kIdle = 400;
  std::vector<int> idle;
  for (int i = 0; i < kIdle; ++i) idle.push_back(RawConnect(up->http_port));
  // Connections to the native and Kafka ports while no descriptor is left: both io threads of
  // each listener get one (round robin).
  std::vector<int> more;
  for (int i = 0; i < 4; ++i) more.push_back(RawConnect(up->port));
  for (int i = 0; i < 4; ++i) more.push_back(RawConnect(up->kafka_port));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  size_t fds = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    static_cast<void>(e);
    ++fds;
  }
  MESSAGE(kIdle << " idle HTTP connections against a limit of 256: runneld holds " << fds
                << " descriptors");
  CHECK(Alive(pid));
  for (int fd : idle) ::close(fd);
  for (int fd : more) ::close(fd);
  REQUIRE_MESSAGE(Alive(pid), broker::ReadTextFile(dir.Sub("runneld.log")));

  // Every port serves again once the descriptors are back.
  CHECK(HealthAnswers(up->http_port));
  auto conn = Connect(up->port);
  Admin admin(conn);
  REQUIRE(admin.CreateTopic("after", 1).ok());
  CHECK(RawProduce(*conn, "after", 100).ok());
  const int kfd = RawConnect(up->kafka_port);
  const std::string av = KafkaApiVersions();
  REQUIRE(::send(kfd, av.data(), av.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(av.size()));
  char buf[8];
  CHECK(::recv(kfd, buf, sizeof buf, MSG_WAITALL) == static_cast<ssize_t>(sizeof buf));
  ::close(kfd);
  const int status = broker::StopProcess(pid, SIGTERM);
  CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0),
                "wait status " << status << ": " << broker::ReadTextFile(dir.Sub("runneld.log")));
}

TEST_CASE("HTTP connections beyond --http-max-connections get a 503; room frees as others leave") {
  if (testing::EmbeddedMode()) return;
  TestBroker b({"--http-max-connections", "8", "--http-header-timeout", "0"});
  std::vector<int> fds;
  for (int i = 0; i < 8; ++i) fds.push_back(RawConnect(b.http_port()));
  // These eight are served (a request on the last one is answered; it keeps its connection).
  const std::string get = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(::send(fds.back(), get.data(), get.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(get.size()));
  char buf[512];
  CHECK(::recv(fds.back(), buf, sizeof buf, 0) > 0);
  const int extra = RawConnect(b.http_port());
  CHECK(ReadAll(extra).find("503 Service Unavailable") != std::string::npos);
  ::close(extra);
  for (int fd : fds) ::close(fd);
  CHECK(HealthAnswers(b.http_port()));
}

TEST_CASE("HTTP: a slow header, a missing body and an idle keep-alive connection are closed") {
  if (testing::EmbeddedMode()) return;
  TestBroker b({"--http-header-timeout", "1s", "--http-body-timeout", "1s",
                "--http-idle-timeout", "1s"});
  const int silent = RawConnect(b.http_port());
  const int partial = RawConnect(b.http_port());
  const std::string start = "GET /health HTTP/1.1\r\nHo";
  ::send(partial, start.data(), start.size(), MSG_NOSIGNAL);
  const int no_body = RawConnect(b.http_port());
  const std::string header = "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n";
  ::send(no_body, header.data(), header.size(), MSG_NOSIGNAL);
  const int keep_alive = RawConnect(b.http_port());
  const std::string get = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  ::send(keep_alive, get.data(), get.size(), MSG_NOSIGNAL);
  char buf[512];
  CHECK(::recv(keep_alive, buf, sizeof buf, 0) > 0);  // answered, then left idle
  for (int fd : {silent, partial, no_body, keep_alive}) {
    CHECK(ClosedWithin(fd, 15'000));
    ::close(fd);
  }
  CHECK(HealthAnswers(b.http_port()));
}

// ---- before authentication ---------------------------------------------------------------

constexpr char kToken[] = "limits-0123456789abcdef";

std::vector<std::string> AuthArgs(const TempDir& dir, std::vector<std::string> more = {}) {
  const std::string path = dir.Sub("tokens.txt");
  std::ofstream(path) << "all " << kToken << " all * *\n";
  std::vector<std::string> args = {"--auth-tokens", path, "--frame-timeout", "0"};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

TEST_CASE("before authentication only small frames are read; a token is bounded before hashing") {
  if (testing::EmbeddedMode()) return;
  TempDir dir;
  // No frame timeout: a connection waiting for the rest of a big frame would wait for ever.
  TestBroker b(AuthArgs(dir));

  SUBCASE("native: a frame above 64 KiB is refused with an error naming the limit") {
    const int fd = RawConnect(b.port());
    // The header of a 1 MiB Produce and a first 100 KiB of it.
    std::string start = wire::EncodeFrameHeader(static_cast<uint16_t>(wire::Api::kProduce), 0, 5,
                                                 1u << 20);
    start += std::string(100 << 10, '\0');
    ::send(fd, start.data(), start.size(), MSG_NOSIGNAL);
    const std::string answer = ReadAll(fd);
    CHECK(answer.find("65536") != std::string::npos);
    CHECK(answer.find("before authentication") != std::string::npos);
    CHECK(ClosedWithin(fd, 10'000));
    ::close(fd);
  }

  SUBCASE("native: once authenticated, the same connection takes big frames") {
    auto conn = Connect(b.port(), kToken);
    Admin admin(conn);
    REQUIRE(admin.CreateTopic("big", 1).ok());
    CHECK(RawProduce(*conn, "big", 512 << 10).ok());
  }

  SUBCASE("a token longer than 4 KiB is refused unhashed, and the connection closed") {
    auto conn = Connect(b.port(), std::string(5000, 't'));
    auto r = Admin(conn).DescribeTopics();
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find("4096") != std::string::npos);
  }

  SUBCASE("a token file refuses a secret longer than 4 KiB") {
    auto set = broker::TokenSet::Parse("x " + std::string(5000, 's') + " all * *\n", "t");
    REQUIRE_FALSE(set.ok());
    CHECK(set.status().message().find("4096") != std::string::npos);
  }
}

TEST_CASE("Kafka before SASL: a frame above 64 KiB closes the connection at once") {
  if (testing::EmbeddedMode()) return;
  TempDir dir;
  broker::RunneldOptions o;
  o.binary = RUNNEL_RUNNELD;
  o.dir = dir.Sub("runneld");
  o.kafka = true;
  o.extra_args = AuthArgs(dir);
  broker::RunneldProcess runneld(o);
  REQUIRE(runneld.Start().ok());
  // ApiVersions is served before SASL.
  const int ok = RawConnect(runneld.kafka_port());
  const std::string av = KafkaApiVersions();
  REQUIRE(::send(ok, av.data(), av.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(av.size()));
  char buf[8];
  CHECK(::recv(ok, buf, sizeof buf, MSG_WAITALL) == static_cast<ssize_t>(sizeof buf));
  ::close(ok);
  // The start of a 1 MiB Produce: closed without waiting for the rest (there is no frame timeout,
  // so a broker that buffered it would wait for ever).
  const int fd = RawConnect(runneld.kafka_port());
  std::string start;
  PutFixed32BE(&start, 1u << 20);
  PutFixed16BE(&start, 0);  // Produce
  PutFixed16BE(&start, 7);
  PutFixed32BE(&start, 1);
  start += std::string(100 << 10, '\0');
  ::send(fd, start.data(), start.size(), MSG_NOSIGNAL);
  CHECK(ClosedWithin(fd, 10'000));
  ::close(fd);
}

// ---- names and counts ----------------------------------------------------------------------

TEST_CASE("consumer names longer than 255 bytes are refused by Deliver and Claim, naming the limit") {
  TestBroker b;
  auto conn = b.Connect();
  Admin admin(conn);
  REQUIRE(admin.CreateTopic("jobs", 1).ok());
  REQUIRE(admin.CreateQueueGroup("workers", "jobs").ok());
  REQUIRE(RawProduce(*conn, "jobs", 10).ok());
  proto::DeliverRequest deliver;
  deliver.group = "workers";
  deliver.consumer = std::string(256, 'c');
  auto refused = client::Call<proto::DeliverResponse>(*conn, deliver, 30'000);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().IsInvalidArgument());
  CHECK(refused.status().message().find("255") != std::string::npos);
  auto claimed = admin.Claim("workers", std::string(1 << 20, 'c'), 0, 10);
  REQUIRE_FALSE(claimed.ok());
  CHECK(claimed.status().message().find("255") != std::string::npos);
  // 255 bytes is fine.
  deliver.consumer = std::string(255, 'c');
  auto got = client::Call<proto::DeliverResponse>(*conn, deliver, 30'000);
  REQUIRE_MESSAGE(got.ok(), got.status().ToString());
  CHECK(got->records.size() == 1);
}

TEST_CASE("--max-topics: creating and auto-creating beyond it fail clearly; deleting frees room") {
  if (testing::EmbeddedMode()) return;
  TestBroker b({"--max-topics", "3"});
  auto conn = b.Connect();
  Admin admin(conn);
  for (const char* t : {"a", "b", "c"}) REQUIRE(admin.CreateTopic(t, 1).ok());
  const Status fourth = admin.CreateTopic("d", 1);
  CHECK(fourth.code() == StatusCode::kOutOfRange);
  CHECK(fourth.message().find("--max-topics") != std::string::npos);
  CHECK(admin.CreateTopic("a", 1).code() == StatusCode::kAlreadyExists);  // an existing name still says so
  // Auto-creation by produce and by metadata is refused the same way.
  const proto::ItemError produced = RawProduce(*conn, "auto", 10);
  CHECK(produced.error == wire::ErrorCode::kOutOfRange);
  CHECK(produced.message.find("--max-topics") != std::string::npos);
  proto::MetadataRequest md;
  md.topics = {"auto"};
  md.allow_auto_create = true;
  auto described = client::Call<proto::MetadataResponse>(*conn, md, 30'000);
  REQUIRE(described.ok());
  REQUIRE(described->topics.size() == 1);
  CHECK(described->topics[0].error.error != wire::ErrorCode::kNone);
  CHECK(admin.DescribeTopics().value().size() == 3);
  // Existing topics are served as ever, and a deleted one frees its place.
  CHECK(RawProduce(*conn, "a", 10).ok());
  REQUIRE(admin.DeleteTopic("c").ok());
  CHECK(RawProduce(*conn, "auto", 10).ok());
  CHECK(admin.DescribeTopics().value().size() == 3);
}

}  // namespace
}  // namespace runnel
