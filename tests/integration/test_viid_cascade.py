"""GA/T 1400 cascade mode (mode = cascade): the police platform subscribes at
our listener and we push notifications. Real broker, PostgreSQL and daemon;
the upper platform is viid.py's ViidPlatform (where we register), its
SubscribeClient (which calls our listener over TLS with Digest and
User-Identify) and a ViidSubscriber (its ReceiveAddr):

  1. the platform subscribes to faces and device status: the subscription
     is in PostgreSQL, the catalogue arrives, then one notification per new
     face and device status (vehicles, not subscribed, never come), and
     `gridbridgectl outbox stat` shows them sent to "<target>/<id>"; the
     platform cancels: nothing more arrives;
  2. a subscription survives a daemon restart;
  3. the listener refuses requests without Digest, with a wrong password or
     the wrong User-Identify, and never logs the password;
  4. what the platform gets wrong is refused per object (short ids, a
     ResourceURI naming none of our devices, cancelling what was never
     made), DELETE ends a subscription, a ResourceURI of one device
     narrows what is sent;
  5. a notification the subscriber answers with a failure is retried and
     arrives once.
"""

from __future__ import annotations

import re
import ssl
import time

import pytest

import logfmt
import services
import viid
from ingest import daemon_config, start_daemon
from test_forward import ctl_outbox, outbox, parse_stat, wait_until
from test_store import db_query
from test_viid_upload import availability, person, publish, vehicle

OUR_ID = viid.DEFAULT_DEVICE_ID
PLATFORM_ID = "34010000002000000001"
PASSWORD = "Pass1234"
LISTEN_USER = "platform"
LISTEN_PASSWORD = "Sub-Pass-5678"
GATE_ID = "34010405011190000001"
BARRIER_ID = "34010405011190000011"
DOOR, DOOR_ID = "b03/u2/1502/entry_door", "34010405011190000021"
CLIENT_ID = "gridbridge-cascade-test"

UP = r'mod=forward msg="viid session up"'
LISTENING = logfmt.Match(mod="forward", msg="listening for the platform")


def sub_id(n: int) -> str:
    """A 33-digit subscription id: organisation, "03", a time, a sequence."""
    return f"340100000020" "03" f"20251201120000{n:05d}"


def cascade_config(tmp_path, broker, pg, platform, listen_port, pki, *, extra=None) -> str:
    text = daemon_config(tmp_path, broker, client_id=CLIENT_ID, store_db=pg, routes=True,
                         subscribe=("#",))
    pw = tmp_path / "viid-password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    lpw = tmp_path / "listen-password"
    lpw.write_text(LISTEN_PASSWORD + "\n")
    lpw.chmod(0o600)
    t = {"profile": "viid", "mode": "cascade", "url": platform.url, "allow_http": "true",
         "viid_device_id": OUR_ID, "password_file": pw, "keepalive_s": 5,
         "register_retry_max_s": 2, "retry_base_ms": 100, "retry_cap_ms": 1000,
         "timeout": 10, "connect_timeout": 5,
         "listen": f"127.0.0.1:{listen_port}", "listen_cert_file": pki.server_cert,
         "listen_key_file": pki.server_key, "listen_username": LISTEN_USER,
         "listen_password_file": lpw, "platform_id": PLATFORM_ID}
    t.update(extra or {})
    text += "\n[forward.target cascade]\n" + "".join(f"{k} = {v}\n" for k, v in t.items())
    text += "\n[forward.rule passages]\ntarget = cascade\npriority = 3\n" \
            "event_type = person_passage, vehicle_passage\n"
    text += "\n[forward.rule status]\ntarget = cascade\n" \
            "event_type = device_online, device_offline\n"
    text += f"\n[viid.device gate]\ndevice = {GATE_ID}\nid = {GATE_ID}\nname = North gate\n" \
            "function_type = 2\nplace_code = 340104\nlongitude = 117.2272\nlatitude = 31.8206\n"
    text += f"\n[viid.device barrier]\ndevice = {BARRIER_ID}\nid = {BARRIER_ID}\n"
    text += f"\n[viid.device door]\ndevice = {DOOR}\nid = {DOOR_ID}\n"
    return text


@pytest.fixture
def platform():
    p = viid.ViidPlatform(OUR_ID, password=PASSWORD)
    p.start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def subscriber():
    s = viid.ViidSubscriber()
    s.start()
    try:
        yield s
    finally:
        s.stop()


