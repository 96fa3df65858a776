// Crash-test child: appends to an existing store with durable acks from several threads and
// reports every acknowledged record as (partition:i32, offset:i64, crc:u32) to a pipe, until it
// is killed. Usage: storage_crash_child DATA_DIR ROUND FD
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "runnel/common/crc32c.h"
#include "runnel/common/record_batch.h"
#include "runnel/storage/log_store.h"

using namespace runnel;
using namespace runnel::storage;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DATA_DIR ROUND FD\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int round = std::atoi(argv[2]);
  const int fd = std::atoi(argv[3]);
  LogStoreOptions o;
  o.data_dir = dir;
  o.retention_check_interval_ms = 0;
  o.partition_write_buffer_bytes = 1 << 20;  // small memtables: flushes happen during the test
  auto opened = LogStore::Open(o);
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<LogStore> store = std::move(opened).value();
  constexpr int kThreads = 6;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const int partition = t % 4;
      const int64_t producer_id = int64_t{round} * 100 + t + 1;
      int32_t seq = 0;
      unsigned rng = static_cast<unsigned>(round * 7919 + t);
      for (int b = 0;; ++b) {
        rng = rng * 1103515245u + 12345u;
        const int n = 1 + static_cast<int>((rng >> 16) % 20);
        const Compression c = (b % 3 == 0) ? Compression::kLz4 : Compression::kNone;
        RecordBatchBuilder builder({c, producer_id, 0, seq});
        std::vector<std::string> values;
        for (int i = 0; i < n; ++i) {
          values.push_back("r" + std::to_string(round) + "-t" + std::to_string(t) + "-s" +
                           std::to_string(seq + i) +
                           std::string(static_cast<size_t>((rng >> 8) % 200), 'x'));
          builder.Add(1'000 + b, std::nullopt, values.back());
        }
        auto r = store->Append(
            AppendRequest{"crash", Partition(partition), builder.Build(), AckMode::kDurable});
        if (!r.ok()) {
          std::fprintf(stderr, "append: %s\n", r.status().ToString().c_str());
          _exit(1);
        }
        seq += n;
        // One write per batch (<= 20 * 16 bytes < PIPE_BUF): atomic even with several threads.
        std::string report;
        for (int i = 0; i < n; ++i) {
          char rec[16];
          const int32_t p = partition;
          const int64_t off = r->base_offset.value() + i;
          const uint32_t crc = crc32c::Value(values[static_cast<size_t>(i)]);
          std::memcpy(rec, &p, 4);
          std::memcpy(rec + 4, &off, 8);
          std::memcpy(rec + 12, &crc, 4);
          report.append(rec, 16);
        }
        if (write(fd, report.data(), report.size()) != static_cast<ssize_t>(report.size()))
          _exit(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  return 0;
}
