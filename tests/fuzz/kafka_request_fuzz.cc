// Fuzzes the Kafka codec as the Kafka listener uses it: the first 4 bytes pick an API (bytes 0-1
// little-endian: a known key, else an index modulo the known APIs; the top bit of byte 1 picks
// the response instead of the request) and a version (bytes 2-3 big-endian: a version in the
// API's range, else one modulo the range); the rest is the request header after the
// correlation id, then the body (a response is the body alone). Decoding must never crash and may
// fail only with Corruption. A message that decodes must re-encode to bytes that decode again and
// re-encode to the same bytes, whose chunks add up to Writer::size().
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "runnel/kafka/codec.h"
#include "runnel/kafka/messages.h"

namespace {

using namespace runnel;
using namespace runnel::kafka;

std::string EncodeChecked(auto& m, int16_t version) {
  Writer w;
  m.Encode(w, version);
  const size_t size = w.size();
  const std::string bytes = JoinChunks(w.Finish());
  if (bytes.size() != size) __builtin_trap();
  return bytes;
}

template <class M>
void Try(int16_t key, int16_t version, Reader& r) {
  if (M::kApiKey != key) return;
  M m;
  if (Status s = m.Decode(r, version); !s.ok()) {
    if (!s.IsCorruption()) __builtin_trap();
    return;
  }
  const std::string once = EncodeChecked(m, version);
  M again;
  Reader r2(once);
  if (!again.Decode(r2, version).ok() || r2.remaining() != 0) __builtin_trap();
  if (EncodeChecked(again, version) != once) __builtin_trap();
}

template <class... M>
void TryAll(TypeList<M...>, int16_t key, int16_t version, Reader& r) {
  (Try<M>(key, version, r), ...);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const auto apis = AllApis();
  const bool response = (data[1] & 0x80) != 0;
  const int key = (data[1] & 0x7f) << 8 | data[0];
  const ApiInfo* found = FindApi(static_cast<int16_t>(key));
  const ApiInfo& api = found != nullptr ? *found : apis[static_cast<size_t>(key) % apis.size()];
  const int raw = data[2] << 8 | data[3];
  const int span = api.max_version - api.min_version + 1;
  const auto version = static_cast<int16_t>(
      raw >= api.min_version && raw <= api.max_version ? raw : api.min_version + raw % span);
  Reader r(std::string_view(reinterpret_cast<const char*>(data) + 4, size - 4));
  if (response) {
    TryAll(AllResponseTypes{}, api.key, version, r);
    return 0;
  }
  std::optional<std::string> client_id;
  if (Status s = DecodeRequestHeaderRest(r, RequestHeaderIsFlexible(api.key, version), &client_id);
      !s.ok()) {
    if (!s.IsCorruption()) __builtin_trap();
    return 0;
  }
  TryAll(AllRequestTypes{}, api.key, version, r);
  return 0;
}
