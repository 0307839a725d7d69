"""logfmt.py reads lines as daemon/log.c writes them (no daemon needed).

The lines marked "log.c" are the ones tests/unit/test_log.c expects the
daemon's formatter to write."""

import pytest

import logfmt
from logfmt import Match, check, fields, parse, select


def test_reads_fields_in_order():
    prio, f = parse(
        r'<6>level=info mod=main msg="started" version=0.1.0 path="/a b" '
        r'q="say \"hi\"" bs="a\\b" nl="x\ny" empty=""')
    assert prio == 6
    assert list(f)[:3] == ["level", "mod", "msg"]
    assert f == {"level": "info", "mod": "main", "msg": "started",
                 "version": "0.1.0", "path": "/a b", "q": 'say "hi"',
                 "bs": "a\\b", "nl": "x\ny", "empty": ""}


def test_reads_every_escape_log_c_writes():
    # log.c: path, q, e, nl, eq, ctl
    f = fields('<6>level=info mod=t msg="q" path="/a b" '
               'q="say \\"hi\\"\\\\" e="" nl="a\\nb" eq="k=v" ctl="x\\x01y"')
    assert f == {"level": "info", "mod": "t", "msg": "q", "path": "/a b",
                 "q": 'say "hi"\\', "e": "", "nl": "a\nb", "eq": "k=v", "ctl": "x\x01y"}
    assert fields(r'<6>level=info mod=t msg="a \"b\""')["msg"] == 'a "b"'   # log.c
    f = fields(r'<6>level=info mod=t msg="m" cr="\r" tab="a\tb" del="\x7f" esc="\x1b[0m"')
    assert (f["cr"], f["tab"], f["del"], f["esc"]) == ("\r", "a\tb", "\x7f", "\x1b[0m")


def test_reads_log_c_lines():
    assert parse('<3>level=error mod=main msg="cannot open" file=/x '
                 'error="No such file or directory"') == \
        (3, {"level": "error", "mod": "main", "msg": "cannot open", "file": "/x",
             "error": "No such file or directory"})
    assert fields('<6>level=info mod=t msg="n" a=-5 b=7 c=ff d=-9000000000 e=abc g=65535') \
        == {"level": "info", "mod": "t", "msg": "n", "a": "-5", "b": "7", "c": "ff",
            "d": "-9000000000", "e": "abc", "g": "65535"}
    assert fields('<4>level=warn mod=mqtt msg="connection failed" suppressed=4\n') == \
        {"level": "warn", "mod": "mqtt", "msg": "connection failed", "suppressed": "4"}


def test_equals_signs_and_spaces_only_inside_quotes():
    f = fields(r'<6>level=info mod=t msg="a = b" dsn="host=db port=5432" k="=" s=" "')
    assert f["msg"] == "a = b" and f["dsn"] == "host=db port=5432"
    assert f["k"] == "=" and f["s"] == " "
    assert list(f) == ["level", "mod", "msg", "dsn", "k", "s"]


def test_unicode_needs_no_quotes():
    # log.c quotes only bytes up to space, =, ", \ and DEL: UTF-8 goes as it is
    f = fields('<6>level=info mod=t msg="Zürich ✓" city=Zürich name="Ω \\"π\\"" x=\U0001f512')
    assert f["msg"] == "Zürich ✓" and f["city"] == "Zürich"
    assert f["name"] == 'Ω "π"' and f["x"] == "\U0001f512"
    # an invalid byte, read with errors="replace"
    assert fields('<6>level=info mod=t msg="m" v=a\ufffdb')["v"] == "a\ufffdb"


@pytest.mark.parametrize("line", [
    'level=info mod=main msg="x"',            # no priority
    '<6>',                                     # no fields
    '<6>level=info mod=main msg="x',          # unterminated quote
    '<6>level=info mod=main msg="x\\',        # unterminated escape
    '<6>level=info mod=main msg="x" k=',      # empty value not quoted
    '<6>level=info mod=main msg=a=b',         # '=' in a bare value
    '<6>level=info mod=main msg="x" k=a\\b',  # '\' in a bare value
    '<6>level=info mod=main msg="x" k=a"b',   # '"' in a bare value
    '<6>level=info mod=main msg="x" k=a\tb',  # control character in a bare value
    '<6>level=info mod=main msg="x" k="\\q"',  # unknown escape
    '<6>level=info mod=main msg="x" k="\\x4"',  # short \x escape
    '<6>level=info mod=main msg="x" k="\\x1B"',  # upper-case hex: log.c writes lower
    '<6>level=info mod=main msg="x" k="\\x41"',  # \x for what needs no escape
    '<6>level=info mod=main msg="x" k="\\x0a"',  # \x for what has a short escape
    '<6>level=info mod=main msg="x" k="a\tb"',  # raw control character in quotes
    '<6>level=info level=info',               # duplicate key
    '<6>level=info  mod=main',                # double space
    '<6>level=info mod=main msg="x" ',        # trailing space
    '<6>level=info mod=main msg="x"y',        # junk after a quoted value
    '<6>level=info junk',                     # key without '='
    '<6>level=info mod=main msg="x truncated=1',  # cut mark on a line not cut
])
def test_rejects_malformed_lines(line):
    with pytest.raises(ValueError):
        parse(line)


