"""Forwarding with profile = viid (GA/T 1400, upload mode) against the test
platform of viid.py, with a real broker, PostgreSQL and daemon:

  1. the daemon registers (Digest, User-Identify), keeps alive, uploads
     person passages as faces and vehicle passages as motor vehicles, each
     object once with valid ids (the platform records no violation);
  2. the platform forgets its sessions mid-stream: a 401, Register again,
     the uploads resume, nothing lost, nothing accepted twice;
  3. per-object statuses: 8 fails that row with the code and StatusString,
     the others are sent; 2 is retried, then sent; a reply without Ids is
     mapped by position;
  4. a wrong password: no session, the rows stay pending, the failure is
     logged without the password;
  5. `gridbridgectl outbox stat` lists the viid target like any other, and
     a clean stop unregisters;
  6. password_file has the permission checks of every secret file;
  7. at scale: 1,000 passages, the platform restarting while rows are
     still pending, each object accepted once;
  8. device status (online, offline) goes as APEObjects to PUT /VIID/APEs.

Events are the Hikvision access and ANPR fixtures of tests/fixtures/devices
with their serial numbers and times changed, so each is a new event; device
status is the zigbee2mqtt availability and gateway LWT fixtures.
"""

from __future__ import annotations

import json
import re
import time

import pytest

import logfmt
import services
import viid
from ingest import daemon_config, start_daemon
from test_exactly_once import publish_all
from test_forward import ctl_outbox, outbox, parse_stat, wait_until

OUR_ID = viid.DEFAULT_DEVICE_ID
PASSWORD = "Pass1234"
GATE_ID = "34010405011190000001"
BARRIER_ID = "34010405011190000011"
CLIENT_ID = "gridbridge-viid-test"

UP = r'mod=forward msg="viid session up"'


def fixture(name: str) -> tuple[str, dict]:
    d = services.FIXTURES_DIR / "devices"
    return (d / f"{name}.topic.txt").read_text().strip(), json.loads((d / f"{name}.json").read_text())


def person(n: int) -> tuple[str, bytes]:
    topic, doc = fixture("gate_person_access_hikvision")
    ev = doc["AccessControllerEvent"]
    ev["serialNo"] = 30000 + n
    ev["frontSerialNo"] = 30000 + n - 1
    doc["dateTime"] = f"2025-03-18T07:{n // 60 % 60:02d}:{n % 60:02d}+08:00"
    ev["pictureURL"] = f"http://10.20.0.5:8080/pic/face_{n}.jpg"
    return topic, json.dumps(doc).encode()


def vehicle(n: int) -> tuple[str, bytes]:
    topic, doc = fixture("vehicle_barrier_anpr_hikvision")
    doc["dateTime"] = f"2025-03-18T09:{n // 60 % 60:02d}:{n % 60:02d}+08:00"
    doc["ANPR"]["vehicleInfo"]["index"] = 5000 + n
    for p in doc["pictures"]:
        p["url"] = p["url"].replace("anpr_", f"anpr{n}_")
    return topic, json.dumps(doc).encode()


def viid_config(tmp_path, broker, pg, platform, *, password=PASSWORD, target=None) -> str:
    text = daemon_config(tmp_path, broker, client_id=CLIENT_ID, store_db=pg, routes=True,
                         subscribe=("#",))
    pw = tmp_path / "viid-password"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    t = {"profile": "viid", "url": platform.url, "allow_http": "true",
         "viid_device_id": OUR_ID, "password_file": pw, "keepalive_s": 5,
         "register_retry_max_s": 2, "retry_base_ms": 100, "retry_cap_ms": 1000,
         "timeout": 10, "connect_timeout": 5}
    t.update(target or {})
    text += "\n[forward.target viid]\n" + "".join(f"{k} = {v}\n" for k, v in t.items())
    text += "\n[forward.rule passages]\ntarget = viid\npriority = 3\n" \
            "event_type = person_passage, vehicle_passage\n"
    text += f"\n[viid.device gate]\ndevice = {GATE_ID}\nid = {GATE_ID}\n"
    text += f"\n[viid.device barrier]\ndevice = {BARRIER_ID}\nid = {BARRIER_ID}\n"
    return text


