// Helpers shared by the storage suites: building batches and reading partitions back.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "runnel/common/record_batch.h"
#include "runnel/storage/format.h"
#include "runnel/storage/log_store.h"
#include "runnel/testing/temp_dir.h"

namespace runnel::storage::testutil {

inline constexpr int64_t kT0 = 1'700'000'000'000;

// A store in a temporary directory with a manual clock and no background retention thread.
struct StoreFixture {
  testing::TempDir dir;
  ManualClock clock{kT0};
  std::unique_ptr<LogStore> store;

  StoreFixture() { Open(); }
  LogStoreOptions Options() {
    LogStoreOptions o;
    o.data_dir = dir.Sub("data");
    o.clock = &clock;
    o.retention_check_interval_ms = 0;  // tests call EnforceRetention themselves
    o.partition_write_buffer_bytes = 4 << 20;
    return o;
  }
  void Open() {
    auto r = LogStore::Open(Options());
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    store = std::move(r).value();
  }
  void Reopen() {
    store.reset();
    Open();
  }
};

struct TestRecord {
  std::string value;
  std::string dedup_key;  // empty: none
  int64_t timestamp = 1'000;
};

inline std::string MakeBatch(const std::vector<TestRecord>& records,
                             BatchBuilderOptions opts = {}) {
  RecordBatchBuilder b(opts);
  for (const TestRecord& r : records) {
    if (r.dedup_key.empty()) {
      b.Add(r.timestamp, std::nullopt, r.value);
    } else {
      RecordHeader h[] = {{format::kDedupKeyHeader, std::string_view(r.dedup_key)}};
      b.Add(r.timestamp, std::nullopt, r.value, h);
    }
  }
  return b.Build();
}

// n records "<prefix>0".."<prefix>{n-1}" with the given timestamp.
inline std::string MakeBatch(int n, const std::string& prefix, int64_t timestamp = 1'000,
                             BatchBuilderOptions opts = {}) {
  std::vector<TestRecord> rs;
  for (int i = 0; i < n; ++i) rs.push_back({prefix + std::to_string(i), "", timestamp});
  return MakeBatch(rs, opts);
}

inline AppendRequest Req(const std::string& topic, int partition, std::string batch,
                         AckMode acks = AckMode::kDurable) {
  return AppendRequest{topic, Partition(partition), std::move(batch), acks};
}

// Every (offset, value) of a partition from `from` to the high watermark, validating each batch.
inline std::vector<std::pair<int64_t, std::string>> ReadAll(const LogStore& store,
                                                            const std::string& topic, int partition,
                                                            int64_t from = -1) {
  std::vector<std::pair<int64_t, std::string>> out;
  int64_t next =
      from >= 0 ? from
                : store.ListOffset(topic, Partition(partition), OffsetQuery::Earliest())->value();
  while (true) {
    auto r = store.Read(topic, Partition(partition), Offset(next), 1 << 20);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    if (r->batch_count == 0) break;
    std::string_view rest = r->records;
    while (!rest.empty()) {
      BatchHeader h;
      REQUIRE(PeekBatchHeader(rest, &h).ok());
      auto d = DecodedBatch::Decode(rest.substr(0, h.total_size()));
      REQUIRE_MESSAGE(d.ok(), d.status().ToString());
      for (const Record& rec : d->records()) {
        if (rec.offset >= next) out.emplace_back(rec.offset, std::string(rec.value.value_or("")));
      }
      next = h.next_offset();
      rest.remove_prefix(h.total_size());
    }
  }
  return out;
}

}  // namespace runnel::storage::testutil
