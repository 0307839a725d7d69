"""The store: every journal record ends as exactly one row in PostgreSQL.

A stream of device messages (every device class, made from the samples in
tests/fixtures/devices with varied devices, serials and times, plus 5 %
malformed: bad JSON, missing fields, topics no route takes) goes through a
real mosquitto into gridbridged, which journals it, decodes it with the
shipped routes and writes it in batches to a real PostgreSQL: decoded
records to `events`, the rest to `quarantine`, each batch in one
transaction with `ingest_checkpoint`. Checked:

  * count(events) + count(quarantine) = the journal's records, every
    message stored once, fields as the published payload says (all rows);
    the `record` bytea decoded with the .proto and `attrs` compared with
    its canonical JSON (a sample);
  * messages published twice are stored once (deterministic ids);
  * PostgreSQL crashed (pg_ctl stop -m immediate) and restarted five times,
    and down for a while (15 s; 60 s with GRIDBRIDGE_LONG_TESTS=1), during a
    stream: nothing lost, nothing twice, the checkpoint at the journal's
    last record, the journal's segments reclaimed, the outage logged once;
  * the daemon killed with SIGKILL while it writes batches: the same.

Under AddressSanitizer (the daemon is ~3x slower) the streams are smaller.
GRIDBRIDGE_STORE_MESSAGES=N sets the size of the two big streams;
GRIDBRIDGE_TEST_SEED fixes the random choices (printed on failure).
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import logfmt
import services
from ingest import JournalCtl, MessagePublisher, PublisherGroup, daemon_config, start_daemon
from services import ServiceError

CLIENT_ID = "gridbridge-store-test"
READY_TIMEOUT = 30.0
LONG = os.environ.get("GRIDBRIDGE_LONG_TESTS") == "1"
SKEW_LIMIT_S = 300          # [decode] max_clock_skew (shipped default)
TZ8 = datetime.timezone(datetime.timedelta(hours=8))
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
FIXTURES = {name: json.loads(payload) for name, _, payload in services.device_fixtures()}

STORE_READY = logfmt.Match(mod="store", msg="ready")
CAUGHT_UP = logfmt.Match(mod="pipeline", msg="caught up")
DB_DOWN = logfmt.Match(mod="store", msg="database unavailable")
DB_BACK = logfmt.Match(mod="store", msg="database available again")


# --------------------------------------------------------------------------
# sizes


def seed_of() -> int:
    return int(os.environ.get("GRIDBRIDGE_TEST_SEED", time.time_ns() % 1_000_000))


@pytest.fixture(scope="module")
def sanitized(build_dir) -> bool:
    return services.sanitized_binary(Path(build_dir) / "gridbridged")


def big_stream(sanitized: bool) -> int:
    """Messages of the two big streams: 50,000; 20,000 under ASan."""
    env = os.environ.get("GRIDBRIDGE_STORE_MESSAGES")
    if env:
        return int(env)
    return 20_000 if sanitized else 50_000


def fault_stream(sanitized: bool) -> int:
    """Messages of the streams the faults fall into."""
    return 6_000 if sanitized else 20_000


# --------------------------------------------------------------------------
# the message stream


@dataclass
class Msg:
    """One message to publish and what the store must make of it.

    key: how its row is found again. Events: (topic, device time in µs),
    or (topic, None) when the payload has no time (the row's event_time is
    then the receive time and the id depends on it: `stable` is False).
    Quarantined: ("q", topic, payload).
    """
    kind: str
    topic: str
    payload: bytes
    key: tuple
    quarantined: bool
    stable: bool = True
    # events
    community_id: str = ""
    device_id: str = ""
    device_class: str = ""
    event_type: str = ""
    severity: str = ""
    vendor: str = ""
    route: str | None = None
    event_time_us: int | None = None
    plate: str | None = None         # normalized, vehicles only
    plate_written: str | None = None
    # quarantine
    reason: str = ""


def iso8(t: int) -> str:
    """2025-03-18T07:42:15+08:00 for epoch seconds t."""
    return datetime.datetime.fromtimestamp(t, TZ8).isoformat()


def dumps(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=1).encode()


def community(d: int) -> str:
    return f"3401040501{(d % 3) + 1:02d}"


PROVINCES = "皖苏沪京浙"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


class StreamBuilder:
    """Builds a shuffled mix of every device class, 5 % malformed.

    Within a kind, message j goes to device j % D at T0 - j // D seconds, so
    no device says two things in the same second (and every id differs).
    Times are within a minute of now: no clock skew, today's partition.
    """

    # share of the valid messages, per kind
    VALID = {
        "hik_access": 20, "dahua_access": 12, "hik_heartbeat": 5, "anpr": 15,
        "camera": 8, "peephole": 8, "gateway_hb": 6, "gateway_lwt": 2,
        "z2m_state": 14, "z2m_avail": 4.8, "z2m_bridge": 0.2, "shelly": 2, "tasmota": 1,
        "report": 2,
    }
    MALFORMED_SHARE = 0.05

    def __init__(self, n: int, seed: int):
        self.n, self.rnd = n, random.Random(seed)
        self.t0 = int(time.time())
        self.counter = 0

    def _devices(self, count: int) -> int:
        return max(10, -(-count // 60))

    def build(self) -> list[Msg]:
        n_bad = round(self.n * self.MALFORMED_SHARE)
        n_good = self.n - n_bad
        total = sum(self.VALID.values())
        counts = {k: int(n_good * w / total) for k, w in self.VALID.items()}
        counts["hik_access"] += n_good - sum(counts.values())
        msgs: list[Msg] = []
        for kind, count in counts.items():
            make = getattr(self, f"_{kind}")
            devs = self._devices(count)
            for j in range(count):
                msgs.append(make(j, j % devs, self.t0 - j // devs))
        bad_makers = [self._bad_json, self._missing_field, self._unknown_topic]
        for j in range(n_bad):
            msgs.append(bad_makers[j % 3](j))
        self.rnd.shuffle(msgs)
        assert len(msgs) == self.n
        return msgs

    # ---- valid messages

    def _event(self, kind, topic, obj, *, t, route, cls, etype, sev, vendor, comm, dev,
               stable=True, payload=None, **kw) -> Msg:
        payload = payload if payload is not None else dumps(obj)
        return Msg(kind=kind, topic=topic, payload=payload,
                   key=(topic, t * 1_000_000 if stable else None), quarantined=False,
                   stable=stable, community_id=comm, device_id=dev, device_class=cls,
                   event_type=etype, severity=sev, vendor=vendor, route=route,
                   event_time_us=t * 1_000_000 if stable else None, **kw)

    def _hik_access(self, j, d, t):
        dev, comm = f"3401040501119001{d:04d}", community(d)
        o = json.loads(json.dumps(FIXTURES["gate_person_access_hikvision"]))
        denied = j % 7 == 3
        o["dateTime"] = iso8(t)
        ace = o["AccessControllerEvent"]
        ace.update(serialNo=20000 + j, frontSerialNo=19999 + j, subEventType=76 if denied else 75,
                   employeeNoString=f"B{d % 9:02d}U{d % 4}{1000 + d}-01",
                   pictureURL=f"http://10.20.0.5:8080/pic/{dev}_{t}_{j}.jpg")
        return self._event("hik_access", f"sac/{comm}/access/{dev}/event", o, t=t,
                           route="access", cls="access_gate", etype="person_passage",
                           sev="notice" if denied else "info", vendor="hikvision",
                           comm=comm, dev=dev)

    def _dahua_access(self, j, d, t):
        dev, comm = f"3401040501119002{d:04d}", community(d)
        o = json.loads(json.dumps(FIXTURES["gate_person_access_dahua"]))
        denied = j % 9 == 4
        o["Data"].update(RealUTC=t, UTC=t + 8 * 3600, CardNo=f"{0x3A000000 + j:08X}",
                         UserID=str(1000 + d), Status=0 if denied else 1)
        return self._event("dahua_access", f"sac/{comm}/access/{dev}/event", o, t=t,
                           route="access", cls="access_gate", etype="person_passage",
                           sev="notice" if denied else "info", vendor="dahua",
                           comm=comm, dev=dev)

    def _hik_heartbeat(self, j, d, t):
        dev, comm = f"3401040501119003{d:04d}", community(d)
        o = dict(FIXTURES["device_heartbeat_hikvision"], dateTime=iso8(t))
        return self._event("hik_heartbeat", f"sac/{comm}/access/{dev}/event", o, t=t,
                           route="access", cls="access_gate", etype="device_heartbeat",
                           sev="info", vendor="hikvision", comm=comm, dev=dev)

    def _anpr(self, j, d, t):
        dev, comm = f"3401040501119004{d:04d}", community(d)
        o = json.loads(json.dumps(FIXTURES["vehicle_barrier_anpr_hikvision"]))
        prov, letter = PROVINCES[j % len(PROVINCES)], LETTERS[(j // 5) % len(LETTERS)]
        digits = f"{(j * 7919) % 100000:05d}"
        written = [f"{prov}{letter}{digits}", f"{prov}{letter}·{digits}",
                   f"{prov}{letter.lower()} {digits}", f"{prov}{letter}-{digits}"][j % 4]
        o["dateTime"] = iso8(t)
        o["ANPR"]["licensePlate"] = written
        o["ANPR"]["confidenceLevel"] = 80 + j % 20
        return self._event("anpr", f"sac/{comm}/vehicle/{dev}/event", o, t=t,
                           route="vehicle", cls="vehicle_barrier", etype="vehicle_passage",
                           sev="info", vendor="hikvision", comm=comm, dev=dev,
                           plate=f"{prov}{letter}{digits}", plate_written=written)

    def _camera(self, j, d, t):
        dev, comm = f"3401040501119005{d:04d}", community(d)
        o = json.loads(json.dumps(FIXTURES["camera_alarm_high_altitude_throwing"]))
        o.update(dateTime=iso8(t), deviceId=dev, estimatedFloor=2 + j % 30,
                 floorRange=[1 + j % 30, 3 + j % 30],
                 eventId=str(uuid.uuid5(uuid.NAMESPACE_URL, f"gridbridge-test/{t}/{j}")))
        return self._event("camera", f"sac/{comm}/camera/{dev}/alarm", o, t=t,
                           route="camera", cls="camera", etype="camera_alarm",
                           sev="critical", vendor="camera", comm=comm, dev=dev)

    def _peephole(self, j, d, t):
        dev, comm = f"PH-B{d % 20:02d}U{d % 4}{1000 + d}", community(d)
        o = json.loads(json.dumps(FIXTURES["peephole_linger_event"]))
        o.update(deviceId=dev, dateTime=iso8(t), durationSec=10 + j % 50,
                 household=f"B{d % 20:02d}-U{d % 4}-{1000 + d}")
        doorbell = j % 3 == 1
        if doorbell:
            o["event"] = "doorbell"
            del o["eventCode"], o["durationSec"]
        return self._event("peephole", f"sac/{comm}/peephole/{dev}/event", o, t=t,
                           route="peephole", cls="peephole",
                           etype="peephole_doorbell" if doorbell else "peephole_linger",
                           sev="info" if doorbell else "notice", vendor="tuya",
                           comm=comm, dev=dev)

    def _gateway_hb(self, j, d, t):
        dev, comm = f"edge-gw-{d:03d}", community(d)
        o = dict(FIXTURES["gateway_heartbeat"], ts=iso8(t), uptimeSec=864211 + j,
                 devicesOnline=40 + j % 5)
        return self._event("gateway_hb", f"sac/{comm}/gateway/{dev}/status", o, t=t,
                           route="gateway", cls="gateway", etype="device_heartbeat",
                           sev="info", vendor="gateway", comm=comm, dev=dev)

    def _gateway_lwt(self, j, d, t):
        # no time in the payload: one gateway per message, so the rows stay apart
        dev, comm = f"edge-lwt-{j:05d}", community(j)
        return self._event("gateway_lwt", f"sac/{comm}/gateway/{dev}/status",
                           FIXTURES["gateway_lwt"], t=t, route="gateway", cls="gateway",
                           etype="device_offline", sev="notice", vendor="gateway",
                           comm=comm, dev=dev, stable=False)

    def _z2m_state(self, j, d, t):
        dev = f"b{d // 40:02d}/u{(d // 10) % 4}/{1000 + d}/entry_door"
        o = dict(FIXTURES["door_contact_z2m_state"], last_seen=iso8(t), contact=j % 2 == 1,
                 battery=50 + j % 50, linkquality=j % 256)
        return self._event("z2m_state", f"zigbee2mqtt/{dev}", o, t=t, route="z2m-door",
                           cls="door_sensor",
                           etype="door_closed" if j % 2 == 1 else "door_opened",
                           sev="info", vendor="zigbee2mqtt", comm="c-0001", dev=dev)

    def _z2m_avail(self, j, d, t):
        dev = f"avail/{j:05d}/entry_door"
        online = j % 2 == 0
        return self._event("z2m_avail", f"zigbee2mqtt/{dev}/availability",
                           {"state": "online" if online else "offline"}, t=t,
                           route="z2m-availability", cls="door_sensor",
                           etype="device_online" if online else "device_offline",
                           sev="info" if online else "notice", vendor="zigbee2mqtt",
                           comm="c-0001", dev=dev, stable=False)

    def _shelly(self, j, d, t):
        # plain text, no time, no serial: one sensor per message
        dev = f"shellydw2-{j:06d}"
        opened = j % 2 == 0
        return self._event("shelly", f"shellies/{dev}/sensor/state", None,
                           payload=b"open" if opened else b"close", t=t, route="shelly-door",
                           cls="door_sensor", etype="door_opened" if opened else "door_closed",
                           sev="info", vendor="shelly", comm="c-0001", dev=dev, stable=False)

    def _tasmota(self, j, d, t):
        dev = f"tasmota_{j:06X}"
        online = j % 2 == 0
        return self._event("tasmota", f"tele/{dev}/LWT", None,
                           payload=b"Online" if online else b"Offline", t=t, route="tasmota", cls="door_sensor",
                           etype="device_online" if online else "device_offline",
                           sev="info" if online else "notice", vendor="tasmota",
                           comm="c-0001", dev=dev, stable=False)

    def _z2m_bridge(self, j, d, t):
        # One bridge: the payloads differ ("n") only so that no two of them,
        # journaled in the same microsecond, could ever get the same id.
        return self._event("z2m_bridge", "zigbee2mqtt/bridge/state",
                           {"state": "offline", "n": j}, t=t, route="z2m-bridge",
                           cls="gateway", etype="device_offline", sev="notice",
                           vendor="zigbee2mqtt", comm="c-0001", dev="zigbee2mqtt/bridge",
                           stable=False)

    def _report(self, j, d, t):
        # a QR code per door; each message another report, in turn opened,
        # handled and closed, with the times in the forms of the samples
        dev, comm = f"QR-B{d % 20:02d}-U{d % 4}-{d:03d}", community(d)
        etype = ("report_opened", "report_handled", "report_closed")[j % 3]
        o = json.loads(json.dumps(FIXTURES[f"resident_{etype}"]))
        o.update(report_id=f"RP-{self.t0}-{j:06d}", door=f"B{d % 20:02d}-U{d % 4}-east")
        if etype == "report_opened":
            o.update(opened_at=iso8(t), deadline=iso8(t + 86400))
        elif etype == "report_handled":
            o.update(opened_at=iso8(t - 3600), deadline=iso8(t + 82800), handled_at=iso8(t))
        else:
            o.update(opened_at=(t - 7200) * 1000, deadline=(t + 79200) * 1000,
                     handled_at=(t - 600) * 1000, closed_at=t * 1000)
        return self._event("report", f"sac/{comm}/report/{dev}/event", o, t=t,
                           route="resident-reports", cls="report_point", etype=etype,
                           sev="info", vendor="report", comm=comm, dev=dev)

    # ---- malformed messages (each payload unique: the key is the payload)

    def _quarantined(self, kind, topic, payload, reason, route) -> Msg:
        return Msg(kind=kind, topic=topic, payload=payload, key=("q", topic, payload),
                   quarantined=True, reason=reason, route=route)

    def _bad_json(self, j):
        d = j % 97
        comm = community(d)
        t = self.t0 - j % 60
        choices = [
            (f"sac/{comm}/access/3401040501119001{d:04d}/event", "access",
             f'{{"eventType":"AccessControllerEvent","dateTime":"{iso8(t)}","n":{j},'),
            (f"sac/{comm}/vehicle/3401040501119004{d:04d}/event", "vehicle",
             f'{{"eventType":"ANPR","ANPR":{{"licensePlate":"皖A{j:05d}"}} "n":{j}}}'),
            (f"sac/{comm}/camera/3401040501119005{d:04d}/alarm", "camera",
             f'{{"eventType":"highAltitudeThrowing",n:{j}}}'),
            (f"sac/{comm}/peephole/PH-B00U0{1000 + d}/event", "peephole",
             f'{{"event":"linger","n":{j}'),
            (f"zigbee2mqtt/b00/u0/{1000 + d}/entry_door", "z2m-door",
             f'{{"contact":true,"n":{j}]'),
        ]
        topic, route, text = choices[j % len(choices)]
        return self._quarantined("bad_json", topic, text.encode(), "bad_json", route)

    def _missing_field(self, j):
        d = j % 89
        comm = community(d)
        t = self.t0 - j % 60
        k = j % 7
        if k == 0:
            o = json.loads(json.dumps(FIXTURES["gate_person_access_hikvision"]))
            del o["eventType"]
            o["AccessControllerEvent"]["serialNo"] = 90000 + j
            topic, route, field_ = f"sac/{comm}/access/3401040501119001{d:04d}/event", \
                "access", "eventType"
        elif k == 1:
            o = json.loads(json.dumps(FIXTURES["gate_person_access_dahua"]))
            del o["Data"]["Status"]
            o["Data"]["RealUTC"] = t - j
            topic, route, field_ = f"sac/{comm}/access/3401040501119002{d:04d}/event", \
                "access", "Status"
        elif k == 2:
            o = dict(FIXTURES["camera_alarm_high_altitude_throwing"], dateTime=iso8(t), n=j)
            del o["eventType"]
            topic, route, field_ = f"sac/{comm}/camera/3401040501119005{d:04d}/alarm", \
                "camera", "eventType"
        elif k == 3:
            o = json.loads(json.dumps(FIXTURES["vehicle_barrier_anpr_hikvision"]))
            del o["ANPR"]["licensePlate"]
            o["dateTime"], o["n"] = iso8(t), j
            topic, route, field_ = f"sac/{comm}/vehicle/3401040501119004{d:04d}/event", \
                "vehicle", "licensePlate"
        elif k == 4:
            o = {"deviceId": f"PH-B00U0{1000 + d}", "dateTime": iso8(t), "durationSec": j}
            topic, route, field_ = f"sac/{comm}/peephole/PH-B00U0{1000 + d}/event", \
                "peephole", "event"
        elif k == 5:
            o = {"ts": iso8(t), "uptimeSec": j, "fw": "edge-gw 1.4.2"}
            topic, route, field_ = f"sac/{comm}/gateway/edge-gw-{d:03d}/status", \
                "gateway", "state"
        else:
            o = dict(FIXTURES["door_contact_z2m_state"], last_seen=iso8(t), n=j)
            del o["contact"]
            topic, route, field_ = f"zigbee2mqtt/b00/u0/{1000 + d}/entry_door", \
                "z2m-door", "contact"
        return self._quarantined("missing_field", topic, dumps(o), f"missing_field:{field_}",
                                 route)

    def _unknown_topic(self, j):
        d = j % 83
        comm = community(d)
        t = self.t0 - j % 60
        o = dict(FIXTURES["device_heartbeat_hikvision"], dateTime=iso8(t), n=j)
        topic = [f"sac/{comm}/elevator/EL-{d:03d}/event",
                 f"sac/{comm}/access/3401040501119001{d:04d}/config",
                 f"sac/{comm}/parking/{d}/space/{j % 40}/state"][j % 3]
        return self._quarantined("no_route", topic, dumps(o), "no_route", None)


class Stream:
    """The messages (distinct) and what is published (with repeats)."""

    def __init__(self, n: int, seed: int, repeats: int = 0):
        self.seed = seed
        self.messages = StreamBuilder(n, seed).build()
        self.by_key = {m.key: m for m in self.messages}
        # rows per key: 1, except the bridge's (one device, no time in the payload)
        self.want = collections.Counter(m.key for m in self.messages)
        assert all(n == 1 or not m.stable for m in self.messages
                   for n in (self.want[m.key],)), "two messages with one key"
        rnd = random.Random(seed + 1)
        self.published: list[Msg] = list(self.messages)
        self.repeated: list[Msg] = []
        if repeats:
            # Messages whose id does not depend on the receive time: a
            # repeat must not make a second row.
            pool = [m for m in self.messages if not m.quarantined and m.stable]
            self.repeated = rnd.sample(pool, repeats)
            for m in self.repeated:
                self.published.insert(rnd.randrange(len(self.published) + 1), m)

    def __len__(self) -> int:
        return len(self.messages)

    def kinds(self) -> collections.Counter:
        return collections.Counter(m.kind for m in self.messages)

    def publishers(self, broker, n: int = 4, rate: float | None = None,
                   window: int = 100, part: slice = slice(None),
                   name: str = "s") -> PublisherGroup:
        """n MessagePublishers for self.published[part], round robin."""
        msgs = self.published[part]
        chunks = [[(m.topic, m.payload) for m in msgs[k::n]] for k in range(n)]
        return PublisherGroup.of(
            MessagePublisher(broker, f"{name}{k}", chunk, rate=(rate / n if rate else None),
                             window=window)
            for k, chunk in enumerate(chunks))


# --------------------------------------------------------------------------
# the daemon, the journal, the database


def store_config(tmp_path, broker, pg, store=None, journal=None) -> str:
    return daemon_config(
        tmp_path, broker, client_id=CLIENT_ID, subscribe=("sac/#", "zigbee2mqtt/#", "shellies/#", "tele/#"),
        journal={"segment_size": "64K", **(journal or {})}, store_db=pg, store=store,
        routes=True)


def ctl_stat(ctl: JournalCtl) -> dict:
    """`journal stat`, retried: a segment may be deleted while it is read."""
    err = None
    for _ in range(10):
        try:
            return ctl.stat()
        except ServiceError as e:
            err = e
            time.sleep(0.1)
    raise err


@contextlib.contextmanager
def db_conn(pg, **kwargs):
    """A connection as the gridbridge role, committed (or rolled back) and closed."""
    conn = pg.connect(**kwargs)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def db_query(pg, sql, *args):
    with db_conn(pg) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def db_progress(pg) -> tuple[int, int]:
    """(events + quarantine rows, this node's ingest_checkpoint) or (-1, -1)."""
    try:
        rows = db_query(pg, """SELECT (SELECT count(*) FROM events WHERE vendor <> 'gridbridge')
                                        + (SELECT count(*) FROM quarantine),
                                      (SELECT max(journal_seq) FROM ingest_checkpoint
                                        WHERE journal_node = %s)""", CLIENT_ID)
    except Exception:  # down, restarting, schema not there yet
        return -1, -1
    n, cp = rows[0]
    return n, cp if cp is not None else 0


def assert_checkpoint_atomic(pg) -> int:
    """The checkpoint commits with its batch: in one snapshot, every journal
    record up to ingest_checkpoint has its row. Only for streams where each
    journal record makes exactly one row (no message journaled twice).
    Returns the checkpoint."""
    with db_conn(pg) as conn:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            cur.execute("SELECT coalesce(max(journal_seq), 0) FROM ingest_checkpoint "
                        "WHERE journal_node = %s", (CLIENT_ID,))
            cp = cur.fetchone()[0]
            cur.execute("""SELECT (SELECT count(*) FROM events WHERE journal_seq <= %(cp)s
                                     AND vendor <> 'gridbridge'),
                                  (SELECT count(*) FROM quarantine WHERE journal_seq <= %(cp)s)""",
                        {"cp": cp})
            ev, q = cur.fetchone()
        conn.rollback()
    assert ev + q == cp, f"ingest_checkpoint is {cp} but only {ev} events + {q} quarantined " \
                         f"rows have journal_seq <= {cp}: the checkpoint ran ahead of the rows"
    return cp


def wait_db_progress(pg, daemon, beyond: int, timeout: float) -> int:
    """Wait until the checkpoint in the database passed `beyond`: batches are flowing."""
    deadline = time.monotonic() + timeout
    while True:
        _, cp = db_progress(pg)
        if cp > beyond:
            return cp
        if time.monotonic() > deadline:
            raise TimeoutError(f"the database checkpoint stayed at {cp} (<= {beyond}) for "
                               f"{timeout}s\n" + "\n".join(daemon.lines[-20:]))
        if not daemon.running:
            raise AssertionError(f"the daemon exited with {daemon.returncode}\n"
                                 + "\n".join(daemon.lines[-20:]))
        time.sleep(0.05)


def wait_stored(pg, ctl, daemon, min_seq: int, min_rows: int, timeout: float) -> dict:
    """Wait until the daemon is idle with everything stored: the journal holds
    at least min_seq records, the database at least min_rows rows, the
    checkpoint in the database and in the journal equal the journal's last
    seq, and that stays so for a second. Returns the last `journal stat`."""
    deadline = time.monotonic() + timeout
    stable_since, last = None, None
    while True:
        st = ctl_stat(ctl)
        rows, cp = db_progress(pg)
        state = (st["last_seq"], st["checkpoint_seq"], cp, rows)
        done = (st["last_seq"] >= min_seq and rows >= min_rows
                and st["checkpoint_seq"] == st["last_seq"] == cp)
        if done and state == last:
            if time.monotonic() - stable_since >= 1.0:
                return st
        else:
            stable_since = time.monotonic()
        last = state
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"not everything stored within {timeout}s: journal last_seq "
                f"{st['last_seq']} (want >= {min_seq}), journal checkpoint "
                f"{st['checkpoint_seq']}, database checkpoint {cp}, rows {rows} "
                f"(want >= {min_rows}), segments {st['segments']}\n--- last daemon lines:\n"
                + "\n".join(daemon.lines[-30:]))
        if not daemon.running:
            raise AssertionError(f"the daemon exited with {daemon.returncode}\n"
                                 + "\n".join(daemon.lines[-30:]))
        time.sleep(0.25)


