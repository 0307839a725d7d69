"""Derived events with several instances (derive.h, "Several instances";
store_lease.h): three daemons on one shared subscription and one
database, a real broker and PostgreSQL, the daemons' clock moved by
[daemon] clock_offset_file (test_derived.py's Clock):

  1. a household's door sensor messages spread over the three instances
     (the last opening not seen by the instance holding the household's
     shard): one inactivity alert, at the time the last opening says,
     raised by the holder; none by the others;
  2. the holder is killed (kill -9): another instance takes its shards
     over within a lease and a renewal, and raises the repeat once, at its
     time; the next opening closes the alert once, whichever instance
     receives it;
  3. an access gate's heartbeats (its clock off: found by receive time)
     spread over the three: the holder raises no timeout while another
     instance got a heartbeat within it, and one device_offline, at its
     time, once none came.
"""

from __future__ import annotations

import time

import services
from ingest import daemon_config, start_daemon
from test_derived import GATE, HOUR, Clock, availability, derived, door, heartbeat, publish, welfare
from test_forward import wait_until
from test_store import db_query

COMMUNITY = "c-0001"
DOOR = "b03/u2/1502/entry_door"
LEASE = 4
NAMES = ("gb-a", "gb-b", "gb-c")


def config(tmp_path, broker, pg, clock, name: str, subscribe: tuple[str, ...] = ("#",),
           extra: str | None = None) -> str:
    """One instance's configuration: the shared group, the test clock, a
    short lease; `extra` sections (default: the welfare household)."""
    text = daemon_config(tmp_path, broker, store_db=pg, routes=True, subscribe=subscribe,
                         client_id=name, mqtt={"shared_group": "g1"})
    text = text.replace("[daemon]\n", f"[daemon]\nclock_offset_file = {clock.path}\n", 1)
    text += f"\n[registry]\nhold_down = 0\nlease = {LEASE}\n"
    return text + (extra if extra is not None else f"""
[welfare grandma-1502]
community = {COMMUNITY}
door_sensors = {DOOR}
inactive_hours = 1
repeat_hours = 1
""")


def openings(pg) -> list[tuple[float, str]]:
    """The door openings stored: (time, the instance that stored it)."""
    return [(r[0], r[1]) for r in db_query(
        pg, "SELECT (extract(epoch FROM event_time))::float8, journal_node FROM events"
            " WHERE event_type = 'door_opened' ORDER BY event_time")]


def nodes_of(pg, device: str) -> set[str]:
    return {r[0] for r in db_query(pg, "SELECT DISTINCT journal_node FROM events"
                                       " WHERE device_id = %s AND vendor <> 'gridbridge'",
                                   device)}


def stored_by(pg, event_id: str) -> str:
    return db_query(pg, "SELECT journal_node FROM events WHERE id = %s::uuid", event_id)[0][0]


def holders(pg) -> set[str]:
    return {r[0].split("/")[0] for r in db_query(pg, "SELECT DISTINCT holder FROM derive_leases")}


def three(daemon, mosquitto, pg, build_dir, tmp_path, clock,
          holder_subscribe: tuple[str, ...] = ("#",), extra: str | None = None) -> dict:
    """gb-a, gb-b and gb-c started in turn: gb-a holds every shard (first
    come), the others none, and gb-a knows it is not alone. gb-a subscribes
    to `holder_subscribe`, the others to everything; `extra`: config()."""
    daemons = {"gb-a": daemon}
    for name in NAMES[1:]:
        d = services.Daemon(build_dir, tmp_path / name)
        d.check_binary()
        daemons[name] = d
    for name in NAMES:
        base = tmp_path if name == "gb-a" else tmp_path / f"{name}-conf"
        base.mkdir(exist_ok=True)
        conf = base / "gridbridge.conf"
        conf.write_text(config(base, mosquitto, pg, clock, name,
                               holder_subscribe if name == "gb-a" else ("#",), extra))
        start_daemon(daemons[name], conf)
        daemons[name].wait_log(r'mod=lease msg="derived event shards"', timeout=20)
    daemons["gb-a"].wait_log(r'held=64 of=64 .*other_instances=[12]', timeout=20)
    for name in NAMES[1:]:
        assert daemons[name].wait_log(r'msg="derived event shards" held=0 ', timeout=1)
    assert holders(pg) == {"gb-a"}
    return daemons


