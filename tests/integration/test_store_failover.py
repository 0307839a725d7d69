"""PostgreSQL fails over under a stream: a primary and a streaming standby
(synchronous replication), both real, on 127.0.0.1 and 127.0.0.2 with one
port; the daemon's `[store] host` lists both.

  1. the daemon writes to the primary (the standby is skipped:
     target_session_attrs=primary);
  2. mid-stream the primary crashes (pg_ctl stop -m immediate) and the
     standby is promoted: the daemon reconnects to it by itself, and the
     stream ends stored exactly once, the checkpoint at the journal's last
     record, nothing quarantined that should not be;
  3. the old primary, had it come back as it was, would not be written to:
     while the standby was still one, the daemon never wrote there.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import logfmt
import services
from ingest import JournalCtl, start_daemon
from test_store import (CLIENT_ID, READY_TIMEOUT, STORE_READY, Stream, check_final_state,  # noqa: F401
                        check_rows, db_query, sanitized, seed_of, store_config,
                        wait_db_progress, wait_stored)

STANDBY_HOST = "127.0.0.2"


class Standby(services.Postgres):
    """A streaming standby of `primary` (pg_basebackup -R), on STANDBY_HOST
    and the primary's port, with the primary's role and database."""

    def __init__(self, primary: services.Postgres, tmpdir: Path):
        super().__init__(tmpdir, port=primary.port)
        self.primary = primary
        self.host = STANDBY_HOST
        self.user, self.dbname, self.password = primary.user, primary.dbname, primary.password

    def _init(self) -> None:
        self._make_base("gridbridge-pg-standby-")
        self._run(str(services.PG_BIN_DIR / "pg_basebackup"), "-D", str(self.data_dir),
                  "-R", "-X", "stream", "-c", "fast", "-h", str(self.primary.socket_dir),
                  "-p", str(self.primary.port), "-U", self.SUPERUSER)
        (self.data_dir / "standby.signal").touch()
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write(f"\nlisten_addresses = '{STANDBY_HOST}'\n"
                    f"unix_socket_directories = '{self.socket_dir}'\n")
        self.initialized = True

    def _create_role_and_db(self) -> None:
        pass        # replicated from the primary

    def promote(self) -> None:
        self._run(str(services.PG_BIN_DIR / "pg_ctl"), "-D", str(self.data_dir), "-w",
                  "promote")


def superuser_exec(pg: services.Postgres, sql: str) -> None:
    conn = pg.superuser_connect()
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def in_recovery(pg: services.Postgres) -> bool:
    conn = pg.superuser_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery()")
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def cluster(tmp_path):
    """(primary, standby): synchronous streaming replication, both running."""
    primary = services.Postgres(tmp_path / "pg-primary")
    standby = None
    try:
        primary.start()
        # replication over the socket, and clients from all of 127/8
        with open(primary.data_dir / "pg_hba.conf", "a") as f:
            f.write(f"local replication {primary.SUPERUSER} trust\n"
                    "host all all 127.0.0.0/8 scram-sha-256\n")
        superuser_exec(primary, "SELECT pg_reload_conf()")
        standby = Standby(primary, tmp_path / "pg-standby")
        standby.start()
        assert in_recovery(standby)
        # a commit the daemon is told of is on the standby too
        superuser_exec(primary, "ALTER SYSTEM SET synchronous_standby_names = '*'")
        superuser_exec(primary, "SELECT pg_reload_conf()")
        deadline = time.monotonic() + 30
        while True:
            conn = primary.superuser_connect()
            with conn.cursor() as cur:
                cur.execute("SELECT sync_state FROM pg_stat_replication")
                states = [r[0] for r in cur.fetchall()]
            conn.close()
            if states == ["sync"]:
                break
            assert time.monotonic() < deadline, f"standby not synchronous: {states}"
            time.sleep(0.2)
        yield primary, standby
    finally:
        if standby is not None:
            standby.close()
        primary.close()


def test_failover_to_the_promoted_standby_mid_stream(daemon, ingest_broker, cluster,
                                                     build_dir, tmp_path, sanitized):
    primary, standby = cluster
    n = 3_000 if sanitized else 8_000
    stream = Stream(n, seed_of())
    text = store_config(tmp_path, ingest_broker, primary)
    head, store = text.split("[store]\n", 1)
    store = store.replace(f"host = {primary.host}\n", f"host = {primary.host},{STANDBY_HOST}\n", 1)
    text = head + "[store]\n" + store
    conf = daemon.write_config(text)
    ctl = JournalCtl(build_dir, conf=conf, log_path=daemon.dir / "gridbridgectl.log")
    t0 = time.time()
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    daemon.wait_log(STORE_READY, timeout=READY_TIMEOUT)
    first = logfmt.fields(daemon.wait_log(r'mod=store msg="connected"', timeout=5))
    assert first["server"] == primary.host, first

    with stream.publishers(ingest_broker, rate=n / 20, name="f") as pubs:
        pubs.start()
        wait_db_progress(primary, daemon, n // 5, timeout=60)
        mark = len(daemon.lines)
        primary.stop(mode="immediate")          # the primary's machine is gone
        time.sleep(1.0)
        standby.promote()
        line = daemon.wait_log(r'mod=store msg="connected"', since=mark, timeout=30)
        assert logfmt.fields(line)["server"] == STANDBY_HOST, line
        assert pubs.finish(timeout=300) == pubs.expected()

    st = wait_stored(standby, ctl, daemon, min_seq=n, min_rows=n, timeout=300)
    assert st["last_seq"] == n
    out = check_rows(stream, standby, last_seq=st["last_seq"], t_from=t0, t_to=time.time())
    assert out.rows == n
    check_final_state(standby, ctl, st)
    cp = db_query(standby, "SELECT journal_node, journal_seq FROM ingest_checkpoint")
    assert cp == [(CLIENT_ID, n)]
    errors = [x for x in daemon.lines if "level=error" in x]
    assert errors == [], errors
