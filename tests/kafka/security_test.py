#!/usr/bin/python3
"""Access control and TLS on runneld's Kafka listener, with unmodified clients: SASL/PLAIN whose
password is a token of --auth-tokens (librdkafka: SaslHandshake v1 + SaslAuthenticate;
kafka-python: SaslHandshake v0 + a bare token), each token limited to its operations and topic
globs; TLS from --tls-cert/--tls-key (librdkafka, kcat, kafka-python); and SASL_SSL.

Run by ctest with RUNNELD and RUNNELCTL set; /usr/bin/python3 (Debian's modules)."""
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import unittest
from fnmatch import fnmatchcase

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kafka_util import consume_assigned, unique
from runneld import Runneld

# Tokens of the test's token file: name -> secret (random per run, at least 16 characters).
ADMIN = "admin-" + secrets.token_hex(12)    # all * *
WRITER = "writer-" + secrets.token_hex(12)  # produce,consume orders.* *
MEMBER = "member-" + secrets.token_hex(12)  # produce,consume * *  (no admin)
TEAM = "team-" + secrets.token_hex(12)      # produce,consume * team-*
WRONG = "wrong-" + secrets.token_hex(12)    # in no token file

CERTS = None  # temp dir with cert.pem/key.pem (the broker's) and other.pem (an unrelated CA)


def setUpModule():
    global CERTS
    CERTS = tempfile.mkdtemp(prefix="runnel-security-certs-")
    for name in ("", "other-"):
        r = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", os.path.join(CERTS, f"{name}key.pem"),
             "-out", os.path.join(CERTS, f"{name}cert.pem")],
            capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"openssl failed: {r.stderr}")
    with open(os.path.join(CERTS, "tokens"), "w") as f:
        f.write("# name secret operations topics groups\n")
        f.write(f"admin {ADMIN} all * *\n")
        f.write(f"writer {WRITER} produce,consume orders.* *\n")
        f.write(f"member {MEMBER} produce,consume * *\n")
        f.write(f"team {TEAM} produce,consume * team-*\n")


def tearDownModule():
    shutil.rmtree(CERTS, ignore_errors=True)


def cert():
    return os.path.join(CERTS, "cert.pem")


def sasl(password, protocol="SASL_PLAINTEXT"):
    conf = {"security.protocol": protocol, "sasl.mechanisms": "PLAIN",
            "sasl.username": "anyone", "sasl.password": password}
    if protocol == "SASL_SSL":
        conf["ssl.ca.location"] = cert()
    return conf


def kcat_sasl(password):
    return ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN",
            "-X", "sasl.username=kcat", "-X", f"sasl.password={password}"]


def produce(bootstrap, topic, values, timeout_ms=60000, **config):
    """Produces `values` (bytes) to partition i % partitions or librdkafka's choice; returns
    (delivery reports [(err, partition, offset, value)], error_cb errors)."""
    reports, errors = [], []

    def on_delivery(err, msg):
        reports.append((err, msg.partition(), msg.offset(), msg.value()))

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                  "message.timeout.ms": timeout_ms, "error_cb": errors.append, **config})
    for v in values:
        p.produce(topic, value=v, on_delivery=on_delivery)
        p.poll(0)
    left = p.flush(timeout_ms / 1000 + 60)
    assert left == 0, f"{left} records without a delivery report"
    p.poll(0)
    return reports, errors


def list_topics_fails(bootstrap, expect_error=None, timeout=8, **config):
    """list_topics with `config`: the KafkaException it raises (None if it answered) and the
    errors reported to error_cb; with `expect_error`, serves the client's error events until one
    with that code arrived (or a generous deadline passed)."""
    errors = []
    a = AdminClient({"bootstrap.servers": bootstrap, "error_cb": errors.append, **config})
    try:
        a.list_topics(timeout=timeout)
        return None, errors
    except KafkaException as e:
        deadline = time.monotonic() + 60
        while expect_error is not None and time.monotonic() < deadline and \
                expect_error not in [err.code() for err in errors]:
            a.poll(0.5)
        return e, errors
    finally:
        del a


