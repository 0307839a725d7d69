"""One GA/T 1400 device id shared by several daemons ([forward.target]
session = shared): real mosquitto (a shared-subscription group), PostgreSQL
and the test platform of viid.py, three daemons on loopback.

  1. three daemons started together: exactly one registers and keeps the
     session alive, the others log who holds it; events stored by all three
     are uploaded by the holder alone, each object once;
  2. the holder killed with SIGKILL: another daemon takes the lease once it
     has run out, registers and uploads what came meanwhile; the dead one
     comes back as a standby; each object once;
  3. the holder stopped with SIGTERM: it unregisters and gives the lease
     up, and another takes over sooner than the lease would have run out;
  4. a lease lost under a running holder (another node written into
     forward_leases): it stops its session without UnRegister and claims
     nothing, the rows wait; once the lease is free again it registers and
     sends them.
"""

from __future__ import annotations

import time
import urllib.request
import re
from pathlib import Path

import pytest

import services
from test_store import db_query
from test_viid_upload import CLIENT_ID, person, platform, viid_config  # noqa: F401

LEASE_S = 9           # session_lease: renewed or asked for every 3 s
GROUP = "viid"
UP = 'msg="viid session up"'
TAKEN = 'msg="viid session lease taken"'
HELD_ELSEWHERE = 'msg="viid session held by another daemon"'


class Member:
    """One daemon: its own state directory, client id gb-viid-NAME, admin port."""

    def __init__(self, name: str, build_dir, tmp_path: Path, broker, pg, platform):
        self.name = name
        self.node = f"gb-viid-{name}"
        self.dir = tmp_path / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.daemon = services.Daemon(build_dir, self.dir)
        self.admin_port = services.free_port()
        text = viid_config(self.dir, broker, pg, platform,
                           target={"session": "shared", "session_lease": LEASE_S})
        text = text.replace(f"client_id = {CLIENT_ID}\n", "client_id = gb-viid-%i\n", 1)
        text = text.replace("[mqtt]\n", f"[mqtt]\nshare_group = {GROUP}\n", 1)
        text += f"\n[admin]\nlisten = 127.0.0.1:{self.admin_port}\n"
        self.conf = self.daemon.write_config(text)
        self.past_lines: list[str] = []

    def start(self) -> None:
        self.past_lines += self.daemon.lines
        self.daemon.start(self.conf, extra_args=["-i", self.name])

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.daemon.wait_notify("READY=1", timeout=timeout)
        self.daemon.wait_log(r'mod=mqtt msg="subscribed"', timeout=timeout)

    def logged(self, what: str) -> int:
        return sum(what in x for x in self.daemon.lines)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics",
                                    timeout=5) as r:
            text = r.read().decode()
        found = [float(m.group(1)) for m in re.finditer(
            rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)]
        assert found, f"{name} not on /metrics"
        return sum(found)

    def sent(self) -> float:
        return self.metric("gridbridge_forward_events_sent_total")


@pytest.fixture
def members(build_dir, tmp_path, ingest_broker, private_postgres, platform):
    made = [Member(f"m{i}", build_dir, tmp_path, ingest_broker, private_postgres, platform)
            for i in range(3)]
    try:
        yield made
    finally:
        for m in made:
            m.daemon.close()
    reports = "\n".join(r for m in made if (r := m.daemon.sanitizer_reports()))
    if reports:
        pytest.fail(f"sanitizer report on a member's stderr:\n{reports}", pytrace=False)


def wait_until(pred, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what} (last: {v})")
        time.sleep(interval)


def holders(members) -> list[Member]:
    """The running members whose session is up now (by their log: the last
    of 'session up' / 'lease lost' / 'stopped' lines)."""
    out = []
    for m in members:
        if not m.daemon.running:
            continue
        state = None
        for x in m.daemon.lines:
            if UP in x:
                state = True
            elif 'msg="viid session lease lost"' in x or 'msg="viid session stopped"' in x:
                state = False
        if state:
            out.append(m)
    return out


def lease_row(pg) -> tuple[str, bool]:
    rows = db_query(pg, "SELECT holder, expires_at > now() FROM forward_leases"
                        " WHERE target = 'viid'")
    return rows[0] if rows else ("", False)


def publish(broker, first: int, n: int) -> None:
    for i in range(first, first + n):
        topic, payload = person(i)
        broker.publish(topic, payload, qos=1)


def sent_rows(pg) -> int:
    return db_query(pg, "SELECT count(*) FROM forward_outbox WHERE target = 'viid'"
                        " AND state = 'sent'")[0][0]


def check_faces(platform, n: int, timeout: float = 60) -> None:
    platform.wait_for_accepted("faces", n, timeout=timeout)
    assert len(platform.accepted_ids("faces")) == n
    assert platform.duplicates("faces") == {}
    assert platform.violations == []


