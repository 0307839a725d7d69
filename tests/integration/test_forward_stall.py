"""Forwarding never stalls, and what it sends is safe (issue 10, sections 6
and 7): against the real HTTPS endpoint (mTLS), PostgreSQL and mosquitto.

  1. a 4xx on a batch splits it until the one refused event is failed with
     the status and the reply; the other events of the batch are sent;
  2. an event the platform always answers with 5xx is split away from its
     batch and given up by max_attempts (failed, a reason, logged at error);
     the other events are sent, and the target is not reported down for it;
  3. alarms are claimed and sent while every routine batch fails (5xx, or a
     request that hangs past the timeout);
  4. max_age: a row that keeps failing is given up once older than it;
  5. a refusal whose reply is not UTF-8 (GBK, control bytes) or is cut
     inside a character is stored as valid text, and the row failed at once;
  6. Retry-After is capped by retry_after_max, and the cap is logged;
  7. http:// targets are refused unless allow_http = true, never with a
     token, and with it allowed events go out in clear without one.

Backlogs are made with the endpoint down and the daemon stopped, so that the
next start claims them together, as one batch (the lease is given back at
start).
"""

from __future__ import annotations

import collections
import json
import time

import pytest

import logfmt
import services
from test_forward import (FWD_READY, REFUSED, UNAVAILABLE, all_received, batch_ids,
                          forward_config, need_pb2, one_alarm, outbox_counts, outbox_row,
                          start_forwarding, throwing_alarm, wait_all_sent, wait_until)
from test_store import db_query, iso8

EXHAUSTED = logfmt.Match(mod="forward", msg="events not sent, attempts exhausted")
TOO_OLD = logfmt.Match(mod="forward", msg="events not sent, too old")
CAPPED = logfmt.Match(mod="forward", msg="Retry-After capped")

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
# 1. a 4xx finds the event at fault


def test_refused_event_found_in_its_batch(daemon, mosquitto, private_postgres,
                                          https_endpoint, tmp_path):
    need_pb2()
    ep, pg = https_endpoint, private_postgres
    n = 20
    conf = backlog(daemon, mosquitto, pg, ep, tmp_path, routine_messages(n, poison_at=7),
                   target={"batch_rows": 32})
    bad = event_of_device(pg, POISON)
    reply = '{"error":"invalid_event","detail":"unknown device"}'
    ep.answer_with(lambda req: {"status": 422, "body": reply}
                   if POISON.encode() in req.body else None)
    mark = start_forwarding(daemon, conf)
    wait_all_sent(pg, daemon, n, timeout=20, failed=1)

    row = outbox_row(pg, bad)
    assert (row["state"], row["last_status"], row["last_error"], row["claimed_by"]) == \
        ("failed", 422, reply, None), row
    first = ep.requests[0]
    assert len(batch_ids(first)) == n, "the backlog was not claimed as one batch"
    got = accepted(ep)
    assert set(got) == {r[0] for r in db_query(pg, "SELECT event_id::text FROM forward_outbox"
                                                   " WHERE state = 'sent'")}
    assert bad not in got and len(got) == n - 1 and max(got.values()) == 1, got
    # halving: about two requests per level, not one per event
    assert len(ep.requests) <= 2 * 5 + 1, f"{len(ep.requests)} requests to find one event"
    refused = logfmt.select(daemon.lines[mark:], REFUSED)
    assert refused and logfmt.fields(refused[-1])["events"] == "1", refused
    assert all(logfmt.fields(x)["level"] == "error" for x in refused)
    assert daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 2. an event that always gets a 5xx is split away and given up


def test_poison_5xx_event_split_away_and_given_up(daemon, mosquitto, private_postgres,
                                                  https_endpoint, tmp_path):
    need_pb2()
    ep, pg = https_endpoint, private_postgres
    n = 60
    conf = backlog(daemon, mosquitto, pg, ep, tmp_path, routine_messages(n, poison_at=3),
                   target={"batch_rows": 10, "max_inflight": 2, "max_attempts": 6,
                           **FAST_RETRY})
    bad = event_of_device(pg, POISON)
    ep.answer_with(lambda req: {"status": 500, "body": "internal error"}
                   if POISON.encode() in req.body else None)
    mark = start_forwarding(daemon, conf)
    wait_all_sent(pg, daemon, n, timeout=40, failed=1)

    row = outbox_row(pg, bad)
    assert (row["state"], row["last_status"], row["claimed_by"]) == ("failed", 500, None), row
    assert row["attempts"] >= 6, row
    assert row["last_error"].startswith("gave up after ") and "HTTP 500" in row["last_error"], \
        row["last_error"]
    got = accepted(ep)
    assert bad not in got and len(got) == n - 1 and max(got.values()) == 1
    carrying = [len(batch_ids(r)) for r in ep.requests if bad in batch_ids(r)]
    assert carrying[0] == 10 and carrying[-1] == 1, carrying
    gave_up = logfmt.select(daemon.lines[mark:], EXHAUSTED)
    assert len(gave_up) == 1, gave_up
    f = logfmt.fields(gave_up[0])
    assert (f["level"], f["events"]) == ("error", "1"), gave_up[0]
    # one event at fault does not make a working platform look down
    assert len(logfmt.select(daemon.lines[mark:], UNAVAILABLE)) <= 2, \
        logfmt.select(daemon.lines[mark:], UNAVAILABLE)
    assert daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 3. the alarm lane moves while routine batches fail


