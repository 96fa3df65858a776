// stats (live broker), dump (a stopped broker's data directory, offline) and token new
#include <CLI/CLI.hpp>

#include <openssl/rand.h>

#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "ctl.h"
#include "runnel/broker/auth.h"
#include "runnel/common/units.h"
#include "runnel/storage/inspect.h"

namespace runnel::ctl {
namespace {

struct Totals {
  int64_t topics = 0, partitions = 0, records = 0, records_in = 0, records_out = 0;
  int64_t bytes_appended = 0;
};

Totals Sum(const JsonValue& doc) {
  Totals t;
  if (const JsonValue* topics = doc.Find("topics"); topics && topics->is_array()) {
    t.topics = static_cast<int64_t>(topics->array.size());
    for (const auto& topic : topics->array) {
      t.records += topic.Int("records");
      if (const JsonValue* parts = topic.Find("partitions"); parts && parts->is_array()) {
        t.partitions += static_cast<int64_t>(parts->array.size());
        for (const auto& p : parts->array) {
          t.records_in += p.Int("records_in");
          t.records_out += p.Int("records_out");
        }
      }
    }
  }
  if (const JsonValue* b = doc.Find("broker")) t.bytes_appended = b->Int("bytes_appended");
  return t;
}

JsonValue FetchStats(Context& ctx) {
  const std::string text = Check(ctx.Admin().Stats(), "stats");
  return Check(ParseJson(text), "the broker's stats document");
}

void Stats(Context& ctx, const std::string& interval_flag) {
  const int64_t interval_ms = DurationFlag("--interval", interval_flag);
  const JsonValue first = FetchStats(ctx);
  const auto t0 = std::chrono::steady_clock::now();
  JsonValue doc = first;
  double secs = 0;
  if (interval_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
    doc = FetchStats(ctx);
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const Totals a = Sum(first), b = Sum(doc);
  auto rate = [&](int64_t before, int64_t after) {
    return secs > 0 ? static_cast<double>(after - before) / secs : 0.0;
  };
  const JsonValue empty;
  const JsonValue* broker = doc.Find("broker");
  if (!broker) broker = &empty;
  const double in_rate = rate(a.records_in, b.records_in);
  const double out_rate = rate(a.records_out, b.records_out);
  const double bytes_rate = rate(a.bytes_appended, b.bytes_appended);
  if (ctx.json) {
    JsonWriter w;
    w.BeginObject()
        .Field("uptime_ms", broker->Int("uptime_ms"))
        .Field("connections", broker->Int("connections"))
        .Field("topics", b.topics)
        .Field("partitions", b.partitions)
        .Field("records", b.records)
        .Field("groups", static_cast<int64_t>(doc.Find("groups") ? doc.Find("groups")->array.size() : 0))
        .Field("disk_bytes", broker->Int("disk_bytes"))
        .Field("disk_free_bytes", broker->Int("disk_free_bytes"))
        .Field("interval_ms", interval_ms)
        .Field("records_in_per_s", in_rate)
        .Field("records_out_per_s", out_rate)
        .Field("bytes_in_per_s", bytes_rate)
        .Field("fsync_p50_ms", broker->Double("fsync_p50_ms"))
        .Field("fsync_p99_ms", broker->Double("fsync_p99_ms"))
        .EndObject();
    return PrintJson(w);
  }
  char buf[64];
  auto per_s = [&](double v) {
    std::snprintf(buf, sizeof buf, "%.0f/s", v);
    return std::string(buf);
  };
  auto ms = [&](double v) {
    std::snprintf(buf, sizeof buf, "%.2f ms", v);
    return std::string(buf);
  };
  PrintFields({
      {"Broker", ctx.broker},
      {"Uptime", FormatDurationMs(broker->Int("uptime_ms"))},
      {"Connections", std::to_string(broker->Int("connections"))},
      {"Topics", std::to_string(b.topics) + " (" + std::to_string(b.partitions) + " partitions, " +
                     std::to_string(b.records) + " records)"},
      {"Groups", std::to_string(doc.Find("groups") ? doc.Find("groups")->array.size() : 0)},
      {"Disk", FormatBytes(broker->Int("disk_bytes")) + " used, " +
                   FormatBytes(broker->Int("disk_free_bytes")) + " free"},
      {"Records in", interval_ms > 0 ? per_s(in_rate) : "-"},
      {"Records out", interval_ms > 0 ? per_s(out_rate) : "-"},
      {"Bytes in", interval_ms > 0 ? FormatBytes(static_cast<int64_t>(bytes_rate)) + "/s" : "-"},
      {"Fsync p50 / p99", ms(broker->Double("fsync_p50_ms")) + " / " + ms(broker->Double("fsync_p99_ms"))},
  });
}

// runneld's own lock file names the pid holding the directory.
std::string RunneldHolder(const std::string& dir) {
  const std::string path = dir + "/runneld.lock";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0;
  ::close(fd);
  if (!held) return {};
  std::ifstream in(path);
  std::string pid;
  std::getline(in, pid);
  return pid.empty() ? "?" : pid;
}

struct DumpFlags {
  std::string data_dir;
  std::string topic;
  bool summary = false;
  int64_t max_batches = -1;
};

void Dump(Context& ctx, const DumpFlags& f) {
  if (const std::string pid = RunneldHolder(f.data_dir); !pid.empty()) {
    Fail(Status::IOError("'" + f.data_dir + "' is held by a live runneld (pid " + pid +
                         "); stop it first"),
         "dump");
  }
  auto inspector = Check(storage::DataDirInspector::Open(f.data_dir), "dump");
  int64_t bad = 0, batches_total = 0;
  JsonWriter w;
  w.BeginObject().Field("data_dir", f.data_dir).Key("topics").BeginArray();
  bool found = f.topic.empty();
  for (const auto& t : inspector->Topics()) {
    if (!f.topic.empty() && t.name != f.topic) continue;
    found = true;
    if (ctx.json) {
      w.BeginObject().Field("name", t.name).Field("id", static_cast<int64_t>(t.topic_id));
      w.Key("config").BeginObject();
      for (const auto& [k, v] : t.config) w.Field(k, v);
      w.EndObject().Key("partitions").BeginArray();
    } else {
      std::printf("topic %s (id %u, %zu partitions)\n", t.name.c_str(), t.topic_id, t.partitions.size());
    }
    for (const auto& p : t.partitions) {
      const auto& s = p.state;
      if (ctx.json) {
        w.BeginObject()
            .Field("partition", p.partition)
            .Field("log_start", s.log_start)
            .Field("log_end", s.next_offset)
            .Field("bytes", static_cast<int64_t>(s.end_bytes - s.start_bytes));
        if (!f.summary) w.Key("batches").BeginArray();
      } else {
        std::printf("  partition %d: offsets [%lld, %lld), %s\n", p.partition,
                    static_cast<long long>(s.log_start), static_cast<long long>(s.next_offset),
                    FormatBytes(static_cast<int64_t>(s.end_bytes - s.start_bytes)).c_str());
      }
      int64_t batches = 0, records = 0, partition_bad = 0;
      int64_t expected = -1;  // offsets must be contiguous from batch to batch
      Table table({"BASE", "LAST", "RECORDS", "BYTES", "CODEC", "PRODUCER", "SEQ", "CHECK"});
      Check(inspector->ForEachBatch(p.uid, [&](const storage::InspectedBatch& b) {
        Status check = b.check;
        if (check.ok() && expected >= 0 && b.base_offset != expected) {
          check = Status::Corruption("gap: expected offset " + std::to_string(expected));
        }
        expected = b.last_offset + 1;
        ++batches;
        records += b.records;
        if (!check.ok()) ++partition_bad;
        const bool show = !f.summary && (f.max_batches < 0 || batches <= f.max_batches);
        if (show && ctx.json) {
          w.BeginObject()
              .Field("base_offset", b.base_offset)
              .Field("last_offset", b.last_offset)
              .Field("records", b.records)
              .Field("bytes", static_cast<int64_t>(b.bytes))
              .Field("compression", b.compression)
              .Field("producer_id", b.producer_id)
              .Field("producer_epoch", static_cast<int64_t>(b.producer_epoch))
              .Field("base_sequence", b.base_sequence)
              .Field("crc_ok", check.ok());
          if (!check.ok()) w.Field("error", check.message());
          w.EndObject();
        } else if (show) {
          table.Row({b.base_offset, b.last_offset, b.records, static_cast<int64_t>(b.bytes),
                     b.compression.empty() ? "-" : b.compression,
                     b.producer_id >= 0 ? Table::Cell(b.producer_id) : Table::Cell("-"),
                     b.base_sequence >= 0 ? Table::Cell(b.base_sequence) : Table::Cell("-"),
                     check.ok() ? Table::Cell("ok", "32") : Table::Cell(check.message(), "31")});
        }
        return true;
      }), "reading " + t.name + "/" + std::to_string(p.partition));
      bad += partition_bad;
      batches_total += batches;
      if (ctx.json) {
        if (!f.summary) w.EndArray();
        w.Field("batch_count", batches).Field("record_count", records).Field("bad_batches", partition_bad);
        w.EndObject();
      } else {
        if (!table.empty()) table.Print(ctx);
        std::printf("  %lld batches, %lld records, %lld bad\n", static_cast<long long>(batches),
                    static_cast<long long>(records), static_cast<long long>(partition_bad));
      }
    }
    if (ctx.json) w.EndArray().EndObject();
  }
  if (!found) Fail(Status::NotFound("no topic '" + f.topic + "' in " + f.data_dir), "dump");
  w.EndArray();
  auto groups = Check(inspector->Groups(), "dump");
  if (ctx.json) {
    w.Key("groups").BeginArray();
    for (const auto& g : groups) {
      w.BeginObject().Field("name", g.name).Field("mode", g.value.mode == 2 ? "queue" : "stream")
          .Field("generation", g.value.generation).Field("pending", g.pending)
          .Field("dead_letters", g.dead_letters).Key("offsets").BeginArray();
      for (const auto& o : g.offsets) {
        w.BeginObject().Field("topic", o.topic).Field("partition", o.partition)
            .Field("offset", o.value.offset).EndObject();
      }
      w.EndArray().EndObject();
    }
    w.EndArray().Field("batches", batches_total).Field("bad_batches", bad).EndObject();
    PrintJson(w);
  } else if (f.topic.empty()) {
    for (const auto& g : groups) {
      std::printf("group %s (%s, generation %d): %lld pending, %lld dead letters\n", g.name.c_str(),
                  g.value.mode == 2 ? "queue" : "stream", g.value.generation,
                  static_cast<long long>(g.pending), static_cast<long long>(g.dead_letters));
      for (const auto& o : g.offsets) {
        std::printf("  %s/%d: %lld\n", o.topic.empty() ? "(deleted topic)" : o.topic.c_str(),
                    o.partition, static_cast<long long>(o.value.offset));
      }
    }
  }
  if (bad > 0) Fail(Status::Corruption(std::to_string(bad) + " of " + std::to_string(batches_total) + " batches failed the check"), "dump");
}

struct TokenFlags {
  std::string name;
  std::string ops = "all";
  std::string topics = "*";
  std::string groups = "*";
};

// A new random token and its --auth-tokens line (with the SHA-256, not the token), checked by
// the broker's own parser so the line is known to load.
void NewToken(const Context& ctx, const TokenFlags& f) {
  unsigned char raw[24];
  if (RAND_bytes(raw, sizeof raw) != 1) Fail(Status::IOError("no random bytes from OpenSSL"));
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string token = "rnl_";
  for (unsigned char b : raw) token.push_back(kAlphabet[b & 63]);  // 144 random bits
  const std::string line = f.name + "  sha256:" + broker::Sha256Hex(token) + "  " + f.ops + "  " +
                           f.topics + "  " + f.groups;
  if (auto check = broker::TokenSet::Parse(line, "token"); !check.ok())
    UsageError(check.status().message());
  if (ctx.json) {
    JsonWriter w;
    w.BeginObject().Field("name", f.name).Field("token", token).Field("line", line).EndObject();
    PrintJson(w);
    return;
  }
  std::printf("token (give it to the client; it is not stored anywhere):\n  %s\n"
              "line for the --auth-tokens file:\n  %s\n",
              token.c_str(), line.c_str());
}

}  // namespace

void AddBrokerCommands(CLI::App& app, Context& ctx) {
  auto tf = std::make_shared<TokenFlags>();
  CLI::App* token = app.add_subcommand("token", "Access tokens for runneld --auth-tokens");
  token->require_subcommand(1);
  CLI::App* create = token->add_subcommand("new", "Make a random token and its token-file line");
  create->add_option("name", tf->name, "The token's name")->required();
  create->add_option("--ops", tf->ops, "produce, consume, admin (comma list) or all")
      ->capture_default_str();
  create->add_option("--topics", tf->topics, "Topic globs, comma list; - for none")
      ->capture_default_str();
  create->add_option("--groups", tf->groups, "Group globs, comma list; - for none")
      ->capture_default_str();
  create->callback([&ctx, tf] { NewToken(ctx, *tf); });

  auto interval = std::make_shared<std::string>("1s");
  CLI::App* stats = app.add_subcommand("stats", "Broker overview: topics, throughput, connections, disk");
  stats->add_option("--interval", *interval, "Sample this long for throughput (0: no rates)")
      ->capture_default_str();
  stats->callback([&ctx, interval] { Stats(ctx, *interval); });

  auto f = std::make_shared<DumpFlags>();
  CLI::App* dump = app.add_subcommand(
      "dump", "Read a stopped broker's data directory offline: batches, offsets, CRC check");
  dump->add_option("--data-dir,-d", f->data_dir, "The data directory")->required();
  dump->add_option("--topic", f->topic, "Only this topic (groups are skipped)");
  dump->add_flag("--summary", f->summary, "Per-partition totals only, no batch lines");
  dump->add_option("--max-batches", f->max_batches, "Print at most this many batches per partition");
  dump->callback([&ctx, f] { Dump(ctx, *f); });
}

}  // namespace runnel::ctl
