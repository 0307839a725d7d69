"""Exactly once outside the kill -9 path: what a user's server does besides
crashing. Real mosquitto, PostgreSQL and gridbridged on loopback.

  * a replaced state directory (new disk, reinstall): the new journal is
    stored from its first record, not from the old journal's checkpoint;
  * two daemons with one node name, or one journal (a copied state
    directory): the second refuses to start, naming the key to change;
  * a message delivered twice with a serial but no device time: one row;
    with a device time: one row by the events' key, no event_ids row;
  * reports with neither (Shelly, Tasmota, availability): an identical
    report within the repeat window, or retained, is the same event;
  * a device clock reset to 2000: its events follow the receive time
    through retention;
  * a 3,000-character plate, or a row the database refuses for its size
    (an index entry over its limit): that message alone is quarantined;
  * an fdatasync that fails, and a full file system: nothing acknowledged
    is lost, nothing skipped, nothing stored twice, no corrupt segment.

The reloadable keys, SIGHUP, are test_reload.py's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import logfmt
import services
from ingest import JournalCtl, daemon_config, free_port, journal_dir_of, start_daemon

FIXTURES = {name: json.loads(payload) for name, _, payload in services.device_fixtures()}
TOPICS = ("sac/#", "shellies/#", "tele/#", "zigbee2mqtt/#")
STORE_READY = logfmt.Match(mod="store", msg="ready")
DB_DOWN = logfmt.Match(msg="database unavailable")


# --------------------------------------------------------------------------
# helpers


def query(pg, sql, *args):
    with pg.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def scalar(pg, sql, *args):
    return query(pg, sql, *args)[0][0]


def wait_until(pred, timeout: float, what: str, daemon=None, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        if daemon is not None and not daemon.running:
            raise AssertionError(f"daemon exited ({daemon.returncode}) waiting for {what}:\n"
                                 + "\n".join(daemon.lines[-20:]))
        time.sleep(interval)
    tail = "\n".join(daemon.lines[-20:]) if daemon is not None else ""
    raise AssertionError(f"not within {timeout}s: {what} (last: {last})\n{tail}")


def config(tmp_path, broker, pg, client_id="gridbridge-once", store=None, decode=None,
           journal=None, daemon_keys=None, state=None) -> str:
    text = daemon_config(tmp_path, broker, client_id=client_id, subscribe=TOPICS,
                         store_db=pg, store={"batch_ms": 20, **(store or {})},
                         journal=journal, routes=True)
    for k, v in (decode or {}).items():
        # the shipped [decode] section sets every key: change its line
        text, n = re.subn(rf"^{k} = .*$", f"{k} = {v}", text, count=1, flags=re.M)
        assert n == 1, k
    if daemon_keys:
        text = text.replace("[daemon]\n", "[daemon]\n" + "".join(
            f"{k} = {v}\n" for k, v in daemon_keys.items()), 1)
    if state is not None:
        text = text.replace(f"state_dir = {tmp_path / 'state'}", f"state_dir = {state}", 1)
    return text


def publish_all(broker, msgs, timeout: float = 60.0, retain: bool = False,
                client_id: str = "once-publisher") -> None:
    """Publish (topic, payload) pairs with QoS 1 and wait for every PUBACK."""
    c = broker.client(client_id)
    try:
        infos = [c.publish(t, p, qos=1, retain=retain) for t, p in msgs]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "the broker did not acknowledge a message"
    finally:
        c.disconnect()
        c.loop_stop()


def access_event(n: int, t: int | None = 1742254935, serial: bool = True, dev: int = 1):
    o = json.loads(json.dumps(FIXTURES["gate_person_access_hikvision"]))
    if t is None:
        del o["dateTime"]
    else:
        o["dateTime"] = time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(t + 8 * 3600 + n))
    o["AccessControllerEvent"]["serialNo"] = 100000 + n
    if not serial:
        del o["AccessControllerEvent"]["serialNo"]
    return (f"sac/340104050101/access/3401040501119000{dev:04d}/event",
            json.dumps(o).encode())


def anpr_event(n: int, plate: str | None = None):
    o = json.loads(json.dumps(FIXTURES["vehicle_barrier_anpr_hikvision"]))
    o["dateTime"] = time.strftime("%Y-%m-%dT%H:%M:%S+08:00",
                                  time.gmtime(1742256333 + 8 * 3600 + n))
    o["ANPR"]["licensePlate"] = plate if plate is not None else f"皖A{10000 + n}"
    o["UUID"] = f"anpr-{n:06d}"
    return "sac/340104050101/vehicle/34010405011190000011/event", json.dumps(o).encode()


def camera_alarm(n: int, when: str | None = None, **extra):
    o = json.loads(json.dumps(FIXTURES["camera_alarm_high_altitude_throwing"]))
    o["eventId"] = f"alarm-{n:06d}"
    if when is not None:
        o["dateTime"] = when
    o.update(extra)
    return "sac/340104050101/camera/34010405011190000031/alarm", json.dumps(o).encode()


def events(pg) -> int:
    """Events of received messages (not the derived ones, vendor gridbridge)."""
    return scalar(pg, "SELECT count(*) FROM events WHERE vendor <> 'gridbridge'")


def checkpoints(pg) -> list[tuple]:
    return query(pg, "SELECT journal_node, journal_id::text, journal_seq FROM ingest_checkpoint"
                     " WHERE journal_id IS NOT NULL ORDER BY updated_at")


def wait_stored(pg, daemon, n: int, timeout: float = 60.0, quarantined: int = 0):
    return wait_until(lambda: (events(pg), scalar(pg, "SELECT count(*) FROM quarantine")) ==
                      (n, quarantined) or None, timeout,
                      f"{n} events and {quarantined} quarantined", daemon)


def assert_no_outage_logged(daemon):
    down = logfmt.select(daemon.lines, DB_DOWN)
    assert not down, "\n".join(down)


# --------------------------------------------------------------------------
# 1. journal identity


def test_replaced_state_dir_is_stored_from_its_first_record(daemon, ingest_broker,
                                                            private_postgres, tmp_path):
    """The issue's reproduction: checkpoint at 500, state_dir replaced by an
    empty one, 300 new events: all 300 stored (before: none, the new journal
    numbered them 1..300 and the pipeline read from 501)."""
    pg = private_postgres
    conf = daemon.write_config(config(tmp_path, ingest_broker, pg))
    start_daemon(daemon, conf)
    daemon.wait_log(STORE_READY, timeout=30)
    publish_all(ingest_broker, [access_event(n) for n in range(500)])
    wait_stored(pg, daemon, 500)
    wait_until(lambda: checkpoints(pg) and checkpoints(pg)[-1][2] == 500, 30,
               "checkpoint at 500", daemon)
    old_id = checkpoints(pg)[-1][1]
    assert daemon.stop() == 0

    shutil.rmtree(tmp_path / "state")
    (tmp_path / "state").mkdir()
    start_daemon(daemon, conf)
    line = daemon.wait_log(r'msg="journal id created"', timeout=5)
    assert "from=new" in line
    daemon.wait_log(STORE_READY, timeout=30)
    publish_all(ingest_broker, [access_event(n) for n in range(500, 800)])
    wait_stored(pg, daemon, 800)
    cps = checkpoints(pg)
    assert len(cps) == 2 and cps[0][1] == old_id and cps[1][1] != old_id, cps
    assert cps[0][2] == 500
    wait_until(lambda: checkpoints(pg)[-1][2] == 300, 30, "new checkpoint at 300", daemon)
    assert daemon.stop() == 0


@pytest.mark.parametrize("database", ["up", "down_at_start"])
def test_restored_old_state_dir_loses_nothing(daemon, ingest_broker, private_postgres,
                                              tmp_path, database):
    """A state directory restored from an older copy (a backup, a VM
    snapshot): its journal is behind the database's checkpoint for its id.
    Run 1 stores 2 events and a quarantined message (seq 1..3), the
    directory is copied; run 2 stores 3 and one (seq 4..7); the copy is put
    back; run 3's 4 events and one quarantined message must all be stored.
    Before: the journal numbered them 4..8 again and the pipeline read from
    8 on: 3 of 4 events were acknowledged and never stored, and the
    quarantine row at seq 7 was taken for the old one. With the database
    down when run 3 starts, the messages are journaled before the daemon
    can know; they are numbered anew when it does."""
    pg = private_postgres
    conf = daemon.write_config(config(tmp_path, ingest_broker, pg))
    junk = ("sac/340104050101/access/34010405011190000001/event", b"{not json")
    state, backup = tmp_path / "state", tmp_path / "state-backup"

    def run(first: int, n: int, total: int, quarantined: int, db_down: bool = False):
        if db_down:
            pg.stop(mode="immediate")
        start_daemon(daemon, conf)
        if db_down:
            daemon.wait_log(DB_DOWN, timeout=30)
        else:
            daemon.wait_log(STORE_READY, timeout=30)
        publish_all(ingest_broker, [access_event(k) for k in range(first, first + n)] + [junk])
        if db_down:
            pg.start()
        wait_stored(pg, daemon, total, quarantined=quarantined)
        assert daemon.stop() == 0

    run(0, 2, 2, 1)
    shutil.copytree(state, backup)
    run(2, 3, 5, 2)
    shutil.rmtree(state)
    shutil.copytree(backup, state)
    run(5, 4, 9, 3, db_down=database == "down_at_start")

    assert scalar(pg, "SELECT count(DISTINCT journal_seq) FROM quarantine") == 3
    # one journal, its checkpoint past everything stored; nothing pending
    cps = checkpoints(pg)
    assert len(cps) == 1, cps
    line = logfmt.select(daemon.lines, logfmt.Match(mod="journal",
                                                    msg="journal behind the database, numbered on from its checkpoint"))
    assert line, "the renumbering is not logged"
    start_daemon(daemon, conf)
    daemon.wait_log(STORE_READY, timeout=30)
    publish_all(ingest_broker, [access_event(k) for k in range(9, 11)])
    wait_stored(pg, daemon, 11, quarantined=3)
    assert daemon.stop() == 0


def second_daemon(build_dir, tmp_path, name):
    d = services.Daemon(build_dir, tmp_path / name)
    d.check_binary()
    return d


@pytest.mark.parametrize("clash", ["node_name", "copied_state_dir"])
def test_second_daemon_sharing_node_or_journal_refuses_to_start(
        daemon, ingest_broker, private_postgres, build_dir, tmp_path, clash):
    pg = private_postgres
    conf = daemon.write_config(config(tmp_path, ingest_broker, pg))
    start_daemon(daemon, conf)
    daemon.wait_log(STORE_READY, timeout=30)
    publish_all(ingest_broker, [access_event(n) for n in range(20)])
    wait_stored(pg, daemon, 20)

    other = tmp_path / "other"
    other.mkdir()
    if clash == "node_name":
        conf2 = config(other, ingest_broker, pg)           # same client_id, own journal
        want = r'msg="another gridbridged runs with this node name, not starting"'
        key = 'key="[mqtt] client_id"'
    else:
        shutil.copytree(tmp_path / "state", other / "state2")  # a cloned VM
        conf2 = config(other, ingest_broker, pg, client_id="gridbridge-clone",
                       state=other / "state2")
        want = r'msg="another gridbridged uses this journal, not starting"'
        key = "state_dir"
    d2 = second_daemon(build_dir, tmp_path, "daemon2")
    try:
        d2.start(d2.write_config(conf2))
        line = d2.wait_log(want, timeout=60)
        assert line.startswith("<3>level=error mod=store"), line
        assert key in line, line
        assert d2.wait(timeout=20) == 1
        assert d2.wait_log(r'msg="stopping after a fatal error"', timeout=1)
        assert not d2.sanitizer_reports()
    finally:
        d2.close()
    # the first goes on storing
    assert daemon.running
    publish_all(ingest_broker, [access_event(n) for n in range(20, 30)])
    wait_stored(pg, daemon, 30)
    assert daemon.stop() == 0


# --------------------------------------------------------------------------
# 2. one row per event id


def test_serial_without_device_time_delivered_twice_is_one_row(daemon, mosquitto,
                                                              private_postgres, tmp_path):
    """Hikvision serialNo without dateTime, camera eventId without a time: the
    event_time is the receive time, so a second delivery came with another
    partition key and made a second row."""
    pg = private_postgres
    conf = daemon.write_config(config(tmp_path, mosquitto, pg))
    start_daemon(daemon, conf)
    daemon.wait_log(STORE_READY, timeout=30)
    msgs = [access_event(1, t=None), camera_alarm(1)]
    cam = json.loads(msgs[1][1])
    del cam["dateTime"]
    msgs[1] = (msgs[1][0], json.dumps(cam).encode())
    publish_all(mosquitto, msgs)
    wait_stored(pg, daemon, 2)
    time.sleep(0.05)
    publish_all(mosquitto, msgs)
    # both copies journaled, one row each
    ctl = JournalCtl(daemon.build_dir, conf=conf)
    wait_until(lambda: ctl.stat()["last_seq"] == 4, 10, "4 journal records", daemon)
    wait_until(lambda: checkpoints(pg) and checkpoints(pg)[-1][2] == 4, 10,
               "checkpoint at 4", daemon)
    assert events(pg) == 2
    assert scalar(pg, "SELECT count(*) FROM event_ids") == 2
    assert daemon.stop() == 0


def test_device_time_delivered_twice_is_one_row_by_its_primary_key(daemon, mosquitto,
                                                                    private_postgres,
                                                                    tmp_path):
    """A device time is in the event's id, so every copy has the same
    event_time, partition and primary key (id, event_time): that key alone
    stores it once, with its outbox rows once, and it gets no event_ids row
    (one insert less per event). Without a device time, or from a clock that
    is off (rows maintenance may move between partitions), it keeps one."""
    pg = private_postgres
    # passages selected for a platform where nothing listens: the outbox
    # rows stay
    conf = daemon.write_config(
        config(tmp_path, mosquitto, pg)
        + f"\n[forward.target police]\nurl = https://127.0.0.1:{free_port()}/events\n"
        + "\n[forward.rule passages]\ntarget = police\nevent_type = person_passage\n")
    start_daemon(daemon, conf)
    daemon.wait_log(STORE_READY, timeout=30)
    now = int(time.time()) - 60
    msgs = [access_event(n, t=now) for n in range(5)]
    msgs += [access_event(5, t=now, serial=False)]     # the time alone makes the id
    msgs += [access_event(6), access_event(7, t=None)]  # a clock off (2025); no time
    publish_all(mosquitto, msgs)
    wait_stored(pg, daemon, len(msgs))
    time.sleep(0.05)
    # again, and twice in one go (copies in one batch)
    publish_all(mosquitto, [m for m in msgs for _ in range(2)])
    ctl = JournalCtl(daemon.build_dir, conf=conf)
    last = 3 * len(msgs)
    wait_until(lambda: ctl.stat()["last_seq"] == last, 10, f"{last} journal records", daemon)
    wait_until(lambda: checkpoints(pg) and checkpoints(pg)[-1][2] == last, 10,
               f"checkpoint at {last}", daemon)
    assert events(pg) == len(msgs)
    rows = query(pg, "SELECT e.clock_skewed, e.event_time = e.received_at,"
                     " EXISTS (SELECT 1 FROM event_ids i WHERE i.id = e.id),"
                     " (SELECT count(*) FROM forward_outbox o WHERE o.event_id = e.id)"
                     " FROM events e WHERE e.vendor <> 'gridbridge' ORDER BY e.journal_seq")
    assert rows == [(False, False, False, 1)] * 6 + [(True, False, True, 1),
                                                     (False, True, True, 1)], rows
    assert daemon.stop() == 0


def test_reports_without_time_or_serial_are_deduplicated(daemon, mosquitto, private_postgres,
                                                          tmp_path):
    pg = private_postgres
    conf = daemon.write_config(config(tmp_path, mosquitto, pg, decode={"repeat_window": 2}))
    start_daemon(daemon, conf)
    daemon.wait_log(STORE_READY, timeout=30)
    door = "shellies/door-7/sensor/state"

    def door_events():
        return [r[0] for r in query(pg, "SELECT event_type FROM events WHERE device_id ="
                                        " 'door-7' AND vendor <> 'gridbridge'"
                                        " ORDER BY received_at")]

    # the same report again within the window: the same event
    publish_all(mosquitto, [(door, b"open")])
    wait_until(lambda: door_events() == ["door_opened"], 10, "open stored", daemon)
    publish_all(mosquitto, [(door, b"open")])
    # a change is an event; and back again is one too
    publish_all(mosquitto, [(door, b"close"), (door, b"open")])
    wait_until(lambda: len(door_events()) == 3, 10, "3 door events", daemon)
    # after a silence longer than the window, the same report is new
    time.sleep(2.5)
    publish_all(mosquitto, [(door, b"open")])
    wait_until(lambda: len(door_events()) == 4, 10, "4 door events", daemon)
    assert door_events() == ["door_opened", "door_closed", "door_opened", "door_opened"]

    # a retained state is sent again at every subscribe: one event
    lwt = "tele/plug-3/LWT"
    publish_all(mosquitto, [(lwt, b"Online")], retain=True)
    wait_until(lambda: scalar(pg, "SELECT count(*) FROM events WHERE device_id = 'plug-3'"
                           " AND vendor <> 'gridbridge'") == 1,
               10, "LWT stored", daemon)
    assert daemon.stop() == 0
    time.sleep(2.5)                     # past the window: only `retained` makes it the same
    start_daemon(daemon, conf)
    daemon.wait_log(STORE_READY, timeout=30)
    ctl = JournalCtl(daemon.build_dir, conf=conf)
    # journaled again (and stored before dump could show it: wait for the seq)
    wait_until(lambda: ctl.stat()["last_seq"] == 7, 10, "the retained LWT journaled again",
               daemon)
    last = 7
    wait_until(lambda: checkpoints(pg)[-1][2] == last, 10, "checkpoint at the end", daemon)
    assert scalar(pg, "SELECT count(*) FROM events WHERE device_id = 'plug-3'"
                           " AND vendor <> 'gridbridge'") == 1
    # ... and a changed retained state is new
    publish_all(mosquitto, [(lwt, b"Offline")], retain=True)
    wait_until(lambda: scalar(pg, "SELECT count(*) FROM events WHERE device_id = 'plug-3'"
                           " AND vendor <> 'gridbridge'") == 2,
               10, "Offline stored", daemon)
    publish_all(mosquitto, [(lwt, b"")], retain=True)   # clear the retained message
    assert daemon.stop() == 0


# --------------------------------------------------------------------------
# 4. retention by receive time


def test_retention_follows_the_receive_time(daemon, mosquitto, private_postgres, tmp_path):
    """An alarm from a camera whose clock says 2000-01-01 survives retention
    (180 days) while it is recent; so does one whose device time falls in a
    daily partition past the retention. Both go once their receive time is
    past it."""
    import datetime
    pg = private_postgres
    conf = daemon.write_config(config(tmp_path, mosquitto, pg))
    start_daemon(daemon, conf)
    daemon.wait_log(STORE_READY, timeout=30)
    old_day = datetime.date.today() - datetime.timedelta(days=200)
    part = f"events_p{old_day:%Y%m%d}"
    query(pg, f"CREATE TABLE {part} PARTITION OF events FOR VALUES FROM ('{old_day}') "
              f"TO ('{old_day + datetime.timedelta(days=1)}')")
    publish_all(mosquitto, [camera_alarm(1, when="2000-01-01T08:00:00+08:00"),
                            camera_alarm(2, when=f"{old_day}T12:00:00+08:00")])
    wait_stored(pg, daemon, 2)
    assert scalar(pg, f"SELECT count(*) FROM {part}") == 1

    assert query(pg, "SELECT * FROM gridbridge_maintain_partitions(7, 180)") == [(part,)]
    rows = query(pg, "SELECT event_type, severity, tableoid::regclass::text FROM events "
                     "ORDER BY event_time")
    assert rows == [("camera_alarm", "critical", "events_default")] * 2, rows
    assert scalar(pg, "SELECT count(*) FROM event_ids") == 2

    # received long ago now: retention takes them
    query(pg, "UPDATE events SET received_at = received_at - interval '181 days'")
    query(pg, "UPDATE event_ids SET received_at = received_at - interval '181 days'")
    query(pg, "SELECT * FROM gridbridge_maintain_partitions(7, 180)")
    assert events(pg) == 0
    assert scalar(pg, "SELECT count(*) FROM event_ids") == 0
    assert daemon.stop() == 0


# --------------------------------------------------------------------------
# 5. one bad message never stalls the rest


def test_overlong_plate_is_quarantined_alone(daemon, mosquitto, private_postgres, tmp_path):
    """The issue's reproduction: a 3,000-character plate among 100 good
    events. Before, its batch failed with 54000 and was retried for ever."""
    pg = private_postgres
    conf = daemon.write_config(config(tmp_path, mosquitto, pg, store={"batch_ms": 500}))
    start_daemon(daemon, conf)
    daemon.wait_log(STORE_READY, timeout=30)
    msgs = [anpr_event(n) for n in range(100)]
    msgs.insert(37, anpr_event(1000, plate="皖A" + "9" * 2998))
    publish_all(mosquitto, msgs)
    wait_stored(pg, daemon, 100, quarantined=1, timeout=30)
    assert query(pg, "SELECT reason, journal_seq FROM quarantine") == [("too_long:plate", 38)]
    wait_until(lambda: checkpoints(pg) and checkpoints(pg)[-1][2] == 101, 10,
               "checkpoint at the end", daemon)
    assert_no_outage_logged(daemon)
    assert daemon.stop() == 0


def test_row_over_an_index_limit_is_quarantined_alone(daemon, mosquitto, private_postgres,
                                                      tmp_path):
    """A row the database refuses for its size (54000: an index entry over
    ~2,700 bytes, here through an index of the operator's own) is found in
    its batch and quarantined with the database's reason; 'database
    unavailable' is not logged for it."""
    import base64
    pg = private_postgres
    conf = daemon.write_config(config(tmp_path, mosquitto, pg, store={"batch_ms": 500}))
    start_daemon(daemon, conf)
    daemon.wait_log(STORE_READY, timeout=30)
    query(pg, "CREATE INDEX operators_record_index ON events (record)")
    msgs = [camera_alarm(n) for n in range(60)]
    urls = [f"http://10.20.0.5/{base64.b32encode(os.urandom(1200)).decode()}" for _ in range(6)]
    msgs.insert(20, camera_alarm(999, pictures=[{"url": u} for u in urls]))
    publish_all(mosquitto, msgs)
    wait_stored(pg, daemon, 60, quarantined=1, timeout=60)
    reason = scalar(pg, "SELECT reason FROM quarantine")
    assert reason.startswith("db_rejected:54000:"), reason
    wait_until(lambda: checkpoints(pg) and checkpoints(pg)[-1][2] == 61, 10,
               "checkpoint at the end", daemon)
    assert_no_outage_logged(daemon)
    assert daemon.stop() == 0


# --------------------------------------------------------------------------
# 3. failed syncs and a full disk


def journal_intact(ctl: JournalCtl) -> list[int]:
    """The journal's records: no damage, sequence numbers strictly rising."""
    st = ctl.stat()
    assert st["damaged"] == 0, st
    seqs = [r["seq"] for r in ctl.dump()]
    assert seqs == sorted(set(seqs)), "a sequence number is in the journal twice"
    return seqs


def test_failed_fdatasync_loses_and_skips_nothing(daemon, ingest_broker, private_postgres,
                                                  build_dir, tmp_path):
    """One fdatasync of a segment fails (an LD_PRELOAD shim answers EIO):
    those messages are not acknowledged, the segment is cut back to what
    was synced, and the broker's redelivery is journaled and stored. Before,
    the unsynced bytes stayed in the segment and their sequence numbers
    were given out again."""
    pg = private_postgres
    shim = Path(build_dir) / "tests" / "libfail_sync.so"
    conf = daemon.write_config(config(tmp_path, ingest_broker, pg))
    # The second sync of a segment: 2,000 messages take at least two
    # (sync_batch 1000), however large the groups grow on a busy machine.
    env = {"LD_PRELOAD": str(shim), "GRIDBRIDGE_TEST_FAIL_FDATASYNC": "2",
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    start_daemon(daemon, conf, env=env)
    daemon.wait_log(STORE_READY, timeout=30)
    publish_all(ingest_broker, [access_event(n) for n in range(2000)], timeout=120)
    wait_stored(pg, daemon, 2000, timeout=60)
    line = daemon.wait_log(r'msg="fdatasync failed, not acknowledged"', timeout=1)
    assert line.startswith("<3>level=error mod=journal"), line
    ctl = JournalCtl(build_dir, conf=conf)
    assert not (journal_dir_of(tmp_path) / "corrupt").exists()
    assert daemon.stop() == 0
    # a fresh start finds nothing to repair
    start_daemon(daemon, conf)
    daemon.wait_log(STORE_READY, timeout=30)
    assert not [x for x in daemon.lines if "moved aside" in x or "torn tail" in x]
    journal_intact(ctl)
    assert events(pg) == 2000
    assert daemon.stop() == 0


def test_messages_read_ahead_are_taken_without_more_coming(daemon, ingest_broker,
                                                          private_postgres, tmp_path):
    """The broker sends a burst and then nothing (all its messages in
    flight to us); with [journal] sync_batch = 1 every message ends a read
    burst. The daemon reads the broker's socket many packets at a time, so
    the rest of the burst waits in its own buffer, where the socket's read
    event does not see it: the daemon must go on reading by itself, or the
    messages wait for the next keepalive."""
    pg = private_postgres
    conf = daemon.write_config(config(tmp_path, ingest_broker, pg, journal={"sync_batch": 1}))
    start_daemon(daemon, conf)
    daemon.wait_log(STORE_READY, timeout=30)
    daemon.wait_log(r'msg="subscribed"', timeout=30)
    publish_all(ingest_broker, [access_event(n) for n in range(300)], timeout=60)
    wait_stored(pg, daemon, 300, timeout=20)
    assert daemon.stop() == 0


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB tmpfs for the state directory (needs CAP_SYS_ADMIN)."""
    mnt = tmp_path / "smallfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_filesystem_pauses_and_loses_nothing(daemon, ingest_broker, private_postgres,
                                                  build_dir, tmp_path, small_fs):
    """The journal's file system fills while the database is down: ingest
    pauses without acknowledging what it could not write, and resumes once
    the database is back and the journal frees space. Before, the
    checkpoint (a temporary file and a rename) could not be written on the
    full disk, so no segment was ever freed."""
    pg = private_postgres
    state = small_fs / "state"
    state.mkdir()
    conf = daemon.write_config(config(tmp_path, ingest_broker, pg, state=state,
                                      journal={"segment_size": "64K"}))
    start_daemon(daemon, conf)
    daemon.wait_log(STORE_READY, timeout=30)
    pg.stop(mode="fast")
    n = 5000
    pad = "x" * 400
    msgs = []
    for i in range(n):
        t, p = access_event(i)
        o = json.loads(p)
        o["eventDescription"] = pad
        msgs.append((t, json.dumps(o).encode()))
    c = ingest_broker.client("fill-publisher")
    infos = [c.publish(t, p, qos=1) for t, p in msgs]
    full = daemon.wait_log(r'msg="journal disk full, ingest paused"', timeout=60)
    assert full.startswith("<3>level=error mod=journal"), full
    pg.start()
    for info in infos:
        info.wait_for_publish(120)
        assert info.is_published()
    c.disconnect()
    c.loop_stop()
    wait_stored(pg, daemon, n, timeout=180)
    daemon.wait_log(r'msg="journal disk has room again"', timeout=30)
    assert not [x for x in daemon.lines if "moved aside" in x or "torn tail" in x]
    ctl = JournalCtl(build_dir, conf=conf)
    journal_intact(ctl)
    assert scalar(pg, "SELECT count(DISTINCT id) FROM events"
                      " WHERE vendor <> 'gridbridge'") == n
    assert daemon.stop() == 0