class SaslPlainTest(unittest.TestCase):
    """--auth-tokens without TLS: SASL_PLAINTEXT."""

    @classmethod
    def setUpClass(cls):
        cls.broker = Runneld(["--auth-tokens", os.path.join(CERTS, "tokens")], name="sasl").start()
        cls.bootstrap = cls.broker.bootstrap

    @classmethod
    def tearDownClass(cls):
        cls.broker.cleanup()

    def admin_ctl(self, *args, **kw):
        return self.broker.ctl(*args, token=ADMIN, **kw)

    def create(self, topic, partitions=1):
        self.admin_ctl("topic", "create", topic, "--partitions", str(partitions))

    def stored(self, topic):
        """Records stored in `topic` (natively, with the admin token); None if it does not exist."""
        if topic not in self.topic_names():
            return None
        return self.admin_ctl("topic", "describe", topic, json_out=True)["records"]

    def topic_names(self):
        return {t["name"] for t in self.admin_ctl("topic", "list", json_out=True)["topics"]}

    def test_good_token_produces_and_reads_back_by_assign(self):
        topic = unique("orders.good")
        self.create(topic, 2)
        values = [f"v{i}".encode() for i in range(200)]
        reports, errors = produce(self.bootstrap, topic, values, **sasl(WRITER), **{
            "enable.idempotence": True, "acks": "all"})
        self.assertEqual([r for r in reports if r[0] is not None], [])
        self.assertEqual(errors, [])
        got = consume_assigned(self.bootstrap, topic, [0, 1], len(values), **sasl(WRITER))
        self.assertEqual(sorted(m.value() for m in got), sorted(values))
        acked = {(p, o, v) for _, p, o, v in reports}
        self.assertEqual({(m.partition(), m.offset(), m.value()) for m in got}, acked)
        self.assertEqual(self.stored(topic), len(values))
        # The admin token sees them too, with an AdminClient listing.
        md = AdminClient({"bootstrap.servers": self.bootstrap, **sasl(ADMIN)}).list_topics(timeout=30)
        self.assertEqual(len(md.topics[topic].partitions), 2)

    def test_wrong_token_is_refused_and_stores_nothing(self):
        existing = unique("orders.wrong")
        absent = unique("orders.never")
        self.create(existing)
        # AdminClient: no metadata, and the error callback tells why.
        exc, errors = list_topics_fails(self.bootstrap, KafkaError._AUTHENTICATION, **sasl(WRONG))
        self.assertIsNotNone(exc, "list_topics answered with a wrong token")
        self.assertIn(KafkaError._AUTHENTICATION, [e.code() for e in errors], errors)
        # Producer: every delivery fails, to an existing topic and to one that would be
        # auto-created; the error callback reports the failed authentication.
        reports, errors = produce(self.bootstrap, existing, [b"a", b"b"], timeout_ms=5000,
                                  **sasl(WRONG), **{"acks": "all"})
        self.assertEqual(len(reports), 2)
        self.assertTrue(all(err is not None for err, _, _, _ in reports), reports)
        self.assertIn(KafkaError._AUTHENTICATION, [e.code() for e in errors], errors)
        reports, _ = produce(self.bootstrap, absent, [b"c"], timeout_ms=5000, **sasl(WRONG))
        self.assertTrue(all(err is not None for err, _, _, _ in reports), reports)
        # Consumer: reads nothing of a topic that has records.
        ok, _ = produce(self.bootstrap, existing, [b"real"], **sasl(WRITER), **{"acks": "all"})
        self.assertEqual([r[0] for r in ok], [None])
        errors = []
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": unique("wrong"),
                      "enable.auto.commit": False, "error_cb": errors.append, **sasl(WRONG)})
        try:
            c.assign([TopicPartition(existing, 0, 0)])
            got = []
            deadline = time.monotonic() + 60
            while KafkaError._AUTHENTICATION not in [e.code() for e in errors] and \
                    time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    got.append(m.value())
            self.assertIn(KafkaError._AUTHENTICATION, [e.code() for e in errors], errors)
            self.assertEqual(got, [])
        finally:
            c.close()
        # Nothing was stored but the one record of the good token; nothing was created.
        self.assertEqual(self.stored(existing), 1)
        self.assertNotIn(absent, self.topic_names())
        got = consume_assigned(self.bootstrap, existing, [0], 1, **sasl(ADMIN))
        self.assertEqual([m.value() for m in got], [b"real"])

    def test_topic_globs_limit_produce_and_metadata(self):
        mine = unique("orders.mine")
        other = unique("secret")
        self.create(mine)
        self.create(other)
        # Producing outside the token's globs: TOPIC_AUTHORIZATION_FAILED in the delivery report.
        reports, _ = produce(self.bootstrap, other, [b"x", b"y"], timeout_ms=30000,
                             **sasl(WRITER), **{"acks": "all"})
        self.assertEqual([err.code() if err else None for err, _, _, _ in reports],
                         [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 2)
        reports, _ = produce(self.bootstrap, mine, [b"z"], **sasl(WRITER), **{"acks": "all"})
        self.assertEqual([r[0] for r in reports], [None])
        self.assertEqual(self.stored(other), 0)
        self.assertEqual(self.stored(mine), 1)
        # Nor may it create one outside its globs by producing (auto-creation).
        outside = unique("elsewhere")
        reports, _ = produce(self.bootstrap, outside, [b"w"], timeout_ms=30000, **sasl(WRITER))
        self.assertTrue(all(err is not None for err, _, _, _ in reports), reports)
        self.assertNotIn(outside, self.topic_names())
        # A metadata listing shows the token only its own topics.
        md = AdminClient({"bootstrap.servers": self.bootstrap, **sasl(WRITER)}).list_topics(timeout=30)
        self.assertIn(mine, md.topics)
        self.assertNotIn(other, md.topics)
        self.assertTrue(all(fnmatchcase(t, "orders.*") for t in md.topics), sorted(md.topics))
        # Asked by name, the other topic is refused rather than described.
        md = AdminClient({"bootstrap.servers": self.bootstrap, **sasl(WRITER)}).list_topics(
            other, timeout=30)
        self.assertEqual(md.topics[other].error.code(), KafkaError.TOPIC_AUTHORIZATION_FAILED)
        self.assertEqual(md.topics[other].partitions, {})
        # The admin token sees both.
        md = AdminClient({"bootstrap.servers": self.bootstrap, **sasl(ADMIN)}).list_topics(timeout=30)
        self.assertIn(mine, md.topics)
        self.assertIn(other, md.topics)
        # Reading outside the globs fails too (kcat reports the topic's error and stops; a
        # consumer by assign would wait for the topic to become readable).
        self.admin_ctl("produce", other, "hidden")
        self.assertEqual(self.stored(other), 1)
        r = subprocess.run(["kcat", "-b", self.bootstrap, *kcat_sasl(WRITER), "-C", "-t", other,
                            "-p", "0", "-o", "beginning", "-e"],
                           capture_output=True, text=True, timeout=120)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("Topic authorization failed", r.stderr)
        self.assertNotIn("hidden", r.stdout)
        r = subprocess.run(["kcat", "-b", self.bootstrap, *kcat_sasl(ADMIN), "-C", "-t", other,
                            "-p", "0", "-o", "beginning", "-e"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), ["hidden"])

    def test_group_globs_limit_consumer_groups(self):
        topic = unique("groups")
        self.create(topic, 2)
        values = [f"g{i}".encode() for i in range(20)]
        reports, errors = produce(self.bootstrap, topic, values, **sasl(TEAM))
        self.assertEqual(errors, [])

        def consumer(group):
            return Consumer({"bootstrap.servers": self.bootstrap, "group.id": group,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             **sasl(TEAM)})

        # A group the token's globs allow: joins, reads and commits.
        c = consumer(unique("team"))
        try:
            c.subscribe([topic])
            got = []
            deadline = time.monotonic() + 60
            while len(got) < len(values) and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    got.append(m)
            self.assertEqual(sorted(m.value() for m in got), sorted(values))
            c.commit(asynchronous=False)
        finally:
            c.close()
        # Any other group: GROUP_AUTHORIZATION_FAILED, and nothing of it is stored.
        other = unique("other")
        c = consumer(other)
        try:
            c.subscribe([topic])
            code = None
            deadline = time.monotonic() + 60
            while code is None and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and m.error():
                    code = m.error().code()
            self.assertEqual(code, KafkaError.GROUP_AUTHORIZATION_FAILED)
        finally:
            c.close()
        groups = {g["name"] for g in self.admin_ctl("group", "list", json_out=True)["groups"]}
        self.assertNotIn(other, groups)

    def test_token_without_admin_cannot_create_or_delete_topics(self):
        for name, token, prefix in (("member", MEMBER, "created"), ("writer", WRITER, "orders.c")):
            with self.subTest(token=name):
                topic = unique(prefix)
                a = AdminClient({"bootstrap.servers": self.bootstrap, **sasl(token)})
                fs = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
                with self.assertRaises(KafkaException) as e:
                    fs[topic].result(30)
                self.assertEqual(e.exception.args[0].code(), KafkaError.TOPIC_AUTHORIZATION_FAILED)
                self.assertNotIn(topic, self.topic_names())
                existing = unique(prefix)
                self.create(existing)
                with self.assertRaises(KafkaException) as e:
                    a.delete_topics([existing])[existing].result(30)
                self.assertEqual(e.exception.args[0].code(), KafkaError.TOPIC_AUTHORIZATION_FAILED)
                self.assertIn(existing, self.topic_names())
        # The admin token may.
        topic = unique("created")
        a = AdminClient({"bootstrap.servers": self.bootstrap, **sasl(ADMIN)})
        a.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
        self.assertIn(topic, self.topic_names())
        a.delete_topics([topic])[topic].result(30)
        self.assertNotIn(topic, self.topic_names())

    def test_plaintext_client_gets_nothing_and_the_broker_still_serves(self):
        topic = unique("orders.plain")
        self.create(topic)
        exc, _ = list_topics_fails(self.bootstrap)
        self.assertIsNotNone(exc, "a client without SASL got metadata")
        reports, _ = produce(self.bootstrap, topic, [b"p"], timeout_ms=5000, **{"acks": "all"})
        self.assertTrue(all(err is not None for err, _, _, _ in reports), reports)
        r = subprocess.run(["kcat", "-b", self.bootstrap, "-L", "-m", "5"],
                           capture_output=True, text=True, timeout=120)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertNotIn(topic, r.stdout)
        self.assertEqual(self.stored(topic), 0)
        # Authenticated clients are served as before.
        reports, errors = produce(self.bootstrap, topic, [b"after"], **sasl(WRITER),
                                  **{"acks": "all"})
        self.assertEqual([r[0] for r in reports], [None])
        got = consume_assigned(self.bootstrap, topic, [0], 1, **sasl(WRITER))
        self.assertEqual([m.value() for m in got], [b"after"])
        r = subprocess.run(["kcat", "-b", self.bootstrap, *kcat_sasl(WRITER), "-L", "-t", topic],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f'topic "{topic}" with 1 partitions', r.stdout)

    def test_kafka_python_good_and_bad_token(self):
        from kafka import KafkaConsumer, KafkaProducer
        from kafka import TopicPartition as KTP
        from kafka.errors import KafkaError as KPError

        def kp(password):
            return dict(bootstrap_servers=self.bootstrap, security_protocol="SASL_PLAINTEXT",
                        sasl_mechanism="PLAIN", sasl_plain_username="kafka-python",
                        sasl_plain_password=password)

        topic = unique("orders.kp")
        self.create(topic, 2)
        prod = KafkaProducer(acks="all", **kp(WRITER))
        try:
            futures = [prod.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                                 partition=i % 2) for i in range(100)]
            prod.flush(60)
            metas = [f.get(timeout=60) for f in futures]
        finally:
            prod.close()
        self.assertEqual(sorted(m.offset for m in metas if m.partition == 0), list(range(50)))
        cons = KafkaConsumer(enable_auto_commit=False, consumer_timeout_ms=10_000, **kp(WRITER))
        try:
            cons.assign([KTP(topic, 0), KTP(topic, 1)])
            cons.seek_to_beginning()
            got = []
            deadline = time.monotonic() + 60
            while len(got) < 100 and time.monotonic() < deadline:
                for batch in cons.poll(timeout_ms=500).values():
                    got.extend(batch)
        finally:
            cons.close()
        self.assertEqual(sorted(int(m.value[1:]) for m in got), list(range(100)))
        # A bad token: the client cannot connect at all, and nothing is stored.
        with self.assertRaises(KPError):
            p = KafkaProducer(acks="all", max_block_ms=10_000, **kp(WRONG))
            try:
                p.send(topic, b"bad", partition=0).get(timeout=30)
            finally:
                p.close(0)
        with self.assertRaises(KPError):
            c = KafkaConsumer(enable_auto_commit=False, consumer_timeout_ms=5000, **kp(WRONG))
            try:
                c.assign([KTP(topic, 0)])
                c.seek_to_beginning()
                self.assertEqual(list(c), [])
            finally:
                c.close()
        self.assertEqual(self.stored(topic), 100)


