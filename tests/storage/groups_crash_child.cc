// Group crash-test child: a producer plus consumer threads doing deliver / ack / nack / reject on
// queue group "g" of topic "jobs", reporting every acknowledged ack and reject to a pipe as
// (kind:i32 1=ack 2=reject, partition:i32, offset:i64) until killed.
// Usage: groups_crash_child DATA_DIR ROUND FD
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "runnel/common/record_batch.h"
#include "runnel/storage/log_store.h"

using namespace runnel;
using namespace runnel::storage;

namespace {

void Report(int fd, int32_t kind, const std::vector<RecordRef>& refs) {
  std::string buf;
  for (const RecordRef& r : refs) {
    char rec[16];
    const int32_t p = r.partition.value();
    const int64_t off = r.offset.value();
    std::memcpy(rec, &kind, 4);
    std::memcpy(rec + 4, &p, 4);
    std::memcpy(rec + 8, &off, 8);
    buf.append(rec, 16);
  }
  // <= 32 refs * 16 bytes < PIPE_BUF: one atomic write.
  if (!buf.empty() && write(fd, buf.data(), buf.size()) != static_cast<ssize_t>(buf.size()))
    _exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  const int round = std::atoi(argv[2]);
  const int fd = std::atoi(argv[3]);
  LogStoreOptions o;
  o.data_dir = argv[1];
  o.retention_check_interval_ms = 0;
  auto opened = LogStore::Open(o);
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  auto store = std::move(opened).value();
  Groups& groups = store->groups();
  std::vector<std::thread> threads;
  threads.emplace_back([&] {  // producer
    for (int b = 0;; ++b) {
      RecordBatchBuilder builder;
      for (int i = 0; i < 100; ++i) {
        builder.Add(
            1000, std::nullopt,
            "r" + std::to_string(round) + "-" + std::to_string(b) + "-" + std::to_string(i));
      }
      auto r = store->Append(
          AppendRequest{"jobs", Partition(b % 4), builder.Build(), AckMode::kDurable});
      if (!r.ok()) _exit(1);
      // Stay ahead of the consumers so they are always busy when the kill lands.
      const auto lag = store->groups().DescribeGroup("g");
      int64_t backlog = 0;
      if (lag.ok()) {
        for (const auto& p : lag->partitions) backlog += p.lag;
      }
      if (backlog > 20'000) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string me = "r" + std::to_string(round) + "-c" + std::to_string(t);
      std::mt19937 rng(static_cast<unsigned>(round * 31 + t));
      while (true) {
        auto d = groups.Deliver("g", me, 1 + static_cast<int32_t>(rng() % 32), 1 << 20);
        if (!d.ok()) {
          std::fprintf(stderr, "deliver: %s\n", d.status().ToString().c_str());
          _exit(1);
        }
        if (d->empty()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        std::vector<RecordRef> ack, nack, reject;
        for (const auto& r : *d) {
          const unsigned roll = rng() % 10;
          (roll < 7 ? ack : roll < 9 ? nack : reject).push_back({r.partition, r.offset});
        }
        if (!ack.empty()) {
          if (!groups.Ack("g", me, ack).ok()) _exit(1);
          Report(fd, 1, ack);
        }
        if (!nack.empty() && !groups.Nack("g", me, nack, static_cast<int64_t>(rng() % 20)).ok())
          _exit(1);
        if (!reject.empty()) {
          if (!groups.Reject("g", me, reject, "crash-test").ok()) _exit(1);
          Report(fd, 2, reject);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  return 0;
}
