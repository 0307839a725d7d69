"""MQTT ingest into the durable journal: every QoS 1 message the broker hands
the daemon is in <state_dir>/journal/, read back with `gridbridgectl journal
dump`; PUBACK waits for the journal's fdatasync (checked by crashing the
daemon inside on_message); oversize messages; the disk cap; MQTT v5 and
shared subscriptions."""

import re
import signal
import threading
import time
import urllib.request

import pytest

import logfmt
import services
from ingest import (JournalCtl, JournalWatcher, PublisherGroup, daemon_config, describe_missing,
                    journal_dir_of, key_counts, key_of, make_payload, payload_bytes,
                    segment_files, start_daemon)

# Generous, bounded: the suite also runs under ASan+UBSan (daemon ~3x slower).
READY_TIMEOUT = 30.0
INGEST_TIMEOUT = 120.0

RECEIVED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
JOURNAL_FULL = logfmt.Match(mod="journal", msg="journal full, pausing ingest")


def ctl_for(build_dir, conf, daemon):
    return JournalCtl(build_dir, conf=conf, log_path=daemon.dir / "gridbridgectl.log")


def assert_record_shape(rec, topic=None):
    """The documented fields of one dump record, for a normal (not oversize) message."""
    for k in ("seq", "received_time_us", "received_at", "qos", "topic", "payload_len",
              "oversize"):
        assert k in rec, f"dump record without {k!r}: {rec}"
    assert rec["qos"] == 1, rec
    assert rec["oversize"] is False, rec
    assert RECEIVED_AT.fullmatch(rec["received_at"]), rec
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(rec["received_time_us"] // 1_000_000))
    frac = rec["received_time_us"] % 1_000_000
    assert rec["received_at"] == f"{t}.{frac:06d}Z", rec
    assert abs(rec["received_time_us"] / 1e6 - time.time()) < 600, rec
    raw = payload_bytes(rec)
    assert raw is not None and len(raw) == rec["payload_len"], rec
    if topic is not None:
        assert rec["topic"] == topic, rec


# --------------------------------------------------------------------------
# 1. many publishers, exactly once, per-topic order


def test_20000_messages_from_4_publishers_journaled_once_in_topic_order(
        daemon, ingest_broker, build_dir, tmp_path, report):
    conf = daemon.write_config(daemon_config(tmp_path, ingest_broker))
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    ctl = ctl_for(build_dir, conf, daemon)
    watcher = JournalWatcher(ctl)

    t0 = time.monotonic()
    with PublisherGroup(ingest_broker, n=4, per_publisher=5000) as pubs:
        pubs.start()
        acked = pubs.finish(timeout=INGEST_TIMEOUT)
        t_published = time.monotonic() - t0
        assert acked == pubs.expected()
        watcher.wait_for_keys(acked, timeout=INGEST_TIMEOUT, alive=lambda: daemon.running)
        t_journaled = time.monotonic() - t0
        topic_of = pubs.topics()
    report(f"20000 messages: published in {t_published:.1f}s, "
           f"all in the journal after {t_journaled:.1f}s")

    # nothing arrives late: the journal is complete and stays so
    time.sleep(0.5)
    records = ctl.dump()
    counts = key_counts(records)
    assert set(counts) == acked, describe_missing(acked - set(counts))
    dups = {k: n for k, n in counts.items() if n > 1}
    assert not dups, f"{len(dups)} message(s) journaled more than once, e.g. " \
                     f"{list(dups.items())[:5]}"
    assert len(records) == 20000, f"{len(records)} records for 20000 messages"

    # seq numbers: 1, 2, 3, ... in journal order
    assert [r["seq"] for r in records] == list(range(1, 20001))
    # per-topic order: a publisher's seq rises along each of its topics
    last = {}
    for r in records:
        pub, seq = key_of(r)
        assert r["topic"] == topic_of[(pub, seq)], r
        assert last.get(r["topic"], 0) < seq, \
            f"topic {r['topic']}: seq {seq} journaled after {last[r['topic']]}"
        last[r["topic"]] = seq
    for r in records[:50] + records[-50:]:
        assert_record_shape(r)

    st = ctl.stat()
    jdir = journal_dir_of(tmp_path)
    assert st["records"] == 20000 and st["first_seq"] == 1 and st["last_seq"] == 20000, st
    assert st["segments"] == len(segment_files(jdir)), st
    assert st["bytes"] == sum(p.stat().st_size for p in segment_files(jdir)), st
    assert st["dir"] == str(jdir), st
    assert "checkpoint_seq" in st, st
    # -d DIR reads the same journal as -c CONF
    st_d = JournalCtl(build_dir, journal_dir=jdir).stat()
    keys = ("dir", "segments", "bytes", "records", "first_seq", "last_seq", "checkpoint_seq")
    assert {k: st_d.get(k) for k in keys} == {k: st[k] for k in keys}, (st_d, st)

    assert daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 3. crash inside on_message: PUBACK must not have left


@pytest.mark.parametrize("point", ["before_append", "after_append"])
def test_crash_in_on_message_then_broker_redelivers(daemon, ingest_broker, build_dir,
                                                    tmp_path, point):
    """GRIDBRIDGE_CRASH_AT makes the daemon SIGKILL itself when the N-th message
    arrives in on_message, before appending it or after appending it to the
    in-memory buffer (not written, not fsynced, PUBACK not sent).

    This pins libmosquitto's behaviour that the daemon relies on: with
    mosquitto_threaded_set(true) the library does not send the PUBACK before
    on_message runs; it only queues it, and the queue leaves when the daemon
    calls mosquitto_loop_write() after the journal's fdatasync. Had the
    PUBACK left before on_message (the library's default), the broker would
    consider message N delivered and never send it again: it would be lost.
    """
    N = 5
    conf = daemon.write_config(daemon_config(tmp_path, ingest_broker))
    ctl = ctl_for(build_dir, conf, daemon)
    watcher = JournalWatcher(ctl)
    start_daemon(daemon, conf, env={"GRIDBRIDGE_CRASH_AT": f"{point}:{N}"},
                 timeout=READY_TIMEOUT)

    topic = "sac/c1/door/dev1/event"
    for seq in range(1, N):
        ingest_broker.publish(topic, make_payload("crash", seq))
    watcher.wait_for_keys({("crash", s) for s in range(1, N)}, timeout=30,
                          alive=lambda: daemon.running)
    for seq in range(N, N + 3):
        ingest_broker.publish(topic, make_payload("crash", seq))

    assert daemon.wait(30) == -signal.SIGKILL, "the daemon did not kill itself at message N"
    watcher.poll()
    assert ("crash", N) not in watcher.counts, \
        f"message {N} is in the journal although the daemon died {point.replace('_', ' ')}"

    # restart without the fault: the broker still holds message N (no PUBACK)
    start_daemon(daemon, conf, timeout=READY_TIMEOUT, subscribed=False)
    watcher.wait_for_keys({("crash", s) for s in range(1, N + 3)}, timeout=30,
                          alive=lambda: daemon.running, what=f"after the crash {point}")
    records = ctl.dump()
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    for r in records:
        assert_record_shape(r, topic)
    assert daemon.stop(timeout=30) == 0


@pytest.mark.parametrize("last", ["json", "oversize"])
def test_crash_after_sync_then_broker_redelivers_journaled_once(daemon, ingest_broker,
                                                                  build_dir, tmp_path, last):
    """GRIDBRIDGE_CRASH_AT=after_sync:N kills the daemon once the journal's
    sync has made message N durable, before the PUBACKs it releases leave.
    The broker sends those messages again to the restarted daemon; they are
    in the journal already and must not be journaled a second time (a
    malformed one would otherwise be quarantined twice, a report without
    device time or serial stored twice). The journal keeps each message's
    packet id, and the restarted daemon recognises the redelivery by it."""
    N = 5
    conf = daemon.write_config(daemon_config(tmp_path, ingest_broker,
                                             mqtt={"max_message_size": "1K"}))
    ctl = ctl_for(build_dir, conf, daemon)
    watcher = JournalWatcher(ctl)
    start_daemon(daemon, conf, env={"GRIDBRIDGE_CRASH_AT": f"after_sync:{N}"},
                 timeout=READY_TIMEOUT)

    topic, big_topic = "sac/c1/door/dev1/event", "sac/c1/camera/cam1/event"
    for seq in range(1, N):
        ingest_broker.publish(topic, make_payload("crash", seq))
    watcher.wait_for_keys({("crash", s) for s in range(1, N)}, timeout=30,
                          alive=lambda: daemon.running)
    if last == "oversize":
        ingest_broker.publish(big_topic, b"{" + b"A" * 4095)
    else:
        ingest_broker.publish(topic, make_payload("crash", N))
    assert daemon.wait(30) == -signal.SIGKILL, "the daemon did not kill itself after the sync"
    watcher.poll()
    assert len(watcher.records) == N, "message N is durable in the journal before the kill"

    # restart without the fault: the broker sends message N again (no PUBACK
    # left), then the marker published after it
    start_daemon(daemon, conf, timeout=READY_TIMEOUT, subscribed=False)
    ingest_broker.publish(topic, make_payload("after", 1))
    watcher.wait_for_keys({("after", 1)}, timeout=30, alive=lambda: daemon.running,
                          what="after the crash")
    time.sleep(0.5)
    watcher.poll()
    records = ctl.dump()
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    dup = {k: n for k, n in watcher.counts.items() if n != 1}
    assert not dup, f"journaled more than once: {dup}"
    assert sum(1 for r in records if r["topic"] == big_topic) == (last == "oversize")
    assert all(r["mid"] > 0 for r in records), records    # QoS 1: the broker's packet ids
    assert len(records) == N + 1, [(r["seq"], r["topic"]) for r in records]
    assert daemon.stop(timeout=30) == 0


def test_redelivery_after_everything_was_stored_is_journaled_once(daemon, ingest_broker,
                                                                  private_postgres, build_dir,
                                                                  tmp_path):
    """The journal's last messages must outlive the checkpoint. A daemon
    killed after its sync, before its PUBACKs left, is started again while
    the broker is down: it stores the whole journal (the database's
    checkpoint reaches the journal's end) and stops. At the next start the
    journal's last segment is wholly behind the checkpoint, and the broker
    sends the unacknowledged messages again: the restarted daemon must
    recognise them from the journal's end (mqtt_recall), which is only
    there if that segment was kept. Deleted at the journal's open, the
    messages were journaled, and stored, a second time (seen as 6,017
    messages accounted for 6,000 in test_ratelimit's kill -9 test)."""
    from test_store import db_progress
    N = 5
    pg = private_postgres
    conf = daemon.write_config(daemon_config(tmp_path, ingest_broker,
                                             client_id="gridbridge-store-test", store_db=pg))
    ctl = ctl_for(build_dir, conf, daemon)
    start_daemon(daemon, conf, env={"GRIDBRIDGE_CRASH_AT": f"after_sync:{N}"},
                 timeout=READY_TIMEOUT)
    topic = "sac/c1/door/dev1/event"
    for seq in range(1, N + 1):
        ingest_broker.publish(topic, make_payload("stored", seq))
    assert daemon.wait(30) == -signal.SIGKILL, "the daemon did not kill itself after the sync"

    # the broker keeps what was not acknowledged in our session
    ingest_broker.stop()
    daemon.start(conf)
    daemon.wait_notify("READY=1", timeout=READY_TIMEOUT)
    deadline = time.monotonic() + INGEST_TIMEOUT
    while db_progress(pg) != (N, N):
        assert time.monotonic() < deadline, f"not stored: {db_progress(pg)}"
        assert daemon.running
        time.sleep(0.1)
    assert daemon.stop(timeout=30) == 0
    assert ctl.stat()["checkpoint_seq"] == N

    ingest_broker.start()
    start_daemon(daemon, conf, timeout=READY_TIMEOUT, subscribed=False)
    ingest_broker.publish(topic, make_payload("after", 1))
    while db_progress(pg)[1] < N + 1:
        assert time.monotonic() < deadline, f"the marker not stored: {db_progress(pg)}"
        assert daemon.running
        time.sleep(0.1)
    time.sleep(1.0)
    rows, checkpoint = db_progress(pg)
    assert (rows, checkpoint) == (N + 1, N + 1), \
        f"{rows} rows, checkpoint {checkpoint} for {N} messages and a marker: journaled twice"
    assert ctl.stat()["last_seq"] == N + 1
    assert daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 8. oversize messages


def test_oversize_message_is_journaled_without_payload(daemon, ingest_broker, build_dir,
                                                       tmp_path):
    conf = daemon.write_config(daemon_config(tmp_path, ingest_broker,
                                             mqtt={"max_message_size": "1K"}))
    ctl = ctl_for(build_dir, conf, daemon)
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)

    big_topic = "sac/c7/camera/cam1/event"
    ingest_broker.publish(big_topic, b"\xff" + b"A" * 4095)  # 4 KiB, not UTF-8 either
    watcher = JournalWatcher(ctl)
    deadline = time.monotonic() + 30
    while not watcher.records and time.monotonic() < deadline:
        watcher.poll()
        time.sleep(0.1)
    assert watcher.records, "the oversize message never reached the journal"
    big = watcher.records[0]
    assert big["oversize"] is True, big
    assert big["topic"] == big_topic, big
    assert big["payload_len"] == 4096, big
    assert "payload" not in big and "payload_base64" not in big, big
    assert big["qos"] == 1 and big["seq"] == 1, big
    assert daemon.running

    small_topic = "sac/c7/camera/cam1/heartbeat"
    ingest_broker.publish(small_topic, make_payload("small", 1))
    watcher.wait_for_keys({("small", 1)}, timeout=30, alive=lambda: daemon.running)
    small = watcher.records[-1]
    assert small["seq"] == 2, small
    assert_record_shape(small, small_topic)

    # just under the limit: whole
    edge = b'"' + b"e" * 998 + b'"'
    ingest_broker.publish(small_topic, edge)
    deadline = time.monotonic() + 30
    while len(watcher.records) < 3 and time.monotonic() < deadline:
        watcher.poll()
        time.sleep(0.1)
    assert len(watcher.records) == 3
    assert watcher.records[2]["oversize"] is False and \
        payload_bytes(watcher.records[2]) == edge, watcher.records[2]

    assert daemon.running
    assert daemon.stop(timeout=30) == 0


