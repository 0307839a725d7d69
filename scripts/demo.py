#!/usr/bin/python3
"""The local demo, run by scripts/demo after the build.

Starts a private mosquitto broker, PostgreSQL database and HTTPS endpoint
(tests/integration/services.py, the same ones the tests use), runs
build/gridbridged against them, shows what it says, publishes the sample
device events from tests/fixtures/devices/, shows them decoded and stored
in PostgreSQL and the journal reclaimed behind the checkpoint, the selected
events forwarded to the HTTPS endpoint over mutual TLS and the person and
vehicle passages uploaded to a GA/T 1400 (VIID) platform (tests/integration/
viid.py: Digest, User-Identify, validation of every object), a second
GA/T 1400 platform that subscribes to us instead (cascade: it calls our
listener with Digest, we push the device catalogue and a notification per
passage to its ReceiveAddr), the events no device sends (the registry's
online/offline transitions, and a welfare alert for an elderly person
living alone after the demo moves the daemon's clock on by an hour), stops
everything.
Exit status 0 when all of it worked.
"""

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import services  # noqa: E402
import viid  # noqa: E402

_print_lock = threading.Lock()


def say(text: str = "") -> None:
    with _print_lock:
        print(text, flush=True)


def daemon_line(line: str) -> None:
    say(f"  gridbridged | {line}")


def publish_fixtures(broker: services.Mosquitto) -> int:
    """Publish every sample device event with QoS 1; return how many the broker acked."""
    events = services.device_fixtures()
    if not events:
        raise services.ServiceError(f"no sample events in {services.FIXTURES_DIR / 'devices'}")
    client = broker.client("gridbridge-demo-publisher")
    acked = 0
    try:
        for name, topic, payload in events:
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(5)
            if info.is_published():
                acked += 1
                say(f"published {name} -> {topic} ({len(payload)} bytes), PUBACK received")
            else:
                say(f"published {name} -> {topic}: NO PUBACK within 5 s")
    finally:
        client.disconnect()
        client.loop_stop()
    return acked


def shipped_routes() -> str:
    """The [decode] and [route ...] sections of the shipped configuration."""
    text = (REPO / "conf" / "gridbridge.conf").read_text()
    return "\n" + text[text.index("[decode]"):]


def shipped_rules() -> str:
    """The [forward.rule ...] sections of the shipped configuration."""
    text = (REPO / "conf" / "gridbridge.conf").read_text()
    return text[text.index("\n[forward.rule "):text.index("\n[decode]")] + "\n"


def describe(record: dict) -> str:
    """One line for a decoded record: what happened, where, to what."""
    kind = record.get("eventType", "").replace("EVENT_TYPE_", "").lower()
    sev = record.get("severity", "").replace("SEVERITY_", "").lower()
    body = ""
    if "person" in record:
        p = record["person"]
        body = (f"{p.get('result', '').replace('PASS_RESULT_', '').lower()} by "
                f"{p.get('verifyMethod', '').replace('VERIFY_METHOD_', '').lower()}")
        if "direction" in p:
            body += ", " + p["direction"].replace("DIRECTION_", "").lower()
    elif "vehicle" in record:
        v = record["vehicle"]
        body = f"plate {v.get('plateNormalized', '?')}, barrier {v.get('barrierAction', '').replace('BARRIER_ACTION_', '').lower()}"
    elif "cameraAlarm" in record:
        c = record["cameraAlarm"]
        floor = c.get("estimatedFloor", {}).get("value", "?")
        body = f"{c.get('kind', '').replace('ALARM_KIND_', '').lower()}, floor ~{floor}"
    elif "door" in record:
        body = record["door"].get("state", "").replace("DOOR_STATE_", "").lower()
    elif "peephole" in record:
        p = record["peephole"]
        body = f"household {p.get('household', '?')}, {p.get('durationSec', {}).get('value', 0)} s"
    elif "status" in record:
        s = record["status"]
        body = f"{s.get('state', '').replace('DEVICE_STATE_', '').lower()} via {s.get('source', '').replace('STATUS_SOURCE_', '').lower()}"
    elif "report" in record:
        r = record["report"]
        body = f"report {r.get('reportId', '?')} ({r.get('category', '?')}), door {r.get('door', '?')}"
    return f"{kind:<18} {sev:<8} {record.get('vendor', ''):<11} {record.get('deviceId', '')}: {body}"


