"""The test harness itself: real broker, database and HTTPS endpoint behave as
the daemon's tests will assume."""

import errno
import http.client
import os
import signal
import socket
import ssl
import stat
import sys
import textwrap
import threading
import time
import uuid

import psycopg2
import pytest

import ingest
import logfmt
import services


# --------------------------------------------------------------------------
# mosquitto


def test_mosquitto_pubsub_roundtrip_with_persistence_on(mosquitto):
    conf = mosquitto.conf_path.read_text()
    assert "persistence true" in conf and "autosave_on_changes true" in conf
    assert f"listener {mosquitto.port} 127.0.0.1" in conf

    received = []
    got, subscribed = threading.Event(), threading.Event()
    sub = mosquitto.client("test-sub")
    try:
        sub.on_message = lambda c, u, msg: (received.append(msg), got.set())
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.subscribe("sac/+/test", qos=1)
        assert subscribed.wait(5), "no SUBACK"
        mosquitto.publish("sac/1/test", b'{"n":1}', qos=1)
        got.wait(5)
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert received, f"no message delivered; broker log:\n{services.tail(mosquitto.log_path)}"
    assert received[0].topic == "sac/1/test"
    assert received[0].payload == b'{"n":1}'
    assert received[0].qos == 1


@pytest.mark.parametrize("kill", [False, True], ids=["restart", "kill9"])
def test_mosquitto_keeps_queued_qos1_messages_across_restart(mosquitto, kill):
    """A persistent session's queued QoS 1 message survives a broker restart,
    and (autosave_on_changes) a kill -9 once the broker has saved it."""
    port = mosquitto.port
    sub = mosquitto.client("test-persistent", clean_session=False)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.subscribe("persist/#", qos=1)
    assert subscribed.wait(5)
    sub.disconnect()
    sub.loop_stop()

    payload = f"persist-{uuid.uuid4()}".encode()
    mosquitto.publish("persist/x", payload, qos=1)
    if kill:
        # the broker saves after each change; wait until the save holds it
        deadline = time.monotonic() + 5
        while payload not in (mosquitto.db_path.read_bytes() if mosquitto.db_path.exists()
                              else b""):
            assert time.monotonic() < deadline, "broker never saved the message"
            time.sleep(0.05)
    mosquitto.restart(kill=kill)
    assert mosquitto.port == port

    received = []
    got = threading.Event()
    c = mosquitto.client("test-persistent", clean_session=False,
                         on_message=lambda cl, u, msg: (received.append(msg.payload), got.set()))
    assert c.connack_flags.get("session present") == 1
    try:
        assert got.wait(5), f"queued message lost; broker log:\n{services.tail(mosquitto.log_path)}"
    finally:
        c.disconnect()
        c.loop_stop()
    assert received == [payload]


