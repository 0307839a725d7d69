"""The fault suite's stream and its end-to-end checker.

A FaultStream is a mix of device families, each message carrying a
per-device sequence number that can be read back from what gridbridge
stored:

    access   Hikvision gate access, device time and serial number;
             the sequence in the picture URL (PersonPassage.picture_url)
    anpr     Hikvision barrier ANPR, device time and UUID; the sequence in
             the plate (events.plate)
    alarm    high-altitude-throwing camera alarm, device time and event id;
             the sequence in the event id (CameraAlarm.vendor_event_id)
    zigbee   Zigbee2MQTT door contact with neither device time nor serial
             (the id comes from the receive time); the sequence in battery
             and link quality (DoorContact)
    junk     invalid JSON on an access topic: quarantined, the sequence in
             the raw bytes kept in quarantine.raw

Every message goes out with QoS 1; only those whose PUBACK reached the
publisher are owed. check() compares them with the rows of `events` and
`quarantine` and with what the HTTPS endpoint answered 2xx to, per family:

    published     messages handed to the broker
    acked         of those, PUBACKed to the publisher
    stored        distinct messages found as events
    quarantined   distinct messages found in quarantine
    lost          acked, found nowhere                         (must be 0)
    duplicated    one message stored as more than one row      (must be 0)
    unexpected    rows of our devices that no message explains (must be 0)
    forwarded     stored events whose id the endpoint took
    fwd_dup       ids the endpoint took (2xx) more than once   (counted)
    fwd_missing   stored events the endpoint never took        (must be 0)
"""

from __future__ import annotations

import collections
import json
import re
import time
import uuid
from dataclasses import dataclass, field

import services
from ingest import MessagePublisher, PublisherGroup
from test_store import db_conn, event_pb2

FAMILIES = ("access", "anpr", "alarm", "zigbee", "junk")
FIXTURES = {name: json.loads(payload) for name, _, payload in services.device_fixtures()}
COMMUNITY = "340104050101"
# the events the suite's forward rule selects (every family's)
FORWARDED_TYPES = ("person_passage", "vehicle_passage", "camera_alarm", "door_opened",
                   "door_closed")


def iso8(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(t + 8 * 3600))


@dataclass(frozen=True)
class Msg:
    family: str
    device: int
    seq: int
    topic: str
    payload: bytes


def access_device(d: int) -> str:
    return f"3401040501119071{d:04d}"


def anpr_device(d: int) -> str:
    return f"3401040501119072{d:04d}"


def alarm_device(d: int) -> str:
    return f"3401040501119073{d:04d}"


def zigbee_device(d: int) -> str:
    return f"fault/u{d}/9{d:03d}/entry_door"


