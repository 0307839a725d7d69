"""Per-device rate limits ([decode] rate_limit, [route] rate_limit), with a
real broker, PostgreSQL and daemon:

  1. a door sensor floods (valid and broken messages): the messages over
     its limit are held back, one quarantine row (reason rate_limited) per
     device and minute counts them with the first as the sample, and every
     message the broker acknowledged is an event, a quarantine row of its
     own or counted in that row, exactly once; the other devices' messages
     are all stored; a warning names the device; the metrics count the held
     messages and still reconcile;
  2. the same through a kill -9 in the middle of the flood: the count is
     written with the checkpoint, so the restart loses none of it (and
     counts again only what the broker delivered twice);
  3. a route's own limit overrides [decode]'s, and 0 turns it off.
"""

from __future__ import annotations

import json

import logfmt
from ingest import MessagePublisher, daemon_config, start_daemon
from services import free_port
from test_admin import reconciles, scrape, total
from test_forward import wait_until
from test_store import db_query

FLOOD_TOPIC = "zigbee2mqtt/b09/u1/0001/entry_door"
FLOOD_DEVICE = "b09/u1/0001/entry_door"
RATE, BURST = 20, 50
WINDOW = 100


def config(tmp_path, broker, pg, port: int, decode: str = "", routes: str = "") -> str:
    text = daemon_config(tmp_path, broker, store_db=pg, routes=True, subscribe=("#",),
                         store={"batch_ms": 50})
    text = text.replace("\nrate_limit = 0\n", f"\nrate_limit = {RATE}\n", 1)
    text = text.replace("\nrate_burst = 100\n", f"\nrate_burst = {BURST}\n", 1)
    text += decode + routes
    return text + f"\n[admin]\nlisten = 127.0.0.1:{port}\n"


def flood(n: int, junk_every: int = 10) -> list[tuple[str, bytes]]:
    """`n` messages of one door sensor, each a new event; every
    junk_every-th is not JSON."""
    out = []
    for i in range(n):
        if junk_every and i % junk_every == junk_every - 1:
            out.append((FLOOD_TOPIC, b"{broken %d" % i))
        else:
            out.append((FLOOD_TOPIC, json.dumps({"contact": i % 2 == 0, "battery": 80,
                                                 "linkquality": i % 256, "n": i}).encode()))
    return out


def others(n: int) -> list[tuple[str, bytes]]:
    return [(f"zigbee2mqtt/b10/u1/{i:04d}/entry_door",
             json.dumps({"contact": True, "battery": 70, "n": i}).encode()) for i in range(n)]


def accounted(pg, topic: str) -> dict:
    """What became of `topic`'s messages."""
    ev = db_query(pg, "SELECT count(*), count(DISTINCT record) FROM events"
                      " WHERE source_topic = %s", (topic,))[0]
    q = db_query(pg, "SELECT reason, count(*), coalesce(sum(held_back), 0) FROM quarantine"
                     " WHERE topic = %s GROUP BY reason", (topic,))
    by = {r[0]: (r[1], r[2]) for r in q}
    rows, held = by.pop("rate_limited", (0, 0))
    return {"events": ev[0], "distinct": ev[1], "held_rows": rows, "held": int(held),
            "quarantined": sum(c for c, _ in by.values()),
            "total": ev[0] + int(held) + sum(c for c, _ in by.values())}