def wait_segments_reclaimed(ctl, daemon, timeout: float = 10.0) -> dict:
    """Reclaimed: at most the last two segments are left, which the journal
    keeps while they hold any of its last 65,536 records (the next start's
    recall of messages stored whose PUBACK may not have left)."""
    deadline = time.monotonic() + timeout
    while True:
        st = ctl_stat(ctl)
        if st["segments"] <= 2:
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"journal segments not reclaimed behind the checkpoint "
                                 f"within {timeout}s: {st}")
        time.sleep(0.2)


# --------------------------------------------------------------------------
# reading and checking the rows

EVENT_COLS = ("id", "event_time", "received_at", "community_id", "device_id", "device_class",
              "event_type", "severity", "vendor", "route", "source_topic", "journal_node",
              "journal_seq", "clock_skewed", "plate")
QUAR_COLS = ("journal_node", "journal_seq", "received_at", "topic", "raw", "reason", "route")


def us_of(dt: datetime.datetime) -> int:
    return (dt - EPOCH) // datetime.timedelta(microseconds=1)


def fetch_rows(pg) -> tuple[list[dict], list[dict]]:
    with db_conn(pg) as conn, conn.cursor() as cur:
        # derived events (vendor gridbridge) are no message's
        cur.execute(f"SELECT {', '.join(EVENT_COLS)} FROM events WHERE vendor <> 'gridbridge'")
        events = [dict(zip(EVENT_COLS, r)) for r in cur.fetchall()]
        cur.execute(f"SELECT {', '.join(QUAR_COLS)} FROM quarantine")
        quarantine = [dict(zip(QUAR_COLS, r)) for r in cur.fetchall()]
    for q in quarantine:
        q["raw"] = bytes(q["raw"])
    return events, quarantine


