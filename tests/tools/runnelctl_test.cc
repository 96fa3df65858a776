// runnelctl against a real runneld: every command's human output (key columns) and its --json
// document, and the error paths with their exit codes.
#include <doctest/doctest.h>
#include <rocksdb/db.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "../broker/raw_net.h"
#include "../broker/test_broker.h"
#include "runnel/client/admin.h"
#include "runnel/client/consumer.h"
#include "runnel/client/producer.h"
#include "runnel/common/json.h"
#include "runnel/storage/format.h"
#include "runnel/testing/raw_store.h"

namespace runnel {
namespace {

using testing::TestBroker;

struct Ctl {
  explicit Ctl(const TestBroker& b) : broker("127.0.0.1:" + std::to_string(b.port())) {}
  broker::ProcessOutput operator()(std::vector<std::string> args,
                                   const std::string& input = {}) const {
    std::vector<std::string> full = {RUNNEL_RUNNELCTL, "--broker", broker, "--timeout", "10s"};
    full.insert(full.end(), args.begin(), args.end());
    return broker::RunProcess(full, input);
  }
  // Runs with --json, requires success and returns the parsed document.
  JsonValue Json(std::vector<std::string> args, const std::string& input = {}) const {
    args.push_back("--json");
    auto r = (*this)(args, input);
    INFO("stderr: " << r.err << " stdout: " << r.out);
    REQUIRE(r.exit_code == 0);
    auto doc = ParseJson(r.out);
    REQUIRE(doc.ok());
    return std::move(doc).value();
  }
  std::string broker;
};

bool Contains(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

// The line of a table whose first cell is `first`, split on whitespace.
std::vector<std::string> Row(const std::string& table, const std::string& first) {
  std::istringstream lines(table);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream cells(line);
    std::vector<std::string> out;
    std::string c;
    while (cells >> c) out.push_back(c);
    if (!out.empty() && out[0] == first) return out;
  }
  return {};
}

// A consumer commits only what it handed out: `-n 400` of a 500-record batch leaves 100 for the
// next consumer of the group, starting right after the last record printed.
TEST_CASE("runnelctl: consume -n with a group commits only the records it printed") {
  if (testing::EmbeddedMode()) return;
  TestBroker b({"--auto-create-topics=false"});
  Ctl ctl(b);
  REQUIRE(ctl({"topic", "create", "scans", "--partitions", "1"}).exit_code == 0);
  std::string lines;
  for (int i = 0; i < 500; ++i) lines += "scan-" + std::to_string(i) + "\n";
  REQUIRE(ctl.Json({"produce", "scans"}, lines).Int("produced") == 500);

  auto r = ctl({"consume", "scans", "--group", "g", "-n", "400", "--format", "{offset} {value}"});
  REQUIRE(r.exit_code == 0);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 400);
  CHECK(Contains(r.out, "399 scan-399\n"));
  CHECK(ctl.Json({"group", "describe", "g"}).Int("lag") == 100);
  auto rest = ctl.Json({"consume", "scans", "--group", "g"});
  REQUIRE(rest.Int("count") == 100);
  CHECK(rest.Find("records")->array.front().Int("offset") == 400);
  CHECK(rest.Find("records")->array.back().Str("value") == "scan-499");
  CHECK(ctl.Json({"group", "describe", "g"}).Int("lag") == 0);
}

// An online backup holds everything acknowledged before it started, consistent with the group
// offsets; runneld started on it serves every such record at the offset its ack named.
TEST_CASE("runnelctl backup: a copy taken under load restores every acknowledged record") {
  if (testing::EmbeddedMode()) return;
  TestBroker b({"--auto-create-topics=false"});
  Ctl ctl(b);
  REQUIRE(ctl({"topic", "create", "ledger", "--partitions", "3"}).exit_code == 0);
  auto producer = std::move(client::Producer::Create(b.Connect(), {})).value();
  using Key = std::pair<int32_t, int64_t>;
  std::mutex mu;
  std::map<Key, std::string> acked;  // (partition, offset) -> value, in ack order below
  std::vector<Key> ack_order;
  auto send = [&](int i) {
    const std::string v = "entry-" + std::to_string(i);
    auto md =
        producer
            ->Send(client::ProducerRecord{"ledger", "k" + std::to_string(i % 13), v, {}, {}, {}})
            .get();
    CHECK(md.ok());  // (not REQUIRE: this also runs on the load thread)
    if (!md.ok()) return false;
    std::lock_guard lk(mu);
    CHECK(acked.emplace(Key{md->partition, md->offset}, v).second);
    ack_order.push_back({md->partition, md->offset});
    return true;
  };
  for (int i = 0; i < 300; ++i) REQUIRE(send(i));
  // A stream group commits 200 of them.
  REQUIRE(ctl.Json({"consume", "ledger", "--group", "g", "-n", "200"}).Int("count") == 200);

  // Under load: a producer keeps appending while the broker writes the backup.
  std::atomic<bool> stop{false};
  std::thread load([&] {
    for (int i = 300; !stop.load() && send(i); ++i) {
    }
  });
  for (;;) {  // some acks of the load land before the backup starts
    {
      std::lock_guard lk(mu);
      if (ack_order.size() >= 350) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  testing::TempDir restore;
  size_t before_backup;
  {
    std::lock_guard lk(mu);
    before_backup = ack_order.size();
  }
  auto r = ctl({"backup", restore.Sub("data")});
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(Contains(r.out, "backup written to " + restore.Sub("data")));
  stop = true;
  load.join();
  // Not into a directory that holds something, and nothing is overwritten.
  r = ctl({"backup", restore.Sub("data")});
  CHECK(r.exit_code == 1);
  CHECK(Contains(r.err, "is not empty"));

  broker::RunneldProcess restored(broker::RunneldOptions{
      RUNNEL_RUNNELD, restore.path(), 0, false, "warn", {"--auto-create-topics=false"}});
  REQUIRE_MESSAGE(restored.Start().ok(), restored.Log());
  Ctl rctl(b);
  rctl.broker = "127.0.0.1:" + std::to_string(restored.port());
  // The group resumes where it committed: the rest of the log, each record once.
  auto rest = rctl.Json({"consume", "ledger", "--group", "g"});
  auto all = rctl.Json({"consume", "ledger", "--from", "earliest"});
  std::map<Key, std::string> stored;
  for (const auto& rec : all.Find("records")->array) {
    CHECK(stored
              .emplace(Key{static_cast<int32_t>(rec.Int("partition")), rec.Int("offset")},
                       rec.Str("value"))
              .second);
  }
  std::map<int32_t, int64_t> next;  // offsets contiguous from 0 per partition
  for (const auto& [key, value] : stored) CHECK(key.second == next[key.first]++);
  size_t missing = 0;
  for (size_t i = 0; i < before_backup; ++i) {
    auto it = stored.find(ack_order[i]);
    missing += it == stored.end() || it->second != acked[ack_order[i]];
  }
  CHECK_MESSAGE(missing == 0, missing << " records acknowledged before the backup are missing");
  for (const auto& [key, value] : stored) CHECK(acked.count(key) == 1);  // nothing invented
  CHECK(rest.Int("count") == static_cast<int64_t>(stored.size()) - 200);
  MESSAGE("backup: " << before_backup << " records acknowledged before it, " << stored.size()
                     << " in the copy, " << acked.size() << " acknowledged in all");
}

TEST_CASE("runnelctl: topics, produce and consume") {
  if (testing::EmbeddedMode()) return;
  TestBroker b({"--auto-create-topics=false"});
  Ctl ctl(b);

  auto r = ctl({"topic", "create", "orders", "--partitions", "3", "--retention", "7d",
                "--retention-bytes", "1GiB"});
  REQUIRE(r.exit_code == 0);
  CHECK(Contains(r.out, "created topic orders"));
  r = ctl({"topic", "create", "orders", "-p", "3"});
  CHECK(r.exit_code == 1);
  CHECK(Contains(r.err, "already exists"));

  // Keyed lines from stdin; the JSON document gives each record's offset.
  auto produced = ctl.Json({"produce", "orders", "--key-sep", ":"}, "k1:a\nk2:b\nk1:c\nk3:d\n");
  CHECK(produced.Int("produced") == 4);
  const JsonValue* recs = produced.Find("records");
  REQUIRE(recs != nullptr);
  REQUIRE(recs->array.size() == 4);
  CHECK(recs->array[0].Int("partition") == recs->array[2].Int("partition"));  // same key
  CHECK(recs->array[2].Int("offset") == recs->array[0].Int("offset") + 1);
  r = ctl({"produce", "orders", "single", "--partition", "0", "--header", "h=v"});
  REQUIRE(r.exit_code == 0);
  CHECK(Contains(r.out, "orders/0@"));

  r = ctl({"topic", "list"});
  REQUIRE(r.exit_code == 0);
  auto row = Row(r.out, "orders");
  REQUIRE(row.size() >= 5);
  CHECK(row[1] == "3");
  CHECK(row[2] == "5");
  CHECK(Contains(r.out, "7d"));
  auto listed = ctl.Json({"topic", "list"});
  REQUIRE(listed.Find("topics")->array.size() == 1);
  CHECK(listed.Find("topics")->array[0].Int("records") == 5);

  auto desc = ctl.Json({"topic", "describe", "orders"});
  CHECK(desc.Int("partition_count") == 3);
  CHECK(desc.Find("config")->Str("retention.ms") == "604800000");
  CHECK(desc.Find("config")->Str("retention.bytes") == "1073741824");
  int64_t total = 0;
  for (const auto& p : desc.Find("partitions")->array)
    total += p.Int("log_end") - p.Int("log_start");
  CHECK(total == 5);
  r = ctl({"topic", "describe", "orders"});
  CHECK(Contains(r.out, "retention.bytes:"));
  CHECK(Contains(r.out, "1.0 GiB"));
  row = Row(r.out, "0");  // PARTITION LOG-START LOG-END RECORDS SIZE ("94 B": two cells)
  REQUIRE(row.size() == 6);
  CHECK(std::stoll(row[2]) - std::stoll(row[1]) == std::stoll(row[3]));

  // Without a group: reads to the end and stops, commits nothing.
  r = ctl({"consume", "orders", "--format", "{partition}:{offset} {key}={value}"});
  REQUIRE(r.exit_code == 0);
  CHECK(Contains(r.out, " k1=a\n"));
  CHECK(Contains(r.out, " k1=c\n"));
  CHECK(Contains(r.out, " null=single\n"));
  auto consumed = ctl.Json({"consume", "orders", "-n", "2"});
  CHECK(consumed.Int("count") == 2);
  auto p0 = ctl.Json({"consume", "orders", "--partition", "0", "--from", "0"});
  CHECK(p0.Find("records")->array.back().Str("value") == "single");
  CHECK(p0.Find("records")->array.back().Find("headers")->Str("h") == "v");
  auto latest = ctl.Json({"consume", "orders", "--from", "latest"});
  CHECK(latest.Int("count") == 0);

  // With a group: commits, so the group has no lag afterwards and a second read is empty.
  auto first = ctl.Json({"consume", "orders", "--group", "g1"});
  CHECK(first.Int("count") == 5);
  auto again = ctl.Json({"consume", "orders", "--group", "g1"});
  CHECK(again.Int("count") == 0);
  auto g = ctl.Json({"group", "describe", "g1"});
  CHECK(g.Str("mode") == "stream");
  CHECK(g.Int("lag") == 0);
  r = ctl({"group", "list"});
  row = Row(r.out, "g1");
  REQUIRE(row.size() >= 4);
  CHECK(row[1] == "stream");
  CHECK(row[3] == "0");

  // Reset: a dry run changes nothing; the real one rewinds so the records are read again.
  auto dry = ctl.Json(
      {"group", "reset-offsets", "g1", "--topic", "orders", "--to", "earliest", "--dry-run"});
  CHECK_FALSE(dry.Find("applied")->boolean);
  CHECK(ctl.Json({"group", "describe", "g1"}).Int("lag") == 0);
  r = ctl({"group", "reset-offsets", "g1", "--topic", "orders", "--to", "offset", "1"});
  REQUIRE(r.exit_code == 0);
  CHECK(Contains(r.out, "offsets reset"));
  CHECK(ctl.Json({"group", "describe", "g1"}).Int("lag") == 2);  // partitions with >= 2 records
  CHECK(ctl.Json({"consume", "orders", "--group", "g1"}).Int("count") == 2);

  auto groups = ctl.Json({"group", "list"});
  REQUIRE(groups.Find("groups")->array.size() == 1);
  CHECK(groups.Find("groups")->array[0].Str("name") == "g1");
  r = ctl({"group", "delete", "g1"});
  CHECK(r.exit_code == 0);
  CHECK(Contains(r.out, "deleted group g1"));
  CHECK(ctl({"group", "describe", "g1"}).exit_code == 1);
  r = ctl({"topic", "alter", "orders", "--partitions", "4", "--retention", "1d"});
  REQUIRE(r.exit_code == 0);
  desc = ctl.Json({"topic", "describe", "orders"});
  CHECK(desc.Int("partition_count") == 4);
  CHECK(desc.Find("config")->Str("retention.ms") == "86400000");
  CHECK(ctl({"topic", "delete", "orders"}).exit_code == 0);
  CHECK(ctl.Json({"topic", "list"}).Find("topics")->array.empty());
}

TEST_CASE("runnelctl: pending, claim, status and dead letters of a queue group") {
  if (testing::EmbeddedMode()) return;
  TestBroker b({"--auto-create-topics=false"});
  Ctl ctl(b);
  REQUIRE(ctl({"topic", "create", "jobs", "-p", "1"}).exit_code == 0);
  REQUIRE(ctl({"produce", "jobs", "--dedup-key", "job-0", "j0"}).exit_code == 0);
  REQUIRE(ctl({"produce", "jobs"}, "j1\nj2\nj3\n").exit_code == 0);
  client::Admin admin(b.Connect());
  REQUIRE(admin.CreateQueueGroup("workers", "jobs").ok());
  client::ConsumerOptions co;
  co.mode = client::ConsumerMode::kQueue;
  co.group = "workers";
  co.topics = {"jobs"};
  co.consumer_name = "w1";
  co.max_poll_records = 10;
  auto consumer = std::move(client::Consumer::Create(b.Connect(), co)).value();
  std::vector<client::ConsumerRecord> got;
  for (int i = 0; i < 50 && got.size() < 4; ++i) {
    auto r = consumer->Poll(200);
    REQUIRE(r.ok());
    got.insert(got.end(), r->begin(), r->end());
  }
  REQUIRE(got.size() == 4);
  REQUIRE(consumer->Reject(got[1], "malformed").ok());  // offset 1 to the DLQ
  REQUIRE(consumer->Ack(got[2]).ok());

  auto pending = ctl.Json({"pending", "workers", "jobs"});
  REQUIRE(pending.Int("count") == 2);
  CHECK(pending.Find("entries")->array[0].Int("offset") == 0);
  CHECK(pending.Find("entries")->array[0].Str("consumer") == "w1");
  CHECK(pending.Find("entries")->array[0].Str("state") == "locked");
  auto r = ctl({"pending", "workers", "jobs"});
  auto row = Row(r.out, "0");
  REQUIRE(row.size() >= 5);
  CHECK(row[2] == "locked");
  CHECK(row[3] == "w1");
  CHECK(ctl.Json({"pending", "workers", "jobs", "--consumer", "w2"}).Int("count") == 0);
  CHECK(ctl.Json({"pending", "workers", "jobs", "--min-idle", "1h"}).Int("count") == 0);

  // status: by offset and by dedup key.
  auto st = ctl.Json({"status", "jobs", "--partition", "0", "--offset", "1"});
  REQUIRE(st.Find("groups")->array.size() == 1);
  CHECK(st.Find("groups")->array[0].Str("state") == "dead_lettered");
  CHECK(st.Find("groups")->array[0].Str("reason") == "malformed");
  st = ctl.Json({"status", "jobs", "--dedup-key", "job-0"});
  CHECK(st.Find("groups")->array[0].Str("state") == "pending");
  r = ctl({"status", "jobs", "--partition", "0", "--offset", "2"});
  CHECK(Row(r.out, "workers").at(1) == "acked");

  // claim hands the idle entries to w2.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto claimed = ctl.Json({"claim", "workers", "jobs", "--consumer", "w2", "--min-idle", "10ms"});
  CHECK(claimed.Int("count") == 2);
  r = ctl({"claim", "workers", "jobs", "--consumer", "w3", "--min-idle", "1h"});
  REQUIRE(r.exit_code == 0);
  CHECK(Contains(r.out, "nothing to claim"));
  CHECK(ctl.Json({"pending", "workers", "jobs", "--consumer", "w2"}).Int("count") == 2);
  CHECK_FALSE(consumer->Ack(got[0]).ok());  // w1 lost its lock

  // Dead letters: list, show, redrive a range, purge.
  auto dl = ctl.Json({"dlq", "list", "workers", "jobs"});
  REQUIRE(dl.Int("count") == 1);
  const JsonValue& d = dl.Find("dead_letters")->array[0];
  CHECK(d.Str("reason") == "malformed");
  CHECK(d.Int("source_offset") == 1);
  const int64_t dlq_offset = d.Int("dlq_offset");
  r = ctl({"dlq", "list", "workers", "jobs"});
  CHECK(Contains(r.out, "jobs/0@1"));
  auto shown = ctl.Json({"dlq", "show", "workers", "jobs", "--offset", std::to_string(dlq_offset)});
  CHECK(shown.Str("value") == "j1");
  r = ctl({"dlq", "show", "workers", "jobs", "--offset", std::to_string(dlq_offset)});
  CHECK(Contains(r.out, "Reason:"));
  CHECK(Contains(r.out, "malformed"));
  CHECK(Contains(r.out, "Value:"));
  CHECK(ctl({"dlq", "show", "workers", "jobs", "--offset", "999"}).exit_code == 1);
  auto redriven = ctl.Json({"dlq", "redrive", "workers", "jobs", "--range",
                            std::to_string(dlq_offset) + "-" + std::to_string(dlq_offset)});
  CHECK(redriven.Int("redriven") == 1);
  CHECK(ctl.Json({"topic", "describe", "jobs"}).Find("partitions")->array[0].Int("log_end") == 5);
  CHECK(ctl({"dlq", "purge", "workers", "jobs"}).exit_code == 0);
  CHECK(ctl.Json({"dlq", "list", "workers", "jobs"}).Int("count") == 0);

  // A queue group's cursor moves like XGROUP SETID; the describe shows it.
  auto reset = ctl.Json({"group", "reset-offsets", "workers", "--topic", "jobs", "--to", "latest"});
  CHECK(reset.Find("partitions")->array[0].Int("new") == 5);
  auto g = ctl.Json({"group", "describe", "workers"});
  CHECK(g.Str("mode") == "queue");
  CHECK(g.Find("partitions")->array[0].Int("delivered") == 5);
  CHECK(g.Find("partitions")->array[0].Int("lag") == 0);
  CHECK(g.Int("pending") == 2);
  r = ctl({"group", "describe", "workers"});
  CHECK(Contains(r.out, "OLDEST-PENDING"));
  CHECK(Row(r.out, "w2").size() == 3);

  // Wrong topic for the group, a stream command on a queue group.
  r = ctl({"pending", "workers", "other"});
  CHECK(r.exit_code == 1);
  CHECK(Contains(r.err, "reads topic 'jobs'"));
}

TEST_CASE("runnelctl: stats, dump and completion") {
  if (testing::EmbeddedMode()) return;
  TestBroker b;
  Ctl ctl(b);
  REQUIRE(ctl({"topic", "create", "t", "-p", "2"}).exit_code == 0);
  REQUIRE(ctl({"produce", "t"}, "a\nb\nc\n").exit_code == 0);
  auto stats = ctl.Json({"stats", "--interval", "100ms"});
  CHECK(stats.Int("topics") == 1);
  CHECK(stats.Int("partitions") == 2);
  CHECK(stats.Int("records") == 3);
  CHECK(stats.Int("disk_bytes") > 0);
  CHECK(stats.Int("connections") >= 1);
  auto r = ctl({"stats", "--interval", "0s"});
  CHECK(Contains(r.out, "Connections:"));
  CHECK(Contains(r.out, "1 (2 partitions, 3 records)"));

  // dump refuses a directory a live broker holds.
  const std::vector<std::string> dump = {RUNNEL_RUNNELCTL, "dump", "--data-dir", b.data_dir()};
  auto live = broker::RunProcess(dump);
  CHECK(live.exit_code == 1);
  CHECK(Contains(live.err, "live runneld"));
  REQUIRE(b.Stop() == 0);
  auto human = broker::RunProcess(dump);
  INFO(human.err);
  REQUIRE(human.exit_code == 0);
  CHECK(Contains(human.out, "topic t (id"));
  CHECK(Contains(human.out, " ok\n"));
  std::vector<std::string> json_args = dump;
  json_args.push_back("--json");
  auto js = broker::RunProcess(json_args);
  REQUIRE(js.exit_code == 0);
  auto doc = ParseJson(js.out);
  REQUIRE(doc.ok());
  CHECK(doc->Int("bad_batches") == 0);
  int64_t records = 0;
  for (const auto& p : doc->Find("topics")->array[0].Find("partitions")->array) {
    records += p.Int("record_count");
    for (const auto& batch : p.Find("batches")->array) CHECK(batch.Find("crc_ok")->boolean);
  }
  CHECK(records == 3);
  auto missing =
      broker::RunProcess({RUNNEL_RUNNELCTL, "dump", "--data-dir", b.data_dir() + "/nope"});
  CHECK(missing.exit_code == 1);
  CHECK(Contains(missing.err, "holds no Runnel store"));

  auto completion = broker::RunProcess({RUNNEL_RUNNELCTL, "completion", "bash"});
  REQUIRE(completion.exit_code == 0);
  CHECK(Contains(completion.out, "complete -F _runnelctl runnelctl"));
  CHECK(Contains(completion.out, "\"group\") echo \"list describe reset-offsets delete"));
}

TEST_CASE("runnelctl: errors give the documented exit code and one line on stderr") {
  if (testing::EmbeddedMode()) return;
  TestBroker b({"--auto-create-topics=false"});
  Ctl ctl(b);
  auto one_line = [](const broker::ProcessOutput& r) {
    return !r.err.empty() && r.err.find('\n') == r.err.size() - 1 &&
           r.err.starts_with("runnelctl: ");
  };
  auto r = ctl({"topic", "describe", "nope"});
  CHECK(r.exit_code == 1);
  CHECK(Contains(r.err, "unknown topic 'nope'"));
  CHECK(one_line(r));
  r = ctl({"consume", "nope"});
  CHECK(r.exit_code == 1);
  CHECK(Contains(r.err, "nope"));
  r = ctl({"produce", "nope", "x"});
  CHECK(r.exit_code == 1);
  REQUIRE(ctl({"topic", "create", "kv", "-p", "1"}).exit_code == 0);
  r = ctl({"produce", "kv", "--key-sep", "="}, "a=1\nno separator\nc=3\n");
  CHECK(r.exit_code == 2);
  CHECK(Contains(r.err, "line 2 has no '='; the 1 lines before it were produced"));
  CHECK(ctl.Json({"consume", "kv"}).Int("count") == 1);
  r = broker::RunProcess({RUNNEL_RUNNELCTL, "--broker", "127.0.0.1:1", "topic", "list"});
  CHECK(r.exit_code == 3);
  CHECK(Contains(r.err, "cannot reach the broker at 127.0.0.1:1"));
  CHECK(one_line(r));
  r = broker::RunProcess({RUNNEL_RUNNELCTL, "topic", "list"}, "", {"RUNNEL_BROKER=127.0.0.1:1"});
  CHECK(r.exit_code == 3);  // the environment names the broker
  r = ctl({"pending", "g", "t", "--min-idle", "3x"});
  CHECK(r.exit_code == 2);
  CHECK(Contains(r.err, "--min-idle"));
  r = ctl({"--timeout", "soon", "topic", "list"});
  CHECK(r.exit_code == 2);
  r = ctl({"dlq", "redrive", "g", "t", "--range", "9-3"});
  CHECK(r.exit_code == 2);
  CHECK(Contains(r.err, "ends before it starts"));
  r = ctl({"dlq", "redrive", "g", "t", "--range", "x"});
  CHECK(r.exit_code == 2);
  r = ctl({"topic", "create", "t"});  // --partitions is required
  CHECK(r.exit_code == 2);
  CHECK(one_line(r));
  r = ctl({"topic", "list", "--bogus"});
  CHECK(r.exit_code == 2);
  r = ctl({"consume", "t", "--from", "yesterday"});
  CHECK(r.exit_code == 2);
  r = ctl({"group", "reset-offsets", "g", "--topic", "t", "--to", "sideways"});
  CHECK(r.exit_code == 2);
  r = ctl({"topic", "create", "../x", "-p", "1"});
  CHECK(r.exit_code == 1);
  CHECK(one_line(r));
}

TEST_CASE("runnelctl: token new makes a working token; refusals exit 4") {
  if (testing::EmbeddedMode()) return;
  testing::TempDir dir;
  auto run = [](std::vector<std::string> args) {
    args.insert(args.begin(), RUNNEL_RUNNELCTL);
    return broker::RunProcess(args);
  };
  auto admin = run({"token", "new", "ops", "--json"});
  REQUIRE(admin.exit_code == 0);
  auto doc = ParseJson(admin.out);
  REQUIRE(doc.ok());
  const std::string admin_token = doc->Str("token");
  CHECK(admin_token.size() == 28);
  CHECK(doc->Str("line").find("sha256:") != std::string::npos);
  CHECK(doc->Str("line").find(admin_token) == std::string::npos);  // the file never holds it
  auto reader = run({"token", "new", "reader", "--ops", "consume", "--topics", "orders*",
                     "--groups", "-", "--json"});
  REQUIRE(reader.exit_code == 0);
  auto reader_doc = ParseJson(reader.out);
  REQUIRE(reader_doc.ok());
  CHECK(run({"token", "new", "x", "--ops", "write"}).exit_code == 2);  // checked by the parser

  const std::string file = dir.Sub("tokens.txt");
  std::ofstream(file) << doc->Str("line") << "\n" << reader_doc->Str("line") << "\n";
  namespace fs = std::filesystem;
  fs::permissions(file, fs::perms(0644));
  TestBroker b({"--auth-tokens", file});
  Ctl ctl(b);
  // A token file others can read is named in a warning; what runneld writes is its own.
  CHECK(Contains(b.Log(), "token file " + file + " is open to other users (mode 0644): chmod 600"));
  size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(b.data_dir())) {
    const auto others = fs::perms::group_all | fs::perms::others_all;
    CHECK_MESSAGE((e.status().permissions() & others) == fs::perms::none, e.path());
    files += e.is_regular_file();
  }
  CHECK(files >= 5);  // the lock file and RocksDB's CURRENT, MANIFEST, OPTIONS, WAL at least
  auto r = ctl({"topic", "list"});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "pass --token or set RUNNEL_TOKEN"));
  r = ctl({"topic", "list", "--token", "rnl_wrong-wrong-wrong-wrong"});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "invalid token"));
  r = ctl({"topic", "create", "orders", "-p", "1", "--token", admin_token});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  r = ctl({"topic", "create", "orders2", "-p", "1", "--token", reader_doc->Str("token")});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "may not administer topic 'orders2'"));
  r = ctl({"topic", "list", "--token", reader_doc->Str("token")});
  CHECK(r.exit_code == 0);
  CHECK(Contains(r.out, "orders"));
}

