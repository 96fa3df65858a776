// Minimal producer: sends N keyed records to a topic and prints where each landed.
//   example-producer [host:port] [topic] [count]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "runnel/client/producer.h"

int main(int argc, char** argv) {
  using namespace runnel::client;
  auto address = ParseBrokerAddress(argc > 1 ? argv[1] : "127.0.0.1:7070");
  const std::string topic = argc > 2 ? argv[2] : "greetings";
  const int count = argc > 3 ? std::atoi(argv[3]) : 10;
  if (!address.ok()) {
    std::fprintf(stderr, "%s\n", address.status().ToString().c_str());
    return 2;
  }
  auto producer = Producer::Create(ConnectTcp(*address));  // idempotent, LZ4, acks=durable
  if (!producer.ok()) {
    std::fprintf(stderr, "cannot create producer: %s\n", producer.status().ToString().c_str());
    return 1;
  }
  for (int i = 0; i < count; ++i) {
    ProducerRecord record;
    record.topic = topic;
    record.key = "user-" + std::to_string(i % 3);
    record.value = "hello #" + std::to_string(i);
    (*producer)->Send(std::move(record), [](runnel::Result<RecordMetadata> md) {
      if (md.ok()) {
        std::printf("stored at %s/%d@%lld\n", md->topic.c_str(), md->partition,
                    static_cast<long long>(md->offset));
      } else {
        std::fprintf(stderr, "failed: %s\n", md.status().ToString().c_str());
      }
    });
  }
  return (*producer)->Flush().ok() ? 0 : 1;  // waits for every acknowledgement (fsynced)
}
