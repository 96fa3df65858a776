// group list / describe / reset-offsets / delete, pending, claim, dlq, status
#include <CLI/CLI.hpp>

#include <algorithm>
#include <charconv>

#include "ctl.h"
#include "runnel/common/clock.h"
#include "runnel/common/glob.h"
#include "runnel/common/units.h"

namespace runnel::ctl {
namespace {

bool IsQueue(const proto::DescribeGroupResponse& g) { return g.mode == proto::GroupModeWire::kQueue; }
bool IsKafka(const proto::DescribeGroupResponse& g) { return g.protocol == "kafka"; }
std::string ModeName(const proto::DescribeGroupResponse& g) {
  return IsQueue(g) ? "queue" : IsKafka(g) ? "kafka" : "stream";
}

std::string GroupTopicOf(const proto::DescribeGroupResponse& g) {
  for (const auto& [k, v] : g.config)
    if (k == "topic") return v;
  return g.partitions.empty() ? "" : g.partitions.front().topic;
}

// A queue group must be named with its own topic.
void CheckQueueTopic(const proto::DescribeGroupResponse& g, const std::string& topic) {
  if (IsQueue(g) && GroupTopicOf(g) != topic) {
    Fail(Status::InvalidArgument("queue group '" + g.name + "' reads topic '" + GroupTopicOf(g) +
                                 "', not '" + topic + "'"));
  }
}

// The group, checked to be a queue group reading `topic`.
proto::DescribeGroupResponse QueueGroup(Context& ctx, const std::string& group,
                                        const std::string& topic) {
  auto g = Check(ctx.Admin().DescribeGroup(group));
  if (!IsQueue(g)) Fail(Status::InvalidArgument("'" + group + "' is a stream group, not a queue group"));
  CheckQueueTopic(g, topic);
  return g;
}

struct GroupTotals {
  int64_t lag = 0;
  int64_t pending = 0;
};
GroupTotals Totals(const proto::DescribeGroupResponse& g) {
  GroupTotals t;
  for (const auto& p : g.partitions) {
    t.lag += p.lag;
    t.pending += p.pending;
  }
  return t;
}

std::string Age(int64_t ms) { return ms > 0 ? FormatDurationMs(ms) : "-"; }

void GroupJson(JsonWriter& w, const proto::DescribeGroupResponse& g) {
  const GroupTotals totals = Totals(g);
  w.BeginObject()
      .Field("name", g.name)
      .Field("mode", IsQueue(g) ? "queue" : "stream")
      .Field("protocol", g.protocol)
      .Field("state", g.state)
      .Field("protocol_type", g.protocol_type)
      .Field("assignor", g.assignor)
      .Field("topic", GroupTopicOf(g))
      .Field("generation", g.generation)
      .Field("lag", totals.lag)
      .Field("pending", totals.pending);
  w.Key("config").BeginObject();
  for (const auto& [k, v] : g.config) w.Field(k, v);
  w.EndObject();
  w.Key("partitions").BeginArray();
  for (const auto& p : g.partitions) {
    w.BeginObject()
        .Field("topic", p.topic)
        .Field("partition", p.partition)
        .Field(IsQueue(g) ? "delivered" : "committed", p.position)
        .Field("log_end", p.log_end)
        .Field("lag", p.lag)
        .Field("pending", p.pending)
        .Field("oldest_pending_age_ms", p.oldest_pending_age_ms)
        .EndObject();
  }
  w.EndArray();
  w.Key("members").BeginArray();
  for (const auto& c : g.consumers) {
    w.BeginObject().Field("consumer", c.consumer).Field("pending", c.pending).Field("idle_ms", c.idle_ms);
    if (IsKafka(g)) {
      w.Field("client_id", c.client_id).Field("host", c.host).Field("instance_id", c.instance_id);
    }
    w.Key("partitions").BeginArray();
    for (const auto& tp : c.assignment)
      w.BeginObject().Field("topic", tp.topic).Field("partition", tp.partition).EndObject();
    w.EndArray().EndObject();
  }
  w.EndArray();
  const auto& k = g.counters;
  w.Key("counters")
      .BeginObject()
      .Field("deliveries", k.deliveries)
      .Field("redeliveries", k.redeliveries)
      .Field("acks", k.acks)
      .Field("nacks", k.nacks)
      .Field("rejects", k.rejects)
      .Field("dead_lettered", k.dead_lettered)
      .EndObject();
  w.EndObject();
}

struct Flags {
  std::string group;
  std::string topic;
  std::string consumer;
  std::string min_idle = "0s";
  int32_t count = 100;
  std::vector<std::string> to;
  bool dry_run = false;
  std::optional<int32_t> partition;
  std::optional<int64_t> offset;
  std::string dedup_key;
  std::string to_topic;
  std::optional<std::string> reason;
  std::string range;
};

void OkJson(Context& ctx, const std::string& human, JsonWriter& w) {
  if (ctx.json) PrintJson(w);
  else std::printf("%s\n", human.c_str());
}

// "A-B" (DLQ offsets, B inclusive), "A-" or "A".
std::pair<int64_t, int64_t> ParseRange(const std::string& text) {
  auto num = [&](std::string_view s, int64_t* out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
    return ec == std::errc() && p == s.data() + s.size() && !s.empty() && *out >= 0;
  };
  const size_t dash = text.find('-');
  int64_t a = 0, b = 0;
  if (dash == std::string::npos) {
    if (!num(text, &a)) UsageError("--range: '" + text + "' is not A-B, A- or A");
    return {a, a + 1};
  }
  const std::string_view left = std::string_view(text).substr(0, dash);
  const std::string_view right = std::string_view(text).substr(dash + 1);
  if (!num(left, &a) || (!right.empty() && !num(right, &b)))
    UsageError("--range: '" + text + "' is not A-B, A- or A");
  if (right.empty()) return {a, INT64_MAX};
  if (b < a) UsageError("--range: " + text + " ends before it starts");
  return {a, b + 1};
}

void AddGroup(CLI::App& app, Context& ctx, const std::shared_ptr<Flags>& f) {
  CLI::App* group = app.add_subcommand("group", "Consumer groups: lag, members, offsets");
  group->require_subcommand(1);

  group->add_subcommand("list", "List groups with their lag and pending counts")->callback([&ctx] {
    auto names = Check(ctx.Admin().ListGroups());
    std::sort(names.begin(), names.end());
    std::vector<proto::DescribeGroupResponse> groups;
    for (const auto& n : names) {
      auto d = ctx.Admin().DescribeGroup(n);
      if (d.ok()) groups.push_back(std::move(d).value());  // deleted meanwhile: skip
    }
    if (ctx.json) {
      JsonWriter w;
      w.BeginObject().Key("groups").BeginArray();
      for (const auto& g : groups) GroupJson(w, g);
      w.EndArray().EndObject();
      return PrintJson(w);
    }
    Table t({"GROUP", "MODE", "TOPIC", "LAG", "PENDING", "MEMBERS"});
    for (const auto& g : groups) {
      const GroupTotals totals = Totals(g);
      t.Row({g.name, ModeName(g), GroupTopicOf(g), LagCell(totals.lag),
             IsQueue(g) ? Table::Cell(totals.pending) : Table::Cell("-"),
             static_cast<int64_t>(g.consumers.size())});
    }
    t.Print(ctx);
  });

  CLI::App* describe = group->add_subcommand("describe", "Per partition and per member detail");
  describe->add_option("group", f->group, "Group")->required();
  describe->callback([&ctx, f] {
    const auto g = Check(ctx.Admin().DescribeGroup(f->group));
    if (ctx.json) {
      JsonWriter w;
      GroupJson(w, g);
      return PrintJson(w);
    }
    const bool queue = IsQueue(g);
    const bool kafka = IsKafka(g);
    std::vector<std::pair<std::string, std::string>> fields{
        {"Group", g.name}, {"Mode", queue ? "queue" : "stream"}, {"Topic", GroupTopicOf(g)}};
    if (!queue) {
      fields.emplace_back("Protocol", kafka ? "kafka (" + (g.protocol_type.empty() ? std::string("consumer") : g.protocol_type) +
                                                  (g.assignor.empty() ? "" : ", assignor " + g.assignor) + ")"
                                            : "native");
      fields.emplace_back("State", g.state);
      fields.emplace_back("Generation", std::to_string(g.generation));
    }
    if (queue) {
      const auto& k = g.counters;
      fields.emplace_back("Counters", "deliveries " + std::to_string(k.deliveries) +
                                          ", redeliveries " + std::to_string(k.redeliveries) +
                                          ", acks " + std::to_string(k.acks) + ", nacks " +
                                          std::to_string(k.nacks) + ", rejects " +
                                          std::to_string(k.rejects) + ", dead-lettered " +
                                          std::to_string(k.dead_lettered));
    }
    PrintFields(fields);
    std::printf("\n");
    // Who owns each partition (stream groups), as kafka-consumer-groups --describe shows it.
    auto owner = [&](const std::string& topic, int32_t partition) -> const proto::ConsumerInfoWire* {
      for (const auto& c : g.consumers)
        for (const auto& tp : c.assignment)
          if (tp.topic == topic && tp.partition == partition) return &c;
      return nullptr;
    };
    std::vector<std::string> columns =
        queue ? std::vector<std::string>{"PARTITION", "DELIVERED", "LOG-END", "LAG", "PENDING",
                                         "OLDEST-PENDING"}
              : std::vector<std::string>{"TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "MEMBER"};
    if (kafka) columns.insert(columns.end(), {"HOST", "CLIENT-ID"});
    Table parts(columns);
    for (const auto& p : g.partitions) {
      const Table::Cell pos = p.position >= 0 ? Table::Cell(p.position) : Table::Cell("-");
      if (queue) {
        parts.Row({p.partition, pos, p.log_end, LagCell(p.lag), p.pending,
                   Age(p.oldest_pending_age_ms)});
        continue;
      }
      const proto::ConsumerInfoWire* c = owner(p.topic, p.partition);
      std::vector<Table::Cell> row{p.topic, p.partition, pos, p.log_end, LagCell(p.lag),
                                   c ? Table::Cell(c->consumer) : Table::Cell("-")};
      if (kafka) {
        row.push_back(c ? Table::Cell(c->host) : Table::Cell("-"));
        row.push_back(c ? Table::Cell(c->client_id) : Table::Cell("-"));
      }
      parts.Row(row);
    }
    parts.Print(ctx);
    std::printf("\n");
    if (g.consumers.empty()) {
      std::printf("no members\n");
      return;
    }
    std::vector<std::string> member_columns{"MEMBER", queue ? "PENDING" : "PARTITIONS"};
    if (kafka) member_columns.insert(member_columns.end(), {"CLIENT-ID", "HOST", "INSTANCE-ID"});
    else member_columns.push_back("IDLE");
    Table members(member_columns);
    for (const auto& c : g.consumers) {
      std::string assigned;
      for (const auto& tp : c.assignment)
        assigned += (assigned.empty() ? "" : ",") + tp.topic + "/" + std::to_string(tp.partition);
      std::vector<Table::Cell> row{c.consumer, queue ? Table::Cell(c.pending)
                                                     : Table::Cell(assigned.empty() ? "-" : assigned)};
      if (kafka) {
        row.insert(row.end(), {c.client_id, c.host, c.instance_id.empty() ? "-" : c.instance_id});
      } else {
        row.push_back(FormatDurationMs(c.idle_ms));
      }
      members.Row(row);
    }
    members.Print(ctx);
  });

  CLI::App* reset = group->add_subcommand(
      "reset-offsets", "Move a group's positions (stream: no live members; queue: like XGROUP SETID)");
  reset->add_option("group", f->group, "Group")->required();
  reset->add_option("--topic", f->topic, "Topic")->required();
  reset->add_option("--to", f->to, "earliest | latest | offset N | time T")->required()->expected(1, 2);
  reset->add_option("--partition,-p", f->partition, "Only this partition");
  reset->add_flag("--dry-run", f->dry_run, "Show the new offsets without applying them");
  reset->callback([&ctx, f] {
    Position target;
    const std::string kind = f->to[0];
    if (kind == "earliest" || kind == "latest") {
      if (f->to.size() != 1) UsageError("--to " + kind + " takes no value");
      target = PositionFlag("--to", kind);
    } else if (kind == "offset" || kind == "time") {
      if (f->to.size() != 2) UsageError("--to " + kind + " needs a value");
      target = PositionFlag("--to", f->to[1]);
      if (kind == "offset" && target.kind != Position::Kind::kOffset)
        UsageError("--to offset: '" + f->to[1] + "' is not an offset");
      if (kind == "time" && target.kind != Position::Kind::kTime) {
        // A bare number after "time" is epoch milliseconds.
        if (target.kind == Position::Kind::kOffset) target.kind = Position::Kind::kTime;
        else UsageError("--to time: '" + f->to[1] + "' is not a time");
      }
    } else {
      UsageError("--to: expected earliest, latest, offset N or time T, not '" + kind + "'");
    }
    const auto g = Check(ctx.Admin().DescribeGroup(f->group));
    CheckQueueTopic(g, f->topic);  // checked here too so a --dry-run reports it
    const proto::TopicMetadata topic = DescribeTopic(ctx, f->topic);
    std::vector<proto::OffsetCommitWire> offsets;
    std::vector<int64_t> current;
    for (const auto& p : topic.partitions) {
      if (f->partition && *f->partition != p.partition) continue;
      int64_t to = 0;
      switch (target.kind) {
        case Position::Kind::kEarliest: to = p.log_start; break;
        case Position::Kind::kLatest: to = p.high_watermark; break;
        case Position::Kind::kOffset:
          to = std::clamp(target.value, p.log_start, p.high_watermark);
          break;
        case Position::Kind::kTime: {
          to = Check(ctx.Admin().ListOffset(f->topic, p.partition, proto::OffsetSpec::kTimestamp,
                                            target.value));
          if (to < 0) to = p.high_watermark;
          break;
        }
      }
      int64_t cur = -1;
      for (const auto& gp : g.partitions)
        if (gp.topic == f->topic && gp.partition == p.partition) cur = gp.position;
      offsets.push_back({f->topic, p.partition, to, "reset by runnelctl"});
      current.push_back(cur);
    }
    if (offsets.empty()) Fail(Status::InvalidArgument("partition " + std::to_string(f->partition.value_or(-1)) + " does not exist"));
    if (!f->dry_run) Check(ctx.Admin().ResetOffsets(f->group, offsets), "reset-offsets");
    if (ctx.json) {
      JsonWriter w;
      w.BeginObject().Field("group", f->group).Field("topic", f->topic).Field("applied", !f->dry_run);
      w.Key("partitions").BeginArray();
      for (size_t i = 0; i < offsets.size(); ++i) {
        w.BeginObject().Field("partition", offsets[i].partition).Field("current", current[i])
            .Field("new", offsets[i].offset).EndObject();
      }
      w.EndArray().EndObject();
      return PrintJson(w);
    }
    Table t({"PARTITION", "CURRENT", "NEW"});
    for (size_t i = 0; i < offsets.size(); ++i) {
      t.Row({offsets[i].partition, current[i] >= 0 ? Table::Cell(current[i]) : Table::Cell("-"),
             offsets[i].offset});
    }
    t.Print(ctx);
    std::printf(f->dry_run ? "dry run: nothing changed\n" : "offsets reset\n");
  });

  CLI::App* del = group->add_subcommand("delete", "Delete a group, its offsets and pending entries");
  del->add_option("group", f->group, "Group")->required();
  del->callback([&ctx, f] {
    Check(ctx.Admin().DeleteGroup(f->group), "group delete");
    JsonWriter w;
    w.BeginObject().Field("ok", true).Field("group", f->group).EndObject();
    OkJson(ctx, "deleted group " + f->group, w);
  });
}

void PendingTable(Context& ctx, const std::string& topic,
                  const std::vector<proto::PendingEntryWire>& entries) {
  if (ctx.json) {
    JsonWriter w;
    w.BeginObject().Field("topic", topic).Key("entries").BeginArray();
    for (const auto& e : entries) {
      w.BeginObject()
          .Field("partition", e.partition)
          .Field("offset", e.offset)
          .Field("state", proto::PendingKindName(e.kind))
          .Field("consumer", e.consumer)
          .Field("deliveries", e.deliveries)
          .Field("idle_ms", e.idle_ms)
          .Field("due_ms", e.due_ms)
          .Field("first_delivery_ms", e.first_delivery_ms)
          .EndObject();
    }
    w.EndArray().Field("count", static_cast<int64_t>(entries.size())).EndObject();
    return PrintJson(w);
  }
  if (entries.empty()) {
    std::printf("no pending entries\n");
    return;
  }
  const int64_t now = WallClockMs();
  Table t({"PARTITION", "OFFSET", "STATE", "CONSUMER", "DELIVERIES", "IDLE", "DUE-IN"});
  for (const auto& e : entries) {
    const std::string due = e.due_ms <= 0 ? "-"
                            : e.due_ms <= now ? "now"
                                              : FormatDurationMs(e.due_ms - now);
    t.Row({e.partition, e.offset,
           Table::Cell(std::string(proto::PendingKindName(e.kind)), e.kind == proto::PendingKindWire::kRetry ? "33" : ""),
           e.consumer.empty() ? "-" : e.consumer, e.deliveries,
           e.kind == proto::PendingKindWire::kParked ? "-" : FormatDurationMs(e.idle_ms), due});
  }
  t.Print(ctx);
}

void AddPending(CLI::App& app, Context& ctx, const std::shared_ptr<Flags>& f) {
  CLI::App* pending = app.add_subcommand("pending", "A queue group's pending entries (XPENDING)");
  pending->add_option("group", f->group, "Queue group")->required();
  pending->add_option("topic", f->topic, "Its topic")->required();
  pending->add_option("--consumer,-c", f->consumer, "Only entries locked by this consumer");
  pending->add_option("--min-idle", f->min_idle, "Only entries idle at least this long (30s)")
      ->capture_default_str();
  pending->add_option("--partition,-p", f->partition, "Only this partition");
  pending->add_option("-n,--count", f->count, "At most this many")->capture_default_str();
  pending->callback([&ctx, f] {
    proto::ListPendingRequest q;
    q.group = f->group;
    q.consumer = f->consumer;
    q.min_idle_ms = DurationFlag("--min-idle", f->min_idle);
    q.partition = f->partition.value_or(-1);
    q.max = f->count;
    (void)QueueGroup(ctx, f->group, f->topic);
    auto r = Check(ctx.Admin().ListPending(q), "pending");
    PendingTable(ctx, r.topic, r.entries);
  });

  CLI::App* claim = app.add_subcommand(
      "claim", "Give locked entries idle for --min-idle to --consumer (XCLAIM)");
  claim->add_option("group", f->group, "Queue group")->required();
  claim->add_option("topic", f->topic, "Its topic")->required();
  claim->add_option("--consumer,-c", f->consumer, "The new owner")->required();
  claim->add_option("--min-idle", f->min_idle, "Only entries idle at least this long")->required();
  claim->add_option("-n,--count", f->count, "At most this many")->capture_default_str();
  claim->callback([&ctx, f] {
    const int64_t min_idle = DurationFlag("--min-idle", f->min_idle);
    (void)QueueGroup(ctx, f->group, f->topic);
    auto r = Check(ctx.Admin().Claim(f->group, f->consumer, min_idle, f->count), "claim");
    if (ctx.json) {
      JsonWriter w;
      w.BeginObject().Field("group", f->group).Field("consumer", f->consumer).Key("claimed").BeginArray();
      for (const auto& rec : r.records) {
        w.BeginObject().Field("partition", rec.partition).Field("offset", rec.offset)
            .Field("deliveries", rec.deliveries).Field("lock_until_ms", rec.lock_until_ms).EndObject();
      }
      w.EndArray().Field("count", static_cast<int64_t>(r.records.size())).EndObject();
      return PrintJson(w);
    }
    if (r.records.empty()) {
      std::printf("nothing to claim\n");
      return;
    }
    Table t({"PARTITION", "OFFSET", "DELIVERIES", "LOCKED-UNTIL", "KEY"});
    for (const auto& rec : r.records)
      t.Row({rec.partition, rec.offset, rec.deliveries, FormatTimeMs(rec.lock_until_ms), Printable(rec.key, 40)});
    t.Print(ctx);
    std::printf("claimed %zu entries for %s\n", r.records.size(), f->consumer.c_str());
  });
}

void DeadLetterJson(JsonWriter& w, const proto::DeadLetterWire& d, bool with_value) {
  w.BeginObject()
      .Field("dlq_partition", d.dlq_partition)
      .Field("dlq_offset", d.dlq_offset)
      .Field("source_topic", d.source_topic)
      .Field("source_partition", d.source_partition)
      .Field("source_offset", d.source_offset)
      .Field("deliveries", d.deliveries)
      .Field("reason", d.reason)
      .Field("first_failure_ms", d.first_failure_ms)
      .Field("last_failure_ms", d.last_failure_ms);
  w.Key("key");
  d.key ? w.String(*d.key) : w.Null();
  if (with_value) {
    w.Key("value");
    d.value ? w.String(*d.value) : w.Null();
  }
  w.EndObject();
}

void AddDlq(CLI::App& app, Context& ctx, const std::shared_ptr<Flags>& f) {
  CLI::App* dlq = app.add_subcommand("dlq", "A queue group's dead letters");
  dlq->require_subcommand(1);

  CLI::App* list = dlq->add_subcommand("list", "List dead letters, oldest first");
  list->add_option("group", f->group, "Queue group")->required();
  list->add_option("topic", f->topic, "Its topic")->required();
  list->add_option("-n,--count", f->count, "At most this many")->capture_default_str();
  list->add_option("--reason", f->reason, "Only reasons matching this glob (http_5*, timeout)");
  list->callback([&ctx, f] {
    (void)QueueGroup(ctx, f->group, f->topic);
    auto letters = Check(ctx.Admin().ListDeadLetters(f->group, f->count), "dlq list");
    if (f->reason) {
      std::erase_if(letters, [&](const proto::DeadLetterWire& d) {
        return !GlobMatch(*f->reason, d.reason);
      });
    }
    if (ctx.json) {
      JsonWriter w;
      w.BeginObject().Field("group", f->group).Key("dead_letters").BeginArray();
      for (const auto& d : letters) DeadLetterJson(w, d, false);
      w.EndArray().Field("count", static_cast<int64_t>(letters.size())).EndObject();
      return PrintJson(w);
    }
    if (letters.empty()) {
      std::printf("no dead letters\n");
      return;
    }
    Table t({"DLQ-PARTITION", "DLQ-OFFSET", "SOURCE", "DELIVERIES", "REASON", "LAST-FAILURE", "KEY"});
    for (const auto& d : letters) {
      t.Row({d.dlq_partition, d.dlq_offset,
             d.source_topic + "/" + std::to_string(d.source_partition) + "@" + std::to_string(d.source_offset),
             d.deliveries, Table::Cell(d.reason, "31"), FormatTimeMs(d.last_failure_ms), Printable(d.key, 32)});
    }
    t.Print(ctx);
  });

  CLI::App* show = dlq->add_subcommand("show", "One dead letter with its value");
  show->add_option("group", f->group, "Queue group")->required();
  show->add_option("topic", f->topic, "Its topic")->required();
  show->add_option("--offset", f->offset, "DLQ offset")->required();
  show->add_option("--partition,-p", f->partition, "DLQ partition (default: the only match)");
  show->callback([&ctx, f] {
    (void)QueueGroup(ctx, f->group, f->topic);
    auto letters = Check(ctx.Admin().ListDeadLetters(f->group, 1'000, *f->offset), "dlq show");
    std::vector<proto::DeadLetterWire> hits;
    for (auto& d : letters) {
      if (d.dlq_offset == *f->offset && (!f->partition || d.dlq_partition == *f->partition))
        hits.push_back(std::move(d));
    }
    if (hits.empty()) Fail(Status::NotFound("no dead letter of '" + f->group + "' at offset " + std::to_string(*f->offset)));
    if (hits.size() > 1) Fail(Status::InvalidArgument("offset " + std::to_string(*f->offset) + " exists in " + std::to_string(hits.size()) + " DLQ partitions; pass --partition"));
    const auto& d = hits[0];
    if (ctx.json) {
      JsonWriter w;
      DeadLetterJson(w, d, true);
      return PrintJson(w);
    }
    PrintFields({{"DLQ position", std::to_string(d.dlq_partition) + "@" + std::to_string(d.dlq_offset)},
                 {"Source", d.source_topic + "/" + std::to_string(d.source_partition) + "@" + std::to_string(d.source_offset)},
                 {"Reason", d.reason},
                 {"Deliveries", std::to_string(d.deliveries)},
                 {"First failure", FormatTimeMs(d.first_failure_ms)},
                 {"Last failure", FormatTimeMs(d.last_failure_ms)},
                 {"Key", Printable(d.key)},
                 {"Value", Printable(d.value)}});
  });

  CLI::App* redrive = dlq->add_subcommand("redrive", "Send dead letters back to be processed again");
  redrive->add_option("group", f->group, "Queue group")->required();
  redrive->add_option("topic", f->topic, "Its topic")->required();
  redrive->add_option("--to", f->to_topic, "Target topic (default: the source topic)");
  redrive->add_option("--reason", f->reason,
                     "Only dead letters whose reason matches this glob (http_5*, timeout)");
  redrive->add_option("--range", f->range, "DLQ offsets A-B (inclusive), A- or A");
  redrive->callback([&ctx, f] {
    proto::RedriveRequest spec;
    spec.to_topic = f->to_topic;
    spec.reason = f->reason;
    if (!f->range.empty()) std::tie(spec.from, spec.to) = ParseRange(f->range);
    (void)QueueGroup(ctx, f->group, f->topic);
    const int64_t n = Check(ctx.Admin().Redrive(f->group, spec), "dlq redrive");
    JsonWriter w;
    w.BeginObject().Field("group", f->group).Field("redriven", n).EndObject();
    OkJson(ctx, "redrove " + std::to_string(n) + " dead letters", w);
  });

  CLI::App* purge = dlq->add_subcommand("purge", "Delete every dead letter of the group");
  purge->add_option("group", f->group, "Queue group")->required();
  purge->add_option("topic", f->topic, "Its topic")->required();
  purge->callback([&ctx, f] {
    (void)QueueGroup(ctx, f->group, f->topic);
    Check(ctx.Admin().PurgeDeadLetters(f->group), "dlq purge");
    JsonWriter w;
    w.BeginObject().Field("group", f->group).Field("purged", true).EndObject();
    OkJson(ctx, "purged the dead letters of " + f->group, w);
  });
}

void AddStatus(CLI::App& app, Context& ctx, const std::shared_ptr<Flags>& f) {
  CLI::App* status = app.add_subcommand("status", "Where one record is, for every group");
  status->add_option("topic", f->topic, "Topic")->required();
  auto* p = status->add_option("--partition,-p", f->partition, "Partition");
  auto* o = status->add_option("--offset", f->offset, "Offset");
  auto* k = status->add_option("--dedup-key", f->dedup_key, "The record's dedup key");
  p->needs(o);
  o->needs(p);
  k->excludes(p);
  k->excludes(o);
  status->callback([&ctx, f] {
    if (f->dedup_key.empty() && !f->offset) UsageError("status: give --partition and --offset, or --dedup-key");
    auto r = f->dedup_key.empty()
                 ? Check(ctx.Admin().StatusOf(f->topic, *f->partition, *f->offset), "status")
                 : Check(ctx.Admin().StatusByDedupKey(f->topic, f->dedup_key), "status");
    if (ctx.json) {
      JsonWriter w;
      w.BeginObject().Field("topic", f->topic).Key("groups").BeginArray();
      for (const auto& s : r) {
        w.BeginObject().Field("group", s.group).Field("state", proto::RecordStateName(s.state)).Field("consumer", s.consumer)
            .Field("deliveries", s.deliveries).Field("lock_until_ms", s.lock_until_ms);
        if (s.state == proto::RecordStateWire::kDeadLettered)
          w.Field("dlq_partition", s.dlq_partition).Field("dlq_offset", s.dlq_offset).Field("reason", s.reason);
        w.EndObject();
      }
      w.EndArray().EndObject();
      return PrintJson(w);
    }
    if (r.empty()) {
      std::printf("no group reads %s\n", f->topic.c_str());
      return;
    }
    Table t({"GROUP", "STATE", "CONSUMER", "DELIVERIES", "UNTIL", "DLQ", "REASON"});
    for (const auto& s : r) {
      const bool dead = s.state == proto::RecordStateWire::kDeadLettered;
      t.Row({s.group, Table::Cell(std::string(proto::RecordStateName(s.state)), dead ? "31" : s.state == proto::RecordStateWire::kAcked ? "32" : ""),
             s.consumer.empty() ? "-" : s.consumer, s.deliveries, FormatTimeMs(s.lock_until_ms),
             dead ? std::to_string(s.dlq_partition) + "@" + std::to_string(s.dlq_offset) : "-",
             s.reason.empty() ? "-" : s.reason});
    }
    t.Print(ctx);
  });
}

}  // namespace

void AddGroupCommands(CLI::App& app, Context& ctx) {
  auto f = std::make_shared<Flags>();
  AddGroup(app, ctx, f);
  AddPending(app, ctx, f);
  AddDlq(app, ctx, f);
  AddStatus(app, ctx, f);
}

}  // namespace runnel::ctl
