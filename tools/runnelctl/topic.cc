// topic create / list / describe / delete / alter
#include <CLI/CLI.hpp>

#include "ctl.h"
#include "runnel/common/units.h"

namespace runnel::ctl {
namespace {

struct TopicFlags {
  std::string name;
  int32_t partitions = 0;
  std::string retention;
  std::string retention_bytes;
  std::string max_message_bytes;
  std::string dedup_window;
  std::vector<std::string> config;
};

void AddConfigFlags(CLI::App* cmd, TopicFlags& f) {
  cmd->add_option("--retention", f.retention, "Keep records this long (7d, 12h; -1 forever)");
  cmd->add_option("--retention-bytes", f.retention_bytes,
                  "Keep at most this much per partition (10GiB; -1 unbounded)");
  cmd->add_option("--max-message-bytes", f.max_message_bytes, "Largest accepted batch (1MiB)");
  cmd->add_option("--dedup-window", f.dedup_window, "Dedup-key window (10m; 0 off)");
  cmd->add_option("--config", f.config, "Any topic config key=value (repeatable)");
}

proto::ConfigEntries ConfigOf(const TopicFlags& f) {
  proto::ConfigEntries out;
  auto duration = [&](const std::string& flag, const std::string& v, const char* key) {
    if (v.empty()) return;
    out.emplace_back(key, v == "-1" ? "-1" : std::to_string(DurationFlag(flag, v)));
  };
  auto bytes = [&](const std::string& flag, const std::string& v, const char* key) {
    if (v.empty()) return;
    out.emplace_back(key, v == "-1" ? "-1" : std::to_string(BytesFlag(flag, v)));
  };
  duration("--retention", f.retention, "retention.ms");
  bytes("--retention-bytes", f.retention_bytes, "retention.bytes");
  bytes("--max-message-bytes", f.max_message_bytes, "max.message.bytes");
  duration("--dedup-window", f.dedup_window, "dedup.window.ms");
  for (const auto& kv : f.config) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) UsageError("--config: expected key=value, not '" + kv + "'");
    out.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return out;
}

// A config value in human units where the key says what it is.
std::string HumanConfig(const std::string& key, const std::string& value) {
  int64_t v = 0;
  try {
    v = std::stoll(value);
  } catch (...) {
    return value;
  }
  if (v < 0) return "unlimited";
  if (key.ends_with(".ms")) return FormatDurationMs(v);
  if (key.ends_with(".bytes")) return FormatBytes(v);
  return value;
}

void WriteTopicJson(JsonWriter& w, const proto::TopicMetadata& t) {
  const TopicTotals totals = Totals(t);
  w.BeginObject().Field("name", t.name).Field("id", static_cast<int64_t>(t.id));
  w.Field("partition_count", static_cast<int64_t>(t.partitions.size()));
  w.Field("records", totals.records).Field("size_bytes", totals.bytes);
  w.Key("config").BeginObject();
  for (const auto& [k, v] : t.config) w.Field(k, v);
  w.EndObject();
  w.Key("partitions").BeginArray();
  for (const auto& p : t.partitions) {
    w.BeginObject()
        .Field("partition", p.partition)
        .Field("log_start", p.log_start)
        .Field("log_end", p.high_watermark)
        .Field("records", p.high_watermark - p.log_start)
        .Field("size_bytes", p.size_bytes)
        .EndObject();
  }
  w.EndArray().EndObject();
}

void Done(Context& ctx, const std::string& what, const std::string& name) {
  if (ctx.json) {
    JsonWriter w;
    w.BeginObject().Field("ok", true).Field("topic", name).EndObject();
    PrintJson(w);
  } else {
    std::printf("%s topic %s\n", what.c_str(), name.c_str());
  }
}

}  // namespace

void AddTopicCommands(CLI::App& app, Context& ctx) {
  CLI::App* topic = app.add_subcommand("topic", "Create, list, describe, alter and delete topics");
  topic->require_subcommand(1);
  auto f = std::make_shared<TopicFlags>();

  CLI::App* create = topic->add_subcommand("create", "Create a topic");
  create->add_option("name", f->name, "Topic name")->required();
  create->add_option("--partitions,-p", f->partitions, "Partition count")->required()
      ->check(CLI::Range(1, 100000));
  AddConfigFlags(create, *f);
  create->callback([&ctx, f] {
    Check(ctx.Admin().CreateTopic(f->name, f->partitions, ConfigOf(*f)), "topic create");
    Done(ctx, "created", f->name);
  });

  CLI::App* alter = topic->add_subcommand("alter", "Add partitions or change config");
  alter->add_option("name", f->name, "Topic name")->required();
  alter->add_option("--partitions,-p", f->partitions, "New partition count (only grows)")
      ->check(CLI::Range(1, 100000));
  AddConfigFlags(alter, *f);
  alter->callback([&ctx, f] {
    const auto config = ConfigOf(*f);
    if (f->partitions == 0 && config.empty()) UsageError("topic alter: nothing to change");
    Check(ctx.Admin().AlterTopic(f->name, f->partitions, config), "topic alter");
    Done(ctx, "altered", f->name);
  });

  CLI::App* del = topic->add_subcommand("delete", "Delete a topic and its records");
  del->add_option("name", f->name, "Topic name")->required();
  del->callback([&ctx, f] {
    Check(ctx.Admin().DeleteTopic(f->name), "topic delete");
    Done(ctx, "deleted", f->name);
  });

  CLI::App* list = topic->add_subcommand("list", "List topics");
  list->callback([&ctx] {
    auto topics = Check(ctx.Admin().DescribeTopics({}));
    std::sort(topics.begin(), topics.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    if (ctx.json) {
      JsonWriter w;
      w.BeginObject().Key("topics").BeginArray();
      for (const auto& t : topics) WriteTopicJson(w, t);
      w.EndArray().EndObject();
      return PrintJson(w);
    }
    Table table({"TOPIC", "PARTITIONS", "RECORDS", "SIZE", "RETENTION"});
    for (const auto& t : topics) {
      const TopicTotals totals = Totals(t);
      std::string retention = "-";
      for (const auto& [k, v] : t.config)
        if (k == "retention.ms") retention = HumanConfig(k, v);
      table.Row({t.name, static_cast<int64_t>(t.partitions.size()), totals.records,
                 FormatBytes(totals.bytes), retention});
    }
    table.Print(ctx);
  });

  CLI::App* describe = topic->add_subcommand("describe", "Partitions, offsets, sizes and config");
  describe->add_option("name", f->name, "Topic name")->required();
  describe->callback([&ctx, f] {
    const proto::TopicMetadata t = DescribeTopic(ctx, f->name);
    if (ctx.json) {
      JsonWriter w;
      WriteTopicJson(w, t);
      return PrintJson(w);
    }
    std::vector<std::pair<std::string, std::string>> fields{
        {"Topic", t.name}, {"Partitions", std::to_string(t.partitions.size())}};
    for (const auto& [k, v] : t.config) fields.emplace_back(k, HumanConfig(k, v));
    PrintFields(fields);
    std::printf("\n");
    Table table({"PARTITION", "LOG-START", "LOG-END", "RECORDS", "SIZE"});
    for (const auto& p : t.partitions) {
      table.Row({p.partition, p.log_start, p.high_watermark, p.high_watermark - p.log_start,
                 FormatBytes(p.size_bytes)});
    }
    table.Print(ctx);
  });
}

}  // namespace runnel::ctl