// ---- damaged data directories: runneld refuses or truncates, runnelctl verify names the damage
// ----

// `runnelctl verify DATA_DIR [--json]`.
broker::ProcessOutput RunVerify(const std::string& data_dir, bool json = false) {
  std::vector<std::string> args = {RUNNEL_RUNNELCTL, "verify", data_dir};
  if (json) args.push_back("--json");
  return broker::RunProcess(args);
}

// Produces "v0".."v{n-1}" to t/0, one acknowledged batch (one WAL record) each.
void ProduceOneByOne(TestBroker& b, int n) {
  client::ProducerOptions po;
  po.linger_ms = 0;
  auto producer = std::move(client::Producer::Create(b.Connect(), po)).value();
  for (int i = 0; i < n; ++i) {
    auto md =
        producer->Send(client::ProducerRecord{"t", std::nullopt, "v" + std::to_string(i), {}, 0, 0})
            .get();
    REQUIRE(md.ok());
    REQUIRE(md->offset == i);
  }
}

std::string NewestWal(const std::string& data_dir) {
  std::vector<std::string> wals;
  for (const auto& e : std::filesystem::directory_iterator(data_dir + "/store"))
    if (e.path().extension() == ".log") wals.push_back(e.path().string());
  REQUIRE(!wals.empty());
  std::sort(wals.begin(), wals.end());
  return wals.back();
}

