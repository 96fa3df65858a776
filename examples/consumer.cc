// Minimal consumer: reads a topic in a stream group (or, with "queue", a queue group that acks
// each record) and prints records until interrupted.
//   example-consumer [host:port] [topic] [group] [stream|queue]
#include <cstdio>
#include <string>

#include "runnel/client/consumer.h"

int main(int argc, char** argv) {
  using namespace runnel::client;
  auto address = ParseBrokerAddress(argc > 1 ? argv[1] : "127.0.0.1:7070");
  if (!address.ok()) {
    std::fprintf(stderr, "%s\n", address.status().ToString().c_str());
    return 2;
  }
  ConsumerOptions options;
  options.topics = {argc > 2 ? argv[2] : "greetings"};
  options.group = argc > 3 ? argv[3] : "example";
  options.mode = argc > 4 && std::string(argv[4]) == "queue" ? ConsumerMode::kQueue
                                                             : ConsumerMode::kStream;
  auto consumer = Consumer::Create(ConnectTcp(*address), options);
  if (!consumer.ok()) {
    std::fprintf(stderr, "%s\n", consumer.status().ToString().c_str());
    return 1;
  }
  for (;;) {
    auto records = (*consumer)->Poll(1000);
    if (!records.ok()) {
      std::fprintf(stderr, "poll: %s\n", records.status().ToString().c_str());
      return 1;
    }
    for (const auto& r : *records) {
      std::printf("%s/%d@%lld key=%s value=%s\n", r.topic.c_str(), r.partition,
                  static_cast<long long>(r.offset), r.key ? r.key->c_str() : "(null)",
                  r.value ? r.value->c_str() : "(null)");
    }
    std::fflush(stdout);
    if (options.mode == ConsumerMode::kQueue && !records->empty()) {
      if (auto s = (*consumer)->Ack(*records); !s.ok())
        std::fprintf(stderr, "ack: %s\n", s.ToString().c_str());
    }
    // Stream mode commits automatically every second and on Close.
  }
}
