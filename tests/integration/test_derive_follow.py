"""The holder of the derived events' shards follows what the other
instances store (store_lease.h, "follow"; derive.h, "Several instances"):
three daemons on one database and one broker, the holder (gb-a, started
first: it holds every shard) subscribed to a filter that does not match
the device's messages, so that they reach only gb-b and gc-c (one shared
subscription between them):

  1. night-time door openings, none of them the holder's: they add up to
     the household's night_openings and raise one night_activity alert,
     from the holder;
  2. an access gate heard only by the other instances: in the holder's
     registry (its `devices` row) within seconds, and timed out once, at
     the time of its last heartbeat plus the timeout;
  3. a Shelly door sensor the holder hears (its sensor topic), whose last
     will (its online topic) reaches another instance only: one
     device_offline within seconds, not after a heartbeat timeout; again
     after the lease connections were cut (the holder listens again);
     only the holder follows;
  4. a single instance follows nothing.
"""

from __future__ import annotations

import time

from ingest import start_daemon
from test_derive_leases import LEASE, NAMES, config, holders, nodes_of, stored_by
from test_derive_leases import three as leases_three
from test_derived import GATE, Clock, derived, door, heartbeat, publish, welfare
from test_forward import wait_until
from test_store import db_query

COMMUNITY = "c-0001"
DOOR = "b03/u2/1502/entry_door"
SHELLY = "door-7"


def three(daemon, mosquitto, pg, build_dir, tmp_path, clock, holder_subscribe: tuple[str, ...],
          extra: str = "") -> dict:
    """test_derive_leases' three instances, gb-a holding every shard and
    subscribed to `holder_subscribe`, once gb-a follows the others."""
    daemons = leases_three(daemon, mosquitto, pg, build_dir, tmp_path, clock,
                           holder_subscribe, extra)
    # The holder listens once it knows others are alive (a release without
    # following says nothing: the test then fails on what it checks).
    try:
        daemons["gb-a"].wait_log(r'msg="following other instances\' records"', timeout=10)
    except Exception:   # noqa: BLE001
        pass
    return daemons


def close(daemons: dict) -> None:
    for name in NAMES[1:]:
        if name in daemons:
            daemons[name].close()


