"""No personal data in the log: names, plates and ID numbers that devices
send never appear in a line the daemon writes, at any level up to info.

One daemon (real broker, PostgreSQL, HTTPS endpoint and GA/T 1400 test
platform) is driven through what makes it log the most:

  - every decoder's every string field, and the topics (device ids and a
    community made of them), carry a person's name (Chinese and Latin), a
    plate or an 18-digit ID number; messages that are quarantined carry
    them too: a field over its length limit, a value echoed in the reason
    (unsupported:eventType:<value>), invalid JSON and UTF-8, no route, a
    message over max_message_size;
  - the database refuses records for their data with messages that quote
    the value (a CHECK constraint whose cast fails, 22P02; an operator's
    trigger that raises with the device id, P0001) and refuses derived
    rows the same way; then it goes away and comes back;
  - the police platform is down, then answers 503 and 400 with the
    personal data echoed in the reply; the GA/T 1400 platform answers with
    a body that is not JSON and with StatusStrings that echo it;
  - the daemon restarts.

Then every line of its stderr (and its stdout) is searched for each value
and each part of it: the name's given name, the plate without its province
character, the ID number's first 17 digits; also as JSON \\u escapes,
percent-encoded and as hex bytes. At log_level = info nothing may be
found. The same run at debug reports what it finds without failing: debug
is not for production and may say more.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse

import pytest

import logfmt
import viid
from ingest import daemon_config, start_daemon

NAME_ZH = "张秘密"
NAME_LATIN = "Mallory Secretname"
PLATE_WAN = "皖A9Z8Y7"
PLATE_JING = "京B12345"
ID_NUMBER = "34010419900101128X"

# Each value and the parts of it that are personal data on their own.
# Latin text is searched without regard to case; plates and ID numbers as
# written (the daemon upper-cases plates; lower-case hex is everywhere in
# the log, ids and keys, and must not match by chance).
PARTS = {
    NAME_ZH: [NAME_ZH, NAME_ZH[1:]],
    NAME_LATIN: [NAME_LATIN, "Mallory", "Secretname"],
    PLATE_WAN: [PLATE_WAN, PLATE_WAN[1:]],
    PLATE_JING: [PLATE_JING, PLATE_JING[1:]],
    ID_NUMBER: [ID_NUMBER, ID_NUMBER[:17]],
}
CASELESS = {NAME_LATIN}

# What a platform answers about an event it refuses: the event's data.
ECHO = f"{ID_NUMBER} {NAME_LATIN}: {PLATE_WAN} of {NAME_ZH} ({PLATE_JING}) refused"

COMMUNITY = "c-privacy"
TRIGGER_DEVICE = f"{NAME_LATIN}.{ID_NUMBER}"   # the device the trigger refuses
BARRIER_ID = "34010405011190000011"   # the GA/T 1400 platform's vehicle barrier
PASSWORD = "Pass1234"

REFUSED = logfmt.Match(mod="store", msg="batch refused by the database")
RETRYING = logfmt.Match(mod="store", msg="batch failed, retrying")
DERIVED_REFUSED = logfmt.Match(mod="pipeline", msg="derived rows refused by the database")
DB_DOWN = logfmt.Match(mod="store", msg="database unavailable")
DB_READY = logfmt.Match(mod="store", msg="ready")
DB_BACK = logfmt.Match(mod="store", msg="database available again")
TARGET_DOWN = logfmt.Match(mod="forward", msg="target unavailable", target="platform")
REFUSED_4XX = logfmt.Match(mod="forward", msg="events refused by the platform",
                           target="platform")
VIID_REFUSED = logfmt.Match(mod="forward", msg="event refused by the platform", target="viid")
OUTBOX_FAILED = logfmt.Match(mod="store", msg="outbox query failed")


def check_digit(first17: str) -> str:
    """GB 11643: the ID number's check character."""
    w = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(c) * k for c, k in zip(first17, w)) % 11]


