"""The daemon's log lines, read back: one parser and one matcher for every test.

gridbridged writes one logfmt line per event on stderr (daemon/log.c):

    <6>level=info mod=store msg="batch committed" rows=500 ms=14

    parse(line)       (priority, fields), strict: a line log.c could not have
                      written raises ValueError
    fields(line)      the fields alone
    check(line)       fields of a line with the daemon's shape: level, mod, msg
                      first, the priority that of the level, every value
                      quoted exactly where log.c would quote it
    format_line(prio, fields)  the line log.c writes for these fields
    Match(mod=, msg=, level=, key=value...)
                      a predicate on lines, for Daemon.wait_log() and select();
                      a line that starts like a log line (<N>) but does not
                      parse raises, it is never silently "no match"
    select(lines, match)  the lines a Match accepts; select(lines, mod=, ...)
                      the same without a Match of one's own

Standard library only.
"""

from __future__ import annotations

import re
from typing import Iterable

LEVEL_PRIORITY = {"debug": 7, "info": 6, "notice": 5, "warn": 4, "error": 3}

# log.h: LOG_LINE_MAX; log.c cuts the body LINE_RESERVE bytes before it and
# appends TRUNCATED.
LOG_LINE_MAX = 4096
LINE_RESERVE = 16
TRUNCATED = " truncated=1"

_PRIORITY = re.compile(r"<([0-7])>")
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_.\-]*)=")
_KEY_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_HEX = re.compile(r"[0-9a-f]{2}")


def _needs_quotes(c: str) -> bool:
    """log.c needs_quotes(), for one character."""
    return c <= " " or c in '="\\\x7f'


def _quoted(text: str, i: int, key: str, cut: bool) -> tuple[str, int]:
    """The value of a quoted field whose opening quote is at i - 1, and the
    index after its closing quote. With cut, text may end inside the value
    (and inside an escape): the value as far as it goes."""
    n, buf = len(text), []
    while True:
        if i >= n:
            if cut:
                return "".join(buf), n
            raise ValueError(f"unterminated quoted value for {key!r}")
        c = text[i]
        if c == '"':
            return "".join(buf), i + 1
        if c == "\\":
            e = text[i + 1:i + 2]
            if e in _ESCAPES:
                buf.append(_ESCAPES[e])
                i += 2
                continue
            if e not in ("", "x"):
                raise ValueError(f"bad escape \\{e} in {key!r}")
            if i + 4 > n:
                i = n  # cut inside the escape
                continue
            if not _HEX.fullmatch(text, i + 2, i + 4):
                raise ValueError(f"bad escape {text[i:i + 4]!r} in {key!r}")
            ch = chr(int(text[i + 2:i + 4], 16))
            # log.c writes \xNN only for what has no shorter escape
            if not (ch < " " or ch == "\x7f") or ch in "\n\r\t":
                raise ValueError(f"needless escape {text[i:i + 4]!r} in {key!r}")
            buf.append(ch)
            i += 4
            continue
        if c < " " or c == "\x7f":
            raise ValueError(f"raw control character {c!r} in {key!r}")
        buf.append(c)
        i += 1


def _fields(text: str, i: int, cut: bool) -> dict[str, str]:
    """key=value pairs of text from i on. With cut, text may end anywhere: a
    value cut short is kept as far as it goes, a key cut short is dropped."""
    n, fields = len(text), {}
    if i == n:
        raise ValueError("no fields")
    while i < n:
        km = _KEY.match(text, i)
        if not km:
            if cut and _KEY_PART.fullmatch(text, i):
                break
            raise ValueError(f"expected key= at column {i}")
        key, i = km.group(1), km.end()
        if key in fields:
            raise ValueError(f"duplicate key {key!r}")
        if i < n and text[i] == '"':
            value, i = _quoted(text, i + 1, key, cut)
        else:
            j = text.find(" ", i)
            j = n if j < 0 else j
            value = text[i:j]
            if value == "" and not (cut and j == n):
                raise ValueError(f"empty value for {key!r} must be quoted")
            if any(_needs_quotes(c) for c in value):
                raise ValueError(f"value of {key!r} must be quoted")
            i = j
        fields[key] = value
        if i < n:
            if text[i] != " ":
                raise ValueError(f"expected a space after {key!r}")
            i += 1
            if i == n and cut:
                break
            if i == n or text[i] == " ":
                raise ValueError("stray space")
    return fields


def _cut_at_limit(head: str) -> bool:
    """Whether head is as long as log.c's longest body (so TRUNCATED is its mark).

    Bytes that are not UTF-8 (one cut in half, say) were read as U+FFFD,
    which only makes the text longer.
    """
    return len(head.encode("utf-8")) >= LOG_LINE_MAX - LINE_RESERVE