def test_one_daemon_holds_the_shared_session_and_another_takes_over(
        members, ingest_broker, private_postgres, platform):
    pg = private_postgres
    for m in members:
        m.start()
    for m in members:
        m.wait_ready()

    # 1. exactly one holder; the others know who it is
    first = wait_until(lambda: holders(members), 30, "a daemon registered")[0]
    others = [m for m in members if m is not first]
    for m in others:
        m.daemon.wait_log(HELD_ELSEWHERE, timeout=LEASE_S)
        assert f"holder={first.node}" in next(x for x in m.daemon.lines if HELD_ELSEWHERE in x)
    time.sleep(LEASE_S / 3 * 2 + 1)          # two more rounds of asking
    assert holders(members) == [first]
    assert platform.registrations == 1
    assert [m.logged(UP) for m in others] == [0, 0]
    assert lease_row(pg) == (first.node, True)

    publish(ingest_broker, 0, 60)
    wait_until(lambda: sent_rows(pg) == 60, 60, "60 rows sent")
    check_faces(platform, 60)
    by_node = dict(db_query(pg, "SELECT journal_node, count(*) FROM events"
                                " WHERE event_type = 'person_passage' GROUP BY 1"))
    assert len(by_node) == 3, f"the group did not spread the stream: {by_node}"
    assert first.sent() == 60 and [m.sent() for m in others] == [0, 0]
    assert [m.metric("gridbridge_forward_session_held") for m in members] == \
        [1.0 if m is first else 0.0 for m in members]
    # a daemon standing by is not a target down
    assert [m.metric("gridbridge_forward_target_up") for m in members] == [1.0] * 3
    platform.wait_for(lambda: platform.keepalives >= 1, 12, "a keepalive")

    # 2. the holder dies: another takes the lease once it has run out
    killed_at = time.monotonic()
    first.daemon.kill()
    second = wait_until(lambda: holders(others), LEASE_S + LEASE_S / 3 + 10,
                        "another daemon registered")[0]
    took = time.monotonic() - killed_at
    assert took >= LEASE_S * 0.5, f"taken over after {took:.1f}s, before the lease ran out"
    time.sleep(LEASE_S / 3 + 1)
    assert holders(members) == [second], "two daemons hold the session"
    assert platform.registrations == 2 and platform.unregistrations == 0
    assert lease_row(pg) == (second.node, True)

    publish(ingest_broker, 100, 30)
    # the dead member's share waits in its broker session: bring it back
    first.start()
    first.wait_ready()
    first.daemon.wait_log(HELD_ELSEWHERE, timeout=LEASE_S)
    wait_until(lambda: sent_rows(pg) == 90, 90, "90 rows sent")
    check_faces(platform, 90)
    assert first.logged(UP) == 0 and holders(members) == [second]

    # 3. the holder stops cleanly: it unregisters and gives the lease up
    n = platform.unregistrations
    stopped_at = time.monotonic()
    assert second.daemon.stop() == 0
    assert platform.unregistrations == n + 1
    assert any('msg="viid session lease given up"' in x for x in second.daemon.lines)
    rest = [m for m in members if m is not second]
    third = wait_until(lambda: holders(rest), LEASE_S, "a daemon registered after the stop")[0]
    took = time.monotonic() - stopped_at
    assert took < LEASE_S, f"taken over after {took:.1f}s: the lease was not given up"
    publish(ingest_broker, 200, 30)
    wait_until(lambda: sent_rows(pg) >= 90 + 20, 60, "rows sent by the third holder")
    assert third.sent() > 0

    for m in members:
        errors = [x for x in m.past_lines + m.daemon.lines if "level=error" in x]
        assert errors == [], f"{m.name}: {errors}"


def test_lease_taken_away_stops_the_session_without_unregister(
        daemon, tmp_path, mosquitto, private_postgres, platform):
    pg = private_postgres
    text = viid_config(tmp_path, mosquitto, pg, platform,
                       target={"session": "shared", "session_lease": 6})
    conf = tmp_path / "gridbridge.conf"
    conf.write_text(text)
    daemon.start(conf)
    daemon.wait_log(UP, timeout=30)
    node = lease_row(pg)[0]
    assert node == CLIENT_ID

    publish(mosquitto, 0, 5)
    wait_until(lambda: sent_rows(pg) == 5, 30, "5 rows sent")

    # Another node holds it now (as after a pause longer than the lease).
    db_query(pg, "UPDATE forward_leases SET holder = 'gb-other', expires_at = now() + '1 hour'")
    daemon.wait_log('msg="viid session lease lost"', timeout=10)
    daemon.wait_log('msg="viid session stopped"', timeout=5)
    assert any("unregistered=no" in x for x in daemon.lines if "viid session stopped" in x)
    assert platform.unregistrations == 0
    line = daemon.wait_log(HELD_ELSEWHERE, timeout=5)
    assert "holder=gb-other" in line

    publish(mosquitto, 100, 5)
    time.sleep(4)
    assert sent_rows(pg) == 5, "a daemon without the lease sent rows"
    pending = db_query(pg, "SELECT count(*) FROM forward_outbox WHERE state = 'pending'")[0][0]
    assert pending == 5

    # The other's lease runs out: ours again, registered, the rows sent.
    registrations = platform.registrations
    since = len(daemon.lines)
    db_query(pg, "UPDATE forward_leases SET expires_at = now() - '1 second'::interval")
    daemon.wait_log(TAKEN, timeout=10, since=since)
    wait_until(lambda: platform.registrations == registrations + 1, 15, "registered again")
    wait_until(lambda: sent_rows(pg) == 10, 30, "10 rows sent")
    check_faces(platform, 10)
    assert lease_row(pg) == (CLIENT_ID, True)
