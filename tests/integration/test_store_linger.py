"""[store] linger_ms, with a real broker, PostgreSQL and daemon: a slow
stream (a community's rate) is stored one transaction per message without
it, and in a few transactions with it; every message is stored either way."""

from __future__ import annotations

import time

import pytest

from ingest import daemon_config, start_daemon
from test_admin import door_messages
from test_forward import wait_until
from test_store import db_query


@pytest.mark.parametrize("linger_ms", [0, 300])
def test_linger_groups_a_slow_stream(daemon, mosquitto, private_postgres, tmp_path, linger_ms):
    pg = private_postgres
    # linger_ms 0: without the journal's sync delay too, one sync and one
    # transaction per message (the delay would pair messages 50 ms apart).
    text = daemon_config(tmp_path, mosquitto, store_db=pg, routes=True, subscribe=("#",),
                         store={"linger_ms": linger_ms, "batch_ms": 1000},
                         journal={"sync_delay_ms": 0 if linger_ms == 0 else 50})
    start_daemon(daemon, daemon.write_config(text))
    msgs = door_messages(20)
    for topic, payload in msgs:               # 20 messages/s for a second
        mosquitto.publish(topic, payload, qos=1)
        time.sleep(0.05)
    wait_until(lambda: db_query(pg, "SELECT count(*) FROM events WHERE device_id LIKE 'b09/%%'")
               [0][0] == 20, 20, "20 events stored")
    # the transaction that inserted each row
    tx = db_query(pg, "SELECT count(DISTINCT xmin::text) FROM events"
                      " WHERE device_id LIKE 'b09/%%'")[0][0]
    if linger_ms == 0:
        assert tx >= 10, tx                   # about one per message
    else:
        assert tx <= 6, tx                    # one per 300 ms or so
    assert daemon.stop(timeout=30) == 0


@pytest.mark.parametrize("linger_rows", [0, 10])
def test_a_batch_of_linger_rows_does_not_linger(daemon, mosquitto, private_postgres, tmp_path,
                                                linger_rows):
    """A burst fills batches of linger_rows long before linger_ms: they are
    sent at once (the rate of thousands a second needs no linger to share a
    commit, and would only wait). With linger_rows = 0 the burst waits the
    whole linger."""
    pg = private_postgres
    text = daemon_config(tmp_path, mosquitto, store_db=pg, routes=True, subscribe=("#",),
                         store={"linger_ms": 8000, "batch_ms": 10000,
                                "linger_rows": linger_rows})
    start_daemon(daemon, daemon.write_config(text))

    def stored():
        return db_query(pg, "SELECT count(*) FROM events WHERE device_id LIKE 'b09/%%'")[0][0]

    for topic, payload in door_messages(40):
        mosquitto.publish(topic, payload, qos=1)
    t0 = time.monotonic()
    if linger_rows:
        # A batch goes once it has 10 rows (or more: what is durable when
        # it is read, a burst synced at once is one batch); only a last
        # one of fewer rows lingers.
        wait_until(lambda: stored() >= 30, 5, "30 of 40 events stored before the linger")
        assert time.monotonic() - t0 < 6
    else:
        time.sleep(3)
        assert stored() == 0                  # all of them linger 8 s
    wait_until(lambda: stored() == 40, 30, "40 events stored")
    if not linger_rows:
        tx = db_query(pg, "SELECT count(DISTINCT xmin::text) FROM events"
                          " WHERE device_id LIKE 'b09/%%'")[0][0]
        assert tx == 1, tx
    assert daemon.stop(timeout=30) == 0


def test_linger_counts_from_receipt(daemon, mosquitto, private_postgres, tmp_path):
    """A message that waited in the journal (here the sync delay, 1 s) has
    used up that much of linger_ms (2 s): it is stored about 2 s after it
    came, not 3."""
    pg = private_postgres
    text = daemon_config(tmp_path, mosquitto, store_db=pg, routes=True, subscribe=("#",),
                         store={"linger_ms": 2000, "batch_ms": 5000},
                         journal={"sync_delay_ms": 1000})
    start_daemon(daemon, daemon.write_config(text))
    (topic, payload), = door_messages(1)
    t0 = time.monotonic()
    mosquitto.publish(topic, payload, qos=1)
    wait_until(lambda: db_query(pg, "SELECT count(*) FROM events WHERE device_id LIKE 'b09/%%'")
               [0][0] == 1, 20, "the event stored", interval=0.02)
    took = time.monotonic() - t0
    assert 1.9 <= took < 2.6, f"stored {took:.2f} s after it was published"
    assert daemon.stop(timeout=30) == 0


def test_linger_counts_from_the_wait_of_a_steady_stream(daemon, mosquitto, private_postgres,
                                                        tmp_path):
    """A steady stream (20/s, here with a 1 s sync delay): after a group's
    sync the socket is left unread for the next group's wait, and the
    messages read at its end were waited for since it began. linger_ms
    (3 s) counts from then: every message is stored within about 3 s of
    its publication, none 3 s after it was read. Then, the stream over, a
    wait that finds nothing watches the socket again: a lone message comes
    through."""
    pg = private_postgres
    text = daemon_config(tmp_path, mosquitto, store_db=pg, routes=True, subscribe=("#",),
                         store={"linger_ms": 3000, "batch_ms": 5000},
                         journal={"sync_delay_ms": 1000, "sync_delay_rows": 100})
    start_daemon(daemon, daemon.write_config(text))
    msgs = door_messages(81)
    published: dict[str, float] = {}
    stored: dict[str, float] = {}

    def poll() -> int:
        now = time.monotonic()
        for (dev,) in db_query(pg, "SELECT device_id FROM events WHERE device_id LIKE 'b09/%%'"):
            stored.setdefault(dev, now)
        return len(stored)

    c = mosquitto.client()
    try:
        t0 = time.monotonic()
        for i, (topic, payload) in enumerate(msgs[:80]):      # 20/s for 4 s
            while time.monotonic() < t0 + i * 0.05:
                time.sleep(0.005)
            published[topic] = time.monotonic()
            c.publish(topic, payload, qos=1)
            if i % 5 == 0:
                poll()
        while poll() < 80 and time.monotonic() < t0 + 30:
            time.sleep(0.02)
    finally:
        c.disconnect()
        c.loop_stop()
    assert len(stored) == 80, len(stored)
    late = {}
    for topic, t in published.items():
        unit = topic.split("/")[3]                    # zigbee2mqtt/b09/u1/<unit>/entry_door
        dev, = [d for d in stored if unit in d.split("/")]
        late[dev] = stored[dev] - t
    worst = max(late.values())
    assert worst < 3.6, f"stored up to {worst:.2f} s after publication (linger 3 s)"
    assert min(late.values()) > 0.5, late            # they did linger

    time.sleep(2.5)                                    # the stream is over
    topic, payload = msgs[80]
    t1 = time.monotonic()
    mosquitto.publish(topic, payload, qos=1)
    wait_until(lambda: poll() == 81, 10, "the lone message stored", interval=0.02)
    took = time.monotonic() - t1
    assert took < 4.5, f"the lone message stored {took:.2f} s after publication"
    assert daemon.stop(timeout=30) == 0