@pytest.fixture
def platform():
    p = viid.ViidPlatform(OUR_ID, password=PASSWORD)
    p.start()
    try:
        yield p
    finally:
        p.stop()


def publish(broker, msgs) -> None:
    for topic, payload in msgs:
        broker.publish(topic, payload, qos=1)


def rows_by_state(pg) -> dict:
    out: dict = {}
    for r in outbox(pg):
        out.setdefault(r["state"], []).append(r)
    return out


def wait_rows(pg, n: int, timeout: float = 30, pending_ok: bool = False) -> list[dict]:
    """Wait until the outbox holds n rows, none pending (unless pending_ok)."""
    return wait_until(lambda: (r := outbox(pg)) and len(r) == n and
                      (pending_ok or all(x["state"] != "pending" for x in r)) and r,
                      timeout, f"{n} outbox rows settled")


def hold_session(platform) -> None:
    """Refuse Register (503), so that rows pile up pending: the next claim
    after release_session() takes them in one batch per kind."""
    platform.reply_always("/VIID/System/Register", http_status=503)


def release_session(platform) -> None:
    platform.reply_always("/VIID/System/Register")


def test_register_keepalive_upload_reregister(daemon, mosquitto, private_postgres, platform,
                                              tmp_path, build_dir):
    pg = private_postgres
    conf = tmp_path / "gridbridge.conf"
    conf.write_text(viid_config(tmp_path, mosquitto, pg, platform))
    start_daemon(daemon, conf)
    daemon.wait_log(UP, timeout=20)
    platform.wait_registered()

    publish(mosquitto, [person(i) for i in range(20)] + [vehicle(i) for i in range(10)])
    rows = wait_rows(pg, 30)
    assert all(r["state"] == "sent" for r in rows), rows
    faces = platform.wait_for_accepted("faces", 20)
    vehicles = platform.wait_for_accepted("motor_vehicles", 10)
    assert len(faces) == 20 and len(vehicles) == 10
    platform.wait_for(lambda: platform.keepalives >= 1, 12, "a keepalive")

    # The platform restarts: sessions and nonces forgotten.
    platform.expire_sessions()
    publish(mosquitto, [person(i) for i in range(100, 110)])
    platform.wait_registered(timeout=20, registrations=2)
    rows = wait_rows(pg, 40)
    assert all(r["state"] == "sent" for r in rows), [r for r in rows if r["state"] != "sent"]
    faces = platform.wait_for_accepted("faces", 30)
    assert platform.duplicates("faces") == {}
    assert platform.duplicates("motor_vehicles") == {}
    assert platform.violations == []
    down = [x for x in daemon.lines if 'msg="viid session down"' in x]
    assert down, "the lost session was not logged"

    stat = parse_stat(ctl_outbox(build_dir, conf, "stat").stdout)
    assert stat[("viid", 3)]["sent"] == 40 and stat[("viid", 3)]["pending"] == 0

    n = platform.unregistrations
    daemon.stop()
    assert platform.unregistrations == n + 1
    assert any('msg="viid unregistered"' in x for x in daemon.lines)
    assert any('msg="totals"' in x and "target=viid" in x and "sent=40" in x
               for x in daemon.lines)


def test_per_object_statuses(daemon, mosquitto, private_postgres, platform, tmp_path):
    pg = private_postgres
    conf = tmp_path / "gridbridge.conf"
    conf.write_text(viid_config(tmp_path, mosquitto, pg, platform))
    hold_session(platform)
    start_daemon(daemon, conf)

    # 8 for the second object of a batch: that row alone fails.
    publish(mosquitto, [person(i) for i in range(4)])
    wait_rows(pg, 4, pending_ok=True)
    platform.status_for_position(1, viid.INVALID_JSON_CONTENT, "/VIID/Faces")
    release_session(platform)
    rows = wait_rows(pg, 4)
    failed = [r for r in rows if r["state"] == "failed"]
    assert len(failed) == 1 and len([r for r in rows if r["state"] == "sent"]) == 3, rows
    assert failed[0]["last_status"] == 8
    assert failed[0]["last_error"] == viid.STATUS_STRINGS[8]

    # 2 (device busy) for one object: retried, then sent.
    hold_session(platform)
    platform.expire_sessions()
    daemon.wait_log(r'msg="viid register failed"', timeout=40,
                    since=len(daemon.lines))
    publish(mosquitto, [person(i) for i in range(10, 13)])
    wait_rows(pg, 7, pending_ok=True)
    platform.status_for_position(0, viid.DEVICE_BUSY, "/VIID/Faces")
    release_session(platform)
    rows = wait_rows(pg, 7)
    assert len([r for r in rows if r["state"] == "sent"]) == 6, rows
    assert max(r["attempts"] for r in rows if r["state"] == "sent") >= 2

    # A reply without Ids: mapped by position.
    platform.reply_always("/VIID/Faces", omit_ids=True)
    publish(mosquitto, [person(i) for i in range(20, 25)])
    rows = wait_rows(pg, 12)
    assert len([r for r in rows if r["state"] == "sent"]) == 11, rows
    assert platform.duplicates("faces") == {}
    assert platform.violations == []