def parse(line: str) -> tuple[int, dict[str, str]]:
    """Parse `<6>level=info mod=main msg="started" version=0.1.0 path="/a b"`.

    Returns (priority, fields), the fields in the order of the line, values
    unescaped. Strict: raises ValueError on a missing <N> prefix, a key
    without a value, an empty value or one that needed quotes unquoted, an
    escape or raw control character log.c does not write, a duplicate key or
    stray spaces. A line log.c cut at LOG_LINE_MAX ends in ` truncated=1`:
    its last field is kept as far as it goes, then truncated="1".
    """
    line = line.rstrip("\n")
    m = _PRIORITY.match(line)
    if not m:
        raise ValueError(f"no <N> priority prefix: {line!r}")
    prio = int(m.group(1))
    try:
        return prio, _fields(line, m.end(), cut=False)
    except ValueError as e:
        head = line[:-len(TRUNCATED)]
        if not (line.endswith(TRUNCATED) and _cut_at_limit(head)):
            raise ValueError(f"{e}: {line!r}") from None
    try:
        fields = _fields(head, m.end(), cut=True)
    except ValueError as e:
        raise ValueError(f"{e}: {line!r}") from None
    if "truncated" in fields:
        raise ValueError(f"duplicate key 'truncated': {line!r}")
    fields["truncated"] = "1"
    return prio, fields


def fields(line: str) -> dict[str, str]:
    """The fields of a log line (see parse)."""
    return parse(line)[1]


def check(line: str) -> dict[str, str]:
    """The fields of a line with the daemon's shape, else ValueError: the
    <N> prefix of its level, then level, mod and msg, msg quoted, every other
    value quoted and escaped exactly where log.c would (the line is what
    log.c writes for these fields)."""
    prio, f = parse(line)
    if list(f)[:3] != ["level", "mod", "msg"]:
        raise ValueError(f"not level, mod, msg first: {line!r}")
    if f["level"] not in LEVEL_PRIORITY:
        raise ValueError(f"unknown level: {line!r}")
    if prio != LEVEL_PRIORITY[f["level"]]:
        raise ValueError(f"priority <{prio}> is not that of the level: {line!r}")
    if not re.match(r'<\d>level=\S+ mod=\S+ msg="', line):
        raise ValueError(f"msg not quoted: {line!r}")
    if f.get("truncated") != "1" and format_line(prio, f) != line.rstrip("\n"):
        raise ValueError(f"not as log.c writes it ({format_line(prio, f)!r}): {line!r}")
    return f


def _format_value(value: str, quote: bool = False) -> str:
    """The value as log.c line_value() writes it (quote: always quoted, as msg)."""
    if value and not quote and not any(_needs_quotes(c) for c in value):
        return value
    out = []
    for c in value:
        if c in '"\\':
            out.append("\\" + c)
        elif c in "\n\r\t":
            out.append("\\" + "nrt"["\n\r\t".index(c)])
        elif c < " " or c == "\x7f":
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def format_line(prio: int, fields: dict[str, str]) -> str:
    """The line log.c writes for these fields, without the newline."""
    return f"<{prio}>" + " ".join(f"{k}={_format_value(v, quote=k == 'msg')}"
                                  for k, v in fields.items())


class Match:
    """Lines whose fields have these values exactly (mod, msg, level and any
    other key given). A line that is not a log line (no <N> prefix: a
    FILE:LINE configuration error, a sanitizer report) never matches; one
    with the prefix that does not parse raises ValueError, so that a broken
    line cannot hide from an assertion that no such line was logged."""

    def __init__(self, mod: str | None = None, msg: str | None = None,
                 level: str | None = None, **values: str):
        if level is not None and level not in LEVEL_PRIORITY:
            raise ValueError(f"unknown level {level!r}")
        want = {"level": level, "mod": mod, "msg": msg}
        self.want = {k: v for k, v in want.items() if v is not None}
        self.want.update({k: str(v) for k, v in values.items()})
        if not self.want:
            raise ValueError("Match() without fields matches every line")

    def __call__(self, line: str) -> bool:
        if not _PRIORITY.match(line):
            return False
        f = fields(line)
        return all(f.get(k) == v for k, v in self.want.items())

    def __repr__(self) -> str:
        return format_line(0, self.want)[len("<0>"):]


def select(lines: Iterable[str], match: Match | None = None, **want: str) -> list[str]:
    """The lines that match, in order: select(lines, Match(...)) or, the
    same, select(lines, mod=..., msg=..., key=value...)."""
    if (match is None) == (not want):
        raise TypeError("select() takes a Match or fields, one of the two")
    match = match or Match(**want)
    return [x for x in lines if match(x)]
