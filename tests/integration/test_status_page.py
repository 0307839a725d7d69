"""The status page (/, /api/status, /api/events) with a real broker,
PostgreSQL and daemon, and a real browser:

  1. /api/status says what the database says: today's counts per event
     type, events over the last hour, the online rate per class (the
     `devices` table), the latest camera alarm, overdue resident reports;
     it marks the database figures stale when the database goes away and
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

import http.client
import json
import re
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


def config(tmp_path, broker, pg, port: int, admin: str = "") -> str:
    text = daemon_config(tmp_path, broker, store_db=pg, routes=True, subscribe=("#",))
    text += "\n[registry]\nhold_down = 0\n"
    return text + f"\n[admin]\nlisten = 127.0.0.1:{port}\nstatus_refresh = 1\n{admin}"


def stored(pg) -> int:
    return db_query(pg, "SELECT count(*) FROM events WHERE vendor <> 'gridbridge'")[0][0]


def start(daemon, mosquitto, pg, tmp_path, admin: str = "") -> tuple[int, int]:
    """A daemon with the mix stored: (admin port, events published)."""
    port = free_port()
    conf = daemon.write_config(config(tmp_path, mosquitto, pg, port, admin))
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
    return db_query(pg, "SELECT count(*) FROM events WHERE event_time >= to_timestamp(%s / 1000.0)"
                        " - interval '1 hour' AND event_time < to_timestamp(%s / 1000.0)",
                    now_ms, now_ms)[0][0]


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


def test_status_figures_match_database(daemon, mosquitto, private_postgres, tmp_path):
    pg = private_postgres
    port, _ = start(daemon, mosquitto, pg, tmp_path)
    now = time.time()

    # the numbers, once the registry and the cache have caught up
    last = {}

    def agrees():
        last["s"] = s = status(port)
        last["diffs"] = matches_database(pg, s)
        return not last["diffs"]
    try:
        wait_until(agrees, 30, "status figures equal to the database")
    except AssertionError:
        raise AssertionError(f"differs: {last.get('diffs')}")
    s = last["s"]
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
    assert sum(r["count"] for r in f["per_minute"]) >= 10
    assert all(0 <= r["minute"] < 60 for r in f["per_minute"])
    assert s["health"]["ready"] and s["health"]["database_up"] and s["health"]["broker_up"]
    assert abs(s["as_of_ms"] / 1000 - time.time()) < 5
    # per community and class, the same as the devices table
    rows = db_query(pg, "SELECT community_id, device_class, count(*) FILTER (WHERE state = "
                        "'online'), count(*) FROM devices GROUP BY 1, 2")
    assert {(c["community"], c["device_class"]): (c["online"], c["total"])
            for c in s["devices"]["communities"]} == {(a, b): (c, d) for a, b, c, d in rows}

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
            for line in bytes(buf).split(b"\n"):
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


def test_status_token(daemon, mosquitto, private_postgres, tmp_path):
    token = "screen-" + uuid.uuid4().hex
    tf = write_token(tmp_path, token)
    port = free_port()
    conf = daemon.write_config(config(tmp_path, mosquitto, private_postgres, port,
                                      f"status_token_file = {tf}\n"))
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
    c.close()
    # the rest is as before
    for path in ("/healthz", "/metrics", "/status.css", "/status.js"):
        assert get(port, path)[0] == 200, path
    assert get(port, "/readyz")[0] in (200, 503)
    code, headers, _ = get(port, "/status.js")
    assert headers["Content-Type"].startswith("text/javascript")
    assert headers["X-Content-Type-Options"] == "nosniff"
    # the token never reaches the log
    assert token not in daemon.log_path.read_text()


def chromium(url: str, out_dir, *extra: str, budget_ms: int = 8000) -> subprocess.CompletedProcess:
    profile = out_dir / f"chromium-profile-{uuid.uuid4().hex[:8]}"
    return subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", "--disable-extensions", "--hide-scrollbars",
                           f"--user-data-dir={profile}", "--window-size=1920,1080",
                           f"--virtual-time-budget={budget_ms}", *extra, url],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/deps installs it)")
def test_status_page_in_browser(daemon, mosquitto, private_postgres, tmp_path, report):
    import html.parser

    pg = private_postgres
    token = "screen-" + uuid.uuid4().hex
    tf = write_token(tmp_path, token)
    port, _ = start(daemon, mosquitto, pg, tmp_path, f"status_token_file = {tf}\n")
    wait_until(lambda: not matches_database(pg, status(port, token)), 30,
               "status figures equal to the database")

    class Hooks(html.parser.HTMLParser):
        """data-testid -> (attributes, text) of the rendered DOM."""

        def __init__(self):
            super().__init__()
            self.hooks, self.stack = {}, []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag in ("meta", "link", "br", "img", "input"):
                return
            self.stack.append(a.get("data-testid"))
            if a.get("data-testid"):
                self.hooks[a["data-testid"]] = [a, ""]

        def handle_endtag(self, tag):
            if tag in ("meta", "link", "br", "img", "input"):
                return
            if self.stack:
                self.stack.pop()

        def handle_data(self, data):
            for t in self.stack:
                if t:
                    self.hooks[t][1] += data

    url = f"http://127.0.0.1:{port}/?token={token}"
    dom = None
    for attempt in range(3):
        r = chromium(url, tmp_path, "--dump-dom")
        if 'data-loaded="1"' in r.stdout:
            dom = r.stdout
            break
    assert dom is not None, f"the page did not load its data: {r.stderr[-2000:]}"
    p = Hooks()
    p.feed(dom)
    hooks = p.hooks
    # what the page shows is what the database holds
    s = status(port, token)
    day0 = s["db"]["figures"]["day_start_ms"]
    today = sql_today(pg, day0)
    for t in ("person_passage", "vehicle_passage", "camera_alarm", "welfare_alert"):
        attrs, text = hooks[f"today-{t}"]
        assert text.strip() == str(today.get(t, 0)), (t, text, today)
    online = sql_online(pg)
    for cls, (on, total) in online.items():
        attrs, text = hooks[f"online-rate-{cls}"]
        assert (int(attrs["data-online"]), int(attrs["data-total"])) == (on, total), cls
        assert text.strip() == f"{round(on * 1000 / total) / 10:.1f}%", (cls, text)
    assert hooks["online-rate-door_sensor"][1].strip() == "66.7%"
    attrs, text = hooks["latest-alarm"]
    alarm_id, alarm_ms = sql_latest_alarm(pg)
    assert attrs["data-id"] == alarm_id and int(attrs["data-time-ms"]) == alarm_ms
    hhmmss = time.strftime("%H:%M:%S", time.gmtime(alarm_ms / 1000 + TZ))
    assert hhmmss in text
    assert hooks["overdue-total"][1].strip() == str(sql_overdue(pg, int(time.time() * 1000)))
    assert "hidden" in hooks["stale"][0], "stale banner shown with live data"
    assert not leaks(dom), f"the rendered page holds {leaks(dom)}"

    # a screenshot of each theme, kept with the test's files
    for theme in ("light", "dark"):
        shot = tmp_path / f"status-{theme}.png"
        r = chromium(f"{url}&theme={theme}", tmp_path, f"--screenshot={shot}")
        assert shot.exists() and shot.stat().st_size > 10000, r.stderr[-2000:]
        report(f"status page screenshot ({theme}): {shot}")

    # the daemon out of reach after the first figures: the page says its
    # data is stale (and since when) instead of freezing
    with CuttingProxy(port) as proxy:
        r = chromium(f"http://127.0.0.1:{proxy.port}/?token={token}", tmp_path, "--dump-dom",
                     budget_ms=30000)
    p = Hooks()
    p.feed(r.stdout)
    assert 'data-loaded="1"' in r.stdout, r.stderr[-2000:]
    attrs, text = p.hooks["stale"]
    assert "hidden" not in attrs, text
    as_of = int(re.search(r'data-as-of="(\d+)"', r.stdout).group(1))
    since = time.strftime("%H:%M:%S", time.gmtime(as_of / 1000 + TZ))
    assert f"data stale since {since}" in text, text
    assert proxy.api_calls >= 2


class CuttingProxy:
    """Serves the page from the daemon, the figures once (/api/status or one
    event of /api/events), then answers 503 to every figure request: the
    daemon as a screen sees it when it goes out of reach."""

    def __init__(self, daemon_port: int):
        import http.server

        outer = self
        self.daemon_port = daemon_port
        self.api_calls = 0
        self.served = False

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if not path.startswith("/api/"):
                    code, headers, body = get(outer.daemon_port, self.path)
                    self.send_response(code)
                    self.send_header("Content-Type", headers.get("Content-Type", "text/plain"))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body.encode())
                    return
                outer.api_calls += 1
                if outer.served:
                    self.send_response(503)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    return
                outer.served = True
                q = self.path.split("?", 1)[1] if "?" in self.path else ""
                code, _, body = get(outer.daemon_port, "/api/status?" + q)
                self.send_response(code)
                if path == "/api/events":
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(b"retry: 1000\n\ndata: " + body.strip().encode() + b"\n\n")
                else:
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body.encode())

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
