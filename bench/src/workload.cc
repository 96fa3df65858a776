#include "runnel/bench/workload.h"

#include <charconv>
#include <cstdio>
#include <cstring>
#include <thread>

namespace runnel::bench {

std::string_view Name(WorkloadKind k) {
  switch (k) {
    case WorkloadKind::kProduce: return "produce";
    case WorkloadKind::kConsume: return "consume";
    case WorkloadKind::kE2e: return "e2e";
    case WorkloadKind::kQueue: return "queue";
  }
  return "?";
}
std::string_view Name(PayloadKind k) { return k == PayloadKind::kRandom ? "random" : "event"; }
std::string_view Name(AckMode a) {
  switch (a) {
    case AckMode::kNone: return "none";
    case AckMode::kWritten: return "written";
    case AckMode::kDurable: return "durable";
  }
  return "?";
}

std::string DescribeKeys(const WorkloadSpec& spec) {
  switch (spec.keys) {
    case KeyKind::kNone: return "none";
    case KeyKind::kRandom: return "random";
    case KeyKind::kHot: return "hot:" + std::to_string(spec.hot_keys);
  }
  return "?";
}

Result<WorkloadKind> ParseWorkloadKind(std::string_view s) {
  for (auto k : {WorkloadKind::kProduce, WorkloadKind::kConsume, WorkloadKind::kE2e,
                 WorkloadKind::kQueue})
    if (Name(k) == s) return k;
  return Status::InvalidArgument("unknown workload '" + std::string(s) +
                                 "' (produce, consume, e2e, queue)");
}
Result<PayloadKind> ParsePayloadKind(std::string_view s) {
  if (s == "random") return PayloadKind::kRandom;
  if (s == "event") return PayloadKind::kEvent;
  return Status::InvalidArgument("--payload must be random or event, not '" + std::string(s) + "'");
}
Result<AckMode> ParseAckMode(std::string_view s) {
  for (auto a : {AckMode::kNone, AckMode::kWritten, AckMode::kDurable})
    if (Name(a) == s) return a;
  return Status::InvalidArgument("--acks must be none, written or durable, not '" +
                                 std::string(s) + "'");
}

Status ParseKeys(std::string_view s, WorkloadSpec* spec) {
  if (s == "none") {
    spec->keys = KeyKind::kNone;
  } else if (s == "random") {
    spec->keys = KeyKind::kRandom;
  } else if (s.starts_with("hot:")) {
    int n = 0;
    const auto digits = s.substr(4);
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (ec != std::errc() || p != digits.data() + digits.size() || n < 1)
      return Status::InvalidArgument("--keys hot:N needs N >= 1, not '" + std::string(s) + "'");
    spec->keys = KeyKind::kHot;
    spec->hot_keys = n;
  } else {
    return Status::InvalidArgument("--keys must be none, random or hot:N, not '" +
                                   std::string(s) + "'");
  }
  return Status::OK();
}

Status Validate(const WorkloadSpec& spec) {
  auto bad = [](const std::string& m) { return Status::InvalidArgument(m); };
  if (spec.message_bytes < PayloadMaker::kMinBytes || spec.message_bytes > (8u << 20))
    return bad("--size must be between " + std::to_string(PayloadMaker::kMinBytes) +
               " bytes and 8 MiB");
  if (spec.partitions < 1 || spec.partitions > 1024) return bad("--partitions must be 1..1024");
  if (spec.producers < 1 || spec.producers > 256) return bad("--producers must be 1..256");
  if (spec.consumers < 1 || spec.consumers > 256) return bad("--consumers must be 1..256");
  if (spec.rate < 0) return bad("--rate must be >= 0");
  if (spec.count < 0) return bad("--count must be >= 0");
  if (spec.count == 0 && spec.duration_s <= 0) return bad("--duration must be > 0 without --count");
  if (spec.warmup_s < 0) return bad("--warmup must be >= 0");
  if (spec.nack_share < 0 || spec.nack_share > 1) return bad("--nack-share must be in [0, 1]");
  if (spec.nack_share > 0 && spec.kind != WorkloadKind::kQueue)
    return bad("--nack-share applies to the queue workload only");
  if (spec.retry_delay_ms < 0) return bad("--retry-delay-ms must be >= 0");
  if (spec.kind == WorkloadKind::kE2e && spec.rate <= 0)
    return bad("e2e needs a fixed --rate (messages/s)");
  if (spec.poll_max < 1) return bad("--poll-max must be >= 1");
  if (spec.drain_timeout_s <= 0) return bad("--drain-timeout must be > 0");
  if (spec.linger_ms < 0 || spec.linger_ms > 60'000) return bad("--linger-ms must be 0..60000");
  return Status::OK();
}

void ResolveDefaults(WorkloadSpec* spec) {
  if (spec->linger_ms < 0) spec->linger_ms = spec->rate > 0 ? 0 : 2;
}

namespace {
void PutHex16(std::string* s, size_t at, int64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  auto u = static_cast<uint64_t>(v);
  for (int i = 15; i >= 0; --i, u >>= 4) (*s)[at + static_cast<size_t>(i)] = kDigits[u & 15];
}
constexpr size_t kEventStampAt = 9;  // {"sent":"
}  // namespace

PayloadMaker::PayloadMaker(const WorkloadSpec& spec, uint64_t seed)
    : spec_(spec), rng_(seed), fast_state_(seed ^ 0x6a09e667f3bcc909ULL) {}

// splitmix64: incompressible bytes at a few cycles a word. (Slicing a large pre-made pool at random
// places cost a cache miss per message, and made the harness, not the target, the bottleneck.)
uint64_t PayloadMaker::NextFast() {
  uint64_t z = (fast_state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::string PayloadMaker::Make(int64_t seq, int64_t intended_ns) {
  std::string out;
  if (spec_.payload == PayloadKind::kRandom) {
    out.resize(spec_.message_bytes);
    size_t i = 0;
    for (; i + 8 <= out.size(); i += 8) {
      const uint64_t w = NextFast();
      std::memcpy(out.data() + i, &w, 8);
    }
    for (uint64_t w = NextFast(); i < out.size(); ++i, w >>= 8) out[i] = static_cast<char>(w);
    PutHex16(&out, 0, intended_ns);
    return out;
  }
  // An event such as the seeds' scans and notifications: JSON with ids, a type and a timestamp,
  // padded (or cut, keeping the stamp) to the message size.
  char buf[256];
  const int n = std::snprintf(
      buf, sizeof buf,
      "{\"sent\":\"0000000000000000\",\"seq\":%lld,\"type\":\"scan\",\"device\":\"dev-%03u\","
      "\"barcode\":\"%012llu\",\"user\":%u,\"pad\":\"",
      static_cast<long long>(seq), static_cast<unsigned>(rng_() % 500),
      static_cast<unsigned long long>(rng_() % 1'000'000'000'000ULL),
      static_cast<unsigned>(rng_() % 100'000));
  out.assign(buf, static_cast<size_t>(n));
  if (out.size() + 2 < spec_.message_bytes) out.append(spec_.message_bytes - out.size() - 2, 'x');
  out += "\"}";
  out.resize(spec_.message_bytes, ' ');
  PutHex16(&out, kEventStampAt, intended_ns);
  return out;
}

std::optional<std::string> PayloadMaker::Key() {
  switch (spec_.keys) {
    case KeyKind::kNone: return std::nullopt;
    case KeyKind::kRandom: {
      char buf[24];
      std::snprintf(buf, sizeof buf, "k%016llx", static_cast<unsigned long long>(rng_()));
      return std::string(buf);
    }
    case KeyKind::kHot:
      return "hot-" + std::to_string(rng_() % static_cast<uint64_t>(spec_.hot_keys));
  }
  return std::nullopt;
}

std::optional<int64_t> ReadStamp(PayloadKind kind, std::string_view payload) {
  const size_t at = kind == PayloadKind::kRandom ? 0 : kEventStampAt;
  if (payload.size() < at + 16) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(payload.data() + at, payload.data() + at + 16, v, 16);
  if (ec != std::errc() || p != payload.data() + at + 16) return std::nullopt;
  return static_cast<int64_t>(v);
}

Clock::time_point Pacer::Intended(int64_t i) const {
  if (rate_ <= 0) return Clock::now();
  return start_ + std::chrono::nanoseconds(static_cast<int64_t>(static_cast<double>(i) * 1e9 / rate_));
}

Clock::time_point Pacer::Next(int64_t i) {
  const auto t = Intended(i);
  if (rate_ > 0 && t > Clock::now()) std::this_thread::sleep_until(t);
  return t;
}

}  // namespace runnel::bench