TEST_CASE("runneld: a first start on an empty data directory logs no error") {
  if (testing::EmbeddedMode()) return;
  TestBroker b;  // --log-level warn: any warning or error would be in the log
  REQUIRE(b.Stop() == 0);
  INFO(b.Log());
  CHECK_FALSE(Contains(b.Log(), " error "));
  CHECK_FALSE(Contains(b.Log(), "NotFound"));
}

TEST_CASE(
    "runneld: a WAL damaged in its middle refuses the start in one line; "
    "--recover-truncate starts without what follows the damage") {
  if (testing::EmbeddedMode()) return;
  TestBroker b({"--auto-create-topics=false"});
  Ctl ctl(b);
  REQUIRE(ctl({"topic", "create", "t", "--partitions", "1"}).exit_code == 0);
  constexpr int kRecords = 60;
  ProduceOneByOne(b, kRecords);
  b.Kill();  // SIGKILL: the acknowledged records are in the synced WAL only
  const std::string data_dir = b.data_dir();
  const std::string wal = NewestWal(data_dir);
  const std::string wal_name = std::filesystem::path(wal).filename().string();
  {
    const auto size = std::filesystem::file_size(wal);
    std::fstream f(wal, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(size / 2));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x40);
    f.seekp(static_cast<std::streamoff>(size / 2));
    f.write(&c, 1);
    REQUIRE(f.good());
  }

  // runneld refuses, with one line that names the file and what is at stake.
  const std::pair<int, std::string> refused = TestBroker::RunToExit(
      {"--data-dir", data_dir, "--port", "0", "--http-port", "0", "--kafka-port", "0"});
  const int code = refused.first;
  const std::string& out = refused.second;
  INFO(out);
  CHECK(code == 1);
  CHECK(std::count(out.begin(), out.end(), '\n') == 1);
  CHECK(Contains(out, "runneld: cannot open data directory " + data_dir + ": "));
  CHECK(Contains(out, "store WAL " + wal_name + " is corrupt at byte "));
  CHECK(Contains(out, "records acknowledged after that point would be lost"));
  CHECK(Contains(out, "run `runneld --recover-truncate` to start anyway"));

  // verify says the same, offline.
  auto v = RunVerify(data_dir);
  CHECK(v.exit_code == 1);
  CHECK(Contains(v.err, "store WAL " + wal_name + " is corrupt at byte "));

  // --recover-truncate starts, logs what it dropped, and serves what precedes the damage.
  broker::RunneldProcess recovered(
      broker::RunneldOptions{RUNNEL_RUNNELD,
                             std::filesystem::path(data_dir).parent_path().string(),
                             0,
                             true,
                             "warn",
                             {"--recover-truncate", "--auto-create-topics=false"}});
  REQUIRE_MESSAGE(recovered.Start().ok(), recovered.Log());
  CHECK(
      Contains(recovered.Log(), "recover-truncate: store WAL " + wal_name + " is corrupt at byte"));
  CHECK(Contains(recovered.Log(), "records acknowledged in it are lost"));
  auto consumed = broker::RunProcess({RUNNEL_RUNNELCTL, "--broker",
                                      "127.0.0.1:" + std::to_string(recovered.port()), "consume",
                                      "t", "--json"});
  REQUIRE(consumed.exit_code == 0);
  auto doc = ParseJson(consumed.out);
  REQUIRE(doc.ok());
  const auto& records = doc->Find("records")->array;
  MESSAGE("kept " << records.size() << " of " << kRecords);
  CHECK(records.size() > 0);
  CHECK(records.size() < static_cast<size_t>(kRecords));
  for (size_t i = 0; i < records.size(); ++i) {
    CHECK(records[i].Int("offset") == static_cast<int64_t>(i));
    CHECK(records[i].Str("value") == "v" + std::to_string(i));
  }
  REQUIRE(recovered.Stop(SIGTERM) == 0);
  auto healthy = RunVerify(data_dir);
  INFO(healthy.err);
  CHECK(healthy.exit_code == 0);
}

