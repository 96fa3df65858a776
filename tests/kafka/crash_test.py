#!/usr/bin/python3
"""runneld SIGKILLed again and again under a librdkafka idempotent producer (acks=all) loses no
acknowledged record and stores none twice.

A child process (this script with --producer) produces "seq-<n>" with key str(n) to a topic of
three partitions, without pause, and appends "n partition offset" to an ack file for every
delivery report that succeeded. Meanwhile runneld is killed with SIGKILL at random moments and
restarted on the same ports, RUNNEL_CRASH_ROUNDS times (default 10). Then the producer is told
to stop (a stop file), flushes and exits, and the whole topic is read back by assign: every
acknowledged n must be where its ack said, no n may be stored twice, and each partition's
offsets must run from 0 without a gap.

A second test does the same to a consumer group: a child consumes in a group and commits
synchronously every few records, appending "partition offset" for every commit runneld answered;
after the kill rounds, each partition's committed offset must be at least the last one answered
(commits only move forward, so anything lower is a confirmed commit lost).

Run by ctest (label crash) with RUNNELD and RUNNELCTL set; /usr/bin/python3 (Debian's modules)."""
import json
import os
import random
import signal
import subprocess
import sys
import time
import unittest

PARTITIONS = 3


def producer_main(bootstrap, topic, ackfile, stopfile):
    """The producer child: exits 0 after a clean flush; 2 on a fatal error, 3 if the flush left
    records undelivered. Prints a JSON summary on stdout and every error on stderr."""
    from confluent_kafka import Producer

    state = {"produced": 0, "delivered": 0, "failed": 0, "fatal": None}
    acks = open(ackfile, "a")

    def on_error(err):
        print(f"producer error: {err.name()} {err}", file=sys.stderr, flush=True)
        if err.fatal():
            state["fatal"] = str(err)

    def on_delivery(err, msg):
        n = int(msg.key())
        if err is None:
            acks.write(f"{n} {msg.partition()} {msg.offset()}\n")
            acks.flush()
            state["delivered"] += 1
        else:
            state["failed"] += 1
            print(f"delivery of {n} failed: {err.name()} {err} (fatal={err.fatal()})",
                  file=sys.stderr, flush=True)
            if err.fatal():
                state["fatal"] = str(err)

    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 300000,
        "queue.buffering.max.messages": 20000,
        # Reconnect soon after each restart, so that the next kill finds requests in flight
        # rather than a producer in its reconnect backoff.
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "error_cb": on_error,
    })

    def finish(code):
        acks.close()
        print(json.dumps(state), flush=True)
        sys.stdout.flush()
        os._exit(code)  # no destructor that could block on an unreachable broker

    n = 0
    while not os.path.exists(stopfile):
        if state["fatal"]:
            finish(2)
        try:
            p.produce(topic, key=str(n).encode(), value=f"seq-{n}".encode(),
                      on_delivery=on_delivery)
        except BufferError:
            p.poll(0.05)  # the queue is full (e.g. the broker is down): wait for reports
            continue
        n += 1
        state["produced"] = n
        if n % 100 == 0:
            p.poll(0)
    # Stop file seen: deliver what is queued (the broker is up for good now).
    left = p.flush(300)
    if left:
        print(f"{left} records still queued after the final flush", file=sys.stderr, flush=True)
    p.poll(0)
    if state["fatal"]:
        finish(2)
    finish(0 if left == 0 else 3)


