"""gridbridgectl devices and reports against a real PostgreSQL.

The schema is made by starting gridbridged once; the rows of `devices` and
`resident_reports` are written here directly, and every number the tool
prints is computed again here from those rows:

  - devices: the table (order, columns, times in UTC, '-' for nothing),
    each filter, --offline-since as a duration and as a time; the online
    rate per community and class (every device in the total, unknown ones
    not online, halves rounded up); --json, field by field and in order;
    names that need escaping or would break a line;
  - reports: on time (handled, or closed when never handled, by the
    deadline), late, open overdue, open in time, without a deadline,
    on_time_percent, the total; the default 30 days, --since as a duration
    and a time, --until, --community; --json;
  - the session's TimeZone changes nothing; a time with an offset is the
    same instant in UTC;
  - usage errors exit 2 and touch nothing; --help per command;
  - no schema, and a stopped database: exit 1, one line on stderr.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

import logfmt
import services
from ingest import daemon_config

UTC = datetime.timezone.utc
READY = logfmt.Match(mod="store", msg="ready")

# The instant the rows are written relative to, set by the `db` fixture
# (the rows and the expected values are made then, not at collection). The
# tool's now() is a few seconds later: no row is within minutes of a
# boundary that depends on it.
T0 = datetime.datetime.now(UTC).replace(microsecond=0)


def ago(**kw) -> datetime.datetime:
    return T0 - datetime.timedelta(**kw)


def later(**kw) -> datetime.datetime:
    return T0 + datetime.timedelta(**kw)


def iso(t: datetime.datetime | None) -> str | None:
    """How the tool prints a time: UTC, to the second (not rounded), Z."""
    return None if t is None else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the rows

# community, device, class, state, state_since, last_seen, battery, link,
# expected, first_seen, state_source, vendor, route
DEVICE_FIELDS = ("community", "device", "cls", "state", "since", "last_seen", "battery",
                 "link", "expected", "first_seen", "source", "vendor", "route")


def dev(community, device, cls, state, since, last_seen=None, battery=None, link=None,
        expected=False, first_seen=None, source="", vendor="", route=""):
    return dict(zip(DEVICE_FIELDS, (community, device, cls, state, since, last_seen, battery,
                                    link, expected, first_seen, source, vendor, route)))


def make_devices() -> list[dict]:
    return [
        # c1 access: 2 of 4 online, one offline for 5 hours, one declared and
        # never heard from
        dev("c1", "d02", "access", "online", ago(hours=3), ago(minutes=1), 80, 200,
            True, ago(days=20), "lwt", "tasmota", "access"),
        dev("c1", "d01", "access", "online", ago(days=2, seconds=0.4),
            ago(seconds=30, microseconds=999999), None, None, False, ago(days=30), "status",
            "hikvision", "access"),
        dev("c1", "d03", "access", "offline", ago(hours=5), ago(hours=5, minutes=1), 5, 12,
            True, ago(days=9), "lwt", "tasmota", "access"),
        dev("c1", "d04", "access", "unknown", ago(days=1), expected=True),
        # c1 camera: 1 of 3 online; offline for 30 minutes and for 3 days
        dev("c1", "cam1", "camera", "online", ago(hours=1), ago(minutes=2), None, 88,
            False, ago(days=3), "event", "dahua", "camera"),
        dev("c1", "cam2", "camera", "offline", ago(minutes=30), ago(minutes=31), None, None,
            False, ago(days=3), "timeout", "dahua", "camera"),
        dev("c1", "cam3", "camera", "offline", ago(days=3), ago(days=3, minutes=2), None, None,
            True, ago(days=40), "timeout", "dahua", "camera"),
        # c2: all online; none online (declared only); offline for 10 days
        dev("c2", "a1", "access", "online", ago(hours=7), ago(minutes=3), 100, 255, True,
            ago(days=1)),
        dev("c2", "s1", "smoke", "unknown", ago(days=4), expected=True),
        dev("c2", "s2", "smoke", "unknown", ago(days=4), expected=True),
        dev("c2", "x9", "camera", "offline", ago(days=10), ago(days=10), None, None, False,
            ago(days=11)),
        # A community name in UTF-8 and device names that need escaping in
        # JSON and would break a line of the table.
        dev("社区3", 'door"7\\', "access", "online", ago(hours=2), ago(minutes=4)),
        dev("社区3", "bad\nid\x1b[2J", "access", "offline", ago(hours=6), ago(hours=6)),
    ] + [
        # 1 of 16 online: 6.25%, printed 6.3 (rounded half up, not to even).
        dev("c4", "z%02d" % i, "sensor", "online" if i == 0 else
            "offline" if i % 2 else "unknown", ago(hours=12)) for i in range(16)]


def rep(community, report, opened, deadline=None, handled=None, closed=None):
    return dict(community=community, report=report, opened=opened, deadline=deadline,
                handled=handled, closed=closed)


# The fixed period of the --since/--until tests: 10 to 2 days before T0.
def since_fixed() -> datetime.datetime:
    return ago(days=10)


def until_fixed() -> datetime.datetime:
    return ago(days=2)


def make_reports() -> list[dict]:
    since, until = since_fixed(), until_fixed()
    return [
        # r1: on time (handled before, handled exactly at the deadline, closed
        # before it without being handled, handled before and closed after)
        rep("r1", "1", ago(days=5), ago(days=4), handled=ago(days=4, hours=1)),
        rep("r1", "2", ago(days=5), ago(days=4), handled=ago(days=4)),
        rep("r1", "3", ago(days=1), ago(hours=20), closed=ago(hours=21)),
        rep("r1", "4", ago(days=1), ago(hours=20), handled=ago(hours=23), closed=ago(hours=1)),
        # late: handled after the deadline (closed before it: handled counts),
        # closed after it without being handled
        rep("r1", "5", ago(days=3), ago(days=2), handled=ago(days=1), closed=ago(days=2, hours=1)),
        rep("r1", "6", ago(days=3), ago(days=2), closed=ago(days=1, hours=12)),
        # open and overdue; open within the deadline
        rep("r1", "7", ago(hours=6), ago(hours=1)),
        rep("r1", "8", ago(hours=2), later(hours=2)),
        # no deadline: handled, and still open
        rep("r1", "9", ago(days=6), None, handled=ago(days=5)),
        rep("r1", "10", ago(hours=3)),
        # outside the default 30 days
        rep("r1", "old", ago(days=31), ago(days=30), handled=ago(days=29)),
        # never seen opened: in no period
        rep("r1", "noopen", None, ago(days=1)),
        # r2: the fixed period's edges: opened exactly at --since counts,
        # exactly at --until does not
        rep("r2", "a", since, since + datetime.timedelta(hours=4),
            handled=since + datetime.timedelta(hours=5)),
        rep("r2", "b", until, until + datetime.timedelta(hours=4),
            handled=until + datetime.timedelta(hours=1)),
        rep("r2", "c", ago(days=8), ago(days=7)),
        rep("r2", "d", ago(days=29), ago(days=28), handled=ago(days=28, hours=1)),
        # r3: nothing with a deadline decided yet: the rate is '-' / null
        rep("r3", "x", ago(hours=1), later(days=1)),
        rep("r3", "y", ago(hours=1)),
    ]


DEVICES: list[dict] = []
REPORTS: list[dict] = []


# ---- what the tool should say, from the rows

def percent(n: int, d: int) -> Decimal | None:
    if d == 0:
        return None
    return (Decimal(100 * n) / Decimal(d)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def device_key(d):
    return (d["community"].encode(), d["cls"].encode(), d["device"].encode())


def want_devices(state=None, cls=None, community=None, offline_before=None):
    out = []
    for d in sorted(DEVICES, key=device_key):
        if state is not None and d["state"] != state:
            continue
        if cls is not None and d["cls"] != cls:
            continue
        if community is not None and d["community"] != community:
            continue
        if offline_before is not None and not (d["state"] == "offline"
                                               and d["since"] <= offline_before):
            continue
        out.append(d)
    return out


def want_rates(cls=None, community=None):
    groups = {}
    for d in DEVICES:
        if (cls is not None and d["cls"] != cls) or \
                (community is not None and d["community"] != community):
            continue
        g = groups.setdefault((d["community"], d["cls"]),
                              {"online": 0, "offline": 0, "unknown": 0})
        g[d["state"]] += 1
    out = []
    for (c, k) in sorted(groups, key=lambda x: (x[0].encode(), x[1].encode())):
        g = groups[(c, k)]
        total = sum(g.values())
        out.append({"community": c, "class": k, **g, "total": total,
                    "online_percent": percent(g["online"], total)})
    return out


def categorise(r, now):
    if r["deadline"] is None:
        return "no_deadline"
    done = r["handled"] if r["handled"] is not None else r["closed"]
    if done is not None:
        return "on_time" if done <= r["deadline"] else "late"
    return "open_overdue" if now > r["deadline"] else "open_in_time"


COUNTS = ("opened", "on_time", "late", "open_overdue", "open_in_time", "no_deadline")


def want_reports(since, until=None, community=None, now=None):
    now = now or T0
    per = {}
    for r in REPORTS:
        if r["opened"] is None or r["opened"] < since or \
                (until is not None and r["opened"] >= until):
            continue
        if community is not None and r["community"] != community:
            continue
        c = per.setdefault(r["community"], dict.fromkeys(COUNTS, 0))
        c["opened"] += 1
        c[categorise(r, now)] += 1
    total = dict.fromkeys(COUNTS, 0)
    for c in per.values():
        for k in COUNTS:
            total[k] += c[k]
    rows = [{"community": k, **per[k]} for k in sorted(per, key=str.encode)]
    for x in rows + [total]:
        x["on_time_percent"] = percent(x["on_time"],
                                       x["on_time"] + x["late"] + x["open_overdue"])
    return rows, total


# ---- running the tool

def ctl(build_dir, conf, *args, env=None) -> subprocess.CompletedProcess:
    argv = [str(Path(build_dir) / "gridbridgectl"), "-c", str(conf), *args]
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=30, env=e)
    assert not any(m in r.stderr for m in services.SANITIZER_MARKERS), r.stderr
    return r


def ok(r) -> str:
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return r.stdout


DEVICE_HEAD = ["community", "device", "class", "state", "since", "last_seen", "battery",
               "link_quality", "expected"]
RATE_HEAD = ["community", "class", "online", "offline", "unknown", "total", "online_percent"]
REPORT_HEAD = ["community", "opened", "on_time", "late", "open_overdue", "open_in_time",
               "no_deadline", "on_time_percent"]


def shown(s: str) -> str:
    """A name as the table prints it: control characters as '?'."""
    return "".join("?" if ord(ch) < 0x20 or ord(ch) == 0x7f else ch for ch in s)


def device_cells(d) -> list[str]:
    def v(x):
        return "-" if x is None else str(x)
    return [shown(d["community"]), shown(d["device"]), d["cls"], d["state"], iso(d["since"]),
            v(iso(d["last_seen"])), v(d["battery"]), v(d["link"]),
            "yes" if d["expected"] else "no"]


def rate_cells(g) -> list[str]:
    return [g["community"], g["class"], str(g["online"]), str(g["offline"]),
            str(g["unknown"]), str(g["total"]), str(g["online_percent"])]


def check_devices_text(out: str, devices, rates):
    tables = out.split("\n\n")
    assert len(tables) == 2, out
    lines = tables[0].split("\n")
    assert lines[0].split() == DEVICE_HEAD
    assert [x.split() for x in lines[1:]] == [device_cells(d) for d in devices]
    lines = tables[1].rstrip("\n").split("\n")
    assert lines[0].split() == RATE_HEAD
    assert [x.split() for x in lines[1:]] == [rate_cells(g) for g in rates]


def device_json(d) -> dict:
    return {"type": "device", "community": d["community"], "device": d["device"],
            "class": d["cls"], "state": d["state"], "state_since": iso(d["since"]),
            "last_seen": iso(d["last_seen"]), "battery_percent": d["battery"],
            "link_quality": d["link"], "expected": d["expected"],
            "first_seen": iso(d["first_seen"]), "state_source": d["source"],
            "vendor": d["vendor"], "route": d["route"]}


def rate_json(g) -> dict:
    return {"type": "online_rate", **g}


def parse_json_lines(out: str) -> list[dict]:
    lines = out.split("\n")
    assert lines[-1] == ""
    return [json.loads(x, parse_float=Decimal) for x in lines[:-1]]


def check_json(got: list[dict], want: list[dict]):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert list(g) == list(w)      # the fields, in their order
        assert g == w


def report_cells(x, name) -> list[str]:
    p = x["on_time_percent"]
    return [name] + [str(x[k]) for k in COUNTS] + ["-" if p is None else str(p)]


PERIOD = re.compile(r"reports opened from (\S+Z)(?: to (\S+Z)| on), as of (\S+Z)$")


def check_reports_text(out: str, rows, total):
    lines = out.rstrip("\n").split("\n")
    m = PERIOD.match(lines[0])
    assert m, lines[0]
    assert lines[1].split() == REPORT_HEAD
    assert [x.split() for x in lines[2:]] == \
        [report_cells(x, x["community"]) for x in rows] + [report_cells(total, "(total)")]
    return m.groups()


def parse_time(s: str) -> datetime.datetime:
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# ---- fixtures

@pytest.fixture(scope="module")
def db(tmp_path_factory, build_dir):
    """A cluster with the schema (gridbridged started once), the rows above
    and a configuration for gridbridgectl: (postgres, config path)."""
    global T0
    base = tmp_path_factory.mktemp("ctl-derived")
    pg = services.Postgres(base / "postgres")
    d = services.Daemon(build_dir, base / "daemon")
    # No broker: the store makes the schema whether MQTT connects or not.
    broker = services.Mosquitto(base / "mosquitto")
    try:
        d.check_binary()
        pg.start()
        conf = d.write_config(daemon_config(base, broker, store_db=pg))
        d.start(conf)
        d.wait_log(READY, timeout=30)
        assert d.stop() == 0
        assert not d.sanitizer_reports(), d.sanitizer_reports()
        T0 = datetime.datetime.now(UTC).replace(microsecond=0)
        DEVICES[:] = make_devices()
        REPORTS[:] = make_reports()
        with pg.connect() as conn, conn.cursor() as cur:
            for x in DEVICES:
                cur.execute(
                    "INSERT INTO devices (community_id, device_id, device_class, state,"
                    " state_since, last_seen, battery_percent, link_quality, expected,"
                    " first_seen, state_source, vendor, route)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    tuple(x[k] for k in DEVICE_FIELDS))
            for r in REPORTS:
                cur.execute(
                    "INSERT INTO resident_reports (community_id, report_id, opened_at,"
                    " deadline, handled_at, closed_at) VALUES (%s, %s, %s, %s, %s, %s)",
                    (r["community"], r["report"], r["opened"], r["deadline"], r["handled"],
                     r["closed"]))
        yield pg, conf
    finally:
        d.close()
        pg.close()


# ---- devices

def test_devices_table_and_rates(db, build_dir):
    _, conf = db
    out = ok(ctl(build_dir, conf, "devices"))
    check_devices_text(out, want_devices(), want_rates())
    # The figures that matter, spelt out once more by hand.
    rates = {(g["community"], g["class"]): g for g in want_rates()}
    assert rates[("c1", "access")]["online_percent"] == Decimal("50.0")
    assert rates[("c1", "camera")]["online_percent"] == Decimal("33.3")
    assert rates[("c2", "smoke")]["online_percent"] == Decimal("0.0")
    assert rates[("c4", "sensor")]["online_percent"] == Decimal("6.3")
    assert "  6.3\n" in out and "bad?id?[2J" in out and "\x1b" not in out


def test_devices_json(db, build_dir):
    _, conf = db
    got = parse_json_lines(ok(ctl(build_dir, conf, "devices", "--json")))
    check_json(got, [device_json(d) for d in want_devices()] +
               [rate_json(g) for g in want_rates()])
    # Escaped, not mangled: the names come back as they were written.
    assert {x["device"] for x in got if x["community"] == "社区3" and "device" in x} == \
        {'door"7\\', "bad\nid\x1b[2J"}


# (id, a function of nothing giving the arguments and the filter they mean):
# times are T0's, known once the rows are written.
DEVICE_FILTERS = [
    ("state-offline", lambda: (["--state", "offline"], dict(state="offline"))),
    ("state-unknown", lambda: (["--state", "unknown"], dict(state="unknown"))),
    ("class", lambda: (["--class", "camera"], dict(cls="camera"))),
    ("community", lambda: (["--community", "c1"], dict(community="c1"))),
    ("all-three", lambda: (["--community", "c1", "--state", "online", "--class", "access"],
                           dict(community="c1", state="online", cls="access"))),
    ("offline-1h", lambda: (["--offline-since", "1h"], dict(offline_before=ago(hours=1)))),
    ("offline-2d", lambda: (["--offline-since", "2d"], dict(offline_before=ago(days=2)))),
    ("offline-300m-state", lambda: (["--offline-since", "300m", "--state", "offline"],
                                    dict(offline_before=ago(minutes=300), state="offline"))),
    ("offline-at", lambda: (["--offline-since", iso(ago(days=3))],
                            dict(offline_before=ago(days=3)))),
    ("offline-at-1s-before", lambda: (["--offline-since", iso(ago(days=3, seconds=1))],
                                      dict(offline_before=ago(days=3, seconds=1)))),
    ("no-such-community", lambda: (["--community", "nowhere"], dict(community="nowhere"))),
]


@pytest.mark.parametrize("case", [c for _, c in DEVICE_FILTERS],
                         ids=[i for i, _ in DEVICE_FILTERS])
def test_devices_filters(db, build_dir, case):
    _, conf = db
    args, filt = case()
    devices = want_devices(**filt)
    # The rates follow --community and --class only.
    rates = want_rates(cls=filt.get("cls"), community=filt.get("community"))
    check_devices_text(ok(ctl(build_dir, conf, "devices", *args)), devices, rates)
    got = parse_json_lines(ok(ctl(build_dir, conf, *args, "devices", "--json")))
    check_json(got, [device_json(d) for d in devices] + [rate_json(g) for g in rates])


def test_devices_filters_select(db, build_dir):
    """The filters' sets, by name, so that a wrong want_devices() shows."""
    _, conf = db

    def names(*args):
        got = parse_json_lines(ok(ctl(build_dir, conf, "devices", "--json", *args)))
        return [x["device"] for x in got if x["type"] == "device"]
    assert names("--offline-since", "1h", "--community", "c1") == ["d03", "cam3"]
    assert names("--offline-since", "4d") == ["x9"]
    assert names("--state", "unknown", "--community", "c2") == ["s1", "s2"]


