#!/usr/bin/python3
"""Unmodified Kafka clients against runneld's Kafka listener: kcat, librdkafka (through
confluent-kafka) and kafka-python produce, fetch, list offsets and administer topics; records and
topics cross between the Kafka and the native protocol.

Run by ctest with RUNNELD and RUNNELCTL set; /usr/bin/python3 (Debian's modules)."""
import json
import subprocess
import time
import unittest

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from kafka_util import consume_assigned, unique
from runneld import Runneld

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def produce_all(bootstrap, topic, records, **config):
    """Produces (key, value, headers, partition) tuples; returns the delivery reports."""
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg.partition() if msg else None, msg.offset() if msg else None))

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    for key, value, headers, partition in records:
        kwargs = {"key": key, "value": value, "headers": headers, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        p.produce(topic, **kwargs)
        p.poll(0)
    left = p.flush(30)
    assert left == 0, f"{left} records not delivered"
    return reports


class KafkaClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = Runneld(name="kafka").start()
        cls.bootstrap = cls.broker.bootstrap

    @classmethod
    def tearDownClass(cls):
        cls.broker.cleanup()

    def kcat(self, *args, stdin=None):
        r = subprocess.run(["kcat", "-b", self.bootstrap, *args], input=stdin,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    # ---- kcat -------------------------------------------------------------------------------

    def test_kcat_lists_this_broker_and_topics(self):
        topic = unique("kcat-l")
        self.broker.ctl("topic", "create", topic, "--partitions", "3")
        meta = json.loads(self.kcat("-L", "-J"))
        self.assertEqual(len(meta["brokers"]), 1)
        self.assertEqual(meta["brokers"][0]["id"], 0)
        self.assertEqual(meta["brokers"][0]["name"], self.bootstrap)
        t = next(t for t in meta["topics"] if t["topic"] == topic)
        self.assertEqual(sorted(p["partition"] for p in t["partitions"]), [0, 1, 2])
        for p in t["partitions"]:
            self.assertEqual(p["leader"], 0)
            self.assertEqual([r["id"] for r in p["replicas"]], [0])

    def test_kcat_produces_and_consumes_keys_and_headers(self):
        topic = unique("kcat-pc")
        lines = "".join(f"key{i}:value {i}\n" for i in range(50))
        self.kcat("-P", "-t", topic, "-K:", "-H", "origin=kcat", "-p", "0", stdin=lines)
        out = self.kcat("-C", "-t", topic, "-e", "-J", "-o", "beginning")
        msgs = [json.loads(line) for line in out.splitlines() if line.strip()]
        self.assertEqual([m["payload"] for m in msgs], [f"value {i}" for i in range(50)])
        self.assertEqual([m["key"] for m in msgs], [f"key{i}" for i in range(50)])
        self.assertEqual([m["offset"] for m in msgs], list(range(50)))
        self.assertTrue(all(m["headers"] == ["origin", "kcat"] for m in msgs), msgs[0])

    def test_kcat_queries_offsets_by_time(self):
        topic = unique("kcat-q")
        base = int(time.time() * 1000) - 100_000
        # Timestamps base, base+1000, ... one record each, in one partition.
        p = Producer({"bootstrap.servers": self.bootstrap})
        for i in range(10):
            p.produce(topic, value=f"v{i}", partition=0, timestamp=base + i * 1000)
        self.assertEqual(p.flush(30), 0)
        for ts, want in [(base, 0), (base + 4500, 5), (base + 9000, 9), (base - 1, 0)]:
            out = self.kcat("-Q", "-t", f"{topic}:0:{ts}")
            self.assertIn(f"{topic} [0] offset {want}", out)
        # Past the last record: no offset (Kafka answers -1).
        out = self.kcat("-Q", "-t", f"{topic}:0:{base + 60_000}")
        self.assertIn(f"{topic} [0] offset -1", out)

    # ---- librdkafka (confluent-kafka) --------------------------------------------------------

    def test_idempotent_producer_in_every_compression_reads_back_by_assign(self):
        for codec in CODECS:
            with self.subTest(codec=codec):
                topic = unique(f"codec-{codec}")
                self.broker.ctl("topic", "create", topic, "--partitions", "2")
                records = [(f"k{i}".encode(), (f"value-{i}-" + "x" * 200).encode(),
                            [("n", str(i).encode()), ("codec", codec.encode())], i % 2)
                           for i in range(2000)]
                reports = produce_all(self.bootstrap, topic, records, **{
                    "enable.idempotence": True, "acks": "all", "compression.type": codec})
                self.assertTrue(all(err is None for err, _, _ in reports), reports[:3])
                got = consume_assigned(self.bootstrap, topic, [0, 1], len(records))
                self.assertEqual(len(got), len(records))
                by_key = {m.key(): m for m in got}
                for key, value, headers, partition in records:
                    m = by_key[key]
                    self.assertEqual(m.value(), value)
                    self.assertEqual(m.partition(), partition)
                    self.assertEqual(m.headers(), headers)
                # Each partition's offsets are 0..n-1, each once.
                for part in (0, 1):
                    offs = sorted(m.offset() for m in got if m.partition() == part)
                    self.assertEqual(offs, list(range(len(offs))))
                # The batches were stored compressed as sent: far smaller than the raw values.
                size = sum(p["size_bytes"] for p in
                           self.broker.ctl("topic", "describe", topic, json_out=True)["partitions"])
                raw = sum(len(v) for _, v, _, _ in records)
                if codec == "none":
                    self.assertGreater(size, raw)
                else:
                    self.assertLess(size, raw // 4, f"{codec}: {size} bytes stored for {raw}")

    def test_seek_reads_from_an_offset_and_mid_batch(self):
        topic = unique("seek")
        produce_all(self.bootstrap, topic,
                    [(None, f"r{i}".encode(), None, 0) for i in range(100)], **{"acks": "all"})
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": unique("seek"),
                      "enable.auto.commit": False})
        try:
            c.assign([TopicPartition(topic, 0, 37)])
            got = []
            deadline = time.monotonic() + 30
            while len(got) < 63 and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    got.append(m)
            self.assertEqual([m.value() for m in got], [f"r{i}".encode() for i in range(37, 100)])
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
            self.assertEqual((lo, hi), (0, 100))
        finally:
            c.close()

    def test_admin_creates_describes_grows_and_deletes_topics(self):
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        topic = unique("admin")
        fs = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1,
                                           config={"retention.ms": "3600000"})])
        fs[topic].result(30)
        # Visible natively, with its partitions and config.
        d = self.broker.ctl("topic", "describe", topic, json_out=True)
        self.assertEqual(len(d["partitions"]), 3)
        self.assertEqual(d["config"]["retention.ms"], "3600000")
        # Creating it again is refused with TOPIC_ALREADY_EXISTS.
        with self.assertRaises(KafkaException) as e:
            admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
        self.assertEqual(e.exception.args[0].code(), KafkaError.TOPIC_ALREADY_EXISTS)
        # Replication beyond one node is refused.
        other = unique("admin-rf")
        with self.assertRaises(KafkaException) as e:
            admin.create_topics([NewTopic(other, num_partitions=1, replication_factor=3)])[other].result(30)
        self.assertEqual(e.exception.args[0].code(), KafkaError.INVALID_REPLICATION_FACTOR)
        # DescribeConfigs shows Runnel's topic configs under Kafka's names.
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        configs = admin.describe_configs([res])[res].result(30)
        self.assertEqual(configs["retention.ms"].value, "3600000")
        self.assertEqual(configs["cleanup.policy"].value, "delete")
        # AlterConfigs (the legacy API) replaces the whole configuration: retention.ms, not
        # given, goes back to the default.
        res = ConfigResource(ConfigResource.Type.TOPIC, topic,
                             set_config={"retention.bytes": "1048576"})
        admin.alter_configs([res])[res].result(30)
        config = self.broker.ctl("topic", "describe", topic, json_out=True)["config"]
        self.assertEqual(config["retention.bytes"], "1048576")
        self.assertNotEqual(config["retention.ms"], "3600000")
        bad = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"cleanup.policy": "compact"})
        with self.assertRaises(KafkaException) as e:
            admin.alter_configs([bad])[bad].result(30)
        self.assertEqual(e.exception.args[0].code(), KafkaError.INVALID_CONFIG)
        # CreatePartitions grows it.
        admin.create_partitions([NewPartitions(topic, 5)])[topic].result(30)
        self.assertEqual(len(self.broker.ctl("topic", "describe", topic, json_out=True)["partitions"]), 5)
        # A topic created natively is listed over Kafka; one deleted over Kafka is gone natively.
        native = unique("native")
        self.broker.ctl("topic", "create", native, "--partitions", "2")
        md = admin.list_topics(timeout=10)
        self.assertIn(native, md.topics)
        self.assertEqual(len(md.topics[native].partitions), 2)
        admin.delete_topics([native, topic])[native].result(30)
        listed = self.broker.ctl("topic", "list")
        self.assertNotIn(native, listed)

    def test_native_records_read_over_kafka_and_kafka_records_read_natively(self):
        topic = unique("cross")
        self.broker.ctl("topic", "create", topic, "--partitions", "1")
        self.broker.ctl("produce", topic, "from-native", "--key", "nk", "-H", "h=1", "-p", "0")
        produce_all(self.bootstrap, topic, [(b"kk", b"from-kafka", [("h", b"2")], 0)],
                    **{"acks": "all", "enable.idempotence": True})
        got = consume_assigned(self.bootstrap, topic, [0], 2)
        self.assertEqual([(m.key(), m.value(), m.headers()) for m in got],
                         [(b"nk", b"from-native", [("h", b"1")]),
                          (b"kk", b"from-kafka", [("h", b"2")])])
        out = self.broker.ctl("consume", topic, "--format", "{offset} {key} {value} {headers}")
        lines = out.splitlines()
        self.assertEqual(len(lines), 2)
        self.assertTrue(lines[0].startswith("0 nk from-native"), lines)
        self.assertTrue(lines[1].startswith("1 kk from-kafka"), lines)
        self.assertIn("h=2", lines[1])

    def test_unknown_topic_without_auto_create_is_unknown_topic_or_partition(self):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": unique("g"),
                      "allow.auto.create.topics": False})
        try:
            md = c.list_topics(unique("absent"), timeout=10)
            t = next(iter(md.topics.values()))
            self.assertEqual(t.error.code(), KafkaError.UNKNOWN_TOPIC_OR_PART)
        finally:
            c.close()

    # ---- kafka-python ----------------------------------------------------------------------

    def test_kafka_python_produces_and_consumes_by_assign(self):
        from kafka import KafkaConsumer, KafkaProducer
        from kafka import TopicPartition as KTP
        topic = unique("kp")
        self.broker.ctl("topic", "create", topic, "--partitions", "2")
        prod = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        futures = [prod.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                             headers=[("i", str(i).encode())], partition=i % 2)
                   for i in range(200)]
        prod.flush(30)
        metas = [f.get(timeout=30) for f in futures]
        self.assertEqual(sorted(m.offset for m in metas if m.partition == 0), list(range(100)))
        prod.close()
        cons = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=10_000)
        cons.assign([KTP(topic, 0), KTP(topic, 1)])
        cons.seek_to_beginning()
        got = []
        for m in cons:
            got.append(m)
            if len(got) == 200:
                break
        cons.close()
        self.assertEqual(len(got), 200)
        self.assertEqual(sorted(int(m.value[1:]) for m in got), list(range(200)))
        self.assertTrue(all(m.headers == [("i", m.value[1:])] for m in got))
        self.assertTrue(all(m.key == b"k" + m.value[1:] for m in got))


