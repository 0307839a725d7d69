"""The admin listener (/healthz, /readyz, /metrics), the stats line and the
watchdog, with a real broker, PostgreSQL, HTTPS endpoint and daemon:

  1. the counters reconcile (received + recovered = stored + quarantined +
     journal lag) through a mixed stream with bad payloads, a database
     outage and a restart with records left in the journal, and agree with
     the rows in the database; /readyz says why it is not ready meanwhile;
     the text is valid Prometheus exposition format;
  2. per target and status class: requests, sent, failed, pending and the
     oldest pending age of a forward target that answers 200, 500 and 400;
     devices online and total per community and class;
  3. hostile clients (connections that trickle their headers, oversized
     headers, other methods, more connections than allowed) do not stall
     ingest, and the listener serves again once they are gone;
  4. the watchdog is fed while the loop runs and missed while it is frozen
     (SIGSTOP); STATUS= keeps its one-line summary;
  5. the periodic msg="stats" line; listen = none.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import services
from ingest import daemon_config, start_daemon
from services import free_port
from test_forward import wait_until
from test_store import db_query

FIX = services.FIXTURES_DIR / "devices"

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def get(port: int, path: str, method: str = "GET", timeout: float = 5.0):
    """(status, body text) of one request to the admin listener."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def parse_metrics(text: str) -> dict:
    """{(name, ((label, value), ...)): float}, checking the format as it
    goes: every sample's family has HELP and TYPE before it, counters end
    in _total, histogram buckets are cumulative and end with +Inf."""
    types, out = {}, {}
    helped = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert NAME.match(name), line
            assert name.startswith("gridbridge_"), line
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split()
            assert typ in ("counter", "gauge", "histogram"), line
            assert name not in types, f"TYPE twice: {name}"
            if typ == "counter":
                assert name.endswith("_total"), line
            types[name] = typ
            continue
        assert line and not line.startswith("#"), repr(line)
        m = SAMPLE.match(line)
        assert m, line
        name, labels_text, value = m.group(1), m.group(3) or "", m.group(4)
        labels = tuple((k, v) for k, v, _ in LABEL.findall(labels_text))
        family = re.sub(r"_(bucket|sum|count)$", "", name) \
            if re.sub(r"_(bucket|sum|count)$", "", name) in types else name
        assert family in types and family in helped, f"no HELP/TYPE before {line}"
        key = (name, labels)
        assert key not in out, f"sample twice: {line}"
        out[key] = float(value)
    # histograms: cumulative buckets, +Inf equal to _count
    for name, typ in types.items():
        if typ != "histogram":
            continue
        series = {}
        for (n, labels), v in out.items():
            if n == name + "_bucket":
                rest = tuple(kv for kv in labels if kv[0] != "le")
                le = dict(labels)["le"]
                series.setdefault(rest, []).append((float(le), v))
        for rest, buckets in series.items():
            buckets.sort()
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), f"{name} buckets not cumulative"
            assert buckets[-1][0] == float("inf")
            assert out[(name + "_count", rest)] == counts[-1]
    return out


def total(m: dict, name: str, **match) -> float:
    """Sum of `name`'s samples whose labels include `match`."""
    return sum(v for (n, labels), v in m.items()
               if n == name and all(dict(labels).get(k) == w for k, w in match.items()))


def scrape(port: int) -> dict:
    status, text = get(port, "/metrics")
    assert status == 200, text
    return parse_metrics(text)


def reconciles(m: dict) -> bool:
    left = total(m, "gridbridge_messages_received_total") + \
        total(m, "gridbridge_messages_recovered_total")
    right = total(m, "gridbridge_events_stored_total") + \
        total(m, "gridbridge_messages_quarantined_total") + \
        total(m, "gridbridge_journal_lag_messages")
    return left == right


