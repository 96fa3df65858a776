// Fuzzes the frame decoder and every request parser, as a connection feeds them: the input is a
// byte stream cut into chunks (the first byte picks the chunk size), each complete frame's body
// goes to the parser its api names. A body that parses must re-encode to bytes that parse to
// the same encoding again.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "runnel/common/protocol.h"
#include "runnel/common/wire.h"

namespace {

using namespace runnel;

template <class Req> void TryParse(uint16_t api, std::string_view body) {
  if (api != static_cast<uint16_t>(Req::kApi)) return;
  auto parsed = proto::DecodeBody<Req>(body);
  if (!parsed.ok()) {
    if (!parsed.status().IsInvalidArgument()) __builtin_trap();  // malformed is InvalidArgument
    return;
  }
  const std::string once = proto::EncodeBody(std::move(parsed).value());
  auto again = proto::DecodeBody<Req>(once);
  if (!again.ok()) __builtin_trap();
  if (proto::EncodeBody(std::move(again).value()) != once) __builtin_trap();
}

template <class... Reqs> void ParseAny(uint16_t api, std::string_view body) {
  (TryParse<Reqs>(api, body), ...);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = data[0] % 64 + 1;
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  wire::FrameDecoder decoder(1 << 20);
  for (size_t pos = 0; pos < stream.size(); pos += chunk) {
    decoder.Append(stream.substr(pos, chunk));
    for (;;) {
      auto frame = decoder.Next();
      if (!frame.ok()) return 0;  // the connection would be closed; the error is sticky
      if (!*frame) break;
      const wire::Frame& f = **frame;
      if (f.body.size() + 8 != f.header.length) __builtin_trap();
      ParseAny<proto::ApiVersionsRequest, proto::ProduceRequest, proto::FetchRequest,
               proto::ListOffsetsRequest, proto::MetadataRequest, proto::CreateTopicRequest,
               proto::DeleteTopicRequest, proto::AlterTopicRequest, proto::InitProducerIdRequest,
               proto::JoinGroupRequest, proto::HeartbeatRequest, proto::LeaveGroupRequest,
               proto::CommitOffsetsRequest, proto::FetchOffsetsRequest,
               proto::CreateQueueGroupRequest, proto::DeliverRequest, proto::AckRequest,
               proto::NackRequest, proto::RejectRequest, proto::ExtendRequest,
               proto::ClaimRequest, proto::ListPendingRequest, proto::ListDeadLettersRequest,
               proto::RedriveRequest, proto::PurgeDeadLettersRequest, proto::ListGroupsRequest,
               proto::DescribeGroupRequest, proto::DeleteGroupRequest,
               proto::RecordStatusRequest, proto::StatsRequest, proto::BackupRequest,
               proto::AuthenticateRequest>(f.header.api, f.body);
    }
  }
  return 0;
}