def test_devices_times_are_utc_whatever_the_session(db, build_dir):
    _, conf = db
    base = ok(ctl(build_dir, conf, "devices"))
    assert ok(ctl(build_dir, conf, "devices", env={"PGTZ": "Asia/Shanghai"})) == base
    # A time with an offset is the same instant.
    t = ago(days=3).astimezone(datetime.timezone(datetime.timedelta(hours=8)))
    a = ok(ctl(build_dir, conf, "devices", "--offline-since", t.isoformat(),
               env={"PGTZ": "America/New_York"}))
    assert a == ok(ctl(build_dir, conf, "devices", "--offline-since", iso(ago(days=3))))
    assert [x.split()[1] for x in a.split("\n\n")[0].split("\n")[1:]] == ["cam3", "x9"]


# ---- reports

def test_reports_default_period(db, build_dir):
    _, conf = db
    out = ok(ctl(build_dir, conf, "reports"))
    rows, total = want_reports(ago(days=30))
    since, until, as_of = check_reports_text(out, rows, total)
    assert until is None
    now = parse_time(as_of)
    assert T0 <= now <= T0 + datetime.timedelta(minutes=2)
    assert parse_time(since) == now - datetime.timedelta(days=30)
    # By hand: r1 has 4 on time, 2 late, 1 overdue, 1 open in time, 2
    # without a deadline; on time 4 / 7.
    assert rows[0] == {"community": "r1", "opened": 10, "on_time": 4, "late": 2,
                       "open_overdue": 1, "open_in_time": 1, "no_deadline": 2,
                       "on_time_percent": Decimal("57.1")}
    assert rows[2]["on_time_percent"] is None

    got = parse_json_lines(ok(ctl(build_dir, conf, "reports", "--json")))
    as_of = got[-1]["as_of"]
    want = [{"type": "community", **x} for x in rows]
    want.append({"type": "total", **total, "since": iso(parse_time(as_of) -
                 datetime.timedelta(days=30)), "until": None, "as_of": as_of})
    check_json(got, want)
    assert abs(parse_time(as_of) - now) <= datetime.timedelta(minutes=1)