def cut_line(body: str) -> str:
    """What log.c writes for a body longer than it keeps: the first
    LOG_LINE_MAX - LINE_RESERVE bytes, then ` truncated=1`."""
    keep = logfmt.LOG_LINE_MAX - logfmt.LINE_RESERVE
    raw = body.encode()
    assert len(raw) > keep
    return raw[:keep].decode("utf-8", "replace") + logfmt.TRUNCATED


@pytest.mark.parametrize("tail, last", [
    ('big="' + "ab " * 2000 + '"', "big"),
    ('big="' + '\\"' * 3000 + '"', "big"),
    ('big="' + "\\x01" * 1500 + '"', "big"),
    ("big=" + "x" * 5000, "big"),
    ('big="' + "ü" * 3000 + '"', "big"),
    ("k" * 5000 + "=1", None),
], ids=["in quotes", "in escapes", r"in \x escapes", "in a bare value",
        "in a UTF-8 character", "in a key"])
def test_reads_cut_lines(tail, last):
    for shift in range(4):   # the cut falls on each byte of a 2-4 byte unit
        line = cut_line('<6>level=info mod=t msg="m" ' + "p" * (shift + 1) + "=1 " + tail)
        f = fields(line)
        assert f["truncated"] == "1" and f["msg"] == "m", line
        assert list(f)[-1] == "truncated"
        if last is not None:
            assert last in f and len(f[last]) > 1000, f


def test_reads_a_line_cut_at_a_field_boundary():
    keep = logfmt.LOG_LINE_MAX - logfmt.LINE_RESERVE
    head = '<6>level=info mod=t msg="m" v='
    head += "x" * (keep - len(head) - 3) + " w="
    f = fields(head + logfmt.TRUNCATED)
    assert f["w"] == "" and f["truncated"] == "1" and len(f["v"]) > 4000
    assert check(head + logfmt.TRUNCATED) == f


def test_check_wants_the_daemons_shape():
    assert check('<4>level=warn mod=mqtt msg="x" k=v') == \
        {"level": "warn", "mod": "mqtt", "msg": "x", "k": "v"}
    line = '<6>level=info mod=t msg="a \\"b\\"" q="say \\"hi\\"\\\\" e="" ctl="x\\x01y" u=Zürich'
    assert check(line)["ctl"] == "x\x01y"
    assert logfmt.format_line(*parse(line)) == line
    for bad in ['<6>mod=mqtt level=info msg="x"',     # order
                '<6>level=info mod=mqtt k=v msg="x"',
                '<6>level=loud mod=mqtt msg="x"',     # unknown level
                '<4>level=info mod=mqtt msg="x"',     # priority of another level
                '<6>level=info mod=mqtt msg=x',       # msg unquoted
                '<6>level=info mod="mqtt" msg="x"',   # quoted needlessly
                '<6>level=info mod=mqtt msg="x" k="v"']:
        with pytest.raises(ValueError):
            check(bad)


LINES = [
    '<6>level=info mod=mqtt msg="connected" host=127.0.0.1 port=1883',
    '/etc/gridbridge.conf:3: unknown key "x"',
    '<4>level=warn mod=mqtt msg="connection failed" reason="mod=mqtt msg=\\"connected\\""',
    '<6>level=info mod=store msg="connected"',
    "==1==ERROR: AddressSanitizer: heap-use-after-free",
    '<6>level=info mod=mqtt msg="connected" host=127.0.0.1 port=8883',
]


def test_match_compares_whole_fields():
    assert select(LINES, Match(mod="mqtt", msg="connected")) == [LINES[0], LINES[5]]
    assert select(LINES, Match(msg="connected")) == [LINES[0], LINES[3], LINES[5]]
    assert select(LINES, Match(mod="mqtt", msg="connected", port=8883)) == [LINES[5]]
    assert select(LINES, Match(level="warn")) == [LINES[2]]
    assert select(LINES, Match(msg="connect")) == []
    assert select(LINES, Match(mod="mqtt", msg="connected", level="warn")) == []
    assert select(LINES, Match(msg="connected", nosuchkey="")) == []
    assert Match(mod="mqtt")(LINES[2])
    assert select(LINES, mod="mqtt", msg="connected", port=8883) == [LINES[5]]
    with pytest.raises(TypeError):
        select(LINES, Match(mod="mqtt"), msg="connected")
    with pytest.raises(TypeError):
        select(LINES)


def test_match_raises_on_a_broken_log_line():
    broken = LINES + ['<6>level=info mod=mqtt msg="connected']
    with pytest.raises(ValueError, match="unterminated"):
        select(broken, Match(mod="store", msg="ready"))


def test_match_wants_fields():
    with pytest.raises(ValueError):
        Match()
    with pytest.raises(ValueError):
        Match(level="loud")


def test_match_says_what_it_wants_as_the_daemon_would_write_it():
    assert repr(Match(mod="store", msg="ready")) == 'mod=store msg="ready"'
    assert repr(Match(msg='a "b"', level="warn", lane="x y", n=3, e="")) == \
        'level=warn msg="a \\"b\\"" lane="x y" n=3 e=""'