def needles() -> list[tuple[str, str, bool]]:
    """(secret, needle, caseless): every form a part may take in a line."""
    out = []
    for secret, parts in PARTS.items():
        caseless = secret in CASELESS
        for p in parts:
            b = p.encode()
            forms = {p, urllib.parse.quote(p)}
            if any(ord(c) > 127 for c in p):
                escaped = json.dumps(p)[1:-1]
                forms |= {urllib.parse.quote(p).lower(), escaped,
                          escaped.upper().replace("\\U", "\\u"),
                          "".join(f"\\x{x:02x}" for x in b), " ".join(f"0x{x:02x}" for x in b),
                          b.hex()}
            out += [(secret, f, caseless) for f in sorted(forms)]
    return out


def summary(found: list[str]) -> str:
    """One example line per kind of line (mod and msg) that leaks, with counts."""
    kinds: dict[str, set[str]] = {}
    for f in found:
        line = f.split(" in: ", 1)[-1]
        m = re.search(r'mod=\S+ msg="[^"]*"', line)
        kinds.setdefault(m.group(0) if m else line, set()).add(line)
    return "\n".join(f"{len(v)} line(s) {k}\n    e.g. {min(v)}"
                     for k, v in sorted(kinds.items()))


def leaks(text: str) -> list[str]:
    """Lines of `text` holding any needle, with what they hold."""
    found = []
    ns = needles()
    for line in text.splitlines():
        lowered = line.lower()
        for secret, needle, caseless in ns:
            if (needle.lower() in lowered) if caseless else (needle in line):
                found.append(f"{needle!r} (of {secret!r}) in: {line}")
    return found


# --------------------------------------------------------------------------
# the messages


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(t + 8 * 3600))


def js(o) -> bytes:
    return json.dumps(o, ensure_ascii=False).encode()


def url(*names: str) -> str:
    return "http://10.20.0.5:8080/pic/" + "_".join(names) + ".jpg"


