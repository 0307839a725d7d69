"""The store's schema on a real PostgreSQL: migrations applied once and
recorded, a newer schema refused, daily partitions made ahead, retention
dropping old partitions with a log line."""

import datetime
import time
import textwrap

import logfmt

READY = logfmt.Match(mod="store", msg="ready")


def config(tmp_path, mosquitto, pg, retention_days=180, ahead=7):
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    pwfile = pg.write_password_file(tmp_path / "store-password")
    return textwrap.dedent(f"""\
        [daemon]
        state_dir = {state}
        [mqtt]
        host = {mosquitto.host}
        port = {mosquitto.port}
        client_id = gridbridge-schema-test
        [store]
        host = {pg.host}
        port = {pg.port}
        dbname = {pg.dbname}
        user = {pg.user}
        password_file = {pwfile}
        partitions_ahead = {ahead}
        retention_days = {retention_days}
        """)


def query(pg, sql, *args):
    with pg.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def partitions(pg):
    return sorted(r[0] for r in query(pg, """
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events'::regclass"""))


SCHEMA_VERSION = 11   # the last migration in daemon/schema.c

# What migration 11 added, taken back: a database as version 10 left it.
UNDO_11 = """
    DROP TABLE event_counts;
    DELETE FROM schema_migrations WHERE version > 10;
"""

# What migration 10 added, taken back: a database as version 9 left it.
UNDO_10 = UNDO_11 + """
    DROP TABLE forward_leases;
    DELETE FROM schema_migrations WHERE version > 9;
"""

# What migration 9 added, taken back: a database as version 8 left it.
UNDO_9 = UNDO_10 + """
    DROP INDEX events_skewed;
    DROP TABLE derive_leases;
    DROP TABLE derive_instances;
    DELETE FROM schema_migrations WHERE version > 8;
"""

# What migration 8 added, taken back: a database as version 7 left it.
UNDO_8 = UNDO_9 + """
    DROP INDEX events_alarms;
    DELETE FROM schema_migrations WHERE version > 7;
"""

# What migration 7 added, taken back: a database as version 6 left it.
UNDO_7 = UNDO_8 + """
    ALTER TABLE quarantine DROP COLUMN held_back, DROP COLUMN held_back_through;
    DELETE FROM schema_migrations WHERE version > 6;
"""

# What migration 6 added, taken back: a database as version 5 left it.
UNDO_6 = UNDO_7 + """
    DROP INDEX events_received;
    DELETE FROM schema_migrations WHERE version > 5;
"""

# What migration 5 added, taken back: a database as version 4 left it.
UNDO_5 = UNDO_6 + """
    DROP TABLE devices;
    DROP TABLE welfare_state;
    DROP TABLE resident_reports;
    DELETE FROM schema_migrations WHERE version > 4;
"""

# What migration 4 added, taken back: a database as version 3 left it.
UNDO_4 = UNDO_5 + """
    DROP TABLE viid_subscriptions;
    DELETE FROM schema_migrations WHERE version > 3;
"""

# What migration 3 added, taken back: a database as version 2 left it.
UNDO_3 = UNDO_4 + """
    DROP TABLE event_ids;
    DROP TABLE report_state;
    ALTER TABLE quarantine DROP CONSTRAINT quarantine_pkey;
    ALTER TABLE quarantine DROP COLUMN journal_id;
    ALTER TABLE quarantine ADD PRIMARY KEY (journal_node, journal_seq);
    DROP INDEX ingest_checkpoint_journal_id;
    DROP INDEX ingest_checkpoint_node;
    ALTER TABLE ingest_checkpoint DROP COLUMN journal_id;
    ALTER TABLE ingest_checkpoint ADD PRIMARY KEY (journal_node);
    DELETE FROM schema_migrations WHERE version > 2;
"""


