"""Faults from publish to the police platform, counted end to end.

Each scenario runs a FaultStream (checker.py: five device families, a
per-device sequence readable from the stored record) through a real broker,
the daemon, a real PostgreSQL and an mTLS HTTPS endpoint that takes every
family's events, does something bad to one of them while messages flow,
waits until everything the broker acknowledged is stored (or quarantined)
and forwarded, and checks: lost, duplicated, unexpected and forward-missing
0; forward duplicates counted (only a kill mid-request may make them, each
an id the endpoint already took). Each scenario adds its line to the table
printed at the end (conftest.py).

GRIDBRIDGE_FAULT_SCALE multiplies the stream sizes and outage lengths
(`./scripts/test --long`: 10); GRIDBRIDGE_TEST_SEED fixes the random choices;
GRIDBRIDGE_FAULT_DEBUG=1 runs the daemon at log_level debug.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import logfmt
import services
from checker import FORWARDED_TYPES, FaultStream, check, settled
from ingest import JournalCtl, start_daemon
from test_forward import forward_config

SCALE = max(1, int(os.environ.get("GRIDBRIDGE_FAULT_SCALE", "1")))
SEED = int(os.environ.get("GRIDBRIDGE_TEST_SEED", time.time_ns() % 1_000_000))
STORE_READY = logfmt.Match(mod="store", msg="ready")
SETTLE_TIMEOUT = 180.0 * SCALE


def per_family(n: int) -> int:
    return n * SCALE


# --------------------------------------------------------------------------
# the harness


class Run:
    """One daemon with forwarding to `endpoint`, its stream and its figures."""

    def __init__(self, daemon, broker, pg, endpoint, tmp_path, *, store=None, target=None,
                 journal=None, state=None, db_port=None, decode=None):
        self.daemon, self.broker, self.pg, self.endpoint = daemon, broker, pg, endpoint
        self.tmp_path = tmp_path
        text = forward_config(tmp_path, broker, pg, endpoint,
                              target={"retry_base_ms": 100, "retry_cap_ms": 500,
                                      **(target or {})},
                              rules={"all": {"event_type": ", ".join(FORWARDED_TYPES)}},
                              store={"batch_ms": 50, "answer_timeout": 5, **(store or {})})
        if journal:
            text = text.replace("[journal]\n", "[journal]\n" + "".join(
                f"{k} = {v}\n" for k, v in journal.items()), 1)
        for k, v in (decode or {}).items():
            text, n = re.subn(rf"\n{k} = [^\n]*\n", f"\n{k} = {v}\n", text, count=1)
            assert n == 1, k
        if state is not None:
            text = text.replace(f"state_dir = {tmp_path / 'state'}", f"state_dir = {state}", 1)
        if db_port is not None:
            text = text.replace(f"port = {pg.port}\n", f"port = {db_port}\n", 1)
        if os.environ.get("GRIDBRIDGE_FAULT_DEBUG"):
            text = text.replace("log_level = info", "log_level = debug", 1)
        self.conf = daemon.write_config(text)
        self.peak_rss_kib = 0
        self.fault_over: float | None = None

    def start(self, wait_store: bool = True, subscribed: bool = True) -> None:
        start_daemon(self.daemon, self.conf, timeout=60, subscribed=subscribed)
        if wait_store:
            self.daemon.wait_log(STORE_READY, timeout=60)

    def sample_rss(self) -> None:
        pid = self.daemon.pid
        if pid is None:
            return
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))
        except OSError:
            pass

    def kill(self) -> None:
        self.sample_rss()
        self.daemon.kill()

    def settle(self, stream: FaultStream, timeout: float = SETTLE_TIMEOUT) -> float:
        """Wait until everything acknowledged is stored and forwarded; the
        seconds since the fault was over (or since now)."""
        start = self.fault_over if self.fault_over is not None else time.monotonic()
        deadline = time.monotonic() + timeout
        while True:
            self.sample_rss()
            if self.daemon.running is False:
                raise AssertionError(f"daemon exited ({self.daemon.returncode}):\n" +
                                     "\n".join(self.daemon.lines[-30:]))
            if settled(stream, self.pg, self.endpoint):
                return time.monotonic() - start
            if time.monotonic() > deadline:
                r = check(stream, self.pg, self.endpoint)
                raise AssertionError(f"not settled within {timeout}s (seed {stream.seed}):\n"
                                     f"{r.table()}\n{r.problems()}\n" +
                                     "\n".join(self.daemon.lines[-30:]))
            time.sleep(0.5)

    def finish(self, stream: FaultStream, fault_row, recovery: float | None,
               fwd_dup_allowed: bool = False, **extra) -> None:
        time.sleep(0.5)   # anything late (a second copy) has arrived
        r = check(stream, self.pg, self.endpoint)
        print(r.table())
        if os.environ.get("GRIDBRIDGE_FAULT_DEBUG"):
            log = self.tmp_path / "daemon.log"
            log.write_text("\n".join(self.daemon.lines) + "\n")
            if getattr(self.broker, "log_path", None) and Path(self.broker.log_path).exists():
                shutil.copyfile(self.broker.log_path, self.tmp_path / "mosquitto.log")
            print(f"daemon log: {log}\n{r.problems()}")
        t = r.total
        fault_row(events=t.stored + t.quarantined, lost=t.lost, duplicated=t.duplicated,
                  unexpected=t.unexpected, fwd_missing=t.fwd_missing, fwd_dup=t.fwd_dup,
                  recovery_s=round(recovery, 1) if recovery is not None else None,
                  peak_rss_mib=round(self.peak_rss_kib / 1024, 1), seed=stream.seed, **extra)
        assert t.acked > 0
        events = [x for x in self.daemon.lines
                  if "mod=mqtt" in x or "mod=journal" in x or "mod=store" in x][-40:]
        assert r.ok, f"seed {stream.seed}:\n{r.table()}\n{r.problems()}\n" + "\n".join(events)
        if not fwd_dup_allowed:
            assert t.fwd_dup == 0, f"seed {stream.seed}: forward duplicates\n{r.table()}"
        assert self.daemon.running
        assert self.daemon.stop(timeout=30) == 0


def publish(stream: FaultStream, broker, rate: float | None):
    return stream.publishers(broker, rate=rate)


# --------------------------------------------------------------------------
# 0. the checker sees what is wrong


def test_checker_counts_lost_duplicated_unexpected(daemon, mosquitto, private_postgres,
                                                   https_endpoint, tmp_path):
    """Not a scenario: the checker itself, on rows changed behind the
    daemon's back. An event deleted is lost and not forwarded; a zigbee row
    copied under another id is a duplicate; a row of our device that no
    message explains is unexpected; a junk message's quarantine row deleted
    is lost."""
    from test_store import db_conn
    pg = private_postgres
    stream = FaultStream(8, devices=2, seed=SEED)
    run = Run(daemon, mosquitto, pg, https_endpoint, tmp_path)
    run.start()
    with publish(stream, mosquitto, rate=None) as pubs:
        pubs.start()
        pubs.finish(timeout=60)
        run.settle(stream, timeout=60)
    r = check(stream, pg, https_endpoint)
    assert r.ok and r.total.acked == stream.total and r.total.fwd_dup == 0, r.table()
    assert run.daemon.stop(timeout=30) == 0
    with db_conn(pg) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM events WHERE id = (SELECT id FROM events WHERE device_class"
                    " = 'access_gate' AND vendor <> 'gridbridge' LIMIT 1)")
        cur.execute("INSERT INTO events SELECT (md5(id::text))::uuid, "
                    + ", ".join(c for c in _event_columns(cur) if c != "id")
                    + " FROM events WHERE device_class = 'door_sensor' LIMIT 1")
        cur.execute("UPDATE events SET plate = '皖Z99999', record = ''"
                    " WHERE id = (SELECT id FROM events WHERE device_class = 'vehicle_barrier'"
                    " LIMIT 1)")
        cur.execute("DELETE FROM quarantine WHERE journal_seq ="
                    " (SELECT min(journal_seq) FROM quarantine)")
        conn.commit()
    r = check(stream, pg, https_endpoint)
    f = r.families
    assert (f["access"].lost, f["access"].stored) == (1, 7), r.table()
    assert f["zigbee"].duplicated == 1 and f["zigbee"].fwd_missing == 1, r.table()
    assert f["anpr"].unexpected == 1 and f["anpr"].lost == 1, r.table()
    assert f["junk"].lost == 1, r.table()
    assert not r.ok


def _event_columns(cur) -> list[str]:
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name ="
                " 'events' ORDER BY ordinal_position")
    return [c for (c,) in cur.fetchall()]


# --------------------------------------------------------------------------
# 1. the daemon killed


def test_kill9_daemon_10_times(daemon, ingest_broker, private_postgres, https_endpoint,
                               tmp_path, fault_row):
    rnd = random.Random(SEED)
    stream = FaultStream(per_family(400), seed=SEED)
    run = Run(daemon, ingest_broker, private_postgres, https_endpoint, tmp_path)
    run.start()
    with publish(stream, ingest_broker, rate=250) as pubs:
        pubs.start()
        for _ in range(10):
            time.sleep(rnd.uniform(0.2, 0.8))
            run.kill()
            run.start(wait_store=False, subscribed=False)
        run.fault_over = time.monotonic()
        pubs.finish(timeout=SETTLE_TIMEOUT)
        recovery = run.settle(stream)
    run.finish(stream, fault_row, recovery, fwd_dup_allowed=True)


# --------------------------------------------------------------------------
# 2. PostgreSQL: crashed, down, frozen, cut in the middle of a commit


def test_postgres_crash_5_times(daemon, ingest_broker, private_postgres, https_endpoint,
                                tmp_path, fault_row):
    pg = private_postgres
    stream = FaultStream(per_family(400), seed=SEED)
    run = Run(daemon, ingest_broker, pg, https_endpoint, tmp_path)
    run.start()
    with publish(stream, ingest_broker, rate=250) as pubs:
        pubs.start()
        for _ in range(5):
            time.sleep(0.7)
            pg.stop(mode="immediate")
            time.sleep(0.3)
            pg.start()
        run.fault_over = time.monotonic()
        pubs.finish(timeout=SETTLE_TIMEOUT)
        recovery = run.settle(stream)
    run.finish(stream, fault_row, recovery, fwd_dup_allowed=True)


def test_postgres_down_then_catch_up(daemon, ingest_broker, private_postgres, https_endpoint,
                                     tmp_path, fault_row):
    pg = private_postgres
    down_s = 12 * SCALE
    stream = FaultStream(per_family(600), seed=SEED)
    run = Run(daemon, ingest_broker, pg, https_endpoint, tmp_path)
    run.start()
    pg.stop(mode="fast")
    with publish(stream, ingest_broker, rate=stream.total / down_s) as pubs:
        pubs.start()
        pubs.finish(timeout=SETTLE_TIMEOUT)
    backlog = stream.published()
    pg.start()
    run.fault_over = time.monotonic()
    recovery = run.settle(stream)
    run.finish(stream, fault_row, recovery, down_s=down_s,
               catch_up_per_s=round(backlog / max(recovery, 0.001)))


def _postmaster_and_children(pg) -> list[int]:
    pid = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid] + [int(x) for x in kids.split()]


def test_postgres_frozen(daemon, ingest_broker, private_postgres, https_endpoint, tmp_path,
                         fault_row):
    """SIGSTOP of the postmaster and its children for 30 s: the daemon
    notices within answer_timeout (5 s here), says so, keeps ingesting into
    the journal, and stores everything once the server runs again."""
    pg = private_postgres
    frozen_s = 30
    stream = FaultStream(per_family(400), seed=SEED)
    run = Run(daemon, ingest_broker, pg, https_endpoint, tmp_path)
    run.start()
    with publish(stream, ingest_broker, rate=stream.total / 20) as pubs:
        pubs.start()
        time.sleep(2)
        mark = len(run.daemon.lines)
        pids = _postmaster_and_children(pg)
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            line = run.daemon.wait_log(logfmt.Match(mod="store", msg="database not answering"),
                                       timeout=20, since=mark)
            noticed = time.monotonic() - t0
            assert line.startswith("<4>"), line
            time.sleep(max(0.0, frozen_s - (time.monotonic() - t0)))
        finally:
            for p in pids:
                try:
                    os.kill(p, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        run.fault_over = time.monotonic()
        pubs.finish(timeout=SETTLE_TIMEOUT)
        recovery = run.settle(stream)
    assert noticed <= 12, f"noticed after {noticed:.1f}s"
    run.finish(stream, fault_row, recovery, noticed_s=round(noticed, 1))


class CommitCutter:
    """A TCP proxy in front of PostgreSQL that, when armed, forwards a
    client packet ending a pipeline (Sync, 'S' 00 00 00 04) to the server,
    lets the server work for a moment, then closes both connections: the
    transaction is committed (or not) without the client hearing the
    outcome."""

    SYNC = b"S\x00\x00\x00\x04"

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.cuts_left = 0
        self.cut = 0
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, n: int = 1) -> None:
        with self.lock:
            self.cuts_left += n

    def _accept(self) -> None:
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(self.target, timeout=5)
                s.settimeout(None)
            except OSError:
                c.close()
                continue
            threading.Thread(target=self._pump, args=(c, s, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(s, c, False), daemon=True).start()

    def _pump(self, src, dst, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                if upstream and data.endswith(self.SYNC) and b"gb_batch_" in data:
                    with self.lock:
                        go = self.cuts_left > 0
                        if go:
                            self.cuts_left -= 1
                            self.cut += 1
                    if go:
                        time.sleep(0.2)   # the server commits meanwhile
                        break
        except OSError:
            pass
        for x in (src, dst):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def test_postgres_connection_cut_in_commit(daemon, ingest_broker, private_postgres,
                                           https_endpoint, tmp_path, fault_row):
    pg = private_postgres
    proxy = CommitCutter(pg.port)
    try:
        stream = FaultStream(per_family(400), seed=SEED)
        run = Run(daemon, ingest_broker, pg, https_endpoint, tmp_path, db_port=proxy.port)
        run.start()
        with publish(stream, ingest_broker, rate=250) as pubs:
            pubs.start()
            for _ in range(5):
                proxy.arm()
                time.sleep(1.0)
            run.fault_over = time.monotonic()
            pubs.finish(timeout=SETTLE_TIMEOUT)
            recovery = run.settle(stream)
        assert proxy.cut >= 3, f"only {proxy.cut} commits cut"
        run.finish(stream, fault_row, recovery, fwd_dup_allowed=True, cuts=proxy.cut)
    finally:
        proxy.close()


# --------------------------------------------------------------------------
# 3. the broker restarted and killed


@pytest.mark.parametrize("how", ["restart", "kill9"])
def test_broker(daemon, broker_factory, private_postgres, https_endpoint, tmp_path,
                fault_row, how):
    # saved after every change: what the broker acknowledged survives kill -9
    broker = broker_factory(extra_conf=services.INGEST_BROKER_CONF, save_every_change=True)
    stream = FaultStream(per_family(300), seed=SEED)
    run = Run(daemon, broker, private_postgres, https_endpoint, tmp_path)
    run.start()
    with publish(stream, broker, rate=200) as pubs:
        pubs.start()
        time.sleep(2.0)
        # The publishers are held until everything they sent was
        # acknowledged: mosquitto 2.0.11 sends PUBACK before its save (a
        # kill -9 in between loses the message), and a PUBLISH whose PUBACK
        # the broker did not send before stopping is sent again by the
        # publisher, which the broker takes as a second message (MQTT does
        # not pass the DUP flag on). The daemon's side is what is under test:
        # its messages in flight, journaled and not yet acknowledged.
        pubs.pause()
        pubs.wait_idle(timeout=30)
        time.sleep(0.3)
        if how == "kill9":
            broker.kill9()
        else:
            broker.stop()
        broker.start()
        pubs.resume()
        run.fault_over = time.monotonic()
        pubs.finish(timeout=SETTLE_TIMEOUT)
        recovery = run.settle(stream)
    run.finish(stream, fault_row, recovery)


# --------------------------------------------------------------------------
# 4. the police platform's endpoint misbehaving


def test_endpoint_faults(daemon, ingest_broker, private_postgres, https_endpoint, tmp_path,
                         fault_row):
    """Closed port, no answer (a hung server), 503, 10 s latency, connection
    reset instead of the answer: storing keeps pace with publishing, and
    everything is forwarded once the endpoint answers again."""
    ep = https_endpoint
    phase_s = 3.0 * SCALE
    stream = FaultStream(per_family(500), seed=SEED)
    run = Run(daemon, ingest_broker, private_postgres, ep, tmp_path,
              target={"timeout": 4, "connect_timeout": 2})
    run.start()
    rate = 200
    lag = []
    with publish(stream, ingest_broker, rate=rate) as pubs:
        pubs.start()
        phases = [("closed", lambda: ep.close_port(), lambda: ep.reopen()),
                  ("hung", lambda: ep.respond(delay=phase_s + 6), lambda: ep.respond()),
                  ("503", lambda: ep.respond(503, headers={"Retry-After": "1"}),
                   lambda: ep.respond()),
                  ("slow", lambda: ep.respond(delay=10), lambda: ep.respond()),
                  ("reset", lambda: ep.respond(drop=True), lambda: ep.respond())]
        for name, begin, end in phases:
            begin()
            time.sleep(phase_s)
            # storing is not held back by forwarding
            r = check(stream, private_postgres)
            lag.append(r.total.acked - r.total.stored - r.total.quarantined)
            end()
        run.fault_over = time.monotonic()
        pubs.finish(timeout=SETTLE_TIMEOUT)
        recovery = run.settle(stream)
    assert max(lag) <= rate * 2, f"storing fell behind while the endpoint failed: {lag}"
    run.finish(stream, fault_row, recovery, fwd_dup_allowed=True, store_lag=max(lag))


# --------------------------------------------------------------------------
# 5. the journal's disk: really full, and fdatasync failing


# the 2 MiB tmpfs of the exactly-once tests (skips where it cannot be mounted)
from test_exactly_once import small_fs  # noqa: E402,F401


def test_journal_disk_full(daemon, ingest_broker, private_postgres, https_endpoint, tmp_path,
                           small_fs, fault_row):
    pg = private_postgres
    state = small_fs / "state"
    state.mkdir()
    stream = FaultStream(per_family(1000), seed=SEED)   # ~4 MB of messages
    run = Run(daemon, ingest_broker, pg, https_endpoint, tmp_path, state=state,
              journal={"segment_size": "64K"})
    run.start()
    pg.stop(mode="fast")
    with publish(stream, ingest_broker, rate=None) as pubs:
        pubs.start()
        line = run.daemon.wait_log(r'msg="journal disk full, ingest paused"', timeout=60)
        assert line.startswith("<3>level=error mod=journal"), line
        time.sleep(1.0)
        pg.start()
        run.fault_over = time.monotonic()
        pubs.finish(timeout=SETTLE_TIMEOUT)
        recovery = run.settle(stream)
    full = logfmt.select(run.daemon.lines, logfmt.Match(msg="journal disk full, ingest paused"))
    assert len(full) <= 3, f"{len(full)} 'disk full' lines: one per episode"
    assert not (state / "journal" / "corrupt").exists()
    run.finish(stream, fault_row, recovery, disk_full_lines=len(full))


def test_fdatasync_fails(daemon, ingest_broker, private_postgres, https_endpoint, tmp_path,
                         build_dir, fault_row):
    shim = Path(build_dir) / "tests" / "libfail_sync.so"
    stream = FaultStream(per_family(400), seed=SEED)
    run = Run(daemon, ingest_broker, private_postgres, https_endpoint, tmp_path)
    env = {"LD_PRELOAD": str(shim), "GRIDBRIDGE_TEST_FAIL_FDATASYNC": "3",
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    start_daemon(run.daemon, run.conf, env=env, timeout=60)
    run.daemon.wait_log(STORE_READY, timeout=60)
    with publish(stream, ingest_broker, rate=None) as pubs:
        pubs.start()
        pubs.finish(timeout=SETTLE_TIMEOUT)
        recovery = run.settle(stream)
    failed = logfmt.select(run.daemon.lines, logfmt.Match(msg="fdatasync failed, not acknowledged"))
    assert failed, "the shim's failure was not reached"
    assert not (tmp_path / "state" / "journal" / "corrupt").exists()
    run.finish(stream, fault_row, recovery)


# --------------------------------------------------------------------------
# 6. the state directory replaced; a second daemon with the same node name


@pytest.mark.parametrize("how", ["emptied", "old_copy"])
def test_state_dir_replaced(daemon, ingest_broker, private_postgres, https_endpoint, tmp_path,
                            build_dir, fault_row, how):
    pg = private_postgres
    stream = FaultStream(per_family(300), seed=SEED)
    run = Run(daemon, ingest_broker, pg, https_endpoint, tmp_path)
    state, copy = tmp_path / "state", tmp_path / "state-copy"
    run.start()
    with publish(stream, ingest_broker, rate=150) as pubs:
        pubs.start()
        time.sleep(1.5)
        assert run.daemon.stop(timeout=30) == 0
        # a clean stop stores what the journal holds before it exits
        st = JournalCtl(build_dir, conf=run.conf).stat()
        assert st["checkpoint_seq"] == st["last_seq"] > 0, st
        assert logfmt.select(run.daemon.lines, logfmt.Match(mod="main", msg="stopped"))
        if how == "old_copy":
            shutil.copytree(state, copy)
            run.start(wait_store=True)
            time.sleep(1.5)
            assert run.daemon.stop(timeout=30) == 0
            shutil.rmtree(state)
            shutil.copytree(copy, state)
        else:
            shutil.rmtree(state)
            state.mkdir()
        run.start(wait_store=False)
        run.fault_over = time.monotonic()
        pubs.finish(timeout=SETTLE_TIMEOUT)
        recovery = run.settle(stream)
    # stopped with requests in flight: the endpoint may get one again
    run.finish(stream, fault_row, recovery, fwd_dup_allowed=True)


def test_second_daemon_same_node_name(daemon, ingest_broker, private_postgres, https_endpoint,
                                      tmp_path, build_dir, fault_row):
    pg = private_postgres
    stream = FaultStream(per_family(300), seed=SEED)
    run = Run(daemon, ingest_broker, pg, https_endpoint, tmp_path)
    run.start()
    other = tmp_path / "other"
    other.mkdir()
    d2 = services.Daemon(build_dir, tmp_path / "daemon2")
    try:
        with publish(stream, ingest_broker, rate=150) as pubs:
            pubs.start()
            time.sleep(1.0)
            conf2 = forward_config(other, ingest_broker, pg, https_endpoint)
            d2.start(d2.write_config(conf2))
            line = d2.wait_log(r'msg="another gridbridged runs with this node name, not '
                               r'starting"', timeout=60)
            assert d2.wait(timeout=20) == 1, line
            run.fault_over = time.monotonic()
            pubs.finish(timeout=SETTLE_TIMEOUT)
            recovery = run.settle(stream)
    finally:
        d2.close()
    run.finish(stream, fault_row, recovery)


# --------------------------------------------------------------------------
# 7. overload


def test_overload(daemon, ingest_broker, private_postgres, https_endpoint, tmp_path,
                  fault_row):
    """As fast as the broker takes it (several times what PostgreSQL stores
    here) for the whole stream: the journal takes the difference, memory
    stays bounded, everything is stored after the burst."""
    stream = FaultStream(per_family(4000), seed=SEED)
    run = Run(daemon, ingest_broker, private_postgres, https_endpoint, tmp_path,
              store={"batch_rows": 200})
    run.start()
    t0 = time.monotonic()
    with publish(stream, ingest_broker, rate=None) as pubs:
        pubs.start()
        while not pubs.done_publishing:
            run.sample_rss()
            time.sleep(0.2)
        pubs.finish(timeout=SETTLE_TIMEOUT)
        burst_s = time.monotonic() - t0
        r = check(stream, private_postgres)
        behind = r.total.acked - r.total.stored - r.total.quarantined
        run.fault_over = time.monotonic()
        recovery = run.settle(stream)
    assert run.peak_rss_kib < 32 * 1024, f"peak RSS {run.peak_rss_kib} KiB"
    run.finish(stream, fault_row, recovery, burst_per_s=round(stream.total / burst_s),
               behind_at_end=behind)


# --------------------------------------------------------------------------
# 9. one device floods


def test_one_device_floods(daemon, ingest_broker, private_postgres, https_endpoint, tmp_path,
                           fault_row):
    """A broken door sensor sends 2,000 messages/s, valid and junk, while the
    others go on under [decode] rate_limit = 50/s (burst 100): an alarm
    from another camera is still stored and forwarded within seconds,
    nothing of the others is lost, and the flood is held back: counted in
    one quarantine row per minute (reason rate_limited), named in a
    warning and a metric, and every message of it acknowledged is an
    event, a quarantine row or counted in a summary row, exactly once."""
    from checker import make
    from ingest import MessagePublisher
    from test_store import db_query
    flood_s = 8 * SCALE
    stream = FaultStream(per_family(300), seed=SEED)
    run = Run(daemon, ingest_broker, private_postgres, https_endpoint, tmp_path,
              decode={"rate_limit": 50, "rate_burst": 100})
    run.start()
    topic = "zigbee2mqtt/fault/broken/9999/entry_door"
    flood = [(topic, json.dumps({"contact": i % 2 == 1, "battery": 1, "linkquality": i % 256,
                                 "n": i}).encode() if i % 7 else b"{junk %d" % i)
             for i in range(2000 * flood_s)]
    fp = MessagePublisher(ingest_broker, "flood", flood, rate=2000, window=200)
    alarm = make("alarm", 9, 0, stream.t0)
    with publish(stream, ingest_broker, rate=100) as pubs:
        pubs.start()
        fp.start()
        try:
            time.sleep(flood_s / 2)
            published_at = time.time()
            ingest_broker.publish(alarm.topic, alarm.payload, qos=1)
            alarm_id = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                rows = db_query(private_postgres, "SELECT id::text, received_at FROM events"
                                " WHERE device_id = %s", (alarm.topic.split("/")[3],))
                if rows:
                    alarm_id = rows[0][0]
                    stored_s = time.time() - published_at
                    break
                time.sleep(0.05)
            assert alarm_id is not None, "the alarm was not stored within 30 s"
            from checker import forwarded_ids
            while time.monotonic() < deadline and alarm_id not in forwarded_ids(https_endpoint):
                time.sleep(0.05)
            forwarded_s = time.time() - published_at
            assert alarm_id in forwarded_ids(https_endpoint), "the alarm was not forwarded"
            while not (fp.done_publishing and fp.outstanding() == 0) and \
                    time.monotonic() < deadline + 60:
                time.sleep(0.2)
        finally:
            flood_acked = len(fp.acked())
            fp.close()
        run.fault_over = time.monotonic()
        pubs.finish(timeout=SETTLE_TIMEOUT)
        recovery = run.settle(stream)

    def flood_rows():
        ev = db_query(private_postgres, "SELECT count(*) FROM events WHERE source_topic = %s",
                      (topic,))[0][0]
        q = db_query(private_postgres, "SELECT count(*) FILTER (WHERE held_back IS NULL),"
                     " count(held_back), coalesce(sum(held_back), 0) FROM quarantine"
                     " WHERE topic = %s", (topic,))[0]
        return ev, q[0], q[1], int(q[2])
    deadline = time.monotonic() + 60
    while sum(x for i, x in enumerate(flood_rows()) if i != 2) < flood_acked and \
            time.monotonic() < deadline:
        time.sleep(0.5)
    events, quarantined, summary_rows, held = flood_rows()
    assert events + quarantined + held == flood_acked, (events, quarantined, held, flood_acked)
    assert held >= flood_acked * 0.9, (held, flood_acked)
    assert 1 <= summary_rows <= flood_s // 60 + 2, summary_rows
    assert any('msg="device over its rate limit, holding its messages back"' in x and
               "device=fault/broken/9999/entry_door" in x for x in daemon.lines)
    assert stored_s < 5 and forwarded_s < 10, (stored_s, forwarded_s)
    run.finish(stream, fault_row, recovery, fwd_dup_allowed=False, flood=flood_acked,
               flood_held=held, alarm_stored_s=round(stored_s, 2),
               alarm_forwarded_s=round(forwarded_s, 2))


# --------------------------------------------------------------------------
# 10. the system clock steps


def faketime_lib() -> str | None:
    """libfaketime's preload library (Debian: package libfaketime)."""
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib",
              "/usr/local/lib"):
        for name in ("faketime/libfaketime.so.1", "libfaketime.so.1"):
            if os.path.exists(f"{d}/{name}"):
                return f"{d}/{name}"
    return None