def messages(t: int, n: int, trigger: bool = False) -> list[tuple[str, str, bytes]]:
    """(label, topic, payload): the personal data in every string field each
    decoder reads and in the topics, and malformed variants of each. `n`
    tells one round's serials and topics from another's; `trigger` adds the
    message probe_database's trigger refuses."""
    c = COMMUNITY
    m = []

    def hik_access(**over):
        o = {"ipAddress": "10.20.1.31", "macAddress": ID_NUMBER, "deviceID": NAME_ZH,
             "dateTime": iso(t), "eventType": "AccessControllerEvent", "eventState": "active",
             "eventDescription": NAME_LATIN,
             "AccessControllerEvent": {
                 "deviceName": f"{NAME_LATIN} gate", "majorEventType": 5, "subEventType": 75,
                 "name": NAME_ZH, "employeeNoString": ID_NUMBER, "employeeNo": ID_NUMBER,
                 "cardNo": ID_NUMBER, "serialNo": 50000 + n, "userType": NAME_LATIN,
                 "currentVerifyMode": NAME_LATIN, "attendanceStatus": NAME_ZH,
                 "pictureURL": url(NAME_ZH, ID_NUMBER)}}
        o["AccessControllerEvent"].update(over)
        return o

    def anpr(plate, **over):
        o = {"macAddress": PLATE_WAN, "deviceID": PLATE_JING, "dateTime": iso(t + 1),
             "eventType": "ANPR", "eventState": "active", "channelName": NAME_ZH,
             "UUID": f"{ID_NUMBER}-{n}",
             "ANPR": {"licensePlate": plate, "line": PLATE_JING, "direction": NAME_LATIN,
                      "plateColor": NAME_ZH, "vehicleType": NAME_LATIN,
                      "vehicleInfo": {"color": PLATE_WAN}, "vehicleListName": ID_NUMBER,
                      "confidenceLevel": PLATE_WAN, "UUID": NAME_LATIN,
                      "serialNo": ID_NUMBER},
             "pictures": [{"name": NAME_ZH, "url": url(plate, "plate")},
                          {"name": NAME_LATIN, "url": url(plate, NAME_LATIN)}],
             "barrier": {"action": NAME_ZH, "reason": NAME_LATIN}}
        o["ANPR"].update(over)
        return o

    def dahua(**over):
        d = {"CardName": NAME_ZH, "CardNo": ID_NUMBER, "UserID": ID_NUMBER, "Name": NAME_LATIN,
             "SnapURL": url(NAME_ZH), "Type": PLATE_WAN, "Status": 1, "Method": 15,
             "RecNo": 70000 + n, "RealUTC": t, "LocaleTime": NAME_ZH}
        d.update(over)
        return {"Code": "AccessControl", "Action": NAME_LATIN, "Index": 0, "Data": d,
                "serialNumber": PLATE_JING}

    def alarm(**over):
        o = {"eventType": NAME_ZH, "eventId": f"{ID_NUMBER}-{n}", "deviceId": PLATE_WAN,
             "dateTime": iso(t + 2), "building": NAME_LATIN, "facade": NAME_ZH,
             "estimatedFloor": 17, "confidence": 87,
             "pictures": [{"type": NAME_ZH, "url": url(PLATE_JING)}],
             "videoClip": {"url": f"rtsp://10.20.3.31/{ID_NUMBER}"}}
        o.update(over)
        return o

    def report(**over):
        o = {"type": "report_opened", "report_id": f"{ID_NUMBER}-{n}", "community": NAME_ZH,
             "building": NAME_LATIN, "door": PLATE_WAN, "category": NAME_ZH,
             "description": f"{NAME_ZH} {ID_NUMBER}", "reporter": NAME_LATIN,
             "opened_at": iso(t), "deadline": iso(t + 86400)}
        o.update(over)
        return o

    acc = f"sac/{c}/access"
    # Hikvision: access, heartbeat (videoloss inactive), ANPR
    m.append(("hik access", f"{acc}/{ID_NUMBER}/event", js(hik_access())))
    m.append(("hik heartbeat", f"{acc}/{NAME_LATIN}/event",
              js({"macAddress": ID_NUMBER, "deviceID": NAME_ZH, "dateTime": iso(t + n),
                  "eventType": "videoloss", "eventState": "inactive",
                  "eventDescription": f"{NAME_ZH} {PLATE_WAN}"})))
    m.append(("hik anpr", f"sac/{c}/vehicle/{PLATE_WAN}/event", js(anpr(PLATE_WAN))))
    # ... to the GA/T 1400 platform: a barrier it knows, the plate in the body
    m.append(("hik anpr viid", f"sac/{c}/vehicle/{BARRIER_ID}/event",
              js(anpr(PLATE_WAN, serialNo=None) | {"UUID": f"viid-{n}"})))
    # Dahua, on the access route, a community made of a plate
    m.append(("dahua", f"sac/{PLATE_JING}/access/{NAME_ZH}/event", js(dahua())))
    # camera alarm, peephole, gateway, resident report
    m.append(("camera", f"sac/{c}/camera/{ID_NUMBER}/alarm", js(alarm())))
    m.append(("peephole", f"sac/{c}/peephole/{NAME_ZH}/event",
              js({"deviceId": PLATE_JING, "household": f"{NAME_LATIN} {ID_NUMBER}",
                  "event": "linger", "eventCode": 4, "dateTime": iso(t + 3 + n),
                  "durationSec": 38, "snapshotUrl": url(PLATE_WAN, NAME_ZH),
                  "powerSource": NAME_ZH})))
    m.append(("gateway", f"sac/{c}/gateway/{PLATE_WAN}/status",
              js({"state": "offline", "reason": f"{NAME_ZH} {ID_NUMBER}", "ts": iso(t + n),
                  "fw": NAME_LATIN, "uptimeSec": 3, "devicesTotal": 3, "devicesOnline": 0,
                  "offline": [ID_NUMBER, PLATE_JING, NAME_ZH]})))
    m.append(("report", f"sac/{c}/report/{NAME_LATIN}/event", js(report())))
    # Zigbee2MQTT, Shelly, Tasmota: device ids from the topic
    m.append(("z2m door", f"zigbee2mqtt/{NAME_ZH}/{PLATE_WAN}/{n}",
              js({"contact": False, "battery": 91, "last_seen": iso(t + n),
                  "device": {"friendlyName": NAME_LATIN, "ieeeAddr": ID_NUMBER}})))
    m.append(("z2m availability", f"zigbee2mqtt/{NAME_LATIN}/{ID_NUMBER}/{n}/availability",
              js({"state": "offline", "reason": NAME_ZH})))
    m.append(("z2m bridge", "zigbee2mqtt/bridge/state",
              js({"state": "online" if n % 2 else "offline", "owner": NAME_ZH})))
    m.append(("shelly door", f"shellies/{PLATE_JING}-{n}/sensor/state", b"open"))
    m.append(("shelly online", f"shellies/{ID_NUMBER}-{n}/online", b"false"))
    m.append(("tasmota", f"tele/{NAME_ZH}-{n}/LWT", b"Offline"))

    # quarantined: a field over its length limit ...
    m.append(("too long plate", f"sac/{c}/vehicle/{PLATE_JING}/event",
              js(anpr(PLATE_WAN * 5))))
    m.append(("too long name", f"{acc}/{PLATE_WAN}/event",
              js(hik_access(name=NAME_ZH * 40, serialNo=51000 + n))))
    m.append(("too long device", f"sac/{c}/camera/{ID_NUMBER * 8}/alarm", js(alarm())))
    m.append(("too long community", f"sac/{NAME_LATIN * 4}/camera/{PLATE_WAN}/alarm",
              js(alarm())))
    m.append(("too long report id", f"sac/{c}/report/{PLATE_WAN}/event",
              js(report(report_id=ID_NUMBER * 4))))
    # ... a value echoed in the reason (unsupported:<what>:<value>) or not
    m.append(("bad eventType", f"{acc}/{ID_NUMBER}/event",
              js(hik_access() | {"eventType": f"{NAME_ZH}{ID_NUMBER}"})))
    m.append(("bad Code", f"{acc}/{PLATE_WAN}/event",
              js(dahua() | {"Code": f"{PLATE_WAN} {NAME_LATIN}"})))
    m.append(("bad peephole event", f"sac/{c}/peephole/{ID_NUMBER}/event",
              js({"event": f"{NAME_LATIN} {ID_NUMBER}", "dateTime": iso(t)})))
    m.append(("bad gateway state", f"sac/{c}/gateway/{NAME_LATIN}/status",
              js({"state": f"{ID_NUMBER} {PLATE_JING}"})))
    m.append(("bad report type", f"sac/{c}/report/{NAME_ZH}/event",
              js(report(type=f"{NAME_ZH} {PLATE_WAN}"))))
    m.append(("bad time", f"sac/{c}/camera/{PLATE_WAN}/alarm", js(alarm(dateTime=PLATE_WAN))))
    m.append(("bad hik time", f"{acc}/{PLATE_JING}/event",
              js(hik_access(serialNo=52000 + n) | {"dateTime": NAME_ZH})))
    m.append(("bad eventState", f"{acc}/{ID_NUMBER}-{n}/event",
              js({"eventType": "videoloss", "eventState": f"{NAME_LATIN} {ID_NUMBER}"})))
    m.append(("bad LocaleTime", f"{acc}/{NAME_LATIN}/event",
              js(dahua(RealUTC=None, UTC=None, LocaleTime=f"{NAME_ZH} {PLATE_WAN}"))))
    m.append(("bad last_seen", f"zigbee2mqtt/{PLATE_JING}/{n}",
              js({"contact": True, "last_seen": f"{NAME_LATIN} {ID_NUMBER}"})))
    m.append(("bad report time", f"sac/{c}/report/{ID_NUMBER}/event",
              js(report(report_id=f"{PLATE_WAN}-{n}", opened_at=NAME_LATIN))))
    m.append(("bad subEventType", f"{acc}/{NAME_ZH}/event",
              js(hik_access(subEventType=ID_NUMBER))))
    m.append(("bad shelly word", f"shellies/{NAME_LATIN}-{n}/sensor/state", NAME_ZH.encode()))
    m.append(("bad shelly online", f"shellies/{PLATE_WAN}-{n}/online", NAME_LATIN.encode()))
    m.append(("bad gateway word", f"sac/{c}/gateway/{ID_NUMBER}-{n}/status",
              f"{NAME_LATIN} {PLATE_JING}".encode()))
    m.append(("bad tasmota word", f"tele/{PLATE_WAN}-{n}/LWT", ID_NUMBER.encode()))
    m.append(("bad z2m state", f"zigbee2mqtt/{ID_NUMBER}/{n}/availability",
              js({"state": NAME_LATIN})))
    m.append(("bad bridge state", "zigbee2mqtt/bridge/state", js({"state": ID_NUMBER})))
    # ... invalid JSON, invalid UTF-8, no route, over max_message_size
    m.append(("bad json", f"sac/{c}/camera/{NAME_ZH}/alarm",
              f'{{"eventType": "{NAME_ZH}", "deviceId": "{ID_NUMBER}", "plate": "{PLATE_WAN}'
              .encode()))
    m.append(("bad utf8", f"{acc}/{PLATE_JING}/event",
              NAME_LATIN.encode() + b"\xff\xfe" + PLATE_WAN.encode()))
    m.append(("no route", f"unrouted/{NAME_ZH}/{PLATE_WAN}/{ID_NUMBER}",
              js({"who": NAME_LATIN})))
    m.append(("oversize", f"sac/{c}/camera/{NAME_LATIN}/alarm",
              js(alarm(facade=(NAME_ZH + ID_NUMBER) * 300))))
    # refused by the database (see probe_database): the plate fails a cast
    # (22P02, the plate quoted), the device id an operator's trigger (P0001)
    m.append(("db cast", f"sac/{c}/vehicle/{PLATE_WAN}-{n}/event", js(anpr(PLATE_JING))))
    if trigger:
        m.append(("db trigger", f"shellies/{TRIGGER_DEVICE}/sensor/state", b"open"))
    return m


