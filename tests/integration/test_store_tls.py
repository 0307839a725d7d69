"""PostgreSQL over TLS: [store] sslmode, sslrootcert, sslcert, sslkey reach
the daemon's connection and gridbridgectl's, against a real server with
ssl = on and a certificate from the test PKI; a server that is not on this
machine and not verified by name gets a warning at start."""

import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import logfmt
import services
from ingest import daemon_config
from services import device_fixtures

READY_TIMEOUT = 15.0


@pytest.fixture(scope="module")
def tls_pki(tmp_path_factory):
    return services.TestPKI(tmp_path_factory.mktemp("pg-pki"))


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory, tls_pki):
    db = services.Postgres(tmp_path_factory.mktemp("pg-tls"), ssl=tls_pki)
    try:
        db.start()
        yield db
    finally:
        db.close()


def tls_config(tmp_path, broker, db, client_id, **store):
    return daemon_config(tmp_path, broker, client_id=client_id, store_db=db,
                         store=store, routes=True)


def ctl_outbox_stat(build_dir, conf, env=None):
    return subprocess.run([str(Path(build_dir) / "gridbridgectl"), "-c", str(conf), "outbox",
                           "stat"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=30, env={**os.environ, **(env or {})})


def daemon_sessions(db):
    """(ssl, client_dn) of every session of gridbridged."""
    su = db.superuser_connect(dbname=db.dbname)
    try:
        with su.cursor() as cur:
            cur.execute("SELECT s.ssl, s.client_dn FROM pg_stat_ssl s"
                        " JOIN pg_stat_activity a USING (pid)"
                        " WHERE a.application_name = 'gridbridged'")
            return cur.fetchall()
    finally:
        su.close()


def count_events(db, client_id):
    su = db.superuser_connect(dbname=db.dbname)
    try:
        with su.cursor() as cur:
            cur.execute("SELECT count(*) FROM events WHERE journal_node = %s"
                        " AND vendor <> 'gridbridge'", (client_id,))
            return cur.fetchone()[0]
    finally:
        su.close()


def test_verify_full_with_the_right_ca_stores_events(daemon, mosquitto, tls_postgres,
                                                     tls_pki, build_dir, tmp_path):
    # the client key as a systemd credential: a relative sslkey
    creds = tmp_path / "credentials"
    creds.mkdir()
    shutil.copyfile(tls_pki.client_key, creds / "pg-client.key")
    os.chmod(creds / "pg-client.key", 0o400)
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    client_id = f"gb-{uuid.uuid4().hex[:8]}"
    conf = daemon.write_config(tls_config(
        tmp_path, mosquitto, tls_postgres, client_id, sslmode="verify-full",
        sslrootcert=tls_pki.ca_file, sslcert=tls_pki.client_cert, sslkey="pg-client.key"))
    daemon.start(conf, env=env)
    daemon.wait_notify("READY=1", timeout=READY_TIMEOUT)
    daemon.wait_log(r'mod=store msg="ready"', timeout=READY_TIMEOUT)
    daemon.wait_log(r'mod=mqtt msg="subscribed"', timeout=READY_TIMEOUT)

    name, topic, payload = next(f for f in device_fixtures()
                                if f[0] == "gate_person_access_hikvision")
    mosquitto.publish(topic, payload)
    deadline = time.monotonic() + 15
    while count_events(tls_postgres, client_id) != 1:
        assert time.monotonic() < deadline, "the event was never stored"
        time.sleep(0.2)
    sessions = daemon_sessions(tls_postgres)
    assert sessions and all(ssl for ssl, _ in sessions), sessions
    assert all(dn and "CN=gridbridge-test-client" in dn for _, dn in sessions), sessions
    assert not logfmt.select(daemon.lines, level="warn", mod="store"), daemon.lines
    assert daemon.stop() == 0

    # gridbridgectl connects the same way
    r = ctl_outbox_stat(build_dir, conf, env)
    assert r.returncode == 0, r.stderr


def test_wrong_ca_does_not_connect_and_says_why(daemon, mosquitto, tls_postgres, tls_pki,
                                                build_dir, tmp_path):
    conf = daemon.write_config(tls_config(
        tmp_path, mosquitto, tls_postgres, f"gb-{uuid.uuid4().hex[:8]}",
        sslmode="verify-full", sslrootcert=tls_pki.wrong_ca))
    daemon.start(conf)
    daemon.wait_notify("READY=1", timeout=READY_TIMEOUT)
    down = logfmt.fields(daemon.wait_log(r'mod=store msg="database unavailable"', timeout=10))
    assert down["level"] == "warn", down
    assert "certificate verify failed" in down["error"], down
    time.sleep(1.5)         # retries fail the same way
    assert not logfmt.select(daemon.lines, mod="store", msg="connected")
    assert not daemon_sessions(tls_postgres)
    assert daemon.stop() == 0

    r = ctl_outbox_stat(build_dir, conf)
    assert r.returncode != 0
    assert "certificate verify failed" in r.stderr, r.stderr


def unverified_warnings(daemon):
    """The fields of the "not verified" lines; every line must be a log line."""
    lines = daemon.lines
    for line in lines:
        logfmt.check(line)
    return [logfmt.fields(x) for x in
            logfmt.select(lines, mod="store", msg="database server not verified")]


def other_local_host():
    """A name or address of this machine that is not loopback by its spelling
    but whose traffic stays local: the host name when it resolves to
    127.0.0.0/8, else an address of one of our interfaces (traffic to it goes
    through the loopback device)."""
    name = socket.gethostname()
    try:
        if name.lower() not in ("localhost", "localhost.") and \
                socket.gethostbyname(name).startswith("127."):
            return name
    except OSError:
        pass
    r = subprocess.run(["ip", "-o", "-4", "addr", "show", "scope", "global"],
                       capture_output=True, text=True)
    m = re.search(r"\binet (\d+\.\d+\.\d+\.\d+)/", r.stdout)
    if m is None:
        pytest.skip("no host name or address of this machine that is not loopback")
    return m.group(1)


def test_server_not_on_this_machine_without_verify_full_warns(daemon, mosquitto, postgres,
                                                              tls_pki, tmp_path):
    host = other_local_host()
    conf = daemon.write_config(tls_config(
        tmp_path, mosquitto, postgres, f"gb-{uuid.uuid4().hex[:8]}", host=host,
        sslmode="verify-ca", sslrootcert=tls_pki.ca_file))
    daemon.start(conf)
    daemon.wait_notify("READY=1", timeout=READY_TIMEOUT)
    # The line is written as the store starts; stderr is read apart from
    # the notify socket, so it may come just after READY=1.
    daemon.wait_log(logfmt.Match(mod="store", msg="database server not verified"), timeout=10)
    warned = unverified_warnings(daemon)
    assert len(warned) == 1, daemon.lines
    assert warned[0]["level"] == "warn" and warned[0]["host"] == host, warned
    assert warned[0]["key"] == "sslmode" and warned[0]["sslmode"] == "verify-ca", warned
    assert daemon.stop() == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "socket directory"])
def test_local_server_needs_no_verify_full(daemon, mosquitto, postgres, tmp_path, host):
    if host == "socket directory":
        host = str(postgres.socket_dir)
    conf = daemon.write_config(tls_config(tmp_path, mosquitto, postgres,
                                          f"gb-{uuid.uuid4().hex[:8]}", host=host))
    daemon.start(conf)
    daemon.wait_notify("READY=1", timeout=READY_TIMEOUT)
    daemon.wait_log(r'mod=store msg="connecting"', timeout=5)
    assert not unverified_warnings(daemon), daemon.lines
    assert daemon.stop() == 0
