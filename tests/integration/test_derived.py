"""The events no device sends (derive.c), with a real broker, PostgreSQL and
daemon, and the daemon's clock moved by [daemon] clock_offset_file instead of
waiting (no test sleeps for a real threshold):

  1. welfare: a door sensor reports, then silence past inactive_hours:
     exactly one inactivity alert; a restart inside the window raises no
     second one; the repeat comes at its time; the door opens: one
     activity_resumed event; the alerts and the registry's transitions
     reach the HTTPS endpoint through the shipped rules (the raw
     availability message does not); a peephole event of the household
     is given the household;
  2. a household's sensor goes offline (availability): one sensor_offline
     event and no inactivity alert while it is offline;
  3. the registry: an LWT takes a gateway offline, a heartbeat timeout an
     access gate, its next message brings it back after the hold-down; an
     availability flapping within the hold-down makes no event; a declared
     device never heard from is reported offline once; a repeated report of
     the same state is no transition; `devices` rows say what happened;
  4. a heartbeat timeout for a device of each class, and the LWT and
     availability messages of Shelly and Tasmota devices;
  5. resident reports: one overdue event for a report not handled by its
     deadline, none for reports handled or closed in time, not again after
     a restart or when it is handled late.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

import services
from ingest import daemon_config, start_daemon
from test_forward import batch_ids, wait_until
from test_store import db_query

COMMUNITY = "c-0001"
DOOR = "b03/u2/1502/entry_door"
DOOR2 = "b04/u1/0301/entry_door"
GATE = "34010405011190000001"
GATEWAY = "edge-gw-01"
HOUR = 3600


class Clock:
    """The daemon's clock: the system's plus an offset we write."""

    def __init__(self, path):
        self.path = path
        self.set(0)

    def set(self, seconds: float) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{seconds}\n")
        tmp.replace(self.path)
        self.offset = seconds

    def now(self) -> float:
        return time.time() + self.offset


def shipped_rules() -> str:
    """The [forward.rule ...] sections of the shipped configuration."""
    text = (services.REPO_ROOT / "conf" / "gridbridge.conf").read_text()
    return "".join("\n" + chunk.strip("\n") + "\n" for chunk in text.split("\n\n")
                   if chunk.lstrip("\n").startswith("[forward.rule "))


def config(tmp_path, broker, pg, clock, *, extra: str = "", registry: dict | None = None,
           endpoint=None) -> str:
    text = daemon_config(tmp_path, broker, store_db=pg, routes=True, subscribe=("#",))
    text = text.replace("[daemon]\n", f"[daemon]\nclock_offset_file = {clock.path}\n", 1)
    reg = {"hold_down": 0}
    reg.update(registry or {})
    text += "\n[registry]\n" + "".join(f"{k} = {v}\n" for k, v in reg.items())
    if endpoint is not None:
        # the shipped target's name and rules, pointed at the endpoint
        text += (f"\n[forward.target police]\nurl = {endpoint.url}\n"
                 f"ca_file = {endpoint.ca_file}\ncert_file = {endpoint.client_cert}\n"
                 f"key_file = {endpoint.client_key}\nretry_base_ms = 100\nretry_cap_ms = 1000\n"
                 + shipped_rules())
    return text + extra


def door(device: str, opened: bool, n: int) -> tuple[str, bytes]:
    """A Zigbee2MQTT contact sensor's state, without a device time (the
    receive time is the event's); n makes each payload new."""
    return (f"zigbee2mqtt/{device}",
            json.dumps({"contact": not opened, "battery": 90, "linkquality": 100 + n,
                        "trigger_count": n}).encode())


def availability(device: str, state: str) -> tuple[str, bytes]:
    return f"zigbee2mqtt/{device}/availability", json.dumps({"state": state}).encode()