# --------------------------------------------------------------------------
# the services


def query(pg, sql: str, args=None):
    with pg.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def probe_database(pg) -> None:
    """What an operator may add: rules whose errors quote the row's values."""
    query(pg, "ALTER TABLE events ADD CONSTRAINT privacy_plate"
              " CHECK (plate IS NULL OR plate NOT LIKE '京%' OR plate::bigint > 0)")
    query(pg, """
        CREATE FUNCTION privacy_probe() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE NOTICE 'stored for %%', NEW.device_id;
          IF NEW.device_id = %s THEN
            RAISE EXCEPTION 'device %% is %%', NEW.device_id, %s;
          END IF;
          RETURN NEW;
        END $$""", (TRIGGER_DEVICE, NAME_ZH))
    query(pg, "CREATE TRIGGER privacy_probe BEFORE INSERT ON events"
              " FOR EACH ROW EXECUTE FUNCTION privacy_probe()")
    # the registry's rows, written apart from the records (derived rows)
    query(pg, "ALTER TABLE devices ADD CONSTRAINT privacy_device"
              " CHECK (device_id NOT LIKE '京%' OR device_id::bigint > 0)")
    # the outbox, where a platform's reply is kept (the forwarder's queries)
    query(pg, "ALTER TABLE forward_outbox ADD CONSTRAINT privacy_outbox"
              " CHECK (last_error IS NULL OR last_error NOT LIKE '%refused' OR"
              " last_error::bigint > 0)")


