"""Real services for gridbridge's integration tests and demo.

Every test, and scripts/demo.py, gets its broker, database and HTTPS endpoint
from here, never from a mock:

    Mosquitto(tmpdir)      a private mosquitto broker, persistence on
    Postgres(tmpdir)       a private PostgreSQL 15 cluster, role and db "gridbridge"
    HttpsEndpoint(tmpdir)  an HTTPS server requiring client certificates (mTLS)
    Daemon(build_dir, tmpdir)  runs build/gridbridged and watches what it says

Everything listens on 127.0.0.1 on a free ephemeral port and lives in a
temporary directory. Each class has start()/stop() and is a context manager;
whatever is still running when the interpreter exits is stopped by an atexit
hook, so a crashed test run leaves no broker or postmaster behind.

Standard library, paho-mqtt and psycopg2 only. Run with Debian's
/usr/bin/python3, which has those modules.
"""

from __future__ import annotations

import atexit
import errno
import http.server
import json
import os
import pwd
import random
import re
import secrets
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Callable

import logfmt

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures"

MOSQUITTO_BIN = "/usr/sbin/mosquitto"
PG_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
OPENSSL_BIN = "openssl"

LOCALHOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service could not be started or stopped; the message says why."""


# --------------------------------------------------------------------------
# helpers


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


_RANDOM_PORTS = random.Random()


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port on host that was free a moment ago.

    Chosen at random below the kernel's ephemeral range when there is room:
    a server stopped and started again on its port (PostgreSQL down for a
    while) must not find it taken by the source port of some outgoing
    connection in the meantime, which ports from bind(0) can be. Bound once
    to check; bind(0) when no such port is found."""
    lo, _ = _ephemeral_range()
    if lo > 11000:
        for _ in range(50):
            port = _RANDOM_PORTS.randrange(10000, min(lo, 30000))
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float,
                  alive: Callable[[], bool] | None = None) -> bool:
    """Poll until host:port accepts a TCP connection.

    Returns False on timeout or as soon as alive() says the server died.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def tail(path: Path | str, lines: int = 40) -> str:
    """Last lines of a text file, or a note that it does not exist."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"({path}: {e.strerror})"
    return "\n".join(text.splitlines()[-lines:])


def default_build_dir() -> Path:
    """$GRIDBRIDGE_BUILD_DIR, else <repo>/build."""
    env = os.environ.get("GRIDBRIDGE_BUILD_DIR")
    return Path(env) if env else REPO_ROOT / "build"


