// produce and consume
#include <CLI/CLI.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <future>
#include <iostream>
#include <map>

#include "ctl.h"
#include "runnel/client/consumer.h"
#include "runnel/client/producer.h"

namespace runnel::ctl {
namespace {

struct ProduceFlags {
  std::string topic;
  std::optional<std::string> value;
  std::optional<std::string> key;
  std::string key_sep;
  std::vector<std::string> headers;
  std::optional<int32_t> partition;
  std::string acks = "durable";
  std::string dedup_key;
};

void Produce(Context& ctx, const ProduceFlags& f) {
  client::ProducerOptions po;
  po.request_timeout_ms = ctx.timeout_ms();
  po.delivery_timeout_ms = std::max<int64_t>(ctx.timeout_ms(), 1000);
  po.max_block_ms = ctx.timeout_ms();
  if (f.acks == "none") {
    po.acks = client::Acks::kNone;
  } else if (f.acks == "written") {
    po.acks = client::Acks::kWritten;
  } else if (f.acks == "durable") {
    po.acks = client::Acks::kDurable;
  } else {
    UsageError("--acks: expected none, written or durable, not '" + f.acks + "'");
  }
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
  for (const auto& h : f.headers) {
    const size_t eq = h.find('=');
    if (eq == std::string::npos || eq == 0) UsageError("--header: expected key=value, not '" + h + "'");
    headers.emplace_back(h.substr(0, eq), h.substr(eq + 1));
  }
  if (!f.dedup_key.empty()) headers.emplace_back("runnel.dedup.key", f.dedup_key);
  auto producer = Check(client::Producer::Create(ctx.Connection(), po));
  std::vector<std::future<Result<client::RecordMetadata>>> sent;
  auto send = [&](std::optional<std::string> key, std::string value) {
    client::ProducerRecord r;
    r.topic = f.topic;
    r.key = std::move(key);
    r.value = std::move(value);
    r.headers = headers;
    r.partition = f.partition;
    sent.push_back(producer->Send(std::move(r)));
  };
  if (f.value) {
    send(f.key, *f.value);
  } else {
    std::string line;
    while (std::getline(std::cin, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!f.key_sep.empty()) {
        const size_t at = line.find(f.key_sep);
        if (at == std::string::npos) {
          // The lines before it are already on their way: deliver them, then say so.
          (void)producer->Flush(ctx.timeout_ms());
          UsageError("--key-sep: line " + std::to_string(sent.size() + 1) + " has no '" +
                     f.key_sep + "'; the " + std::to_string(sent.size()) +
                     " lines before it were produced");
        }
        send(line.substr(0, at), line.substr(at + f.key_sep.size()));
      } else {
        send(f.key, line);
      }
    }
  }
  (void)producer->Flush(ctx.timeout_ms());
  JsonWriter w;
  w.BeginObject().Field("topic", f.topic).Key("records").BeginArray();
  int64_t ok = 0, duplicates = 0;
  Status first_error;
  for (auto& fut : sent) {
    Result<client::RecordMetadata> r = fut.get();
    if (!r.ok()) {
      if (first_error.ok()) first_error = r.status();
      w.BeginObject().Field("error", r.status().ToString()).EndObject();
      continue;
    }
    ++ok;
    if (r->duplicate) ++duplicates;
    w.BeginObject()
        .Field("partition", r->partition)
        .Field("offset", r->offset)
        .Field("duplicate", r->duplicate)
        .EndObject();
    if (!ctx.json && sent.size() == 1) {
      std::printf("%s/%d@%lld%s\n", f.topic.c_str(), r->partition,
                  static_cast<long long>(r->offset), r->duplicate ? " (duplicate)" : "");
    }
  }
  w.EndArray().Field("produced", ok).Field("duplicates", duplicates).EndObject();
  if (ctx.json) PrintJson(w);
  else if (sent.size() != 1) std::printf("produced %lld records to %s\n", static_cast<long long>(ok), f.topic.c_str());
  if (!first_error.ok()) Fail(first_error, "produce");
}

struct ConsumeFlags {
  std::string topic;
  std::string group;
  std::string from = "earliest";
  std::vector<int32_t> partitions;
  int64_t count = -1;
  bool follow = false;
  std::string format = "{value}";
  std::string wait = "0s";
};

std::string Render(const std::string& fmt, const client::ConsumerRecord& r) {
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] == '\\' && i + 1 < fmt.size()) {
      const char e = fmt[++i];
      out.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
      continue;
    }
    if (fmt[i] != '{') {
      out.push_back(fmt[i]);
      continue;
    }
    const size_t end = fmt.find('}', i);
    if (end == std::string::npos) {
      out.append(fmt, i);
      break;
    }
    const std::string name = fmt.substr(i + 1, end - i - 1);
    if (name == "topic") out += r.topic;
    else if (name == "partition") out += std::to_string(r.partition);
    else if (name == "offset") out += std::to_string(r.offset);
    else if (name == "timestamp") out += std::to_string(r.timestamp_ms);
    else if (name == "time") out += FormatTimeMs(r.timestamp_ms);
    else if (name == "key") out += Printable(r.key);
    else if (name == "value") out += Printable(r.value);
    else if (name == "headers") {
      for (size_t h = 0; h < r.headers.size(); ++h) {
        if (h) out += ',';
        out += r.headers[h].first + "=" + Printable(r.headers[h].second);
      }
    } else {
      UsageError("--format: unknown field {" + name +
                 "} (fields: topic partition offset timestamp time key value headers)");
    }
    i = end;
  }
  return out;
}