def test_migrations_applied_once_with_partitions(daemon, mosquitto, private_postgres, tmp_path):
    conf = daemon.write_config(config(tmp_path, mosquitto, private_postgres, ahead=3))
    daemon.start(conf)
    daemon.wait_log(READY, timeout=30)
    assert daemon.wait_log(rf'msg="schema migrated" from=0 to={SCHEMA_VERSION}', timeout=1)

    assert query(private_postgres, "SELECT version FROM schema_migrations ORDER BY 1") == [
        (v,) for v in range(1, SCHEMA_VERSION + 1)]
    tables = {r[0] for r in query(private_postgres, """
        SELECT tablename FROM pg_tables WHERE schemaname = 'public'""")}
    assert {"events", "quarantine", "forward_outbox", "ingest_checkpoint",
            "schema_migrations", "events_default", "event_ids", "report_state",
            "viid_subscriptions", "devices", "welfare_state", "resident_reports",
            "event_counts"} <= tables
    cols = {r[0] for r in query(private_postgres, """
        SELECT column_name FROM information_schema.columns WHERE table_name = 'events'""")}
    assert {"id", "event_time", "received_at", "community_id", "device_id", "device_class",
            "event_type", "severity", "plate", "record", "attrs"} <= cols
    pkey = query(private_postgres, """
        SELECT a.attname FROM pg_index x JOIN pg_attribute a
          ON a.attrelid = x.indrelid AND a.attnum = ANY(x.indkey)
        WHERE x.indrelid = 'events'::regclass AND x.indisprimary ORDER BY a.attname""")
    assert [r[0] for r in pkey] == ["event_time", "id"]

    today = datetime.date.today()
    want = {f"events_p{(today + datetime.timedelta(days=d)):%Y%m%d}" for d in range(-1, 4)}
    assert want <= set(partitions(private_postgres))
    assert "events_default" in partitions(private_postgres)

    # A second start finds the schema current: nothing applied again.
    assert daemon.stop() == 0
    daemon.start(conf)
    daemon.wait_log(READY, timeout=30)
    assert not [x for x in daemon.lines if "schema migrated" in x]
    assert query(private_postgres, "SELECT count(*) FROM schema_migrations") == [
        (SCHEMA_VERSION,)]
    assert daemon.stop() == 0


def test_newer_schema_is_refused(daemon, mosquitto, private_postgres, tmp_path):
    conf = daemon.write_config(config(tmp_path, mosquitto, private_postgres))
    daemon.start(conf)
    daemon.wait_log(READY, timeout=30)
    assert daemon.stop() == 0
    query(private_postgres, "INSERT INTO schema_migrations (version, description) "
          "VALUES (99, 'from the future')")

    daemon.start(conf)
    line = daemon.wait_log(r'msg="database schema is newer than this gridbridged', timeout=30)
    assert "db_version=99" in line and f"known_version={SCHEMA_VERSION}" in line
    assert line.startswith("<3>level=error mod=store")
    daemon.wait_quiet()
    assert not logfmt.select(daemon.lines, READY)
    assert daemon.running          # the journal keeps taking messages
    assert daemon.stop() == 0
    # Nothing of ours was applied on top.
    assert query(private_postgres, "SELECT version FROM schema_migrations ORDER BY 1") == [
        (v,) for v in range(1, SCHEMA_VERSION + 1)] + [(99,)]


def test_version_1_database_is_migrated(daemon, mosquitto, private_postgres, tmp_path):
    """A database a version-1 gridbridged made gets migration 2 (outbox
    leases and retention) at the next start, its rows untouched."""
    conf = daemon.write_config(config(tmp_path, mosquitto, private_postgres))
    daemon.start(conf)
    daemon.wait_log(READY, timeout=30)
    assert daemon.stop() == 0
    # Back to what version 1 left: no claimed_by, no outbox maintenance.
    query(private_postgres, UNDO_3)
    query(private_postgres, """
        DROP FUNCTION gridbridge_maintain_outbox(integer);
        DROP INDEX forward_outbox_state;
        ALTER TABLE forward_outbox DROP COLUMN claimed_by;
        DELETE FROM schema_migrations WHERE version > 1;
        INSERT INTO forward_outbox (event_id, event_time, target)
          VALUES ('00000000-0000-8000-8000-000000000001', now(), 'police')""")
    daemon.start(conf)
    daemon.wait_log(READY, timeout=30)
    assert daemon.wait_log(rf'msg="schema migrated" from=1 to={SCHEMA_VERSION}', timeout=1)
    assert query(private_postgres, "SELECT version FROM schema_migrations ORDER BY 1") == [
        (v,) for v in range(1, SCHEMA_VERSION + 1)]
    assert query(private_postgres, "SELECT event_id::text, state, claimed_by FROM forward_outbox"
                 ) == [("00000000-0000-8000-8000-000000000001", "pending", None)]
    assert query(private_postgres, "SELECT gridbridge_maintain_outbox(180)") == [(0,)]
    assert daemon.stop() == 0