def stored(pg) -> int:
    """Messages accounted for: events of devices (not derived) and quarantine rows."""
    return query(pg, "SELECT (SELECT count(*) FROM events WHERE vendor <> 'gridbridge')"
                     " + (SELECT count(*) FROM quarantine)")[0][0]


def wait_until(pred, timeout: float, what: str, daemon=None):
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = pred()
        except Exception:  # the database may be away
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            tail = "\n".join(daemon.lines[-30:]) if daemon is not None else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.1)


def publish(broker, msgs) -> None:
    c = broker.client("privacy-publisher")
    try:
        infos = [c.publish(topic, payload, qos=1) for _, topic, payload in msgs]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


def config(tmp_path, level, broker, pg, endpoint, platform) -> str:
    text = daemon_config(tmp_path, broker, client_id="gridbridge-privacy", store_db=pg,
                         routes=True, subscribe=("#",), log_level=level,
                         mqtt={"max_message_size": 4096},
                         store={"batch_ms": 20})
    # Every line written: repeats suppressed by the rate limit are not searched.
    text = text.replace("[daemon]\n", "[daemon]\nlog_rate_burst = 0\n", 1)
    text += "\n[registry]\nhold_down = 0\n"
    t = {"url": endpoint.url, "format": "protobuf", "ca_file": endpoint.ca_file,
         "cert_file": endpoint.client_cert, "key_file": endpoint.client_key,
         "retry_base_ms": 100, "retry_cap_ms": 400, "timeout": 5, "connect_timeout": 2}
    text += "\n[forward.target platform]\n" + "".join(f"{k} = {v}\n" for k, v in t.items())
    text += "\n[forward.rule everything]\ntarget = platform\npriority = 3\n"
    pw = tmp_path / "viid-password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    v = {"profile": "viid", "url": platform.url, "allow_http": "true",
         "viid_device_id": viid.DEFAULT_DEVICE_ID, "password_file": pw, "keepalive_s": 5,
         "register_retry_max_s": 1, "retry_base_ms": 100, "retry_cap_ms": 400,
         "timeout": 5, "connect_timeout": 2}
    text += "\n[forward.target viid]\n" + "".join(f"{k} = {v}\n" for k, v in v.items())
    text += "\n[forward.rule viid-vehicles]\ntarget = viid\npriority = 3\n" \
            "event_type = vehicle_passage\n"
    text += f"\n[viid.device barrier]\ndevice = {BARRIER_ID}\nid = {BARRIER_ID}\n"
    return text