void RecordJson(JsonWriter& w, const client::ConsumerRecord& r) {
  w.BeginObject()
      .Field("topic", r.topic)
      .Field("partition", r.partition)
      .Field("offset", r.offset)
      .Field("timestamp_ms", r.timestamp_ms);
  w.Key("key");
  r.key ? w.String(*r.key) : w.Null();
  w.Key("value");
  r.value ? w.String(*r.value) : w.Null();
  w.Key("headers").BeginObject();
  for (const auto& [k, v] : r.headers) {
    w.Key(k);
    v ? w.String(*v) : w.Null();
  }
  w.EndObject().EndObject();
}

volatile std::sig_atomic_t g_stop = 0;

void Consume(Context& ctx, const ConsumeFlags& f) {
  if (!f.group.empty() && !f.partitions.empty())
    UsageError("--partition reads without a group; the group assigns partitions");
  (void)Render(f.format, client::ConsumerRecord{});  // reject bad --format before reading
  const Position from = PositionFlag("--from", f.from);
  client::ConsumerOptions co;
  co.topics = {f.topic};
  co.group = f.group;
  co.partitions = f.partitions;
  co.request_timeout_ms = ctx.timeout_ms();
  // Commits only what was printed (below), never the rest of a polled batch: the next consumer
  // of the group starts right after the last record handed out here.
  co.auto_commit = false;
  switch (from.kind) {
    case Position::Kind::kEarliest: co.auto_offset_reset = client::OffsetReset::kEarliest; break;
    case Position::Kind::kLatest: co.auto_offset_reset = client::OffsetReset::kLatest; break;
    case Position::Kind::kOffset: co.start_offset = from.value; break;
    case Position::Kind::kTime: co.start_timestamp_ms = from.value; break;
  }
  // Fails on an unknown topic before anything else happens.
  const proto::TopicMetadata topic = DescribeTopic(ctx, f.topic);
  std::map<int32_t, int64_t> end;  // where "caught up" is, without --follow
  for (const auto& p : topic.partitions) end[p.partition] = p.high_watermark;

  auto consumer = Check(client::Consumer::Create(ctx.Connection(), co));
  std::signal(SIGINT, [](int) { g_stop = 1; });
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  const int64_t idle_limit = DurationFlag("--wait", f.wait);
  JsonWriter w;
  if (ctx.json && !f.follow) w.BeginObject().Field("topic", f.topic).Key("records").BeginArray();
  int64_t got = 0;
  std::map<int32_t, int64_t> printed;  // partition -> offset after the last record printed
  auto commit_printed = [&] {
    if (f.group.empty() || printed.empty()) return;
    std::fflush(stdout);  // printed first, then committed
    std::vector<std::pair<proto::TopicPartitionRef, int64_t>> offsets;
    for (const auto& [partition, next] : printed) offsets.push_back({{f.topic, partition}, next});
    Check(consumer->Commit(offsets), "commit");
    printed.clear();
  };
  auto last_data = std::chrono::steady_clock::now();
  while (!g_stop && (f.count < 0 || got < f.count)) {
    auto records = Check(consumer->Poll(200), "consume");
    for (const auto& r : records) {
      if (f.count >= 0 && got >= f.count) break;
      ++got;
      printed[r.partition] = r.offset + 1;
      if (ctx.json && f.follow) {
        JsonWriter line;
        RecordJson(line, r);
        PrintJson(line);
      } else if (ctx.json) {
        RecordJson(w, r);
      } else {
        const std::string s = Render(f.format, r);
        std::fwrite(s.data(), 1, s.size(), stdout);
        std::fputc('\n', stdout);
      }
    }
    if (!records.empty()) last_data = std::chrono::steady_clock::now();
    // Before the next Poll, which may hand partitions to another member. A JSON document is
    // printed whole at the end, so its records are committed after it.
    if (!(ctx.json && !f.follow)) commit_printed();
    if (f.follow) {
      std::fflush(stdout);
      continue;
    }
    // Caught up with every assigned partition as it was when we started?
    const auto assigned = consumer->Assignment();
    bool caught_up = !assigned.empty();
    for (const auto& tp : assigned) {
      auto pos = consumer->Position(tp);
      if (!pos || *pos < end[tp.partition]) caught_up = false;
    }
    if (caught_up && std::chrono::steady_clock::now() - last_data >=
                         std::chrono::milliseconds(idle_limit)) {
      break;
    }
  }
  if (ctx.json && !f.follow) {
    w.EndArray().Field("count", got).EndObject();
    PrintJson(w);
  }
  commit_printed();
  consumer->Close();
}

}  // namespace