def test_mosquitto_extra_conf_and_tls_listener(broker_factory, pki):
    """extra_conf lines reach mosquitto.conf; the TLS listener takes a client
    with the test certificate and refuses one without a certificate."""
    broker = broker_factory(extra_conf=services.INGEST_BROKER_CONF, tls=pki)
    conf = broker.conf_path.read_text()
    for line in services.INGEST_BROKER_CONF:
        assert line in conf.splitlines()
    assert "require_certificate true" in conf

    received, got = [], threading.Event()
    sub = broker.client("tls-sub", tls=True,
                        on_message=lambda c, u, m: (received.append(m.payload), got.set()))
    try:
        subscribed = threading.Event()
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.subscribe("tls/#", qos=1)
        assert subscribed.wait(5)
        broker.publish("tls/x", b"over tls", tls=True)
        assert got.wait(5)
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert received == [b"over tls"]

    ctx = ssl.create_default_context(cafile=str(pki.ca_file))  # no client certificate
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with socket.create_connection((broker.host, broker.tls_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"\x10\x00")  # TLS 1.3 reports the refusal on first use
                if not tls.recv(1):
                    raise ConnectionError("closed")


def test_mqtt5_client(broker_factory):
    import paho.mqtt.client as paho

    broker = broker_factory()
    c = broker.client("v5-client", protocol=paho.MQTTv5)
    c.disconnect()
    c.loop_stop()
    assert "as v5-client (p5," in broker.log_path.read_text()


def test_journal_format_helpers():
    assert ingest.crc32c(b"123456789") == 0xE3069283
    rec = ingest.encode_record(7, "a/b", b"hello", received_time_us=1)
    assert rec[:4] == b"GBRJ" and len(rec) == 12 + 26 + 3 + 5


def test_publisher_group_counts_acknowledged_messages(broker_factory):
    broker = broker_factory(extra_conf=services.INGEST_BROKER_CONF, save_every_change=False)
    with ingest.PublisherGroup(broker, n=2, per_publisher=50, rate=1000) as pubs:
        pubs.start()
        assert pubs.finish(timeout=30) == pubs.expected()
    assert len(pubs.expected()) == 100
    assert set(pubs.topics().values()) == {f"sac/c{k}/gate/dev{k}{x}/event"
                                           for k in (0, 1) for x in "ab"}


def test_publisher_group_pause_holds_a_publisher_waiting_for_its_rate(broker_factory):
    """pause() returns once nothing more is published: a publisher already
    past its gate, sleeping for its rate, sends that message first. Before,
    pause() returned at once and the message went out after wait_idle() had
    found nothing outstanding (the scale-out test then counted an
    acknowledged message as lost, 0.5 s before the daemon stored it)."""
    broker = broker_factory(extra_conf=services.INGEST_BROKER_CONF, save_every_change=False)
    with ingest.PublisherGroup(broker, n=1, per_publisher=10, rate=2) as pubs:
        pubs.start()
        deadline = time.monotonic() + 10
        while pubs.published_count() < 1:      # the first goes at once,
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.1)                        # the second 0.5 s later
        pubs.pause()
        pubs.wait_idle(timeout=10)
        n = pubs.published_count()
        time.sleep(0.8)
        assert pubs.published_count() == n == 2, "published after pause() returned"
        pubs.resume()
        assert pubs.finish(timeout=30) == pubs.expected()


# --------------------------------------------------------------------------
# PostgreSQL


def test_postgres_sql_roundtrip_as_gridbridge_with_password(postgres):
    conn = postgres.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT current_user, current_database(), host(inet_server_addr()), "
                        "inet_server_port(), current_setting('fsync')")
            assert cur.fetchone() == ("gridbridge", "gridbridge", "127.0.0.1",
                                      postgres.port, "on")
            cur.execute("CREATE TEMP TABLE t (id int PRIMARY KEY, body jsonb)")
            cur.execute("INSERT INTO t VALUES (%s, %s)", (1, '{"plate": "X"}'))
            cur.execute("SELECT id, body FROM t")
            assert cur.fetchall() == [(1, {"plate": "X"})]
    finally:
        conn.close()

    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        postgres.connect(password="wrong").close()

    su = postgres.superuser_connect()
    try:
        with su.cursor() as cur:
            cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                        (postgres.dbname,))
            assert cur.fetchone() == ("gridbridge",)
    finally:
        su.close()


def test_private_postgres_keeps_committed_rows_across_immediate_stop(private_postgres, tmp_path):
    db = private_postgres
    conn = db.connect()
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE kept (id int)")
        cur.execute("INSERT INTO kept VALUES (42)")
    conn.close()

    port = db.port
    db.stop("immediate")
    with pytest.raises(psycopg2.OperationalError):
        db.connect().close()
    db.start()
    assert db.port == port

    conn = db.connect()
    with conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM kept")
        assert cur.fetchall() == [(42,)]
    conn.close()

    pw = db.write_password_file(tmp_path / "db-password")
    assert pw.read_text().strip() == db.password
    assert stat.S_IMODE(os.stat(pw).st_mode) == 0o600


# --------------------------------------------------------------------------
# HTTPS endpoint