def fixture_messages(n: int) -> list[tuple[str, bytes]]:
    """Every device fixture (each made unique by `n`), and bad ones: not
    JSON, a field far too long, no route."""
    out = []
    for t in sorted(FIX.glob("*.topic.txt")):
        topic = t.read_text().strip()
        doc = json.loads((FIX / t.name.replace(".topic.txt", ".json")).read_text())
        if isinstance(doc, dict):
            doc["_n"] = n
        out.append((topic, json.dumps(doc).encode()))
    out.append(("zigbee2mqtt/b01/u1/0101/entry_door", b"{not json"))
    out.append(("zigbee2mqtt/b01/u1/0101/entry_door",
                json.dumps({"contact": True, "battery": "x" * 5000}).encode()))
    out.append(("nobody/routes/this", b'{"a": 1}'))
    return out


def door_messages(n: int, first: int = 0) -> list[tuple[str, bytes]]:
    """`n` door sensor states, each a new event."""
    return [(f"zigbee2mqtt/b09/u1/{i:04d}/entry_door",
             json.dumps({"contact": i % 2 == 0, "battery": 80, "trigger_count": i}).encode())
            for i in range(first, first + n)]


def publish(broker, msgs) -> None:
    for topic, payload in msgs:
        broker.publish(topic, payload, qos=1)


def base_config(tmp_path, broker, pg, port: int, extra: str = "") -> str:
    text = daemon_config(tmp_path, broker, store_db=pg, routes=True, subscribe=("#",))
    text += f"\n[admin]\nlisten = 127.0.0.1:{port}\n"
    return text + extra


def db_counts(pg) -> tuple[int, int]:
    rows = db_query(pg, "SELECT (SELECT count(*) FROM events WHERE vendor <> 'gridbridge'),"
                        " (SELECT count(*) FROM quarantine)")
    return rows[0][0], rows[0][1]


def test_counters_reconcile_through_outage_and_restart(daemon, mosquitto, private_postgres,
                                                       tmp_path):
    pg, port = private_postgres, free_port()
    conf = daemon.write_config(base_config(tmp_path, mosquitto, pg, port))
    start_daemon(daemon, conf)

    assert get(port, "/healthz") == (200, "ok\n")
    wait_until(lambda: get(port, "/readyz")[0] == 200, 15, "ready")
    assert get(port, "/readyz") == (200, "ready\n")
    m = scrape(port)
    assert total(m, "gridbridge_build_info") == 1
    assert total(m, "gridbridge_database_up") == 1
    assert total(m, "gridbridge_broker_up") == 1
    # every route is there from the start, at 0
    assert ("gridbridge_messages_received_total", (("route", "none"),)) in m

    # 1. a mixed stream
    first = fixture_messages(1)
    publish(mosquitto, first)
    wait_until(lambda: sum(db_counts(pg)) == len(first), 20, "first stream stored")
    m = wait_until(lambda: (lambda m: m if total(m, "gridbridge_journal_lag_messages") == 0
                            else None)(scrape(port)), 10, "lag 0")
    assert total(m, "gridbridge_messages_received_total") == len(first)
    assert reconciles(m)
    events, quarantined = db_counts(pg)
    assert total(m, "gridbridge_events_stored_total") == events
    assert total(m, "gridbridge_messages_quarantined_total") == quarantined
    assert total(m, "gridbridge_messages_quarantined_total", reason="no_route") == 1
    assert total(m, "gridbridge_messages_quarantined_total", reason="bad_json") == 1
    assert total(m, "gridbridge_messages_received_total", route="none") == 1
    assert total(m, "gridbridge_events_stored_total", device_class="camera") >= 1
    assert total(m, "gridbridge_store_batch_rows_count") >= 1
    assert total(m, "gridbridge_journal_sync_duration_seconds_count") >= 1

    # 2. the database goes away: journaled, not stored; not ready, and why
    pg.stop()
    second = fixture_messages(2)
    publish(mosquitto, second)
    m = wait_until(lambda: (lambda m: m if total(m, "gridbridge_messages_received_total") ==
                            len(first) + len(second) else None)(scrape(port)), 15, "received")
    assert total(m, "gridbridge_journal_lag_messages") == len(second)
    assert total(m, "gridbridge_database_up") == 0
    assert reconciles(m)
    status, body = get(port, "/readyz")
    assert status == 503 and "database: not connected" in body, body
    pg.start()
    # (a device's resent event, same id, is one row: the database holds
    # fewer event rows than messages stored as events from here on)
    m = wait_until(lambda: (lambda m: m if total(m, "gridbridge_journal_lag_messages") == 0
                            else None)(scrape(port)), 60, "backlog stored")
    assert reconciles(m)
    assert db_counts(pg)[1] == 2 * quarantined
    assert total(m, "gridbridge_database_reconnects_total") >= 1
    wait_until(lambda: get(port, "/readyz")[0] == 200, 15, "ready again")

    # 3. a restart with records left in the journal: found, then stored
    pg.stop()
    third = fixture_messages(3)
    publish(mosquitto, third)
    wait_until(lambda: total(scrape(port), "gridbridge_messages_received_total") ==
               len(first) + len(second) + len(third), 15, "third received")
    assert daemon.stop() == 0
    pg.start()
    start_daemon(daemon, conf)
    m = wait_until(lambda: (lambda m: m if total(m, "gridbridge_journal_lag_messages") == 0 and
                            total(m, "gridbridge_database_up") == 1 else None)(scrape(port)),
                   60, "left records stored")
    assert total(m, "gridbridge_messages_recovered_total") == len(third)
    assert total(m, "gridbridge_messages_received_total") == 0
    assert reconciles(m)
    assert total(m, "gridbridge_events_stored_total") + \
        total(m, "gridbridge_messages_quarantined_total") == len(third)
    assert db_counts(pg)[1] == 3 * quarantined   # the same bad ones in each stream
    assert db_query(pg, "SELECT max(journal_seq) FROM ingest_checkpoint")[0][0] == \
        len(first) + len(second) + len(third)

    # 4. the broker goes away: not ready, and why
    mosquitto.stop()
    wait_until(lambda: "broker: not connected" in get(port, "/readyz")[1], 15, "broker reason")
    assert get(port, "/readyz")[0] == 503
    assert get(port, "/healthz")[0] == 200


