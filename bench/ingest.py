#!/usr/bin/python3
"""Ingest benchmark: QoS 1 messages/s into gridbridged's journal against a
plain mosquitto_sub writing to a file, through the same private broker.

    /usr/bin/python3 bench/ingest.py [-n 50000] [--repeat 3]
                                     [--windows 20,1000,20:rm1000]

For every window setting (W: mosquitto `max_inflight_messages W` with MQTT
3.1.1 subscribers; W:rmR: the same broker, subscribers on MQTT 5 with
Receive Maximum R; the broker always has `max_queued_messages 0`) and every
repetition, two runs, each against a freshly started private broker on
127.0.0.1:

  baseline     mosquitto_sub -q 1 -c -i bench-baseline -t 'sac/#' > FILE
               done when FILE has N lines
  gridbridged  gridbridged -c FILE with the journal (fsync group commit)
               done when the journal holds N records (its size is watched,
               `gridbridgectl -d STATE/journal journal stat` confirms
               `records N`)

In both, bench/loadgen (QoS 1, built with the project) publishes N device
events once the subscriber has subscribed; the rate is N / (time from the
first PUBLISH until all N were there, seen within 5 ms). The table gives
every run, the medians and the ratio gridbridged / baseline (target >= 0.70).

Everything runs in a temporary directory that is removed at the end (keep it
with --keep); every process started here is stopped, also on Ctrl-C, and
every wait is bounded (--timeout per run).

--profile strace|perf adds one untimed gridbridged run per window with
`strace -c -f` or `perf stat` attached to the daemon, to see where its time
goes. --sync-delay-ms adds a delay to each of the daemon's fdatasync calls
(bench/fsync_shim.c, LD_PRELOAD) to stand in for a slower disk. See
bench/README.md.

Standard library only; run with Debian's /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"
HOST = "127.0.0.1"
TARGET = 0.70

# Process groups started here, killed at exit whatever happens.
_live: dict[int, subprocess.Popen] = {}


def _spawn(argv, **kw) -> subprocess.Popen:
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
    _live[p.pid] = p
    return p


def _stop(p: subprocess.Popen | None, sig=signal.SIGTERM, timeout=10.0) -> int | None:
    """Signal the process, wait, SIGKILL its group if it hangs."""
    if p is None:
        return None
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    p.wait()
    _live.pop(p.pid, None)
    return p.returncode


@atexit.register
def _kill_all() -> None:
    for p in list(_live.values()):
        try:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
        except Exception:
            pass
    _live.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, alive) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"({path}: {e.strerror})"


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpu_busy(seconds: float = 0.5) -> float:
    """Fraction of all CPUs not idle over the next `seconds` (from /proc/stat)."""
    def sample():
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(f), f[3] + f[4]  # total, idle + iowait
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / (t1 - t0) if t1 > t0 else 0.0


def fdatasync_ms(directory: Path, rounds: int = 200) -> float:
    """Mean time of a 16 KiB append + fdatasync in directory: what one group
    commit costs on this file system, at least."""
    path = directory / "fdatasync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        block = b"x" * 16384
        t0 = time.monotonic()
        for _ in range(rounds):
            os.write(fd, block)
            os.fdatasync(fd)
        return (time.monotonic() - t0) / rounds * 1000
    finally:
        os.close(fd)
        path.unlink()


def wait_quiet(limit: float, timeout: float) -> float:
    """Wait (up to timeout) until other processes use less than `limit` of the
    CPUs; returns the last busy fraction seen. Runs share 2 cores with
    whatever else the machine does, so a build or test running elsewhere
    would decide the figures."""
    deadline = time.monotonic() + timeout
    busy = cpu_busy()
    while busy > limit and time.monotonic() < deadline:
        busy = cpu_busy(1.0)
    return busy


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------
# the broker


class Broker:
    """A private mosquitto on 127.0.0.1:<free port>, persistence off.

    Not tests/integration/services.py's Mosquitto: that one saves its
    persistence file after every change (autosave_on_changes, interval 1),
    which would make the broker's own disk writes the bottleneck, and it
    takes no extra settings. Here the broker keeps everything in memory, so
    the only fsyncs measured are gridbridged's.
    """

    def __init__(self, directory: Path, inflight: int):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = self.dir / "mosquitto.log"
        self.conf = self.dir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
            "persistence false",
            # Messages the broker may send a subscriber before its PUBACKs.
            f"max_inflight_messages {inflight}",
            # No limit on the queue behind the window: the publisher is far
            # faster than any QoS 1 subscriber, and with the default (1000)
            # the broker would drop what does not fit.
            "max_queued_messages 0",
            f"log_dest file {self.log}",
            "log_type error", "log_type warning", "log_type notice",
            "log_type information", "log_type subscribe",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Broker":
        with open(self.dir / "mosquitto.stderr", "ab") as err:
            self.proc = _spawn([MOSQUITTO, "-c", str(self.conf)], stdout=err, stderr=err)
        if not wait_port(self.port, 10, lambda: self.proc.poll() is None):
            _stop(self.proc)
            raise BenchError(f"mosquitto did not start on port {self.port}:\n{tail(self.log)}")
        return self

    def wait_subscribed(self, client_id: str, topic: str, timeout: float) -> None:
        pat = re.compile(rf": {re.escape(client_id)} \d {re.escape(topic)}$", re.M)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if pat.search(self.log.read_text(errors="replace")):
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise BenchError(f"{client_id} did not subscribe to {topic} within {timeout}s:\n"
                         f"{tail(self.log)}")

    def stop(self) -> None:
        _stop(self.proc)


# --------------------------------------------------------------------------
# the two subscribers


class Baseline:
    name = "baseline"
    client_id = "bench-baseline"

    def __init__(self, directory: Path, broker: Broker, args):
        self.dir, self.broker, self.args = directory, broker, args
        self.out = directory / "baseline.out"
        self.proc: subprocess.Popen | None = None
        self._fh = None
        self._seen = 0

    def start(self, receive_maximum: int | None) -> None:
        argv = [MOSQUITTO_SUB, "-h", HOST, "-p", str(self.broker.port),
                "-q", "1", "-c", "-i", self.client_id, "-t", "sac/#"]
        if receive_maximum is not None:
            # MQTT 5; -c gives a session that does not expire.
            argv += ["-V", "5", "-D", "connect", "receive-maximum", str(receive_maximum)]
        with open(self.out, "wb") as out, open(self.dir / "baseline.stderr", "wb") as err:
            self.proc = _spawn(argv, stdout=out, stderr=err)
        self.broker.wait_subscribed(self.client_id, "sac/#", 10)
        self._fh = open(self.out, "rb")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def count(self) -> int:
        """Lines in the output file so far (reads only what was appended)."""
        while True:
            chunk = self._fh.read(1 << 20)
            if not chunk:
                return self._seen
            self._seen += chunk.count(b"\n")

    def done(self, n: int, now: float) -> float | None:
        return now if self.count() >= n else None

    def progress(self) -> int:
        return self.count()

    def verify(self, n: int) -> str:
        """Every seq 0..n-1 exactly once?"""
        seqs = [int(m) for m in re.findall(rb'"seq": (\d+)\}\n', self.out.read_bytes())]
        if len(seqs) == n and len(set(seqs)) == n and min(seqs) == 0 and max(seqs) == n - 1:
            return "ok"
        return f"{len(seqs)} lines, {len(set(seqs))} distinct seq"

    def stop(self) -> None:
        if self._fh:
            self._fh.close()
        _stop(self.proc)

    def why_dead(self) -> str:
        return f"mosquitto_sub exited with {self.proc.poll()}: " + tail(self.dir / "baseline.stderr")


class Gridbridged:
    name = "gridbridged"
    client_id = "bench-gridbridge"

    def __init__(self, directory: Path, broker: Broker, args):
        self.dir, self.broker, self.args = directory, broker, args
        self.state = directory / "state"
        self.journal = self.state / "journal"
        self.log = directory / "gridbridged.log"
        self.conf = directory / "gridbridge.conf"
        self.sync_stats = directory / "syncs.txt"
        self.proc: subprocess.Popen | None = None
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self.last_stat: dict[str, str] = {}

    def _write_conf(self, receive_maximum: int | None) -> None:
        def lines(kvs):
            return "".join(f"{kv.split('=', 1)[0].strip()} = {kv.split('=', 1)[1].strip()}\n"
                           for kv in kvs)
        mqtt = list(self.args.mqtt)
        if receive_maximum is not None:
            mqtt = ["protocol = 5", f"receive_maximum = {receive_maximum}"] + mqtt
        journal = lines(self.args.journal)
        self.conf.write_text(
            "# written by bench/ingest.py\n"
            "[daemon]\n"
            f"state_dir = {self.state}\n"
            "log_level = info\n"
            "\n[mqtt]\n"
            f"host = {HOST}\n"
            f"port = {self.broker.port}\n"
            f"client_id = {self.client_id}\n"
            "subscribe = sac/#\n"
            + lines(mqtt)
            + ("\n[journal]\n" + journal if journal else "")
            + "\n[store]\n"
            "# nothing listens here: the daemon retries the database in the\n"
            "# background, which does not matter for ingest\n"
            f"host = {HOST}\n"
            f"port = {free_port()}\n"
            "connect_timeout = 1\n")

    def _read_stderr(self) -> None:
        with open(self.log, "a") as log:
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                log.write(line + "\n")
                with self._cond:
                    self._lines.append(line)
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def start(self, receive_maximum: int | None) -> None:
        self._write_conf(receive_maximum)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("NOTIFY_SOCKET", "WATCHDOG_", "LISTEN_"))}
        if self.args.shim:
            env["LD_PRELOAD"] = str(self.args.build / "bench" / "libfsync_shim.so")
            env["GRIDBRIDGE_BENCH_SYNC_DELAY_US"] = str(int(self.args.sync_delay_ms * 1000))
            env["GRIDBRIDGE_BENCH_SYNC_STATS"] = str(self.sync_stats)
        self.proc = _spawn([str(self.args.build / "gridbridged"), "-c", str(self.conf)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                           cwd=self.dir)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 15
        with self._cond:
            while not any('msg="subscribed"' in ln for ln in self._lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise BenchError('gridbridged did not log msg="subscribed" within 15 s '
                                     f"(exit status {self.proc.poll()}):\n"
                                     + "\n".join(self._lines[-20:]))
                self._cond.wait(min(left, 0.1))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stat(self) -> dict[str, str]:
        try:
            r = subprocess.run([str(self.args.build / "gridbridgectl"), "-d",
                                str(self.journal), "journal", "stat"],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return {}  # e.g. the binary is being rebuilt: count as not yet
        if r.returncode != 0:
            return {}
        kv = {}
        for line in r.stdout.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2:
                kv[parts[0]] = parts[1].strip()
        return kv

    def count(self) -> int:
        kv = self.stat()
        if kv:
            self.last_stat = kv
        try:
            return int(kv.get("records", "0"))
        except ValueError:
            return 0

    def journal_bytes(self) -> int:
        total = 0
        try:
            with os.scandir(self.journal) as it:
                for e in it:
                    try:
                        total += e.stat().st_size
                    except OSError:
                        pass
        except OSError:
            pass
        return total

    # `journal stat` reads the whole journal (about 150 ms of CPU for 50,000
    # records here): polled every 5 ms it would take a core from the daemon
    # and blur the end by its own run time. Instead the journal's size is
    # watched (a stat() per file), and `journal stat` runs only once the
    # size has stayed the same for QUIET seconds. The end is the moment the
    # size reached its last value: the last group's write, which the
    # daemon's fdatasync follows at once.
    QUIET = 0.1

    def done(self, n: int, now: float) -> float | None:
        size = self.journal_bytes()
        if size != getattr(self, "_size", None):
            self._size, self._size_at = size, now
            return None
        if size == 0 or now - self._size_at < self.QUIET \
                or size == getattr(self, "_size_checked", None):
            return None
        self._size_checked = size
        return self._size_at if self.count() >= n else None

    def progress(self) -> int:
        return self.count()

    def verify(self, n: int) -> str:
        """Every seq 0..n-1 exactly once in the journal (journal dump)?"""
        time.sleep(0.3)  # a duplicate arriving late would show too
        r = subprocess.run([str(self.args.build / "gridbridgectl"), "-d", str(self.journal),
                            "journal", "dump"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60)
        if r.returncode != 0:
            return f"journal dump failed ({r.returncode})"
        seqs = [int(m) for m in re.findall(rb'\\"seq\\": (\d+)\}"', r.stdout)]
        if len(seqs) == n and len(set(seqs)) == n and min(seqs) == 0 and max(seqs) == n - 1:
            return "ok"
        return f"{len(seqs)} records, {len(set(seqs))} distinct seq"

    def stop(self) -> None:
        status = _stop(self.proc)
        if self._reader:
            self._reader.join(5)
        if status not in (0, None) and self.args.verbose:
            print(f"  gridbridged exited with {status}", file=sys.stderr)

    def syncs(self) -> int | None:
        """fdatasync calls over the process's life (after stop(); needs the shim)."""
        try:
            m = re.search(r"^fdatasync (\d+)$", self.sync_stats.read_text(), re.M)
        except OSError:
            return None
        return int(m.group(1)) if m else None

    def why_dead(self) -> str:
        return (f"gridbridged exited with {self.proc.poll()}:\n"
                + "\n".join(self._lines[-20:]))


