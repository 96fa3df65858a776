#!/usr/bin/python3
"""Kafka consumer-group failover on runneld: how long after a member is SIGKILLed its partitions
are consumed by another member.

Starts runneld (RUNNELD, default build/broker/runneld) with a Kafka listener, creates a topic,
produces continuously, and runs two confluent-kafka (librdkafka) consumer processes in one group.
Once both consume, one is SIGKILLed; the time runs from the kill to the moment the survivor has
received a record from every partition the killed member owned. Repeated --rounds times (a new
group each round); prints each round and the median, or JSON with --json.

The classic protocol bounds it: the coordinator notices the silence after session.timeout.ms, and
the survivor learns of the rebalance at its next heartbeat (heartbeat.interval.ms), then rejoins.

Usage: bench/kafka_group_failover.py [--session-timeout-ms 6000] [--heartbeat-ms 1000]
       [--rounds 3] [--partitions 4] [--json]
Needs Debian's python3-confluent-kafka (run with /usr/bin/python3)."""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CONSUMER = r"""
import sys, time
from confluent_kafka import Consumer
bootstrap, group, topic, session, heartbeat = sys.argv[1:6]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "latest",
              "session.timeout.ms": int(session), "heartbeat.interval.ms": int(heartbeat),
              "enable.auto.commit": True, "auto.commit.interval.ms": 200})
c.subscribe([topic])
while True:
    m = c.poll(0.1)
    if m is None or m.error():
        continue
    print(f"{m.partition()} {time.monotonic():.6f}", flush=True)
"""


def start_runneld(workdir):
    runneld = os.environ.get("RUNNELD", "build/broker/runneld")
    ready = os.path.join(workdir, "ready.json")
    log = open(os.path.join(workdir, "runneld.log"), "ab")
    proc = subprocess.Popen(
        [runneld, "--data-dir", os.path.join(workdir, "data"), "--port", "0", "--kafka-port", "any",
         "--no-http", "--ready-file", ready, "--log-level", "warn",
         "--kafka-group-initial-delay", "0s"], stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while not os.path.exists(ready):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("runneld did not start")
        time.sleep(0.01)
    time.sleep(0.05)
    return proc, json.load(open(ready))["kafka_port"]


class Member:
    """One consumer process; remembers when it last received from each partition."""

    def __init__(self, bootstrap, group, topic, args):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CONSUMER, bootstrap, group, topic,
             str(args.session_timeout_ms), str(args.heartbeat_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.last = {}  # partition -> monotonic time of the latest record
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            p, t = line.split()
            with self.lock:
                self.last[int(p)] = float(t)

    def partitions_since(self, t0):
        with self.lock:
            return {p for p, t in self.last.items() if t >= t0}

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def one_round(bootstrap, topic, rnd, args):
    group = f"failover-{os.getpid()}-{rnd}"
    a = Member(bootstrap, group, topic, args)
    b = Member(bootstrap, group, topic, args)
    try:
        # Both members consume, and between them every partition.
        deadline = time.monotonic() + 60
        while True:
            now = time.monotonic()
            pa, pb = a.partitions_since(now - 1), b.partitions_since(now - 1)
            if pa and pb and len(pa | pb) == args.partitions and not (pa & pb):
                break
            if now > deadline:
                raise RuntimeError("the group did not settle")
            time.sleep(0.1)
        owned = a.partitions_since(time.monotonic() - 1)
        t0 = time.monotonic()
        a.kill()
        deadline = t0 + args.session_timeout_ms / 1000 + 60
        while not owned <= b.partitions_since(t0):
            if time.monotonic() > deadline:
                raise RuntimeError("the survivor never took over")
            time.sleep(0.005)
        with b.lock:
            done = max(b.last[p] for p in owned)
        return (done - t0) * 1000
    finally:
        a.kill()
        b.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    ap.add_argument("--heartbeat-ms", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rate", type=int, default=2000, help="records/s produced meanwhile")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    workdir = tempfile.mkdtemp(prefix="runnel-failover-")
    proc, port = start_runneld(workdir)
    bootstrap = f"127.0.0.1:{port}"
    stop = threading.Event()
    try:
        topic = "failover"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result()

        def produce():
            p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
            i = 0
            while not stop.is_set():
                for _ in range(max(1, args.rate // 100)):
                    p.produce(topic, value=b"x", partition=i % args.partitions)
                    i += 1
                p.poll(0)
                time.sleep(0.01)
            p.flush(10)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        try:
            rounds = [one_round(bootstrap, topic, r, args) for r in range(args.rounds)]
        finally:
            stop.set()
            producer.join(timeout=15)
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    median = statistics.median(rounds)
    if args.json:
        print(json.dumps({"session_timeout_ms": args.session_timeout_ms,
                          "heartbeat_interval_ms": args.heartbeat_ms, "rounds_ms": rounds,
                          "median_ms": median,
                          "over_session_timeout_ms": median - args.session_timeout_ms}))
        return
    print(f"session.timeout.ms {args.session_timeout_ms}, heartbeat.interval.ms {args.heartbeat_ms}")
    for i, ms in enumerate(rounds):
        print(f"round {i + 1}: kill -> partitions consumed by the survivor {ms:8.0f} ms")
    print(f"median {median:.0f} ms = session timeout + {median - args.session_timeout_ms:.0f} ms")


if __name__ == "__main__":
    main()