def test_wrong_password_rows_stay_pending(daemon, mosquitto, private_postgres, platform,
                                          tmp_path):
    pg = private_postgres
    conf = tmp_path / "gridbridge.conf"
    wrong = "Wrong-Secret-42"
    conf.write_text(viid_config(tmp_path, mosquitto, pg, platform, password=wrong))
    start_daemon(daemon, conf)
    daemon.wait_log(r'msg="viid register failed"', timeout=20)
    publish(mosquitto, [person(i) for i in range(3)])
    rows = wait_rows(pg, 3, pending_ok=True)
    time.sleep(3)
    rows = outbox(pg)
    assert all(r["state"] == "pending" and r["attempts"] == 0 for r in rows), rows
    assert platform.sessions == []
    assert platform.received("faces") == []
    assert not any(UP in x for x in daemon.lines)
    assert not any(wrong in x for x in daemon.lines)
    assert platform.auth_failures, "the platform saw no wrong credentials"


def test_readable_password_file_is_refused(daemon, tmp_path):
    """password_file has the checks of every secret file: a mode others may
    read stops the start, with the chmod that fixes it."""
    from test_start_failures import base_config, expected_fix, failed_start, fix_of
    pw = tmp_path / "viid-password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o644)
    conf = daemon.write_config(base_config(tmp_path) + (
        "[forward.target viid]\nprofile = viid\nurl = https://127.0.0.1:9/\n"
        f"viid_device_id = {OUR_ID}\npassword_file = {pw}\n"))
    fields, last = failed_start(daemon, conf)
    refused = fix_of(fields)
    assert refused["mod"] == "forward" and refused["fix"] == expected_fix(pw, 0o644)
    assert last["stage"] == "forward", last
    assert not any(PASSWORD in x for x in daemon.lines)


def test_platform_clock_skew_is_logged(daemon, mosquitto, private_postgres, tmp_path):
    """After Register, System/Time: a platform clock a minute off is logged
    at warn (how far, not whose time)."""
    p = viid.ViidPlatform(OUR_ID, password=PASSWORD, clock_offset_s=-60, time_form="17")
    p.start()
    try:
        conf = tmp_path / "gridbridge.conf"
        conf.write_text(viid_config(tmp_path, mosquitto, private_postgres, p))
        start_daemon(daemon, conf)
        line = daemon.wait_log(r'msg="viid platform clock differs"', timeout=20)
        ahead = int(re.search(r"ours_ahead_s=(-?\d+)", line).group(1))
        assert 55 <= ahead <= 65, line
    finally:
        p.stop()


def wait_accepted(platform, n: int, kind: str | None = None, timeout: float = 10) -> None:
    """Wait until n deliveries (of kind, None: any) were accepted, repeats
    of an id counted (a device's status has its device's id every time)."""
    platform.wait_for(lambda: sum(r.accepted for r in platform.received(kind)) >= n,
                      timeout, f"{n} accepted {kind or 'objects'}")