@pytest.fixture
def platform():
    p = viid.ViidPlatform(viid.DEFAULT_DEVICE_ID, password=PASSWORD)
    p.start()
    try:
        yield p
    finally:
        p.stop()


def run_scenario(daemon, mosquitto, pg, endpoint, platform, tmp_path, level) -> str:
    """Drives the daemon through every path that logs; returns all it wrote."""
    endpoint.close_port()   # the platform is down at first
    platform.reply_next("/VIID/MotorVehicles", body=ECHO)   # not JSON
    platform.reply_always("/VIID/MotorVehicles", code=viid.INVALID_OPERATION,
                          status_string=ECHO)
    conf = daemon.write_config(config(tmp_path, level, mosquitto, pg, endpoint, platform))
    start_daemon(daemon, conf)
    daemon.wait_log(DB_READY, timeout=30)
    probe_database(pg)

    t = int(time.time())
    total = 0
    first = messages(t, 1, trigger=True)
    # The record the trigger refuses goes alone: a batch failing that way
    # is tried three times before it is split.
    lone = [x for x in first if x[0] == "db trigger"]
    publish(mosquitto, lone)
    total += len(lone)
    daemon.wait_log(RETRYING, timeout=15)
    wait_until(lambda: stored(pg) >= total, 20, "the refused record quarantined", daemon)
    rest = [x for x in first if x[0] != "db trigger"]
    publish(mosquitto, rest)
    total += len(rest)
    wait_until(lambda: stored(pg) >= total, 20, "every message stored or quarantined", daemon)
    daemon.wait_log(REFUSED, timeout=10)
    daemon.wait_log(DERIVED_REFUSED, timeout=10)
    daemon.wait_log(TARGET_DOWN, timeout=10)
    daemon.wait_log(VIID_REFUSED, timeout=15)
    query(pg, "ALTER TABLE devices DROP CONSTRAINT privacy_device")

    # The platform back: 503 once, then 400 for anything with personal
    # data in it, the reply echoing it.
    endpoint.push_response(status=503, body=ECHO)
    endpoint.answer_with(lambda req: {"status": 400, "body": ECHO}
                         if PLATE_WAN.encode() in req.body or NAME_ZH.encode() in req.body
                         or ID_NUMBER.encode() in req.body else None)
    endpoint.reopen()
    daemon.wait_log(REFUSED_4XX, timeout=20)
    daemon.wait_log(OUTBOX_FAILED, timeout=10)
    query(pg, "ALTER TABLE forward_outbox DROP CONSTRAINT privacy_outbox")

    # The database away while messages come, then back.
    since = len(daemon.lines)
    pg.stop("fast")
    daemon.wait_log(DB_DOWN, timeout=15, since=since)
    second = messages(t + 10, 2)
    publish(mosquitto, second)  # acknowledged: in the journal, not stored
    total += len(second)
    pg.start()
    daemon.wait_log(DB_BACK, timeout=30, since=since)
    wait_until(lambda: stored(pg) >= total, 30, "the backlog stored", daemon)

    # A restart: the journal and the outbox are taken up again.
    assert daemon.stop() == 0
    endpoint.close_port()
    start_daemon(daemon, conf)
    third = messages(t + 20, 3)
    publish(mosquitto, third)
    total += len(third)
    wait_until(lambda: stored(pg) >= total, 30, "the last round stored", daemon)
    daemon.wait_log(TARGET_DOWN, timeout=15)
    assert daemon.stop() == 0

    text = daemon.log_path.read_text(errors="replace")
    if daemon.stdout_path.exists():
        text += daemon.stdout_path.read_text(errors="replace")
    return text


