"""SIGHUP: every reloadable key changes what the running daemon does.

Each test changes keys in the file, sends SIGHUP and watches the daemon's
behaviour change (a line saying "setting changed" is not enough):

  * [daemon] log_level: debug lines appear, then info lines go;
  * [daemon] log_rate_burst, log_rate_interval: how many repeated warnings
    are printed before the rest are counted;
  * [journal] disk_cap: below the journal's size, ingest pauses (nothing
    more is journaled); raised again, the waiting messages are journaled;
  * [decode] max_clock_skew: an event that was clock_skewed is not;
  * [decode] repeat_window: 0 makes an identical time-less report a new
    event.

test_every_reloadable_key_is_covered reads the key table in daemon/config.c:
a key made reloadable needs a test here.
"""

from __future__ import annotations

import re
import signal
import time

import logfmt
import services
from ingest import JournalCtl, daemon_config, start_daemon
from test_exactly_once import (STORE_READY, access_event, config, publish_all, query, scalar,
                               wait_stored, wait_until)

# The reloadable keys and the test that watches each take effect.
COVERED = {
    ("daemon", "log_level"): "test_reload_applies_log_level",
    ("daemon", "log_rate_burst"): "test_reload_applies_log_rate_keys",
    ("daemon", "log_rate_interval"): "test_reload_applies_log_rate_keys",
    ("journal", "disk_cap"): "test_reload_applies_journal_disk_cap",
    ("decode", "max_clock_skew"): "test_reload_applies_decode_keys",
    ("decode", "repeat_window"): "test_reload_applies_decode_keys",
}

DEBUG = "<7>level=debug "
RELOADED = logfmt.Match(msg="configuration reloaded")


def reloadable_keys() -> set[tuple[str, str]]:
    """(section, name) of every row of config_keys[] marked .reloadable = true."""
    text = (services.REPO_ROOT / "daemon" / "config.c").read_text()
    table = text[text.index("const struct config_key config_keys[] = {"):]
    table = table[:table.index("\n};\n")]
    keys = set()
    for row in table.split("{ .section = ")[1:]:
        m = re.match(r'"([^"]+)", \.name = "([^"]+)"', row)
        assert m, row[:80]
        if ".reloadable = true" in row:
            keys.add((m.group(1), m.group(2)))
    return keys


def reload(daemon, conf, text: str, wait_for=RELOADED) -> int:
    """Write `text`, SIGHUP, wait for `wait_for`; the index of the first new line."""
    conf.write_text(text)
    mark = len(daemon.lines)
    daemon.signal(signal.SIGHUP)
    daemon.wait_log(wait_for, timeout=10, since=mark)
    return mark


def journal_config(tmp_path, mosquitto, log_level: str = "info", disk_cap: str = "8G") -> str:
    """No database: the journal keeps every record; small segments roll often."""
    return daemon_config(tmp_path, mosquitto, subscribe=("sac/#",), log_level=log_level,
                         journal={"segment_size": "64K", "disk_cap": disk_cap})


def messages(first: int, n: int) -> list[tuple[str, bytes]]:
    return [(f"sac/c/access/d{i}/event", b"%06d" % i + b"x" * 4090)
            for i in range(first, first + n)]


def wait_records(ctl: JournalCtl, n: int, daemon) -> None:
    wait_until(lambda: ctl.stat()["records"] >= n, 30, f"{n} journal records", daemon,
               interval=0.2)


def test_every_reloadable_key_is_covered():
    keys = reloadable_keys()
    assert keys, "no reloadable key found in daemon/config.c"
    assert keys == set(COVERED), (f"reloadable keys without a test here: "
                                  f"{sorted(keys - set(COVERED))}; covered keys no longer "
                                  f"reloadable: {sorted(set(COVERED) - keys)}")


def test_reload_applies_log_level(daemon, mosquitto, build_dir, tmp_path):
    """info -> debug: the journal's debug lines (segment created) appear;
    debug -> error: the info lines (configuration reloaded) are gone."""
    text = journal_config(tmp_path, mosquitto, log_level="info")
    conf = daemon.write_config(text)
    ctl = JournalCtl(build_dir, conf=conf)
    start_daemon(daemon, conf)
    publish_all(mosquitto, messages(0, 40))       # 160K: segments roll at 64K
    wait_records(ctl, 40, daemon)
    assert not [x for x in daemon.lines if x.startswith(DEBUG)]

    mark = reload(daemon, conf, text.replace("log_level = info", "log_level = debug"))
    publish_all(mosquitto, messages(40, 40))
    daemon.wait_log(r'^<7>level=debug mod=journal msg="segment created"', timeout=30,
                    since=mark)

    # At error, the reload's own closing info line is not printed: wait for
    # the daemon to be ready again instead, then for the next records. What
    # the reload logs before it applies the level is still at debug.
    notified = len(daemon.notifications)
    conf.write_text(text.replace("log_level = info", "log_level = error"))
    mark = len(daemon.lines)
    daemon.signal(signal.SIGHUP)
    daemon.wait_notify("READY=1", timeout=10, since=notified)
    publish_all(mosquitto, messages(80, 40))
    wait_records(ctl, 120, daemon)
    time.sleep(0.3)
    late = daemon.lines[mark:]
    level_changed = logfmt.Match(msg="setting changed", key="log_level")
    applied = [i for i, x in enumerate(late) if level_changed(x)]
    assert applied, late
    after = late[applied[0] + 1:]
    assert not logfmt.select(after, RELOADED), after
    assert not [x for x in after if re.match(r"<[5-7]>", x)], after
    assert daemon.stop() == 0