def test_binary_payload_is_dumped_as_base64(daemon, ingest_broker, build_dir, tmp_path):
    conf = daemon.write_config(daemon_config(tmp_path, ingest_broker))
    ctl = ctl_for(build_dir, conf, daemon)
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    payloads = [b"\x00\x01\xfe\xffbinary", "中文 ünïcode".encode(), b""]
    for p in payloads:
        ingest_broker.publish("sac/c1/peephole/p1/event", p)
    watcher = JournalWatcher(ctl)
    deadline = time.monotonic() + 30
    while len(watcher.records) < 3 and time.monotonic() < deadline:
        watcher.poll()
        time.sleep(0.1)
    recs = watcher.records
    assert len(recs) == 3, recs
    assert "payload_base64" in recs[0] and "payload" not in recs[0], recs[0]
    assert recs[1].get("payload") == "中文 ünïcode", recs[1]
    assert [payload_bytes(r) for r in recs] == payloads
    assert [r["payload_len"] for r in recs] == [len(p) for p in payloads]
    assert daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 6. disk cap


DISK_CAP = 256 * 1024


def run_to_disk_cap_and_back(daemon, broker, build_dir, tmp_path, messages=5000):
    """~300-byte messages into a 256K journal until ingest pauses; check the
    pause; raise disk_cap with SIGHUP; wait until every message is journaled.

    Returns (records before the resume, records at the end, stat while paused)."""
    text = daemon_config(tmp_path, broker,
                         journal={"segment_size": "64K", "disk_cap": "256K"})
    conf = daemon.write_config(text)
    ctl = ctl_for(build_dir, conf, daemon)
    watcher = JournalWatcher(ctl)
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)

    with PublisherGroup(broker, n=2, per_publisher=messages // 2, payload_size=300) as pubs:
        pubs.start()
        full = daemon.wait_log(JOURNAL_FULL, timeout=INGEST_TIMEOUT)
        f = logfmt.fields(full)
        assert f["level"] == "warn", full
        assert int(f["cap"]) == DISK_CAP, full
        # the broker keeps queueing for the persistent session: every message
        # is acknowledged to the publishers although the daemon does not read
        acked = pubs.finish(timeout=INGEST_TIMEOUT)
        assert acked == pubs.expected()

    # paused: nothing more is journaled, the size stays near the cap
    time.sleep(1.0)
    st1 = ctl.stat()
    time.sleep(1.0)
    st2 = ctl.stat()
    assert st2["records"] == st1["records"] < messages, (st1, st2)
    # appends are never refused: what was read with the last burst (at most
    # the broker's in-flight window) may go past the cap
    assert DISK_CAP <= st2["bytes"] < DISK_CAP + services.INGEST_BROKER_INFLIGHT * 1024, st2
    assert len(logfmt.select(daemon.lines, JOURNAL_FULL)) == 1
    before = ctl.dump()
    assert [r["seq"] for r in before] == list(range(1, len(before) + 1))

    mark = daemon.wait_quiet()
    daemon.write_config(text.replace("disk_cap = 256K", "disk_cap = 8M"))
    daemon.signal(signal.SIGHUP)
    room = daemon.wait_log(r'mod=journal msg="journal has room again, resuming ingest"',
                           since=mark, timeout=30)
    assert logfmt.fields(room)["level"] == "info", room
    watcher.wait_for_keys(acked, timeout=INGEST_TIMEOUT, alive=lambda: daemon.running)
    time.sleep(0.5)
    records = ctl.dump()
    assert records[:len(before)] == before, "records journaled before the pause changed"
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert set(key_counts(records)) == acked
    assert len(logfmt.select(daemon.lines, JOURNAL_FULL)) == 1
    assert daemon.running
    return before, records, st2


def test_disk_cap_pauses_ingest_and_sighup_resumes(daemon, ingest_broker, build_dir,
                                                   tmp_path, report):
    before, records, st = run_to_disk_cap_and_back(daemon, ingest_broker, build_dir, tmp_path)
    report(f"disk cap: paused at {st['records']} records / {st['bytes']} bytes; "
           f"{len(records)} records for 5000 messages in the end")
    assert daemon.stop(timeout=30) == 0


def test_disk_cap_pause_acknowledges_what_was_journaled(daemon, ingest_broker, build_dir,
                                                        tmp_path, report):
    """On reaching the cap the daemon syncs, sends the held PUBACKs and only then
    disconnects, cleanly: the broker must not send again, after the resume,
    what was journaled before the pause."""
    before, records, _ = run_to_disk_cap_and_back(daemon, ingest_broker, build_dir, tmp_path)
    again = key_counts(records[len(before):]) & key_counts(before)
    gone = [x for x in ingest_broker.log_path.read_text().splitlines()
            if re.search(r"Client gridbridge-test (disconnected|closed)", x)]
    report(f"pause at the cap: {len(again)} of {len(before)} messages journaled before it "
           f"were delivered again after resuming; broker: {gone[:1]}")
    assert not again, \
        f"{len(again)} message(s) journaled before the pause were delivered again after " \
        f"it (seqs {[r['seq'] for r in before if key_of(r) in again][:3]}...): their " \
        f"PUBACKs did not reach the broker. Broker log: {gone[:1]}"
    assert daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 9. MQTT v5, several filters, shared subscriptions


def test_mqtt5_persistent_session_and_several_filters(daemon, ingest_broker, build_dir,
                                                      tmp_path):
    conf = daemon.write_config(daemon_config(
        tmp_path, ingest_broker, subscribe=("sac/#", "other/+/x"),
        mqtt={"protocol": 5, "session_expiry": 4294967295, "receive_maximum": 20}))
    ctl = ctl_for(build_dir, conf, daemon)
    watcher = JournalWatcher(ctl)
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    assert re.search(r"New client connected from \S+ as gridbridge-test \(p5, c0,",
                     ingest_broker.log_path.read_text()), \
        "the broker did not see an MQTT v5 connection without clean start:\n" + \
        services.tail(ingest_broker.log_path)

    ingest_broker.publish("sac/c1/gate/g1/event", make_payload("v5", 1))
    ingest_broker.publish("nomatch/a/x", make_payload("v5", 99))
    ingest_broker.publish("other/a/x", make_payload("v5", 2))
    watcher.wait_for_keys({("v5", 1), ("v5", 2)}, timeout=30, alive=lambda: daemon.running)

    # the session (subscriptions and queue) outlives a stop: a message
    # published while the daemon is down is delivered when it is back
    assert daemon.stop(timeout=30) == 0
    ingest_broker.publish("sac/c1/gate/g1/event", make_payload("v5", 3))
    start_daemon(daemon, conf, timeout=READY_TIMEOUT, subscribed=False)
    watcher.wait_for_keys({("v5", 3)}, timeout=30, alive=lambda: daemon.running,
                          what="message published while the daemon was stopped")
    time.sleep(0.3)
    watcher.poll()
    assert [key_of(r) for r in watcher.records] == [("v5", 1), ("v5", 2), ("v5", 3)]
    assert daemon.stop(timeout=30) == 0


def test_shared_group_subscription(daemon, ingest_broker, build_dir, tmp_path):
    conf = daemon.write_config(daemon_config(tmp_path, ingest_broker,
                                             mqtt={"shared_group": "g1"}))
    ctl = ctl_for(build_dir, conf, daemon)
    watcher = JournalWatcher(ctl)
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)

    # a second member of group g1 on the same filter: each message goes to one
    # of the two, so the daemon sees only part of them iff it is in the group
    other = []
    lock, subscribed = threading.Lock(), threading.Event()

    def on_message(c, u, msg):
        with lock:
            other.append(key_of({"payload": msg.payload.decode()}))
    member = ingest_broker.client("other-member", on_message=on_message)
    try:
        member.on_subscribe = lambda *a: subscribed.set()
        member.subscribe("$share/g1/sac/#", qos=1)
        assert subscribed.wait(5)
        sent = {("shared", s) for s in range(1, 21)}
        for _, s in sorted(sent):
            ingest_broker.publish("sac/c2/barrier/b1/event", make_payload("shared", s))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            watcher.poll()
            with lock:
                got = set(watcher.counts) | set(other)
            if got >= sent:
                break
            time.sleep(0.2)
    finally:
        member.disconnect()
        member.loop_stop()
    mine = set(watcher.counts)
    assert mine | set(other) == sent, describe_missing(sent - mine - set(other))
    assert not mine & set(other), \
        f"delivered to both the daemon and the other group member: {sorted(mine & set(other))}"
    assert mine, "the daemon journaled none of the messages to its shared subscription"
    assert other, "the other member of $share/g1 got nothing: is the daemon in group g1?"
    assert daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 10. the sync delay: a quiet moment's messages share one fdatasync