def status_report(build_dir: Path, conf: Path, admin_port: int) -> bool:
    """gridbridgectl status and the message counters of /metrics, which
    reconcile. True when the daemon says it is healthy and they do."""
    say("-> what an operator sees: the admin listener ([admin] listen) and gridbridgectl "
        "status")
    ctl = [str(build_dir / "gridbridgectl"), "-c", str(conf), "status"]
    r = subprocess.run(ctl, capture_output=True, text=True, timeout=30)
    say(f"$ gridbridgectl -c {conf} status   (exit {r.returncode})")
    say(textwrap.indent((r.stdout + r.stderr).rstrip(), "  "))
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    sums = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name = line.split("{")[0].split(" ")[0]
        sums[name] = sums.get(name, 0) + float(line.rsplit(" ", 1)[1])
    names = ["gridbridge_messages_received_total", "gridbridge_messages_recovered_total",
             "gridbridge_events_stored_total", "gridbridge_messages_quarantined_total",
             "gridbridge_journal_lag_messages"]
    say(f"$ curl -s 127.0.0.1:{admin_port}/metrics   (the message counters, summed over "
        "their labels)")
    for n in names:
        say(f"  {n} {sums.get(n, 0):.0f}")
    left = sums.get(names[0], 0) + sums.get(names[1], 0)
    right = sum(sums.get(n, 0) for n in names[2:])
    say(f"-> received + recovered = {left:.0f}, stored + quarantined + journal lag = "
        f"{right:.0f}: {'they reconcile' if left == right else 'THEY DO NOT RECONCILE'}")
    return r.returncode == 0 and left == right


def forward_report(db, endpoint, build_dir: Path, conf: Path) -> int:
    """Waits until the outbox is sent, shows what the endpoint received.
    Returns the number of events the endpoint got."""
    deadline = time.monotonic() + 30
    while True:
        with db.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FILTER (WHERE state <> 'pending'), count(*)"
                        " FROM forward_outbox")
            settled, total = cur.fetchone()
        if total > 0 and settled == total:
            break
        if time.monotonic() > deadline:
            say(f"forwarding did not finish: {settled} of {total} outbox rows settled")
            return 0
        time.sleep(0.2)
    say("-> the rules selected events for the police platform; the store wrote an outbox row "
        "for each in the same transaction, and the forwarder POSTed them over mutual TLS:")
    ctl = [str(build_dir / "gridbridgectl"), "-c", str(conf), "outbox", "stat"]
    out = subprocess.run(ctl, capture_output=True, text=True, timeout=10).stdout
    say(f"$ gridbridgectl -c {conf} outbox stat")
    say(textwrap.indent(out.rstrip(), "  "))
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT o.target, e.device_id, o.last_error FROM forward_outbox o"
                    " JOIN events e ON e.id = o.event_id WHERE o.state = 'failed'"
                    " ORDER BY o.target, e.device_id")
        for target, device, error in cur.fetchall():
            say(f"  failed for {target}: the event of {device}: {error}")
    n = 0
    pb = event_pb2()
    for req in endpoint.requests:
        say(f"  POST {req.path} from {req.client_cn} ({req.headers['content-type']}, "
            f"{len(req.body)} bytes, Idempotency-Key {req.headers['idempotency-key']})")
        if pb is None:
            continue
        batch = pb.EventBatch()
        batch.ParseFromString(req.body)
        for ev in batch.events:
            n += 1
            kind = pb.EventType.Name(ev.event_type).replace("EVENT_TYPE_", "").lower()
            sev = pb.Severity.Name(ev.severity).replace("SEVERITY_", "").lower()
            say(f"      {kind:<18} {sev:<8} {ev.vendor:<11} {ev.device_id}")
    if pb is None:
        n = sum(1 for _ in endpoint.requests)
    say(f"-> the endpoint received {n} events in {len(endpoint.requests)} requests, "
        "highest priority first")
    return n


def viid_report(platform) -> bool:
    """Shows what the GA/T 1400 platform took. True when it registered us
    and accepted a face and a motor vehicle with nothing to object to."""
    faces, vehicles = platform.accepted_ids("faces"), platform.accepted_ids("motor_vehicles")
    say(f"-> the GA/T 1400 platform registered us {platform.registrations} time(s) "
        f"(HTTP Digest, User-Identify {platform.device_id}), saw {platform.keepalives} "
        "keepalive(s) and accepted, with ids derived from each event:")
    for fid in faces:
        say(f"      FaceObject          FaceID {fid}")
    for vid in vehicles:
        say(f"      MotorVehicleObject  MotorVehicleID {vid}")
    for v in platform.violations:
        say(f"   the platform objects: {v}")
    return (platform.registrations >= 1 and len(faces) >= 1 and len(vehicles) >= 1
            and not platform.violations)


