#!/usr/bin/python3
"""The Kafka listener at the byte level, where no client library goes: version negotiation,
unknown APIs and versions, malformed and oversized requests, acks=0, response order, and the
APIs the Python clients do not send (IncrementalAlterConfigs, CreateTopics validate_only,
Produce below v3), and consumer-group requests no well-behaved client sends (a leader that never
syncs, oversized member metadata, bad group ids). Requests are written by hand from Kafka's
protocol guide."""
import socket
import struct
import subprocess
import unittest
import uuid

from runneld import RUNNELCTL, Runneld


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def varint(n):
    n = (n << 1) ^ (n >> 63)  # zigzag
    out = b""
    while True:
        if n < 0x80:
            return out + bytes([n])
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7


def record_batch(values, timestamp=1_700_000_000_000):
    """One uncompressed RecordBatch v2 holding `values` (no keys, no headers)."""
    records = b""
    for i, v in enumerate(values):
        body = b"\x00" + varint(0) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        records += varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, len(values) - 1, timestamp, timestamp, -1, -1, -1,
                            len(values)) + records
    after_length = struct.pack(">ib", -1, 2) + struct.pack(">I", crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


def string(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def array(items):
    return struct.pack(">i", len(items)) + b"".join(items)


def blob(b):
    return struct.pack(">i", len(b)) + b


def subscription(*topics):
    """A ConsumerProtocolSubscription v0: the member metadata of protocol type "consumer"."""
    return struct.pack(">h", 0) + array([string(t) for t in topics]) + struct.pack(">i", -1)


def join_group_v5(group, member_id, instance_id=None, session_ms=10000, rebalance_ms=2000,
                  metadata=None):
    meta = subscription("wire-topic") if metadata is None else metadata
    return (string(group) + struct.pack(">ii", session_ms, rebalance_ms) + string(member_id) +
            string(instance_id) + string("consumer") + array([string("range") + blob(meta)]))


def join_response_v5(body):
    """(error, generation, protocol, leader, member_id, [member ids]) of a JoinGroup v5 answer."""
    r = Reader(body)
    r.take("i")  # throttle
    error, generation = r.take("hi")
    protocol, leader, member = r.string(), r.string(), r.string()
    members = []
    for _ in range(r.take("i")):
        members.append(r.string())
        r.string()  # instance id
        r.pos += 4 + r.take("i")  # metadata (length read twice: skip it)
        r.pos -= 4
    return error, generation, protocol, leader, member, members


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.corr = 0

    def send(self, api, version, body, flexible_header=False, client_id="wire-test"):
        self.corr += 1
        header = struct.pack(">hhi", api, version, self.corr) + string(client_id)
        if flexible_header:
            header += b"\x00"  # no tagged fields
        msg = header + body
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        return self.corr

    def recv(self):
        """(correlation id, body after the correlation id), or None when the broker closed."""
        size = self._exactly(4)
        if size is None:
            return None
        payload = self._exactly(struct.unpack(">i", size)[0])
        return struct.unpack(">i", payload[:4])[0], payload[4:]

    def closed(self):
        """True when the broker closed the connection without sending anything more."""
        return self._exactly(1) is None

    def _exactly(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def close(self):
        self.sock.close()


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from(">" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(">" + fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take("h")
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s


def api_versions_v0(body):
    r = Reader(body)
    error = r.take("h")
    apis = {}
    for _ in range(r.take("i")):
        key, lo, hi = r.take("hhh")
        apis[key] = (lo, hi)
    return error, apis


class KafkaWireTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = Runneld(["--kafka-group-initial-delay", "0s"], name="wire").start()

    @classmethod
    def tearDownClass(cls):
        cls.broker.cleanup()

    def setUp(self):
        self.conn = Conn(self.broker.kafka_port)

    def tearDown(self):
        self.conn.close()

    def assert_still_serving(self):
        c = Conn(self.broker.kafka_port)
        try:
            corr = c.send(18, 0, b"")
            got = c.recv()
            self.assertIsNotNone(got)
            self.assertEqual(got[0], corr)
        finally:
            c.close()

    def test_api_versions_lists_what_is_served(self):
        corr = self.conn.send(18, 0, b"")
        got_corr, body = self.conn.recv()
        self.assertEqual(got_corr, corr)
        error, apis = api_versions_v0(body)
        self.assertEqual(error, 0)
        self.assertEqual(apis[0], (0, 7))   # Produce: advertised from 0 for librdkafka
        self.assertEqual(apis[1], (4, 11))  # Fetch
        self.assertEqual(apis[3], (0, 4))   # Metadata
        self.assertEqual(apis[18], (0, 3))  # ApiVersions
        self.assertNotIn(23, apis)          # OffsetForLeaderEpoch
        self.assertNotIn(60, apis)          # DescribeCluster

    def test_api_versions_v3_is_flexible_with_a_v0_response_header(self):
        body = b"\x07runnel" + b"\x041.0" + b"\x00"  # compact strings, no tagged fields
        corr = self.conn.send(18, 3, body, flexible_header=True)
        got_corr, payload = self.conn.recv()
        self.assertEqual(got_corr, corr)
        # Header v0: the body starts right after the correlation id with error_code.
        self.assertEqual(struct.unpack(">h", payload[:2])[0], 0)
        count = payload[2] - 1  # compact array
        self.assertGreaterEqual(count, 10)

    def test_a_too_new_api_versions_gets_error_35_and_the_list_in_v0(self):
        corr = self.conn.send(18, 9, b"\x00\x00\x00", flexible_header=True)
        got_corr, body = self.conn.recv()
        self.assertEqual(got_corr, corr)
        error, apis = api_versions_v0(body)
        self.assertEqual(error, 35)
        self.assertEqual(apis[18], (0, 3))

    def test_an_unknown_api_closes_only_that_connection(self):
        self.conn.send(999, 0, b"")
        self.assertTrue(self.conn.closed())
        self.assert_still_serving()

    def test_a_version_not_served_closes_the_connection(self):
        self.conn.send(3, 12, b"\x00\x00\x00", flexible_header=True)  # Metadata v12
        self.assertTrue(self.conn.closed())
        self.assert_still_serving()

    def test_a_malformed_request_closes_the_connection(self):
        self.conn.send(3, 1, b"\x00\x00\x00\x05\x00")  # 5 topics, then a truncated name
        self.assertTrue(self.conn.closed())
        self.assert_still_serving()

    def test_an_oversized_frame_closes_the_connection(self):
        self.conn.sock.sendall(struct.pack(">i", 0x7FFFFFF0) + b"\x00" * 64)
        self.assertTrue(self.conn.closed())
        self.assert_still_serving()

    def produce_body(self, topic, batch, acks, version=3):
        part = struct.pack(">i", 0) + struct.pack(">i", len(batch)) + batch
        body = b""
        if version >= 3:
            body += string(None)  # transactional_id
        body += struct.pack(">hi", acks, 5000) + array([string(topic) + array([part])])
        return body

    def test_acks_0_is_not_answered_and_later_answers_keep_their_order(self):
        topic = f"wire-{uuid.uuid4().hex[:8]}"
        self.conn.send(0, 3, self.produce_body(topic, record_batch([b"a", b"b"]), acks=0))
        corr = self.conn.send(0, 3, self.produce_body(topic, record_batch([b"c"]), acks=-1))
        got_corr, body = self.conn.recv()
        self.assertEqual(got_corr, corr)  # the acks=0 request got nothing
        r = Reader(body)
        r.take("i"); r.string(); r.take("i")  # topics, name, partitions
        index, error, base = r.take("i"), r.take("h"), r.take("q")
        self.assertEqual((index, error, base), (0, 0, 2))  # after the two acks=0 records
        self.assertEqual(self.broker.ctl("consume", topic).split(), ["a", "b", "c"])

    def test_responses_leave_in_request_order(self):
        topic = f"wire-order-{uuid.uuid4().hex[:8]}"
        self.broker.ctl("topic", "create", topic, "--partitions", "1")
        # A fetch that waits (nothing to read, min_bytes 1, 300 ms), then an ApiVersions that
        # is answered at once: the fetch's answer must still come first.
        fetch = struct.pack(">iiiib", -1, 300, 1, 1 << 20, 0) + array([
            string(topic) + array([struct.pack(">iqi", 0, 0, 1 << 20)])])
        first = self.conn.send(1, 4, fetch)
        second = self.conn.send(18, 0, b"")
        self.assertEqual(self.conn.recv()[0], first)
        self.assertEqual(self.conn.recv()[0], second)

    def test_produce_below_v3_is_unsupported_version_per_partition(self):
        topic = f"wire-v2-{uuid.uuid4().hex[:8]}"
        self.conn.send(0, 2, self.produce_body(topic, record_batch([b"x"]), acks=-1, version=2))
        _, body = self.conn.recv()
        r = Reader(body)
        r.take("i"); r.string(); r.take("i")
        self.assertEqual(r.take("i"), 0)
        self.assertEqual(r.take("h"), 35)

    def test_a_corrupt_batch_is_corrupt_message_and_stores_nothing(self):
        topic = f"wire-crc-{uuid.uuid4().hex[:8]}"
        batch = bytearray(record_batch([b"x"]))
        batch[-2] ^= 0xFF  # a flipped byte inside the CRC's range
        self.conn.send(0, 3, self.produce_body(topic, bytes(batch), acks=-1))
        _, body = self.conn.recv()
        r = Reader(body)
        r.take("i"); r.string(); r.take("i"); r.take("i")
        self.assertEqual(r.take("h"), 2)  # CORRUPT_MESSAGE
        self.assertEqual(self.broker.ctl("consume", topic, check=False).strip(), "")

    def alter(self, topic, configs, validate_only=False):
        items = [string(name) + struct.pack(">b", op) + string(value) for name, op, value in configs]
        body = array([struct.pack(">b", 2) + string(topic) + array(items)]) + \
            struct.pack(">?", validate_only)
        self.conn.send(44, 0, body)
        _, payload = self.conn.recv()
        r = Reader(payload)
        r.take("i"); r.take("i")
        error, message = r.take("h"), r.string()
        return error, message

    def retention(self, topic):
        return self.broker.ctl("topic", "describe", topic, json_out=True)["config"]["retention.ms"]

    def test_incremental_alter_configs_sets_and_deletes_topic_configs(self):
        topic = f"wire-cfg-{uuid.uuid4().hex[:8]}"
        self.broker.ctl("topic", "create", topic, "--partitions", "1")
        default = self.retention(topic)
        self.assertEqual(self.alter(topic, [("retention.ms", 0, "3600000")]), (0, None))
        self.assertEqual(self.retention(topic), "3600000")
        self.assertEqual(self.alter(topic, [("retention.ms", 0, "60000")], validate_only=True)[0], 0)
        self.assertEqual(self.retention(topic), "3600000")
        self.assertEqual(self.alter(topic, [("retention.ms", 1, None)]), (0, None))
        self.assertEqual(self.retention(topic), default)
        error, message = self.alter(topic, [("no.such.config", 0, "1")])
        self.assertEqual(error, 40)  # INVALID_CONFIG
        self.assertIn("no.such.config", message)
        self.assertEqual(self.alter(topic, [("cleanup.policy", 0, "compact")])[0], 40)
        self.assertEqual(self.alter(topic, [("retention.ms", 2, "1")])[0], 40)  # APPEND
        # A refused change changes nothing, also when other entries were valid.
        self.assertEqual(self.alter(topic, [("retention.ms", 0, "1000"),
                                            ("retention.bytes", 0, "x")])[0], 40)
        self.assertEqual(self.retention(topic), default)

    def join(self, conn, group, **kw):
        """JoinGroup v5 with the member-id handshake (KIP-394); returns the parsed answer."""
        conn.send(11, 5, join_group_v5(group, "", **kw))
        error, *_, member, _ = join_response_v5(conn.recv()[1])
        self.assertEqual(error, 79)  # MEMBER_ID_REQUIRED, with the id to use
        self.assertTrue(member)
        conn.send(11, 5, join_group_v5(group, member, **kw))
        return member

    def test_a_leader_that_never_syncs_stalls_the_group_only_for_the_rebalance_timeout(self):
        group = f"wire-stall-{uuid.uuid4().hex[:8]}"
        leader_conn, follower_conn = Conn(self.broker.kafka_port), Conn(self.broker.kafka_port)
        try:
            lead_id = self.join(leader_conn, group)
            error, gen, protocol, leader, member, members = join_response_v5(leader_conn.recv()[1])
            self.assertEqual((error, protocol, leader, member), (0, "range", lead_id, lead_id))
            # The leader never syncs; a second member joins, so the group rebalances. The leader
            # keeps quiet, so it is dropped when the rebalance timeout (2 s) passes.
            follow_id = self.join(follower_conn, group)
            error, gen2, _, leader2, member2, _ = join_response_v5(follower_conn.recv()[1])
            self.assertEqual(error, 0)
            self.assertEqual(member2, follow_id)
            self.assertGreater(gen2, gen)
            if leader2 != follow_id:
                # The silent leader was still in the group: the follower's SyncGroup waits for an
                # assignment that never comes, until the rebalance timeout ends the generation.
                follower_conn.send(14, 3, string(group) + struct.pack(">i", gen2) +
                                   string(follow_id) + string(None) + array([]))
                r = Reader(follower_conn.recv()[1])
                r.take("i")
                self.assertEqual(r.take("h"), 27)  # REBALANCE_IN_PROGRESS: rejoin
                follower_conn.send(11, 5, join_group_v5(group, follow_id))
                error, gen3, _, leader3, _, members3 = join_response_v5(follower_conn.recv()[1])
                self.assertEqual((error, leader3, members3), (0, follow_id, [follow_id]))
                gen2 = gen3
            # Alone now, the follower leads, syncs its own assignment and heartbeats normally.
            follower_conn.send(14, 3, string(group) + struct.pack(">i", gen2) + string(follow_id) +
                               string(None) + array([string(follow_id) + blob(b"assigned")]))
            r = Reader(follower_conn.recv()[1])
            r.take("i")
            self.assertEqual(r.take("h"), 0)
            self.assertEqual(r.data[r.pos + 4:], b"assigned")
            follower_conn.send(12, 3, string(group) + struct.pack(">i", gen2) + string(follow_id) +
                               string(None))
            r = Reader(follower_conn.recv()[1])
            r.take("i")
            self.assertEqual(r.take("h"), 0)
            # The silent leader's old membership is gone.
            leader_conn.send(12, 3, string(group) + struct.pack(">i", gen) + string(lead_id) +
                             string(None))
            r = Reader(leader_conn.recv()[1])
            r.take("i")
            self.assertIn(r.take("h"), (22, 25))  # ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID
        finally:
            leader_conn.close()
            follower_conn.close()

    def test_group_requests_out_of_bounds_are_refused_and_the_connection_lives(self):
        # An empty or overlong group id: INVALID_GROUP_ID (24).
        for bad in ["", "g" * 250, "tab\there"]:
            self.conn.send(11, 5, join_group_v5(bad, ""))
            self.assertEqual(join_response_v5(self.conn.recv()[1])[0], 24, repr(bad))
        # Member metadata over 1 MiB: INVALID_REQUEST (42); nothing joined.
        group = f"wire-big-{uuid.uuid4().hex[:8]}"
        self.conn.send(11, 5, join_group_v5(group, "", metadata=b"x" * ((1 << 20) + 1)))
        self.assertEqual(join_response_v5(self.conn.recv()[1])[0], 42)
        # A session timeout out of range: INVALID_SESSION_TIMEOUT (26).
        self.conn.send(11, 5, join_group_v5(group, "", session_ms=10))
        self.assertEqual(join_response_v5(self.conn.recv()[1])[0], 26)
        # Heartbeat and SyncGroup of a member nobody knows: UNKNOWN_MEMBER_ID (25).
        self.conn.send(12, 3, string(group) + struct.pack(">i", 1) + string("nobody") + string(None))
        r = Reader(self.conn.recv()[1])
        r.take("i")
        self.assertEqual(r.take("h"), 25)
        # OffsetCommit v2: an unknown partition is UNKNOWN_TOPIC_OR_PARTITION (3) and metadata
        # over 4096 bytes OFFSET_METADATA_TOO_LARGE (12), partition by partition.
        topic = f"wire-oc-{uuid.uuid4().hex[:8]}"
        self.broker.ctl("topic", "create", topic, "--partitions", "1")
        parts = (struct.pack(">iq", 0, 0) + string("x" * 5000) + struct.pack(">iq", 7, 0) +
                 string(""))
        self.conn.send(8, 2, string(group) + struct.pack(">i", -1) + string("") +
                       struct.pack(">q", -1) + array([string(topic) + struct.pack(">i", 2) + parts]))
        r = Reader(self.conn.recv()[1])
        self.assertEqual(r.take("i"), 1)
        self.assertEqual(r.string(), topic)
        self.assertEqual(r.take("i"), 2)
        self.assertEqual(r.take("ih"), (0, 12))
        self.assertEqual(r.take("ih"), (7, 3))
        self.assert_still_serving()

    def test_a_kafka_join_of_a_native_group_is_inconsistent_group_protocol(self):
        # (And the other way round: runnelctl's native join of a Kafka group is refused.)
        topic = f"wire-nq-{uuid.uuid4().hex[:8]}"
        group = f"wire-native-{uuid.uuid4().hex[:8]}"
        self.broker.ctl("topic", "create", topic, "--partitions", "1")
        self.broker.ctl("produce", topic, "one")
        self.broker.ctl("consume", topic, "--group", group, "-n", "1")  # a native stream group
        self.conn.send(11, 5, join_group_v5(group, ""))
        self.assertEqual(join_response_v5(self.conn.recv()[1])[0], 23)
        # And its offsets are not a Kafka group's: OffsetFetch v2+ answers the same.
        self.conn.send(9, 3, string(group) + struct.pack(">i", -1))
        r = Reader(self.conn.recv()[1])
        r.take("i")
        self.assertEqual(r.take("i"), 0)  # no topics
        self.assertEqual(r.take("h"), 23)
        kafka_group = f"wire-kafka-{uuid.uuid4().hex[:8]}"
        self.join(self.conn, kafka_group)
        self.assertEqual(join_response_v5(self.conn.recv()[1])[0], 0)
        out = subprocess.run([RUNNELCTL, "--broker", self.broker.native, "consume", topic,
                              "--group", kafka_group, "-n", "1"], capture_output=True, text=True,
                             timeout=60)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("Kafka consumer group", out.stderr)

    def test_create_topics_validate_only_creates_nothing(self):
        topic = f"wire-vo-{uuid.uuid4().hex[:8]}"
        t = string(topic) + struct.pack(">ih", 2, 1) + array([]) + array([])
        self.conn.send(19, 2, array([t]) + struct.pack(">i?", 5000, True))
        _, payload = self.conn.recv()
        r = Reader(payload)
        r.take("i"); r.take("i")
        self.assertEqual(r.string(), topic)
        self.assertEqual(r.take("h"), 0)
        self.assertNotIn(topic, self.broker.ctl("topic", "list"))


class KafkaWireTopicLimitsTest(unittest.TestCase):
    """A raw Produce (clients look a topic up first; this one does not) to a topic that may not be
    created: UNKNOWN_TOPIC_OR_PARTITION, with --kafka-auto-create-topics off or --max-topics
    reached, and nothing created."""

    def produce_error(self, broker, topic):
        conn = Conn(broker.kafka_port)
        try:
            body = KafkaWireTest.produce_body(None, topic, record_batch([b"x"]), acks=-1)
            conn.send(0, 3, body)
            _, answer = conn.recv()
            r = Reader(answer)
            r.take("i"); r.string(); r.take("i"); r.take("i")
            return r.take("h")
        finally:
            conn.close()

    def test_produce_without_kafka_auto_create_is_unknown_topic(self):
        broker = Runneld(["--kafka-auto-create-topics=false"], name="wire-noauto").start()
        try:
            self.assertEqual(self.produce_error(broker, "ghost"), 3)
            self.assertNotIn("ghost", broker.ctl("topic", "list"))
        finally:
            broker.cleanup()

    def test_produce_and_metadata_v1_beyond_max_topics_create_nothing(self):
        broker = Runneld(["--max-topics", "1"], name="wire-max").start()
        try:
            broker.ctl("topic", "create", "only", "--partitions", "1")
            self.assertEqual(self.produce_error(broker, "more"), 3)
            conn = Conn(broker.kafka_port)
            try:
                conn.send(3, 1, array([string("more")]))  # Metadata v1: auto-creation implied
                _, answer = conn.recv()
                r = Reader(answer)
                for _ in range(r.take("i")):  # brokers: node_id, host, port, rack
                    r.take("i"); r.string(); r.take("i"); r.string()
                r.take("i")  # controller_id
                self.assertEqual(r.take("i"), 1)
                self.assertEqual(r.take("h"), 3)
                self.assertEqual(r.string(), "more")
            finally:
                conn.close()
            self.assertNotIn("more", broker.ctl("topic", "list"))
            self.assertEqual(self.produce_error(broker, "only"), 0)
        finally:
            broker.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
