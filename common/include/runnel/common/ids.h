// Strong identifier types so a partition can never be passed where an offset is expected.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <ostream>

namespace runnel {

// A named wrapper around an integer. Explicit construction, explicit .value(); ordering and
// equality within the same tag only. Offset-like arithmetic (+/- an integer) keeps the tag.
template <typename T, typename Tag>
class StrongId {
 public:
  using ValueType = T;

  constexpr StrongId() = default;
  constexpr explicit StrongId(T v) : v_(v) {}

  constexpr T value() const { return v_; }

  constexpr auto operator<=>(const StrongId&) const = default;

  constexpr StrongId operator+(T delta) const { return StrongId(static_cast<T>(v_ + delta)); }
  constexpr StrongId operator-(T delta) const { return StrongId(static_cast<T>(v_ - delta)); }
  constexpr T operator-(StrongId other) const { return static_cast<T>(v_ - other.v_); }
  constexpr StrongId& operator+=(T delta) {
    v_ = static_cast<T>(v_ + delta);
    return *this;
  }

  friend std::ostream& operator<<(std::ostream& os, StrongId id) { return os << +id.v_; }

 private:
  T v_{};
};

struct TopicIdTag {};
struct PartitionTag {};
struct OffsetTag {};
struct ProducerIdTag {};

using TopicId = StrongId<uint32_t, TopicIdTag>;
using Partition = StrongId<int32_t, PartitionTag>;
using Offset = StrongId<int64_t, OffsetTag>;
using ProducerId = StrongId<int64_t, ProducerIdTag>;

// Kafka's "no producer id": a batch carrying it is not idempotent.
inline constexpr ProducerId kNoProducerId{-1};
// "No offset" sentinel (e.g. the offset of an acks=none append).
inline constexpr Offset kNoOffset{-1};

}  // namespace runnel

template <typename T, typename Tag>
struct std::hash<runnel::StrongId<T, Tag>> {
  size_t operator()(runnel::StrongId<T, Tag> id) const noexcept {
    return std::hash<T>{}(id.value());
  }
};