def test_thousand_passages_survive_platform_restart(daemon, mosquitto, private_postgres,
                                                    platform, tmp_path):
    """The acceptance scale: 700 faces and 300 vehicles; the platform
    restarts while most rows are still pending; the daemon registers again
    and every object is accepted exactly once, with valid ids."""
    pg = private_postgres
    n_faces, n_vehicles = 700, 300
    conf = tmp_path / "gridbridge.conf"
    # Smaller batches than the default, so that the stream is many requests
    # and the restart falls between them.
    conf.write_text(viid_config(tmp_path, mosquitto, pg, platform,
                                target={"batch_rows": 50}))
    # Each upload answered after a while: the stream takes seconds, not a
    # blink, so the restart below lands while rows are pending.
    platform.reply_always(None, delay=0.3)
    start_daemon(daemon, conf)
    daemon.wait_log(UP, timeout=20)
    platform.wait_registered()
    platform.wait_for(lambda: platform.keepalives >= 1, 12, "a keepalive")

    publish_all(mosquitto, [person(i) for i in range(n_faces)] +
                [vehicle(i) for i in range(n_vehicles)])
    wait_accepted(platform, 150, timeout=60)

    platform.expire_sessions()  # the platform restarts: sessions and nonces forgotten
    pending = [r for r in outbox(pg) if r["state"] == "pending"]
    assert pending, "the restart came after the stream: nothing was pending"
    platform.wait_registered(timeout=20, registrations=2)
    rows = wait_rows(pg, n_faces + n_vehicles, timeout=90)

    assert all(r["state"] == "sent" for r in rows), [r for r in rows if r["state"] != "sent"][:5]
    faces = platform.wait_for_accepted("faces", n_faces)
    vehicles = platform.wait_for_accepted("motor_vehicles", n_vehicles)
    assert platform.duplicates("faces") == {} and platform.duplicates("motor_vehicles") == {}
    assert len(faces) + len(vehicles) == n_faces + n_vehicles
    assert platform.violations == []
    # One restart, one Register again: a handle that last sent under the old
    # session must not answer the new one with the forgotten nonce (its 401
    # would take the new session down again).
    assert platform.registrations == 2 and platform.keepalives >= 1
    down = logfmt.select(daemon.lines, mod="forward", msg="viid session down")
    assert len(down) == 1, down


def availability(device: str, state: str) -> tuple[str, bytes]:
    topic, _ = fixture("door_contact_z2m_availability")
    topic = topic.replace("b03/u2/1502/entry_door", device)
    return topic, json.dumps({"state": state}).encode()


def test_device_status_as_apes(daemon, mosquitto, private_postgres, platform, tmp_path):
    """device_online and device_offline of mapped devices go to PUT
    /VIID/APEs as APEObjects: IsOnline "1" and "2", FunctionType from the
    device class."""
    pg = private_postgres
    door, door_id = "b03/u2/1502/entry_door", "34010405011190000021"
    gw_topic, gw_doc = fixture("gateway_lwt")
    gateway, gateway_id = gw_topic.split("/")[3], "34010405011190000031"
    conf = tmp_path / "gridbridge.conf"
    text = viid_config(tmp_path, mosquitto, pg, platform)
    # the devices' own status messages (the registry's transitions, route
    # registry, are another rule's)
    text += "\n[forward.rule status]\ntarget = viid\nevent_type = device_online, device_offline\n" \
            "route = z2m-availability, gateway\n"
    text += f"\n[viid.device door]\ndevice = {door}\nid = {door_id}\n"
    text += f"\n[viid.device gateway]\ndevice = {gateway}\nid = {gateway_id}\n"
    conf.write_text(text)
    start_daemon(daemon, conf)
    daemon.wait_log(UP, timeout=20)
    platform.wait_registered()

    # One at a time, so that the platform sees them in this order.
    expected = [(availability(door, "online"), door_id, "1"),
                (availability(door, "offline"), door_id, "2"),
                ((gw_topic, json.dumps(gw_doc).encode()), gateway_id, "2")]
    for n, (msg, _, _) in enumerate(expected, 1):
        publish(mosquitto, [msg])
        wait_accepted(platform, n, "apes", timeout=20)
    rows = wait_rows(pg, len(expected))
    assert all(r["state"] == "sent" for r in rows), rows

    apes = platform.received("apes")
    assert [(r.obj["ApeID"], r.obj["IsOnline"]) for r in apes] == \
        [(ape_id, online) for _, ape_id, online in expected]
    assert all(r.accepted and r.obj.get("FunctionType") for r in apes), apes
    puts = [r for r in platform.requests if r.path == "/VIID/APEs" and r.http_status == 200]
    assert puts and all(r.method == "PUT" for r in puts)
    assert platform.violations == []
