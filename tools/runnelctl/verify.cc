// verify: an offline check of a stopped broker's data directory. Reads every stored batch of every
// partition (CRC, header, full decode), checks that the batches cover the partition's offsets
// from its log start to its end without gaps or overlaps, and that the groups' state decodes.
// Exits non-zero when anything is wrong, naming topic, partition and offset.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "ctl.h"
#include "runnel/common/units.h"
#include "runnel/storage/inspect.h"

namespace runnel::ctl {
namespace {

struct Problem {
  std::string topic;
  int32_t partition = -1;  // -1: not about one partition
  int64_t offset = -1;     // -1: not about one offset
  std::string error;
};

struct Totals {
  int64_t topics = 0, partitions = 0, batches = 0, records = 0, bytes = 0;
};

// One partition: its batches against the persisted state (log start, next offset).
void VerifyPartition(const storage::DataDirInspector& in, const storage::InspectedTopic& t,
                     const storage::InspectedPartition& p, Totals* totals,
                     std::vector<Problem>* problems) {
  const int64_t start = p.state.log_start, end = p.state.next_offset;
  auto problem = [&](int64_t offset, std::string error) {
    problems->push_back({t.name, p.partition, offset, std::move(error)});
  };
  bool first = true;
  int64_t expected = -1;  // the offset the next batch must start at; -1: unknown
  Status scan = in.ForEachBatch(p.uid, [&](const storage::InspectedBatch& b) {
    ++totals->batches;
    totals->records += b.records;
    totals->bytes += static_cast<int64_t>(b.bytes);
    if (!b.check.ok()) {
      problem(b.base_offset, b.check.ToString());
      // Its header cannot be trusted: go on from the next batch's own base offset.
      first = false;
      expected = -1;
      return true;
    }
    if (first && b.base_offset > start) {
      problem(start, "offsets [" + std::to_string(start) + ", " + std::to_string(b.base_offset) +
                         ") are missing: the log starts at " + std::to_string(start) +
                         " but the first stored batch at " + std::to_string(b.base_offset));
    } else if (first && b.last_offset < start) {
      problem(b.base_offset, "batch [" + std::to_string(b.base_offset) + ", " +
                                 std::to_string(b.last_offset) + "] lies below the log start " +
                                 std::to_string(start));
    } else if (expected >= 0 && b.base_offset > expected) {
      problem(expected, "offsets [" + std::to_string(expected) + ", " +
                            std::to_string(b.base_offset) + ") are missing (a gap between batches)");
    } else if (expected >= 0 && b.base_offset < expected) {
      problem(b.base_offset, "batch starts at " + std::to_string(b.base_offset) +
                                 ", inside the batch before it (which ends at " +
                                 std::to_string(expected - 1) + ")");
    }
    if (b.last_offset >= end) {
      problem(b.base_offset, "batch [" + std::to_string(b.base_offset) + ", " +
                                 std::to_string(b.last_offset) + "] goes past the partition's end " +
                                 std::to_string(end));
    }
    first = false;
    expected = b.last_offset + 1;
    return true;
  });
  if (!scan.ok()) {
    problem(-1, scan.ToString());
    return;
  }
  if (first && end > start) {
    problem(start, "offsets [" + std::to_string(start) + ", " + std::to_string(end) +
                       ") are missing: no stored batch holds them");
  } else if (expected >= 0 && expected < end) {
    problem(expected, "offsets [" + std::to_string(expected) + ", " + std::to_string(end) +
                          ") are missing at the end of the log");
  }
}

void Verify(Context& ctx, const std::string& data_dir) {
  // The inspector refuses a store another process has open, and a store whose WAL is damaged
  // (naming the file and byte): both are answers of verify too.
  auto inspector = Check(storage::DataDirInspector::Open(data_dir), "verify");
  Totals totals;
  std::vector<Problem> problems;
  for (const auto& t : inspector->Topics()) {
    ++totals.topics;
    for (const auto& p : t.partitions) {
      ++totals.partitions;
      std::vector<Problem> found;
      VerifyPartition(*inspector, t, p, &totals, &found);
      problems.insert(problems.end(), found.begin(), found.end());
    }
  }
  int64_t groups = 0;
  if (auto g = inspector->Groups(); g.ok()) {
    groups = static_cast<int64_t>(g->size());
  } else {
    problems.push_back({"", -1, -1, "consumer groups: " + g.status().ToString()});
  }

  if (ctx.json) {
    JsonWriter w;
    w.BeginObject()
        .Field("data_dir", data_dir)
        .Field("ok", problems.empty())
        .Field("topics", totals.topics)
        .Field("partitions", totals.partitions)
        .Field("batches", totals.batches)
        .Field("records", totals.records)
        .Field("bytes", totals.bytes)
        .Field("groups", groups)
        .Key("problems")
        .BeginArray();
    for (const auto& p : problems) {
      w.BeginObject().Field("topic", p.topic).Field("partition", p.partition)
          .Field("offset", p.offset).Field("error", p.error).EndObject();
    }
    w.EndArray().EndObject();
    PrintJson(w);
  } else {
    std::printf("%s: %lld topics, %lld partitions, %lld batches, %lld records, %s checked; %lld "
                "groups\n",
                data_dir.c_str(), static_cast<long long>(totals.topics),
                static_cast<long long>(totals.partitions), static_cast<long long>(totals.batches),
                static_cast<long long>(totals.records), FormatBytes(totals.bytes).c_str(),
                static_cast<long long>(groups));
    for (const auto& p : problems) {
      std::string where = p.topic.empty() ? std::string("store") : p.topic;
      if (p.partition >= 0) where += "/" + std::to_string(p.partition);
      if (p.offset >= 0) where += " offset " + std::to_string(p.offset);
      std::printf("  PROBLEM %s: %s\n", where.c_str(), p.error.c_str());
    }
    if (problems.empty()) std::printf("ok: every batch checked, offsets contiguous\n");
  }
  if (!problems.empty()) {
    Fail(Status::Corruption(std::to_string(problems.size()) + " problem" +
                            (problems.size() == 1 ? "" : "s") + " in " + data_dir),
         "verify");
  }
}

}  // namespace

void AddVerifyCommands(CLI::App& app, Context& ctx) {
  auto dir = std::make_shared<std::string>();
  CLI::App* verify = app.add_subcommand(
      "verify", "Check a stopped broker's data directory offline: every batch's CRC and records, "
                "offsets contiguous from log start to end; exit 1 on any problem");
  verify->add_option("data_dir", *dir, "The data directory")->required();
  verify->callback([&ctx, dir] { Verify(ctx, *dir); });
}

}  // namespace runnel::ctl