def heartbeat(n: int) -> tuple[str, bytes]:
    d = services.FIXTURES_DIR / "devices"
    doc = json.loads((d / "device_heartbeat_hikvision.json").read_text())
    doc["activePostCount"] = n
    return (d / "device_heartbeat_hikvision.topic.txt").read_text().strip(), json.dumps(doc).encode()


def gateway_lwt() -> tuple[str, bytes]:
    d = services.FIXTURES_DIR / "devices"
    return ((d / "gateway_lwt.topic.txt").read_text().strip(),
            (d / "gateway_lwt.json").read_bytes())


def publish(broker, *msgs) -> None:
    for topic, payload in msgs:
        broker.publish(topic, payload, qos=1)


def derived(pg, route: str | None = None) -> list[dict]:
    """Derived events (route registry, welfare, reports), oldest first."""
    rows = db_query(pg, "SELECT id::text, route, device_id, event_type,"
                        " (extract(epoch FROM event_time))::float8, attrs FROM events"
                        " WHERE vendor = 'gridbridge' ORDER BY event_time, id")
    out = [dict(zip(("id", "route", "device", "type", "time", "attrs"), r)) for r in rows]
    return [r for r in out if route is None or r["route"] == route]


def welfare(pg, kind: str | None = None) -> list[dict]:
    return [r for r in derived(pg, "welfare")
            if kind is None or r["attrs"]["welfare"]["kind"] == f"WELFARE_KIND_{kind}"]


def stored(pg) -> int:
    return db_query(pg, "SELECT count(*) FROM events")[0][0]


def device_row(pg, device: str) -> dict:
    cols = ("state", "state_source", "expected", "first_seen", "last_seen", "pending_state",
            "device_class", "battery_percent", "link_quality")
    rows = db_query(pg, f"SELECT {', '.join(cols)} FROM devices WHERE device_id = %s", device)
    assert len(rows) == 1, rows
    return dict(zip(cols, rows[0]))


def settle(daemon, seconds: float = 1.6) -> None:
    """A tick of the daemon's clock (once a second) and its writes: time
    for an event that is not to come to show."""
    time.sleep(seconds)