def make(family: str, d: int, seq: int, t0: int) -> Msg:
    """Message `seq` (0..) of device `d` of `family`; device times are
    seconds apart, in the hour before t0 (no clock skew)."""
    t = t0 - 3600 + seq
    if family == "access":
        o = json.loads(json.dumps(FIXTURES["gate_person_access_hikvision"]))
        o["dateTime"] = iso8(t)
        ace = o["AccessControllerEvent"]
        ace["serialNo"] = 500000 + seq
        ace["pictureURL"] = f"http://10.20.0.5:8080/pic/f{d}/s{seq}.jpg"
        topic = f"sac/{COMMUNITY}/access/{access_device(d)}/event"
    elif family == "anpr":
        o = json.loads(json.dumps(FIXTURES["vehicle_barrier_anpr_hikvision"]))
        o["dateTime"] = iso8(t)
        o["ANPR"]["licensePlate"] = f"皖{'ABCDEFGHJK'[d % 10]}{seq:05d}"
        o["UUID"] = f"fault-anpr-{d}-{seq}"
        topic = f"sac/{COMMUNITY}/vehicle/{anpr_device(d)}/event"
    elif family == "alarm":
        o = json.loads(json.dumps(FIXTURES["camera_alarm_high_altitude_throwing"]))
        o["dateTime"] = iso8(t)
        o["eventId"] = f"fault-alarm-{d}-{seq}"
        o["deviceId"] = alarm_device(d)
        topic = f"sac/{COMMUNITY}/camera/{alarm_device(d)}/alarm"
    elif family == "zigbee":
        o = dict(FIXTURES["door_contact_z2m_state"])
        del o["last_seen"]
        o.update(contact=seq % 2 == 1, battery=seq // 256, linkquality=seq % 256)
        topic = f"zigbee2mqtt/{zigbee_device(d)}"
    elif family == "junk":
        return Msg(family, d, seq, f"sac/{COMMUNITY}/access/{access_device(d)}/event",
                   f'{{"fault_junk": {d}, "seq": {seq}, broken'.encode())
    else:
        raise ValueError(family)
    return Msg(family, d, seq, topic, json.dumps(o, ensure_ascii=False).encode())


class FaultStream:
    """`per_family` messages of each family over `devices` devices each,
    interleaved at random (seeded), published by one client per family."""

    def __init__(self, per_family: int, devices: int = 4, seed: int | None = None,
                 families: tuple[str, ...] = FAMILIES):
        self.seed = seed if seed is not None else time.time_ns() % 1_000_000
        self.t0 = int(time.time())
        self.families = families
        self.by_family: dict[str, list[Msg]] = {}
        for f in families:
            n = per_family if f != "junk" else max(1, per_family // 10)
            self.by_family[f] = [make(f, i % devices, i // devices, self.t0)
                                 for i in range(n)]
        assert all(m.seq < 25600 for ms in self.by_family.values() for m in ms)
        self.group: PublisherGroup | None = None

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.by_family.values())

    def publishers(self, broker, rate: float | None = None, window: int = 100,
                   name: str = "") -> PublisherGroup:
        """One publisher per family; `rate` messages/s over all of them."""
        share = {f: len(ms) / self.total for f, ms in self.by_family.items()}
        self.group = PublisherGroup.of(
            MessagePublisher(broker, f"{name}{f}", [(m.topic, m.payload) for m in ms],
                             rate=(rate * share[f] if rate else None), window=window)
            for f, ms in self.by_family.items())
        self.names = {f"{name}{f}": f for f in self.by_family}
        return self.group

    def acked(self) -> set[tuple[str, int]]:
        """(family, index) of the messages the broker acknowledged."""
        return {(self.names[n], i) for n, i in self.group.acked()}

    def published(self) -> int:
        return self.group.published_count()



# --------------------------------------------------------------------------
# reading back


def _devices_of(stream: FaultStream, family: str) -> dict[str, int]:
    n = max((m.device for m in stream.by_family.get(family, [])), default=-1) + 1
    name = {"access": access_device, "anpr": anpr_device, "alarm": alarm_device,
            "zigbee": zigbee_device}[family]
    return {name(d): d for d in range(n)}


def stored_rows(pg) -> list[tuple]:
    with db_conn(pg) as conn, conn.cursor() as cur:
        cur.execute("SELECT id::text, device_id, event_type, plate, record, journal_seq"
                    " FROM events WHERE vendor <> 'gridbridge'")
        return cur.fetchall()


def quarantine_rows(pg) -> list[tuple]:
    with db_conn(pg) as conn, conn.cursor() as cur:
        cur.execute("SELECT journal_id::text, journal_seq, reason, raw FROM quarantine")
        return cur.fetchall()


def forwarded_ids(endpoint) -> collections.Counter:
    """Event ids in the requests the endpoint answered 2xx, counted."""
    pb = event_pb2()
    got: collections.Counter = collections.Counter()
    for req in endpoint.requests:
        if req.response_status is None or not 200 <= req.response_status < 300:
            continue
        if req.method != "POST":
            continue
        b = pb.EventBatch()
        b.ParseFromString(req.body)
        for e in b.events:
            got[str(uuid.UUID(bytes=e.id))] += 1
    return got


_JUNK = re.compile(rb'^\{"fault_junk": (\d+), "seq": (\d+), broken$')


@dataclass
class Counts:
    published: int = 0
    acked: int = 0
    stored: int = 0
    quarantined: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    forwarded: int = 0
    fwd_dup: int = 0
    fwd_missing: int = 0
    examples: list = field(default_factory=list)

    FIELDS = ("published", "acked", "stored", "quarantined", "lost", "duplicated",
              "unexpected", "forwarded", "fwd_dup", "fwd_missing")

    def add(self, other: "Counts") -> None:
        for k in self.FIELDS:
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.examples += other.examples[:3]


@dataclass
class Result:
    families: dict[str, Counts]
    total: Counts

    @property
    def ok(self) -> bool:
        t = self.total
        return t.lost == t.duplicated == t.unexpected == t.fwd_missing == 0

    def table(self) -> str:
        head = f"{'family':8}" + "".join(f"{k:>12}" for k in Counts.FIELDS)
        lines = [head]
        for name, c in [*self.families.items(), ("total", self.total)]:
            lines.append(f"{name:8}" + "".join(f"{getattr(c, k):>12}" for k in Counts.FIELDS))
        return "\n".join(lines)

    def problems(self) -> str:
        return "; ".join(f"{f}: {c.examples[:5]}" for f, c in self.families.items()
                         if c.examples)


def _key_of(stream: FaultStream, family: str, devices: dict[str, int], row) -> tuple | None:
    """(device, seq) of a stored row of `family`, or None if it is not ours."""
    eid, device_id, etype, plate, record, _ = row
    d = devices.get(device_id)
    if d is None:
        return None
    pb = event_pb2()
    ev = pb.Event()
    ev.ParseFromString(bytes(record))
    try:
        if family == "access":
            m = re.search(r"/f(\d+)/s(\d+)\.jpg$", ev.person.picture_url)
            return (int(m.group(1)), int(m.group(2))) if m else ("?", eid)
        if family == "anpr":
            p = ev.vehicle.plate or plate or ""
            return (d, int(p[2:])) if len(p) >= 7 and p[2:].isdigit() else ("?", eid)
        if family == "alarm":
            m = re.fullmatch(r"fault-alarm-(\d+)-(\d+)", ev.camera_alarm.vendor_event_id)
            return (int(m.group(1)), int(m.group(2))) if m else ("?", eid)
        if family == "zigbee":
            door = ev.door
            return (d, door.battery_percent.value * 256 + door.link_quality.value)
    except (AttributeError, ValueError):
        return ("?", eid)
    return None


def check(stream: FaultStream, pg, endpoint=None) -> Result:
    """Compare what was acknowledged with what is stored and forwarded."""
    acked = stream.acked()
    rows = stored_rows(pg)
    quarantine = quarantine_rows(pg)
    fwd = forwarded_ids(endpoint) if endpoint is not None else collections.Counter()
    out: dict[str, Counts] = {}
    for family, msgs in stream.by_family.items():
        c = Counts()
        c.published = sum(1 for p in stream.group.publishers
                          if stream.names[p.name] == family for _ in p.sent)
        index = {(m.device, m.seq): i for i, m in enumerate(msgs)}
        owed = {i for f, i in acked if f == family}
        c.acked = len(owed)
        found: collections.Counter = collections.Counter()
        ids: dict[int, list[str]] = collections.defaultdict(list)
        seqs: dict[int, list[int]] = collections.defaultdict(list)
        if family == "junk":
            for jid, jseq, reason, raw in quarantine:
                m = _JUNK.match(bytes(raw))
                if not m:
                    continue
                i = index.get((int(m.group(1)), int(m.group(2))))
                if i is None:
                    c.unexpected += 1
                    c.examples.append(("unexpected", jid, jseq))
                    continue
                found[i] += 1
            c.quarantined = len(found)
        else:
            devices = _devices_of(stream, family)
            for row in rows:
                k = _key_of(stream, family, devices, row)
                if k is None:
                    continue
                i = index.get(k)
                if i is None:
                    c.unexpected += 1
                    c.examples.append(("unexpected", row[0], k))
                    continue
                found[i] += 1
                ids[i].append(row[0])
                seqs[i].append(row[5])
            c.stored = len(found)
        for i in sorted(owed - set(found)):
            c.lost += 1
            if len(c.examples) < 10:
                m = msgs[i]
                c.examples.append(("lost", m.device, m.seq))
        for i, n in found.items():
            if n > 1:
                c.duplicated += n - 1
                if len(c.examples) < 10:
                    c.examples.append(("duplicated", msgs[i].device, msgs[i].seq, n,
                                       "journal_seq", sorted(seqs.get(i, []))))
        if endpoint is not None and family != "junk":
            for i, idl in ids.items():
                for eid in idl:
                    n = fwd.get(eid, 0)
                    if n:
                        c.forwarded += 1
                        c.fwd_dup += n - 1
                    else:
                        c.fwd_missing += 1
                        if len(c.examples) < 10:
                            c.examples.append(("fwd_missing", msgs[i].device, msgs[i].seq))
        out[family] = c
    total = Counts()
    for c in out.values():
        total.add(c)
    return Result(out, total)


def settled(stream: FaultStream, pg, endpoint=None) -> bool:
    """Everything acknowledged is stored or quarantined (and forwarded)."""
    r = check(stream, pg, endpoint)
    t = r.total
    return t.lost == 0 and t.fwd_missing == 0

