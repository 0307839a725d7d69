"""Forwarding never stalls, and what it sends is safe (issue 10, sections 6
and 7): against the real HTTPS endpoint (mTLS), PostgreSQL and mosquitto.

  5. a refusal whose reply is not UTF-8 (GBK, control bytes) or is cut
     inside a character is stored as valid text, and the row failed at once;
  6. Retry-After is capped by retry_after_max, and the cap is logged;
  7. http:// targets are refused unless allow_http = true, never with a
     token, and with it allowed events go out in clear without one.
"""

from __future__ import annotations

import collections
import json
import time

import pytest

import services
from test_forward import (FWD_READY, REFUSED, UNAVAILABLE, all_received, batch_ids,
                          fields_of, forward_config, lines_matching, need_pb2, one_alarm,
                          outbox_counts, outbox_row, start_forwarding, throwing_alarm,
                          wait_all_sent, wait_until)
from test_store import db_query, iso8

EXHAUSTED = r'mod=forward msg="events not sent, attempts exhausted"'
TOO_OLD = r'mod=forward msg="events not sent, too old"'
CAPPED = r'mod=forward msg="Retry-After capped"'

FAST_RETRY = {"retry_base_ms": 50, "retry_cap_ms": 400}


def passage(device: str, n: int) -> tuple[str, bytes]:
    """(topic, payload) of a Hikvision person passage (a routine event,
    priority 3) at device `device` (which the record carries as device_id)."""
    o = json.loads(dict((name, p) for name, _, p in services.device_fixtures())[
        "gate_person_access_hikvision"])
    o["dateTime"] = iso8(int(time.time()) - 60 + n % 60)
    o["AccessControllerEvent"]["serialNo"] = 100_000 + n
    return f"sac/340104050101/access/{device}/event", json.dumps(o).encode()


def device(n: int) -> str:
    return f"3401040501119{n:07d}"


POISON = device(4_242_424)


def routine_messages(n: int, poison_at: int | None = None) -> list[tuple[str, bytes]]:
    return [passage(POISON if i == poison_at else device(i), i) for i in range(n)]


def backlog(daemon, broker, pg, ep, tmp_path, messages, target=None):
    """Store `messages` with their outbox rows pending while the endpoint is
    down, stop the daemon, bring the endpoint back; returns the configuration
    for the next start (with `target`), which claims the backlog anew."""
    ep.close_port()
    # a long backoff: the rows are tried once at most while the port is closed
    conf = daemon.write_config(forward_config(
        tmp_path, broker, pg, ep, target={"retry_base_ms": 60_000, "retry_cap_ms": 60_000}),
        name="backlog.conf")
    start_forwarding(daemon, conf)
    for topic, payload in messages:
        broker.publish(topic, payload)
    wait_until(lambda: outbox_counts(pg).get("pending") == len(messages), 20,
               f"{len(messages)} rows pending")
    assert daemon.stop(timeout=30) == 0
    ep.reopen()
    return daemon.write_config(forward_config(tmp_path, broker, pg, ep, target=target))


def event_of_device(pg, dev: str) -> str:
    return db_query(pg, "SELECT id::text FROM events WHERE device_id = %s", dev)[0][0]


def accepted(ep) -> collections.Counter:
    """How often each event id was in a request the endpoint answered 2xx."""
    return collections.Counter(i for r in ep.requests
                               if r.response_status and 200 <= r.response_status < 300
                               for i in batch_ids(r))


# --------------------------------------------------------------------------
# 5. a refusal whose reply is not valid UTF-8


def stored_text(raw: bytes, cut: bool) -> str:
    """What last_error should hold for a reply `raw` (its first 512 bytes):
    UTF-8 kept, other bytes as \\xNN, control characters as spaces, a
    character cut at the end dropped."""
    b = raw[:512]
    if cut:
        for k in range(1, 4):
            try:
                b[len(b) - k:].decode("utf-8")
                break
            except UnicodeDecodeError:
                if b[len(b) - k] & 0xC0 == 0xC0:   # a lead byte without its tail
                    b = b[:len(b) - k]
                    break
    s = b.decode("utf-8", "backslashreplace")
    return "".join(" " if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F else c for c in s)