class Cascade:
    """The daemon with a cascade target, and a client for its listener."""

    def __init__(self, daemon, mosquitto, pg, platform, pki, tmp_path, extra=None):
        self.daemon, self.pg, self.platform, self.pki = daemon, pg, platform, pki
        self.port = services.free_port()
        self.conf = tmp_path / "gridbridge.conf"
        self.conf.write_text(cascade_config(tmp_path, mosquitto, pg, platform, self.port, pki,
                                            extra=extra))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        start_daemon(self.daemon, self.conf)
        self.daemon.wait_log(LISTENING, timeout=20)
        self.daemon.wait_log(UP, timeout=20)
        self.daemon.wait_log(logfmt.Match(mod="forward", msg="subscriptions loaded"),
                             timeout=20)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_file))
        return ctx

    def client(self, username=LISTEN_USER, password=LISTEN_PASSWORD,
               user_identify=PLATFORM_ID) -> viid.SubscribeClient:
        return viid.SubscribeClient(self.url, username, password, user_identify=user_identify,
                                    context=self.context())


def subscriptions(pg) -> dict[str, dict]:
    cols = ("subscribe_id", "state", "details", "devices", "receive_addr", "catalogue_state",
            "catalogue_attempts")
    rows = db_query(pg, f"SELECT {', '.join(cols)} FROM viid_subscriptions")
    return {r[0]: dict(zip(cols, r)) for r in rows}


def notified(subscriber, kind: str, sid: str) -> list:
    """Objects of `kind` the subscriber accepted in notifications of `sid`."""
    notes = {(n.request_no, n.index): n for n in subscriber.notifications}
    out = []
    for r in subscriber.received(kind):
        parent = notes.get((r.request_no, r.parent))
        if parent is not None and parent.obj.get("SubscribeID") == sid and r.accepted:
            out.append(r)
    return out


def test_subscribe_notify_cancel(daemon, mosquitto, private_postgres, platform, subscriber,
                                 pki, tmp_path, build_dir):
    pg = private_postgres
    c = Cascade(daemon, mosquitto, pg, platform, pki, tmp_path)
    c.start()
    platform.wait_registered()
    sid = sub_id(1)
    r = c.client().subscribe([viid.subscription(
        sid, [viid.SUBSCRIBE_FACES, viid.SUBSCRIBE_DEVICE_STATUS], subscriber.receive_addr,
        resource_uri=OUR_ID)])
    assert r.status == 200 and r.status_codes() == [0], r.body
    assert r.headers["Content-Type"] == viid.VIID_CONTENT_TYPE
    row = subscriptions(pg)[sid]
    assert row["state"] == "active" and sorted(row["details"]) == [4, 12]
    assert row["devices"] is None and row["receive_addr"] == subscriber.receive_addr

    # The catalogue: every configured device, once, with its description.
    subscriber.wait_for(lambda: len(notified(subscriber, "devices", sid)) == 3, 20,
                        "the catalogue")
    devices = {r.obj["ApeID"]: r.obj for r in notified(subscriber, "devices", sid)}
    assert set(devices) == {GATE_ID, BARRIER_ID, DOOR_ID}
    gate = devices[GATE_ID]
    assert gate["Name"] == "North gate" and gate["FunctionType"] == "2"
    assert gate["PlaceCode"] == "340104" and gate["IsOnline"] == "9"
    wait_until(lambda: subscriptions(pg)[sid]["catalogue_state"] == "sent", 20,
               "the catalogue recorded as sent")

    # Faces and device status are notified; vehicles were not subscribed.
    publish(mosquitto, [person(n) for n in range(5)] + [vehicle(n) for n in range(2)])
    publish(mosquitto, [availability(DOOR, "online")])
    subscriber.wait_for(lambda: len(notified(subscriber, "faces", sid)) >= 5 and
                        len(notified(subscriber, "device_status", sid)) >= 1, 30,
                        "5 faces and a device status")
    faces = notified(subscriber, "faces", sid)
    assert len({f.id for f in faces}) == 5 == len(faces)
    status = notified(subscriber, "device_status", sid)
    assert [(s.obj["ApeID"], s.obj["IsOnline"]) for s in status] == [(DOOR_ID, "1")]
    assert subscriber.received("motor_vehicles") == []
    notes = subscriber.notifications
    assert all(n.accepted and n.obj["SubscribeID"] == sid for n in notes), notes
    assert len({n.id for n in notes}) == len(notes)       # NotificationIDs differ
    rows = wait_until(lambda: (x := [o for o in outbox(pg) if o["target"] == f"cascade/{sid}"])
                      and len(x) == 6 and all(o["state"] == "sent" for o in x) and x, 20,
                      "6 outbox rows sent")
    assert len(rows) == 6
    # Nothing was queued for the cascade target itself.
    assert not [o for o in outbox(pg) if o["target"] == "cascade"]
    # The operator sees the subscription as a target of its own.
    r = ctl_outbox(build_dir, c.conf, "stat")
    assert r.returncode == 0, r.stderr
    stat = parse_stat(r.stdout)
    assert sum(v["sent"] for (t, _), v in stat.items() if t == f"cascade/{sid}") == 6, stat

    # Cancel: answered 0, recorded; what comes later is not sent.
    r = c.client().cancel(sid)
    assert r.status == 200 and r.status_codes() == [0], r.body
    assert subscriptions(pg)[sid]["state"] == "cancelled"
    daemon.wait_log(logfmt.Match(mod="forward", msg="subscription ended", subscription=sid),
                    timeout=5)
    before = len(subscriber.requests)
    publish(mosquitto, [person(n) for n in range(10, 13)] + [availability(DOOR, "offline")])
    wait_until(lambda: len(outbox(pg)) == 6 and
               db_query(pg, "SELECT count(*) FROM events")[0][0] >= 11, 20,
               "the later events stored, no outbox rows for them")
    time.sleep(2)
    assert len(subscriber.requests) == before
    assert subscriber.violations == [] and platform.violations == []
    assert LISTEN_PASSWORD not in "\n".join(daemon.lines)


