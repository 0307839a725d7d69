"""gridbridgectl tail and decode --proto against a real gridbridged, broker,
PostgreSQL and (for decode) the HTTPS endpoint the daemon forwards to.

tail:
  - every event stored after the tool started is printed once, seconds
    after it was published, by every tail whose filters it passes
    (--class, --device, --community, --severity, --type), as the events
    table has them; an event stored before is printed only with --since;
  - a line is the Event's JSON mapping (what python-protobuf makes of
    events.record) with the personal data masked: the plate keeps its
    first character and last two, names and URLs are gone, card and
    person numbers masked; as it is with --show-personal-data; the text
    lines mask the same;
  - it listens: a NOTIFY on the channel that is not a batch's is noticed
    (one warning, however many); it does not poll: while nothing is
    stored its backend stays idle and sends no statement
    (pg_stat_activity.state_change does not move);
  - SIGINT and SIGTERM: exit 0, nothing else on stderr; PostgreSQL
    stopped: exit 1 and one line on stderr; no database at start: exit 1,
    one line; usage errors: exit 2.

decode --proto:
  - the bodies the daemon forwarded (EventBatch) print as the events'
    JSON mapping, in order; a single Event (events.record) too, from a
    file, '-' and standard input; a batch of one event is a batch;
  - garbage, a truncated body, an Event without a 16-byte id, a string
    that is not UTF-8, more than 64 MiB: exit 1 and one line on stderr;
    empty input is an empty batch.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

import logfmt
import services
from ingest import daemon_config, start_daemon
from test_forward import batch_ids, forward_config, start_forwarding, wait_until
from test_store import db_conn, db_query, event_pb2

READY = logfmt.Match(mod="store", msg="ready")
COMMUNITY = "340104050101"
HIK_GATE = "34010405011190000001"
PLATE = "皖A12345"
PLATE_MASKED = "皖****45"
# What the fixtures hold that must not show without --show-personal-data.
PERSONAL = ("A12345", "ZHANG", "LI Si", "3A5F09C2", "B03U21502-01", "http", "B03-U2-1502")


@pytest.fixture(scope="module")
def sanitized(build_dir) -> bool:
    return services.sanitized_binary(Path(build_dir) / "gridbridgectl")


def need_pb2():
    pb = event_pb2()
    if pb is None:
        pytest.skip("protoc / python3-protobuf not installed")
    return pb


def to_dict(ev) -> dict:
    """The proto3 JSON mapping of an Event, as python-protobuf has it."""
    from google.protobuf import json_format
    return json_format.MessageToDict(ev)


def mask_ends(s: str) -> str:
    """gridbridgectl(8): the first character and the last two kept."""
    if len(s) < 5:
        return "*" * len(s)
    return s[0] + "*" * (len(s) - 3) + s[-2:]


# body -> field -> "ends" (masked) or "drop" (removed), as gridbridgectl(8) says
MASKED = {
    "person": {"cardRef": "ends", "personRef": "ends", "personName": "drop",
               "pictureUrl": "drop"},
    "vehicle": {"plate": "ends", "plateNormalized": "ends", "pictureUrls": "drop"},
    "cameraAlarm": {"pictureUrls": "drop", "clipUrl": "drop"},
    "peephole": {"household": "ends", "snapshotUrl": "drop"},
    "welfare": {"household": "ends"},
}


def masked(d: dict) -> dict:
    d = json.loads(json.dumps(d))
    for body, fields in MASKED.items():
        for name, how in fields.items():
            if name in d.get(body, {}):
                if how == "ends":
                    d[body][name] = mask_ends(d[body][name])
                else:
                    del d[body][name]
    return d


def event_id(obj: dict) -> str:
    return str(uuid.UUID(bytes=base64.b64decode(obj["id"])))


class Tail:
    """`gridbridgectl -c CONF tail ARGS` running, its lines read as they come."""

    def __init__(self, build_dir, conf, *args: str):
        self.args = args
        self.argv = [str(Path(build_dir) / "gridbridgectl"), "-c", str(conf), "tail", *args]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.out: list[tuple[float, str]] = []
        self.err: list[str] = []
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._read, args=(f, sink), daemon=True)
                         for f, sink in ((self.proc.stdout, self.out),
                                         (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    def _read(self, f, sink) -> None:
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                sink.append((time.monotonic(), line) if sink is self.out else line)
                self._cond.notify_all()
        f.close()

    @property
    def lines(self) -> list[str]:
        with self._cond:
            return [x for _, x in self.out]

    @property
    def times(self) -> list[float]:
        with self._cond:
            return [t for t, _ in self.out]

    @property
    def stderr(self) -> list[str]:
        with self._cond:
            return list(self.err)

    def objects(self) -> list[dict]:
        return [json.loads(x) for x in self.lines]

    def ids(self) -> list[str]:
        return [event_id(o) for o in self.objects()]

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)
        assert not [x for x in self.err if any(m in x for m in services.SANITIZER_MARKERS)], \
            "\n".join(self.err)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def tails():
    """make(build_dir, conf, *args) -> a running Tail; all killed at teardown."""
    made: list[Tail] = []

    def make(*a) -> Tail:
        t = Tail(*a)
        made.append(t)
        return t
    try:
        yield make
    finally:
        for t in made:
            t.kill()


def ctl(build_dir, *args, stdin=None, conf=None) -> subprocess.CompletedProcess:
    argv = [str(Path(build_dir) / "gridbridgectl"), *(["-c", str(conf)] if conf else []),
            *args]
    r = subprocess.run(argv, input=stdin, stdin=None if stdin is not None else
                       subprocess.DEVNULL, capture_output=True, timeout=60)
    err = r.stderr.decode("utf-8", "replace")
    assert not any(m in err for m in services.SANITIZER_MARKERS), err
    r.err_lines = err.splitlines()
    return r


# ---- tail

def stored(pg) -> dict[str, dict]:
    """Every stored event: id -> its columns and its record."""
    rows = db_query(pg, "SELECT id::text, device_class, device_id, community_id, severity,"
                        " event_type, record FROM events")
    return {r[0]: dict(zip(("class", "device", "community", "severity", "type"), r[1:6]),
                       record=bytes(r[6])) for r in rows}


def tail_backends(pg) -> dict[int, tuple]:
    """pid -> (state, state_change, query) of every gridbridgectl session."""
    rows = db_query(pg, "SELECT pid, state, state_change, query FROM pg_stat_activity"
                        " WHERE application_name = 'gridbridgectl'")
    return {r[0]: tuple(r[1:]) for r in rows}


def wait_listening(pg, n: int, timeout: float) -> None:
    """Until n tails are past their start: idle, the start's transaction
    committed (or a notification's rows read)."""
    def ready():
        b = tail_backends(pg).values()
        return len(b) == n and all(s == "idle" and (q == "COMMIT" or q.startswith("SELECT e.id"))
                                   for s, _, q in b)
    wait_until(ready, timeout, f"{n} tails listening")


def other_anpr() -> tuple[str, bytes]:
    """The ANPR fixture with another plate and time: another event."""
    fx = {name: (topic, payload) for name, topic, payload in services.device_fixtures()}
    topic, payload = fx["vehicle_barrier_anpr_hikvision"]
    o = json.loads(payload)
    o["ANPR"]["licensePlate"] = "苏E00001"
    o["dateTime"] = "2025-03-18T09:01:02+08:00"
    return topic, json.dumps(o, ensure_ascii=False).encode()


def test_tail(daemon, mosquitto, private_postgres, build_dir, tmp_path, tails, sanitized):
    pb = need_pb2()
    pg = private_postgres
    conf = daemon.write_config(daemon_config(tmp_path, mosquitto, store_db=pg, routes=True))
    start_daemon(daemon, conf)
    daemon.wait_log(READY, timeout=30)

    # One event stored before any tail starts.
    mosquitto.publish(*other_anpr(), qos=1)
    wait_until(lambda: len(stored(pg)) >= 1, 20, "the first event stored")
    time.sleep(0.5)
    before = set(stored(pg))

    filters = {
        "all": (),
        "personal": ("--show-personal-data",),
        "class": ("--class", "vehicle_barrier"),
        "type+community": ("--type", "person_passage", "--community", COMMUNITY),
        "device+severity": ("--device", HIK_GATE, "--severity", "info"),
        "critical": ("--severity", "critical"),
        "since": ("--since", "1h"),
    }
    t = {k: tails(build_dir, conf, "--json", *a) for k, a in filters.items()}
    t["text"] = tails(build_dir, conf)
    wait_listening(pg, len(t), 30)

    def passes(name: str, e: dict) -> bool:
        a = filters.get(name, ())
        opts = dict(zip(a[::2], a[1::2]))
        return all(e[col] == opts[opt] for opt, col in (
            ("--class", "class"), ("--type", "type"), ("--community", "community"),
            ("--device", "device"), ("--severity", "severity")) if opt in opts)

    published_at = time.monotonic()
    for _, topic, payload in services.device_fixtures():
        mosquitto.publish(topic, payload, qos=1)
    published = time.monotonic()

    def want(name: str, db: dict) -> set[str]:
        ids = set(db) if name == "since" else set(db) - before
        return {i for i in ids if passes(name, db[i])}

    def caught_up():
        db = stored(pg)
        return len(db) > len(before) and all(
            set(x.ids()) == want(k, db) for k, x in t.items() if k != "text") and db
    db = wait_until(caught_up, 30, "every tail showing the events stored")
    time.sleep(1.0)     # nothing more comes
    db = stored(pg)
    new = set(db) - before
    assert len(new) >= 8, f"only {len(new)} events from the fixtures"

    latency = 5.0 if sanitized else 3.0
    for k, x in t.items():
        if k == "text":
            continue
        got = x.ids()
        w = want(k, db)
        assert set(got) == w, k
        dup = [i for i, n in collections.Counter(got).items() if n > 1]
        assert not dup, f"{k}: shown more than once: {dup}"
        assert all(at - published <= latency for at in x.times if at > published_at), \
            f"{k}: lines {[round(at - published, 2) for at in x.times]} s after publishing"
        if k not in ("all", "since", "personal"):
            assert 0 < len(w) < len(new), f"{k}: the filter selects {len(w)} of {len(new)}"
    # Each transaction's events as it committed: --since's first lines are
    # those of before.
    since_ids = t["since"].ids()
    assert set(since_ids[:len(before)]) == before

    # The Event's JSON mapping, masked unless asked; the fixtures' personal
    # data nowhere else.
    for k, x in t.items():
        if k == "text":
            continue
        for o in x.objects():
            ev = pb.Event()
            ev.ParseFromString(db[event_id(o)]["record"])
            full = to_dict(ev)
            assert o == (full if k == "personal" else masked(full)), k
        text = "\n".join(x.lines)
        if k != "personal":
            assert not [p for p in PERSONAL if p in text], k
    vehicle = [o for o in t["all"].objects() if "vehicle" in o and
               o["vehicle"]["plate"] == PLATE_MASKED]
    assert len(vehicle) == 1 and "pictureUrls" not in vehicle[0]["vehicle"]
    persons = [o for o in t["all"].objects() if "person" in o]
    assert len(persons) >= 2 and not [o for o in persons if "personName" in o["person"]]
    full = "\n".join(t["personal"].lines)
    assert PLATE in full and "ZHANG San" in full and "LI Si" in full and "http" in full

    # Text lines: one per event, the same masking.
    text = t["text"].lines
    assert len(text) == len(new)
    line = [x for x in text if " vehicle_barrier vehicle_passage " in x]
    assert len(line) == 1 and f"plate={PLATE_MASKED}" in line[0], text
    assert line[0].split(" ")[1:3] == [COMMUNITY, "34010405011190000011"]
    assert not [p for p in PERSONAL if p in "\n".join(text)]

    # It listens: a NOTIFY that is no batch's is noticed, once.
    with db_conn(pg) as conn, conn.cursor() as cur:
        cur.execute("NOTIFY gridbridge_events, 'not a batch'")
    with db_conn(pg) as conn, conn.cursor() as cur:
        cur.execute("NOTIFY gridbridge_events, '1 2 3'")
    for k, x in t.items():
        wait_until(lambda: x.stderr, 5, f"{k}: the warning")
    time.sleep(0.5)
    for k, x in t.items():
        assert len(x.stderr) == 1 and "ignoring notifications" in x.stderr[0], (k, x.stderr)

    # It does not poll: nothing stored, no statement.
    for _ in range(5):
        n0, b0 = len(stored(pg)), tail_backends(pg)
        time.sleep(3)
        n1, b1 = len(stored(pg)), tail_backends(pg)
        if n0 == n1:
            break
    else:
        pytest.fail("events stored in every quiet period")
    assert len(b0) == len(t) and b0 == b1, (b0, b1)
    assert all(s == "idle" for s, _, _ in b1.values())

    # One more event comes through at once (and is shown once). Its device
    # time is now, so it has no event_ids row (the fixtures' are from 2025:
    # a clock that is off, they have one): found by its own xmin.
    topic, payload = other_anpr()
    o = json.loads(payload)
    o["dateTime"] = time.strftime("%Y-%m-%dT%H:%M:%S+08:00",
                                  time.gmtime(time.time() + 8 * 3600))
    n, n_class = len(t["all"].lines), len(t["class"].lines)
    t0 = time.monotonic()
    mosquitto.publish(topic, json.dumps(o).encode(), qos=1)
    wait_until(lambda: len(t["all"].lines) > n and len(t["class"].lines) > n_class, 10,
               "the last event")
    assert time.monotonic() - t0 < latency
    time.sleep(0.5)
    assert len(t["all"].lines) == n + 1 and len(t["class"].lines) == n_class + 1
    assert t["all"].objects()[-1]["vehicle"]["plate"] == "苏****01"
    assert db_query(pg, "SELECT count(*) FROM event_ids WHERE id = %s",
                    event_id(t["all"].objects()[-1])) == [(0,)]
    assert len(t["type+community"].lines) == len(want("type+community", db))

    # SIGINT, SIGTERM: exit 0, no more said.
    for k, x in t.items():
        if k != "all":
            assert x.stop(signal.SIGINT if k == "text" else signal.SIGTERM) == 0, k
            assert len(x.stderr) == 1, (k, x.stderr)

    # The database goes away: exit 1, one line.
    pg.stop("fast")
    assert t["all"].wait(15) == 1
    assert len(t["all"].stderr) == 2, t["all"].stderr
    assert t["all"].stderr[1].startswith("gridbridgectl: database connection lost: ")

    # No database at the start: exit 1, one line.
    late = tails(build_dir, conf, "--json")
    assert late.wait(30) == 1
    assert len(late.stderr) == 1 and "cannot connect to the database" in late.stderr[0]
    assert late.lines == []


def test_tail_usage(build_dir, tmp_path):
    conf = tmp_path / "none.conf"   # never read: the usage is checked first
    for args, what in ((("--class", "gate"), "--class is one of access_gate, "),
                       (("--type", "PERSON_PASSAGE"), "--type is one of person_passage, "),
                       (("--severity", "high"), "--severity is one of info, notice, "),
                       (("--state", "online"), "usage: gridbridgectl [-c FILE] tail"),
                       (("--until", "2026-01-01"), "usage: gridbridgectl [-c FILE] tail"),
                       (("--from", "3"), "usage: gridbridgectl [-c FILE] tail"),
                       (("--proto",), "usage: gridbridgectl [-c FILE] tail"),
                       (("extra",), "usage: gridbridgectl [-c FILE] tail"),
                       (("--since", "soon"), "--since needs a duration")):
        r = ctl(build_dir, "tail", *args, conf=conf)
        assert r.returncode == 2, (args, r.err_lines)
        assert r.stdout == b"" and what in r.err_lines[0], (args, r.err_lines)
    r = ctl(build_dir, "tail", "--help")
    assert r.returncode == 0 and r.stdout.startswith(b"usage: gridbridgectl [-c FILE] tail")
    assert b"gridbridge_events" in r.stdout and b"--show-personal-data" in r.stdout
    # The tail's options are not the other commands'.
    for args in (("devices", "--device", "x"), ("reports", "--show-personal-data"),
                 ("journal", "stat", "--severity", "info"), ("decode", "--type", "x")):
        assert ctl(build_dir, *args, conf=conf).returncode == 2, args


# ---- decode --proto

def test_decode_proto(daemon, mosquitto, private_postgres, https_endpoint, build_dir,
                      tmp_path):
    pb = need_pb2()
    pg = private_postgres
    conf = tmp_path / "gridbridge.conf"
    conf.write_text(forward_config(tmp_path, mosquitto, pg, https_endpoint))
    start_forwarding(daemon, conf)
    for _, topic, payload in services.device_fixtures():
        mosquitto.publish(topic, payload, qos=1)

    def settled():
        rows, unsent = db_query(pg, "SELECT count(*), count(*) FILTER (WHERE state <> 'sent')"
                                    " FROM forward_outbox")[0]
        sent = sum(len(batch_ids(req)) for req in https_endpoint.requests)
        return rows > 0 and unsent == 0 and sent == rows
    wait_until(settled, 30, "the outbox sent")
    bodies = [req.body for req in https_endpoint.requests]

    # The forwarded bodies, as the platform got them.
    n = 0
    for body in bodies:
        r = ctl(build_dir, "decode", "--proto", stdin=body)
        assert r.returncode == 0 and r.err_lines == [], r.err_lines
        batch = pb.EventBatch()
        batch.ParseFromString(body)
        got = [json.loads(x) for x in r.stdout.decode().splitlines()]
        assert got == [to_dict(e) for e in batch.events]
        n += len(got)
    assert n >= 5, f"{n} events forwarded"

    # A single Event, as stored: from a file, '-', standard input. As it
    # is: the plate and the name are there.
    recs = {r[0]: bytes(r[1]) for r in db_query(
        pg, "SELECT event_type, record FROM events WHERE event_type IN"
            " ('vehicle_passage', 'person_passage')")}
    for rec in recs.values():
        f = tmp_path / "event.pb"
        f.write_bytes(rec)
        ev = pb.Event()
        ev.ParseFromString(rec)
        for args, stdin in (((str(f),), None), (("-",), rec), ((), rec)):
            r = ctl(build_dir, "decode", "--proto", *args, stdin=stdin)
            assert r.returncode == 0 and r.err_lines == [], (args, r.err_lines)
            assert [json.loads(x) for x in r.stdout.decode().splitlines()] == [to_dict(ev)]
    out = ctl(build_dir, "decode", "--proto", stdin=recs["vehicle_passage"]).stdout.decode()
    assert PLATE in out
    # A batch of one event is a batch.
    one = pb.EventBatch()
    one.events.add().ParseFromString(recs["person_passage"])
    r = ctl(build_dir, "decode", "--proto", stdin=one.SerializeToString())
    assert r.returncode == 0
    assert [json.loads(x) for x in r.stdout.decode().splitlines()] == [to_dict(one.events[0])]
    # Empty input: an empty batch.
    r = ctl(build_dir, "decode", "--proto", stdin=b"")
    assert r.returncode == 0 and r.stdout == b"" and r.err_lines == []

    # What is neither: exit 1, one line on stderr, nothing printed.
    no_id = pb.Event(community_id="c1", device_id="d1").SerializeToString()
    short_id = pb.Event(id=b"0123456789", device_id="d1").SerializeToString()
    bad_utf8 = pb.Event(id=bytes(16)).SerializeToString() + b"\x22\x02\xff\xfe"
    in_batch = pb.EventBatch()
    in_batch.events.add().ParseFromString(recs["person_passage"])
    in_batch.events.add().ParseFromString(no_id)
    cases = {
        "garbage": b"this is not protobuf at all \xff\xff\xff",
        "truncated": max(bodies, key=len)[:-3],
        "no id": no_id,
        "short id": short_id,
        "a batch with an event without id": in_batch.SerializeToString(),
        "not UTF-8": bad_utf8,
    }
    for what, data in cases.items():
        r = ctl(build_dir, "decode", "--proto", stdin=data)
        assert r.returncode == 1, what
        assert r.stdout == b"" and len(r.err_lines) == 1, (what, r.err_lines)
        assert r.err_lines[0].startswith("gridbridgectl: standard input: "), (what, r.err_lines)
    big = ctl(build_dir, "decode", "--proto", stdin=bytes(64 * 1024 * 1024 + 1))
    assert big.returncode == 1 and big.err_lines == [
        "gridbridgectl: standard input: larger than 64 MiB"]
    r = ctl(build_dir, "decode", "--proto", str(tmp_path / "missing.pb"))
    assert r.returncode == 1 and len(r.err_lines) == 1
    # Usage: one file at most; not with the journal's options.
    for args in (("a", "b"), ("--from", "1"), ("-d", str(tmp_path)), ("--json",)):
        assert ctl(build_dir, "decode", "--proto", *args).returncode == 2, args
