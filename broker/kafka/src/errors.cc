#include "errors.h"

namespace runnel::kafka {

Error ToKafka(const Status& s, Resource about) {
  switch (s.code()) {
    case StatusCode::kOk:
      return Error::kNone;
    case StatusCode::kNotFound:
      return about == Resource::kGroup ? Error::kGroupIdNotFound : Error::kUnknownTopicOrPartition;
    case StatusCode::kAlreadyExists:
      return Error::kTopicAlreadyExists;
    case StatusCode::kInvalidArgument:
      return Error::kInvalidRequest;
    case StatusCode::kCorruption:
      return Error::kCorruptMessage;
    case StatusCode::kIOError:
    case StatusCode::kNoSpace:
      return Error::kKafkaStorageError;  // retriable for clients: a full disk may clear
    case StatusCode::kBusy:
    case StatusCode::kShutdown:
      return Error::kLeaderNotAvailable;  // retriable: the client backs off and tries again
    case StatusCode::kTimeout:
      return Error::kRequestTimedOut;
    case StatusCode::kOutOfRange:
      return Error::kOffsetOutOfRange;
    case StatusCode::kTooLarge:
      return Error::kMessageTooLarge;
    case StatusCode::kOutOfOrderSequence:
      return Error::kOutOfOrderSequenceNumber;
    case StatusCode::kFenced:
      return Error::kInvalidProducerEpoch;
    case StatusCode::kUnauthenticated:
      return Error::kSaslAuthenticationFailed;
    case StatusCode::kPermissionDenied:
      return about == Resource::kGroup     ? Error::kGroupAuthorizationFailed
             : about == Resource::kCluster ? Error::kClusterAuthorizationFailed
                                           : Error::kTopicAuthorizationFailed;
  }
  return Error::kUnknownServerError;
}

}  // namespace runnel::kafka