def _post(endpoint, context, host="127.0.0.1", path="/events", body=b"{}", headers=None):
    conn = http.client.HTTPSConnection(host, endpoint.port, context=context, timeout=5)
    try:
        conn.request("POST", path, body=body,
                     headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_https_endpoint_records_post_made_with_client_cert(https_endpoint, host):
    ep = https_endpoint
    assert ep.url == f"https://127.0.0.1:{ep.port}/"
    status, _, body = _post(ep, ep.client_context(), host=host, path="/v1/events?x=1",
                            body=b'{"id":"e1"}', headers={"Idempotency-Key": "e1"})
    assert (status, body) == (200, b"")

    [req] = ep.wait_for_requests(1)
    assert req.method == "POST"
    assert req.path == "/v1/events?x=1"
    assert req.body == b'{"id":"e1"}'
    assert req.json() == {"id": "e1"}
    assert req.headers["content-type"] == "application/json"
    assert req.headers["Idempotency-Key"] == "e1"
    assert req.client_cn == services.TestPKI.CLIENT_CN
    assert "CN=gridbridge-test-client" in req.client_subject
    assert req.response_status == 200
    assert req.received_at > 0


def test_https_endpoint_accepts_tls12_clients(https_endpoint):
    ctx = https_endpoint.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    assert _post(https_endpoint, ctx)[0] == 200


def test_https_endpoint_scripted_responses(https_endpoint):
    ep = https_endpoint
    ep.respond(status=202, body=b'{"ok":true}', headers={"Content-Type": "application/json"})
    ep.push_response(status=503, headers={"Retry-After": "1"})
    ep.push_response(status=400, body="bad")
    ctx = ep.client_context()

    first = _post(ep, ctx)
    assert first[0] == 503 and first[1]["Retry-After"] == "1"
    assert _post(ep, ctx)[0::2] == (400, b"bad")
    assert _post(ep, ctx)[0::2] == (202, b'{"ok":true}')
    assert _post(ep, ctx)[0] == 202
    assert [r.response_status for r in ep.requests] == [503, 400, 202, 202]

    ep.push_response(drop=True)
    with pytest.raises((http.client.HTTPException, OSError)):
        _post(ep, ctx)
    assert ep.requests[-1].response_status is None


@pytest.mark.parametrize("tls", ["TLSv1_2", "TLSv1_3"])
def test_https_endpoint_refuses_client_without_cert(https_endpoint, tls):
    ep = https_endpoint
    ctx = ep.client_context(cert=False)
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, tls)
    with pytest.raises(OSError):  # ssl.SSLError or a reset, depending on the TLS version
        _post(ep, ctx)
    ep.wait_for_tls_failures(1)
    assert ep.requests == []


def test_https_endpoint_refuses_client_cert_from_another_ca(https_endpoint):
    ep = https_endpoint
    ctx = ep.client_context(cert=False)
    ctx.load_cert_chain(ep.wrong_client_cert, ep.wrong_client_key)
    with pytest.raises(OSError):
        _post(ep, ctx)
    ep.wait_for_tls_failures(1)
    assert ep.requests == []


def test_https_endpoint_is_not_trusted_with_the_wrong_ca(https_endpoint):
    ep = https_endpoint
    with pytest.raises(ssl.SSLCertVerificationError):
        _post(ep, ep.client_context(ca=ep.wrong_ca))