def test_flooding_device_is_held_back_and_counted(daemon, mosquitto, private_postgres,
                                                  tmp_path):
    pg, port = private_postgres, free_port()
    conf = daemon.write_config(config(tmp_path, mosquitto, pg, port))
    start_daemon(daemon, conf)
    msgs = flood(1500)
    fp = MessagePublisher(mosquitto, "flood", msgs).start()
    op = MessagePublisher(mosquitto, "others", others(30), rate=30).start()
    wait_until(lambda: len(fp.acked()) == len(msgs) and len(op.acked()) == 30, 60,
               "published and acknowledged")
    acked = len(fp.acked())
    fp.close()
    op.close()

    a = wait_until(lambda: (lambda a: a if a["total"] >= acked else None)(
        accounted(pg, FLOOD_TOPIC)), 60, "the flood accounted for")
    assert a["total"] == acked, a                       # nothing lost, nothing twice
    assert a["distinct"] == a["events"], a
    assert BURST <= a["events"] + a["quarantined"] < acked // 2, a
    assert a["held"] >= acked // 2, a
    assert 1 <= a["held_rows"] <= 2, a                  # one per device and minute
    # the sample is the first message held back; the row says how far it went
    seq, through, raw, route = db_query(
        pg, "SELECT journal_seq, held_back_through, raw, route FROM quarantine"
            " WHERE reason = 'rate_limited' ORDER BY journal_seq LIMIT 1")[0]
    assert through > seq and route == "z2m-door"
    assert bytes(raw) in {p for _, p in msgs}
    # the others are all there
    n_others = db_query(pg, "SELECT count(*) FROM events WHERE device_id LIKE 'b10/%%'")[0][0]
    assert n_others == 30
    # named in a warning, counted in the metrics, which reconcile
    daemon.wait_log(logfmt.Match(msg="device over its rate limit, holding its messages back",
                                 route="z2m-door", device=FLOOD_DEVICE), timeout=5)
    m = wait_until(lambda: (lambda m: m if total(m, "gridbridge_journal_lag_messages") == 0
                            else None)(scrape(port)), 10, "lag 0")
    assert total(m, "gridbridge_messages_rate_limited_total", route="z2m-door") == a["held"]
    assert total(m, "gridbridge_messages_quarantined_total", reason="rate_limited") == a["held"]
    assert reconciles(m)
    assert daemon.stop(timeout=30) == 0


def test_held_back_count_survives_kill9(daemon, mosquitto, private_postgres, tmp_path):
    pg, port = private_postgres, free_port()
    conf = daemon.write_config(config(tmp_path, mosquitto, pg, port))
    start_daemon(daemon, conf)
    msgs = flood(6000, junk_every=0)
    fp = MessagePublisher(mosquitto, "flood", msgs, rate=2000, window=WINDOW).start()
    wait_until(lambda: accounted(pg, FLOOD_TOPIC)["held"] > 500, 30, "some held back")
    daemon.kill()
    start_daemon(daemon, conf)
    wait_until(lambda: fp.done_publishing and fp.outstanding() == 0, 60, "published")
    acked = len(fp.acked())
    fp.close()
    a = wait_until(lambda: (lambda a: a if a["total"] >= acked else None)(
        accounted(pg, FLOOD_TOPIC)), 60, "the flood accounted for")
    # Nothing lost, nothing counted twice: a message whose PUBACK the kill
    # cut off is delivered again by the broker (QoS 1), recognised as one
    # journaled already, and not journaled (nor counted) again.
    assert a["total"] == acked, a
    assert a["held_rows"] >= 2, a                       # one interval before, one after
    assert daemon.stop(timeout=30) == 0


def test_route_limit_overrides(daemon, mosquitto, private_postgres, tmp_path):
    """The door route's own limit is 0 (none): the flood is stored in full,
    while an access gate's route keeps [decode]'s."""
    pg, port = private_postgres, free_port()
    text = config(tmp_path, mosquitto, pg, port)
    text = text.replace("[route z2m-door]\n", "[route z2m-door]\nrate_limit = 0\n", 1)
    conf = daemon.write_config(text)
    start_daemon(daemon, conf)
    msgs = flood(300, junk_every=0)
    gate = [("sac/340104050101/access/34010405011190990001/event",
             json.dumps({"ipAddress": "10.0.0.1", "dateTime": "2026-12-06T08:00:00+08:00",
                         "eventType": "AccessControllerEvent", "n": i}).encode())
            for i in range(300)]
    fp = MessagePublisher(mosquitto, "flood", msgs).start()
    gp = MessagePublisher(mosquitto, "gate", gate).start()
    wait_until(lambda: len(fp.acked()) == 300 and len(gp.acked()) == 300, 60, "published")
    fp.close()
    gp.close()
    a = wait_until(lambda: (lambda a: a if a["total"] >= 300 else None)(
        accounted(pg, FLOOD_TOPIC)), 60, "the doors stored")
    assert a["events"] == 300 and a["held"] == 0, a
    g = wait_until(lambda: (lambda a: a if a["total"] >= 300 else None)(
        accounted(pg, gate[0][0])), 60, "the gate accounted for")
    assert g["total"] == 300 and g["held"] > 0, g
    assert daemon.stop(timeout=30) == 0