def test_retention_drops_old_partitions(daemon, mosquitto, private_postgres, tmp_path):
    conf = daemon.write_config(config(tmp_path, mosquitto, private_postgres, retention_days=30))
    daemon.start(conf)
    daemon.wait_log(READY, timeout=30)
    assert daemon.stop() == 0

    old = datetime.date.today() - datetime.timedelta(days=45)
    name = f"events_p{old:%Y%m%d}"
    query(private_postgres, f"""CREATE TABLE {name} PARTITION OF events
        FOR VALUES FROM ('{old}') TO ('{old + datetime.timedelta(days=1)}')""")
    assert name in partitions(private_postgres)

    daemon.start(conf)
    daemon.wait_log(READY, timeout=30)
    line = daemon.wait_log(r'msg="partition dropped by retention"', timeout=5)
    assert f"partition={name}" in line and "days=30" in line
    assert name not in partitions(private_postgres)
    assert daemon.stop() == 0


def _event(pg, age: str, device_class: str, event_type: str, node: str = "n1"):
    query(pg, f"""INSERT INTO events (id, event_time, received_at, community_id, device_id,
        device_class, event_type, severity, vendor, route, source_topic, journal_node,
        journal_seq, record)
        VALUES (gen_random_uuid(), now() - interval '{age}', now(), 'c1', 'd1',
        '{device_class}', '{event_type}', 'info', 'v', 'r', 't', '{node}', 1, '\\x00')""")


def test_version_10_database_gets_event_counts(daemon, mosquitto, private_postgres, tmp_path):
    """Migration 11 counts the last 25 hours' events per minute into
    event_counts (the status page's figures: today in any time zone); counts
    older than three days are deleted by the maintenance at start."""
    conf = daemon.write_config(config(tmp_path, mosquitto, private_postgres))
    daemon.start(conf)
    daemon.wait_log(READY, timeout=30)
    assert daemon.stop() == 0
    query(private_postgres, UNDO_11)
    for age, cls, typ, node in [("10 minutes", "gate", "person_passage", "n1"),
                                ("10 minutes", "gate", "person_passage", "n1"),
                                ("10 minutes", "gate", "person_passage", "n2"),
                                ("2 hours", "barrier", "vehicle_passage", "n1"),
                                ("30 hours", "gate", "person_passage", "n1"),
                                ("5 days", "gate", "person_passage", "n1")]:
        _event(private_postgres, age, cls, typ, node)

    daemon.start(conf)
    daemon.wait_log(READY, timeout=30)
    assert daemon.wait_log(r'msg="schema migrated" from=10 to=11', timeout=1)
    got = query(private_postgres, """
        SELECT minute, device_class, event_type, journal_node, n FROM event_counts
        ORDER BY 1, 2, 3, 4""")
    want = query(private_postgres, """
        SELECT date_trunc('minute', event_time), device_class, event_type, journal_node,
               count(*) FROM events WHERE event_time > now() - interval '25 hours'
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4""")
    assert got == want and [r[3:] for r in got] in (
        [("n1", 1), ("n1", 2), ("n2", 1)], [("n1", 1), ("n1", 1), ("n1", 1), ("n2", 1)]), got
    assert daemon.stop() == 0

    # Counts older than three days go at the next maintenance (each start).
    query(private_postgres, """INSERT INTO event_counts VALUES
        (date_trunc('minute', now() - interval '4 days'), 'gate', 'person_passage', 'n1', 7)""")
    daemon.start(conf)
    daemon.wait_log(READY, timeout=30)
    deadline = time.monotonic() + 10
    while query(private_postgres, "SELECT count(*) FROM event_counts WHERE n = 7") != [(0,)]:
        assert time.monotonic() < deadline, "4-day-old counts not deleted"
        time.sleep(0.1)
    assert query(private_postgres, "SELECT sum(n) FROM event_counts") == [(4,)]
    assert daemon.stop() == 0