def _kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send sig to the process group proc leads (started with start_new_session).

    Also after the leader exited: children it left in its group are hit too.
    """
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# Objects with a _emergency_stop() method that are running now.
_live: set = set()
_live_lock = threading.Lock()


def _register(obj) -> None:
    with _live_lock:
        _live.add(obj)


def _unregister(obj) -> None:
    with _live_lock:
        _live.discard(obj)


@atexit.register
def _stop_everything() -> None:
    with _live_lock:
        objs = list(_live)
    for obj in objs:
        try:
            obj._emergency_stop()
        except Exception:  # best effort, the interpreter is going away
            pass


# --------------------------------------------------------------------------
# mosquitto


# Broker settings for tests that push many QoS 1 messages through the
# daemon, as gridbridge.conf(5) BROKER SETTINGS asks: an in-flight window of
# 1000 (default 20; one fdatasync covers at most that many messages) and no
# per-client queue limit (default 1000, past which mosquitto drops silently).
INGEST_BROKER_INFLIGHT = 1000
INGEST_BROKER_CONF = (
    f"max_inflight_messages {INGEST_BROKER_INFLIGHT}",
    "max_queued_messages 0",
)


class Mosquitto:
    """A private mosquitto broker on 127.0.0.1:<ephemeral>.

    Persistence is on and saved after every change (autosave_on_changes with
    autosave_interval 1), so queued QoS 1 messages survive restart() and,
    short of the moment between PUBACK and the save, kill9().
    The port and the persistence directory stay the same across restarts.

    save_every_change=False saves only on a clean stop (and every 30 min):
    saving after every change fsyncs the whole database once per loop pass,
    which caps a broker with a persistent subscriber at roughly 600 QoS 1
    messages/s here. Use it where the broker is not killed.
    extra_conf: more mosquitto.conf lines, e.g. INGEST_BROKER_CONF.
    tls: a TestPKI; adds a listener on tls_port that requires a client
    certificate signed by its CA (server certificate for 127.0.0.1/localhost).
    """

    def __init__(self, tmpdir: Path | str, port: int | None = None,
                 extra_conf: list[str] | tuple = (), tls: "TestPKI | None" = None,
                 tls_port: int | None = None, save_every_change: bool = True):
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = LOCALHOST
        self.port = port or free_port()
        # mosquitto.conf lines added after the defaults (a later line wins
        # for a repeated global option), e.g. ["max_queued_messages 0"]
        self.extra_conf = list(extra_conf)
        # with a TestPKI: a second listener on tls_port that requires a
        # client certificate signed by pki.ca_file
        self.pki = tls
        self.save_every_change = save_every_change
        self.tls_port = (tls_port or free_port()) if tls is not None else None
        self.conf_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self.stderr_path = self.dir / "mosquitto.stderr"
        self.persistence_dir = self.dir / "persistence"
        self.persistence_dir.mkdir(exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self._write_conf()

    @property
    def db_path(self) -> Path:
        """The broker's persistence file (exists after the first save)."""
        return self.persistence_dir / "mosquitto.db"

    def _write_conf(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.persistence_dir}/",
            "persistence_file mosquitto.db",
            *(["autosave_on_changes true", "autosave_interval 1"] if self.save_every_change
              else ["autosave_interval 1800"]),
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if os.geteuid() == 0:
            # mosquitto 2.0 drops to user "mosquitto" when started as root,
            # which could not write our directory; "root" keeps it as it is.
            lines.append("user root")
        lines.extend(self.extra_conf)
        if self.pki is not None:
            # listener options (cafile ...) belong to the listener line before them
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.pki.ca_file}",
                f"certfile {self.pki.server_cert}",
                f"keyfile {self.pki.server_key}",
                "require_certificate true",
            ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        if self.running:
            raise ServiceError("mosquitto is already running")
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [MOSQUITTO_BIN, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                start_new_session=True)
        _register(self)
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        for port in ports:
            if not wait_for_port(self.host, port, timeout, alive=lambda: self.running):
                status = self.proc.poll()
                self.kill9()
                raise ServiceError(
                    f"mosquitto did not accept connections on {self.host}:{port} "
                    f"within {timeout}s (exit status {status})\n"
                    f"--- {self.log_path}\n{tail(self.log_path)}\n"
                    f"--- {self.stderr_path}\n{tail(self.stderr_path)}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its persistence file), SIGKILL if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc)
                self.proc.wait()
        _kill_group(self.proc)  # anything left in the group
        _unregister(self)

    def kill9(self) -> None:
        """SIGKILL the broker: no final save, like a crash."""
        if self.proc is None:
            return
        _kill_group(self.proc, signal.SIGKILL)
        self.proc.wait()
        _unregister(self)

    def restart(self, kill: bool = False, timeout: float = 10.0) -> "Mosquitto":
        """Stop (or kill -9 when kill=True) and start again on the same port."""
        if kill:
            self.kill9()
        else:
            self.stop()
        return self.start(timeout)

    def tls_set(self, c, ca: Path | str | None = None, cert: Path | str | None = None,
                key: Path | str | None = None) -> None:
        """Make paho client c present our test client certificate and trust our CA."""
        if self.pki is None:
            raise ServiceError("this broker has no TLS listener (Mosquitto(..., tls=pki))")
        ctx = ssl.create_default_context(cafile=str(ca or self.pki.ca_file))
        ctx.load_cert_chain(str(cert or self.pki.client_cert), str(key or self.pki.client_key))
        c.tls_set_context(ctx)

    def client(self, client_id: str = "", clean_session: bool | None = True,
               timeout: float = 5.0, on_message=None, tls: bool = False,
               **kwargs):
        """A paho client connected to this broker, network loop running.

        on_message is installed before connecting, so messages the broker
        queued for a persistent session are not missed. tls=True connects to
        the TLS listener with the test client certificate. Pass
        protocol=paho.mqtt.client.MQTTv5 (and clean_session=None) for MQTT v5.
        Call client.disconnect() and client.loop_stop() when done.
        """
        import paho.mqtt.client as mqtt

        connected = threading.Event()
        result = {}

        def on_connect(client, userdata, flags, rc, properties=None):
            result["rc"] = rc
            result["flags"] = flags
            connected.set()

        if kwargs.get("protocol") == mqtt.MQTTv5:
            clean_session = None  # MQTT v5 has clean_start on connect() instead
        c = mqtt.Client(client_id=client_id, clean_session=clean_session, **kwargs)
        c.on_connect = on_connect
        if on_message is not None:
            c.on_message = on_message
        if tls:
            self.tls_set(c)
        c.connect(self.host, self.tls_port if tls else self.port, keepalive=30)
        c.loop_start()
        if not connected.wait(timeout) or result.get("rc") != 0:
            c.loop_stop()
            raise ServiceError(
                f"MQTT connect to {self.host}:{self.port} failed: {result or 'no CONNACK'}")
        c.connack_flags = result["flags"]
        return c

    def publish(self, topic: str, payload: bytes | str, qos: int = 1,
                retain: bool = False, timeout: float = 5.0, tls: bool = False) -> None:
        """Publish one message and wait until the broker acknowledged it."""
        c = self.client(tls=tls)
        try:
            info = c.publish(topic, payload, qos=qos, retain=retain)
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise ServiceError(f"publish to {topic!r} not acknowledged in {timeout}s")
        finally:
            c.disconnect()
            c.loop_stop()

    def _emergency_stop(self) -> None:
        self.kill9()

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Mosquitto {self.host}:{self.port} {'running' if self.running else 'stopped'}>"


# --------------------------------------------------------------------------
# PostgreSQL


class Postgres:
    """A private PostgreSQL 15 cluster on 127.0.0.1:<ephemeral>.

    Role "gridbridge" (LOGIN, random password, scram-sha-256 over TCP) owns
    database "gridbridge". The superuser "postgres" connects without a
    password over the Unix socket in the private directory.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the
    "postgres" system user and lives in its own directory under /tmp (the
    pytest tmp_path is not traversable by that user). `tmpdir` receives a copy
    of the server log when the cluster is closed.

    stop(mode) / start() keep the data directory and port; close() (and
    leaving the context manager) stops the server and deletes everything.

    ssl: a TestPKI; the server then also takes TLS (ssl = on) with the PKI's
    server certificate (for 127.0.0.1/localhost) and asks clients for a
    certificate signed by its CA (optional: pg_stat_ssl.client_dn shows it).
    """

    SUPERUSER = "postgres"

    def __init__(self, tmpdir: Path | str | None = None, port: int | None = None,
                 ssl: "TestPKI | None" = None):
        self.tmpdir = Path(tmpdir) if tmpdir is not None else None
        if self.tmpdir is not None:
            self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.host = LOCALHOST
        self.port = port or free_port()
        self.dbname = "gridbridge"
        self.user = "gridbridge"
        self.password = secrets.token_hex(16)
        self.as_postgres = os.geteuid() == 0
        self.pki = ssl
        self.base: Path | None = None
        self.initialized = False
        self._running = False

    # the private directory: base/data, base/sock, base/postgres.log
    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "sock"

    @property
    def log_path(self) -> Path:
        return self.base / "postgres.log"

    @property
    def running(self) -> bool:
        return self._running

    def _cmd(self, *argv: str) -> list[str]:
        if self.as_postgres:
            return ["setpriv", "--reuid=postgres", "--regid=postgres",
                    "--init-groups", "--", *argv]
        return list(argv)

    def _env(self) -> dict:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C", "LC_ALL": "C"}
        env["HOME"] = str(self.base)
        return env

    def _run(self, *argv: str, timeout: float = 60.0) -> str:
        cmd = self._cmd(*argv)
        r = subprocess.run(cmd, cwd=self.base, env=self._env(), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, text=True)
        if r.returncode != 0:
            log = tail(self.log_path) if self.base else ""
            raise ServiceError(f"{' '.join(cmd)} failed with status {r.returncode}:\n"
                               f"{r.stdout}\n--- {self.log_path}\n{log}")
        return r.stdout

    def _make_base(self, prefix: str = "gridbridge-pg-") -> None:
        """The private directory and its socket directory, the server's own."""
        self.base = Path(tempfile.mkdtemp(prefix=prefix,
                                          dir="/tmp" if self.as_postgres else None))
        self.socket_dir.mkdir()
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            for p in (self.base, self.socket_dir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        _register(self)

    def _init(self) -> None:
        self._make_base()
        self._run(str(PG_BIN_DIR / "initdb"), "-D", str(self.data_dir),
                  "-U", self.SUPERUSER, "-N", "-E", "UTF8", "--locale=C",
                  "--auth-local=trust", "--auth-host=scram-sha-256")
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "on",
            "password_encryption": "'scram-sha-256'",
            "max_connections": "50",
            "shared_buffers": "32MB",
            "logging_collector": "off",
        }
        if self.pki is not None:
            # the server reads its key as the cluster's owner, mode 0600
            for src, name in ((self.pki.server_cert, "server.crt"),
                              (self.pki.server_key, "server.key"),
                              (self.pki.ca_file, "ca.crt")):
                dst = self.data_dir / name
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o600)
                if self.as_postgres:
                    pw = pwd.getpwnam("postgres")
                    os.chown(dst, pw.pw_uid, pw.pw_gid)
            settings.update(ssl="on", ssl_cert_file="'server.crt'",
                            ssl_key_file="'server.key'", ssl_ca_file="'ca.crt'")
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write("\n# gridbridge tests\n")
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")
        (self.data_dir / "pg_hba.conf").write_text(
            f"local all {self.SUPERUSER} trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n")
        self.initialized = True

    def start(self, timeout: float = 30.0) -> "Postgres":
        """Start the server; the first start creates the cluster, role and db."""
        if self._running:
            raise ServiceError("postgres is already running")
        first = not self.initialized
        if first:
            self._init()
        _register(self)
        self._run(str(PG_BIN_DIR / "pg_ctl"), "-D", str(self.data_dir),
                  "-l", str(self.log_path), "-w", "-t", str(int(timeout)), "start",
                  timeout=timeout + 10)
        self._running = True
        if first:
            self._create_role_and_db()
        return self

    def _create_role_and_db(self) -> None:
        from psycopg2 import sql

        conn = self.superuser_connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(
                    sql.Identifier(self.user)), (self.password,))
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(self.dbname), sql.Identifier(self.user)))
        finally:
            conn.close()

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """pg_ctl stop -m smart|fast|immediate. immediate is a crash: WAL recovery on start."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"bad stop mode {mode!r}")
        if not self._running:
            return
        self._run(str(PG_BIN_DIR / "pg_ctl"), "-D", str(self.data_dir),
                  "-m", mode, "-w", "-t", str(int(timeout)), "stop", timeout=timeout + 10)
        self._running = False

    def restart(self, mode: str = "fast") -> "Postgres":
        self.stop(mode)
        return self.start()

    def close(self) -> None:
        """Stop the server and delete the cluster (the log is copied to tmpdir)."""
        try:
            if self._running:
                try:
                    self.stop("fast")
                except ServiceError:
                    self._emergency_stop()
        finally:
            if self.base is not None:
                if self.tmpdir is not None and self.log_path.exists():
                    shutil.copyfile(self.log_path, self.tmpdir / "postgres.log")
                shutil.rmtree(self.base, ignore_errors=True)
                self.base = None
            self.initialized = False
            _unregister(self)

    def _emergency_stop(self) -> None:
        if self.base is None:
            return
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            pid = None
        if pid:
            try:
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown
                for _ in range(50):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._running = False
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    # --- connecting

    @property
    def dsn(self) -> str:
        """libpq keyword string for the gridbridge role (contains the password)."""
        return (f"host={self.host} port={self.port} dbname={self.dbname} "
                f"user={self.user} password={self.password}")

    def connect(self, **kwargs):
        """psycopg2 connection as gridbridge over TCP with the password."""
        import psycopg2

        params = dict(host=self.host, port=self.port, dbname=self.dbname,
                      user=self.user, password=self.password, connect_timeout=5)
        params.update(kwargs)
        return psycopg2.connect(**params)

    def superuser_connect(self, dbname: str = "postgres"):
        """psycopg2 connection as the superuser over the Unix socket."""
        import psycopg2

        return psycopg2.connect(host=str(self.socket_dir), port=self.port,
                                dbname=dbname, user=self.SUPERUSER, connect_timeout=5)

    def write_password_file(self, path: Path | str) -> Path:
        """Write the gridbridge password to path (mode 0600, trailing newline)."""
        path = Path(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        return path

    def __enter__(self) -> "Postgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Postgres {self.host}:{self.port} {'running' if self._running else 'stopped'}>"


# --------------------------------------------------------------------------
# HTTPS endpoint with client certificates

_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class TestPKI:
    """A throw-away CA with a server and a client certificate, via the openssl CLI.

    EC P-256 keys, valid for two days. Also a second, unrelated CA (wrong_ca)
    and a client certificate it signed, for negative tests.

    server_san: the server certificate's subjectAltName (openssl syntax);
    a name other than 127.0.0.1/localhost makes a certificate a client
    connecting to 127.0.0.1 must refuse (wrong host name).
    """

    __test__ = False  # not a pytest test class

    SERVER_CN = "127.0.0.1"
    SERVER_SAN = "IP:127.0.0.1, DNS:localhost"
    CLIENT_CN = "gridbridge-test-client"

    def __init__(self, directory: Path | str, days: int = 2, server_san: str | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.days = days
        self.server_san = server_san or self.SERVER_SAN
        self.cnf = self.dir / "openssl.cnf"
        self.cnf.write_text(_OPENSSL_CNF.replace(
            f"subjectAltName = {self.SERVER_SAN}", f"subjectAltName = {self.server_san}"))
        server_cn = self.SERVER_CN if server_san is None else \
            self.server_san.split(",")[0].split(":", 1)[-1].strip()
        self.ca_file, self.ca_key = self._ca("ca", "gridbridge test CA")
        self.server_cert, self.server_key = self._leaf(
            "server", server_cn, "server_ext", self.ca_file, self.ca_key)
        self.client_cert, self.client_key = self._leaf(
            "client", self.CLIENT_CN, "client_ext", self.ca_file, self.ca_key)
        self.wrong_ca, self.wrong_ca_key = self._ca("wrong-ca", "gridbridge wrong CA")
        self.wrong_client_cert, self.wrong_client_key = self._leaf(
            "wrong-client", "gridbridge-wrong-client", "client_ext",
            self.wrong_ca, self.wrong_ca_key)

    def _openssl(self, *args: str) -> None:
        r = subprocess.run([OPENSSL_BIN, *args], cwd=self.dir, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise ServiceError(f"openssl {' '.join(args)} failed:\n{r.stdout}")

    def _ca(self, name: str, cn: str) -> tuple[Path, Path]:
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        self._openssl("req", "-x509", "-config", str(self.cnf), "-extensions", "ca_ext",
                      "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", str(key), "-out", str(cert), "-days", str(self.days),
                      "-sha256", "-subj", f"/O=gridbridge tests/CN={cn}")
        os.chmod(key, 0o600)
        return cert, key

    def _leaf(self, name: str, cn: str, ext: str, ca: Path, ca_key: Path) -> tuple[Path, Path]:
        cert, key, csr = (self.dir / f"{name}.pem", self.dir / f"{name}.key",
                          self.dir / f"{name}.csr")
        self._openssl("req", "-new", "-config", str(self.cnf),
                      "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", str(key), "-out", str(csr),
                      "-subj", f"/O=gridbridge tests/CN={cn}")
        os.chmod(key, 0o600)
        self._openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                      "-set_serial", "0x" + secrets.token_hex(8), "-days", str(self.days),
                      "-sha256", "-extfile", str(self.cnf), "-extensions", ext,
                      "-out", str(cert))
        csr.unlink()
        return cert, key


@dataclass
class Response:
    """What the endpoint answers. drop=True closes the connection without answering."""
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: Message          # case-insensitive: req.headers["content-type"]
    body: bytes
    received_at: float        # time.time() when the body had been read
    client_subject: str       # e.g. "O=gridbridge tests,CN=gridbridge-test-client"
    client_cn: str | None
    client_address: tuple
    response_status: int | None = None  # None when the connection was dropped

    def json(self):
        return json.loads(self.body)


_SUBJECT_SHORT = {"commonName": "CN", "organizationName": "O",
                  "organizationalUnitName": "OU", "countryName": "C",
                  "localityName": "L", "stateOrProvinceName": "ST"}


def _subject_string(cert: dict | None) -> tuple[str, str | None]:
    if not cert:
        return "", None
    parts, cn = [], None
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            parts.append(f"{_SUBJECT_SHORT.get(k, k)}={v}")
            if k == "commonName":
                cn = v
    return ",".join(parts), cn


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like libcurl expects
    server_version = "gridbridge-test-endpoint"
    timeout = 30

    def log_message(self, format, *args):  # no noise on stderr
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _cut(self) -> None:
        """Close the connection without an answer."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self):
        endpoint: HttpsEndpoint = self.server.endpoint
        body = self._read_body()
        if endpoint._closing:
            # stop() runs: a request on a connection still open is cut,
            # not taken, as a closed port would not take it
            self._cut()
            return
        peer = getattr(self.connection, "getpeercert", None)
        subject, cn = _subject_string(peer() if peer is not None else None)
        req = RecordedRequest(method=self.command, path=self.path, headers=self.headers,
                              body=body, received_at=time.time(), client_subject=subject,
                              client_cn=cn, client_address=self.client_address)
        resp = endpoint._next_response(req)
        endpoint._begin(req)
        if resp.delay:
            time.sleep(resp.delay)
        if resp.drop:
            endpoint._record(req)
            self._cut()
            return
        req.response_status = resp.status
        endpoint._record(req)
        self.send_response(resp.status)
        headers = {k.lower(): (k, v) for k, v in resp.headers.items()}
        for k, v in headers.values():
            self.send_header(k, v)
        if "content-length" not in headers:
            self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


