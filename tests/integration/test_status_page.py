"""The status page (/, /api/status, /api/events) with a real broker,
PostgreSQL and daemon, and a real browser:

  1. /api/status says what the database says: today's counts per event
     type, events over the last hour, the online rate per class (the
     `devices` table, also per community), the latest camera alarm,
     overdue resident reports, and the police platform down with its
     backlog and oldest pending row (the outbox), then up with none; it marks the database figures stale when the database goes away and
     fresh again when it is back;
  2. /api/events (server-sent events) delivers an update carrying a new
     alarm within seconds of its publication;
  3. with [admin] status_token_file, /, /api/status and /api/events answer
     401 without the token (or with a wrong one) and 200 with it, as a
     bearer token or ?token=; /healthz, /readyz, /metrics and the page's
     style and script are open; the page carries a strict CSP;
  4. headless Chromium loads the page from the daemon (with the token in
     its URL), waits for live data, and the numbers it shows match the
     database (online rate, today's counts, latest alarm); a screenshot of
     each theme is saved and reported;
  and no personal data anywhere: the devices send a person's name, a
  plate, an ID number (and a resident report's free text with a name);
  none of them, nor their parts, is in the JSON, the stream, the HTML or
  the rendered page.
"""

from __future__ import annotations

import base64
import fcntl
import http.client
import json
import os
import re
import select
import shutil
import socket
import subprocess
import threading
import time
import uuid

import pytest

import services
from ingest import daemon_config, start_daemon
from services import free_port
from test_forward import wait_until
from test_store import db_query

FIX = services.FIXTURES_DIR / "devices"
COMMUNITY = "340104050101"
TZ = 8 * 3600

NAME_LATIN = "Mallory Secretname"
NAME_ZH = "张秘密"
PLATE = "皖A9Z8Y7"
ID_NUMBER = "34010419900101128X"
# each secret and the parts of it that are personal on their own
SECRETS = [NAME_LATIN, "Mallory", "Secretname", NAME_ZH, NAME_ZH[1:], PLATE, PLATE[1:],
           ID_NUMBER, ID_NUMBER[:17]]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(t + TZ))


def fixture(name: str) -> tuple[str, dict]:
    topic = (FIX / f"{name}.topic.txt").read_text().strip()
    return topic, json.loads((FIX / f"{name}.json").read_text())


def js(o) -> bytes:
    return json.dumps(o, ensure_ascii=False).encode()


def alarm(t: float) -> tuple[str, bytes]:
    topic, doc = fixture("camera_alarm_high_altitude_throwing")
    doc["eventId"] = str(uuid.uuid4())
    doc["dateTime"] = iso(t)
    return topic, js(doc)


def messages(now: float) -> list[tuple[str, bytes]]:
    """A mix, timed within the last minutes: person passages with a name and
    an ID number, vehicle passages with a plate, a high-altitude-throwing
    alarm, door sensors (one going offline), a resident report overdue."""
    out = []
    for i in range(3):
        topic, doc = fixture("gate_person_access_hikvision")
        ev = doc["AccessControllerEvent"]
        ev["name"] = NAME_LATIN
        ev["employeeNoString"] = ID_NUMBER
        ev["serialNo"] = 50000 + i
        doc["dateTime"] = iso(now - 120 + i)
        out.append((topic, js(doc)))
    for i in range(2):
        topic, doc = fixture("vehicle_barrier_anpr_hikvision")
        doc["ANPR"]["licensePlate"] = PLATE
        doc["ANPR"]["vehicleInfo"]["index"] = 7000 + i
        doc["dateTime"] = iso(now - 90 + i)
        out.append((topic, js(doc)))
    out.append(alarm(now - 60))
    for i in range(3):
        out.append((f"zigbee2mqtt/b07/u1/{1501 + i}/entry_door",
                    js({"contact": i % 2 == 0, "battery": 90, "trigger_count": i,
                        "last_seen": iso(now - 30)})))
    out.append(("zigbee2mqtt/b07/u1/1503/entry_door/availability", js({"state": "offline"})))
    topic, doc = fixture("resident_report_opened")
    doc["report_id"] = "RP-status-1"
    doc["description"] = f"{NAME_ZH} at {ID_NUMBER} says the light is out"
    doc["opened_at"] = iso(now - 3 * 3600)
    doc["deadline"] = iso(now - 3600)
    out.append((topic, js(doc)))
    return out


def publish(broker, msgs) -> None:
    for topic, payload in msgs:
        broker.publish(topic, payload, qos=1)