def cascade_report(subscriber, sid: str) -> bool:
    """Shows what the subscribing platform received. True when it got the
    catalogue and a notification per passage, with nothing to object to."""
    devices = subscriber.accepted_ids("devices")
    faces, vehicles = subscriber.accepted_ids("faces"), subscriber.accepted_ids("motor_vehicles")
    notes = [n for n in subscriber.notifications if n.accepted]
    say(f"-> the subscribing platform received {len(notes)} notification(s) for "
        f"subscription {sid}:")
    say(f"      the device catalogue: {len(devices)} APEObject(s) ({', '.join(devices)})")
    say(f"      {len(faces)} FaceObject(s) and {len(vehicles)} MotorVehicleObject(s), "
        "one notification each")
    for v in subscriber.violations:
        say(f"   the platform objects: {v}")
    return len(devices) >= 1 and len(faces) >= 1 and len(vehicles) >= 1 and \
        not subscriber.violations


def derived_report(db, clock_file: Path) -> bool:
    """The registry's transitions, then a welfare alert after moving the
    daemon's clock on. True when both were stored and forwarded."""
    def rows():
        with db.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT e.route, e.device_id, e.event_type, e.attrs, o.state"
                        " FROM events e LEFT JOIN forward_outbox o ON o.event_id = e.id"
                        " WHERE e.vendor = 'gridbridge' ORDER BY e.event_time, e.device_id")
            return cur.fetchall()

    say("-> the events no device sends: the device registry knows every device heard from "
        "(one first heard from online is recorded without an event) and made one event per "
        "change of state, stored and forwarded by the shipped rule device-status:")
    registry = [r for r in rows() if r[0] == "registry"]
    for _, device, kind, attrs, state in registry:
        st = attrs.get("status", {})
        say(f"      {kind:<15} {device:<40} source "
            f"{st.get('source', '').replace('STATUS_SOURCE_', '').lower():<12} "
            f"forwarded: {state or '-'}")
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT device_class, count(*), count(*) FILTER (WHERE state = 'online')"
                    " FROM devices GROUP BY 1 ORDER BY 1")
        rates = cur.fetchall()
    say("   online per class (the figure the police platform asks for): " +
        ", ".join(f"{c} {on}/{n}" for c, n, on in rates))
    say("   moving the daemon's clock on by an hour ([daemon] clock_offset_file, for tests "
        "and this demo): the household's door has not opened since ...")
    clock_file.write_text("3605\n")
    deadline = time.monotonic() + 20
    alert = None
    while time.monotonic() < deadline and alert is None:
        alert = next((r for r in rows() if r[0] == "welfare" and r[4] == "sent"), None)
        time.sleep(0.2)
    if alert is None:
        say("   no welfare alert within 20 s")
        return False
    w = alert[3].get("welfare", {})
    say(f"-> welfare alert for household {w.get('household')}: "
        f"{w.get('kind', '').replace('WELFARE_KIND_', '').lower()}, no door opening for "
        f"{int(w.get('windowSec', 0)) // 60} minutes (inactive_hours), severity "
        f"{alert[3].get('severity', '').replace('SEVERITY_', '').lower()}; forwarded "
        "(the shipped rule welfare, priority 8)")
    return len(registry) > 0


def event_pb2():
    """The .proto compiled for Python with protoc, or None."""
    try:
        from test_store import event_pb2 as compile_pb2
    except ImportError:
        return None
    return compile_pb2()