@pytest.mark.parametrize("case", ["gbk", "cut"])
def test_refusal_reply_not_utf8_stored_safely(daemon, mosquitto, private_postgres,
                                              https_endpoint, tmp_path, case):
    need_pb2()
    ep, pg = https_endpoint, private_postgres
    if case == "gbk":
        raw = "错误：社区未注册\n".encode("gbk") + b"\x00\x07ok\x1b[0m \xff\xc0\xaf end"
    else:
        raw = ("中" * 200).encode()      # 600 bytes: byte 512 is inside a character
    conf = daemon.write_config(forward_config(tmp_path, mosquitto, pg, ep))
    mark = start_forwarding(daemon, conf)
    ep.push_response(400, body=raw, headers={"Content-Type": "text/plain; charset=gbk"})
    eid = one_alarm(mosquitto, pg, daemon)
    row = wait_until(lambda: (r := outbox_row(pg, eid))["state"] == "failed" and r, 10,
                     "the refused row failed")
    want = stored_text(raw, cut=len(raw) > 512)
    assert row["last_error"] == want, (row["last_error"], want)
    if case == "cut":
        assert want == "中" * 170
    else:
        assert "\\xb4\\xed" in want and "\\xff" in want and "\x00" not in want, want
    assert row["last_status"] == 400 and row["attempts"] == 1, row
    assert not lines_matching(daemon, r'msg="outbox query failed"', mark)
    time.sleep(0.5)
    assert len(ep.requests) == 1
    assert daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 6. Retry-After capped


def test_retry_after_capped(daemon, mosquitto, private_postgres, https_endpoint, tmp_path):
    need_pb2()
    ep, pg = https_endpoint, private_postgres
    conf = daemon.write_config(forward_config(tmp_path, mosquitto, pg, ep,
                                              target={"retry_after_max": 1}))
    mark = start_forwarding(daemon, conf)
    ep.push_response(503, body="maintenance", headers={"Retry-After": "86400"})
    eid = one_alarm(mosquitto, pg, daemon)
    reqs = ep.wait_for_requests(2, timeout=6)
    gap = reqs[1].received_at - reqs[0].received_at
    assert 0.9 <= gap <= 2.5, f"retried {gap:.2f}s after Retry-After: 86400 (cap 1 s)"
    wait_until(lambda: outbox_row(pg, eid)["state"] == "sent", 5, "the row sent")
    line = daemon.wait_log(CAPPED, since=mark, timeout=1)
    f = fields_of(line)
    assert (f["level"], f["retry_after_s"], f["retry_in_ms"]) == ("warn", "86400", "1000"), line
    assert daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 7. plain HTTP


def http_target_config(tmp_path, url: str, extra: str = "") -> str:
    return (f"[daemon]\nstate_dir = {tmp_path / 'state'}\n\n"
            f"[forward.target p]\nformat = json\nurl = {url}\n{extra}\n"
            f"[forward.rule r]\ntarget = p\n")


@pytest.mark.parametrize("case", ["http", "http_allowed", "http_token", "https"])
def test_http_target_refused_unless_allowed(daemon, tmp_path, case):
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    url, extra = {
        "http": ("http://127.0.0.1:8080/events", ""),
        "http_allowed": ("http://127.0.0.1:8080/events", "allow_http = true\n"),
        "http_token": ("HTTP://127.0.0.1:8080/events",
                       f"allow_http = true\ntoken_file = {token}\n"),
        "https": ("https://127.0.0.1:8443/events", f"token_file = {token}\n"),
    }[case]
    conf = daemon.write_config(http_target_config(tmp_path, url, extra))
    r = daemon.run(["-n", "-c", conf.name])
    if case in ("http_allowed", "https"):
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode == 1, r
    lines = conf.read_text().splitlines()
    if case == "http":
        at = next(i for i, x in enumerate(lines, 1) if x.startswith("url ="))
        assert f"gridbridge.conf:{at}: [forward.target p] url: " in r.stderr, r.stderr
        assert "allow_http" in r.stderr, r.stderr
    else:
        at = next(i for i, x in enumerate(lines, 1) if x.startswith("token_file ="))
        assert f"gridbridge.conf:{at}: [forward.target p] token_file: " in r.stderr, r.stderr


def test_http_allowed_sends_without_token(daemon, mosquitto, private_postgres, tmp_path):
    need_pb2()
    pg = private_postgres
    ep = services.HttpsEndpoint(tmp_path / "http", plain=True).start()
    try:
        assert ep.url.startswith("http://")
        conf = daemon.write_config(forward_config(tmp_path, mosquitto, pg, ep,
                                                  target={"allow_http": "true"}))
        start_forwarding(daemon, conf)
        eid = one_alarm(mosquitto, pg, daemon)
        wait_until(lambda: outbox_row(pg, eid)["state"] == "sent", 10, "the alarm sent")
        assert all_received(ep)[eid] == 1
        assert all("authorization" not in r.headers for r in ep.requests)
        assert daemon.stop(timeout=30) == 0
    finally:
        ep.stop()