def night_window(minutes_before: int, minutes_after: int) -> str:
    """A night window (UTC) around now."""
    now = int(time.time() // 60)
    start, end = (now - minutes_before) % 1440, (now + minutes_after) % 1440
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def door_openings(pg) -> list[tuple[float, str]]:
    return [(r[0], r[1]) for r in db_query(
        pg, "SELECT (extract(epoch FROM received_at))::float8, journal_node FROM events"
            " WHERE event_type = 'door_opened' AND device_id = %s ORDER BY received_at", DOOR)]


def test_night_openings_stored_by_other_instances_add_up(
        daemon, mosquitto, private_postgres, build_dir, tmp_path, report):
    pg = private_postgres
    clock = Clock(tmp_path / "clock-offset")
    daemons = {}
    try:
        daemons = three(daemon, mosquitto, pg, build_dir, tmp_path, clock, ("none/#",), f"""
[welfare grandma-1502]
community = {COMMUNITY}
door_sensors = {DOOR}
night_window = {night_window(60, 120)}
night_openings = 2
timezone = +00:00
""")
        # three openings at night, none to the holder: more than 2
        for k in range(1, 4):
            publish(mosquitto, door(DOOR, True, k))
            wait_until(lambda: len(door_openings(pg)) == k, 20, "the opening stored")
            time.sleep(0.3)
        third = time.monotonic()
        assert {node for _, node in door_openings(pg)} == {"gb-b", "gb-c"}, door_openings(pg)
        wait_until(lambda: len(welfare(pg, "NIGHT_ACTIVITY")) == 1, 15, "the night alert")
        took = time.monotonic() - third
        # a fourth: the night's alert was raised already
        publish(mosquitto, door(DOOR, True, 4))
        wait_until(lambda: len(door_openings(pg)) == 4, 20, "the fourth opening stored")
        time.sleep(3)       # a follow and a tick or two of every instance
        alerts = welfare(pg, "NIGHT_ACTIVITY")
        assert len(alerts) == 1, alerts
        assert alerts[0]["attrs"]["welfare"]["openings"] == 3, alerts[0]
        assert stored_by(pg, alerts[0]["id"]) == "gb-a"
        assert welfare(pg) == alerts, welfare(pg)
        report(f"3 night openings stored by gb-b and gb-c, none by the holder: one "
               f"night_activity alert from the holder {took:.1f}s after the third")
        for name in NAMES:
            assert daemons[name].stop() == 0
    finally:
        close(daemons)


def gate_offline(pg) -> list[dict]:
    return [r for r in derived(pg, "registry")
            if r["device"] == GATE and r["type"] == "device_offline"]


def test_device_heard_only_by_other_instances_is_tracked(
        daemon, mosquitto, private_postgres, build_dir, tmp_path, report):
    pg = private_postgres
    clock = Clock(tmp_path / "clock-offset")
    timeout = 900       # [registry] heartbeat_timeout_access_gate's default
    daemons = {}
    try:
        daemons = three(daemon, mosquitto, pg, build_dir, tmp_path, clock, ("none/#",))
        for n in (1, 2):
            publish(mosquitto, heartbeat(n))
            wait_until(lambda: len(nodes_of(pg, GATE)) > 0 and db_query(
                pg, "SELECT count(*) FROM events WHERE device_id = %s", GATE)[0][0] == n,
                20, "the heartbeat stored")
        stored = time.monotonic()
        assert nodes_of(pg, GATE) <= {"gb-b", "gb-c"}
        # only the holder writes a shard's devices rows
        wait_until(lambda: db_query(pg, "SELECT state FROM devices WHERE device_id = %s",
                                    GATE) == [("online",)], 10, "the gate in the registry")
        took = time.monotonic() - stored
        last = db_query(pg, "SELECT (extract(epoch FROM max(received_at)))::float8 FROM events"
                            " WHERE device_id = %s", GATE)[0][0]
        clock.set(last + timeout - 60 - time.time())
        time.sleep(2.5)
        assert gate_offline(pg) == []
        clock.set(last + timeout + 5 - time.time())
        wait_until(lambda: len(gate_offline(pg)) == 1, 20, "the gate offline")
        time.sleep(2.5)
        off = gate_offline(pg)
        assert len(off) == 1, off
        assert abs(off[0]["time"] - (last + timeout)) < 0.01, (off[0]["time"], last)
        assert stored_by(pg, off[0]["id"]) == "gb-a"
        assert db_query(pg, "SELECT state FROM devices WHERE device_id = %s",
                        GATE) == [("offline",)]
        report(f"a gate heard by gb-b and gb-c only: in the holder's registry {took:.1f}s "
               f"after its heartbeats were stored, one device_offline at its time")
        for name in NAMES:
            assert daemons[name].stop() == 0
    finally:
        close(daemons)


def shelly_registry(pg, device: str) -> list[dict]:
    return [r for r in derived(pg, "registry") if r["device"] == device]


def last_will(mosquitto, pg, device: str) -> float:
    """The sensor online by a message to the holder, then its last will to
    another instance: one device_offline from the holder, at the will's
    time. Returns how long after the will it was stored."""
    publish(mosquitto, (f"shellies/{device}/sensor/state", b"close"))
    wait_until(lambda: db_query(pg, "SELECT state FROM devices WHERE device_id = %s",
                                device) == [("online",)], 20, "the sensor online")
    assert "gb-a" in nodes_of(pg, device)
    assert shelly_registry(pg, device) == []
    sent = time.monotonic()
    publish(mosquitto, (f"shellies/{device}/online", b"false"))
    wait_until(lambda: len(shelly_registry(pg, device)) == 1, 15, "the sensor offline")
    took = time.monotonic() - sent
    will = db_query(pg, "SELECT (extract(epoch FROM event_time))::float8, journal_node"
                        " FROM events WHERE device_id = %s AND event_type <> 'door_closed'"
                        " AND vendor <> 'gridbridge'", device)
    assert len(will) == 1 and will[0][1] in ("gb-b", "gb-c"), will
    off = shelly_registry(pg, device)[0]
    assert off["type"] == "device_offline", off
    assert off["attrs"]["status"]["source"] == "STATUS_SOURCE_AVAILABILITY", off
    assert abs(off["time"] - will[0][0]) < 0.01, (off["time"], will)
    assert stored_by(pg, off["id"]) == "gb-a"
    assert took < 6, f"offline {took:.1f}s after its last will"
    return took


def test_last_will_to_another_instance_is_seen_within_seconds(
        daemon, mosquitto, private_postgres, build_dir, tmp_path, report):
    pg = private_postgres
    clock = Clock(tmp_path / "clock-offset")
    daemons = {}
    try:
        # the holder gets the sensors' states, not their online topic
        daemons = three(daemon, mosquitto, pg, build_dir, tmp_path, clock,
                        ("shellies/+/sensor/state",))
        took = last_will(mosquitto, pg, SHELLY)

        # the lease connections cut: the holder listens again once back,
        # and follows as before
        since = len(daemons["gb-a"].lines)
        db_query(pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE application_name = 'gridbridged-lease'")
        daemons["gb-a"].wait_log(r'msg="following other instances\' records"', timeout=15,
                                 since=since)
        again = last_will(mosquitto, pg, "door-8")
        time.sleep(2.5)
        assert len(shelly_registry(pg, SHELLY)) == 1, shelly_registry(pg, SHELLY)
        assert len(shelly_registry(pg, "door-8")) == 1, shelly_registry(pg, "door-8")
        # only the holder follows
        for name in NAMES[1:]:
            assert not [x for x in daemons[name].lines if "following other" in x]
        report(f"a last will delivered to another instance: device_offline from the "
               f"holder {took:.1f}s later; {again:.1f}s after the lease connections were cut")
        for name in NAMES:
            assert daemons[name].stop() == 0
    finally:
        close(daemons)


def test_alone_follows_nothing(daemon, mosquitto, private_postgres, tmp_path):
    """A single instance listens to nothing: it pays nothing for following."""
    pg = private_postgres
    clock = Clock(tmp_path / "clock-offset")
    conf = tmp_path / "gridbridge.conf"
    conf.write_text(config(tmp_path, mosquitto, pg, clock, "gb-a", ("#",), ""))
    start_daemon(daemon, conf)
    daemon.wait_log(r'msg="derived event shards" held=64 of=64 .*other_instances=0', timeout=20)
    publish(mosquitto, (f"shellies/{SHELLY}/sensor/state", b"close"))
    wait_until(lambda: db_query(pg, "SELECT state FROM devices WHERE device_id = %s",
                                SHELLY) == [("online",)], 20, "the sensor online")
    time.sleep(2 * LEASE / 3 + 1)     # a renewal or two
    assert not [x for x in daemon.lines if "following other" in x]
    assert daemon.stop() == 0
