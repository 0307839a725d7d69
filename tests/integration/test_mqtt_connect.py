"""Connecting to the broker never blocks the event loop, MQTT 5 included.

A broker address that does not answer (SYNs go unanswered: a listening
socket with backlog 0 whose queue is full) must not stop the daemon's other
work: the store gets ready, SIGHUP and SIGTERM are answered at once. Once a
broker listens there, the daemon connects with MQTT 5 and the Session
Expiry Interval it was configured with, so its session outlives it."""

import os
import signal
import socket
import subprocess
import time
import uuid

import pytest

import logfmt
import services
from ingest import daemon_config
from services import device_fixtures

READY_TIMEOUT = 15.0


class BlackHole:
    """A TCP port on 127.0.0.1 that takes no more connections: it listens
    with backlog 0 and never accepts, and two connections fill its queue, so
    a further SYN is dropped and connect() waits for minutes."""

    def __init__(self):
        self.host = services.LOCALHOST
        self.tls_port = None
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, 0))
        self._listener.listen(0)
        self.port = self._listener.getsockname()[1]
        self._fillers = []
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((self.host, self.port))
            self._fillers.append(s)
            time.sleep(0.05)
        probe = socket.create_connection
        try:
            probe((self.host, self.port), timeout=0.5).close()
            raise services.ServiceError(f"port {self.port} still accepts connections")
        except socket.timeout:
            pass

    def close(self):
        for s in self._fillers:
            s.close()
        self._listener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def mqtt5_config(tmp_path, broker, postgres, client_id):
    return daemon_config(tmp_path, broker, client_id=client_id, keepalive=5,
                         mqtt={"protocol": 5, "session_expiry": 3600},
                         store_db=postgres, routes=True)


def test_unreachable_mqtt5_broker_does_not_stall_the_daemon(daemon, postgres, tmp_path):
    with BlackHole() as hole:
        conf = daemon.write_config(mqtt5_config(tmp_path, hole, postgres,
                                                f"gb-{uuid.uuid4().hex[:8]}"))
        daemon.start(conf)
        daemon.wait_notify("READY=1", timeout=READY_TIMEOUT)
        # the store connects while the broker connect is pending
        daemon.wait_log(r'mod=store msg="ready"', timeout=10)
        mark = len(daemon.notifications)
        daemon.signal(signal.SIGHUP)
        daemon.wait_notify("READY=1", since=mark, timeout=3)
        assert not logfmt.select(daemon.lines, mod="mqtt", msg="connected")

        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(5) == 0
        assert time.monotonic() - started < 3.0, "SIGTERM took too long"


def test_mqtt5_connects_with_its_session_once_the_broker_answers(daemon, postgres,
                                                                 tmp_path):
    client_id = f"gb-{uuid.uuid4().hex[:8]}"
    hole = BlackHole()
    try:
        conf = daemon.write_config(mqtt5_config(tmp_path, hole, postgres, client_id))
        daemon.start(conf)
        daemon.wait_notify("READY=1", timeout=READY_TIMEOUT)
        daemon.wait_log(r'mod=store msg="ready"', timeout=10)
        time.sleep(1.0)         # the first connect is under way, unanswered
        assert not logfmt.select(daemon.lines, mod="mqtt", msg="connected")
    finally:
        hole.close()

    # now a broker answers at that address
    broker = services.Mosquitto(tmp_path / "mosquitto", port=hole.port)
    broker.start()
    try:
        connected = logfmt.fields(daemon.wait_log(r'mod=mqtt msg="connected"', timeout=20))
        assert connected["protocol"] == "5", connected
        daemon.wait_log(r'mod=mqtt msg="subscribed"', timeout=10)
        assert f"as {client_id} (p5, c0, k5)" in broker.log_path.read_text(), \
            services.tail(broker.log_path)
        assert daemon.stop() == 0

        # the session outlives the connection: the Session Expiry Interval
        # went out with the CONNECT (without it the broker ends an MQTT 5
        # session at the disconnect and drops what is published meanwhile)
        name, topic, payload = next(f for f in device_fixtures()
                                    if f[0] == "gate_person_access_hikvision")
        broker.publish(topic, payload)
        daemon.start(conf)
        again = logfmt.fields(daemon.wait_log(r'mod=mqtt msg="connected"', timeout=READY_TIMEOUT))
        assert again["session_present"] == "1", again
        deadline = time.monotonic() + 15
        conn = postgres.connect()
        try:
            conn.autocommit = True
            while True:
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM events WHERE journal_node = %s"
                                " AND vendor <> 'gridbridge'",
                                (client_id,))
                    if cur.fetchone()[0] == 1:
                        break
                assert time.monotonic() < deadline, "the queued event was never stored"
                time.sleep(0.2)
        finally:
            conn.close()
        assert daemon.stop() == 0
    finally:
        broker.stop()


@pytest.mark.parametrize("tls", [False, True])
def test_refused_credentials_are_reported_with_the_brokers_reason(daemon, broker_factory,
                                                                 tmp_path, tls):
    """The broker's CONNACK that refuses us is read and reported, over TLS
    too, before the closed socket counts as a failed attempt: the operator
    learns that the password is wrong, not only that the connection went."""
    pki = services.TestPKI(tmp_path / "pki")
    pwfile = tmp_path / "mosquitto.passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "gridbridge", "right"],
                   check=True, stdin=subprocess.DEVNULL, capture_output=True)
    os.chmod(pwfile, 0o644)
    broker = broker_factory(extra_conf=[*services.INGEST_BROKER_CONF,
                                        "allow_anonymous false", f"password_file {pwfile}"],
                            tls=pki, save_every_change=False)
    conf = daemon_config(tmp_path, broker, tls=tls,
                         mqtt={"username": "gridbridge", "password": "wrong"})
    daemon.start(daemon.write_config(conf))
    daemon.wait_notify("READY=1", timeout=READY_TIMEOUT)
    refused = logfmt.fields(daemon.wait_log(r'mod=mqtt msg="connection refused"', timeout=15))
    assert refused["level"] == "error", refused
    assert "not authori" in refused["reason"].lower(), refused
    assert "wrong" not in " ".join(daemon.lines)
    assert daemon.running
    assert daemon.stop(timeout=30) == 0