TEST_CASE("runnelctl verify: passes on a healthy directory, names partition and offset of damage") {
  if (testing::EmbeddedMode()) return;
  TestBroker b({"--auto-create-topics=false"});
  Ctl ctl(b);
  REQUIRE(ctl({"topic", "create", "t", "--partitions", "2"}).exit_code == 0);
  // Three one-record batches in each partition: one line per produce call, so no batch boundary
  // depends on when a second line is read.
  for (int i = 0; i < 3; ++i) {
    REQUIRE(ctl({"produce", "t", "-p", "0"}, "a\n").exit_code == 0);
    REQUIRE(ctl({"produce", "t", "-p", "1"}, "c\n").exit_code == 0);
  }
  REQUIRE(ctl({"consume", "t", "--group", "g", "-n", "1"}).exit_code == 0);
  // verify refuses a directory a live broker holds.
  CHECK(RunVerify(b.data_dir()).exit_code == 1);
  REQUIRE(b.Stop() == 0);

  auto ok = RunVerify(b.data_dir());
  INFO(ok.out << ok.err);
  REQUIRE(ok.exit_code == 0);
  CHECK(Contains(ok.out, "2 partitions, 6 batches, 6 records"));
  CHECK(Contains(ok.out, "ok: every batch checked"));
  auto js = RunVerify(b.data_dir(), true);
  REQUIRE(js.exit_code == 0);
  auto doc = ParseJson(js.out);
  REQUIRE(doc.ok());
  CHECK(doc->Find("ok")->boolean);
  CHECK(doc->Int("records") == 6);
  CHECK(doc->Find("problems")->array.empty());

  // Damage t/0's batch at offset 2 (a flipped byte in its records: the CRC fails) and lose t/1's
  // batch at offset 2 (a gap), through RocksDB itself: its own checksums hold.
  {
    testing::RawStore raw(b.data_dir());
    rocksdb::DB* db = &raw.db();
    // The topic's partitions are the first two log column families created.
    std::vector<std::pair<uint32_t, rocksdb::ColumnFamilyHandle*>> logs;
    for (auto* h : raw.families())
      if (auto uid = storage::format::ParseLogColumnFamilyName(h->GetName()))
        logs.emplace_back(*uid, h);
    std::sort(logs.begin(), logs.end());
    REQUIRE(logs.size() >= 2);
    const auto [uid0, cf0] = logs[0];
    const auto [uid1, cf1] = logs[1];
    std::string v;
    REQUIRE(db->Get(rocksdb::ReadOptions(), cf0, storage::format::LogKey(uid0, 2), &v).ok());
    v[v.size() - 1] ^= 0x5a;
    REQUIRE(db->Put(rocksdb::WriteOptions(), cf0, storage::format::LogKey(uid0, 2), v).ok());
    REQUIRE(db->Delete(rocksdb::WriteOptions(), cf1, storage::format::LogKey(uid1, 2)).ok());
  }
  auto bad = RunVerify(b.data_dir());
  INFO(bad.out << bad.err);
  CHECK(bad.exit_code == 1);
  CHECK(Contains(bad.out, "PROBLEM t/0 offset 2: "));
  CHECK(Contains(bad.out, "PROBLEM t/1 offset 2: offsets [2, 3) are missing"));
  CHECK(Contains(bad.err, "runnelctl: verify: 2 problems in"));
  auto bad_js = RunVerify(b.data_dir(), true);
  CHECK(bad_js.exit_code == 1);
  auto bad_doc = ParseJson(bad_js.out);
  REQUIRE(bad_doc.ok());
  CHECK_FALSE(bad_doc->Find("ok")->boolean);
  const auto& problems = bad_doc->Find("problems")->array;
  REQUIRE(problems.size() == 2);
  CHECK(problems[0].Str("topic") == "t");
  CHECK(problems[0].Int("partition") == 0);
  CHECK(problems[0].Int("offset") == 2);
  CHECK(problems[1].Int("partition") == 1);
  CHECK(problems[1].Int("offset") == 2);
}