class TlsTest(unittest.TestCase):
    """--tls-cert/--tls-key without tokens: the Kafka port speaks TLS only."""

    @classmethod
    def setUpClass(cls):
        cls.broker = Runneld(["--tls-cert", cert(), "--tls-key", os.path.join(CERTS, "key.pem")],
                             name="tls").start()
        cls.bootstrap = cls.broker.bootstrap
        cls.ssl = {"security.protocol": "SSL", "ssl.ca.location": cert()}

    @classmethod
    def tearDownClass(cls):
        cls.broker.cleanup()

    def ctl(self, *args, **kw):
        return self.broker.ctl("--tls-ca", cert(), *args, **kw)

    def records(self, topic):
        return self.ctl("topic", "describe", topic, json_out=True)["records"]

    def kcat(self, *args, stdin=None, check=True):
        r = subprocess.run(["kcat", "-b", self.bootstrap, *args], input=stdin,
                           capture_output=True, text=True, timeout=120)
        if check:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def test_ssl_client_produces_and_consumes(self):
        topic = unique("tls")
        self.ctl("topic", "create", topic, "--partitions", "2")
        values = [f"tls-{i}".encode() for i in range(200)]
        reports, errors = produce(self.bootstrap, topic, values, **self.ssl, **{
            "enable.idempotence": True, "acks": "all", "compression.type": "lz4"})
        self.assertEqual([r for r in reports if r[0] is not None], [])
        got = consume_assigned(self.bootstrap, topic, [0, 1], len(values), **self.ssl)
        self.assertEqual({(m.partition(), m.offset(), m.value()) for m in got},
                         {(p, o, v) for _, p, o, v in reports})
        self.assertEqual(self.records(topic), len(values))

    def test_kcat_over_ssl_lists_metadata_and_reads(self):
        topic = unique("tls-kcat")
        self.ctl("topic", "create", topic, "--partitions", "3")
        tls = ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={cert()}"]
        out = self.kcat(*tls, "-L").stdout
        self.assertIn(f'topic "{topic}" with 3 partitions', out)
        self.assertIn(f"broker 0 at {self.bootstrap}", out)
        self.kcat(*tls, "-P", "-t", topic, "-p", "1", stdin="".join(f"line {i}\n" for i in range(20)))
        out = self.kcat(*tls, "-C", "-t", topic, "-p", "1", "-o", "beginning", "-e").stdout
        self.assertEqual(out.splitlines(), [f"line {i}" for i in range(20)])

    def test_client_that_does_not_trust_the_ca_fails(self):
        topic = unique("tls-untrusted")
        self.ctl("topic", "create", topic, "--partitions", "1")
        other = os.path.join(CERTS, "other-cert.pem")
        exc, errors = list_topics_fails(self.bootstrap, KafkaError._SSL,
                                        **security_protocol_conf(other))
        self.assertIsNotNone(exc, "a client trusting another CA got metadata")
        self.assertIn(KafkaError._SSL, [e.code() for e in errors], errors)
        reports, _ = produce(self.bootstrap, topic, [b"u"], timeout_ms=5000,
                             **{"security.protocol": "SSL", "ssl.ca.location": other})
        self.assertTrue(all(err is not None for err, _, _, _ in reports), reports)
        r = self.kcat("-X", "security.protocol=SSL", "-X", f"ssl.ca.location={other}", "-L",
                      "-m", "5", check=False)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertNotIn(topic, r.stdout)
        self.assertEqual(self.records(topic), 0)

    def test_plaintext_client_against_the_tls_port_fails(self):
        topic = unique("tls-plain")
        self.ctl("topic", "create", topic, "--partitions", "1")
        exc, _ = list_topics_fails(self.bootstrap)
        self.assertIsNotNone(exc, "a plaintext client got metadata from the TLS port")
        reports, _ = produce(self.bootstrap, topic, [b"p"], timeout_ms=5000)
        self.assertTrue(all(err is not None for err, _, _, _ in reports), reports)
        r = self.kcat("-L", "-m", "5", check=False)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertEqual(self.records(topic), 0)
        # TLS clients are served as before.
        reports, _ = produce(self.bootstrap, topic, [b"ok"], **self.ssl)
        self.assertEqual([r[0] for r in reports], [None])

    def test_kafka_python_over_ssl(self):
        from kafka import KafkaConsumer, KafkaProducer
        from kafka import TopicPartition as KTP
        topic = unique("tls-kp")
        self.ctl("topic", "create", topic, "--partitions", "1")
        kp = dict(bootstrap_servers=self.bootstrap, security_protocol="SSL", ssl_cafile=cert())
        prod = KafkaProducer(acks="all", **kp)
        try:
            futures = [prod.send(topic, f"kp{i}".encode(), partition=0) for i in range(50)]
            prod.flush(60)
            self.assertEqual([f.get(timeout=60).offset for f in futures], list(range(50)))
        finally:
            prod.close()
        cons = KafkaConsumer(enable_auto_commit=False, **kp)
        try:
            cons.assign([KTP(topic, 0)])
            cons.seek_to_beginning()
            got = []
            deadline = time.monotonic() + 60
            while len(got) < 50 and time.monotonic() < deadline:
                for batch in cons.poll(timeout_ms=500).values():
                    got.extend(m.value for m in batch)
        finally:
            cons.close()
        self.assertEqual(got, [f"kp{i}".encode() for i in range(50)])