def run(workdir: Path) -> bool:
    build_dir = services.default_build_dir()
    daemon = services.Daemon(build_dir, workdir / "daemon", on_line=daemon_line)
    daemon.check_binary()

    decoded = 0
    with contextlib.ExitStack() as stack:
        say("starting private services on 127.0.0.1 ...")
        broker = stack.enter_context(services.Mosquitto(workdir / "mosquitto"))
        say(f"broker on {broker.host}:{broker.port} (mosquitto, persistence on)")
        db = services.Postgres(workdir / "postgres")
        stack.callback(db.close)
        db.start()
        say(f"database {db.dbname} on {db.host}:{db.port} (PostgreSQL 15, role {db.user})")
        endpoint = stack.enter_context(services.HttpsEndpoint(workdir / "https"))
        say(f"endpoint {endpoint.url} (HTTPS, client certificate required)")
        viid_password = "demo-viid-password"
        platform = viid.ViidPlatform(viid.DEFAULT_DEVICE_ID, password=viid_password,
                                     pki=endpoint.pki)
        platform.start()
        stack.callback(platform.stop)
        say(f"GA/T 1400 platform {platform.url}/VIID (HTTPS, HTTP Digest, User-Identify)")
        upper = viid.ViidPlatform(viid.DEFAULT_DEVICE_ID, password=viid_password,
                                  pki=endpoint.pki)
        upper.start()
        stack.callback(upper.stop)
        subscriber = viid.ViidSubscriber(pki=endpoint.pki)
        subscriber.start()
        stack.callback(subscriber.stop)
        listen_port = services.free_port()
        admin_port = services.free_port()
        say(f"a second GA/T 1400 platform {upper.url}/VIID that subscribes to us (cascade), "
            f"its ReceiveAddr {subscriber.receive_addr}")

        state = workdir / "state"
        state.mkdir()
        clock_file = workdir / "clock-offset"
        clock_file.write_text("0\n")
        password_file = db.write_password_file(workdir / "store-password")
        viid_password_file = workdir / "viid-password"
        viid_password_file.write_text(viid_password + "\n")
        viid_password_file.chmod(0o600)
        platform_password = "demo-platform-password"
        platform_password_file = workdir / "platform-password"
        platform_password_file.write_text(platform_password + "\n")
        platform_password_file.chmod(0o600)
        conf = daemon.write_config(textwrap.dedent(f"""\
            [daemon]
            log_level = info
            state_dir = {state}
            clock_offset_file = {clock_file}

            # /healthz, /readyz, /metrics and gridbridgectl status
            [admin]
            listen = 127.0.0.1:{admin_port}

            [mqtt]
            host = {broker.host}
            port = {broker.port}
            client_id = gridbridge-demo
            subscribe = sac/#
            subscribe = zigbee2mqtt/#

            [store]
            host = {db.host}
            port = {db.port}
            dbname = {db.dbname}
            user = {db.user}
            password_file = {password_file}

            # the shipped target, pointed at the local endpoint
            [forward.target police]
            url = {endpoint.url}
            format = protobuf
            ca_file = {endpoint.ca_file}
            cert_file = {endpoint.client_cert}
            key_file = {endpoint.client_key}

            # a GA/T 1400 platform in upload mode: faces and motor vehicles
            [forward.target viid]
            profile = viid
            url = {platform.url}
            ca_file = {endpoint.ca_file}
            viid_device_id = {viid.DEFAULT_DEVICE_ID}
            password_file = {viid_password_file}

            [forward.rule viid-passages]
            target = viid
            priority = 3
            event_type = person_passage, vehicle_passage

            # a GA/T 1400 platform that subscribes to us: cascade mode
            [forward.target viid-cascade]
            profile = viid
            mode = cascade
            url = {upper.url}
            ca_file = {endpoint.ca_file}
            viid_device_id = {viid.DEFAULT_DEVICE_ID}
            password_file = {viid_password_file}
            listen = 127.0.0.1:{listen_port}
            listen_cert_file = {endpoint.pki.server_cert}
            listen_key_file = {endpoint.pki.server_key}
            listen_username = platform
            listen_password_file = {platform_password_file}

            [forward.rule viid-cascade-passages]
            target = viid-cascade
            priority = 3
            event_type = person_passage, vehicle_passage

            # the sample gate and barrier already carry 20-digit ids
            [viid.device gate]
            device = 34010405011190000001
            id = 34010405011190000001

            [viid.device dahua-gate]
            device = 34010405011190000002
            id = 34010405011190000002

            [viid.device barrier]
            device = 34010405011190000011
            id = 34010405011190000011

            # an elderly person living alone behind the sample door sensor
            [welfare b03-u2-1502]
            community = c-0001
            door_sensors = b03/u2/1502/entry_door
            inactive_hours = 1
            """) + shipped_rules() + shipped_routes())
        say(f"config written to {conf}; the database password is in {password_file}")
        say()
        say(f"starting {daemon.binary} -c {conf}")
        stack.callback(daemon.close)
        daemon.start(conf)
        daemon.wait_notify("READY=1", timeout=15)
        daemon.wait_log(r'mod=main msg="ready"', timeout=5)
        say("-> daemon ready (READY=1 on the notify socket)")
        daemon.wait_log(r'mod=mqtt msg="connected"', timeout=15)
        say("-> connected to broker")
        daemon.wait_log(r'mod=mqtt msg="subscribed"', timeout=15)
        say("-> subscribed to sac/# and zigbee2mqtt/# with QoS 1")
        daemon.wait_log(r'mod=store msg="connected"', timeout=15)
        say("-> connected to database")
        daemon.wait_log(r'mod=forward msg="subscriptions loaded"', timeout=15)
        sid = "340100000020" "03" "20251201120000" "00001"
        client = viid.SubscribeClient(f"https://127.0.0.1:{listen_port}", "platform",
                                      platform_password, user_identify=viid.DEFAULT_DEVICE_ID,
                                      context=endpoint.client_context(cert=False))
        answer = client.subscribe([viid.subscription(
            sid, [viid.SUBSCRIBE_FACES, viid.SUBSCRIBE_MOTOR_VEHICLES],
            subscriber.receive_addr)])
        say(f"-> the second platform subscribed to faces and motor vehicles at "
            f"https://127.0.0.1:{listen_port}/VIID/Subscribes: HTTP {answer.status}, "
            f"StatusCode {answer.status_codes()}")
        say()

        acked = publish_fixtures(broker)
        total = len(services.device_fixtures())
        say(f"{acked} of {total} sample device events accepted by the broker.")
        say()

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with db.connect() as conn, conn.cursor() as cur:
                cur.execute("SELECT (SELECT count(*) FROM events WHERE vendor <> 'gridbridge')"
                            " + (SELECT count(*) FROM quarantine)")
                if cur.fetchone()[0] >= acked:
                    break
            time.sleep(0.1)
        say("-> every event journaled (fsynced before the broker got our PUBACK), decoded "
            "and stored in PostgreSQL; the journal is reclaimed behind the checkpoint:")
        ctl = [str(build_dir / "gridbridgectl"), "-c", str(conf), "journal", "stat"]
        out = subprocess.run(ctl, capture_output=True, text=True, timeout=10).stdout
        say(f"$ gridbridgectl -c {conf} journal stat")
        say(textwrap.indent(out.rstrip(), "  "))
        say()

        with db.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT journal_seq, attrs FROM events WHERE vendor <> 'gridbridge'"
                        " ORDER BY journal_seq")
            rows = cur.fetchall()
            cur.execute("SELECT journal_seq, topic, reason FROM quarantine ORDER BY journal_seq")
            quarantined = cur.fetchall()
            cur.execute("SELECT journal_node, journal_seq FROM ingest_checkpoint")
            checkpoints = cur.fetchall()
        say("$ psql -c 'SELECT journal_seq, attrs FROM events'   (one line each)")
        for seq, attrs in rows:
            say(f"  {seq:>3}  {describe(attrs)}")
        for seq, topic, reason in quarantined:
            say(f"  {seq:>3}  QUARANTINE {reason} ({topic})")
        decoded = len(rows)
        say(f"-> {decoded} events and {len(quarantined)} quarantined messages in the database; "
            f"checkpoint {checkpoints}")
        first = next((a for _, a in rows if "cameraAlarm" in a), None)
        if first is not None:
            say("   the high-altitude throwing alarm as stored (events.attrs; events.record "
                "holds the same as a packed gridbridge.v1.Event):")
            say(textwrap.indent(json.dumps(first, indent=2, ensure_ascii=False), "    "))
        say()

        forwarded = forward_report(db, endpoint, build_dir, conf)
        say()
        uploaded = viid_report(platform)
        say()
        subscriber.wait_for(lambda: subscriber.accepted_ids("devices") and
                            subscriber.accepted_ids("faces") and
                            subscriber.accepted_ids("motor_vehicles"), 20, "notifications")
        notified = cascade_report(subscriber, sid)
        say()
        welfare = derived_report(db, clock_file)
        say()
        healthy = status_report(build_dir, conf, admin_port)
        say()

        say("stopping the daemon with SIGTERM")
        status = daemon.stop(timeout=10)
        say(f"-> gridbridged exited with status {status}")
        report = daemon.sanitizer_reports()
        if report:
            say(f"sanitizer report:\n{report}")
        say("stopping services")
    ok = (status == 0 and acked == total and decoded == total and not report and
          forwarded > 0 and uploaded and notified and welfare and healthy)
    return ok


def main() -> int:
    # SIGTERM unwinds like Ctrl-C, so every service is stopped on the way out
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(128 + signal.SIGTERM))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gridbridge-demo-") as tmp:
        try:
            ok = run(Path(tmp))
        except (services.ServiceError, TimeoutError, OSError) as e:
            say(f"demo failed: {e}")
            ok = False
        except KeyboardInterrupt:
            say("interrupted")
            return 130
    took = time.monotonic() - started
    say(f"demo {'succeeded' if ok else 'FAILED'} in {took:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
