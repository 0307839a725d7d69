"""Forwarding: stored events the rules select reach the police platform's
HTTPS endpoint (a real TLS server that requires our client certificate),
through the outbox in PostgreSQL.

Checked here: the outbox row written with each selected event, the body
decoded with the .proto, mTLS, the Idempotency-Key, the rows marked sent.
"""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest

import services
from ingest import daemon_config, start_daemon
from test_store import db_conn, event_pb2

CLIENT_ID = "gridbridge-forward-test"


def forward_config(tmp_path, broker, pg, endpoint, *, target=None, rules=None,
                   store=None) -> str:
    """Shipped routes, a [forward.target platform] at `endpoint` with the test
    PKI (mTLS), and rules (default: the shipped selection)."""
    text = daemon_config(tmp_path, broker, client_id=CLIENT_ID, store_db=pg, routes=True,
                         store=store, subscribe=("#",))
    t = {"url": endpoint.url, "format": "protobuf", "ca_file": endpoint.ca_file,
         "cert_file": endpoint.client_cert, "key_file": endpoint.client_key,
         "retry_base_ms": 100, "retry_cap_ms": 1000, "timeout": 10, "connect_timeout": 5}
    t.update(target or {})
    text += "\n[forward.target platform]\n" + "".join(f"{k} = {v}\n" for k, v in t.items())
    if rules is None:
        rules = {
            "throwing": {"priority": 9, "class": "camera", "severity": "critical"},
            "alarms": {"priority": 7, "event_type": "camera_alarm"},
            "welfare": {"priority": 8, "event_type": "welfare_alert"},
            "status": {"priority": 5, "event_type": "device_online, device_offline"},
            "passages": {"priority": 3, "event_type": "person_passage, vehicle_passage"},
        }
    for name, r in rules.items():
        text += f"\n[forward.rule {name}]\ntarget = platform\n"
        text += "".join(f"{k} = {v}\n" for k, v in r.items())
    return text


def batch_ids(req) -> list[str]:
    """The event ids of one request's EventBatch body, in order."""
    pb = event_pb2()
    b = pb.EventBatch()
    b.ParseFromString(req.body)
    return [str(uuid.UUID(bytes=e.id)) for e in b.events]


def outbox(pg) -> list[dict]:
    with db_conn(pg) as conn, conn.cursor() as cur:
        cur.execute("SELECT event_id::text, target, priority, state, attempts, last_status,"
                    " last_error FROM forward_outbox")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def wait_until(pred, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = pred()
        except Exception:  # the schema may not exist yet
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def test_fixtures_forwarded_once_over_mtls(daemon, mosquitto, private_postgres, https_endpoint,
                                           tmp_path):
    if event_pb2() is None:
        pytest.skip("protoc / python3-protobuf not installed")
    conf = tmp_path / "gridbridge.conf"
    conf.write_text(forward_config(tmp_path, mosquitto, private_postgres, https_endpoint))
    start_daemon(daemon, conf)
    for name, topic, payload in services.device_fixtures():
        mosquitto.publish(topic, payload, qos=1)

    def selected():
        with db_conn(private_postgres) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM events WHERE event_type IN ('person_passage',"
                        " 'vehicle_passage', 'camera_alarm', 'device_online', 'device_offline',"
                        " 'welfare_alert')")
            return cur.fetchone()[0]
    n = wait_until(selected, 20, "events stored")
    time.sleep(1.0)
    n = selected()
    rows = wait_until(lambda: (r := outbox(private_postgres)) and
                      all(x["state"] == "sent" for x in r) and len(r) == n and r,
                      20, "outbox rows sent")
    got = [i for req in https_endpoint.requests for i in batch_ids(req)]
    assert sorted(got) == sorted(r["event_id"] for r in rows)
    assert len(got) == len(set(got))
    for req in https_endpoint.requests:
        assert req.client_cn == "gridbridge-test-client" or req.client_subject
        assert req.headers["content-type"] == "application/x-protobuf"
        ids = batch_ids(req)
        key = hashlib.sha256(b"".join(uuid.UUID(i).bytes for i in ids)).hexdigest()[:32]
        assert req.headers["idempotency-key"] == key
    assert all(r["last_status"] == 200 for r in rows)