def get(port: int, path: str, headers: dict | None = None, timeout: float = 5.0):
    """(status, headers, body text) of one request."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        c.close()


def status(port: int, token: str | None = None) -> dict:
    code, _, body = get(port, "/api/status" + (f"?token={token}" if token else ""))
    assert code == 200, body
    return json.loads(body)


def config(tmp_path, broker, pg, port: int, admin: str = "", extra: str = "") -> str:
    text = daemon_config(tmp_path, broker, store_db=pg, routes=True, subscribe=("#",))
    text += "\n[registry]\nhold_down = 0\n" + extra
    return text + f"\n[admin]\nlisten = 127.0.0.1:{port}\nstatus_refresh = 1\n{admin}"


def stored(pg) -> int:
    return db_query(pg, "SELECT count(*) FROM events WHERE vendor <> 'gridbridge'")[0][0]


def start(daemon, mosquitto, pg, tmp_path, admin: str = "", extra: str = "") -> tuple[int, int]:
    """A daemon with the mix stored: (admin port, events published)."""
    port = free_port()
    conf = daemon.write_config(config(tmp_path, mosquitto, pg, port, admin, extra))
    start_daemon(daemon, conf)
    msgs = messages(time.time())
    publish(mosquitto, msgs)
    wait_until(lambda: stored(pg) >= len(msgs), 30, "the mix stored")
    return port, len(msgs)


# --------------------------------------------------------------------------
# what the database says


def day_start_ms(now: float) -> int:
    local = int(now) + TZ
    return (local - local % 86400 - TZ) * 1000


def sql_today(pg, day0_ms: int) -> dict:
    rows = db_query(pg, "SELECT event_type, count(*) FROM events WHERE event_time >= "
                        "to_timestamp(%s / 1000.0) AND event_time < to_timestamp(%s / 1000.0) "
                        "+ interval '1 day' GROUP BY 1", day0_ms, day0_ms)
    return {t: n for t, n in rows}


def sql_online(pg) -> dict:
    rows = db_query(pg, "SELECT device_class, count(*) FILTER (WHERE state = 'online'), count(*)"
                        " FROM devices GROUP BY 1")
    return {c: (on, total) for c, on, total in rows}


def sql_latest_alarm(pg) -> tuple[str, int]:
    r = db_query(pg, "SELECT id::text, (extract(epoch FROM event_time) * 1000)::bigint FROM events"
                     " WHERE event_type = 'camera_alarm' ORDER BY event_time DESC LIMIT 1")
    return r[0][0], r[0][1]


def sql_overdue(pg, now_ms: int) -> int:
    return db_query(pg, "SELECT count(*) FROM resident_reports WHERE handled_at IS NULL AND "
                        "closed_at IS NULL AND deadline < to_timestamp(%s / 1000.0)", now_ms)[0][0]


def sql_last_hour(pg, now_ms: int) -> int:
    """The 60 whole minutes before the one now_ms is in, by event time."""
    return db_query(pg, "WITH m AS (SELECT date_trunc('minute', to_timestamp(%s / 1000.0)) AS m)"
                        " SELECT count(*) FROM events, m WHERE event_time >= m - interval"
                        " '1 hour' AND event_time < m", now_ms)[0][0]


def api_today(s: dict) -> dict:
    out = {}
    for r in s["db"]["figures"]["today"]:
        out[r["event_type"]] = out.get(r["event_type"], 0) + r["count"]
    return out


def api_online(s: dict) -> dict:
    return {c["device_class"]: (c["online"], c["total"]) for c in s["devices"]["classes"]}


def matches_database(pg, s: dict) -> list[str]:
    """What of `s` differs from the database (empty: all agrees)."""
    if s["db"]["figures"] is None or s["db"]["stale"]:
        return ["no fresh database figures"]
    f = s["db"]["figures"]
    diffs = []
    if api_today(s) != sql_today(pg, f["day_start_ms"]):
        diffs.append(f"today {api_today(s)} != {sql_today(pg, f['day_start_ms'])}")
    if api_online(s) != sql_online(pg):
        diffs.append(f"online {api_online(s)} != {sql_online(pg)}")
    latest = sql_latest_alarm(pg)
    if not f["alarms"] or (f["alarms"][0]["id"], f["alarms"][0]["time_ms"]) != latest:
        diffs.append(f"latest alarm {f['alarms'][:1]} != {latest}")
    if f["overdue_reports_total"] != sql_overdue(pg, s["db"]["as_of_ms"]):
        diffs.append("overdue reports")
    hour = sum(r["count"] for r in f["per_minute"])
    if hour != sql_last_hour(pg, s["db"]["as_of_ms"]):
        diffs.append(f"last hour {hour} != {sql_last_hour(pg, s['db']['as_of_ms'])}")
    return diffs


def agreeing_status(port: int, pg) -> dict:
    """/api/status once it says what the database says (within 30 s)."""
    last = {}

    def agrees():
        last["s"] = s = status(port)
        last["diffs"] = matches_database(pg, s)
        return not last["diffs"]
    try:
        wait_until(agrees, 30, "status figures equal to the database")
    except AssertionError:
        raise AssertionError(f"differs: {last.get('diffs')}")
    return last["s"]


def leaks(text: str) -> list[str]:
    found = []
    for secret in SECRETS:
        forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
        for f in forms:
            if f.lower() in text.lower():
                found.append(f)
    return found


# --------------------------------------------------------------------------
# the tests


def test_status_figures_match_database(daemon, mosquitto, private_postgres, https_endpoint,
                                       tmp_path):
    pg, ep = private_postgres, https_endpoint
    ep.close_port()     # the police platform away: a backlog
    target = (f"\n[forward.target police]\nurl = {ep.url}\nca_file = {ep.ca_file}\n"
              f"cert_file = {ep.client_cert}\nkey_file = {ep.client_key}\n"
              "retry_base_ms = 100\nretry_cap_ms = 200\n"
              "\n[forward.rule all]\ntarget = police\n")
    port, _ = start(daemon, mosquitto, pg, tmp_path, extra=target)
    now = time.time()

    # the numbers, once the registry and the cache have caught up
    s = agreeing_status(port, pg)
    f = s["db"]["figures"]
    assert f["day_start_ms"] == day_start_ms(now) or f["day_start_ms"] == day_start_ms(time.time())
    assert s["timezone"] == "+08:00"
    today = api_today(s)
    assert today["person_passage"] == 3 and today["vehicle_passage"] == 2, today
    assert today["camera_alarm"] == 1, today
    online = api_online(s)
    assert online["door_sensor"] == (2, 3), online   # one offline by its availability
    assert f["alarms"][0]["kind"] == "high_altitude_throwing"
    assert f["alarms"][0]["severity"] == "critical"
    assert f["alarms"][0]["community"] == COMMUNITY
    assert f["overdue_reports_total"] == 1
    rep = f["overdue_reports"][0]
    assert set(rep) == {"community", "building", "door", "category", "opened_ms", "deadline_ms"}
    assert sum(r["count"] for r in f["per_minute"]) >= 3    # at least the passages 2 min ago
    assert all(0 <= r["minute"] < 60 for r in f["per_minute"])
    assert s["health"]["ready"] and s["health"]["database_up"] and s["health"]["broker_up"]
    assert abs(s["as_of_ms"] / 1000 - time.time()) < 5
    # per community and class, the same as the devices table
    rows = db_query(pg, "SELECT community_id, device_class, count(*) FILTER (WHERE state = "
                        "'online'), count(*) FROM devices GROUP BY 1, 2")
    assert {(c["community"], c["device_class"]): (c["online"], c["total"])
            for c in s["devices"]["communities"]} == {(a, b): (c, d) for a, b, c, d in rows}

    # the police platform: down, its backlog and the oldest pending, as the outbox says
    def backlog():
        t = status(port)["forward"]
        rows = db_query(pg, "SELECT count(*), extract(epoch FROM now() - min(created_at)) FROM "
                            "forward_outbox WHERE target = 'police' AND state = 'pending'")
        return t if t and t[0]["pending"] == rows[0][0] > 0 and \
            abs(t[0]["oldest_pending_s"] - float(rows[0][1])) < 8 else None
    t = wait_until(backlog, 30, "the backlog of the police platform")
    assert t[0]["target"] == "police" and t[0]["up"] is False, t
    ep.reopen()
    wait_until(lambda: (lambda t: t[0]["up"] and t[0]["pending"] == 0)(status(port)["forward"]),
               30, "the police platform up, nothing pending")

    # the stream: at once, then an update with a new alarm
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    c.settimeout(1)
    buf = bytearray()
    events = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                chunk = c.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf.extend(chunk)
            for line in bytes(buf).split(b"\n")[:-1]:
                if line.startswith(b"data: ") and line not in events:
                    events.append(line)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        wait_until(lambda: events, 10, "the first event at once")
        head = bytes(buf).split(b"\r\n\r\n", 1)[0].decode()
        assert head.startswith("HTTP/1.1 200"), head
        assert "text/event-stream" in head
        first = json.loads(events[0][6:])
        assert first["db"]["figures"]["alarms"][0]["id"] == sql_latest_alarm(pg)[0]
        publish(mosquitto, [alarm(time.time())])
        t0 = time.monotonic()
        wait_until(lambda: sql_latest_alarm(pg)[0] != first["db"]["figures"]["alarms"][0]["id"],
                   20, "the new alarm stored")
        new_id = sql_latest_alarm(pg)[0]

        def streamed():
            for line in list(events):
                figures = json.loads(line[6:])["db"]["figures"]
                if figures["alarms"] and figures["alarms"][0]["id"] == new_id:
                    return True
            return False
        wait_until(streamed, 15, "the new alarm in the stream")
        assert time.monotonic() - t0 < 15
        assert len(events) >= 2
    finally:
        stop.set()
        c.close()
        t.join(5)
    stream_text = bytes(buf).decode("utf-8", "replace")

    # no personal data in the JSON, the stream, the page
    code, headers, html = get(port, "/")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    body = get(port, "/api/status")[2]
    for name, text in (("/api/status", body), ("/api/events", stream_text), ("/", html)):
        assert not leaks(text), f"{name} holds {leaks(text)}"
    # ... though the database holds them (the test would see them)
    assert db_query(pg, "SELECT count(*) FROM events WHERE plate IS NOT NULL")[0][0] >= 2

    # the database away: the cached figures are marked stale, the rest goes on
    pg.stop()
    s = wait_until(lambda: (lambda s: s if s["db"]["stale"] else None)(status(port)), 20,
                   "figures stale")
    assert s["db"]["figures"] is not None and s["db"]["as_of_ms"] < s["as_of_ms"]
    assert not s["health"]["database_up"]
    pg.start()
    wait_until(lambda: not status(port)["db"]["stale"], 30, "figures fresh again")


def write_token(tmp_path, token: str):
    p = tmp_path / "status-token"
    p.write_text(token + "\n")
    p.chmod(0o600)
    return p


def test_status_counts_an_event_delivered_twice_once(daemon, mosquitto, private_postgres,
                                                      tmp_path):
    # The broker delivers again what it was not sure we had: the figures
    # count what is stored (one row per event), not what arrived.
    pg = private_postgres
    port = free_port()
    start_daemon(daemon, daemon.write_config(config(tmp_path, mosquitto, pg, port)))
    msgs = messages(time.time())
    publish(mosquitto, msgs)
    wait_until(lambda: stored(pg) >= len(msgs), 30, "the mix stored")
    publish(mosquitto, msgs)    # in batches of their own: each copy meets its stored row
    wait_until(lambda: db_query(pg, "SELECT coalesce(max(journal_seq), 0) FROM "
                                    "ingest_checkpoint")[0][0] >= 2 * len(msgs),
               30, "both copies taken")
    assert stored(pg) == len(msgs)
    today = api_today(agreeing_status(port, pg))
    assert today["person_passage"] == 3 and today["vehicle_passage"] == 2, today
    assert today["camera_alarm"] == 1, today


def test_status_token(daemon, mosquitto, private_postgres, tmp_path):
    token = "screen-" + uuid.uuid4().hex
    tf = write_token(tmp_path, token)
    port = free_port()
    conf = daemon.write_config(config(tmp_path, mosquitto, private_postgres, port,
                                      f"status_token_file = {tf}\nmax_connections = 3\n"))
    start_daemon(daemon, conf)
    for path in ("/", "/index.html", "/api/status", "/api/events"):
        code, headers, _ = get(port, path)
        assert code == 401, path
        assert headers.get("WWW-Authenticate", "").startswith("Bearer"), path
        assert get(port, path, {"Authorization": "Bearer wrong"})[0] == 401, path
        assert get(port, path + "?token=wrong")[0] == 401, path
        assert get(port, path + "?token=" + token[:-1])[0] == 401, path
    for path in ("/", "/api/status"):
        assert get(port, path, {"Authorization": f"Bearer {token}"})[0] == 200, path
        assert get(port, f"{path}?theme=dark&token={token}")[0] == 200, path
    # the stream with the token: its first event
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", f"/api/events?token={token}")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
    line = r.fp.readline()
    while not line.startswith(b"data: "):
        line = r.fp.readline()
    assert json.loads(line[6:])["version"]
    # streams take at most max_connections - 1: a third screen polls, /metrics answers
    c2 = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c2.request("GET", "/api/events", headers={"Authorization": f"Bearer {token}"})
    r2 = c2.getresponse()
    assert r2.status == 200
    code, _, body = get(port, f"/api/events?token={token}")
    assert code == 503 and "poll /api/status" in body
    assert get(port, "/metrics")[0] == 200
    for x in (r2, c2, r, c):    # the responses hold the sockets too
        x.close()
    # a stream that ended gives its place back
    wait_until(lambda: _stream_opens(port, token), 10, "a stream again")
    # the rest is as before
    for path in ("/healthz", "/metrics", "/status.css", "/status.js"):
        assert get(port, path)[0] == 200, path
    assert get(port, "/readyz")[0] in (200, 503)
    code, headers, _ = get(port, "/status.js")
    assert headers["Content-Type"].startswith("text/javascript")
    assert headers["X-Content-Type-Options"] == "nosniff"
    # the token never reaches the log
    assert token not in daemon.log_path.read_text()


def _stream_opens(port: int, token: str) -> bool:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", f"/api/events?token={token}")
        return c.getresponse().status == 200
    finally:
        c.close()


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe
    (--remote-debugging-pipe: JSON messages ending in NUL on fds 3 and 4),
    so a test can wait for live data, watch it change and take screenshots
    without a WebSocket library."""

    def __init__(self, profile):
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()
        # chromium's ends, above the fds it must get (3 and 4), closed on exec
        r = fcntl.fcntl(to_r, fcntl.F_DUPFD_CLOEXEC, 10)
        w = fcntl.fcntl(from_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_r)
        os.close(from_w)

        def pipes():
            os.dup2(r, 3)
            os.dup2(w, 4)
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "--window-size=1920,1080", "about:blank"],
            preexec_fn=pipes, close_fds=False, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(r)
        os.close(w)
        self._buf = b""
        self._id = 0
        self.session = None

    def call(self, method: str, params: dict | None = None, session: bool = True,
             timeout: float = 30.0) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                m = json.loads(raw)
                if m.get("id") == self._id:
                    if "error" in m:
                        raise RuntimeError(f"{method}: {m['error']}")
                    return m.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(method)
            r, _, _ = select.select([self._from_r], [], [], left)
            if r:
                chunk = os.read(self._from_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium went away")
                self._buf += chunk

    def open(self, url: str, width: int = 1920, height: int = 1080) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)
        self.session = self.call("Target.attachToTarget", {"targetId": target["targetId"],
                                                           "flatten": True},
                                 session=False)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 1,
                                                         "mobile": width < 800})
        self.call("Page.enable")
        self.call("Page.navigate", {"url": url})

    def eval(self, expression: str):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return r.get("result", {}).get("value")

    def hooks(self) -> dict:
        """data-testid -> (attributes, text) of the page as it is now."""
        rows = json.loads(self.eval(
            "JSON.stringify(Array.from(document.querySelectorAll('[data-testid]')).map(e => "
            "[e.getAttribute('data-testid'), Object.fromEntries(Array.from(e.attributes)"
            ".map(a => [a.name, a.value])), e.textContent]))") or "[]")
        return {k: (a, t) for k, a, t in rows}

    def screenshot(self, path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_w)
        os.close(self._from_r)