# (id, a function of nothing giving the arguments, since, until and the
# community they mean, and whether since is printed as given).
REPORT_PERIODS = [
    ("since-until", lambda: (["--since", iso(since_fixed()), "--until", iso(until_fixed())],
                             since_fixed(), until_fixed(), None, True)),
    ("with-offsets", lambda: (
        ["--since", since_fixed().strftime("%Y-%m-%dT%H:%M:%S+00:00"), "--until",
         until_fixed().astimezone(datetime.timezone(-datetime.timedelta(hours=5))).isoformat()],
        since_fixed(), until_fixed(), None, True)),
    ("since-community", lambda: (["--since", iso(since_fixed()), "--community", "r2"],
                                 since_fixed(), None, "r2", True)),
    ("community", lambda: (["--community", "r1"], ago(days=30), None, "r1", False)),
    ("since-12h", lambda: (["--since", "12h"], ago(hours=12), None, None, False)),
    ("since-40d", lambda: (["--since", "40d"], ago(days=40), None, None, False)),
    ("since-date", lambda: (["--since", since_fixed().strftime("%Y-%m-%d")],
                            since_fixed().replace(hour=0, minute=0, second=0), None, None,
                            True)),
    ("no-such-community", lambda: (["--community", "nowhere"], ago(days=30), None, "nowhere",
                                   False)),
]