def test_needles_find_what_they_should():
    assert check_digit(ID_NUMBER[:17]) == ID_NUMBER[17]
    assert leaks(f'<4>level=warn mod=x msg="y" error="{PLATE_WAN[1:]}"')
    assert leaks("error=mallory")
    assert leaks("\\u5f20\\u79d8\\u5bc6")
    assert leaks("0xe7 0xa7 0x98 0xe5 0xaf 0x86")
    assert not leaks('<6>level=info mod=forward msg="sent" key=0b12345e2f')


def test_no_personal_data_in_the_log_at_info(daemon, mosquitto, private_postgres,
                                             https_endpoint, platform, tmp_path):
    text = run_scenario(daemon, mosquitto, private_postgres, https_endpoint, platform,
                        tmp_path, "info")
    assert [line for line in text.splitlines() if "level=debug" in line] == []
    found = leaks(text)
    assert not found, f"personal data in the log (log: {daemon.log_path}):\n{summary(found)}"


def test_personal_data_at_debug_is_reported(daemon, mosquitto, private_postgres,
                                            https_endpoint, platform, tmp_path, report):
    """Not a failure: what debug lines show is reported, for the record."""
    text = run_scenario(daemon, mosquitto, private_postgres, https_endpoint, platform,
                        tmp_path, "debug")
    found = leaks(text)
    up_to_info = leaks("\n".join(line for line in text.splitlines()
                                 if "level=debug" not in line))
    assert not up_to_info, f"personal data in a line above debug:\n{summary(up_to_info)}"
    report(f"debug lines with personal data: {len(found)}\n{summary(found)}")