def page_matches_database(pg, hooks: dict) -> list[str]:
    """What the page shows that differs from the database (empty: none)."""
    if "data-day-start" not in hooks.get("today", ({}, ""))[0]:
        return ["no figures yet"]
    diffs = []
    today = sql_today(pg, int(hooks["today"][0]["data-day-start"]))
    for t in ("person_passage", "vehicle_passage", "camera_alarm", "welfare_alert"):
        text = hooks[f"today-{t}"][1].strip()
        if text != str(today.get(t, 0)):
            diffs.append(f"today {t}: {text} != {today.get(t, 0)}")
    for cls, (on, total) in sql_online(pg).items():
        if f"online-rate-{cls}" not in hooks:
            diffs.append(f"no online rate of {cls}")
            continue
        attrs, text = hooks[f"online-rate-{cls}"]
        want = f"{round(on * 1000 / total) / 10:.1f}%"
        if (int(attrs["data-online"]), int(attrs["data-total"])) != (on, total) or \
                text.strip() != want:
            diffs.append(f"online {cls}: {text} {attrs} != {on}/{total} {want}")
    alarm_id, alarm_ms = sql_latest_alarm(pg)
    attrs, text = hooks["latest-alarm"]
    hhmmss = time.strftime("%H:%M:%S", time.gmtime(alarm_ms / 1000 + TZ))
    if attrs.get("data-id") != alarm_id or attrs.get("data-time-ms") != str(alarm_ms) or \
            hhmmss not in text:
        diffs.append(f"latest alarm {attrs.get('data-id')} {text!r} != {alarm_id} {hhmmss}")
    return diffs


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/deps installs it)")
def test_status_page_in_browser(daemon, mosquitto, private_postgres, tmp_path, report):
    pg = private_postgres
    token = "screen-" + uuid.uuid4().hex
    tf = write_token(tmp_path, token)
    port, _ = start(daemon, mosquitto, pg, tmp_path, f"status_token_file = {tf}\n")
    url = f"http://127.0.0.1:{port}/?token={token}"
    b = Browser(tmp_path / "chromium-profile")
    try:
        # the numbers shown are the database's
        b.open(url)
        last = {}

        def agrees():
            last["diffs"] = page_matches_database(pg, b.hooks())
            return not last["diffs"]
        try:
            wait_until(agrees, 40, "the page showing the database's figures", interval=0.5)
        except AssertionError:
            raise AssertionError(f"the page differs: {last.get('diffs')}")
        hooks = b.hooks()
        assert hooks["online-rate-door_sensor"][1].strip() == "66.7%"
        assert hooks["overdue-total"][1].strip() == str(
            sql_overdue(pg, int(time.time() * 1000)))
        assert "hidden" in hooks["stale"][0], "stale banner shown with live data"
        assert b.eval("document.querySelectorAll('#per-minute polyline').length") >= 3
        assert b.eval("document.querySelectorAll('#timeline circle').length") >= 1
        # headline numbers readable at 3 m: 64 px and more on 1920x1080
        size = b.eval("parseFloat(getComputedStyle(document.querySelector("
                      "'[data-testid=today-vehicle_passage]')).fontSize)")
        assert size >= 64, size
        dom = b.eval("document.documentElement.outerHTML")
        assert not leaks(dom), f"the rendered page holds {leaks(dom)}"
        shot = tmp_path / "status-light.png"
        b.screenshot(shot)
        light_bg = b.eval("getComputedStyle(document.body).backgroundColor")

        # live: a new alarm reaches the page through the stream
        publish(mosquitto, [alarm(time.time())])
        wait_until(lambda: sql_latest_alarm(pg)[0] != hooks["latest-alarm"][0].get("data-id"),
                   20, "the new alarm stored")
        new_id = sql_latest_alarm(pg)[0]
        wait_until(lambda: b.hooks()["latest-alarm"][0].get("data-id") == new_id, 20,
                   "the new alarm on the page", interval=0.5)

        # the dark theme
        b.open(url + "&theme=dark")
        wait_until(lambda: not page_matches_database(pg, b.hooks()), 40, "dark page loaded",
                   interval=0.5)
        dark_bg = b.eval("getComputedStyle(document.body).backgroundColor")
        assert dark_bg != light_bg, (light_bg, dark_bg)
        shot_dark = tmp_path / "status-dark.png"
        b.screenshot(shot_dark)
        for theme, p in (("light", shot), ("dark", shot_dark)):
            assert p.stat().st_size > 10000
            report(f"status page screenshot ({theme}, 1920x1080): {p}")

        # a phone: one column, nothing wider than the screen
        b.open(url, width=390, height=844)
        wait_until(lambda: b.eval("document.body.getAttribute('data-loaded')") == "1", 20,
                   "phone page loaded", interval=0.5)
        assert b.eval("document.documentElement.scrollWidth") <= 391
        b.screenshot(tmp_path / "status-phone.png")

        # the daemon gone: the page says its data is stale, and since when
        b.open(url)
        wait_until(lambda: b.eval("document.body.getAttribute('data-loaded')") == "1", 20,
                   "page loaded", interval=0.5)
        assert daemon.stop() == 0
        as_of = int(b.eval("document.body.getAttribute('data-as-of')"))
        since = time.strftime("%H:%M:%S", time.gmtime(as_of / 1000 + TZ))
        t0 = time.monotonic()
        wait_until(lambda: "hidden" not in b.hooks()["stale"][0], 30, "stale banner",
                   interval=0.5)
        assert time.monotonic() - t0 < 25
        text = b.hooks()["stale"][1]
        assert f"data stale since {since}" in text, text
        b.screenshot(tmp_path / "status-stale.png")
    finally:
        b.close()