def test_welfare_inactivity_restart_resumed(daemon, mosquitto, private_postgres, tmp_path,
                                            https_endpoint):
    pg = private_postgres
    clock = Clock(tmp_path / "clock-offset")
    conf = tmp_path / "gridbridge.conf"
    conf.write_text(config(tmp_path, mosquitto, pg, clock, endpoint=https_endpoint, extra=f"""
[welfare grandma-1502]
community = {COMMUNITY}
door_sensors = {DOOR}
peephole = PH-1502
inactive_hours = 1
repeat_hours = 1

[route peephole-c1]
pattern = peep/{{device}}/event
decoder = peephole
class = peephole
community = {COMMUNITY}
"""))
    start_daemon(daemon, conf)
    daemon.wait_log(r'msg="derived state loaded"', timeout=20)
    publish(mosquitto, availability(DOOR, "online"))
    wait_until(lambda: db_query(pg, "SELECT state FROM devices WHERE device_id = %s", DOOR) ==
               [("online",)], 20, "the sensor online")
    assert derived(pg) == []      # first heard from online: recorded, no event
    publish(mosquitto, door(DOOR, True, 1))
    wait_until(lambda: stored(pg) == 2, 20, "the door opening stored")
    opened = db_query(pg, "SELECT (extract(epoch FROM event_time))::float8 FROM events"
                          " WHERE event_type = 'door_opened'")[0][0]

    # Less than an hour later: nothing. Past it: exactly one alert.
    clock.set(HOUR - 60)
    settle(daemon)
    assert welfare(pg) == []
    clock.set(HOUR + 5)
    wait_until(lambda: len(welfare(pg, "INACTIVITY")) == 1, 20, "the inactivity alert")
    alert = welfare(pg, "INACTIVITY")[0]
    assert abs(alert["time"] - (opened + HOUR)) < 0.01
    w = alert["attrs"]["welfare"]
    assert w["household"] == "grandma-1502" and w.get("repeat", 0) == 0
    assert alert["type"] == "welfare_alert"

    # A restart inside the window: still one alert.
    assert daemon.stop() == 0
    start_daemon(daemon, conf)
    daemon.wait_log(r'msg="derived state loaded"', timeout=20)
    settle(daemon, 2)
    assert len(welfare(pg, "INACTIVITY")) == 1
    # The repeat, an hour later, at its time.
    clock.set(2 * HOUR + 5)
    wait_until(lambda: len(welfare(pg, "INACTIVITY")) == 2, 20, "the repeat")
    repeat = welfare(pg, "INACTIVITY")[1]
    assert abs(repeat["time"] - (opened + 2 * HOUR)) < 0.01
    assert repeat["attrs"]["welfare"]["repeat"] == 1

    # The door opens: the alert is closed, once.
    publish(mosquitto, door(DOOR, True, 2))
    wait_until(lambda: len(welfare(pg, "ACTIVITY_RESUMED")) == 1, 20, "activity resumed")
    settle(daemon)
    assert len(welfare(pg)) == 3

    # Through the shipped rules to the endpoint: the alerts and the
    # transition, not the raw availability message.
    want = {r["id"] for r in welfare(pg)} | {r["id"] for r in derived(pg, "registry")}
    got = lambda: {i for req in https_endpoint.requests for i in batch_ids(req)}  # noqa: E731
    wait_until(lambda: want <= got(), 30, "the derived events forwarded")
    raw = db_query(pg, "SELECT id::text FROM events WHERE route = 'z2m-availability'")
    assert raw and not {r[0] for r in raw} & got()

    # The household's peephole: its linger event is given the household.
    publish(mosquitto, ("peep/PH-1502/event", json.dumps({
        "deviceId": "PH-1502", "event": "linger", "eventCode": 4, "durationSec": 40,
        "dateTime": "2025-03-18T22:14:09+08:00"}).encode()))
    wait_until(lambda: db_query(pg, "SELECT attrs FROM events WHERE device_id = 'PH-1502' AND route = 'peephole-c1'"),
               20, "the peephole event")
    attrs = db_query(pg, "SELECT attrs FROM events WHERE device_id = 'PH-1502' AND route = 'peephole-c1'")[0][0]
    assert attrs["peephole"]["household"] == "grandma-1502"
    # The test clock moving is time passing, not a step of the system clock.
    assert not [x for x in daemon.lines if 'msg="system clock stepped"' in x]


def test_sensor_offline_is_no_inactivity(daemon, mosquitto, private_postgres, tmp_path):
    pg = private_postgres
    clock = Clock(tmp_path / "clock-offset")
    conf = tmp_path / "gridbridge.conf"
    conf.write_text(config(tmp_path, mosquitto, pg, clock, extra=f"""
[welfare grandpa-0301]
community = {COMMUNITY}
door_sensors = {DOOR2}
inactive_hours = 1
"""))
    start_daemon(daemon, conf)
    daemon.wait_log(r'msg="derived state loaded"', timeout=20)
    publish(mosquitto, availability(DOOR2, "online"), door(DOOR2, True, 1))
    wait_until(lambda: stored(pg) == 2, 20, "online and opened")
    publish(mosquitto, availability(DOOR2, "offline"))
    wait_until(lambda: len(welfare(pg, "SENSOR_OFFLINE")) == 1, 20, "sensor offline")
    off = welfare(pg, "SENSOR_OFFLINE")[0]
    assert off["attrs"]["welfare"]["sensorDeviceId"] == DOOR2
    clock.set(3 * HOUR)
    settle(daemon, 2)
    assert welfare(pg, "INACTIVITY") == []
    assert len(welfare(pg, "SENSOR_OFFLINE")) == 1


