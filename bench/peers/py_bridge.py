#!/usr/bin/python3
"""A batched MQTT -> PostgreSQL bridge of the kind users write, as the peer
gridbridge is compared with in bench/run.

    py_bridge.py --host H --port P --topic 'sac/#' --dsn DSN [--table raw]
                 [--batch 1000] [--interval-ms 100] [--count N]

paho-mqtt (Debian's python3-paho-mqtt 1.6) subscribes with QoS 1; every
message is appended to a list in paho's network thread; the main thread
inserts the list with psycopg2.extras.execute_values into TABLE (topic
text, payload text) and commits, whenever 1,000 rows are waiting or 100 ms
have passed since the last commit.

paho acknowledges a QoS 1 PUBLISH as soon as it has read it, before the row
is committed (or even written anywhere): a crash or a database outage loses
whatever is in the list. That is how such bridges are usually written, and
it is what gridbridge's journal is there to avoid; the benchmark compares
their cost, not their guarantees.

--count N: exit 0 once N rows are committed (the benchmark's end of run);
without it, run until SIGTERM/SIGINT. Prints `committed=N commits=C` at
the end.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt
import psycopg2
import psycopg2.extras


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--topic", default="sac/#")
    ap.add_argument("--client-id", default="py-bridge")
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--table", default="raw")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--interval-ms", type=float, default=100)
    ap.add_argument("--count", type=int, default=0)
    args = ap.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    lock = threading.Lock()
    pending: list[tuple[str, str]] = []
    wake = threading.Event()

    def on_connect(client, userdata, flags, rc):
        if rc != 0:
            print(f"connect refused: {rc}", file=sys.stderr, flush=True)
            stop.set()
            return
        client.subscribe(args.topic, qos=1)

    def on_subscribe(client, userdata, mid, granted_qos):
        print("subscribed", file=sys.stderr, flush=True)

    def on_message(client, userdata, msg):
        with lock:
            pending.append((msg.topic, msg.payload.decode("utf-8", "replace")))
            n = len(pending)
        if n >= args.batch:
            wake.set()

    conn = psycopg2.connect(args.dsn)
    client = mqtt.Client(client_id=args.client_id, clean_session=True)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()

    sql = f"INSERT INTO {args.table} (topic, payload) VALUES %s"
    committed = commits = 0
    interval = args.interval_ms / 1000.0
    last = time.monotonic()
    try:
        while not stop.is_set():
            wake.wait(max(0.0, last + interval - time.monotonic()))
            wake.clear()
            with lock:
                n = len(pending)
            if n < args.batch and time.monotonic() - last < interval:
                continue
            last = time.monotonic()
            if not n:
                continue
            with lock:
                rows = pending[:args.batch]
                del pending[:len(rows)]
                if len(pending) >= args.batch:
                    wake.set()
            with conn.cursor() as cur:
                psycopg2.extras.execute_values(cur, sql, rows, page_size=len(rows))
            conn.commit()
            committed += len(rows)
            commits += 1
            if args.count and committed >= args.count:
                break
    finally:
        client.loop_stop()
        client.disconnect()
        conn.close()
        print(f"committed={committed} commits={commits}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