def test_https_endpoint_close_port_then_reopen(https_endpoint):
    ep = https_endpoint
    ctx = ep.client_context()
    conn = http.client.HTTPSConnection("127.0.0.1", ep.port, context=ctx, timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b""  # a keep-alive connection is open

    port = ep.port
    ep.close_port()
    with pytest.raises(ConnectionRefusedError):
        _post(ep, ctx)
    with pytest.raises((http.client.HTTPException, OSError)):  # the open one was cut
        conn.request("GET", "/")
        conn.getresponse()
    conn.close()

    ep.reopen()
    assert ep.port == port
    assert _post(ep, ctx)[0] == 200
    assert [r.method for r in ep.requests] == ["GET", "POST"]


def test_https_endpoint_closed_port_is_not_given_to_another_socket(https_endpoint):
    """While closed (close_port), the endpoint's port stays its own: no other
    socket, such as another test's outgoing connection, can be given it as
    its local port, which would make reopen() fail with EADDRINUSE for as
    long as that connection lives. Connections to it are still refused."""
    ep = https_endpoint
    port = ep.port
    ep.close_port()
    with pytest.raises(ConnectionRefusedError):
        _post(ep, ep.client_context())
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(OSError) as e:
            other.bind(("127.0.0.1", port))
        assert e.value.errno == errno.EADDRINUSE
    finally:
        other.close()
    ep.reopen()
    assert ep.port == port
    assert _post(ep, ep.client_context())[0] == 200


# --------------------------------------------------------------------------
# Daemon helper, exercised with a small stand-in program (the real daemon's
# tests are in test_daemon.py)

_STAND_IN = textwrap.dedent("""\
    import os, signal, socket, sys, time
    def notify(text):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(text.encode(), os.environ["NOTIFY_SOCKET"])
        s.close()
    def log(line):
        sys.stderr.write(line + "\\n"); sys.stderr.flush()
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    log('<6>level=info mod=main msg="started" config="' + sys.argv[2] + '"')
    notify("READY=1\\nSTATUS=running")
    log('<6>level=info mod=main msg="ready"')
    if os.environ.get("STAND_IN_SANITIZER"):
        log("daemon/x.c:1:2: runtime error: signed integer overflow")
    while not stop:
        time.sleep(0.02)
    notify("STOPPING=1")
    log('<6>level=info mod=main msg="stopped"')
    """)


def _stand_in(tmp_path):
    script = tmp_path / "stand-in"
    script.write_text(f"#!{sys.executable}\n" + _STAND_IN)
    script.chmod(0o755)
    return services.Daemon(None, tmp_path / "d", binary=script)


def test_daemon_helper_notify_logs_and_stop(tmp_path):
    with _stand_in(tmp_path) as d:
        conf = d.write_config("[daemon]\n")
        d.start(conf)
        assert d.wait_notify("READY=1") == "READY=1"
        assert d.notify_assignments() == ["READY=1", "STATUS=running"]
        line = d.wait_log(r'msg="ready"')
        assert logfmt.fields(line)["mod"] == "main"
        assert logfmt.fields(d.lines[0])["config"] == str(conf)
        assert d.wait_log(logfmt.Match(mod="main", msg="ready")) == line
        mark = len(d.notifications)
        assert d.stop() == 0
        assert d.wait_notify("STOPPING=1", since=mark) == "STOPPING=1"
        assert d.lines[-1].endswith('msg="stopped"')
        assert 'msg="ready"' in d.log_path.read_text()
        assert d.sanitizer_reports() == ""
        with pytest.raises(TimeoutError, match="exited with status 0"):
            d.wait_log("never printed", timeout=5)
        with pytest.raises(TimeoutError, match='mod=main msg="never printed"'):
            d.wait_log(logfmt.Match(mod="main", msg="never printed"), timeout=5)


def test_daemon_helper_spots_sanitizer_reports(tmp_path):
    with _stand_in(tmp_path) as d:
        d.start(d.write_config(""), env={"STAND_IN_SANITIZER": "1"})
        d.wait_log("runtime error")
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
        assert "runtime error: signed integer overflow" in d.sanitizer_reports()


def test_daemon_helper_sees_a_notification_sent_just_before_exit(tmp_path):
    # The daemon sends STOPPING=1 and exits at once; the datagram can still
    # be queued on the socket when the wait sees the process gone. The
    # reader thread is parked here so that it surely has not read it yet.
    with _stand_in(tmp_path) as d:
        d.start(d.write_config("[daemon]\n"))
        assert d.wait_notify("READY=1") == "READY=1"
        d._closing = True
        d._notify_thread.join(2)
        assert not d._notify_thread.is_alive()
        d._closing = False
        mark = len(d.notifications)
        assert d.stop() == 0
        assert d.wait_notify("STOPPING=1", timeout=2, since=mark) == "STOPPING=1"