def test_welfare_alert_once_with_three_instances_and_after_the_holder_dies(
        daemon, mosquitto, private_postgres, build_dir, tmp_path, report):
    pg = private_postgres
    clock = Clock(tmp_path / "clock-offset")
    daemons = {}
    try:
        daemons = three(daemon, mosquitto, pg, build_dir, tmp_path, clock)

        # the sensor's messages spread over the three instances, the last
        # opening not stored by the holder
        publish(mosquitto, availability(DOOR, "online"))
        n = 0
        while True:
            n += 1
            assert n < 40, f"the openings did not spread: {openings(pg)}"
            publish(mosquitto, door(DOOR, True, n))
            wait_until(lambda: len(openings(pg)) == n, 20, "the opening stored")
            time.sleep(0.05)
            if nodes_of(pg, DOOR) == set(NAMES) and openings(pg)[-1][1] != "gb-a":
                break
        opened = openings(pg)[-1][0]
        assert opened > openings(pg)[-2][0]
        wait_until(lambda: db_query(pg, "SELECT state FROM devices WHERE device_id = %s", DOOR)
                   == [("online",)], 20, "the sensor online")

        # less than an hour after the last opening: nothing; past it: one
        # alert, from that opening (which the holder did not receive)
        clock.set(HOUR - 60)
        time.sleep(2.5)
        assert welfare(pg) == []
        clock.set(HOUR + 5)
        wait_until(lambda: len(welfare(pg, "INACTIVITY")) == 1, 20, "the inactivity alert")
        time.sleep(2.5)     # a tick or two of every instance: nothing more
        assert len(welfare(pg)) == 1, welfare(pg)
        alert = welfare(pg, "INACTIVITY")[0]
        assert abs(alert["time"] - (opened + HOUR)) < 0.01, (alert["time"], opened)
        assert alert["attrs"]["welfare"].get("repeat", 0) == 0
        assert stored_by(pg, alert["id"]) == "gb-a"

        # the holder dies; its shards are taken over after its lease
        # expired, the repeat raised once, by another instance
        clock.set(2 * HOUR + 5)
        killed = time.monotonic()
        daemons["gb-a"].kill()
        wait_until(lambda: len(welfare(pg, "INACTIVITY")) == 2, 30, "the repeat")
        took = time.monotonic() - killed
        # a lease, a renewal (a third of it), a tick and the read-back, the write
        assert took < LEASE + LEASE / 3 + 4, f"taken over after {took:.1f}s"
        time.sleep(2.5)
        assert len(welfare(pg)) == 2, welfare(pg)
        repeat = welfare(pg, "INACTIVITY")[1]
        assert repeat["attrs"]["welfare"]["repeat"] == 1
        assert abs(repeat["time"] - (opened + 2 * HOUR)) < 0.01
        assert stored_by(pg, repeat["id"]) in ("gb-b", "gb-c")
        assert holders(pg) <= {"gb-b", "gb-c"}
        for name in NAMES[1:]:
            assert not [x for x in daemons[name].lines if "lapsed" in x]

        # the next opening, to whichever of the two: activity resumed, once
        # (mosquitto keeps handing the dead member its share, queued for
        # its session: published until one of the two stored one)
        before = len(openings(pg))
        for k in range(100, 110):
            publish(mosquitto, door(DOOR, True, k))
            time.sleep(0.3)
            if len(openings(pg)) > before:
                break
        wait_until(lambda: len(openings(pg)) > before, 20, "an opening stored")
        assert openings(pg)[-1][1] in ("gb-b", "gb-c")
        wait_until(lambda: len(welfare(pg, "ACTIVITY_RESUMED")) == 1, 20, "activity resumed")
        time.sleep(2.5)
        assert len(welfare(pg)) == 3, welfare(pg)
        report(f"3 instances, {n} openings spread ({len(nodes_of(pg, DOOR))} instances stored "
               f"some), the last one not the holder's: one alert from it; holder killed: "
               f"the repeat raised {took:.1f}s later (lease {LEASE}s), once")
        for name in NAMES[1:]:
            assert daemons[name].stop() == 0
    finally:
        for name in NAMES[1:]:
            if name in daemons:
                daemons[name].close()