def test_reload_applies_journal_disk_cap(daemon, mosquitto, build_dir, tmp_path):
    """A cap under the journal's size pauses ingest: messages published then
    are not journaled. Raised again, ingest resumes and they are."""
    text = journal_config(tmp_path, mosquitto)
    conf = daemon.write_config(text)
    ctl = JournalCtl(build_dir, conf=conf)
    start_daemon(daemon, conf)
    publish_all(mosquitto, messages(0, 40))
    wait_records(ctl, 40, daemon)

    mark = reload(daemon, conf, text.replace("disk_cap = 8G", "disk_cap = 64K"))
    # The daemon finds the journal full at its next turn: when it reads
    # this message (then journaled before it pauses), or before it comes
    # (the once-a-second check, the end of a sync delay's wait): then the
    # broker keeps it for us with the rest.
    publish_all(mosquitto, messages(40, 1))
    daemon.wait_log(r'msg="journal full, pausing ingest"', timeout=30, since=mark)
    daemon.wait_log(r'msg="paused, disconnected from broker"', timeout=30, since=mark)
    paused_at = ctl.stat()["records"]
    assert paused_at in (40, 41), paused_at
    publish_all(mosquitto, messages(41, 10))        # the broker keeps them for us
    time.sleep(1.0)
    assert ctl.stat()["records"] == paused_at, "ingest went on over the reloaded disk_cap"

    mark = reload(daemon, conf, text)
    daemon.wait_log(r'msg="journal has room again, resuming ingest"', timeout=30, since=mark)
    wait_records(ctl, 51, daemon)
    assert ctl.stat()["records"] == 51
    assert daemon.stop() == 0


def test_reload_applies_decode_keys(daemon, mosquitto, private_postgres, tmp_path):
    """[decode] max_clock_skew and repeat_window: the records decoded after
    SIGHUP use the new values."""
    pg = private_postgres
    conf = daemon.write_config(config(tmp_path, mosquitto, pg, decode={"repeat_window": 600}))
    text = conf.read_text()
    start_daemon(daemon, conf)
    daemon.wait_log(STORE_READY, timeout=30)
    now = int(time.time())

    def skewed(n):   # an event 10 minutes off the receive time
        return access_event(n, t=now - 600 - n)

    publish_all(mosquitto, [skewed(1), ("shellies/door-9/sensor/state", b"open")])
    wait_stored(pg, daemon, 2)
    mark = reload(daemon, conf, text.replace("max_clock_skew = 300", "max_clock_skew = 3600")
                  .replace("repeat_window = 600", "repeat_window = 0"))
    changed = logfmt.select(daemon.lines[mark:], msg="setting changed")
    assert logfmt.select(changed, key="max_clock_skew"), changed
    assert logfmt.select(changed, key="repeat_window"), changed
    publish_all(mosquitto, [skewed(2), ("shellies/door-9/sensor/state", b"open")])
    wait_stored(pg, daemon, 4)
    rows = query(pg, "SELECT clock_skewed FROM events WHERE device_class = 'access_gate'"
                     " ORDER BY journal_seq")
    assert rows == [(True,), (False,)], rows
    assert scalar(pg, "SELECT count(*) FROM events WHERE device_id = 'door-9'"
                  " AND vendor <> 'gridbridge'") == 2
    assert daemon.stop() == 0


def test_reload_applies_log_rate_keys(daemon, mosquitto, tmp_path):
    """[daemon] log_rate_burst and log_rate_interval: an oversize message
    logs a warning each, rate-limited per kind of line."""
    conf = daemon.write_config(daemon_config(
        tmp_path, mosquitto, subscribe=("sac/#",), mqtt={"max_message_size": 1024}))
    text = conf.read_text()
    conf.write_text(text.replace("[daemon]\n", "[daemon]\nlog_rate_burst = 3\n"
                                 "log_rate_interval = 3600\n", 1))
    start_daemon(daemon, conf)
    big = b"x" * 2048
    over = logfmt.Match(msg="message over max_message_size")
    publish_all(mosquitto, [("sac/c/access/d/event", big)] * 10)
    time.sleep(0.5)
    assert len(logfmt.select(daemon.lines, over)) == 3
    mark = reload(daemon, conf, text.replace("[daemon]\n", "[daemon]\nlog_rate_burst = 100\n"
                                             "log_rate_interval = 1\n", 1))
    time.sleep(1.1)
    publish_all(mosquitto, [("sac/c/access/d/event", big)] * 10)
    wait_until(lambda: len(logfmt.select(daemon.lines[mark:], over)) >= 10, 10,
               "10 more oversize warnings", daemon)
    assert daemon.stop() == 0