def sync_messages(admin_port: int) -> tuple[float, float]:
    """(fdatasyncs, messages they made durable) from the daemon's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    got = {}
    for name in ("count", "sum"):
        m = re.search(rf"^gridbridge_journal_sync_messages_{name} (\S+)$", text, re.M)
        assert m, f"no gridbridge_journal_sync_messages_{name} on /metrics"
        got[name] = float(m.group(1))
    return got["count"], got["sum"]


def with_admin(conf_text: str) -> tuple[str, int]:
    port = services.free_port()
    return conf_text + f"\n[admin]\nlisten = 127.0.0.1:{port}\n", port


@pytest.mark.parametrize("delay_ms", [0, 1000])
def test_sync_delay_gathers_messages_that_come_apart(daemon, ingest_broker, build_dir,
                                                     tmp_path, delay_ms):
    """Four messages 50 ms apart, each alone on the socket when it comes: with
    [journal] sync_delay_ms = 0 each has its own fdatasync; with 1000 the
    first waits, unacknowledged, and one fdatasync covers all four."""
    text, port = with_admin(daemon_config(tmp_path, ingest_broker,
                                          journal={"sync_delay_ms": delay_ms}))
    conf = daemon.write_config(text)
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    watcher = JournalWatcher(ctl_for(build_dir, conf, daemon))
    syncs0, msgs0 = sync_messages(port)

    c = ingest_broker.client()
    try:
        for seq in range(4):
            c.publish("sac/c1/door/dev1/event", make_payload("apart", seq), qos=1)
            time.sleep(0.05)
    finally:
        c.disconnect()
        c.loop_stop()
    watcher.wait_for_keys({("apart", s) for s in range(4)}, timeout=30,
                          alive=lambda: daemon.running)
    syncs, msgs = sync_messages(port)
    assert msgs - msgs0 == 4, (syncs0, msgs0, syncs, msgs)
    if delay_ms == 0:
        assert syncs - syncs0 >= 3, f"{syncs - syncs0:.0f} fdatasyncs for 4 messages 50 ms apart"
    else:
        assert syncs - syncs0 == 1, f"{syncs - syncs0:.0f} fdatasyncs for 4 messages in 150 ms"
    assert daemon.stop(timeout=30) == 0


def test_sync_delay_shrinks_at_a_steady_rate(daemon, ingest_broker, build_dir, tmp_path):
    """At a steady 1,000 messages a second each read of the socket finds a
    message or two, fewer than sync_delay_rows (10). Waiting the whole
    sync_delay_ms (1 s) each time would hold every message up to a second;
    the daemon waits only as long as about 10 messages take at the rate it
    sees, so one fdatasync covers about 10, not about 1,000."""
    text, port = with_admin(daemon_config(tmp_path, ingest_broker,
                                          journal={"sync_delay_ms": 1000}))
    conf = daemon.write_config(text)
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    watcher = JournalWatcher(ctl_for(build_dir, conf, daemon))

    with PublisherGroup(ingest_broker, n=2, per_publisher=1500, rate=1000) as group:
        group.start()
        watcher.wait_for_keys(group.expected(), timeout=INGEST_TIMEOUT,
                              alive=lambda: daemon.running)
    syncs, msgs = sync_messages(port)
    assert msgs == 3000, (syncs, msgs)
    assert msgs / syncs <= 100, \
        f"{msgs:.0f} messages in {syncs:.0f} fdatasyncs at 1,000/s: the wait did not shrink"
    assert daemon.stop(timeout=30) == 0


def test_kill_during_the_sync_delay_then_broker_redelivers(daemon, ingest_broker, build_dir,
                                                           tmp_path):
    """A message waiting for company is neither durable nor acknowledged: a
    daemon killed then finds it again from the broker, journaled once."""
    text, _ = with_admin(daemon_config(tmp_path, ingest_broker,
                                       journal={"sync_delay_ms": 1000}))
    conf = daemon.write_config(text)
    ctl = ctl_for(build_dir, conf, daemon)
    watcher = JournalWatcher(ctl)
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    ingest_broker.publish("sac/c1/door/dev3/event", make_payload("held", 1))
    time.sleep(0.3)
    daemon.kill()
    watcher.poll()
    assert ("held", 1) not in watcher.counts, "journaled before its wait was over"

    start_daemon(daemon, conf, timeout=READY_TIMEOUT, subscribed=False)
    watcher.wait_for_keys({("held", 1)}, timeout=30, alive=lambda: daemon.running,
                          what="after the kill")
    time.sleep(1.5)
    watcher.poll()
    assert watcher.counts[("held", 1)] == 1, watcher.counts
    assert daemon.stop(timeout=30) == 0