def security_protocol_conf(ca):
    return {"security.protocol": "SSL", "ssl.ca.location": ca}


class SaslSslTest(unittest.TestCase):
    """--auth-tokens and TLS together: SASL_SSL."""

    @classmethod
    def setUpClass(cls):
        cls.broker = Runneld(["--auth-tokens", os.path.join(CERTS, "tokens"),
                              "--tls-cert", cert(), "--tls-key", os.path.join(CERTS, "key.pem")],
                             name="sasl-ssl").start()
        cls.bootstrap = cls.broker.bootstrap

    @classmethod
    def tearDownClass(cls):
        cls.broker.cleanup()

    def records(self, topic):
        return self.broker.ctl("--tls-ca", cert(), "topic", "describe", topic, token=ADMIN,
                               json_out=True)["records"]

    def test_good_token_over_tls_produces_and_consumes(self):
        topic = unique("orders.sasl-ssl")
        self.broker.ctl("--tls-ca", cert(), "topic", "create", topic, "--partitions", "2",
                        token=ADMIN)
        values = [f"s{i}".encode() for i in range(100)]
        reports, errors = produce(self.bootstrap, topic, values, **sasl(WRITER, "SASL_SSL"),
                                  **{"enable.idempotence": True, "acks": "all"})
        self.assertEqual([r for r in reports if r[0] is not None], [])
        self.assertEqual(errors, [])
        got = consume_assigned(self.bootstrap, topic, [0, 1], len(values), **sasl(WRITER, "SASL_SSL"))
        self.assertEqual({(m.partition(), m.offset(), m.value()) for m in got},
                         {(p, o, v) for _, p, o, v in reports})
        self.assertEqual(self.records(topic), len(values))

    def test_bad_token_or_no_tls_over_tls_fails(self):
        topic = unique("orders.sasl-ssl-bad")
        self.broker.ctl("--tls-ca", cert(), "topic", "create", topic, "--partitions", "1",
                        token=ADMIN)
        exc, errors = list_topics_fails(self.bootstrap, KafkaError._AUTHENTICATION,
                                        **sasl(WRONG, "SASL_SSL"))
        self.assertIsNotNone(exc)
        self.assertIn(KafkaError._AUTHENTICATION, [e.code() for e in errors], errors)
        # The right token without TLS: the TLS port does not speak plaintext.
        exc, _ = list_topics_fails(self.bootstrap, **sasl(WRITER, "SASL_PLAINTEXT"))
        self.assertIsNotNone(exc)
        # TLS without SASL: nothing but ApiVersions is answered.
        exc, _ = list_topics_fails(self.bootstrap, **security_protocol_conf(cert()))
        self.assertIsNotNone(exc)
        self.assertEqual(self.records(topic), 0)

    def test_kafka_python_sasl_ssl(self):
        from kafka import KafkaProducer
        topic = unique("orders.kp-ssl")
        self.broker.ctl("--tls-ca", cert(), "topic", "create", topic, "--partitions", "1",
                        token=ADMIN)
        prod = KafkaProducer(acks="all", bootstrap_servers=self.bootstrap,
                             security_protocol="SASL_SSL", ssl_cafile=cert(),
                             sasl_mechanism="PLAIN", sasl_plain_username="kp",
                             sasl_plain_password=WRITER)
        try:
            futures = [prod.send(topic, f"x{i}".encode(), partition=0) for i in range(20)]
            prod.flush(60)
            self.assertEqual([f.get(timeout=60).offset for f in futures], list(range(20)))
        finally:
            prod.close()
        self.assertEqual(self.records(topic), 20)


if __name__ == "__main__":
    unittest.main(verbosity=2)