def test_forward_and_device_metrics(daemon, mosquitto, private_postgres, https_endpoint,
                                    tmp_path):
    pg, ep, port = private_postgres, https_endpoint, free_port()
    extra = (f"\n[forward.target police]\nurl = {ep.url}\nca_file = {ep.ca_file}\n"
             f"cert_file = {ep.client_cert}\nkey_file = {ep.client_key}\nbatch_rows = 1\n"
             "retry_base_ms = 100\nretry_cap_ms = 200\n"
             "\n[forward.rule all]\ntarget = police\n")
    text = base_config(tmp_path, mosquitto, pg, port).replace(
        f"listen = 127.0.0.1:{port}\n", f"listen = 127.0.0.1:{port}\nready_max_forward_lag = 2\n")
    conf = daemon.write_config(text + extra)
    ep.push_response(status=500)
    ep.push_response(status=400, body=b"bad")
    ep.respond(status=200)
    start_daemon(daemon, conf)
    msgs = [m for m in fixture_messages(1) if not m[0].startswith("nobody")][:4]
    publish(mosquitto, msgs)
    m = wait_until(lambda: (lambda m: m if total(m, "gridbridge_forward_events_sent_total",
                                                 target="police") >= 2 else None)(scrape(port)),
                   30, "events sent")
    assert total(m, "gridbridge_forward_requests_total", target="police", status_class="5xx") >= 1
    assert total(m, "gridbridge_forward_requests_total", target="police", status_class="4xx") >= 1
    assert total(m, "gridbridge_forward_requests_total", target="police", status_class="2xx") >= 2
    assert total(m, "gridbridge_forward_requests_retried_total", target="police") >= 1
    assert total(m, "gridbridge_forward_events_failed_total", target="police",
                 reason="refused") >= 1
    assert total(m, "gridbridge_forward_request_duration_seconds_count", target="police") >= 4
    assert total(m, "gridbridge_forward_target_up", target="police") == 1
    # the registry: devices per community and class
    assert total(m, "gridbridge_devices") >= 1
    assert total(m, "gridbridge_devices_online") <= total(m, "gridbridge_devices")
    assert any(n == "gridbridge_devices" and dict(lb).get("device_class")
               for (n, lb) in m)

    # the target goes away: rows wait, the oldest ages, /readyz says so
    ep.close_port()
    publish(mosquitto, door_messages(2))
    m = wait_until(lambda: (lambda m: m if total(m, "gridbridge_forward_events_pending",
                                                 target="police") >= 1 else None)(scrape(port)),
                   20, "pending counted")
    wait_until(lambda: "forward: oldest pending event" in get(port, "/readyz")[1], 20,
               "forward lag reason")
    m = scrape(port)
    assert total(m, "gridbridge_forward_oldest_pending_seconds", target="police") > 2
    ep.reopen()
    wait_until(lambda: get(port, "/readyz")[0] == 200, 30, "ready once forwarded")