@pytest.mark.parametrize("failure", ["503", "hang"])
def test_alarms_sent_while_routine_batches_fail(daemon, mosquitto, private_postgres,
                                                https_endpoint, tmp_path, failure):
    pb = need_pb2()
    ep, pg = https_endpoint, private_postgres
    n = 30
    conf = backlog(daemon, mosquitto, pg, ep, tmp_path, routine_messages(n),
                   target={"batch_rows": 10, "max_inflight": 2, "timeout": 1,
                           "connect_timeout": 1, **FAST_RETRY})

    def answer(req):
        b = pb.EventBatch()
        b.ParseFromString(req.body)
        if any(e.event_type != pb.EVENT_TYPE_CAMERA_ALARM for e in b.events):
            return {"status": 503, "body": "busy"} if failure == "503" else {"delay": 2.5}
        return None
    ep.answer_with(answer)
    mark = start_forwarding(daemon, conf)
    daemon.wait_log(UNAVAILABLE, since=mark, timeout=10)
    time.sleep(1.0)
    for k in range(3):
        t0 = time.time()
        eid = one_alarm(mosquitto, pg, daemon, n=k)
        wait_until(lambda: outbox_row(pg, eid)["state"] == "sent", 5,
                   f"alarm {k} sent while routine batches fail")
        at = min(r.received_at for r in ep.requests if eid in batch_ids(r))
        assert at - t0 < 3.0, f"alarm {k} reached the endpoint {at - t0:.1f}s after publishing"
    c = outbox_counts(pg)
    assert (c["sent"], c["pending"], c["failed"]) == (3, n, 0), c
    tried = db_query(pg, "SELECT min(attempts) FROM forward_outbox WHERE priority = 3"
                         " AND attempts > 0")[0][0]
    assert tried is not None, "the routine rows were not tried"
    assert daemon.stop(timeout=30) == 0


# --------------------------------------------------------------------------
# 4. max_age


def test_max_age_gives_up_old_rows(daemon, mosquitto, private_postgres, https_endpoint,
                                   tmp_path):
    need_pb2()
    ep, pg = https_endpoint, private_postgres
    conf = daemon.write_config(forward_config(tmp_path, mosquitto, pg, ep,
                                              target={"max_age": 2, **FAST_RETRY}))
    ep.respond(503, body="down for maintenance")
    mark = start_forwarding(daemon, conf)
    eid = one_alarm(mosquitto, pg, daemon)
    t0 = time.monotonic()
    row = wait_until(lambda: (r := outbox_row(pg, eid))["state"] == "failed" and r, 10,
                     "the old row failed")
    assert time.monotonic() - t0 >= 1.0
    assert row["attempts"] >= 2 and row["last_status"] == 503, row
    assert "max_age" in row["last_error"] and "HTTP 503" in row["last_error"], row
    line = daemon.wait_log(TOO_OLD, since=mark, timeout=5)
    f = logfmt.fields(line)
    assert (f["level"], f["events"], f["max_age_s"]) == ("error", "1", "2"), line
    n = len(ep.requests)
    time.sleep(1.0)
    assert len(ep.requests) == n, "a row given up is still sent"
    assert daemon.stop(timeout=30) == 0


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
    assert not logfmt.select(daemon.lines[mark:], logfmt.Match(msg="outbox query failed"))
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
    f = logfmt.fields(line)
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


def test_forward_ready_line_names_lanes(daemon, mosquitto, private_postgres, https_endpoint,
                                        tmp_path):
    """The start line of each target says which priorities go in the alarm lane."""
    ep, pg = https_endpoint, private_postgres
    conf = daemon.write_config(forward_config(tmp_path, mosquitto, pg, ep,
                                              target={"alarm_priority": 8}))
    mark = start_forwarding(daemon, conf)
    f = logfmt.fields(logfmt.select(daemon.lines, FWD_READY)[0])
    assert (f["target"], f["alarm_priority"]) == ("platform", "8"), f
    assert daemon.stop(timeout=30) == 0
    assert mark