def test_registry_transitions(daemon, mosquitto, private_postgres, tmp_path):
    pg = private_postgres
    clock = Clock(tmp_path / "clock-offset")
    conf = tmp_path / "gridbridge.conf"
    conf.write_text(config(tmp_path, mosquitto, pg, clock,
                           registry={"hold_down": 10, "heartbeat_timeout_access_gate": 60,
                                     "expected_grace": 30},
                           extra=f"""
[device cam-9]
device = cam-9
community = {COMMUNITY}
class = camera
"""))
    start_daemon(daemon, conf)
    daemon.wait_log(r'msg="derived state loaded"', timeout=20)
    # The declared device is in the registry before it speaks.
    wait_until(lambda: db_query(pg, "SELECT state FROM devices WHERE device_id = 'cam-9'") ==
               [("unknown",)], 10, "the declared device")

    publish(mosquitto, heartbeat(1), gateway_lwt())
    wait_until(lambda: len(derived(pg, "registry")) == 1, 20, "the gateway offline")
    # First heard from: the gate online (recorded, no event), the gateway
    # offline by its LWT (an event).
    events = {(r["device"], r["type"]) for r in derived(pg, "registry")}
    assert events == {(GATEWAY, "device_offline")}
    assert device_row(pg, GATEWAY)["state_source"] == "lwt"
    wait_until(lambda: device_row(pg, GATE)["state"] == "online", 20, "the gate online")

    # Flapping within the hold-down: the door's offline and online again
    # within 10 s make nothing.
    publish(mosquitto, availability(DOOR, "online"))
    wait_until(lambda: db_query(pg, "SELECT state FROM devices WHERE device_id = %s", DOOR) ==
               [("online",)], 20, "the door online")
    publish(mosquitto, availability(DOOR, "offline"), availability(DOOR, "online"),
            availability(DOOR, "online"))
    clock.set(20)
    settle(daemon, 2)
    assert [r for r in derived(pg, "registry") if r["device"] == DOOR] == []
    assert device_row(pg, DOOR)["pending_state"] is None
    assert device_row(pg, DOOR)["state"] == "online"

    # The declared camera never spoke: offline once, after the grace.
    clock.set(40)
    wait_until(lambda: any(r["device"] == "cam-9" for r in derived(pg, "registry")), 20,
               "the silent camera reported")
    cam = [r for r in derived(pg, "registry") if r["device"] == "cam-9"]
    assert len(cam) == 1 and cam[0]["type"] == "device_offline"
    assert cam[0]["attrs"]["status"]["reason"] == "never heard from"
    row = device_row(pg, "cam-9")
    assert row["state"] == "offline" and row["expected"] and row["first_seen"] is None

    # The gate's heartbeat timeout, at last_seen + 60 s.
    seen = device_row(pg, GATE)["last_seen"].timestamp()
    clock.set(75)
    wait_until(lambda: [r for r in derived(pg, "registry")
                        if r["device"] == GATE and r["type"] == "device_offline"], 20,
               "the gate timed out")
    off = [r for r in derived(pg, "registry")
           if r["device"] == GATE and r["type"] == "device_offline"]
    assert len(off) == 1 and abs(off[0]["time"] - (seen + 60)) < 1.5
    assert off[0]["attrs"]["status"]["source"] == "STATUS_SOURCE_TIMEOUT"
    # Back on its next message, once the hold-down passed.
    publish(mosquitto, heartbeat(2))
    wait_until(lambda: device_row(pg, GATE)["pending_state"] == "online", 20, "pending online")
    assert device_row(pg, GATE)["state"] == "offline"
    clock.set(90)
    wait_until(lambda: device_row(pg, GATE)["state"] == "online", 20, "the gate online again")
    gate = [r["type"] for r in derived(pg, "registry") if r["device"] == GATE]
    assert gate == ["device_offline", "device_online"]

    # A restart changes nothing: no event is derived twice.
    n = len(derived(pg))
    assert daemon.stop() == 0
    start_daemon(daemon, conf)
    daemon.wait_log(r'msg="derived state loaded"', timeout=20)
    settle(daemon, 2)
    assert len(derived(pg)) == n
    ids = [r["id"] for r in derived(pg)]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 8 for i in ids)


