#!/usr/bin/python3
"""Kafka consumer groups on runneld, driven by real clients nobody here wrote: librdkafka (through
confluent-kafka, in this process and in child processes), kafka-python and kcat, with runnelctl
looking at and changing the same groups natively.

Covered: a group of consumer processes losing one to SIGKILL (its partitions move, nothing is
lost, the committed offsets reach the log end); cooperative-sticky rebalancing under load;
static membership across a restart of one member's process; kafka-python and kcat committing
and resuming; offsets across runneld restarts (SIGTERM and SIGKILL); runnelctl reset-offsets and
delete on Kafka groups (refused while the group has live members); native and Kafka groups
refusing each other's clients; a rebalance when a subscribed topic grows; and group admin
(ListGroups, DescribeGroups, DeleteGroups, runnelctl group describe).

Every assertion is on an outcome that correct behaviour reaches whatever the timing; deadlines
only bound how long a wrong behaviour is waited for.

Run by ctest with RUNNELD and RUNNELCTL set; /usr/bin/python3 (Debian's modules). With
--member it is the consumer child of test_sigkilled_member_*."""
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

PARTITIONS = 6


def member_main(bootstrap, topic, group, outfile, gofile, stopfile, die_after):
    """A consumer process of test_sigkilled_member_*. Joins the group with its partitions paused
    until `gofile` exists, then consumes in batches, "processes" each (appends "partition offset"
    lines to `outfile`, flushed) and commits it synchronously ("C" once answered). With
    die_after > 0 it stops after that many records, before committing its last batch: it writes
    "DYING" and sleeps until it is killed. Rebalances are logged as "# assigned/revoked ..."."""
    from confluent_kafka import Consumer, KafkaException

    die_after = int(die_after)
    out = open(outfile, "a")

    def say(line):
        out.write(line + "\n")
        out.flush()

    go = {"on": False}

    def on_assign(c, parts):
        c.assign(parts)
        # librdkafka keeps a partition's pause across rebalances: one paused before "go" (in an
        # earlier generation) must be resumed when it comes back.
        if go["on"]:
            c.resume(parts)
        else:
            c.pause(parts)
        say("# assigned " + " ".join(str(p.partition) for p in parts))

    def on_revoke(c, parts):
        say("# revoked " + " ".join(str(p.partition) for p in parts))

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 3000, "heartbeat.interval.ms": 300})
    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while not os.path.exists(gofile):
        m = c.poll(0.1)  # serves the rebalance; paused partitions return nothing (else: kept)
        if m is not None and not m.error():
            say(f"{m.partition()} {m.offset()}")
    go["on"] = True
    c.resume(c.assignment())
    seen = 0
    while not os.path.exists(stopfile):
        batch = [m for m in c.consume(num_messages=10, timeout=0.2) if not m.error()]
        if not batch:
            continue
        for m in batch:
            say(f"{m.partition()} {m.offset()}")
        seen += len(batch)
        time.sleep(0.02)  # the processing
        if die_after and seen >= die_after:
            say("DYING")
            while True:
                time.sleep(60)
        try:
            c.commit(asynchronous=False)  # the stored offsets of the current assignment
            say("C")
        except KafkaException as e:
            say(f"# commit failed: {e}")  # a rebalance: a later commit (or owner) covers it
    c.close()
    out.close()
    os._exit(0)


if len(sys.argv) == 9 and sys.argv[1] == "--member":
    member_main(*sys.argv[2:])

import json  # noqa: E402

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewPartitions  # noqa: E402

from kafka_util import unique  # noqa: E402
from runneld import RUNNELCTL, Runneld  # noqa: E402

EXAMPLE_CONSUMER = os.environ.get(
    "RUNNEL_EXAMPLE_CONSUMER",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(os.environ.get(
        "RUNNELD", "build/broker/runneld")))), "examples", "example-consumer"))


def produce(bootstrap, topic, count, partitions, start=0):
    """Produces `count` records round robin over `partitions`; returns their (partition, offset)
    set from the delivery reports."""
    done, failed = set(), []

    def on_delivery(err, msg):
        if err is None:
            done.add((msg.partition(), msg.offset()))
        else:
            failed.append(err)

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    for i in range(start, start + count):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                  partition=i % partitions, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(30) == 0, "records not delivered"
    assert not failed, failed
    return done