def test_hostile_clients_do_not_stall_ingest(daemon, mosquitto, private_postgres, tmp_path):
    pg, port = private_postgres, free_port()
    extra = "max_connections = 4\ntimeout = 3\n"
    text = base_config(tmp_path, mosquitto, pg, port).replace(
        f"listen = 127.0.0.1:{port}\n", f"listen = 127.0.0.1:{port}\n{extra}")
    conf = daemon.write_config(text)
    start_daemon(daemon, conf)
    wait_until(lambda: get(port, "/readyz")[0] == 200, 15, "ready")

    # other methods and oversized headers are refused
    status, _ = get(port, "/metrics", method="POST")
    assert status == 501   # libevent: Not Implemented
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    s.settimeout(5)
    reply = b""
    try:
        while chunk := s.recv(4096):
            reply += chunk
    except OSError:
        pass
    s.close()
    assert not reply.startswith(b"HTTP/1.1 200"), reply[:100]

    # slow clients: more than allowed, each trickling a header byte a second
    stop = threading.Event()

    def trickle():
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=30)
            c.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            while not stop.is_set():
                c.sendall(b"a")
                time.sleep(0.5)
        except OSError:
            pass

    threads = [threading.Thread(target=trickle, daemon=True) for _ in range(12)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    # ingest goes on meanwhile
    msgs = door_messages(100)
    t0 = time.monotonic()
    publish(mosquitto, msgs)
    wait_until(lambda: db_query(pg, "SELECT count(*) FROM events WHERE route = 'z2m-door'"
                                    " AND vendor <> 'gridbridge'")[0][0] >= 100, 20,
               "stored while the listener is besieged")
    assert time.monotonic() - t0 < 15
    # the deadline cuts the trickling ones; the listener serves again
    wait_until(lambda: get(port, "/healthz", timeout=2)[0] == 200, 20, "served again")
    stop.set()
    m = scrape(port)
    assert total(m, "gridbridge_admin_connections_deferred_total") >= 1
    assert daemon.running


def test_watchdog_fed_only_while_the_loop_runs(daemon, mosquitto, tmp_path):
    conf = daemon.write_config(daemon_config(tmp_path, mosquitto) + "\n[admin]\nlisten = none\n")
    start_daemon(daemon, conf, env={"WATCHDOG_USEC": "1000000"})
    times = []

    def pings():
        return sum(1 for n in daemon.notifications if "WATCHDOG=1" in n)

    def watch(seconds):
        end = time.monotonic() + seconds
        seen = pings()
        while time.monotonic() < end:
            now = pings()
            if now > seen:
                times.append(time.monotonic())
                seen = now
            time.sleep(0.02)

    watch(2.0)
    assert len(times) >= 3, times   # every half interval
    before = len(times)
    stopped_at = time.monotonic()
    daemon.signal(signal.SIGSTOP)
    watch(2.5)
    assert len(times) == before, "fed while frozen"
    daemon.signal(signal.SIGCONT)
    cont_at = time.monotonic()
    watch(2.0)
    assert len(times) > before, "not fed after SIGCONT"
    # the gap systemd sees: longer than WATCHDOG_USEC, a missed watchdog
    gap = times[before] - times[before - 1]
    assert gap > 1.0 + (cont_at - stopped_at) * 0.5, gap
    # STATUS= is one line
    statuses = [n for n in daemon.notifications if "STATUS=" in n]
    assert statuses
    for n in statuses:
        line = [x for x in n.split("\n") if x.startswith("STATUS=")][0]
        assert line and "\n" not in line[7:]
    assert daemon.stop() == 0


def test_stats_line_and_listen_none(daemon, mosquitto, private_postgres, tmp_path):
    pg, port = private_postgres, free_port()
    text = daemon_config(tmp_path, mosquitto, store_db=pg, routes=True, subscribe=("#",))
    text = text.replace("[daemon]\n", "[daemon]\nstats_interval = 1\n", 1)
    text += "\n[admin]\nlisten = none\n"
    conf = daemon.write_config(text)
    start_daemon(daemon, conf)
    publish(mosquitto, fixture_messages(1))
    n = len(fixture_messages(1))
    line = daemon.wait_log(rf'msg="stats" received={n} ', timeout=20)
    for key in ("stored=", "quarantined=", "journal_lag=", "forward_pending=", "devices=",
                "online=", "rss_bytes="):
        assert key in line, line
    # nothing listens
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    assert daemon.stop() == 0


def ctl(build_dir, conf, *args):
    return subprocess.run([str(build_dir / "gridbridgectl"), "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=30)


def test_ctl_status(daemon, mosquitto, private_postgres, tmp_path, build_dir):
    pg, port = private_postgres, free_port()
    conf = daemon.write_config(base_config(tmp_path, mosquitto, pg, port))
    start_daemon(daemon, conf)
    wait_until(lambda: get(port, "/readyz")[0] == 200, 15, "ready")
    publish(mosquitto, fixture_messages(1))
    wait_until(lambda: total(scrape(port), "gridbridge_events_stored_total") > 0, 15, "stored")

    r = ctl(build_dir, conf, "status")
    assert r.returncode == 0, r
    assert f"gridbridged at 127.0.0.1:{port}: healthy" in r.stdout
    assert "broker:     connected" in r.stdout and "database:   connected" in r.stdout
    assert re.search(r"devices: +\d+ of \d+ online \(\d+\.\d%\)", r.stdout), r.stdout
    assert r.stderr == ""

    # the database away, a backlog: degraded, and why
    pg.stop()
    publish(mosquitto, door_messages(20))
    wait_until(lambda: total(scrape(port), "gridbridge_journal_lag_messages") == 20, 15,
               "backlog")
    r = ctl(build_dir, conf, "status")
    assert r.returncode == 1, r
    assert "degraded" in r.stdout
    assert "not ready: database: not connected" in r.stdout
    assert "backlog:    20 records not stored yet" in r.stdout
    assert "catch-up:   not moving" in r.stdout
    pg.start()
    wait_until(lambda: ctl(build_dir, conf, "status").returncode == 0, 60, "healthy again")

    # not running: unreachable, one line on stderr
    assert daemon.stop() == 0
    r = ctl(build_dir, conf, "status")
    assert r.returncode == 2, r
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and "not reachable" in r.stderr, r.stderr

    # no listener configured
    none = daemon.write_config(base_config(tmp_path, mosquitto, pg, port).replace(
        f"listen = 127.0.0.1:{port}", "listen = none"), name="none.conf")
    r = ctl(build_dir, none, "status")
    assert r.returncode == 2 and "listen = none" in r.stderr, r

    r = ctl(build_dir, conf, "status", "--help")
    assert r.returncode == 0 and "status" in r.stdout