// A size-limited tmpfs at `path` for the life of the object (root only).
class SmallFilesystem {
 public:
  SmallFilesystem(std::string path, const std::string& size) : path_(std::move(path)) {
    std::filesystem::create_directories(path_);
    mounted_ = ::mount("tmpfs", path_.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
  }
  ~SmallFilesystem() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  std::string path_;
  bool mounted_ = false;
};

TEST_CASE(
    "runneld: /health answers 503 naming the reason while the store is degraded (disk full)") {
  if (testing::EmbeddedMode()) return;
  if (::geteuid() != 0) {
    MESSAGE("skipped: mounting a small tmpfs needs root");
    return;
  }
  testing::TempDir dir;
  SmallFilesystem fs(dir.Sub("disk"), "160m");
  REQUIRE_MESSAGE(fs.mounted(), "mount tmpfs: " << std::strerror(errno));
  const std::string ballast = dir.Sub("disk/ballast");
  {
    std::ofstream out(ballast, std::ios::binary);
    const std::string chunk(1 << 20, 'b');
    for (int i = 0; i < 90; ++i) out << chunk;
  }
  broker::RunneldProcess runneld(
      {RUNNEL_RUNNELD, dir.Sub("disk/broker"), 0, /*http=*/true, "warn"});
  REQUIRE_MESSAGE(runneld.Start().ok(), runneld.Log());
  const std::string ok = testing::HttpGet(runneld.http_port(), "/health");
  CHECK(Contains(ok, "HTTP/1.1 200"));
  CHECK(Contains(ok, "{\"status\":\"ok\"}"));
  CHECK(testing::MetricValue(runneld.http_port(), "runnel_store_degraded") == 0);

  client::TcpOptions tcp;
  tcp.port = runneld.port();
  client::ProducerOptions po;
  po.linger_ms = 0;
  auto producer = std::move(client::Producer::Create(client::ConnectTcp(tcp), po)).value();
  std::mt19937_64 rng(11);
  Status full;
  for (int i = 0; i < 2'000 && full.ok(); ++i) {
    std::string value(64 * 1024, '\0');  // incompressible
    for (size_t j = 0; j + 8 <= value.size(); j += 8) {
      const uint64_t r = rng();
      std::memcpy(&value[j], &r, 8);
    }
    auto md = producer->Send(client::ProducerRecord{"fill", std::nullopt, value, {}, 0, 0}).get();
    if (!md.ok()) full = md.status();
  }
  REQUIRE(full.code() == StatusCode::kNoSpace);

  const std::string degraded = testing::HttpGet(runneld.http_port(), "/health");
  INFO(degraded);
  CHECK(Contains(degraded, "HTTP/1.1 503"));
  CHECK(Contains(degraded, "\"status\":\"degraded\""));
  CHECK(Contains(degraded, "No space left on device"));
  CHECK(testing::MetricValue(runneld.http_port(), "runnel_store_degraded") == 1);

  // Space comes back: the store recovers on a later write, and /health with it.
  std::filesystem::remove(ballast);
  bool resumed = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!resumed && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    resumed =
        producer->Send(client::ProducerRecord{"fill", std::nullopt, "after", {}, 0, 0}).get().ok();
  }
  REQUIRE(resumed);
  CHECK(Contains(testing::HttpGet(runneld.http_port(), "/health"), "HTTP/1.1 200"));
  CHECK(testing::MetricValue(runneld.http_port(), "runnel_store_degraded") == 0);
}

}  // namespace
}  // namespace runnel