def test_subscription_survives_restart(daemon, mosquitto, private_postgres, platform,
                                       subscriber, pki, tmp_path):
    pg = private_postgres
    c = Cascade(daemon, mosquitto, pg, platform, pki, tmp_path)
    c.start()
    sid = sub_id(2)
    r = c.client().subscribe([viid.subscription(sid, [viid.SUBSCRIBE_FACES],
                                                subscriber.receive_addr)])
    assert r.status_codes() == [0]
    subscriber.wait_for(lambda: len(notified(subscriber, "devices", sid)) == 3, 20,
                        "the catalogue")
    assert daemon.stop() == 0

    c.start()
    line = daemon.wait_log(logfmt.Match(mod="forward", msg="subscription loaded"), timeout=5)
    assert f"subscription={sid}" in line
    publish(mosquitto, [person(n) for n in range(3)])
    subscriber.wait_for(lambda: len(notified(subscriber, "faces", sid)) == 3, 30, "3 faces")
    # The catalogue is not pushed again: it was sent before the restart.
    time.sleep(1)
    assert len(notified(subscriber, "devices", sid)) == 3
    assert subscriber.violations == []


def test_listener_authenticates_the_platform(daemon, mosquitto, private_postgres, platform,
                                             subscriber, pki, tmp_path):
    pg = private_postgres
    c = Cascade(daemon, mosquitto, pg, platform, pki, tmp_path)
    c.start()
    doc = [viid.subscription(sub_id(3), [viid.SUBSCRIBE_FACES], subscriber.receive_addr)]

    # No credentials: a Digest challenge, nothing stored.
    r = c.client(username=None).subscribe(doc)
    assert r.status == 401
    challenge = r.headers["WWW-Authenticate"]
    scheme, rest = viid.split_auth_header(challenge)
    params = viid.parse_auth_params(rest)
    assert scheme == "digest" and params["qop"] == "auth" and params["nonce"]
    # A wrong password, the wrong user.
    assert c.client(password="wrong-password").subscribe(doc).status == 401
    assert c.client(username="someone").subscribe(doc).status == 401
    # The right credentials, the wrong User-Identify.
    assert c.client(user_identify="34010000002000000099").subscribe(doc).status == 403
    assert subscriptions(pg) == {}
    lines = logfmt.select(daemon.lines, logfmt.Match(mod="forward",
                                                    msg="platform request not authenticated"))
    assert {logfmt.fields(x)["reason"] for x in lines} >= {"wrong_response", "wrong_user"}
    # Plain HTTP to the TLS listener is no request.
    with pytest.raises(Exception):
        viid.SubscribeClient(f"http://127.0.0.1:{c.port}", LISTEN_USER, LISTEN_PASSWORD,
                             user_identify=PLATFORM_ID, timeout=3).subscribe(doc)
    # And then the right ones pass.
    assert c.client().subscribe(doc).status_codes() == [0]
    text = "\n".join(daemon.lines)
    assert LISTEN_PASSWORD not in text and "wrong-password" not in text