def row_key(stream: Stream, e: dict) -> tuple:
    k = (e["source_topic"], us_of(e["event_time"]))
    return k if k in stream.by_key else (e["source_topic"], None)


@dataclass
class Outcome:
    events: list = field(default_factory=list)
    quarantine: list = field(default_factory=list)
    counts: collections.Counter = field(default_factory=collections.Counter)  # rows per key
    extra: int = 0            # rows beyond one per message

    @property
    def rows(self) -> int:
        return len(self.events) + len(self.quarantine)


def check_rows(stream: Stream, pg, *, last_seq: int, t_from: float, t_to: float,
               redelivery: bool = False) -> Outcome:
    """Every row against the message it came from; each message's rows counted.

    redelivery=False: every message has exactly one row. redelivery=True
    (the daemon was killed: the broker sends again what it had not seen
    acknowledged, which lands in the journal a second time): a message whose
    id does not depend on the receive time still has exactly one row;
    quarantined messages and messages without a device time may have more,
    one per journal record. Either way no journal record makes two rows.
    """
    events, quarantine = fetch_rows(pg)
    out = Outcome(events, quarantine)
    problems: list[str] = []

    def bad(text):
        if len(problems) < 30:
            problems.append(text)

    lo_us, hi_us = int((t_from - 5) * 1e6), int((t_to + 5) * 1e6)
    for e in events:
        key = row_key(stream, e)
        m = stream.by_key.get(key)
        if m is None or m.quarantined:
            bad(f"event row of no published message: {e}")
            continue
        out.counts[key] += 1
        want = dict(community_id=m.community_id, device_id=m.device_id,
                    device_class=m.device_class, event_type=m.event_type,
                    severity=m.severity, vendor=m.vendor, route=m.route,
                    source_topic=m.topic, journal_node=CLIENT_ID, plate=m.plate)
        got = {k: e[k] for k in want}
        if got != want:
            diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
            bad(f"{m.kind} {m.topic}: (stored, published) differ: {diff}")
        rec_us, ev_us = us_of(e["received_at"]), us_of(e["event_time"])
        if not lo_us <= rec_us <= hi_us:
            bad(f"{m.kind} {m.topic}: received_at {e['received_at']} outside the test")
        if m.stable:
            if ev_us != m.event_time_us:
                bad(f"{m.kind} {m.topic}: event_time {e['event_time']} != the payload's "
                    f"{datetime.datetime.fromtimestamp(m.event_time_us / 1e6, TZ8)}")
        elif ev_us != rec_us:
            bad(f"{m.kind} {m.topic}: no time in the payload, but event_time "
                f"{e['event_time']} != received_at {e['received_at']}")
        skew = abs(ev_us - rec_us) / 1e6
        if abs(skew - SKEW_LIMIT_S) > 2 and e["clock_skewed"] != (skew > SKEW_LIMIT_S):
            bad(f"{m.kind} {m.topic}: clock_skewed {e['clock_skewed']} with a skew of {skew}s")
        if not 1 <= e["journal_seq"] <= last_seq:
            bad(f"{m.kind} {m.topic}: journal_seq {e['journal_seq']} outside 1..{last_seq}")
        u = uuid.UUID(e["id"])
        if u.version != 8 or u.variant != uuid.RFC_4122:
            bad(f"{m.kind} {m.topic}: id {u} is not a UUIDv8")

    for q in quarantine:
        key = ("q", q["topic"], q["raw"])
        m = stream.by_key.get(key)
        if m is None:
            bad(f"quarantine row of no malformed message: {dict(q, raw=q['raw'][:80])}")
            continue
        out.counts[key] += 1
        want = dict(reason=m.reason, route=m.route, journal_node=CLIENT_ID)
        got = {k: q[k] for k in want}
        if got != want:
            bad(f"quarantined {m.topic} {m.payload[:60]!r}: (stored, expected) "
                f"{ {k: (got[k], want[k]) for k in want if got[k] != want[k]} }")
        if not lo_us <= us_of(q["received_at"]) <= hi_us:
            bad(f"quarantined {m.topic}: received_at {q['received_at']} outside the test")
        if not 1 <= q["journal_seq"] <= last_seq:
            bad(f"quarantined {m.topic}: journal_seq {q['journal_seq']} outside 1..{last_seq}")

    # one row per journal record at most
    seqs = collections.Counter([e["journal_seq"] for e in events]
                               + [q["journal_seq"] for q in quarantine])
    twice = [s for s, n in seqs.items() if n > 1]
    if twice:
        bad(f"{len(twice)} journal record(s) stored as more than one row, "
            f"e.g. seq {sorted(twice)[:10]}")
    ids = collections.Counter(e["id"] for e in events)
    dup_ids = [i for i, n in ids.items() if n > 1]
    if dup_ids:
        bad(f"{len(dup_ids)} event id(s) stored more than once, e.g. {dup_ids[:5]}")

    missing = collections.Counter()
    for key, want in stream.want.items():
        if out.counts[key] < want:
            missing[stream.by_key[key].kind] += want - out.counts[key]
    if missing:
        eg = [(m.topic, m.payload[:60]) for m in stream.messages
              if out.counts[m.key] < stream.want[m.key]][:3]
        bad(f"{sum(missing.values())} message(s) without a row: {dict(missing)}, e.g. {eg}")
    for key, n in out.counts.items():
        want = stream.want[key]
        if n > want:
            m = stream.by_key[key]
            out.extra += n - want
            # A message delivered again is the same event, with or without a
            # device time (repeats.h); only a quarantined one is quarantined
            # again (a row per journal record).
            if not redelivery or not m.quarantined:
                bad(f"{m.kind} {m.topic}: {n} rows for {want} message(s) "
                    f"({'event time ' + str(m.event_time_us) if m.stable else 'no device time'})")

    assert not problems, (f"seed {stream.seed}: {len(events)} events + {len(quarantine)} "
                          f"quarantined rows, journal last_seq {last_seq}:\n  "
                          + "\n  ".join(problems))
    return out


