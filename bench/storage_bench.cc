// runnel-storage-bench: in-process LogStore benchmark (no network). Measures durable appends of
// 100-byte event records and 1 KiB incompressible records, a catch-up read of the log, and the
// disk's own sequential write bandwidth in the same data directory for comparison.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "runnel/common/clock.h"
#include "runnel/common/record_batch.h"
#include "runnel/storage/log_store.h"

namespace {

using namespace runnel;
using namespace runnel::storage;
using Clock = std::chrono::steady_clock;

struct Settings {
  std::string data_dir;
  bool keep = false;
  bool json = false;
  double seconds = 10;
  int producers = 8;
  int partitions = 8;
  int inflight = 4;
  size_t batch_bytes = 64 << 10;
  std::string compression_100b = "lz4";
  size_t disk_bytes = size_t{1} << 30;
};

struct AppendStats {
  double seconds = 0;
  uint64_t records = 0;
  uint64_t payload_bytes = 0;
  uint64_t commits = 0;
  uint64_t fsyncs = 0;
  double p50_us = 0, p99_us = 0, max_us = 0;
  uint64_t errors = 0;
};

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

// Event payloads shaped like the seeds' messages: a barcode scan or a notification request,
// with random ids and a millisecond timestamp, about 100 bytes each.
std::vector<std::string> EventPool(size_t n) {
  std::mt19937_64 rng(1);
  std::vector<std::string> pool;
  char buf[256];
  for (size_t i = 0; i < n; ++i) {
    const auto ts = 1'700'000'000'000LL + static_cast<long long>(rng() % 86'400'000);
    int len;
    if (i % 2 == 0) {
      len = std::snprintf(buf, sizeof buf,
                          "{\"type\":\"scan\",\"barcodeId\":\"BC%010llu\",\"internalBarcodeId\":\"%"
                          "016llx\",\"wh\":%u,\"ts\":%lld}",
                          static_cast<unsigned long long>(rng() % 10'000'000'000ULL),
                          static_cast<unsigned long long>(rng()), static_cast<unsigned>(rng() % 64),
                          ts);
    } else {
      len = std::snprintf(buf, sizeof buf,
                          "{\"type\":\"notify\",\"userId\":%llu,\"channel\":\"push\",\"tpl\":"
                          "\"order-shipped\",\"ts\":%lld}",
                          static_cast<unsigned long long>(rng() % 100'000'000), ts);
    }
    std::string s(buf, static_cast<size_t>(len));
    s.resize(100, ' ');
    pool.push_back(std::move(s));
  }
  return pool;
}

std::vector<std::string> RandomPool(size_t n, size_t size) {
  std::mt19937_64 rng(2);
  std::vector<std::string> pool(n, std::string(size, '\0'));
  for (auto& s : pool) {
    for (size_t i = 0; i + 8 <= size; i += 8) {
      const uint64_t r = rng();
      std::memcpy(s.data() + i, &r, 8);
    }
  }
  return pool;
}

AppendStats RunAppends(LogStore& store, const Settings& st, const std::string& topic,
                       const std::vector<std::string>& pool, Compression compression) {
  const size_t record_size = pool[0].size();
  const int per_batch = std::max<int>(1, static_cast<int>(st.batch_bytes / (record_size + 12)));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> records{0}, errors{0};
  std::mutex lat_mu;
  std::vector<double> latencies;
  const StoreStats before = store.GetStats();
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < st.producers; ++t) {
    threads.emplace_back([&, t] {
      std::counting_semaphore<1024> slots(st.inflight);
      const Partition partition(t % st.partitions);
      size_t next = static_cast<size_t>(t) * 7919;
      RecordBatchBuilder builder({compression});
      char key[16];
      while (!stop.load(std::memory_order_relaxed)) {
        slots.acquire();
        const int64_t now_ms = WallClockMs();
        for (int i = 0; i < per_batch; ++i) {
          const std::string& v = pool[next++ % pool.size()];
          const int klen = std::snprintf(key, sizeof key, "u%07zu", next % 1'000'000);
          builder.Add(now_ms, std::string_view(key, static_cast<size_t>(klen)), v);
        }
        const auto sent = Clock::now();
        store.AppendAsync(
            AppendRequest{topic, partition, builder.Build(), AckMode::kDurable},
            [&, sent](Result<AppendResult> r) {
              const double us =
                  std::chrono::duration<double, std::micro>(Clock::now() - sent).count();
              if (r.ok()) {
                records.fetch_add(static_cast<uint64_t>(r->records_written),
                                  std::memory_order_relaxed);
              } else {
                errors.fetch_add(1);
              }
              {
                std::lock_guard lk(lat_mu);
                latencies.push_back(us);
              }
              slots.release();
            });
      }
      for (int i = 0; i < st.inflight; ++i) slots.acquire();  // drain
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(st.seconds));
  stop = true;
  for (auto& th : threads) th.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  const StoreStats after = store.GetStats();
  AppendStats s;
  s.seconds = elapsed;
  s.records = records.load();
  s.payload_bytes = s.records * record_size;
  s.commits = after.commits - before.commits;
  s.fsyncs = after.fsyncs - before.fsyncs;
  s.errors = errors.load();
  s.p50_us = Percentile(latencies, 0.50);
  s.p99_us = Percentile(latencies, 0.99);
  s.max_us = latencies.empty() ? 0 : *std::max_element(latencies.begin(), latencies.end());
  return s;
}

// Reads every partition of `topic` from its start to its end, one thread per partition (up to
// the number of cores), counting records from batch headers as a fetch would serve them.
std::pair<uint64_t, double> RunCatchUpRead(LogStore& store, const std::string& topic,
                                           int partitions) {
  std::atomic<uint64_t> records{0};
  std::atomic<int> next_partition{0};
  const auto t0 = Clock::now();
  const int threads_n =
      std::max(1, std::min<int>(partitions, static_cast<int>(std::thread::hardware_concurrency())));
  std::vector<std::thread> threads;
  for (int t = 0; t < threads_n; ++t) {
    threads.emplace_back([&] {
      for (int p; (p = next_partition.fetch_add(1)) < partitions;) {
        int64_t offset = store.ListOffset(topic, Partition(p), OffsetQuery::Earliest())->value();
        while (true) {
          auto r = store.Read(topic, Partition(p), Offset(offset), 4 << 20);
          if (!r.ok() || r->batch_count == 0) break;
          std::string_view rest = r->records;
          uint64_t n = 0;
          while (!rest.empty()) {
            BatchHeader h;
            if (!PeekBatchHeader(rest, &h).ok()) break;
            n += static_cast<uint64_t>(h.record_count);
            offset = h.next_offset();
            rest.remove_prefix(h.total_size());
          }
          records.fetch_add(n, std::memory_order_relaxed);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  return {records.load(), std::chrono::duration<double>(Clock::now() - t0).count()};
}

// Sequential write of `bytes` in 1 MiB blocks with one fdatasync at the end.
double DiskMBps(const std::string& dir, size_t bytes) {
  const std::string path = dir + "/disk-probe.bin";
  std::string block = RandomPool(1, 1 << 20)[0];
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return 0;
  const auto t0 = Clock::now();
  for (size_t done = 0; done < bytes; done += block.size()) {
    if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size())) break;
  }
  ::fdatasync(fd);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  ::close(fd);
  std::filesystem::remove(path);
  return static_cast<double>(bytes) / 1e6 / secs;
}

}  // namespace

int main(int argc, char** argv) {
  Settings st;
  CLI::App app{"runnel-storage-bench: in-process LogStore throughput and latency"};
  app.add_option("--data-dir", st.data_dir,
                 "Directory for the store (default: a fresh ./bench-data/storage-<pid>)");
  app.add_flag("--keep", st.keep, "Keep the data directory afterwards");
  app.add_flag("--json", st.json, "Print one JSON object instead of a table");
  app.add_option("--seconds", st.seconds, "Duration of each append workload")
      ->check(CLI::PositiveNumber);
  app.add_option("--producers", st.producers, "Producer threads")->check(CLI::Range(1, 256));
  app.add_option("--partitions", st.partitions, "Partitions per topic")->check(CLI::Range(1, 1024));
  app.add_option("--inflight", st.inflight, "Outstanding appends per producer")
      ->check(CLI::Range(1, 1024));
  app.add_option("--batch-bytes", st.batch_bytes, "Uncompressed bytes per record batch")
      ->check(CLI::Range(128, 16 << 20));
  app.add_option("--compression", st.compression_100b,
                 "Codec for the 100-byte workload: lz4 or none");
  app.add_option("--disk-bytes", st.disk_bytes, "Bytes written by the raw disk probe");
  CLI11_PARSE(app, argc, argv);
  auto codec = ParseCompression(st.compression_100b);
  if (!codec.ok()) {
    std::fprintf(stderr, "error: %s\n", codec.status().message().c_str());
    return 2;
  }
  const bool temp_dir = st.data_dir.empty();
  if (temp_dir) st.data_dir = "./bench-data/storage-" + std::to_string(::getpid());
  std::filesystem::create_directories(st.data_dir);

  LogStoreOptions o;
  o.data_dir = st.data_dir;
  o.retention_check_interval_ms = 0;
  auto opened = LogStore::Open(o);
  if (!opened.ok()) {
    std::fprintf(stderr, "error: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  auto store = std::move(opened).value();
  TopicConfig tc;
  tc.retention_ms = -1;
  for (const char* t : {"bench.events", "bench.1k"}) {
    if (Status s = store->CreateTopic(t, st.partitions, tc);
        !s.ok() && s.code() != StatusCode::kAlreadyExists) {
      std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
      return 1;
    }
  }

  const AppendStats small = RunAppends(*store, st, "bench.events", EventPool(1 << 16), *codec);
  const AppendStats large =
      RunAppends(*store, st, "bench.1k", RandomPool(4096, 1024), Compression::kNone);
  const auto [read_records, read_secs] = RunCatchUpRead(*store, "bench.events", st.partitions);
  store.reset();
  const double disk = DiskMBps(st.data_dir, st.disk_bytes);
  if (temp_dir && !st.keep) std::filesystem::remove_all(st.data_dir);

  const double small_rps = static_cast<double>(small.records) / small.seconds;
  const double large_mbps = static_cast<double>(large.payload_bytes) / 1e6 / large.seconds;
  const double read_rps = static_cast<double>(read_records) / read_secs;
  const double commits_ps = static_cast<double>(small.commits) / small.seconds;
  const double per_commit =
      small.commits ? static_cast<double>(small.records) / static_cast<double>(small.commits) : 0;
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  const double max_rss_mb = static_cast<double>(usage.ru_maxrss) / 1024.0;
  if (st.json) {
    std::printf(
        "{\"append_100b_records_per_s\":%.0f,\"append_1k_mb_per_s\":%.1f,\"disk_mb_per_s\":%.1f,"
        "\"append_1k_disk_ratio\":%.3f,\"read_records_per_s\":%.0f,\"commits_per_s\":%.1f,"
        "\"records_per_commit\":%.1f,\"append_p50_us\":%.0f,\"append_p99_us\":%.0f,"
        "\"append_1k_p50_us\":%.0f,\"append_1k_p99_us\":%.0f,\"max_rss_mb\":%.0f,\"errors\":%llu,"
        "\"producers\":%d,\"partitions\":%d,\"batch_bytes\":%zu,\"compression_100b\":\"%s\"}\n",
        small_rps, large_mbps, disk, disk > 0 ? large_mbps / disk : 0, read_rps, commits_ps,
        per_commit, small.p50_us, small.p99_us, large.p50_us, large.p99_us, max_rss_mb,
        static_cast<unsigned long long>(small.errors + large.errors), st.producers, st.partitions,
        st.batch_bytes, st.compression_100b.c_str());
  } else {
    std::printf(
        "runnel-storage-bench: %d producers, %d partitions, %zu-byte batches, %d in flight each, "
        "durable acks\n",
        st.producers, st.partitions, st.batch_bytes, st.inflight);
    std::printf("%-34s %16s %12s %12s\n", "workload", "throughput", "p50 (us)", "p99 (us)");
    std::printf("%-34s %12.0f r/s %12.0f %12.0f\n",
                ("append 100 B events (" + st.compression_100b + ")").c_str(), small_rps,
                small.p50_us, small.p99_us);
    std::printf("%-34s %11.1f MB/s %12.0f %12.0f\n", "append 1 KiB random (none)", large_mbps,
                large.p50_us, large.p99_us);
    std::printf("%-34s %12.0f r/s\n", "catch-up read (100 B topic)", read_rps);
    std::printf("%-34s %11.1f MB/s\n", "disk: sequential write + fdatasync", disk);
    std::printf(
        "1 KiB append / disk bandwidth: %.2f; commits/s (100 B): %.0f; records/commit: %.0f; "
        "peak RSS: %.0f MB; errors: %llu\n",
        disk > 0 ? large_mbps / disk : 0, commits_ps, per_commit, max_rss_mb,
        static_cast<unsigned long long>(small.errors + large.errors));
  }
  return small.errors + large.errors == 0 ? 0 : 1;
}
