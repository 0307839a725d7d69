"""Scaling out: several daemons in one MQTT shared-subscription group
([mqtt] share_group), one PostgreSQL, one police platform. Real mosquitto,
PostgreSQL and mTLS HTTPS endpoint on loopback; each member has its own
client id (one configuration, `client_id = gb-scale-%i` and `-i NAME`), its
own state directory and admin listener.

  1. three members started at the same moment on an empty database create
     the schema once, and none logs an error;
  2. a stream through the group (the fault suite's stream and checker,
     tests/fault/checker.py) is stored exactly once, each member takes a
     fair share (events.journal_node names the member), and each event is
     forwarded exactly once, by some member (the outbox leases);
  3. one member killed with SIGKILL mid-stream and kept down: the rows it had
     leased are sent by the others once the lease has run out; what the
     broker keeps for it (mosquitto 2.0 goes on queueing the dead member's
     share in its persistent session) comes when it returns, and its
     journal is replayed: nothing lost, nothing stored twice; only rows it
     had leased when it died may have reached the platform twice;
  4. -i and client_id's %h/%i, checked before anything starts.

GRIDBRIDGE_SCALE_MESSAGES sets the stream's size (default 6,000; the issue's
60,000 takes a few minutes); GRIDBRIDGE_TEST_SEED fixes its random choices.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import logfmt
import services
from ingest import JournalCtl
from test_forward import CLIENT_ID, forward_config
from test_store import db_query, event_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fault"))
from checker import FORWARDED_TYPES, FaultStream, check, forwarded_ids, settled  # noqa: E402

MESSAGES = int(os.environ.get("GRIDBRIDGE_SCALE_MESSAGES", "6000"))
SEED = int(os.environ.get("GRIDBRIDGE_TEST_SEED", time.time_ns() % 1_000_000))
GROUP = "scale"
MEMBERS = 3
STORE_READY = logfmt.Match(mod="store", msg="ready")
# connect_timeout + timeout + lease_margin: a dead member's rows are free after 8 s
TARGET = {"retry_base_ms": 100, "retry_cap_ms": 500, "connect_timeout": 2, "timeout": 4,
          "lease_margin": 2}
LEASE_S = 8
SETTLE_S = 120.0 + MESSAGES / 100


def sanitized(build_dir) -> bool:
    return services.sanitized_binary(Path(build_dir) / "gridbridged")


class Member:
    """One daemon of the group: its own directory, client id and admin port."""

    def __init__(self, name: str, build_dir, tmp_path: Path, broker, pg, endpoint):
        self.name = name
        self.node = f"gb-scale-{name}"
        self.dir = tmp_path / name
        self.daemon = services.Daemon(build_dir, self.dir)
        self.admin_port = services.free_port()
        text = forward_config(self.dir, broker, pg, endpoint, target=TARGET,
                              rules={"all": {"event_type": ", ".join(FORWARDED_TYPES)}},
                              # batches wait a second for more rows, however
                              # many they have (linger_rows 0): a member
                              # killed mid-stream has records not yet stored
                              store={"batch_ms": 1000, "linger_ms": 1000,
                                     "linger_rows": 0, "answer_timeout": 10})
        # one text for every member: the instance name makes the client id
        text = text.replace(f"client_id = {CLIENT_ID}\n", "client_id = gb-scale-%i\n", 1)
        text = text.replace("[mqtt]\n", f"[mqtt]\nshare_group = {GROUP}\n", 1)
        text += f"\n[admin]\nlisten = 127.0.0.1:{self.admin_port}\n"
        self.conf = self.daemon.write_config(text)

    def start(self) -> None:
        self.daemon.start(self.conf, extra_args=["-i", self.name])

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.daemon.wait_notify("READY=1", timeout=timeout)
        self.daemon.wait_log(r'mod=mqtt msg="subscribed"', timeout=timeout)
        self.daemon.wait_log(STORE_READY, timeout=timeout)

    def metric(self, name: str) -> float:
        """The sum of a metric's samples on this member's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics",
                                    timeout=5) as r:
            text = r.read().decode()
        return sum(float(m.group(1)) for m in
                   re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


@pytest.fixture
def members(build_dir, tmp_path, ingest_broker, private_postgres, https_endpoint):
    made = [Member(f"m{i}", build_dir, tmp_path, ingest_broker, private_postgres,
                   https_endpoint) for i in range(MEMBERS)]
    try:
        yield made
    finally:
        for m in made:
            m.daemon.close()
    reports = "\n".join(r for m in made if (r := m.daemon.sanitizer_reports()))
    if reports:
        pytest.fail(f"sanitizer report on a member's stderr:\n{reports}", pytrace=False)


def errors_of(member: Member) -> list[str]:
    return [x for x in member.daemon.lines if "level=error" in x]


def wait_until(pred, timeout: float, what: str, members=(), interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        for m in members:
            if not m.daemon.running:
                raise AssertionError(f"{m.name} exited ({m.daemon.returncode}) waiting for "
                                     f"{what}:\n" + "\n".join(m.daemon.lines[-20:]))
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what} (last: {v})")
        time.sleep(interval)


# --------------------------------------------------------------------------
# 1. started at once on an empty database


def test_members_starting_at_once_create_the_schema_once(members, private_postgres):
    for m in members:            # within milliseconds of each other
        m.start()
    for m in members:
        m.wait_ready()
    pg = private_postgres
    versions = db_query(pg, "SELECT version, count(*) FROM schema_migrations"
                            " GROUP BY version ORDER BY version")
    assert [n for _, n in versions] == [1] * len(versions) and versions[0][0] == 1
    assert versions[-1][0] == len(versions)
    migrated = [m.name for m in members
                if any('msg="schema migrated"' in x for x in m.daemon.lines)]
    assert len(migrated) == 1, f"schema migrated by {migrated or 'none'}"
    # the partitions, made by whoever maintained first: once each, today's among them
    parts = db_query(pg, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON"
                         " c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass")
    names = [p for (p,) in parts]
    assert len(names) == len(set(names))
    assert db_query(pg, "SELECT to_regclass('events_p' || to_char(current_date,"
                        " 'YYYYMMDD')) IS NOT NULL")[0][0]
    for m in members:
        assert not errors_of(m), f"{m.name} logged errors:\n" + "\n".join(errors_of(m))
        assert any(f"node={m.node}" in x for x in m.daemon.lines[:3]), m.daemon.lines[:3]
    nodes = db_query(pg, "SELECT count(DISTINCT journal_node) FROM ingest_checkpoint")
    assert nodes[0][0] in (0, MEMBERS)
    for m in members:
        assert m.daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 2 and 3. the stream shared, then one member killed and kept down


def events_per_node(pg) -> dict[str, int]:
    rows = db_query(pg, "SELECT journal_node, count(*) FROM events WHERE vendor <> 'gridbridge'"
                        " GROUP BY journal_node")
    return dict(rows)


def leased_to(pg, node: str) -> set[str]:
    rows = db_query(pg, "SELECT event_id::text FROM forward_outbox WHERE state = 'pending'"
                        " AND starts_with(claimed_by, %s)", node + "/")
    return {r for (r,) in rows}


def sent_of(pg, ids: set[str]) -> int:
    if not ids:
        return 0
    rows = db_query(pg, "SELECT count(*) FROM forward_outbox WHERE state = 'sent'"
                        " AND event_id = ANY(%s::uuid[])", list(ids))
    return rows[0][0]


def test_three_members_share_the_stream_and_take_over_a_dead_one(
        members, ingest_broker, private_postgres, https_endpoint, build_dir, report):
    if event_pb2() is None:
        pytest.skip("protoc / python3-protobuf not installed")
    pg, ep = private_postgres, https_endpoint
    rate = 300 if sanitized(build_dir) else 600
    stream = FaultStream(max(10, round(MESSAGES / 4.1)), seed=SEED)
    for m in members:
        m.start()
    for m in members:
        m.wait_ready()

    with stream.publishers(ingest_broker, rate=rate) as pubs:
        # -- the first part of the stream, every member up
        pubs.start()
        wait_until(lambda: len(stream.acked()) >= stream.total * 0.55, SETTLE_S,
                   "the first part published", members)
        pubs.pause()
        pubs.wait_idle(30)
        wait_until(lambda: settled(stream, pg, ep), SETTLE_S,
                   "the first part stored and forwarded", members)
        time.sleep(0.5)
        r = check(stream, pg, ep)
        assert r.ok and r.total.fwd_dup == 0, f"seed {SEED}:\n{r.table()}\n{r.problems()}"
        per_node = events_per_node(pg)
        stored = sum(per_node.values())
        shares = {m.name: per_node.get(m.node, 0) / stored for m in members}
        sent = {m.name: m.metric("gridbridge_forward_events_sent_total") for m in members}
        report(f"seed {SEED}: {stored} events, stored by {shares}, forwarded by {sent}")
        assert set(per_node) == {m.node for m in members}, per_node
        assert all(s >= 0.8 / MEMBERS for s in shares.values()), \
            f"a member took less than a fair share: {shares}"
        assert all(n > 0 for n in sent.values()), f"a member forwarded nothing: {sent}"
        assert sum(sent.values()) == r.total.forwarded == len(forwarded_ids(ep)), \
            f"forwarded by the members {sent}, {r.total.forwarded} events, " \
            f"{len(forwarded_ids(ep))} ids at the endpoint"

        # -- the rest, and m0 killed in the middle of it, with rows leased
        # (requests take a while) and records journaled but not stored yet
        # (batches wait a second for more rows)
        ep.respond(200, delay=1.0)
        dead = members[0]
        before = len(stream.acked())
        pubs.resume()
        wait_until(lambda: len(stream.acked()) >= before + (stream.total - before) * 0.3,
                   SETTLE_S, "the second part under way", members)
        wait_until(lambda: leased_to(pg, dead.node) and
                   dead.metric("gridbridge_journal_lag_messages") > 0, 30,
                   "m0 with rows leased and records to store", members, interval=0.05)
        dead.daemon.kill()
        killed_at = time.monotonic()
        acked_at_kill = stream.acked()
        leased = leased_to(pg, dead.node)
        ctl = JournalCtl(build_dir, dead.conf)
        journal = ctl.stat()
        db_checkpoint = db_query(pg, "SELECT coalesce(max(journal_seq), 0) FROM"
                                     " ingest_checkpoint WHERE journal_node = %s", dead.node)
        to_replay = journal["last_seq"] - db_checkpoint[0][0]
        pubs.finish(timeout=SETTLE_S)

        # the others send what the dead member had leased, once its lease is over
        alive = members[1:]
        wait_until(lambda: sent_of(pg, leased) == len(leased), LEASE_S + 60,
                   "the dead member's leased rows sent by the others", alive)
        took_over_s = time.monotonic() - killed_at
        assert not dead.daemon.running
        # what the others stored of the messages published after the kill; the
        # rest is queued by the broker for the dead member
        late = stream.acked() - acked_at_kill
        time.sleep(2)
        r_down = check(stream, pg, ep)
        report(f"m0 killed with {len(leased)} rows leased (taken over after "
               f"{took_over_s:.1f}s) and {to_replay} journal records not stored; "
               f"{len(late)} messages published after the kill, {r_down.total.lost} acked "
               f"messages not stored while it was down")
        assert leased, "m0 had no rows leased when it was killed: nothing to take over"
        assert to_replay > 0, "m0 had stored everything it journaled: nothing to replay"

        # -- m0 back: its journal replayed, its queued share delivered
        dead.start()
        dead.wait_ready()
        assert any('msg="replaying journal"' in x for x in dead.daemon.lines)
        wait_until(lambda: settled(stream, pg, ep), SETTLE_S, "everything stored and forwarded",
                   members)
        time.sleep(0.5)

    r = check(stream, pg, ep)
    print(r.table())
    recovered = dead.metric("gridbridge_messages_recovered_total")
    fwd = forwarded_ids(ep)
    twice = {i for i, n in fwd.items() if n > 1}
    report(f"after m0's return: {r.total.stored + r.total.quarantined} messages, "
           f"lost {r.total.lost}, duplicated {r.total.duplicated}, forwarded "
           f"{r.total.forwarded}, forwarded twice {len(twice)} (of {len(leased)} leased to m0 "
           f"at its death), m0 recovered {recovered:.0f} journal records")
    assert r.ok, f"seed {SEED}:\n{r.table()}\n{r.problems()}"
    assert recovered == to_replay
    assert twice <= leased, \
        f"forwarded twice though not leased to the dead member: {sorted(twice - leased)[:5]}"
    for m in members:
        assert not errors_of(m), f"{m.name} logged errors:\n" + "\n".join(errors_of(m)[:10])
        assert m.daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 4. the instance name and the client id, as the operator meets them


def test_instance_name_and_client_id_checked_at_start(build_dir, tmp_path):
    binary = str(Path(build_dir) / "gridbridged")
    conf = tmp_path / "gridbridge.conf"
    conf.write_text(f"[daemon]\nstate_dir = {tmp_path / 'state'}\n\n[mqtt]\n"
                    "client_id = gb-%h-%i\nshare_group = city\n")

    def run(*args):
        r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr

    # %i without -i: the check and the start refuse, saying what to give
    rc, out = run("-n", "-c", str(conf))
    assert rc == 1 and "client_id: %i needs an instance name" in out and "-i NAME" in out, out
    rc, out = run("-c", str(conf))
    assert rc == 1 and 'msg="cannot start" stage=config' in out, out
    assert not (tmp_path / "state").exists()
    # a valid name passes; one with a character outside [A-Za-z0-9._-] is a usage error
    rc, out = run("-n", "-i", "north-1", "-c", str(conf))
    assert rc == 0, out
    rc, out = run("-n", "-i", "a/b", "-c", str(conf))
    assert rc == 2 and "-i: an instance name has only letters" in out, out
    # longer than 64 bytes once expanded
    rc, out = run("-n", "-i", "x" * 32, "-c", str(conf))
    host = os.uname().nodename
    if len(f"gb-{host}-{'x' * 32}") > 64:
        assert rc == 1 and "more than the 64 a client id may have" in out, out
    conf.write_text("[mqtt]\nclient_id = gb-" + "x" * 50 + "-%i\n")
    rc, out = run("-n", "-i", "y" * 20, "-c", str(conf))
    assert rc == 1 and "74 bytes once expanded, more than the 64" in out, out
    # the former key name: still accepted, not with the new one
    conf.write_text("[mqtt]\nshared_group = old\nshare_group = new\n")
    rc, out = run("-n", "-c", str(conf))
    assert rc == 1 and "share_group and shared_group are mutually exclusive" in out, out