void AddDataCommands(CLI::App& app, Context& ctx) {
  auto pf = std::make_shared<ProduceFlags>();
  CLI::App* produce = app.add_subcommand(
      "produce", "Produce VALUE, or one record per stdin line (durable acks by default)");
  produce->add_option("topic", pf->topic, "Topic")->required();
  produce->add_option("value", pf->value, "The record's value (else stdin lines)");
  produce->add_option("--key,-k", pf->key, "Record key (partitions like Kafka's murmur2)");
  produce->add_option("--key-sep", pf->key_sep, "Split each stdin line into key SEP value");
  produce->add_option("--header,-H", pf->headers, "Header key=value (repeatable)");
  produce->add_option("--partition,-p", pf->partition, "Explicit partition");
  produce->add_option("--dedup-key", pf->dedup_key, "Dedup key (runnel.dedup.key header)");
  produce->add_option("--acks", pf->acks, "none | written | durable")->capture_default_str();
  produce->callback([&ctx, pf] { Produce(ctx, *pf); });

  auto cf = std::make_shared<ConsumeFlags>();
  CLI::App* consume = app.add_subcommand(
      "consume", "Read records; without --group nothing is committed");
  consume->add_option("topic", cf->topic, "Topic")->required();
  consume->add_option("--group,-g", cf->group, "Stream group: commits what it read");
  consume->add_option("--from", cf->from,
                      "earliest | latest | OFFSET | ISO-8601 time | @EPOCH_MS | -DURATION "
                      "(where partitions without a committed offset start)")
      ->capture_default_str();
  consume->add_option("--partition,-p", cf->partitions, "Only these partitions (no group)");
  consume->add_option("-n,--count", cf->count, "Stop after COUNT records");
  consume->add_flag("--follow,-f", cf->follow, "Keep waiting for new records (Ctrl-C stops)");
  consume->add_option("--format", cf->format,
                      "Output line; fields {topic} {partition} {offset} {timestamp} {time} "
                      "{key} {value} {headers}")
      ->capture_default_str();
  consume->add_option("--wait", cf->wait,
                      "Without --follow: after catching up, wait this long for more")
      ->capture_default_str();
  consume->callback([&ctx, cf] { Consume(ctx, *cf); });
}

}  // namespace runnel::ctl
