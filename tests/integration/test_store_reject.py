"""A batch the database refuses for its data is split until the one bad
record is found; that record is quarantined with the server's reason and
the rest are stored. Nothing loops on one bad row."""

import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def shipped_routes():
    text = (REPO / "conf" / "gridbridge.conf").read_text()
    return "\n" + text[text.index("[decode]"):]


def query(pg, sql):
    with pg.connect() as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall() if cur.description else None


def test_refused_record_is_quarantined_rest_stored(daemon, mosquitto, private_postgres,
                                                   tmp_path):
    pg = private_postgres
    state = tmp_path / "state"
    state.mkdir()
    conf = daemon.write_config(textwrap.dedent(f"""\
        [daemon]
        state_dir = {state}
        [mqtt]
        host = {mosquitto.host}
        port = {mosquitto.port}
        client_id = gridbridge-reject-test
        subscribe = shellies/#
        [store]
        host = {pg.host}
        port = {pg.port}
        dbname = {pg.dbname}
        user = {pg.user}
        password_file = {pg.write_password_file(tmp_path / "pw")}
        batch_ms = 2000
        """) + shipped_routes())
    daemon.start(conf)
    daemon.wait_log(r'mod=store msg="ready"', timeout=30)
    daemon.wait_log(r'mod=mqtt msg="subscribed"', timeout=30)
    # The operator's own rule, which the daemon knows nothing about.
    query(pg, "ALTER TABLE events ADD CONSTRAINT no_bad_device "
              "CHECK (device_id <> 'door-13')")

    client = mosquitto.client("reject-publisher")
    infos = [client.publish(f"shellies/door-{n}/sensor/state", "open", qos=1)
             for n in range(1, 33)]
    for info in infos:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = query(pg, "SELECT count(*) FROM events WHERE vendor <> 'gridbridge'")[0][0]
        quarantined = query(pg, "SELECT count(*) FROM quarantine")[0][0]
        if events + quarantined >= 32:
            break
        time.sleep(0.2)
    assert (events, quarantined) == (31, 1)
    rows = query(pg, "SELECT topic, reason, convert_from(raw, 'UTF8') FROM quarantine")
    topic, reason, raw = rows[0]
    assert topic == "shellies/door-13/sensor/state"
    assert raw == "open"
    assert reason.startswith("db_rejected:23514:"), reason
    assert "no_bad_device" in reason
    assert not query(pg, "SELECT 1 FROM events WHERE device_id = 'door-13'")
    assert daemon.wait_log(r'msg="record refused by the database, quarantined"', timeout=5)
    daemon.wait_log(r'mod=pipeline msg="caught up"', timeout=30)
    # Everything accounted for: the checkpoint reached the last record.
    assert query(pg, "SELECT journal_seq FROM ingest_checkpoint") == [(32,)]
    # What the records changed in the device registry went into the refused
    # batch's transaction with them; it was written again on its own, not
    # lost with the batch (the halves bring nothing: the state moved on).
    known = query(pg, "SELECT device_id FROM devices WHERE device_id <> 'door-13' "
                      "AND last_seen IS NOT NULL")
    assert len(known) == 31, known
    assert daemon.stop() == 0
