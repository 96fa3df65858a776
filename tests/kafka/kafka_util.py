"""Helpers shared by the Kafka client suites: unique names and reading by assign."""
import time
import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def consume_assigned(bootstrap, topic, partitions, count, timeout=60, **config):
    """Reads up to `count` records from offset 0 of `partitions` by assign (no group
    management), within `timeout` seconds; `config` adds client settings (SASL, TLS)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("assign"),
                  "enable.auto.commit": False, "enable.partition.eof": False, **config})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in partitions])
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            out.append(m)
        return out
    finally:
        c.close()