class _TLSServer(http.server.ThreadingHTTPServer):
    """Accepts TCP in the serving thread; the TLS handshake happens in the
    per-connection thread, so a slow or failing client blocks nobody."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, endpoint: "HttpsEndpoint"):
        self.endpoint = endpoint
        super().__init__(address, _Handler)

    def finish_request(self, request, client_address):
        request.settimeout(10)
        try:
            tls = request if self.endpoint.plain else \
                self.endpoint.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.endpoint._record_tls_failure(client_address, e)
            return
        tls.settimeout(_Handler.timeout)
        self.endpoint._track(tls, True)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (OSError, ValueError):
            pass  # client went away, or close_port() cut the connection
        finally:
            self.endpoint._track(tls, False)
            try:
                tls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            tls.close()

    def handle_error(self, request, client_address):
        pass  # recorded where it matters; no tracebacks on stderr


class HttpsEndpoint:
    """An HTTPS server on 127.0.0.1:<ephemeral> that requires a client
    certificate signed by its CA, records every request and answers as scripted.

        ep.url, ep.ca_file, ep.client_cert, ep.client_key, ep.wrong_ca
        ep.respond(status=200, body=b"", headers={}, delay=0)   # default answer
        ep.push_response(status=503)                           # one-shot, used first
        ep.requests, ep.wait_for_requests(n, timeout)
        ep.in_flight, ep.wait_for_in_flight(n, timeout)        # read, not answered yet
        ep.close_port() / ep.reopen()                           # down, then up again
        ep.answer_with(lambda req: {"status": 500} if ... else None)  # by content
        HttpsEndpoint(tmpdir, plain=True)                       # plain HTTP, no TLS
    """

    def __init__(self, tmpdir: Path | str, server_san: str | None = None,
                 plain: bool = False):
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        # server_san: see TestPKI (e.g. "DNS:platform.example" for a wrong host name)
        self.pki = TestPKI(self.dir / "pki", server_san=server_san)
        self.host = LOCALHOST
        self.port: int | None = None
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        self.context.load_verify_locations(cafile=self.pki.ca_file)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.plain = plain

        self._cond = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._in_flight: list[RecordedRequest] = []
        self._tls_failures: list[tuple[tuple, str]] = []
        self._default = Response()
        self._oneshot: list[Response] = []
        self._answer: Callable[[RecordedRequest], dict | None] | None = None
        self._conns: set = set()
        self._server: _TLSServer | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self._held: socket.socket | None = None  # the port, while closed

    # files and address
    ca_file = property(lambda self: self.pki.ca_file)
    client_cert = property(lambda self: self.pki.client_cert)
    client_key = property(lambda self: self.pki.client_key)
    server_cert = property(lambda self: self.pki.server_cert)
    wrong_ca = property(lambda self: self.pki.wrong_ca)
    wrong_client_cert = property(lambda self: self.pki.wrong_client_cert)
    wrong_client_key = property(lambda self: self.pki.wrong_client_key)

    @property
    def url(self) -> str:
        return f"{'http' if self.plain else 'https'}://{self.host}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> "HttpsEndpoint":
        if self._server is not None:
            raise ServiceError("endpoint is already serving")
        self._closing = False
        # Listening again on the same port (reopen): close_port() kept it
        # bound meanwhile (see _hold_port), and the listener binds next to
        # that socket (both SO_REUSEADDR, neither listening) before it is
        # let go. Should the port have been lost all the same (its socket
        # could not be made), a connection that took it is tried past.
        deadline = time.monotonic() + 15
        while True:
            try:
                self._server = _TLSServer((self.host, self.port or 0), self)
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE or not self.port or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._release_port()
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"https-endpoint-{self.port}", daemon=True)
        self._thread.start()
        _register(self)
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection."""
        server, self._server = self._server, None
        if server is None:
            self._release_port()
            return
        self._closing = True
        server.shutdown()
        server.server_close()
        self._thread.join(5)
        with self._cond:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        _unregister(self)

    def close_port(self) -> None:
        """Simulate the endpoint going down: connections are refused from now on."""
        self.stop()
        self._hold_port()

    def _hold_port(self) -> None:
        """Keep the closed port bound, not listening: connections to it are
        refused as to any closed port, and the kernel gives no outgoing
        connection a port that a socket is bound to. Unbound, another test's
        connection could take it as its local port and keep it for as long
        as it lives, and reopen() would fail with EADDRINUSE."""
        if not self.port or self._held is not None:
            return
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            held.bind((self.host, self.port))
        except OSError:
            held.close()  # taken in the instant since the listener closed
            return
        self._held = held

    def _release_port(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def reopen(self) -> "HttpsEndpoint":
        """Listen again on the same port."""
        return self.start()

    _emergency_stop = stop

    # response scripting
    def respond(self, status: int = 200, body: bytes | str = b"",
                headers: dict | None = None, delay: float = 0.0, drop: bool = False) -> None:
        """Set the default answer."""
        with self._cond:
            self._default = self._response(status, body, headers, delay, drop)

    def push_response(self, status: int = 200, body: bytes | str = b"",
                      headers: dict | None = None, delay: float = 0.0,
                      drop: bool = False) -> None:
        """Queue a one-shot answer; queued answers are used, in order, before the default."""
        with self._cond:
            self._oneshot.append(self._response(status, body, headers, delay, drop))

    def answer_with(self, fn: Callable[[RecordedRequest], dict | None] | None) -> None:
        """Decide answers from the request: fn(req) returns respond()'s keyword
        arguments (status, body, headers, delay, drop), or None for the usual
        answer (one-shot, then default). fn runs in the serving thread."""
        with self._cond:
            self._answer = fn

    @staticmethod
    def _response(status, body, headers, delay, drop) -> Response:
        if isinstance(body, str):
            body = body.encode()
        return Response(status=status, body=body, headers=dict(headers or {}),
                        delay=delay, drop=drop)

    def _next_response(self, req: RecordedRequest) -> Response:
        with self._cond:
            fn = self._answer
        a = fn(req) if fn is not None else None
        if a is not None:
            return self._response(a.get("status", 200), a.get("body", b""), a.get("headers"),
                                  a.get("delay", 0.0), a.get("drop", False))
        with self._cond:
            return self._oneshot.pop(0) if self._oneshot else self._default

    # recording
    def _begin(self, req: RecordedRequest) -> None:
        with self._cond:
            self._in_flight.append(req)
            self._cond.notify_all()

    def _record(self, req: RecordedRequest) -> None:
        with self._cond:
            self._in_flight = [r for r in self._in_flight if r is not req]
            self._requests.append(req)
            self._cond.notify_all()

    def _record_tls_failure(self, address, error) -> None:
        with self._cond:
            self._tls_failures.append((address, str(error)))
            self._cond.notify_all()

    def _track(self, conn, add: bool) -> None:
        with self._cond:
            (self._conns.add if add else self._conns.discard)(conn)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, oldest first."""
        with self._cond:
            return list(self._requests)

    @property
    def in_flight(self) -> list[RecordedRequest]:
        """Requests read but not answered yet (a delay is running); they move
        to `requests` when the answer is sent (or the connection dropped)."""
        with self._cond:
            return list(self._in_flight)

    def wait_for_in_flight(self, n: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Wait until at least n requests are being answered at once; return them."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._in_flight) >= n, timeout):
                raise TimeoutError(f"endpoint had {len(self._in_flight)} request(s) in "
                                   f"flight, wanted {n}, within {timeout}s")
            return list(self._in_flight)

    @property
    def tls_failures(self) -> list[tuple[tuple, str]]:
        """(client address, error) for every refused TLS handshake."""
        with self._cond:
            return list(self._tls_failures)

    def clear_requests(self) -> None:
        with self._cond:
            self._requests.clear()
            self._tls_failures.clear()

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Wait until at least n requests were received; return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= n, timeout):
                raise TimeoutError(f"endpoint got {len(self._requests)} request(s), "
                                   f"wanted {n}, within {timeout}s")
            return list(self._requests)

    def wait_for_tls_failures(self, n: int, timeout: float = 10.0) -> list:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._tls_failures) >= n, timeout):
                raise TimeoutError(f"endpoint saw {len(self._tls_failures)} refused "
                                   f"handshake(s), wanted {n}, within {timeout}s")
            return list(self._tls_failures)

    def client_context(self, cert: bool = True, ca: Path | str | None = None) -> ssl.SSLContext:
        """An ssl context for a test client: trusts our CA, presents the client cert."""
        ctx = ssl.create_default_context(cafile=str(ca or self.ca_file))
        if cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx

    def __enter__(self) -> "HttpsEndpoint":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<HttpsEndpoint {self.url} {'serving' if self.running else 'closed'}>"


# --------------------------------------------------------------------------
# the daemon under test

def sanitized_binary(binary: Path | str) -> bool:
    """True when `binary` was built with AddressSanitizer (linked to libasan,
    or with the runtime linked in statically): it runs ~3x slower, so heavy
    tests scale down."""
    try:
        r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=10)
        if "libasan" in r.stdout:
            return True
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return b"__asan_init" in Path(binary).read_bytes()
    except OSError:
        return False


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "ERROR: MemorySanitizer")


class Daemon:
    """Runs <build_dir>/gridbridged in the foreground and watches it.

    start() gives it a NOTIFY_SOCKET (a datagram socket in tmpdir) and reads
    its stderr line by line in a thread (also written to tmpdir/gridbridged.log).

        d.start(config_path)
        d.wait_notify("READY=1")
        d.wait_log(r'mod=mqtt msg="connected"')
        d.signal(signal.SIGHUP); d.stop() -> exit status

    `lines` and `notifications` are for the current process; pass
    since=len(d.lines) / since=len(d.notifications) to wait for new ones.
    """

    def __init__(self, build_dir: Path | str | None, tmpdir: Path | str,
                 binary: Path | str | None = None,
                 on_line: Callable[[str], None] | None = None):
        self.build_dir = Path(build_dir) if build_dir is not None else default_build_dir()
        self.binary = Path(binary) if binary is not None else self.build_dir / "gridbridged"
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "gridbridged.log"
        self.stdout_path = self.dir / "gridbridged.stdout"
        self.on_line = on_line
        self.proc: subprocess.Popen | None = None
        self._cond = threading.Condition()
        self._lines: list[str] = []
        self._line_times: list[float] = []  # time.monotonic() each line was read
        self._notifications: list[str] = []
        self._all_stderr: list[str] = []  # every process and run(), for the sanitizer check
        self._reader: threading.Thread | None = None
        self._notify_sock: socket.socket | None = None
        self._notify_thread: threading.Thread | None = None
        self._notify_dir: str | None = None
        self._closing = False
        self._last_line_at = 0.0
        self.notify_path: Path | None = None

    def check_binary(self) -> None:
        if not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
            raise ServiceError(
                f"daemon binary {self.binary} not found or not executable: build it "
                f"(meson setup build && meson compile -C build) or set GRIDBRIDGE_BUILD_DIR")

    def write_config(self, text: str, name: str = "gridbridge.conf") -> Path:
        path = self.dir / name
        path.write_text(text)
        return path

    # --- notify socket

    def _open_notify_socket(self) -> None:
        path = self.dir / "notify.sock"
        if len(str(path)) > 100:  # sun_path is 108 bytes
            self._notify_dir = tempfile.mkdtemp(prefix="gridbridge-notify-")
            path = Path(self._notify_dir) / "notify.sock"
        if path.exists():
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        os.chmod(path, 0o777)
        self._notify_sock, self.notify_path = sock, path
        self._notify_thread = threading.Thread(target=self._read_notify, daemon=True,
                                               name="gridbridged-notify")
        self._notify_thread.start()

    def _read_notify(self) -> None:
        sock = self._notify_sock
        while not self._closing:
            r, _, _ = select.select([sock], [], [], 0.1)
            if not r:
                continue
            with self._cond:
                try:
                    self._drain_notify()
                except OSError:
                    return
                self._cond.notify_all()

    def _drain_notify(self) -> None:
        """Move the datagrams queued on the notify socket to _notifications.

        Called with self._cond held, by the reader thread and by _wait once
        the daemon has exited: a datagram is either in the list or still in
        the socket, never in between, so a wait that ends with the process
        sees every notification it sent.
        """
        sock = self._notify_sock
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            self._notifications.append(data.decode("utf-8", "replace"))

    def _close_notify_socket(self) -> None:
        self._closing = True
        if self._notify_thread is not None:
            self._notify_thread.join(2)
        if self._notify_sock is not None:
            self._notify_sock.close()
        if self.notify_path is not None:
            try:
                self.notify_path.unlink()
            except OSError:
                pass
        if self._notify_dir is not None:
            shutil.rmtree(self._notify_dir, ignore_errors=True)
        self._notify_sock = self._notify_thread = self._notify_dir = None
        self._closing = False

    # --- running

    def _env(self, extra: dict | None) -> dict:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LISTEN_", "WATCHDOG_", "NOTIFY_SOCKET"))
               and k not in ("INVOCATION_ID", "CREDENTIALS_DIRECTORY")}
        env.update(extra or {})
        return env

    def start(self, config_path: Path | str, extra_args: list[str] | tuple = (),
              env: dict | None = None) -> "Daemon":
        """Start `gridbridged -c config_path [extra_args]` with NOTIFY_SOCKET set."""
        self.check_binary()
        if self.running:
            raise ServiceError("daemon is already running")
        self._close_notify_socket()
        with self._cond:
            self._lines = []
            self._line_times = []
            self._notifications = []
        self._open_notify_socket()
        env = self._env(env)
        env.setdefault("NOTIFY_SOCKET", str(self.notify_path))
        argv = [str(self.binary), "-c", str(config_path), *extra_args]
        with open(self.log_path, "a") as log:
            log.write(f"### {time.strftime('%H:%M:%S')} {' '.join(argv)}\n")
        with open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.PIPE, env=env, cwd=self.dir,
                                         start_new_session=True)
        _register(self)
        self._reader = threading.Thread(target=self._read_stderr, args=(self.proc,),
                                        daemon=True, name="gridbridged-stderr")
        self._reader.start()
        return self

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        with open(self.log_path, "a") as log:
            for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                log.write(line + "\n")
                log.flush()
                with self._cond:
                    now = time.monotonic()
                    self._lines.append(line)
                    self._line_times.append(now)
                    self._all_stderr.append(line)
                    self._last_line_at = now
                    self._cond.notify_all()
                if self.on_line is not None:
                    self.on_line(line)
        proc.stderr.close()
        with self._cond:
            self._cond.notify_all()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    @property
    def lines(self) -> list[str]:
        """Every stderr line of the current process so far."""
        with self._cond:
            return list(self._lines)

    @property
    def line_times(self) -> list[float]:
        """time.monotonic() at which each line of `lines` was read."""
        with self._cond:
            return list(self._line_times)

    @property
    def notifications(self) -> list[str]:
        """Every datagram received on the notify socket, as text."""
        with self._cond:
            return list(self._notifications)

    def notify_assignments(self, since: int = 0) -> list[str]:
        """The newline-separated assignments (READY=1, STATUS=...) of all datagrams."""
        return [a for d in self.notifications[since:] for a in d.split("\n") if a]

    def _wait(self, what: str, find: Callable[[], str | None], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = find()
                if found is not None:
                    return found
                exited = self.proc is not None and self.proc.poll() is not None
                reader_done = self._reader is None or not self._reader.is_alive()
                left = deadline - time.monotonic()
                if exited and reader_done:
                    try:
                        self._drain_notify()
                    except OSError:
                        pass
                    found = find()
                    if found is not None:
                        return found
                if left <= 0 or (exited and reader_done):
                    break
                self._cond.wait(min(left, 0.1))
        status = self.returncode
        why = f"daemon exited with status {status}" if status is not None else \
            f"not within {timeout}s"
        raise TimeoutError(f"waiting for {what}: {why}\n--- last stderr lines:\n"
                           + "\n".join(self.lines[-30:]))

    def wait_log(self, match: str | re.Pattern | Callable[[str], bool],
                 timeout: float = 10.0, since: int = 0) -> str:
        """Wait for a stderr line (from index `since`) matching a regex or predicate
        (a logfmt.Match compares whole fields)."""
        if callable(match):
            pred = match
        else:
            rx = re.compile(match) if isinstance(match, str) else match
            pred = lambda line: rx.search(line) is not None  # noqa: E731

        def find():
            for line in self._lines[since:]:
                if pred(line):
                    return line
            return None
        return self._wait(f"log line {match!r}", find, timeout)

    def wait_log_timed(self, match: str | re.Pattern | Callable[[str], bool],
                       timeout: float = 10.0, since: int = 0) -> tuple[str, float]:
        """Like wait_log; also returns the time.monotonic() the line was read."""
        line = self.wait_log(match, timeout, since)
        with self._cond:
            i = self._lines.index(line, since)
            return line, self._line_times[i]

    def wait_notify(self, prefix: str, timeout: float = 10.0, since: int = 0) -> str:
        """Wait for a notify assignment starting with prefix (from datagram `since`)."""
        def find():
            for d in self._notifications[since:]:
                for a in d.split("\n"):
                    if a.startswith(prefix):
                        return a
            return None
        return self._wait(f"notification {prefix!r}", find, timeout)

    def wait_quiet(self, quiet: float = 0.3, timeout: float = 5.0) -> int:
        """Wait until no stderr line arrived for `quiet` seconds; return len(lines).

        A sync point before taking a mark: lines the daemon wrote before an
        event we saw on the notify socket may still be on their way.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                since_last = time.monotonic() - self._last_line_at
                if since_last >= quiet:
                    return len(self._lines)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"daemon kept logging for {timeout}s")
            time.sleep(min(quiet - since_last, max(0.0, deadline - time.monotonic())) + 0.01)

    def signal(self, sig: int) -> None:
        if not self.running:
            raise ServiceError(f"daemon is not running (status {self.returncode})")
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for the process to exit and its stderr to be read; return the status."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"daemon still running after {timeout}s\n--- last stderr lines:\n"
                               + "\n".join(self.lines[-30:])) from None
        if self._reader is not None:
            self._reader.join(5)
        return code

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; SIGKILL (and raise) if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.wait(timeout)
            except TimeoutError:
                self.kill()
                raise
        return self.wait()

    def kill(self) -> None:
        """SIGKILL the daemon's process group."""
        if self.proc is not None:
            _kill_group(self.proc, signal.SIGKILL)
            self.proc.wait()
            if self._reader is not None:
                self._reader.join(5)

    def run(self, args: list[str] | tuple, timeout: float = 10.0,
            env: dict | None = None) -> subprocess.CompletedProcess:
        """A one-shot invocation (-n, -nv, --version): text stdout/stderr captured."""
        self.check_binary()
        r = subprocess.run([str(self.binary), *args], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, errors="replace",
                           timeout=timeout, env=self._env(env), cwd=self.dir)
        with open(self.log_path, "a") as log:
            log.write(f"### {' '.join([str(self.binary), *args])} -> {r.returncode}\n")
            log.write(r.stderr)
        with self._cond:
            self._all_stderr.extend(r.stderr.splitlines())
        return r

    def sanitizer_reports(self) -> str:
        """Sanitizer output seen on any stderr of this helper, or ''."""
        with self._cond:
            lines = list(self._all_stderr)
        for i, line in enumerate(lines):
            if any(m in line for m in SANITIZER_MARKERS):
                return "\n".join(lines[max(0, i - 5):i + 200])
        return ""

    def close(self) -> None:
        """Kill whatever is left and release the notify socket."""
        self.kill()
        self._close_notify_socket()
        _unregister(self)

    def _emergency_stop(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc, signal.SIGKILL)

    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------
# logfmt: the parser lives in logfmt.py; these names stay for the tests that
# import them from here.

parse_logfmt = logfmt.parse
LEVEL_PRIORITY = logfmt.LEVEL_PRIORITY


# --------------------------------------------------------------------------
# sample device events


def device_fixtures(directory: Path | str | None = None) -> list[tuple[str, str, bytes]]:
    """(name, topic, payload) for every NAME.topic.txt + NAME.json, sorted by name."""
    d = Path(directory) if directory is not None else FIXTURES_DIR / "devices"
    out = []
    for topic_file in sorted(d.glob("*.topic.txt")):
        name = topic_file.name[: -len(".topic.txt")]
        payload = (d / f"{name}.json").read_bytes()
        out.append((name, topic_file.read_text().strip(), payload))
    return out