class Member:
    """A confluent-kafka consumer of one topic in this process, recording every rebalance
    callback and every record it gets."""

    def __init__(self, bootstrap, group, topic, **config):
        self.owned = set()
        self.events = []  # (kind, partitions, owned before)
        self.records = []  # (partition, offset)
        self.errors = []
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                           "auto.offset.reset": "earliest", "enable.auto.commit": False,
                           "session.timeout.ms": 6000, "heartbeat.interval.ms": 250,
                           "error_cb": self.errors.append, **config})
        self.c.subscribe([topic], on_assign=self._assign, on_revoke=self._revoke,
                         on_lost=self._lost)
        self.closed = False

    def _assign(self, c, parts):
        ps = frozenset(p.partition for p in parts)
        self.events.append(("assign", ps, frozenset(self.owned)))
        self.owned |= ps

    def _revoke(self, c, parts):
        ps = frozenset(p.partition for p in parts)
        self.events.append(("revoke", ps, frozenset(self.owned)))
        self.owned -= ps

    def _lost(self, c, parts):
        ps = frozenset(p.partition for p in parts)
        self.events.append(("lost", ps, frozenset(self.owned)))
        self.owned -= ps

    def poll(self, timeout=0.05):
        m = self.c.poll(timeout)
        if m is None:
            return
        if m.error():
            self.errors.append(m.error())
        else:
            self.records.append((m.partition(), m.offset()))

    def first_offsets(self):
        first = {}
        for p, o in self.records:
            first.setdefault(p, o)
        return first

    def close(self):
        if not self.closed:
            self.closed = True
            self.c.close()


class KafkaGroupsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # No initial rebalance delay: each first join completes at once (one test keeps Kafka's
        # default of 3s on a broker of its own).
        cls.broker = Runneld(["--kafka-group-initial-delay", "0s"], name="kafka-groups").start()
        cls.bootstrap = cls.broker.bootstrap

    @classmethod
    def tearDownClass(cls):
        cls.broker.cleanup()

    def setUp(self):
        self.members = []
        self.children = []
        self.admins = []

    def tearDown(self):
        for m in self.members:
            try:
                m.close()
            except Exception:  # noqa: BLE001 (already closed or broken: nothing to keep)
                pass
        for p in self.children:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=60)
        for a in self.admins:
            a.close()

    # ---- helpers ------------------------------------------------------------------------------

    def member(self, group, topic, broker=None, **config):
        m = Member((broker or self.broker).bootstrap, group, topic, **config)
        self.members.append(m)
        return m

    def kafka_admin(self, broker=None):
        from kafka import KafkaAdminClient
        a = KafkaAdminClient(bootstrap_servers=(broker or self.broker).bootstrap)
        self.admins.append(a)
        return a

    def pump(self, members, until, what, timeout=60):
        """Polls `members` in turn until until() holds; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout}s waiting for {what}; " + "; ".join(
                    f"member {i}: owned {sorted(m.owned)}, {len(m.records)} records, events "
                    f"{m.events[-6:]}, errors {m.errors[-3:]}" for i, m in enumerate(members)))
            for m in members:
                m.poll(0.05)

    def describe(self, group, broker=None):
        return (broker or self.broker).ctl("group", "describe", group, json_out=True)

    def describe_if_any(self, group, broker=None):
        """runnelctl's description of `group`; None while it does not exist yet."""
        r = subprocess.run([RUNNELCTL, "--broker", (broker or self.broker).native, "--json",
                            "group", "describe", group], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            self.assertIn("unknown group", r.stderr)
            return None
        return json.loads(r.stdout)

    def stable(self, group, members, broker=None):
        """Whether runnelctl shows `group` Stable with `members` members, every one assigned."""
        d = self.describe_if_any(group, broker)
        return (d is not None and d["state"] == "Stable" and len(d["members"]) == members and
                all(m["partitions"] for m in d["members"]))

    def committed(self, group, topic, partitions, broker=None):
        """The group's committed offsets (OffsetFetch, by a consumer that never joins):
        {partition: offset}, -1001 (librdkafka's INVALID) for none."""
        c = Consumer({"bootstrap.servers": (broker or self.broker).bootstrap, "group.id": group})
        try:
            got = c.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
        finally:
            c.close()
        for tp in got:
            self.assertIsNone(tp.error, tp)
        return {tp.partition: tp.offset for tp in got}

    def create_topic(self, prefix, partitions):
        topic = unique(prefix)
        self.broker.ctl("topic", "create", topic, "--partitions", str(partitions))
        return topic

    def ctl_fails(self, *args):
        r = subprocess.run([RUNNELCTL, "--broker", self.broker.native, *args],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0, f"runnelctl {' '.join(args)} succeeded: {r.stdout}")
        return r.stderr

    # ---- 1. consumer processes, one SIGKILLed ------------------------------------------------

    def test_sigkilled_member_loses_nothing_and_its_partitions_move(self):
        topic = self.create_topic("procs", PARTITIONS)
        group = unique("procs")
        produced = produce(self.bootstrap, topic, PARTITIONS * 200, PARTITIONS)
        work = tempfile.mkdtemp(prefix="groups-procs-", dir=self.broker.dir)
        gofile, stopfile = os.path.join(work, "go"), os.path.join(work, "stop")
        outs = [os.path.join(work, f"member{i}.out") for i in range(3)]
        errs = [open(os.path.join(work, f"member{i}.err"), "wb") for i in range(3)]
        for i in range(3):
            self.children.append(subprocess.Popen(
                [sys.executable, "-W", "ignore", os.path.abspath(__file__), "--member",
                 self.bootstrap, topic, group, outs[i], gofile, stopfile,
                 "30" if i == 0 else "0"], stderr=errs[i]))
        victim = self.children[0]

        def lines(i):
            try:
                with open(outs[i]) as f:
                    return [line.rstrip("\n") for line in f if line.endswith("\n")]
            except FileNotFoundError:
                return []

        def wait(cond, what, timeout=60):
            deadline = time.monotonic() + timeout
            while not cond():
                for i, p in enumerate(self.children):
                    if p.poll() is not None and not (i == 0 and p.returncode == -signal.SIGKILL):
                        self.fail(f"member {i} exited ({p.returncode}) while waiting for {what}: "
                                  + open(errs[i].name, errors="replace").read()[-3000:])
                if time.monotonic() > deadline:
                    self.fail(f"timed out waiting for {what}: {self.describe(group)}")
                time.sleep(0.1)

        # The three join; nothing is consumed until the group is formed (partitions paused).
        wait(lambda: self.stable(group, 3), "a Stable group of three")
        d = self.describe(group)
        owned = sorted(p["partition"] for m in d["members"] for p in m["partitions"])
        self.assertEqual(owned, list(range(PARTITIONS)), d)
        open(gofile, "w").close()

        # The victim consumes 30 records, commits all but its last batch, and is SIGKILLed.
        wait(lambda: "DYING" in lines(0), "the victim's last batch")
        victim.send_signal(signal.SIGKILL)
        self.assertEqual(victim.wait(timeout=30), -signal.SIGKILL)
        victim_lines = lines(0)
        last_commit = max((i for i, line in enumerate(victim_lines) if line == "C"), default=-1)
        uncommitted = {tuple(int(x) for x in line.split())
                       for line in victim_lines[last_commit + 1:] if line[0].isdigit()}
        self.assertTrue(uncommitted, victim_lines[-20:])
        victim_parts = {p for p, _ in uncommitted}

        def consumed(i):
            return {tuple(int(x) for x in line.split()) for line in lines(i) if line[0].isdigit()}

        ends = {p: max(o for q, o in produced if q == p) + 1 for p in range(PARTITIONS)}

        def done():
            union = consumed(0) | consumed(1) | consumed(2)
            return produced <= union and \
                self.committed(group, topic, range(PARTITIONS)) == ends

        # The survivors take the victim's partitions over (after its session timeout) and finish.
        wait(done, "every record consumed and committed to the log end", timeout=120)
        wait(lambda: self.stable(group, 2), "a Stable group of the two survivors")
        d = self.describe(group)
        owned = sorted(p["partition"] for m in d["members"] for p in m["partitions"])
        self.assertEqual(owned, list(range(PARTITIONS)), d)
        open(stopfile, "w").close()
        for i in (1, 2):
            self.assertEqual(self.children[i].wait(timeout=60), 0,
                             open(errs[i].name, errors="replace").read()[-3000:])
            errs[i].close()
        errs[0].close()

        survivors = consumed(1) | consumed(2)
        # What the victim read but never committed was read again by a survivor...
        self.assertEqual(sorted(uncommitted - survivors), [])
        # ... and so was the rest of its partitions: nothing was lost.
        self.assertEqual(sorted(produced - (consumed(0) | survivors))[:20], [])
        self.assertTrue(any(p in victim_parts for p, _ in survivors))
        self.assertEqual(self.committed(group, topic, range(PARTITIONS)), ends)
        # runnelctl agrees: every partition committed at its log end, no lag.
        d = self.describe(group)
        self.assertEqual({p["partition"]: (p["committed"], p["lag"]) for p in d["partitions"]},
                         {p: (ends[p], 0) for p in range(PARTITIONS)})

    # ---- 2. cooperative-sticky ---------------------------------------------------------------

    def test_cooperative_sticky_second_member_under_load_revokes_incrementally(self):
        topic = self.create_topic("coop", PARTITIONS)
        group = unique("coop")
        config = {"partition.assignment.strategy": "cooperative-sticky"}
        produced = set()
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 2})
        n = [0]

        def on_delivery(err, msg):
            self.assertIsNone(err)
            produced.add((msg.partition(), msg.offset()))

        def produce_some(members):
            for m in members:
                m.poll(0.02)
            p.produce(topic, value=f"v{n[0]}".encode(), partition=n[0] % PARTITIONS,
                      on_delivery=on_delivery)
            n[0] += 1
            p.poll(0)

        first = self.member(group, topic, **config)
        deadline = time.monotonic() + 60
        while not (first.owned == set(range(PARTITIONS)) and len(first.records) >= 50):
            self.assertLess(time.monotonic(), deadline, f"first member: {first.events}")
            produce_some([first])
        self.assertEqual(first.events, [("assign", frozenset(range(PARTITIONS)), frozenset())])

        # The second member joins while records keep coming.
        second = self.member(group, topic, **config)
        deadline = time.monotonic() + 60
        while not (first.owned and second.owned and not first.owned & second.owned and
                   first.owned | second.owned == set(range(PARTITIONS)) and
                   self.stable(group, 2)):
            self.assertLess(time.monotonic(), deadline,
                            f"first: {first.events}; second: {second.events}")
            produce_some([first, second])
        mark = len(first.records), len(second.records)
        while len(first.records) - mark[0] < 20 or len(second.records) - mark[1] < 20:
            self.assertLess(time.monotonic(), deadline + 60, "both members consume")
            produce_some([first, second])
        self.assertEqual(p.flush(30), 0)

        # Every record produced was consumed (at least once).
        self.pump([first, second],
                  lambda: produced <= set(first.records) | set(second.records),
                  "every produced record consumed")
        self.assertEqual(first.owned & second.owned, set())
        self.assertEqual(first.owned | second.owned, set(range(PARTITIONS)))
        # Incremental: the first member never lost everything it owned, never lost partitions
        # outright, and the partitions it kept were never revoked.
        self.assertEqual([e for e in first.events if e[0] == "lost"], [])
        revokes = [e for e in first.events if e[0] == "revoke"]
        self.assertTrue(revokes, first.events)  # the second's partitions came from it
        for _, revoked, before in revokes:
            self.assertTrue(revoked < before, f"revoked {set(revoked)} of {set(before)}")
        ever_revoked = set().union(*(r for _, r, _ in revokes))
        self.assertEqual(first.owned & ever_revoked, set(), first.events)
        self.assertEqual(ever_revoked, second.owned)
        # The second member's partitions were the revoked ones, assigned once each.
        self.assertEqual([e for e in second.events if e[0] != "assign"], [])

    # ---- 3. static membership ----------------------------------------------------------------

    def test_static_member_restart_keeps_its_partitions_without_a_rebalance(self):
        topic = self.create_topic("static", PARTITIONS)
        group = unique("static")
        session = {"session.timeout.ms": 15000}
        a = self.member(group, topic, **{"group.instance.id": "instance-a", **session})
        b = self.member(group, topic, **{"group.instance.id": "instance-b", **session})
        # Each has run its last rebalance callback (a's eager revoke of the first generation's
        # partitions included): their partitions are disjoint and cover the topic.
        self.pump([a, b], lambda: a.owned and b.owned and not a.owned & b.owned and
                  a.owned | b.owned == set(range(PARTITIONS)) and self.stable(group, 2),
                  "a Stable group of two static members")
        before = self.describe(group)
        self.assertEqual(sorted(m["instance_id"] for m in before["members"]),
                         ["instance-a", "instance-b"])
        a_events, b_owned = len(a.events), set(b.owned)
        old_b_id = next(m["consumer"] for m in before["members"] if m["instance_id"] == "instance-b")

        # b's process "restarts": librdkafka sends no LeaveGroup for a static member.
        b.close()
        closed_at = time.monotonic()
        b2 = self.member(group, topic, **{"group.instance.id": "instance-b", **session})
        self.pump([a, b2], lambda: b2.owned, "the restarted static member's assignment")
        self.assertEqual(b2.owned, b_owned)
        # Both keep consuming their partitions: records produced now go to their owners.
        mark = len(a.records), len(b2.records)
        produced = produce(self.bootstrap, topic, PARTITIONS * 5, PARTITIONS)
        # Past the old instance's session timeout: had it not been replaced, it would expire and
        # the group would rebalance by now.
        self.pump([a, b2], lambda: produced <= set(a.records[mark[0]:]) | set(b2.records[mark[1]:])
                  and time.monotonic() - closed_at > 16.5, "the records produced after the restart")
        self.assertTrue({p for p, _ in a.records[mark[0]:]} <= a.owned)
        self.assertTrue({p for p, _ in b2.records[mark[1]:]} <= b2.owned)
        self.assertEqual(a.events[a_events:], [], "the other member saw a rebalance")
        self.assertEqual(b2.events, [("assign", frozenset(b_owned), frozenset())])
        after = self.describe(group)
        self.assertEqual(after["state"], "Stable")
        self.assertEqual(after["generation"], before["generation"])
        ids = {m["instance_id"]: m for m in after["members"]}
        self.assertEqual(sorted(ids), ["instance-a", "instance-b"])
        self.assertNotEqual(ids["instance-b"]["consumer"], old_b_id)  # a new member id
        self.assertEqual({p["partition"] for p in ids["instance-b"]["partitions"]}, b_owned)

    # ---- 4. kafka-python -------------------------------------------------------------------

    def test_kafka_python_commit_and_the_next_consumer_resumes_there(self):
        from kafka import KafkaConsumer
        from kafka import TopicPartition as KTP
        from kafka.structs import OffsetAndMetadata
        topic = self.create_topic("kp", 2)
        group = unique("kp")
        produced = produce(self.bootstrap, topic, 40, 2)

        def consumer():
            return KafkaConsumer(topic, bootstrap_servers=self.bootstrap, group_id=group,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 session_timeout_ms=6000, heartbeat_interval_ms=500)

        def poll_until(c, got, cond, what):
            deadline = time.monotonic() + 60
            while not cond():
                self.assertLess(time.monotonic(), deadline, what)
                for recs in c.poll(timeout_ms=200, max_records=4).values():
                    got.extend((r.partition, r.offset) for r in recs)

        c1 = consumer()
        first = []
        try:
            poll_until(c1, first, lambda: len(first) >= 15, "the first consumer's records")
            c1.commit()
            positions = {tp.partition: c1.position(tp) for tp in c1.assignment()}
            self.assertEqual(sorted(positions), [0, 1])
            for p, pos in positions.items():
                self.assertEqual(pos, max([o + 1 for q, o in first if q == p], default=0))
                self.assertEqual(c1.committed(KTP(topic, p)), pos)
        finally:
            c1.close(autocommit=False)
        # kafka-python commits every assigned partition's position, 0 for one not read yet.
        self.assertEqual(self.committed(group, topic, [0, 1]), positions)

        c2 = consumer()
        second = []
        try:
            poll_until(c2, second, lambda: set(first) | set(second) >= produced,
                       "the second consumer's records")
            # It started at the committed offsets: exactly the records after them, once each.
            self.assertEqual(sorted(second), sorted((p, o) for p, o in produced
                                                    if o >= positions[p]))
            # An explicit commit with metadata.
            c2.commit({KTP(topic, 0): OffsetAndMetadata(7, "kafka-python was here")})
        finally:
            c2.close(autocommit=False)
        offsets = self.kafka_admin().list_consumer_group_offsets(group)
        self.assertEqual(offsets[KTP(topic, 0)], OffsetAndMetadata(7, "kafka-python was here"))

    # ---- 5. kcat -G --------------------------------------------------------------------------

    def test_kcat_balanced_consumer_commits_and_resumes(self):
        topic = self.create_topic("kcat", 3)
        group = unique("kcat")
        produced = produce(self.bootstrap, topic, 30, 3)

        def kcat(*args):
            r = subprocess.run(["kcat", "-b", self.bootstrap, "-G", group, topic,
                                "-X", "auto.offset.reset=earliest", "-f", "%p %o\\n", *args],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            return [tuple(int(x) for x in line.split()) for line in r.stdout.splitlines()]

        got = kcat("-e")
        self.assertEqual(sorted(got), sorted(produced))
        self.assertEqual(self.committed(group, topic, [0, 1, 2]), {0: 10, 1: 10, 2: 10})
        more = produce(self.bootstrap, topic, 15, 3, start=30)
        part = kcat("-c", "6")  # exactly 6 records, then exit (committing them)
        self.assertEqual(len(part), 6)
        self.assertTrue(set(part) <= more, part)
        rest = kcat("-e")
        # The three runs together read each record once: each started at the committed offsets.
        self.assertEqual(sorted(got + part + rest), sorted(produced | more))
        self.assertEqual(self.committed(group, topic, [0, 1, 2]), {0: 15, 1: 15, 2: 15})

    # ---- 6. restarts -------------------------------------------------------------------------

    def test_offsets_survive_sigterm_and_sigkill_restarts(self):
        # Kafka's default group.initial.rebalance.delay.ms (3s): every first join waits it out.
        r = Runneld(name="kafka-groups-restart").start()
        self.addCleanup(r.cleanup)
        topic = unique("restart")
        r.ctl("topic", "create", topic, "--partitions", "2")
        group = unique("restart")
        produced = produce(r.bootstrap, topic, 60, 2)

        def commit_and_close(offsets):
            m = self.member(group, topic, broker=r)
            self.pump([m], lambda: m.owned == {0, 1}, "an assignment")
            m.c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                       asynchronous=False)
            m.close()

        def resumes_at(offsets):
            self.assertEqual(self.committed(group, topic, [0, 1], broker=r), offsets)
            m = self.member(group, topic, broker=r)
            self.pump([m], lambda: set(m.records) | {(p, o) for p, o in produced
                                                     if o < offsets[p]} >= produced,
                      "the records after the committed offsets")
            self.assertEqual(m.first_offsets(), offsets)
            self.assertEqual(sorted(set(m.records)),
                             sorted((p, o) for p, o in produced if o >= offsets[p]))
            return m

        commit_and_close({0: 7, 1: 13})
        r.stop(signal.SIGTERM)
        r.start()
        m = resumes_at({0: 7, 1: 13})
        # A member's commit answered just before a SIGKILL is kept too.
        m.c.commit(offsets=[TopicPartition(topic, 0, 21), TopicPartition(topic, 1, 3)],
                   asynchronous=False)
        r.stop(signal.SIGKILL)
        m.close()
        r.start()
        resumes_at({0: 21, 1: 3}).close()

    # ---- 7. runnelctl reset-offsets and delete -----------------------------------------------

    def test_runnelctl_reset_offsets_on_an_empty_kafka_group_and_refusals_while_live(self):
        topic = self.create_topic("reset", 2)
        group = unique("reset")
        produced = produce(self.bootstrap, topic, 40, 2)

        def consume_all_commit_close(start):
            m = self.member(group, topic)
            want = {(p, o) for p, o in produced if o >= start[p]}
            self.pump([m], lambda: set(m.records) >= want, "the records from the start offsets")
            self.assertEqual(m.first_offsets(), start)
            self.assertEqual(sorted(set(m.records)), sorted(want))
            m.c.commit(asynchronous=False)
            m.close()

        consume_all_commit_close({0: 0, 1: 0})
        self.assertEqual(self.committed(group, topic, [0, 1]), {0: 20, 1: 20})
        # The group is empty now: runnelctl moves its offsets.
        out = self.broker.ctl("group", "reset-offsets", group, "--topic", topic, "--to", "earliest")
        self.assertIn("offsets reset", out)
        self.assertEqual(self.committed(group, topic, [0, 1]), {0: 0, 1: 0})
        consume_all_commit_close({0: 0, 1: 0})
        self.broker.ctl("group", "reset-offsets", group, "--topic", topic, "--to", "offset", "12")
        self.assertEqual(self.committed(group, topic, [0, 1]), {0: 12, 1: 12})
        d = self.describe(group)
        self.assertEqual({p["partition"]: (p["committed"], p["lag"]) for p in d["partitions"]},
                         {0: (12, 8), 1: (12, 8)})
        # A live member: reset-offsets and delete are refused, naming the live members.
        m = self.member(group, topic)
        want = {(p, o) for p, o in produced if o >= 12}
        self.pump([m], lambda: set(m.records) >= want and self.stable(group, 1), "a live member")
        self.assertEqual(m.first_offsets(), {0: 12, 1: 12})
        err = self.ctl_fails("group", "reset-offsets", group, "--topic", topic, "--to", "earliest")
        self.assertIn("live kafka members", err)
        err = self.ctl_fails("group", "delete", group)
        self.assertIn("live kafka members", err)
        self.assertEqual(self.committed(group, topic, [0, 1]), {0: 12, 1: 12})
        self.assertIn(group, self.broker.ctl("group", "list"))
        # Once it leaves, delete works: the group and its offsets are gone.
        m.close()
        self.broker.ctl("group", "delete", group)
        self.assertNotIn(group, self.broker.ctl("group", "list"))
        self.assertEqual(self.committed(group, topic, [0, 1]), {0: -1001, 1: -1001})
        # Gone for Kafka's admin too (ListGroups, DescribeGroups), not only natively.
        admin = self.kafka_admin()
        self.assertNotIn(group, [g for g, _ in admin.list_consumer_groups()])
        [info] = admin.describe_consumer_groups([group])
        self.assertEqual((info.error_code, info.state, info.members), (0, "Dead", []))

    # ---- 8. native and Kafka groups refuse each other ----------------------------------------

    def test_native_groups_refuse_kafka_consumers_and_kafka_groups_refuse_native_ones(self):
        from kafka import KafkaConsumer
        from kafka.errors import InconsistentGroupProtocolError
        topic = self.create_topic("mixed", 2)
        self.broker.ctl("produce", topic, "one")
        native = unique("native-stream")
        self.broker.ctl("consume", topic, "--group", native, "-n", "1")  # a native stream group
        natives = [native]
        if os.access(EXAMPLE_CONSUMER, os.X_OK):
            # A native queue group: the example consumer in queue mode joins (and acks) it.
            queue = unique("native-queue")
            ex = subprocess.Popen([EXAMPLE_CONSUMER, self.broker.native, topic, queue, "queue"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.children.append(ex)
            deadline = time.monotonic() + 60
            while not (self.describe_if_any(queue) or {}).get("mode") == "queue":
                self.assertLess(time.monotonic(), deadline, "the native queue group")
                time.sleep(0.1)
            ex.kill()
            ex.wait(timeout=60)
            natives.append(queue)
        else:
            print(f"\n(no {EXAMPLE_CONSUMER}: native queue group not tried)", file=sys.stderr)

        for group in natives:
            with self.subTest(group=group, client="librdkafka"):
                m = self.member(group, topic)
                self.pump([m], lambda: any(e.code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL
                                           for e in m.errors), "INCONSISTENT_GROUP_PROTOCOL")
                self.assertEqual(m.owned, set())
                self.assertEqual(m.records, [])
                m.close()
            with self.subTest(group=group, client="kafka-python"):
                k = KafkaConsumer(topic, bootstrap_servers=self.bootstrap, group_id=group)
                try:
                    with self.assertRaises(InconsistentGroupProtocolError) as e:
                        deadline = time.monotonic() + 60
                        while time.monotonic() < deadline:
                            k.poll(timeout_ms=500)
                    self.assertEqual(e.exception.errno, 23)
                finally:
                    k.close(autocommit=False)
            # The native group is untouched: still native, not listed as a Kafka group.
            d = self.describe(group)
            self.assertNotEqual(d["protocol"], "kafka")
            listed = [g for g, _ in self.kafka_admin().list_consumer_groups()]
            self.assertNotIn(group, listed)

        # The other way round: a Kafka group is refused to runnelctl's native join.
        group = unique("kafka-only")
        m = self.member(group, topic)
        self.pump([m], lambda: m.records and self.stable(group, 1), "a Kafka group")
        err = self.ctl_fails("consume", topic, "--group", group, "-n", "1")
        self.assertIn("Kafka consumer group", err)
        self.assertEqual(self.describe(group)["protocol"], "kafka")
        m.close()
        # Even once it is empty.
        err = self.ctl_fails("consume", topic, "--group", group, "-n", "1")
        self.assertIn("Kafka consumer group", err)

    # ---- 9. a new partition ------------------------------------------------------------------

    def test_create_partitions_rebalances_onto_the_new_partition(self):
        topic = self.create_topic("grow", 2)
        group = unique("grow")
        produced = produce(self.bootstrap, topic, 10, 2)
        m = self.member(group, topic)
        self.pump([m], lambda: m.owned == {0, 1} and set(m.records) >= produced, "two partitions")
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_partitions([NewPartitions(topic, 3)])[topic].result(30)
        self.pump([m], lambda: m.owned == {0, 1, 2}, "the new partition in the assignment")
        self.assertIn(("assign", frozenset({0, 1, 2})), [e[:2] for e in m.events])
        out = self.broker.ctl("produce", topic, "into-the-new-one", "-p", "2")
        self.assertIn(f"{topic}/2@0", out)
        self.pump([m], lambda: (2, 0) in m.records, "the record of the new partition")
        self.pump([m], lambda: self.stable(group, 1), "a Stable group")
        d = self.describe(group)
        self.assertEqual(sorted(p["partition"] for p in d["members"][0]["partitions"]), [0, 1, 2])

    # ---- 10. group admin ---------------------------------------------------------------------

    def test_group_admin_lists_describes_and_deletes(self):
        from kafka import TopicPartition as KTP
        from kafka.errors import NonEmptyGroupError, NoError
        topic = self.create_topic("admin", 2)
        group = unique("admin")
        client_id = unique("admin-client")
        produced = produce(self.bootstrap, topic, 20, 2)
        m = self.member(group, topic, **{"client.id": client_id})
        self.pump([m], lambda: set(m.records) >= produced, "the records")
        m.c.commit(offsets=[TopicPartition(topic, 0, 10), TopicPartition(topic, 1, 4)],
                   asynchronous=False)
        self.pump([m], lambda: self.stable(group, 1), "a Stable group")
        admin = self.kafka_admin()

        self.assertIn((group, "consumer"), admin.list_consumer_groups())
        [info] = admin.describe_consumer_groups([group])
        self.assertEqual(info.error_code, 0)
        self.assertEqual(info.group, group)
        self.assertEqual(info.state, "Stable")
        self.assertEqual(info.protocol_type, "consumer")
        self.assertEqual(info.protocol, "range")  # librdkafka's first choice
        [member] = info.members
        self.assertEqual(member.client_id, client_id)
        self.assertIn("127.0.0.1", member.client_host)
        self.assertTrue(member.member_id.startswith(client_id + "-"), member.member_id)
        self.assertEqual(member.member_metadata.subscription, [topic])
        self.assertEqual([(t, sorted(ps)) for t, ps in member.member_assignment.assignment],
                         [(topic, [0, 1])])
        self.assertEqual(admin.list_consumer_group_offsets(group),
                         {KTP(topic, 0): (10, ""), KTP(topic, 1): (4, "")})

        # runnelctl shows the same live group.
        out = self.broker.ctl("group", "describe", group)
        fields = dict(line.split(":", 1) for line in out.splitlines()[:7] if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        self.assertEqual(fields["Protocol"], "kafka (consumer, assignor range)")
        self.assertEqual(fields["State"], "Stable")
        self.assertEqual(fields["Topic"], topic)
        rows = [line.split() for line in out.splitlines() if line.startswith(topic + " ")]
        self.assertEqual([r[:5] for r in rows],
                         [[topic, "0", "10", "10", "0"], [topic, "1", "4", "10", "6"]])
        for r in rows:
            self.assertEqual(r[5:], [member.member_id, member.client_host, client_id])
        member_rows = [line.split() for line in out.splitlines()
                       if line.startswith(member.member_id)]
        self.assertEqual(member_rows, [[member.member_id, f"{topic}/0,{topic}/1", client_id,
                                        member.client_host, "-"]])
        d = self.describe(group)
        self.assertEqual((d["protocol"], d["state"], d["assignor"], d["lag"]),
                         ("kafka", "Stable", "range", 6))
        self.assertEqual([(x["consumer"], x["client_id"], x["host"]) for x in d["members"]],
                         [(member.member_id, client_id, member.client_host)])

        # DeleteGroups: refused while it has a member, done once it is empty.
        [(gid, err)] = admin.delete_consumer_groups([group])
        self.assertEqual((gid, err), (group, NonEmptyGroupError))
        self.assertIn(group, self.broker.ctl("group", "list"))
        m.close()
        [(gid, err)] = admin.delete_consumer_groups([group])
        self.assertEqual((gid, err), (group, NoError))
        self.assertNotIn(group, self.broker.ctl("group", "list"))
        self.assertNotIn(group, [g for g, _ in admin.list_consumer_groups()])
        [info] = admin.describe_consumer_groups([group])
        self.assertEqual((info.error_code, info.state, info.members), (0, "Dead", []))
        self.assertEqual(self.committed(group, topic, [0, 1]), {0: -1001, 1: -1001})


if __name__ == "__main__":
    unittest.main(verbosity=2)
