"""Journal recovery at start: a torn tail (a crash in the middle of a write)
is truncated and logged; a damaged record in the middle is moved aside to
corrupt/, logged at error, and everything else is kept. The segment files
are edited here with the format from the spec (ingest.read_segment)."""

import os
import secrets
from pathlib import Path

import pytest

import logfmt
from ingest import (REC_MAGIC, JournalCtl, JournalWatcher, PublisherGroup, daemon_config,
                    encode_record, journal_dir_of, key_of, make_payload, read_segment,
                    segment_seed,
                    segment_files, start_daemon)

READY_TIMEOUT = 30.0
MESSAGES = 400  # ~330 bytes each: three 64K segments
RECOVERED = logfmt.Match(mod="journal", msg="recovered")
TORN = logfmt.Match(msg="torn tail truncated")    # any mod: the tests check it
MOVED = logfmt.Match(msg="corrupt record moved aside")  # any mod, likewise


def same_file(logged: str, path: Path) -> bool:
    """file= may be the full path or the name inside the journal directory."""
    p = Path(logged)
    return p == path or (not p.is_absolute() and p.name == path.name)


@pytest.fixture
def filled_journal(daemon, ingest_broker, build_dir, tmp_path):
    """A stopped daemon whose journal holds MESSAGES records in several segments.

    Returns (conf, ctl, records as dumped)."""
    conf = daemon.write_config(daemon_config(tmp_path, ingest_broker,
                                             journal={"segment_size": "64K"}))
    ctl = JournalCtl(build_dir, conf=conf, log_path=daemon.dir / "gridbridgectl.log")
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    watcher = JournalWatcher(ctl)
    with PublisherGroup(ingest_broker, n=1, per_publisher=MESSAGES, payload_size=300) as pubs:
        pubs.start()
        acked = pubs.finish(timeout=60)
    watcher.wait_for_keys(acked, timeout=60, alive=lambda: daemon.running)
    assert daemon.stop(timeout=30) == 0
    records = ctl.dump()
    assert len(records) == MESSAGES and records[-1]["seq"] == MESSAGES
    assert len(segment_files(journal_dir_of(tmp_path))) >= 3, \
        "expected several 64K segments: is segment_size applied?"
    return conf, ctl, records


def publish_one_more(daemon, broker, ctl, expect_seq):
    broker.publish("sac/c9/gate/dev9a/event", make_payload("after", 1))
    watcher = JournalWatcher(ctl)
    watcher.wait_for_keys({("after", 1)}, timeout=30, alive=lambda: daemon.running)
    rec = [r for r in watcher.records if key_of(r) == ("after", 1)]
    assert [r["seq"] for r in rec] == [expect_seq], rec


@pytest.mark.parametrize("tail", ["half_record", "junk"])
def test_torn_tail_is_truncated(daemon, ingest_broker, tmp_path, filled_journal, tail):
    conf, ctl, before = filled_journal
    last = segment_files(journal_dir_of(tmp_path))[-1]
    size = last.stat().st_size
    if tail == "half_record":
        rec = encode_record(MESSAGES + 1, "sac/c0/gate/dev0a/event",
                            make_payload("torn", 1, 300), seed=segment_seed(last))
        extra = rec[:len(rec) // 2]
    else:
        extra = secrets.token_bytes(37)
        while int.from_bytes(extra[:4], "little") == REC_MAGIC:
            extra = secrets.token_bytes(37)
    with open(last, "ab") as f:
        f.write(extra)
    if tail == "half_record":
        # gridbridgectl treats an incomplete last record as the end (it
        # reads journals that the daemon is writing)
        assert ctl.dump() == before
        assert ctl.stat()["records"] == MESSAGES

    start_daemon(daemon, conf, timeout=READY_TIMEOUT, subscribed=False)
    daemon.wait_log(RECOVERED, timeout=5)
    torn = [logfmt.fields(x) for x in logfmt.select(daemon.lines, TORN)]
    assert len(torn) == 1, daemon.lines
    f = torn[0]
    assert f["level"] == "warn" and f["mod"] == "journal", f
    assert same_file(f["file"], last), f
    assert int(f["offset"]) == size, f
    assert int(f["bytes"]) == len(extra), f
    rec = [logfmt.fields(x) for x in logfmt.select(daemon.lines, RECOVERED)]
    assert rec and int(rec[0]["records"]) == MESSAGES and \
        int(rec[0]["last_seq"]) == MESSAGES, daemon.lines
    assert last.stat().st_size == size, "the torn tail is still in the segment"

    assert ctl.dump() == before
    publish_one_more(daemon, ingest_broker, ctl, MESSAGES + 1)
    assert ctl.dump()[:MESSAGES] == before
    assert daemon.stop(timeout=30) == 0


def test_corrupt_record_in_the_middle_is_moved_aside(daemon, ingest_broker, tmp_path,
                                                     filled_journal):
    conf, ctl, before = filled_journal
    jdir = journal_dir_of(tmp_path)
    seg = segment_files(jdir)[0]  # not the last segment
    first_seq, recs, end = read_segment(seg)
    assert end == seg.stat().st_size and len(recs) > 20
    victim = recs[len(recs) // 2]
    pos = victim.payload_offset + len(victim.payload) // 2
    with open(seg, "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ 0x20]))
    damaged = seg.read_bytes()[victim.offset:victim.offset + victim.size]

    start_daemon(daemon, conf, timeout=READY_TIMEOUT, subscribed=False)
    daemon.wait_log(RECOVERED, timeout=5)
    moved = [logfmt.fields(x) for x in logfmt.select(daemon.lines, MOVED)]
    assert len(moved) == 1, daemon.lines
    f = moved[0]
    assert f["level"] == "error" and f["mod"] == "journal", f
    assert same_file(f["file"], seg), f
    assert int(f["offset"]) == victim.offset, f
    assert int(f["bytes"]) == victim.size, f
    aside = Path(f["to"])
    if not aside.is_absolute():
        aside = jdir / aside
    assert aside.parent == jdir / "corrupt", f
    assert aside.read_bytes() == damaged, "corrupt/ does not hold the damaged bytes"
    assert not logfmt.select(daemon.lines, TORN)

    # the segment was rewritten without it; everything else is readable
    _, recs_after, end = read_segment(seg)
    assert end == seg.stat().st_size, "the rewritten segment does not parse to its end"
    assert victim.seq not in [r.seq for r in recs_after]
    expected = [r for r in before if r["seq"] != victim.seq]
    assert ctl.dump() == expected, "records other than the damaged one changed or were lost"
    rec = [logfmt.fields(x) for x in logfmt.select(daemon.lines, RECOVERED)]
    assert rec and int(rec[0]["records"]) == MESSAGES - 1 and \
        int(rec[0]["last_seq"]) == MESSAGES, daemon.lines

    publish_one_more(daemon, ingest_broker, ctl, MESSAGES + 1)
    assert daemon.stop(timeout=30) == 0
    # and once more: the repaired journal opens without complaint
    start_daemon(daemon, conf, timeout=READY_TIMEOUT, subscribed=False)
    daemon.wait_log(RECOVERED, timeout=5)
    assert not logfmt.select(daemon.lines, MOVED) + logfmt.select(daemon.lines, TORN)
    assert os.listdir(jdir / "corrupt") == [aside.name]
    assert daemon.stop(timeout=30) == 0