@pytest.mark.parametrize("case", [c for _, c in REPORT_PERIODS],
                         ids=[i for i, _ in REPORT_PERIODS])
def test_reports_periods(db, build_dir, case):
    _, conf = db
    args, since, until, community, exact = case()
    rows, total = want_reports(since, until, community)
    got_since, got_until, as_of = check_reports_text(
        ok(ctl(build_dir, conf, "reports", *args, env={"PGTZ": "Europe/Berlin"})),
        rows, total)
    if exact:
        assert got_since == iso(since)
    assert got_until == iso(until)
    got = parse_json_lines(ok(ctl(build_dir, conf, "reports", "--json", *args)))
    want = [{"type": "community", **x} for x in rows]
    want.append({"type": "total", **total, "since": got[-1]["since"], "until": iso(until),
                 "as_of": got[-1]["as_of"]})
    check_json(got, want)


def test_reports_edges(db, build_dir):
    """Opened exactly at --since counts, exactly at --until does not; a
    report handled exactly at its deadline is on time."""
    _, conf = db
    got = parse_json_lines(ok(ctl(build_dir, conf, "reports", "--json", "--community", "r2",
                                  "--since", iso(since_fixed()),
                                  "--until", iso(until_fixed()))))
    assert got[0] == {"type": "community", "community": "r2", "opened": 2, "on_time": 0,
                      "late": 1, "open_overdue": 1, "open_in_time": 0, "no_deadline": 0,
                      "on_time_percent": Decimal("0.0")}
    got = parse_json_lines(ok(ctl(build_dir, conf, "reports", "--json", "--community", "r1",
                                  "--since", "5d")))
    # 1 and 2 (exactly at the deadline) were opened 5 days ago: a little
    # before the tool's now() - 5d, so not counted; 3 .. 8 and 10 are.
    assert got[0]["opened"] == 7 and got[0]["on_time"] == 2 and got[0]["late"] == 2
    got = parse_json_lines(ok(ctl(build_dir, conf, "reports", "--json", "--community", "r1",
                                  "--since", iso(ago(days=5)), "--until", iso(ago(days=4)))))
    assert got[0]["on_time"] == 2 and got[0]["opened"] == 2


