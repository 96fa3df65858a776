"""runneld as a child process for the Kafka client tests: its own data directory, free ports
(the Kafka listener on `--kafka-port any`, reused on restarts), always stopped."""
import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

RUNNELD = os.environ.get("RUNNELD", "build/broker/runneld")
RUNNELCTL = os.environ.get("RUNNELCTL", "build/tools/runnelctl")

_live = []


@atexit.register
def _stop_all():
    for r in list(_live):
        r.stop(signal.SIGKILL)


class Runneld:
    def __init__(self, extra_args=(), name="runneld"):
        self.dir = tempfile.mkdtemp(prefix=f"runnel-{name}-")
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = 0
        self.kafka_port = 0

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def native(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=20):
        ready = os.path.join(self.dir, "ready.json")
        if os.path.exists(ready):
            os.unlink(ready)
        args = [RUNNELD, "--data-dir", os.path.join(self.dir, "data"), "--port", str(self.port),
                "--kafka-port", str(self.kafka_port) if self.kafka_port else "any",
                "--no-http", "--ready-file", ready, "--log-level", "warn", *self.extra_args]
        log = open(os.path.join(self.dir, "runneld.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        _live.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(ready):
                info = json.load(open(ready))
                self.port, self.kafka_port = info["port"], info["kafka_port"]
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"runneld exited ({self.proc.returncode}): {self.log()}")
            time.sleep(0.01)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"runneld did not start: {self.log()}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None
        if self in _live:
            _live.remove(self)

    def log(self):
        try:
            return open(os.path.join(self.dir, "runneld.log")).read()[-4000:]
        except OSError:
            return ""

    def ctl(self, *args, check=True, json_out=False, token=None, stdin=None):
        cmd = [RUNNELCTL, "--broker", self.native]
        if token:
            cmd += ["--token", token]
        if json_out:
            cmd.append("--json")
        r = subprocess.run(cmd + list(args), capture_output=True, text=True, input=stdin,
                           timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError(f"runnelctl {' '.join(args)} failed: {r.stderr}")
        return json.loads(r.stdout) if json_out else r.stdout

    def cleanup(self):
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
