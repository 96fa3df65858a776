#include "runnel/storage/format.h"

#include <doctest/doctest.h>

#include <string>

namespace runnel::storage::format {
namespace {

std::string Hex(std::string_view s) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

template <typename V>
void CheckTruncationsFail(const std::string& bytes) {
  for (size_t len = 0; len < bytes.size(); ++len) {
    V v;
    CHECK(Decode(std::string_view(bytes).substr(0, len), &v).IsCorruption());
  }
  V v;
  CHECK(Decode(bytes + "x", &v).IsCorruption());  // trailing garbage
}

// These bytes are the worked examples of storage/FORMAT.md. Changing them breaks every store.
TEST_CASE("Format: keys have the documented layout") {
  CHECK(Hex(LogKey(7, 0x0102)) == "000000070000000000000102");
  uint32_t uid;
  int64_t off;
  REQUIRE(ParseLogKey(LogKey(7, 0x0102), &uid, &off));
  CHECK(uid == 7);
  CHECK(off == 0x0102);
  CHECK_FALSE(ParseLogKey("short", &uid, &off));
  // Range deletions start at keys shorter than the memtable hint prefixes (5 and 9 bytes).
  CHECK(Hex(LogRangeBegin(7)) == "00000007");
  CHECK(LogRangeBegin(7) < LogKey(7, 0));
  CHECK(IdPrefixBegin(MetaKeyType::kIndex, 5).size() < 9);
  CHECK(LogColumnFamilyName(12) == "log.12");
  CHECK(ParseLogColumnFamilyName("log.12") == std::optional<uint32_t>(12));
  CHECK_FALSE(ParseLogColumnFamilyName("log.").has_value());
  CHECK_FALSE(ParseLogColumnFamilyName("log.1x").has_value());
  CHECK_FALSE(ParseLogColumnFamilyName("meta").has_value());
  CHECK(Hex(FormatVersionKey()) == "56");
  CHECK(Hex(CountersKey()) == "43");
  CHECK(TopicKey("orders") == "Torders");
  CHECK(Hex(PartitionKey(5)) == "5000000005");
  CHECK(Hex(IndexKey(5, 300)) == "4900000005000000000000012c");
  CHECK(Hex(ProducerKey(5, 42)) == "5300000005000000000000002a");
  CHECK(Hex(DedupKey(3, "scan-1")) == "4400000003" + Hex("scan-1"));
  CHECK(GroupKey("billing") == "Gbilling");
  CHECK(Hex(OffsetKey(2, 3, 1)) ==
        "4f"
        "00000002"
        "00000003"
        "00000001");
  CHECK(Hex(PendingKey(2, 1, 300)) ==
        "45"
        "00000002"
        "00000001"
        "000000000000012c");
  CHECK(Hex(DeadLetterKey(2, 1, 300)) ==
        "58"
        "00000002"
        "00000001"
        "000000000000012c");
  CHECK(Hex(RedriveKey(2, 7, 1)) ==
        "52"
        "00000002"
        "00000007"
        "00000001");
  CHECK(Hex(RedrivenKey(2, 7, 1, 300)) ==
        "59"
        "00000002"
        "00000007"
        "00000001"
        "000000000000012c");
  uint32_t gid = 0, tid = 0;
  int32_t dp = 0;
  int64_t doff = 0;
  REQUIRE(ParseRedrivenKey(RedrivenKey(2, 7, 1, 300), &gid, &tid, &dp, &doff));
  CHECK(gid == 2);
  CHECK(tid == 7);
  CHECK(dp == 1);
  CHECK(doff == 300);
  CHECK_FALSE(ParseRedrivenKey(RedriveKey(2, 7, 1), &gid, &tid, &dp, &doff));
  CHECK(IdPrefixBegin(MetaKeyType::kRedriven, 2) < RedrivenKey(2, 0, 0, 0));
  CHECK(RedrivenKey(2, UINT32_MAX, -1, INT64_MAX) < IdPrefixEnd(MetaKeyType::kRedriven, 2));
  CHECK(IdPrefixBegin(MetaKeyType::kIndex, 5) < IndexKey(5, 0));
  CHECK(IndexKey(5, INT64_MAX) < IdPrefixEnd(MetaKeyType::kIndex, 5));
  CHECK(IdPrefixEnd(MetaKeyType::kIndex, UINT32_MAX) == "J");
}

TEST_CASE("Format: values have the documented layout and round-trip") {
  SUBCASE("counters") {
    const std::string b = Encode(CountersValue{4, 17, 3, 4096});
    CHECK(Hex(b) ==
          "03"
          "00000004"
          "00000011"
          "00000003"
          "0000000000001000");
    CountersValue v;
    REQUIRE(Decode(b, &v).ok());
    CHECK(v.next_topic_id == 4);
    CHECK(v.next_partition_uid == 17);
    CHECK(v.next_group_id == 3);
    CHECK(v.next_producer_id == 4096);
    CheckTruncationsFail<CountersValue>(b);
    // Layout version 2 (before persisted producer ids) still decodes, with none handed out.
    CountersValue v2;
    REQUIRE(
        Decode(std::string("\x02\x00\x00\x00\x04\x00\x00\x00\x11\x00\x00\x00\x03", 13), &v2).ok());
    CHECK(v2.next_group_id == 3);
    CHECK(v2.next_producer_id == 0);
    // Layout version 1 (before groups) still decodes.
    CountersValue old;
    REQUIRE(Decode(std::string("\x01\x00\x00\x00\x04\x00\x00\x00\x11", 9), &old).ok());
    CHECK(old.next_partition_uid == 17);
    CHECK(old.next_group_id == 1);
  }
  SUBCASE("group") {
    const std::string b = Encode(GroupValue{2, 2, 7, 1'700'000'000'000, {{"max.deliveries", "5"}}});
    CHECK(Hex(b) ==
          "01"
          "00000002"
          "02"
          "00000007"
          "0000018bcfe56800"
          "01"
          "0e" +
              Hex("max.deliveries") + "01" + Hex("5"));
    GroupValue v;
    REQUIRE(Decode(b, &v).ok());
    CHECK(v.generation == 7);
    CHECK(v.config[0].first == "max.deliveries");
    CheckTruncationsFail<GroupValue>(b);
  }
  SUBCASE("offset") {
    const std::string b = Encode(OffsetValue{42, 1'700'000'000'000, "m"});
    CHECK(Hex(b) ==
          "01"
          "000000000000002a"
          "0000018bcfe56800"
          "01"
          "6d");
    OffsetValue v;
    REQUIRE(Decode(b, &v).ok());
    CHECK(v.metadata == "m");
    CheckTruncationsFail<OffsetValue>(b);
  }
  SUBCASE("pending") {
    const std::string b = Encode(PendingValue{PendingState::kLocked, 2, 1'700'000'030'000,
                                              1'700'000'000'000, 1'700'000'000'000, 0, 0, "c1"});
    CHECK(Hex(b) ==
          "01"
          "01"
          "00000002"
          "0000018bcfe5dd30"
          "0000018bcfe56800"
          "0000018bcfe56800"
          "0000000000000000"
          "0000000000000000"
          "02" +
              Hex("c1"));
    PendingValue v;
    REQUIRE(Decode(b, &v).ok());
    CHECK(v.consumer == "c1");
    CHECK(v.state == PendingState::kLocked);
    CheckTruncationsFail<PendingValue>(b);
    std::string bad = b;
    bad[1] = 9;  // unknown state
    CHECK(Decode(bad, &v).IsCorruption());
  }
  SUBCASE("dead letter") {
    const std::string b = Encode(DeadLetterValue{1, 9, 1'700'000'000'000, "expired"});
    CHECK(Hex(b) ==
          "01"
          "00000001"
          "0000000000000009"
          "0000018bcfe56800"
          "07" +
              Hex("expired"));
    DeadLetterValue v;
    REQUIRE(Decode(b, &v).ok());
    CHECK(v.reason == "expired");
    CheckTruncationsFail<DeadLetterValue>(b);
  }
  SUBCASE("topic") {
    const std::string b =
        Encode(TopicValue{3, 1'700'000'000'000, {7, 8}, {{"retention.ms", "60000"}}});
    CHECK(Hex(b) ==
          "0100000003"
          "0000018bcfe56800"
          "00000002"
          "00000007"
          "00000008"
          "01"
          "0c" +
              Hex("retention.ms") + "05" + Hex("60000"));
    TopicValue v;
    REQUIRE(Decode(b, &v).ok());
    CHECK(v.partition_uids == std::vector<uint32_t>{7, 8});
    CHECK(v.config[0].second == "60000");
    CheckTruncationsFail<TopicValue>(b);
  }
  SUBCASE("partition") {
    const std::string b = Encode(PartitionValue{3, 1, 100, 40, 4096, 10240, 1'700'000'000'000});
    CHECK(Hex(b) ==
          "01"
          "00000003"
          "00000001"
          "0000000000000064"
          "0000000000000028"
          "0000000000001000"
          "0000000000002800"
          "0000018bcfe56800");
    PartitionValue v;
    REQUIRE(Decode(b, &v).ok());
    CHECK(v.next_offset == 100);
    CHECK(v.log_start == 40);
    CHECK(v.end_bytes == 10240);
    CheckTruncationsFail<PartitionValue>(b);
  }
  SUBCASE("index") {
    const std::string b = Encode(IndexValue{4096, 1'700'000'000'000, 1'700'000'000'500});
    CHECK(Hex(b) ==
          "01"
          "0000000000001000"
          "0000018bcfe56800"
          "0000018bcfe569f4");
    IndexValue v;
    REQUIRE(Decode(b, &v).ok());
    CHECK(v.created_ms == 1'700'000'000'500);
    CheckTruncationsFail<IndexValue>(b);
  }
  SUBCASE("producer") {
    const std::string b = Encode(ProducerValue{2, 9, 1'700'000'000'000, {{5, 9, 100, 104}}});
    CHECK(Hex(b) ==
          "01"
          "0002"
          "00000009"
          "0000018bcfe56800"
          "01"
          "00000005"
          "00000009"
          "0000000000000064"
          "0000000000000068");
    ProducerValue v;
    REQUIRE(Decode(b, &v).ok());
    REQUIRE(v.recent.size() == 1);
    CHECK(v.recent[0].last_offset == 104);
    CheckTruncationsFail<ProducerValue>(b);
  }
  SUBCASE("dedup") {
    const std::string b = Encode(DedupValue{1, 42, 1'700'000'000'000});
    CHECK(Hex(b) ==
          "01"
          "00000001"
          "000000000000002a"
          "0000018bcfe56800");
    DedupValue v;
    REQUIRE(Decode(b, &v).ok());
    CHECK(v.offset == 42);
    CheckTruncationsFail<DedupValue>(b);
  }
}

TEST_CASE("Format: an unknown value version is corruption") {
  std::string b = Encode(DedupValue{1, 1, 1});
  b[0] = 2;
  DedupValue dv;
  CHECK(Decode(b, &dv).IsCorruption());
  b = Encode(CountersValue{1, 1, 1, 1});
  b[0] = 4;
  CountersValue v;
  CHECK(Decode(b, &v).IsCorruption());
}

}  // namespace
}  // namespace runnel::storage::format