def gate_beats(pg) -> list[tuple[float, str]]:
    """The gate's heartbeats stored: (receive time, the instance)."""
    return [(r[0], r[1]) for r in db_query(
        pg, "SELECT (extract(epoch FROM received_at))::float8, journal_node FROM events"
            " WHERE device_id = %s AND vendor <> 'gridbridge' ORDER BY received_at", GATE)]


def gate_offline(pg) -> list[dict]:
    return [r for r in derived(pg, "registry")
            if r["device"] == GATE and r["type"] == "device_offline"]


def test_heartbeat_timeout_with_heartbeats_spread(daemon, mosquitto, private_postgres,
                                                  build_dir, tmp_path, report):
    pg = private_postgres
    clock = Clock(tmp_path / "clock-offset")
    timeout = 900       # [registry] heartbeat_timeout_access_gate's default
    daemons = {}
    try:
        daemons = three(daemon, mosquitto, pg, build_dir, tmp_path, clock)
        # the holder hears from the gate first...
        n = 0
        while not any(node == "gb-a" for _, node in gate_beats(pg)):
            n += 1
            assert n < 20, gate_beats(pg)
            publish(mosquitto, heartbeat(n))
            wait_until(lambda: len(gate_beats(pg)) == n, 20, "the heartbeat stored")
        # ...then, 10 minutes on, another instance last (the holder's
        # later ones each 10 s before it)
        offset = 600
        while True:
            clock.set(offset)
            time.sleep(1.2)     # every instance's clock read
            n += 1
            assert n < 40, gate_beats(pg)
            publish(mosquitto, heartbeat(n))
            wait_until(lambda: len(gate_beats(pg)) == n, 20, "the heartbeat stored")
            if gate_beats(pg)[-1][1] != "gb-a":
                break
            offset += 10
        assert db_query(pg, "SELECT bool_and(clock_skewed) FROM events WHERE device_id = %s",
                        GATE) == [(True,)]      # its clock is off: found by receive time
        last = gate_beats(pg)[-1][0]
        last_a = max(t for t, node in gate_beats(pg) if node == "gb-a")
        assert last - last_a >= 9, (last, last_a)

        # past the timeout by the holder's own heartbeats, not by the last:
        # nothing
        clock.set(last_a + timeout + 5 - time.time())
        time.sleep(3)
        assert gate_offline(pg) == []
        # past it by the last: one device_offline, at its time, from the holder
        clock.set(last + timeout + 5 - time.time())
        wait_until(lambda: len(gate_offline(pg)) == 1, 20, "the gate offline")
        time.sleep(2.5)
        off = gate_offline(pg)
        assert len(off) == 1, off
        assert abs(off[0]["time"] - (last + timeout)) < 0.01, (off[0]["time"], last)
        assert stored_by(pg, off[0]["id"]) == "gb-a"
        report(f"{n} heartbeats over 3 instances, the holder's last {last - last_a:.0f}s "
               f"before the last: no timeout until the last's, then one device_offline")
        for name in NAMES:
            assert daemons[name].stop() == 0
    finally:
        for name in NAMES[1:]:
            if name in daemons:
                daemons[name].close()