def test_refusals_delete_and_resources(daemon, mosquitto, private_postgres, platform,
                                       subscriber, pki, tmp_path):
    pg = private_postgres
    c = Cascade(daemon, mosquitto, pg, platform, pki, tmp_path)
    c.start()
    good, narrow = sub_id(4), sub_id(5)
    r = c.client().subscribe([
        viid.subscription("1234", [viid.SUBSCRIBE_FACES], subscriber.receive_addr),
        viid.subscription(sub_id(6), [viid.SUBSCRIBE_FACES], subscriber.receive_addr,
                          resource_uri="34010405011190009999"),
        viid.subscription(good, [viid.SUBSCRIBE_FACES, viid.SUBSCRIBE_MOTOR_VEHICLES],
                          subscriber.receive_addr),
        viid.subscription(narrow, [viid.SUBSCRIBE_MOTOR_VEHICLES], subscriber.receive_addr,
                          resource_uri=BARRIER_ID),
    ])
    assert r.status == 200
    assert r.status_codes() == [8, 4, 0, 0], r.body
    assert set(subscriptions(pg)) == {good, narrow}
    assert subscriptions(pg)[narrow]["devices"] == [BARRIER_ID]
    # The narrow one's catalogue holds the barrier only.
    subscriber.wait_for(lambda: len(notified(subscriber, "devices", narrow)) == 1, 20,
                        "the narrow catalogue")
    assert notified(subscriber, "devices", narrow)[0].obj["ApeID"] == BARRIER_ID

    publish(mosquitto, [vehicle(n) for n in range(2)])
    subscriber.wait_for(lambda: len(notified(subscriber, "motor_vehicles", good)) == 2 and
                        len(notified(subscriber, "motor_vehicles", narrow)) == 2, 30,
                        "vehicles to both")

    # Hostile bodies: not JSON, too large; the daemon answers and stays up.
    client = c.client()
    r = client.request("POST", "/VIID/Subscribes", None)
    assert r.status == 200 and r.status_codes() == [7], r.body
    big = {"SubscribeListObject": {"SubscribeObject": [{"Title": "x" * (2 << 20)}]}}
    try:    # answered 413 at once; the client may still be sending
        assert client.post("/VIID/Subscribes", big).status == 413
    except (ConnectionError, OSError):
        pass
    assert client.get("/VIID/Other").status == 404
    assert daemon.running

    # Cancelling a subscription never made; deleting one that was.
    assert c.client().cancel(sub_id(77)).status_codes() == [4]
    r = c.client().delete([good])
    assert r.status == 200 and r.status_codes() == [0], r.body
    assert subscriptions(pg)[good]["state"] == "deleted"
    # Deleting it again answers 0: it is gone either way.
    assert c.client().delete([good]).status_codes() == [0]
    assert subscriber.violations == []


def test_failed_notification_is_retried_once_delivered(daemon, mosquitto, private_postgres,
                                                       platform, subscriber, pki, tmp_path):
    pg = private_postgres
    c = Cascade(daemon, mosquitto, pg, platform, pki, tmp_path)
    c.start()
    sid = sub_id(8)
    assert c.client().subscribe([viid.subscription(
        sid, [viid.SUBSCRIBE_FACES], subscriber.receive_addr)]).status_codes() == [0]
    subscriber.wait_for(lambda: len(notified(subscriber, "devices", sid)) == 3, 20,
                        "the catalogue")
    subscriber.reply_next(http_status=503)
    publish(mosquitto, [person(40)])
    subscriber.wait_for(lambda: len(notified(subscriber, "faces", sid)) == 1, 30,
                        "the face, after a retry")
    rows = wait_until(lambda: (x := [o for o in outbox(pg) if o["target"] == f"cascade/{sid}"])
                      and x[0]["state"] == "sent" and x, 20, "the row sent")
    assert rows[0]["attempts"] == 2
    faces = [r for r in subscriber.received("faces")]
    assert len(faces) == 2 and not faces[0].accepted and faces[1].accepted
    assert faces[0].id == faces[1].id          # the retry carries the same ids