class KafkaTopicLimitsTest(unittest.TestCase):
    """--max-topics and --kafka-auto-create-topics, seen by librdkafka."""

    def test_create_topics_beyond_max_topics_is_policy_violation_and_auto_create_stops(self):
        broker = Runneld(["--max-topics", "2"], name="kafka-limits").start()
        try:
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            for t in ("one", "two"):
                admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1)])[t].result(30)
            with self.assertRaises(KafkaException) as e:
                admin.create_topics([NewTopic("three", num_partitions=1,
                                              replication_factor=1)])["three"].result(30)
            self.assertEqual(e.exception.args[0].code(), KafkaError.POLICY_VIOLATION)
            self.assertIn("--max-topics", e.exception.args[0].str())
            # A producer's Metadata would auto-create: the topic stays unknown instead.
            md = admin.list_topics("auto", timeout=10)
            self.assertEqual(md.topics["auto"].error.code(), KafkaError.UNKNOWN_TOPIC_OR_PART)
            reports = produce_all_lenient(broker.bootstrap, "auto", [b"x"])
            self.assertTrue(all(err is not None for err in reports), reports)
            self.assertEqual(sorted(admin.list_topics(timeout=10).topics), ["one", "two"])
            # Existing topics are served as ever.
            self.assertEqual(produce_all(broker.bootstrap, "one", [(None, b"v", None, 0)])[0][0], None)
        finally:
            broker.cleanup()

    def test_without_kafka_auto_create_metadata_and_produce_never_create(self):
        broker = Runneld(["--kafka-auto-create-topics=false"], name="kafka-noauto").start()
        try:
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            md = admin.list_topics("ghost", timeout=10)  # Metadata v? with allow_auto_topic_creation
            self.assertEqual(md.topics["ghost"].error.code(), KafkaError.UNKNOWN_TOPIC_OR_PART)
            reports = produce_all_lenient(broker.bootstrap, "ghost", [b"x"])
            self.assertTrue(all(err is not None for err in reports), reports)
            self.assertNotIn("ghost", broker.ctl("topic", "list"))
            # CreateTopics still creates, and the native port still auto-creates.
            admin.create_topics([NewTopic("made", num_partitions=1, replication_factor=1)])["made"].result(30)
            self.assertEqual(produce_all(broker.bootstrap, "made", [(None, b"v", None, 0)])[0][0], None)
            broker.ctl("produce", "native-auto", "x")
            self.assertIn("native-auto", broker.ctl("topic", "list"))
        finally:
            broker.cleanup()


def produce_all_lenient(bootstrap, topic, values):
    """Produces values to an unknown topic with short timeouts; returns each delivery's error."""
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 3000,
                  "topic.metadata.propagation.max.ms": 1000})
    for v in values:
        p.produce(topic, value=v, on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    return errors


if __name__ == "__main__":
    unittest.main(verbosity=2)