# --------------------------------------------------------------------------
# one run


POLL = 0.005  # seconds between two looks at the subscriber's output


def wait_all(sub, n: int, timeout: float) -> float:
    """Poll sub.done(n, now) every 5 ms until it gives the time at which all
    n messages were there; bounded by timeout."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        t_done = sub.done(n, now)
        if t_done is not None:
            return t_done
        if now > deadline:
            raise BenchError(f"{sub.name}: {sub.progress()} of {n} messages after "
                             f"{timeout:.0f} s")
        if not sub.alive():
            raise BenchError(sub.why_dead())
        time.sleep(POLL)


PROFILERS = {
    "strace": lambda pid, out: ["strace", "-c", "-f", "-o", str(out), "-p", str(pid)],
    "perf": lambda pid, out: ["perf", "stat", "-d", "-o", str(out), "-p", str(pid)],
}


def run_once(kind, cfg: "Config", args, workdir: Path, label: str,
             profile: str | None = None) -> dict:
    d = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=workdir))
    broker = Broker(d / "broker", cfg.inflight).start()
    sub = kind(d, broker, args)
    prof = lg = None
    try:
        sub.start(cfg.receive_maximum)
        if profile:
            prof_out = d / f"{profile}.txt"
            with open(d / "profiler.stderr", "wb") as err:
                prof = _spawn(PROFILERS[profile](sub.pid, prof_out),
                              stdout=subprocess.DEVNULL, stderr=err)
            time.sleep(0.5)  # let it attach
        sub_cpu0 = cpu_seconds(sub.pid) or 0.0
        broker_cpu0 = cpu_seconds(broker.proc.pid) or 0.0
        lg_err = d / "loadgen.stderr"
        with open(d / "loadgen.stdout", "wb") as out, open(lg_err, "wb") as err:
            lg = _spawn([str(args.build / "bench" / "loadgen"), "-h", HOST,
                         "-p", str(broker.port), "-n", str(args.count), "-q", "1",
                         "-c", str(args.clients), "-w", str(args.loadgen_window),
                         "-s", str(args.seed), "-i", "bench-pub",
                         "-t", str(args.timeout)],
                        stdout=out, stderr=err)
        t_spawn = time.monotonic()
        t_done = wait_all(sub, args.count, args.timeout)
        sub_cpu = (cpu_seconds(sub.pid) or 0.0) - sub_cpu0
        broker_cpu = (cpu_seconds(broker.proc.pid) or 0.0) - broker_cpu0
        try:
            lg.wait(max(1.0, args.timeout - (time.monotonic() - t_spawn)))
        except subprocess.TimeoutExpired:
            pass
        lg_status = _stop(lg)
        summary = (d / "loadgen.stdout").read_text().strip()
        m = re.search(r"start monotonic=([\d.]+)", lg_err.read_text())
        if lg_status != 0 or not m:
            raise BenchError(f"loadgen failed ({lg_status}): {summary}\n{tail(lg_err)}")
        t_start = float(m.group(1))
        pub = re.search(r"rate=(\d+)", summary)
        pub_cpu = re.search(r"cpu=([\d.]+)", summary)
        result = {
            "rate": args.count / (t_done - t_start),
            "seconds": t_done - t_start,
            "pub_rate": int(pub.group(1)) if pub else 0,
            "sub_cpu": sub_cpu,
            "broker_cpu": broker_cpu,
            "pub_cpu": float(pub_cpu.group(1)) if pub_cpu else 0.0,
            "check": sub.verify(args.count),
            "stat": dict(getattr(sub, "last_stat", {})),
            "dir": d,
        }
        if prof is not None:
            _stop(prof, sig=signal.SIGINT)
            prof = None
            time.sleep(0.2)
            result["profile"] = (d / f"{profile}.txt").read_text(errors="replace")
        sub.stop()
        result["syncs"] = sub.syncs() if hasattr(sub, "syncs") else None
        return result
    finally:
        if prof is not None:
            _stop(prof, sig=signal.SIGINT)
        _stop(lg)
        sub.stop()
        broker.stop()
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------
# main


def build_ok(args) -> tuple[bool, str]:
    if not (args.build / "bench" / "loadgen").is_file():
        return False, f"{args.build}/bench/loadgen missing: meson compile -C {args.build}"
    return True, ""


def daemon_ok(args) -> tuple[bool, str]:
    for exe in ("gridbridged", "gridbridgectl"):
        if not os.access(args.build / exe, os.X_OK):
            return False, f"{args.build}/{exe} not built"
    if args.shim and not (args.build / "bench" / "libfsync_shim.so").is_file():
        return False, f"{args.build}/bench/libfsync_shim.so not built"
    return True, ""


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


class Config:
    """One broker/subscriber window setting.

    "W"       broker max_inflight_messages W, subscribers on MQTT 3.1.1
    "W:rmR"   broker max_inflight_messages W, subscribers on MQTT 5 with
              Receive Maximum R in their CONNECT (mosquitto then uses R, not
              W, as the window towards that client)
    """

    def __init__(self, spec: str):
        m = re.fullmatch(r"(\d+)(?::rm(\d+))?", spec.strip())
        if not m:
            raise ValueError(f"bad window spec {spec!r}: expected W or W:rmR")
        self.label = spec.strip()
        self.inflight = int(m.group(1))
        self.receive_maximum = int(m.group(2)) if m.group(2) else None

    @property
    def window(self) -> int:
        """Unacknowledged messages the broker should send the subscriber."""
        return self.receive_maximum if self.receive_maximum is not None else self.inflight

    def describe(self) -> str:
        if self.receive_maximum is None:
            return f"max_inflight_messages {self.inflight}, MQTT 3.1.1"
        return (f"max_inflight_messages {self.inflight}, MQTT 5 "
                f"Receive Maximum {self.receive_maximum}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--count", type=int, default=50000, help="messages per run (50000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration (3)")
    ap.add_argument("--windows", default="20,1000,20:rm1000",
                    help="window settings, comma-separated: W = broker "
                         "max_inflight_messages W (MQTT 3.1.1 subscribers); W:rmR = "
                         "the same broker, subscribers on MQTT 5 with Receive Maximum R "
                         "(default 20,1000,20:rm1000)")
    ap.add_argument("--only", choices=("both", "baseline", "daemon"), default="both")
    ap.add_argument("--build", type=Path, default=REPO / "build", help="build directory")
    ap.add_argument("--clients", type=int, default=1, help="loadgen connections (1)")
    ap.add_argument("--loadgen-window", type=int, default=100,
                    help="loadgen PUBLISHes awaiting PUBACK per connection (100)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=120, help="seconds per run (120)")
    ap.add_argument("--journal", action="append", default=[], metavar="KEY=VALUE",
                    help="a [journal] setting for gridbridged (repeatable; default: none)")
    ap.add_argument("--mqtt", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra [mqtt] setting for gridbridged (repeatable)")
    ap.add_argument("--sync-delay-ms", type=float, default=0,
                    help="add this to every fdatasync/fsync of gridbridged, to stand in "
                         "for a slower disk (LD_PRELOAD bench/fsync_shim.c; default 0)")
    ap.add_argument("--no-shim", dest="shim", action="store_false",
                    help="do not preload the shim (no msg/fdatasync figure)")
    ap.add_argument("--profile", choices=sorted(PROFILERS),
                    help="one extra untimed gridbridged run per window with this attached")
    ap.add_argument("--quiet", type=float, default=0.15,
                    help="before each run, wait until the CPUs are less busy than this "
                         "fraction (0.15)")
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="seconds to wait for that before running anyway (60)")
    ap.add_argument("--workdir", type=Path, default=None, help="parent of the temporary dirs")
    ap.add_argument("--keep", action="store_true", help="keep the run directories")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    args.build = args.build.resolve()
    try:
        configs = [Config(w) for w in args.windows.split(",") if w.strip()]
    except ValueError as e:
        ap.error(str(e))
    for kv in args.journal + args.mqtt:
        if "=" not in kv:
            ap.error(f"{kv}: expected KEY=VALUE")
    if args.count < 1 or args.repeat < 1:
        ap.error("count and repeat must be positive")

    ok, why = build_ok(args)
    if not ok:
        print(why, file=sys.stderr)
        return 1
    kinds = []
    if args.only in ("both", "baseline"):
        kinds.append(Baseline)
    if args.only in ("both", "daemon"):
        ok, why = daemon_ok(args)
        if ok:
            kinds.append(Gridbridged)
        elif args.only == "daemon":
            print(why, file=sys.stderr)
            return 1
        else:
            print(f"note: {why}; running the baseline only", file=sys.stderr)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="gridbridge-bench-", dir=args.workdir))
    results: dict[tuple[str, str], list[dict | None]] = {}
    failures = 0
    print(f"ingest: {args.count} messages per run, QoS 1, {args.clients} publisher "
          f"connection(s), {args.repeat} runs per configuration, broker "
          f"max_queued_messages 0, {os.cpu_count()} CPUs", flush=True)
    for cfg in configs:
        print(f"  window {cfg.label}: {cfg.describe()}")
    if args.sync_delay_ms and Gridbridged in kinds:
        print(f"  gridbridged's fdatasync/fsync slowed by {args.sync_delay_ms:g} ms each "
              f"(fsync_shim)")
    print(f"  16 KiB append + fdatasync in {workdir}: {fdatasync_ms(workdir):.2f} ms; "
          f"load average {loadavg()}", flush=True)
    t_all = time.monotonic()
    try:
        # Interleaved (run 1 of everything, then run 2, ...) so that a
        # slow phase of the machine hits every configuration alike.
        for rep in range(1, args.repeat + 1):
            for cfg in configs:
                for kind in kinds:
                    tag = f"{kind.name}-w{cfg.label.replace(':', '-')}-{rep}"
                    # Write back the previous runs' files first (the baseline's
                    # output is never synced), so no run pays for another's.
                    os.sync()
                    busy = wait_quiet(args.quiet, args.quiet_wait)
                    try:
                        r = run_once(kind, cfg, args, workdir, tag)
                    except (BenchError, OSError, subprocess.SubprocessError) as e:
                        failures += 1
                        print(f"  run {rep} window {cfg.label} {kind.name}: FAILED: {e}",
                              file=sys.stderr, flush=True)
                        r = None
                    if r is not None:
                        r["busy"] = busy
                    results.setdefault((kind.name, cfg.label), []).append(r)
                    if r is not None:
                        print(f"  run {rep} window {cfg.label:>9} {kind.name:<12}"
                              f"{r['rate']:>8,.0f} msg/s {r['seconds']:6.2f} s  "
                              f"publisher {r['pub_rate']:>6,} msg/s  cpu: "
                              f"{kind.name} {r['sub_cpu']:.2f} s, broker "
                              f"{r['broker_cpu']:.2f} s, loadgen {r['pub_cpu']:.2f} s  "
                              f"check {r['check']}"
                              + (f"  {args.count / r['syncs']:.0f} msg/fdatasync"
                                 if r.get("syncs") else "")
                              + ("  (more than the window: the broker exceeded it)"
                                 if r.get("syncs") and args.count / r["syncs"] > cfg.window
                                 else "")
                              + (f"  (machine {busy:.0%} busy before the run)"
                                 if busy > args.quiet else ""), flush=True)
                        if args.verbose and r["stat"]:
                            print("    journal stat: " + " ".join(
                                f"{k}={v}" for k, v in r["stat"].items() if k != "dir"))
        if args.profile and Gridbridged in kinds:
            for cfg in configs:
                try:
                    r = run_once(Gridbridged, cfg, args, workdir,
                                 f"profile-w{cfg.label.replace(':', '-')}", args.profile)
                except (BenchError, OSError, subprocess.SubprocessError) as e:
                    failures += 1
                    print(f"  profile window {cfg.label}: FAILED: {e}", file=sys.stderr)
                    continue
                print(f"\n--- {args.profile} on gridbridged, window {cfg.label} "
                      f"(untimed: {r['rate']:,.0f} msg/s with the profiler attached)")
                text = r.get("profile", "").rstrip()
                print(text)
                m = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?fdatasync$",
                              text, re.M)
                if m:
                    print(f"messages per fdatasync: {args.count / int(m.group(1)):.1f}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        failures += 1
    finally:
        _kill_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"run directories kept in {workdir}")

    def rates(name, label):
        return [r["rate"] for r in results.get((name, label), []) if r is not None]

    def median(xs):
        return statistics.median(xs) if xs else None

    print()
    def group(r):
        return f"{args.count / r['syncs']:.0f}" if r and r.get("syncs") else "-"

    print("| window | run | baseline msg/s | gridbridged msg/s | ratio | msg/fdatasync |")
    print("|---|---|---|---|---|---|")
    for cfg in configs:
        b_all = results.get(("baseline", cfg.label), [])
        g_all = results.get(("gridbridged", cfg.label), [])
        for i in range(args.repeat):
            b = b_all[i]["rate"] if i < len(b_all) and b_all[i] else None
            g = g_all[i]["rate"] if i < len(g_all) and g_all[i] else None
            ratio = f"{g / b:.2f}" if b and g else "-"
            gr = group(g_all[i]) if i < len(g_all) else "-"
            print(f"| {cfg.label} | {i + 1} | {fmt_rate(b)} | {fmt_rate(g)} | {ratio} | {gr} |")
        bm, gm = median(rates("baseline", cfg.label)), median(rates("gridbridged", cfg.label))
        ratio = f"**{gm / bm:.2f}**" if bm and gm else "-"
        groups = [args.count / r["syncs"] for r in g_all if r and r.get("syncs")]
        gr = f"{median(groups):.0f}" if groups else "-"
        print(f"| {cfg.label} | median | {fmt_rate(bm)} | {fmt_rate(gm)} | {ratio} | {gr} |")

    print()
    for cfg in configs:
        bm, gm = median(rates("baseline", cfg.label)), median(rates("gridbridged", cfg.label))
        if bm and gm:
            verdict = "meets" if gm / bm >= TARGET else "BELOW"
            print(f"window {cfg.label}: gridbridged / baseline = {gm / bm:.2f} "
                  f"({verdict} the {TARGET:.0%} target)")
    first = configs[0]
    for cfg in configs[1:]:
        for name in ("baseline", "gridbridged"):
            a, b = median(rates(name, first.label)), median(rates(name, cfg.label))
            if a and b:
                print(f"{name}: window {cfg.label} / window {first.label} = {b / a:.2f}")
    print(f"total {time.monotonic() - t_all:.0f} s; load average after: {loadavg()}")
    if failures:
        print(f"{failures} run(s) failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