# ---- usage and failures

@pytest.mark.parametrize("args", [
    ["devices", "--state", "broken"],
    ["devices", "--offline-since", "2x"],
    ["devices", "--offline-since", "h"],
    ["devices", "--offline-since", "-1h"],
    ["devices", "--offline-since", "yesterday"],
    ["devices", "--offline-since", "2026-13-01T00:00:00Z"],
    ["devices", "--offline-since", "1h", "--state", "online"],
    ["devices", "--since", "1d"],
    ["devices", "--until", "2026-11-01"],
    ["devices", "--target", "platform"],
    ["devices", "--from", "1"],
    ["devices", "extra"],
    ["devices", "--state"],
    ["devices", "--bogus"],
    ["reports", "--state", "online"],
    ["reports", "--class", "camera"],
    ["reports", "--offline-since", "1h"],
    ["reports", "--until", "2h"],
    ["reports", "--since", "soon"],
    ["reports", "--since", "2026-11-02", "--until", "2026-11-01T00:00:00Z"],
    ["reports", "--since", "2026-11-01", "--until", "2026-11-01"],
    ["outbox", "stat", "--json"],
    ["journal", "stat", "--community", "c1"],
])
def test_usage_errors_exit_2(db, build_dir, args):
    _, conf = db
    r = ctl(build_dir, conf, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == "" and r.stderr != ""


def test_help_per_command(db, build_dir):
    _, conf = db
    r = ctl(build_dir, conf, "devices", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: gridbridgectl [-c FILE] devices")
    assert "--offline-since" in r.stdout and "--until" not in r.stdout
    r = ctl(build_dir, conf, "-h", "reports")
    assert r.returncode == 0 and r.stdout.startswith("usage: gridbridgectl [-c FILE] reports")
    assert "on_time_percent" in r.stdout
    r = ctl(build_dir, conf, "--help")
    assert r.returncode == 0 and "  devices " in r.stdout and "  reports " in r.stdout


def test_unreadable_database_exits_1(private_postgres, build_dir, tmp_path):
    broker = services.Mosquitto(tmp_path / "mosquitto")
    conf = tmp_path / "gridbridge.conf"
    conf.write_text(daemon_config(tmp_path, broker, store_db=private_postgres))
    # No schema: the query fails.
    for cmd in (["devices"], ["reports", "--json"]):
        r = ctl(build_dir, conf, *cmd)
        assert r.returncode == 1 and r.stdout == ""
        assert re.fullmatch(r"gridbridgectl: query failed: .*relation .* does not exist.*\n",
                            r.stderr), r.stderr
    private_postgres.stop()
    for cmd in (["devices", "--json"], ["reports"]):
        r = ctl(build_dir, conf, *cmd)
        assert r.returncode == 1 and r.stdout == ""
        assert re.fullmatch(r"gridbridgectl: cannot connect to the database: [^\n]*\n",
                            r.stderr), r.stderr