def committer_main(bootstrap, topic, group, commitfile, stopfile):
    """The consumer child: commits every 5 records, synchronously; appends each answered commit
    to `commitfile`. Failed commits (the broker is down, a rebalance) are retried by later ones."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                  "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500})
    c.subscribe([topic])
    out = open(commitfile, "a")
    seen = 0
    while not os.path.exists(stopfile):
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        seen += 1
        if seen % 5:
            continue
        tp = TopicPartition(topic, m.partition(), m.offset() + 1)
        try:
            c.commit(offsets=[tp], asynchronous=False)
        except KafkaException:
            continue
        out.write(f"{m.partition()} {m.offset() + 1}\n")
        out.flush()
    out.close()
    os._exit(0)


if len(sys.argv) == 6 and sys.argv[1] == "--producer":
    producer_main(*sys.argv[2:])
if len(sys.argv) == 7 and sys.argv[1] == "--committer":
    committer_main(*sys.argv[2:])

from confluent_kafka import Consumer, KafkaException, TopicPartition  # noqa: E402

from runneld import Runneld  # noqa: E402


class CrashTest(unittest.TestCase):
    def setUp(self):
        self.broker = Runneld(name="crash").start()
        self.producer = None
        self.files = []

    def tearDown(self):
        if self.producer and self.producer.poll() is None:
            self.producer.kill()
            self.producer.wait(timeout=60)
        for f in self.files:
            f.close()
        self.broker.cleanup()

    def path(self, name):
        return os.path.join(self.broker.dir, name)

    def producer_output(self):
        out = open(self.path("producer.out")).read()
        err = open(self.path("producer.err"), errors="replace").read()
        return out, err

    def ack_bytes(self):
        try:
            return os.path.getsize(self.path("acks"))
        except OSError:
            return 0

    def ack_lines(self):
        with open(self.path("acks"), "rb") as f:
            return f.read().count(b"\n")

    def read_acks(self):
        acks = {}
        duplicates = []
        with open(self.path("acks")) as f:
            for line in f:
                n, part, off = (int(x) for x in line.split())
                if n in acks:
                    duplicates.append((n, acks[n], (part, off)))
                acks[n] = (part, off)
        return acks, duplicates

    def read_topic(self, topic):
        """Every record of `topic` up to each partition's high watermark, by assign:
        {partition: [(offset, n, None) for "seq-<n>" with key str(n), else (offset, key,
        value)]}."""
        c = Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": "crash-reader",
                      "enable.auto.commit": False, "enable.partition.eof": False})
        try:
            marks = {}
            for part in range(PARTITIONS):
                marks[part] = c.get_watermark_offsets(TopicPartition(topic, part), timeout=60)
            out = {part: [] for part in range(PARTITIONS)}
            todo = [part for part in range(PARTITIONS) if marks[part][1] > 0]
            c.assign([TopicPartition(topic, part, 0) for part in todo])
            next_offset = {part: 0 for part in range(PARTITIONS)}
            deadline = time.monotonic() + 120  # without any record for this long: give up
            while any(next_offset[p] < marks[p][1] for p in todo) and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is None:
                    continue
                if m.error():
                    raise KafkaException(m.error())
                deadline = time.monotonic() + 120
                key, value = m.key(), m.value()
                if key is not None and value == b"seq-" + key:
                    out[m.partition()].append((m.offset(), int(key), None))  # the usual case
                else:
                    out[m.partition()].append((m.offset(), key, value))
                next_offset[m.partition()] = m.offset() + 1
            return marks, out
        finally:
            c.close()

    def test_sigkill_under_idempotent_producer_loses_and_duplicates_nothing(self):
        rounds = int(os.environ.get("RUNNEL_CRASH_ROUNDS", "10"))
        topic = "crash"
        self.broker.ctl("topic", "create", topic, "--partitions", str(PARTITIONS))
        stopfile = self.path("stop")
        out = open(self.path("producer.out"), "wb")
        err = open(self.path("producer.err"), "wb")
        self.files += [out, err]
        self.producer = subprocess.Popen(
            [sys.executable, "-W", "ignore", os.path.abspath(__file__), "--producer",
             self.broker.bootstrap, topic, self.path("acks"), stopfile],
            stdout=out, stderr=err)

        # Kill only once the producer is under way (its first ack), then at random moments.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.producer.poll() is None and \
                (not os.path.exists(self.path("acks")) or os.path.getsize(self.path("acks")) == 0):
            time.sleep(0.05)
        self.assertIsNone(self.producer.poll(), f"producer exited early: {self.producer_output()}")
        self.assertGreater(os.path.getsize(self.path("acks")), 0, "the producer got no ack")

        done = 0
        acked_at_kill = []  # acks written before each kill (printed; not asserted: timing)
        for _ in range(rounds):
            # Once the producer is getting acks again (or after a while: no assertion), kill at
            # a random moment.
            before = self.ack_bytes()
            deadline = time.monotonic() + 30
            while done and self.ack_bytes() == before and time.monotonic() < deadline and \
                    self.producer.poll() is None:
                time.sleep(0.05)
            time.sleep(random.uniform(0.3, 1.5))
            if self.producer.poll() is not None:
                break  # fails below, with the producer's output
            self.broker.stop(signal.SIGKILL)
            acked_at_kill.append(self.ack_lines())
            self.broker.start(timeout=60)
            done += 1
        time.sleep(random.uniform(0.3, 1.5))

        open(stopfile, "w").close()
        try:
            code = self.producer.wait(timeout=400)
        except subprocess.TimeoutExpired:
            self.producer.kill()
            self.producer.wait(timeout=60)
            code = "timeout"
        stdout, stderr = self.producer_output()
        self.assertEqual(code, 0, f"producer exit {code}\nstdout: {stdout}\nstderr: {stderr[-4000:]}")
        summary = json.loads(stdout.strip().splitlines()[-1])
        self.assertIsNone(summary["fatal"], stderr[-4000:])
        # librdkafka logs a fatal error under the FATAL facility, and names it _FATAL.
        self.assertNotIn("|FATAL|", stderr, stderr[-4000:])
        self.assertNotIn("_FATAL", stderr, stderr[-4000:])
        self.assertEqual(done, rounds)

        acks, ack_dups = self.read_acks()
        self.assertEqual(ack_dups[:10], [], "a record was acknowledged twice")
        marks, stored = self.read_topic(topic)

        where = {}  # n -> [(partition, offset), ...]
        problems = []
        for part, records in stored.items():
            offsets = [o for o, _, _ in records]
            if offsets != list(range(marks[part][1])):
                gaps = sorted(set(range(marks[part][1])) - set(offsets))
                problems.append(f"partition {part}: low/high {marks[part]}, {len(offsets)} "
                                f"records read, missing offsets {gaps[:20]}")
            for off, n, value in records:
                if value is not None:
                    problems.append(f"partition {part} offset {off}: key {n!r} value {value!r}")
                    continue
                where.setdefault(n, []).append((part, off))
        total = sum(len(r) for r in stored.values())
        dups = {n: locs for n, locs in where.items() if len(locs) > 1}
        lost = {n: at for n, at in acks.items() if at not in where.get(n, [])}
        print(f"\ncrash test: {done} SIGKILL rounds; producer produced {summary['produced']}, "
              f"acked {len(acks)} (failed {summary['failed']}); stored {total} records "
              f"({len(where)} distinct) in partitions "
              f"{ {p: marks[p][1] for p in sorted(marks)} }; "
              f"lost {len(lost)}, duplicated {len(dups)}; acks before each kill "
              f"{acked_at_kill}", file=sys.stderr)

        self.assertEqual(problems[:20], [])
        self.assertEqual(sorted(dups.items())[:20], [], f"{len(dups)} values stored twice")
        self.assertEqual(
            sorted((n, at, where.get(n)) for n, at in lost.items())[:20], [],
            f"{len(lost)} acknowledged records not where their ack said (n, ack, stored at)")
        # Everything produced was acknowledged in the end (the broker stays up for the flush), so
        # the topic holds exactly the acknowledged records.
        self.assertEqual(summary["failed"], 0, stderr[-4000:])
        self.assertEqual(len(acks), summary["produced"])
        self.assertEqual(set(where), set(acks))
        self.assertGreater(len(acks), 0)


class GroupCrashTest(unittest.TestCase):
    def setUp(self):
        self.broker = Runneld(["--kafka-group-initial-delay", "0s"], name="crash-group").start()
        self.child = None

    def tearDown(self):
        if self.child and self.child.poll() is None:
            self.child.kill()
            self.child.wait(timeout=60)
        self.broker.cleanup()

    def test_sigkill_loses_no_answered_offset_commit(self):
        rounds = max(3, int(os.environ.get("RUNNEL_CRASH_ROUNDS", "10")) // 2)
        topic, group = "crash-commits", "crash-committer"
        self.broker.ctl("topic", "create", topic, "--partitions", str(PARTITIONS))
        lines = "\n".join(f"k{i}:r{i}" for i in range(60000)) + "\n"
        self.broker.ctl("produce", topic, "--key-sep", ":", stdin=lines)  # keys spread them
        commits = os.path.join(self.broker.dir, "commits")
        stopfile = os.path.join(self.broker.dir, "stop-committer")
        err = open(os.path.join(self.broker.dir, "committer.err"), "wb")
        try:
            self.child = subprocess.Popen(
                [sys.executable, "-W", "ignore", os.path.abspath(__file__), "--committer",
                 self.broker.bootstrap, topic, group, commits, stopfile], stderr=err)

            def answered():
                try:
                    return os.path.getsize(commits)
                except OSError:
                    return 0

            for _ in range(rounds):
                before = answered()
                deadline = time.monotonic() + 60
                while answered() == before and time.monotonic() < deadline:
                    time.sleep(0.05)
                self.assertGreater(answered(), before, "no commit was answered in this round")
                time.sleep(random.uniform(0.2, 1.0))
                self.broker.stop(signal.SIGKILL)
                self.broker.start(timeout=60)
            open(stopfile, "w").close()
            self.assertEqual(self.child.wait(timeout=120), 0)
        finally:
            err.close()

        last = {}
        with open(commits) as f:
            for line in f:
                part, off = (int(x) for x in line.split())
                last[part] = max(last.get(part, 0), off)
        self.assertTrue(last)
        c = Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": group})
        try:
            stored = c.committed([TopicPartition(topic, p) for p in sorted(last)], timeout=60)
        finally:
            c.close()
        got = {tp.partition: tp.offset for tp in stored}
        print(f"\ngroup crash test: {rounds} SIGKILL rounds; last answered commits {last}, "
              f"stored {got}", file=sys.stderr)
        for part, off in last.items():
            self.assertGreaterEqual(got[part], off, f"partition {part}: an answered commit was lost")


if __name__ == "__main__":
    unittest.main(verbosity=2)