def test_clock_steps(daemon, ingest_broker, private_postgres, https_endpoint, tmp_path,
                     fault_row):
    """The daemon runs under libfaketime; while the stream flows its wall
    clock (not its monotonic clock) steps back an hour, then forward a
    day. Each step is logged once; nothing is lost or duplicated; the
    derived events keep elapsed time (heartbeat timeouts of 5 minutes,
    hold-down 0):

      - after the step back, an availability "offline" (its receive time an
        hour before the state it changes) is taken: one device_offline;
      - after the step forward, no device is reported offline: neither the
        stream's, which kept publishing, nor one that spoke a few seconds
        before the step and was silent since (its 5 minutes have not
        passed);
      - no inactivity alert (inactive_hours = 1): neither for a household
        watching one of the stream's door sensors, nor for one whose sensor
        (no heartbeat timeout) opened its door a few seconds before the step
        and was silent since.

    While the clock is an hour back, the endpoint's certificate may not be
    valid yet for the daemon: forwarding retries and catches up."""
    from checker import zigbee_device
    from test_forward import wait_until
    from test_store import db_query
    lib = faketime_lib()
    if lib is None:
        pytest.skip("libfaketime not installed (Debian: faketime)")
    pg = private_postgres
    sensor = zigbee_device(0)
    lwt, quiet_sensor, quiet = (f"fault/clock/{n}/entry_door" for n in (9999, 9998, 9997))
    extra = ("\n[registry]\nhold_down = 0\n"
             + "".join(f"heartbeat_timeout_{c} = 300\n"
                       for c in ("access_gate", "vehicle_barrier", "camera", "door_sensor"))
             # the shipped Zigbee2MQTT routes' community
             + f"\n[device quiet-sensor]\ndevice = {quiet_sensor}\ncommunity = c-0001\n"
             "class = door_sensor\nheartbeat_timeout = 0\nexpected = false\n"
             + "".join(f"\n[welfare {name}]\ndoor_sensors = {dev}\ninactive_hours = 1\n"
                       "repeat_hours = 1\n"
                       for name, dev in (("stream", sensor), ("quiet", quiet_sensor))))
    clock = tmp_path / "faketime.rc"
    clock.write_text("+0\n")
    env = {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": str(clock),
           "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
           "DONT_FAKE_MONOTONIC": "1", "NO_FAKE_STAT": "1",
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    stream = FaultStream(per_family(400), seed=SEED)
    run = Run(daemon, ingest_broker, pg, https_endpoint, tmp_path)
    run.conf.write_text(run.conf.read_text() + extra)
    start_daemon(run.daemon, run.conf, env=env, timeout=60)
    run.daemon.wait_log(STORE_READY, timeout=60)
    stepped = logfmt.Match(mod="pipeline", msg="system clock stepped")

    def step(offset_s: int, expect_s: int) -> None:
        """libfaketime's offset from the real clock becomes offset_s: the
        daemon's clock steps by expect_s."""
        mark = len(run.daemon.lines)
        tmp = clock.with_suffix(".tmp")
        tmp.write_text(f"{offset_s:+d}\n")
        tmp.replace(clock)
        line = run.daemon.wait_log(stepped, timeout=20, since=mark)
        assert line.startswith("<4>level=warn"), line
        assert abs(float(logfmt.fields(line)["seconds"]) - expect_s) < 2, line

    def door(device: str, opened: bool, n: int) -> None:
        ingest_broker.publish(f"zigbee2mqtt/{device}", json.dumps(
            {"contact": not opened, "battery": 90, "linkquality": n}).encode(), qos=1)

    def offline_events() -> dict[str, int]:
        return dict(db_query(pg, "SELECT device_id, count(*) FROM events"
                                 " WHERE vendor = 'gridbridge' AND event_type = 'device_offline'"
                                 " GROUP BY device_id"))

    def known(device: str) -> bool:
        return bool(db_query(pg, "SELECT 1 FROM devices WHERE device_id = %s", device))

    door(lwt, False, 1)
    wait_until(lambda: known(lwt), 20, "the LWT probe in the registry")
    with publish(stream, ingest_broker, rate=stream.total / 24) as pubs:
        pubs.start()
        time.sleep(3)
        step(-3600, -3600)
        ingest_broker.publish(f"zigbee2mqtt/{lwt}/availability",
                              json.dumps({"state": "offline"}).encode(), qos=1)
        wait_until(lambda: lwt in offline_events(), 20, "the probe's device_offline")
        door(quiet, False, 2)
        door(quiet_sensor, True, 3)
        wait_until(lambda: known(quiet) and known(quiet_sensor), 20, "the quiet devices")
        time.sleep(2)
        step(86400 - 3600, 86400)
        time.sleep(4)     # ticks at the new time
        still_publishing = not pubs.done_publishing
        run.fault_over = time.monotonic()
        pubs.finish(timeout=SETTLE_TIMEOUT)
        recovery = run.settle(stream)
    assert still_publishing, "the stream ended before the clock stepped forward"
    lines = logfmt.select(run.daemon.lines, stepped)
    assert len(lines) == 2, lines
    offline = offline_events()
    assert offline == {lwt: 1}, f"device_offline events: {offline}"
    alerts = db_query(pg, "SELECT attrs->'welfare'->>'household', attrs->'welfare'->>'kind'"
                          " FROM events WHERE vendor = 'gridbridge'"
                          " AND event_type = 'welfare_alert'")
    assert not [a for a in alerts if a[1] == "WELFARE_KIND_INACTIVITY"], alerts
    # both households were watched through the step
    states = dict(db_query(pg, "SELECT device_id, state FROM devices WHERE device_id IN (%s, %s)",
                           sensor, quiet_sensor))
    assert states == {sensor: "online", quiet_sensor: "online"}, states
    run.finish(stream, fault_row, recovery, steps=len(lines))


# --------------------------------------------------------------------------
# 8. hostile input amid the stream

NAME_ZH = "张秘密"
ID_NUMBER = "34010419900101128X"


def hostile_messages(n_random: int, rnd: random.Random) -> list[tuple[str, bytes]]:
    """Every message unique, so that each is one row: stored or quarantined."""
    from checker import FIXTURES
    acc = "sac/340104050101/access/34010405011190990001/event"
    msgs: list[tuple[str, bytes]] = []
    for i in range(n_random):
        msgs.append((acc, rnd.randbytes(rnd.randint(1, 512)) + b"#%d" % i))
    deep = 10000
    msgs += [
        (acc, b'{"AccessControllerEvent": {"serialNo": 1, "name": "' + NAME_ZH.encode()),
        (acc, b"[" * deep + b"]" * deep),
        (acc, b'{"a":' * deep + b"1" + b"}" * deep),
        (acc, json.dumps({"dateTime": "2025-03-18T07:40:02+08:00", "eventType": "AccessControllerEvent",
                          "AccessControllerEvent": {"name": "x" * (1 << 20)}}).encode()),
        (acc, b'{"dateTime": "\xff\xfe\xfd", "name": "' + NAME_ZH.encode() + b'\xc3\x28"}'),
        (acc, b'{"dateTime": "2025-03-18T07:40:02+08:00", "eventType": "AccessControllerEvent",'
              b' "AccessControllerEvent": {"name": "a\\u0000b", "serialNo": 7}}'),
        (acc, b'{"x": "\x00\x00"}\x00trailing'),
        (acc, b'{"dateTime": 1e400, "AccessControllerEvent": {"serialNo": 1e400}}'),
        (acc, b'{"dateTime": -0, "AccessControllerEvent": {"serialNo": -0}}'),
    ]
    meta = ["'; DROP TABLE events; --", 'x" level=error msg="forged', "a\nlevel=error b",
            "$(reboot)", "%s%n%x", "\\\\'\"", f"{NAME_ZH} {ID_NUMBER}"]
    for k, m in enumerate(meta):
        for name in ("gate_person_access_hikvision", "vehicle_barrier_anpr_hikvision",
                     "camera_alarm_high_altitude_throwing", "door_contact_z2m_state"):
            o = json.loads(json.dumps(FIXTURES[name]))

            def poison(x):
                if isinstance(x, dict):
                    return {key: poison(v) for key, v in x.items()}
                if isinstance(x, list):
                    return [poison(v) for v in x]
                if isinstance(x, str):
                    return m + f"#{k}"
                return x
            o = poison(o)
            topic = {"gate_person_access_hikvision": acc,
                     "vehicle_barrier_anpr_hikvision":
                         "sac/340104050101/vehicle/34010405011190990002/event",
                     "camera_alarm_high_altitude_throwing":
                         "sac/340104050101/camera/34010405011190990003/alarm",
                     "door_contact_z2m_state": f"zigbee2mqtt/hostile/{k}/door"}[name]
            msgs.append((topic, json.dumps(o, ensure_ascii=False).encode()))
    odd = ["sac/340104050101/access/dev ice%20'; DROP/event", "sac/340104050101/访问/设备/event",
           "zigbee2mqtt/level=error msg=\"x\"", "sac/" + NAME_ZH + "/access/" + ID_NUMBER + "/event",
           "sac/340104050101/access/" + "d" * 65000 + "/event", "a" * 65535]
    for k, t in enumerate(odd):
        msgs.append((t, b'{"odd": %d}' % k))
    return msgs


def test_hostile_input(daemon, ingest_broker, private_postgres, https_endpoint, tmp_path,
                       build_dir, fault_row):
    rnd = random.Random(SEED)
    pg = private_postgres
    stream = FaultStream(per_family(400), seed=SEED)
    run = Run(daemon, ingest_broker, pg, https_endpoint, tmp_path)
    run.start()
    bad = hostile_messages(10000 * SCALE // 5, rnd)
    from ingest import MessagePublisher
    hp = MessagePublisher(ingest_broker, "hostile", bad, rate=None, window=50)
    with publish(stream, ingest_broker, rate=300) as pubs:
        pubs.start()
        hp.start()
        try:
            deadline = time.monotonic() + SETTLE_TIMEOUT
            while not hp.done_publishing and time.monotonic() < deadline:
                time.sleep(0.2)
            while hp.outstanding() and time.monotonic() < deadline:
                time.sleep(0.2)
            hostile_acked = len(hp.acked())
        finally:
            hp.close()
        run.fault_over = time.monotonic()
        pubs.finish(timeout=SETTLE_TIMEOUT)
        recovery = run.settle(stream)
    assert hostile_acked >= len(bad) - 2, f"{hostile_acked} of {len(bad)} acknowledged"
    # every journal record is one row: an event or a quarantined message
    from test_store import db_query
    last = db_query(pg, "SELECT max(journal_seq) FROM ingest_checkpoint")[0][0]
    seqs = db_query(pg, "SELECT journal_seq FROM events WHERE vendor <> 'gridbridge'"
                        " UNION ALL SELECT journal_seq FROM quarantine")
    got = sorted(s for (s,) in seqs)
    assert got == list(range(1, last + 1)), \
        f"journal 1..{last}: {len(got)} rows, first gap near " \
        f"{next((i + 1 for i, s in enumerate(got) if s != i + 1), None)}"
    assert db_query(pg, "SELECT count(*) FROM quarantine WHERE coalesce(reason, '') = ''") == [(0,)]
    assert db_query(pg, "SELECT count(*) FROM pg_tables WHERE tablename = 'events'") == [(1,)]
    for needle in (NAME_ZH, NAME_ZH[1:], ID_NUMBER, ID_NUMBER[:17], "forged"):
        hits = [x for x in run.daemon.lines if needle in x]
        assert not hits, f"{needle!r} in the log: {hits[:3]}"
    run.finish(stream, fault_row, recovery, hostile=len(bad), hostile_acked=hostile_acked)