def report(kind: str, report_id: str, **times) -> tuple[str, bytes]:
    """A report platform's message; times as epoch seconds."""
    doc = {"type": kind, "report_id": report_id, "building": "B03", "door": "B03-U2-east",
           "category": "lighting"}
    doc.update({k: int(v) for k, v in times.items()})
    return f"sac/{COMMUNITY}/report/qr-b03-u2/event", json.dumps(doc).encode()


def reports(pg) -> dict[str, dict]:
    cols = ("report_id", "opened_at", "deadline", "handled_at", "closed_at", "overdue_at")
    rows = db_query(pg, f"SELECT {', '.join(cols)} FROM resident_reports")
    return {r[0]: dict(zip(cols, r)) for r in rows}


def ctl(build_dir, conf, *args) -> list[dict]:
    """gridbridgectl ARGS --json: its lines as objects."""
    r = subprocess.run([str(build_dir / "gridbridgectl"), "-c", str(conf), *args, "--json"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def test_overdue_reports(daemon, mosquitto, private_postgres, tmp_path, build_dir):
    pg = private_postgres
    clock = Clock(tmp_path / "clock-offset")
    conf = tmp_path / "gridbridge.conf"
    conf.write_text(config(tmp_path, mosquitto, pg, clock))
    start_daemon(daemon, conf)
    daemon.wait_log(r'msg="derived state loaded"', timeout=20)
    now = time.time()
    publish(mosquitto,
            report("report_opened", "R-late", opened_at=now - 60, deadline=now + HOUR),
            report("report_opened", "R-ontime", opened_at=now - 60, deadline=now + HOUR),
            report("report_handled", "R-ontime", opened_at=now - 60, deadline=now + HOUR,
                   handled_at=now - 30),
            report("report_opened", "R-closed", opened_at=now - 60, deadline=now + HOUR),
            report("report_closed", "R-closed", closed_at=now - 10))
    wait_until(lambda: len(reports(pg)) == 3 and reports(pg)["R-closed"]["closed_at"], 20,
               "three reports")
    assert reports(pg)["R-ontime"]["handled_at"] is not None
    clock.set(HOUR - 60)
    settle(daemon)
    assert derived(pg, "reports") == []

    clock.set(HOUR + 5)
    wait_until(lambda: derived(pg, "reports"), 20, "the overdue report")
    settle(daemon)
    overdue = derived(pg, "reports")
    assert [(r["type"], r["attrs"]["report"]["reportId"]) for r in overdue] == \
        [("report_overdue", "R-late")]
    assert abs(overdue[0]["time"] - (int(now) + HOUR)) < 1
    assert reports(pg)["R-late"]["overdue_at"] is not None

    # Raised once: not again after a restart, nor when it is handled late.
    assert daemon.stop() == 0
    start_daemon(daemon, conf)
    daemon.wait_log(r'msg="derived state loaded"', timeout=20)
    publish(mosquitto, report("report_handled", "R-late", handled_at=now + HOUR + 2))
    wait_until(lambda: reports(pg)["R-late"]["handled_at"] is not None, 20, "handled late")
    settle(daemon)
    assert len(derived(pg, "reports")) == 1
    # The on-time rate: two of three done by their deadline.
    total = [x for x in ctl(build_dir, conf, "reports") if x["type"] == "total"][0]
    assert (total["opened"], total["on_time"], total["late"]) == (3, 2, 1), total
    assert total["on_time_percent"] == 66.7


def fixture(name: str) -> tuple[str, bytes]:
    d = services.FIXTURES_DIR / "devices"
    return (d / f"{name}.topic.txt").read_text().strip(), (d / f"{name}.json").read_bytes()


def test_heartbeat_timeout_each_class(daemon, mosquitto, private_postgres, tmp_path,
                                      build_dir):
    pg = private_postgres
    clock = Clock(tmp_path / "clock-offset")
    classes = ("access_gate", "vehicle_barrier", "camera", "door_sensor", "peephole", "gateway")
    conf = tmp_path / "gridbridge.conf"
    conf.write_text(config(tmp_path, mosquitto, pg, clock,
                           registry={f"heartbeat_timeout_{c}": 60 for c in classes}))
    start_daemon(daemon, conf)
    daemon.wait_log(r'msg="derived state loaded"', timeout=20)
    one_each = {"access_gate": "device_heartbeat_hikvision",
                "vehicle_barrier": "vehicle_barrier_anpr_hikvision",
                "camera": "camera_alarm_high_altitude_throwing",
                "door_sensor": "door_contact_z2m_state",
                "peephole": "peephole_linger_event", "gateway": "gateway_heartbeat"}
    publish(mosquitto, *[fixture(n) for n in one_each.values()])
    by_class = lambda: {r[0]: r[1] for r in db_query(  # noqa: E731
        pg, "SELECT device_class, state FROM devices")}
    wait_until(lambda: by_class() == {c: "online" for c in classes}, 20, "six devices online")
    rates = [x for x in ctl(build_dir, conf, "devices") if x["type"] == "online_rate"]
    assert {(x["class"], x["online"], x["total"]) for x in rates} == {(c, 1, 1) for c in classes}
    clock.set(65)
    wait_until(lambda: set(by_class().values()) == {"offline"}, 20, "all timed out")
    off = [r for r in derived(pg, "registry") if r["type"] == "device_offline"]
    assert len(off) == 6
    assert {r["attrs"]["status"]["source"] for r in off} == {"STATUS_SOURCE_TIMEOUT"}
    listed = [x for x in ctl(build_dir, conf, "devices", "--state", "offline")
              if x["type"] == "device"]
    assert len(listed) == 6
    assert {x["online"] for x in ctl(build_dir, conf, "devices")
            if x["type"] == "online_rate"} == {0}


def test_lwt_and_availability_sources(daemon, mosquitto, private_postgres, tmp_path):
    pg = private_postgres
    clock = Clock(tmp_path / "clock-offset")
    conf = tmp_path / "gridbridge.conf"
    conf.write_text(config(tmp_path, mosquitto, pg, clock))
    start_daemon(daemon, conf)
    daemon.wait_log(r'msg="derived state loaded"', timeout=20)
    publish(mosquitto, ("shellies/door-7/online", b"true"), ("tele/door-8/LWT", b"Online"))
    wait_until(lambda: db_query(pg, "SELECT count(*) FROM devices WHERE state = 'online'") ==
               [(2,)], 20, "both online")
    publish(mosquitto, ("shellies/door-7/online", b"false"), ("tele/door-8/LWT", b"Offline"))
    wait_until(lambda: len(derived(pg, "registry")) == 2, 20, "both offline")
    # Told again: no transition. Back: one each.
    publish(mosquitto, ("tele/door-8/LWT", b"Offline"), ("shellies/door-7/online", b"false"))
    settle(daemon)
    assert len(derived(pg, "registry")) == 2
    publish(mosquitto, ("shellies/door-7/online", b"true"), ("tele/door-8/LWT", b"Online"))
    wait_until(lambda: len(derived(pg, "registry")) == 4, 20, "both online again")
    events = [(r["device"], r["type"], r["attrs"]["status"]["source"])
              for r in derived(pg, "registry")]
    assert sorted(events) == sorted([
        ("door-7", "device_offline", "STATUS_SOURCE_AVAILABILITY"),
        ("door-7", "device_online", "STATUS_SOURCE_AVAILABILITY"),
        ("door-8", "device_offline", "STATUS_SOURCE_LWT"),
        ("door-8", "device_online", "STATUS_SOURCE_LWT")]), events