# ---- the record bytea and attrs, decoded with the .proto

_pb2_module = None


def event_pb2():
    """gridbridge.v1 event_pb2 generated with protoc, or None (no protoc / protobuf)."""
    global _pb2_module
    if _pb2_module is not None:
        return _pb2_module
    protoc = shutil.which("protoc")
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        return None
    if protoc is None:
        return None
    out = tempfile.mkdtemp(prefix="gridbridge-pb2-")
    try:
        subprocess.run([protoc, f"-I{services.REPO_ROOT / 'proto'}", f"--python_out={out}",
                        "gridbridge/v1/event.proto"], check=True, capture_output=True)
        path = Path(out) / "gridbridge" / "v1" / "event_pb2.py"
        spec = importlib.util.spec_from_file_location("gridbridge_v1_event_pb2", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    _pb2_module = mod
    return mod


def enum_text(enum, value: int, prefix: str) -> str:
    """DeviceClass 1 -> 'access_gate'."""
    return enum.Name(value)[len(prefix):].lower()


def check_records(stream: Stream, pg, per_kind: int = 25) -> int:
    """Decode `record` of a sample of rows with the .proto: the same as the
    row and the published payload; `attrs` is the record's canonical JSON.
    Returns how many rows were checked."""
    pb = event_pb2()
    with db_conn(pg) as conn, conn.cursor() as cur:
        cur.execute("""SELECT id, event_time, received_at, source_topic, device_class,
                              event_type, severity, clock_skewed, plate, journal_seq, route,
                              record, attrs FROM (
                         SELECT *, row_number() OVER (PARTITION BY route, event_type
                                                      ORDER BY journal_seq) AS k
                         FROM events WHERE vendor <> 'gridbridge') s WHERE k <= %s""",
                    (per_kind,))
        rows = cur.fetchall()
    assert rows
    problems = []
    for (id_, etime, rtime, topic, cls, etype, sev, skewed, plate, seq, route, record,
         attrs) in rows:
        e = {"source_topic": topic, "event_time": etime}
        m = stream.by_key[row_key(stream, e)]
        if attrs is None:
            problems.append(f"{m.kind} {topic}: attrs is NULL with attrs = true")
        if pb is None:
            # no protobuf: at least the JSON
            if attrs is not None and (attrs.get("deviceId"), attrs.get("communityId")) != (
                    m.device_id, m.community_id):
                problems.append(f"{m.kind} {topic}: attrs {attrs}")
            continue
        ev = pb.Event()
        ev.ParseFromString(bytes(record))
        got = {
            "id": str(uuid.UUID(bytes=ev.id)) if len(ev.id) == 16 else ev.id,
            "event_time_us": ev.event_time_us, "received_time_us": ev.received_time_us,
            "community_id": ev.community_id, "device_id": ev.device_id,
            "device_class": enum_text(pb.DeviceClass, ev.device_class, "DEVICE_CLASS_"),
            "event_type": enum_text(pb.EventType, ev.event_type, "EVENT_TYPE_"),
            "severity": enum_text(pb.Severity, ev.severity, "SEVERITY_"),
            "source_topic": ev.source_topic, "vendor": ev.vendor, "route": ev.route,
            "journal_seq": ev.journal_seq, "clock_skewed": ev.clock_skewed,
        }
        want = {
            "id": id_, "event_time_us": us_of(etime), "received_time_us": us_of(rtime),
            "community_id": m.community_id, "device_id": m.device_id,
            "device_class": cls, "event_type": etype, "severity": sev,
            "source_topic": m.topic, "vendor": m.vendor, "route": m.route,
            "journal_seq": seq, "clock_skewed": skewed,
        }
        if got != want:
            problems.append(f"{m.kind} {topic}: record vs (row, payload): "
                            f"{ {k: (got[k], want[k]) for k in want if got[k] != want[k]} }")
        if m.kind == "anpr":
            if (ev.vehicle.plate, ev.vehicle.plate_normalized, plate) != (
                    m.plate_written, m.plate, m.plate):
                problems.append(f"plate: record {ev.vehicle.plate!r}/"
                                f"{ev.vehicle.plate_normalized!r}, row {plate!r}, "
                                f"published {m.plate_written!r}")
            conf = json.loads(m.payload)["ANPR"]["confidenceLevel"]
            if ev.vehicle.confidence.value != conf:
                problems.append(f"ANPR confidence {ev.vehicle.confidence.value} != {conf}")
        elif m.kind == "camera":
            o = json.loads(m.payload)
            if (ev.camera_alarm.vendor_event_id, ev.camera_alarm.estimated_floor.value) != (
                    o["eventId"], o["estimatedFloor"]):
                problems.append(f"camera alarm body {ev.camera_alarm} vs {o['eventId']}")
        elif m.kind == "report":
            o = json.loads(m.payload)
            r = ev.report
            if (r.report_id, r.door, r.building, r.category) != (
                    o["report_id"], o["door"], o["building"], o["category"]) or \
                    ev.event_time_us != m.event_time_us or r.opened_us == 0 or \
                    r.deadline_us <= r.opened_us:
                problems.append(f"report body {r} vs {o}")
        elif m.kind == "hik_access":
            o = json.loads(m.payload)["AccessControllerEvent"]
            if ev.person.person_ref != o["employeeNoString"]:
                problems.append(f"person_ref {ev.person.person_ref!r} != "
                                f"{o['employeeNoString']!r}")
        if attrs is not None:
            from google.protobuf import json_format
            canonical = json_format.MessageToDict(ev)
            if attrs != canonical:
                diff = {k: (attrs.get(k), canonical.get(k))
                        for k in set(attrs) | set(canonical) if attrs.get(k) != canonical.get(k)}
                problems.append(f"{m.kind} {topic}: attrs is not the record's canonical "
                                f"JSON: (attrs, canonical) {diff}")
    assert not problems, f"{len(problems)} of {len(rows)} sampled rows:\n  " + \
        "\n  ".join(problems[:20])
    return len(rows)


def check_final_state(pg, ctl, st: dict) -> None:
    """After idle: ingest_checkpoint = journal last seq = journal checkpoint."""
    cp = db_query(pg, "SELECT journal_node, journal_seq FROM ingest_checkpoint")
    assert cp == [(CLIENT_ID, st["last_seq"])], (cp, st)
    assert st["checkpoint_seq"] == st["last_seq"], st
    st2 = wait_segments_reclaimed(ctl, None)
    assert st2["last_seq"] == st["last_seq"] and st2["checkpoint_seq"] == st["last_seq"], st2


def assert_caught_up_since(daemon, mark: int, what: str) -> str:
    """A "caught up" line at info after line `mark` (everything is stored by now)."""
    try:
        line = daemon.wait_log(CAUGHT_UP, since=mark, timeout=30)
    except TimeoutError:
        seen = logfmt.select(daemon.lines, CAUGHT_UP)
        raise AssertionError(
            f'no mod=pipeline msg="caught up" {what}, although everything is stored '
            f'(checkpoint = the journal\'s last seq); the "caught up" lines of this process: '
            f'{seen}\n--- the daemon\'s lines from there:\n'
            + "\n".join(daemon.lines[mark:][-40:])) from None
    assert logfmt.fields(line)["level"] == "info", line
    return line


# --------------------------------------------------------------------------
# 1. a big mixed stream, stored once


def test_mixed_stream_every_message_stored_once(daemon, ingest_broker, private_postgres,
                                                 build_dir, tmp_path, sanitized, report):
    n = big_stream(sanitized)
    seed = seed_of()
    stream = Stream(n, seed)
    pg = private_postgres
    conf = daemon.write_config(store_config(
        tmp_path, ingest_broker, pg,
        store={"batch_rows": 500, "batch_bytes": "1M", "batch_ms": 100, "max_inflight": 4,
               "attrs": "true"}))
    ctl = JournalCtl(build_dir, conf=conf, log_path=daemon.dir / "gridbridgectl.log")
    t0 = time.time()
    mark = start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    daemon.wait_log(STORE_READY, timeout=READY_TIMEOUT)

    m0 = time.monotonic()
    checkpoints = []
    with stream.publishers(ingest_broker) as pubs:
        pubs.start()
        while not pubs.done_publishing and time.monotonic() - m0 < 300:
            checkpoints.append(assert_checkpoint_atomic(pg))
            time.sleep(0.2)
        acked = pubs.finish(timeout=300)
        assert acked == pubs.expected()
    t_pub = time.monotonic() - m0
    st = wait_stored(pg, ctl, daemon, min_seq=n, min_rows=n, timeout=300)
    t_stored = time.monotonic() - m0
    t1 = time.time()

    assert st["last_seq"] == n, f"{st['last_seq']} journal records for {n} messages"
    out = check_rows(stream, pg, last_seq=st["last_seq"], t_from=t0, t_to=t1)
    assert out.rows == n == st["last_seq"]
    seqs = sorted([e["journal_seq"] for e in out.events]
                  + [q["journal_seq"] for q in out.quarantine])
    assert seqs == list(range(1, n + 1))
    n_bad = sum(1 for m in stream.messages if m.quarantined)
    assert len(out.quarantine) == n_bad and len(out.events) == n - n_bad
    reasons = collections.Counter(q["reason"] for q in out.quarantine)
    assert reasons == collections.Counter(m.reason for m in stream.messages if m.quarantined)
    classes = {e["device_class"] for e in out.events}
    assert classes == {"access_gate", "vehicle_barrier", "camera", "door_sensor", "peephole",
                       "gateway", "report_point"}, classes
    assert db_query(pg, "SELECT count(*) - count(DISTINCT id) FROM events") == [(0,)]
    sampled = check_records(stream, pg)
    check_final_state(pg, ctl, st)
    # the daemon connects to the broker once the database is ready: the
    # "caught up" of the start may come before the "subscribed" line
    assert_caught_up_since(daemon, 0, "after the start")
    report(f"{n} messages ({len(out.events)} events, {len(out.quarantine)} quarantined, "
           f"seed {seed}): published in {t_pub:.1f}s, all stored after {t_stored:.1f}s "
           f"({n / t_stored:.0f}/s); {sampled} records decoded with the .proto")
    assert daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 2. 1,000 messages published twice


def test_messages_published_twice_are_stored_once(daemon, ingest_broker, private_postgres,
                                                  build_dir, tmp_path, sanitized, report):
    n, repeats = big_stream(sanitized), 1000
    seed = seed_of()
    stream = Stream(n, seed, repeats=repeats)
    pg = private_postgres
    conf = daemon.write_config(store_config(tmp_path, ingest_broker, pg))
    ctl = JournalCtl(build_dir, conf=conf, log_path=daemon.dir / "gridbridgectl.log")
    t0 = time.time()
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    daemon.wait_log(STORE_READY, timeout=READY_TIMEOUT)

    with stream.publishers(ingest_broker) as pubs:
        pubs.start()
        acked = pubs.finish(timeout=300)
        assert acked == pubs.expected()
    published = len(stream.published)
    assert published == n + repeats
    st = wait_stored(pg, ctl, daemon, min_seq=published, min_rows=n, timeout=300)
    assert st["last_seq"] == published, f"{st['last_seq']} journal records for " \
                                        f"{published} messages published"
    out = check_rows(stream, pg, last_seq=st["last_seq"], t_from=t0, t_to=time.time())
    assert out.rows == n == published - repeats, \
        f"{out.rows} rows for {n} distinct messages ({published} published)"
    for m in stream.repeated:
        assert out.counts[m.key] == 1, m
    assert db_query(pg, "SELECT count(*) - count(DISTINCT id) FROM events") == [(0,)]
    check_final_state(pg, ctl, st)
    report(f"{published} published ({repeats} twice), {out.rows} rows, seed {seed}")
    assert daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 3. the database crashing and going away during a stream


def outage_lines(daemon, since: int = 0) -> tuple[list[str], list[str]]:
    lines = daemon.lines[since:]
    return logfmt.select(lines, DB_DOWN), logfmt.select(lines, DB_BACK)


def test_postgres_crash_restart_5_times_during_stream(daemon, ingest_broker, private_postgres,
                                                     build_dir, tmp_path, sanitized, report):
    """pg_ctl stop -m immediate (a crash: WAL recovery at the start) five times
    while batches are in flight; the daemon keeps journaling, reconnects,
    resends what was not confirmed. Nothing lost, nothing twice."""
    n = fault_stream(sanitized)
    seed = seed_of()
    rnd = random.Random(seed)
    stream = Stream(n, seed)
    pg = private_postgres
    conf = daemon.write_config(store_config(tmp_path, ingest_broker, pg))
    ctl = JournalCtl(build_dir, conf=conf, log_path=daemon.dir / "gridbridgectl.log")
    t0 = time.time()
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    daemon.wait_log(STORE_READY, timeout=READY_TIMEOUT)
    mark0 = len(daemon.lines)

    crashes, moments, recovered = 5, [], []
    rate = n / 30
    with stream.publishers(ingest_broker, rate=rate) as pubs:
        pubs.start()
        cp = 0
        back = mark0
        for i in range(crashes):
            # batches are flowing: the checkpoint moved since the database came back
            cp = wait_db_progress(pg, daemon, cp, timeout=60)
            time.sleep(rnd.uniform(0.05, 0.5))
            moments.append((round(time.time() - t0, 2), pubs.published_count(), cp))
            pg.stop(mode="immediate")
            time.sleep(rnd.uniform(0.2, 1.5))
            pg.start()
            recovered.append(assert_checkpoint_atomic(pg))
            line = daemon.wait_log(DB_BACK, since=back, timeout=60)
            back = daemon.lines.index(line, back) + 1
        acked = pubs.finish(timeout=300)
        assert acked == pubs.expected()
    st = wait_stored(pg, ctl, daemon, min_seq=n, min_rows=n, timeout=300)
    assert st["last_seq"] == n, f"{st['last_seq']} journal records for {n} messages"
    out = check_rows(stream, pg, last_seq=st["last_seq"], t_from=t0, t_to=time.time())
    assert out.rows == n
    check_final_state(pg, ctl, st)

    down, up = outage_lines(daemon, mark0)
    outages = [int(logfmt.fields(x)["outage_ms"]) for x in up]
    report(f"postgres stop -m immediate x{crashes} (seed {seed}; at s/published/checkpoint "
           f"{moments}; checkpoint after recovery {recovered}): {n} rows, outages logged "
           f"{outages} ms")
    assert len(down) == crashes, f"{len(down)} 'database unavailable' lines for {crashes} " \
                                 f"crashes:\n" + "\n".join(down)
    assert len(up) == crashes, "\n".join(up)
    for x in down:
        assert x.startswith("<4>level=warn "), x
    for x in up:
        assert x.startswith("<6>level=info "), x
    assert all(ms > 0 for ms in outages), up
    # the backlog of the last outage stored: "caught up" after it
    assert_caught_up_since(daemon, back - 1, "after the last outage")
    assert daemon.stop(timeout=30) == 0


def test_database_down_during_stream(daemon, ingest_broker, private_postgres, build_dir,
                                     tmp_path, sanitized, report):
    """The database away for 15 s (60 s with GRIDBRIDGE_LONG_TESTS=1, the
    figure of the acceptance test) while messages keep coming: they wait in
    the journal; the outage is logged once at warn, its end at info with
    outage_ms; then the backlog is stored ("caught up") and the journal's
    segments are reclaimed."""
    down_s = 60 if LONG else 15
    n = fault_stream(sanitized)
    seed = seed_of()
    stream = Stream(n, seed)
    pg = private_postgres
    conf = daemon.write_config(store_config(tmp_path, ingest_broker, pg))
    ctl = JournalCtl(build_dir, conf=conf, log_path=daemon.dir / "gridbridgectl.log")
    t0 = time.time()
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    daemon.wait_log(STORE_READY, timeout=READY_TIMEOUT)

    # A tenth first, stored and "caught up": the daemon has been idle once
    # before the outage, so the "caught up" after it is the outage's own.
    first = n // 10
    with stream.publishers(ingest_broker, part=slice(0, first), name="a") as pubs:
        pubs.start()
        assert pubs.finish(timeout=120) == pubs.expected()
    wait_stored(pg, ctl, daemon, min_seq=first, min_rows=first, timeout=120)
    assert_caught_up_since(daemon, 0, "after the start")

    rest = n - first
    with stream.publishers(ingest_broker, rate=rest / (down_s + 10), part=slice(first, None),
                           name="b") as pubs:
        pubs.start()
        wait_db_progress(pg, daemon, first, timeout=60)
        time.sleep(1.0)
        mark = len(daemon.lines)
        stopped_at = time.monotonic()
        pg.stop(mode="fast")
        warn, warned_at = daemon.wait_log_timed(DB_DOWN, since=mark, timeout=30)
        # the journal keeps growing while the database is away
        before = ctl_stat(ctl)
        time.sleep(max(0.0, down_s - (time.monotonic() - stopped_at)))
        during = ctl_stat(ctl)
        start_at = time.monotonic()
        pg.start()
        started_at = time.monotonic()
        assert_checkpoint_atomic(pg)
        back, back_at = daemon.wait_log_timed(DB_BACK, since=mark, timeout=60)
        acked = pubs.finish(timeout=300)
        assert acked == pubs.expected()
    assert during["last_seq"] > before["last_seq"], (before, during)
    assert during["checkpoint_seq"] <= before["last_seq"], (before, during)
    st = wait_stored(pg, ctl, daemon, min_seq=n, min_rows=n, timeout=300)
    assert st["last_seq"] == n
    out = check_rows(stream, pg, last_seq=st["last_seq"], t_from=t0, t_to=time.time())
    assert out.rows == n
    check_final_state(pg, ctl, st)

    # 5. the outage in the log: once at warn, its end at info with its length
    down, up = outage_lines(daemon, mark)
    outage_ms = int(logfmt.fields(back)["outage_ms"])
    back_index = daemon.lines.index(back, mark)
    other_warn = [x for x in daemon.lines[mark:back_index + 1]
                  if x.startswith("<4>") and x not in down]
    report(f"database down {start_at - stopped_at:.1f}s (stop -m fast): noticed after "
           f"{warned_at - stopped_at:.2f}s, back {back_at - started_at:.2f}s after it accepted "
           f"connections, outage_ms={outage_ms}; {n} rows; other warnings during the "
           f"outage: {other_warn}")
    assert len(down) == 1, "the outage logged more than once:\n" + "\n".join(down)
    assert warn.startswith("<4>level=warn mod=store "), warn
    assert len(up) == 1, "\n".join(up)
    assert back.startswith("<6>level=info mod=store "), back
    # counted from when the daemon noticed to when it was back
    assert (start_at - warned_at) * 1000 - 500 <= outage_ms <= \
        (back_at - stopped_at) * 1000 + 500, (outage_ms, warn, back)
    # then the backlog of the outage was stored: "caught up" after "available again"
    assert_caught_up_since(daemon, back_index, "after the outage")
    # found again within its retry cap (a second) plus the setup queries
    assert back_at - started_at <= 3.0, f"back {back_at - started_at:.2f}s after the start"
    assert daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 4. kill -9 of the daemon while it writes batches


def test_kill9_daemon_during_batches(daemon, ingest_broker, private_postgres, build_dir,
                                     tmp_path, sanitized, report):
    """SIGKILL while batches are in flight, four times: after the restart the
    daemon goes on from the checkpoint in the database; batches written again
    are no-ops (ON CONFLICT DO NOTHING). A message the broker sends again
    because its PUBACK had not left is recognised by its packet id against
    the journal's last records and not journaled again: the journal holds
    each message once, and not even a malformed one is quarantined twice."""
    n = fault_stream(sanitized)
    seed = seed_of()
    rnd = random.Random(seed)
    stream = Stream(n, seed)
    pg = private_postgres
    conf = daemon.write_config(store_config(tmp_path, ingest_broker, pg))
    ctl = JournalCtl(build_dir, conf=conf, log_path=daemon.dir / "gridbridgectl.log")
    t0 = time.time()
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    daemon.wait_log(STORE_READY, timeout=READY_TIMEOUT)

    kills, moments = 4, []
    with stream.publishers(ingest_broker, rate=n / (15 if not sanitized else 20)) as pubs:
        pubs.start()
        cp = 0
        for i in range(kills):
            cp = wait_db_progress(pg, daemon, cp, timeout=60)
            time.sleep(rnd.uniform(0.1, 2.0))
            moments.append((round(time.time() - t0, 2), pubs.published_count(), cp))
            daemon.kill()
            assert daemon.returncode == -signal.SIGKILL
            start_daemon(daemon, conf, timeout=READY_TIMEOUT, subscribed=False)
            daemon.wait_log(STORE_READY, timeout=READY_TIMEOUT)
            mark = len(daemon.lines)
        acked = pubs.finish(timeout=300)
        assert acked == pubs.expected()
    st = wait_stored(pg, ctl, daemon, min_seq=n, min_rows=n, timeout=300)
    out = check_rows(stream, pg, last_seq=st["last_seq"], t_from=t0, t_to=time.time(),
                     redelivery=True)
    report(f"kill -9 x{kills} (seed {seed}; at s/published/checkpoint {moments}): "
           f"{n} messages, journal {st['last_seq']} records, {out.rows} rows, "
           f"{out.extra} extra quarantine row(s) for redelivered malformed messages")
    assert out.rows == n == st["last_seq"], (out.rows, n, st["last_seq"])
    assert out.extra == 0
    check_final_state(pg, ctl, st)
    # this process's lines only (they start again at each start); the
    # broker is asked for messages once the database is ready, so the
    # replay's "caught up" may come before the store's "ready" line is read
    assert_caught_up_since(daemon, 0, "after the last restart")
    assert daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# smaller: attrs = false, tiny batches


def test_attrs_off_and_tiny_batches(daemon, ingest_broker, private_postgres, build_dir,
                                    tmp_path, report):
    """[store] attrs = false leaves events.attrs NULL (the record is still
    there); batch_rows = 7 and max_inflight = 1 still store everything once."""
    n = 700
    stream = Stream(n, seed_of())
    pg = private_postgres
    conf = daemon.write_config(store_config(
        tmp_path, ingest_broker, pg,
        store={"attrs": "false", "batch_rows": 7, "batch_ms": 5, "max_inflight": 1}))
    ctl = JournalCtl(build_dir, conf=conf, log_path=daemon.dir / "gridbridgectl.log")
    t0 = time.time()
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    daemon.wait_log(STORE_READY, timeout=READY_TIMEOUT)
    with stream.publishers(ingest_broker, n=2) as pubs:
        pubs.start()
        assert pubs.finish(timeout=120) == pubs.expected()
    st = wait_stored(pg, ctl, daemon, min_seq=n, min_rows=n, timeout=120)
    out = check_rows(stream, pg, last_seq=st["last_seq"], t_from=t0, t_to=time.time())
    assert out.rows == n == st["last_seq"]
    assert db_query(pg, "SELECT count(*) FROM events WHERE attrs IS NOT NULL") == [(0,)]
    assert db_query(pg, "SELECT count(*) FROM events WHERE length(record) > 0"
                        " AND vendor <> 'gridbridge'") == \
        [(len(out.events),)]
    assert daemon.stop(timeout=30) == 0
