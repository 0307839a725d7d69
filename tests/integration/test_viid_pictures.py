"""picture = data: the pictures of faces and vehicles are fetched from the
devices and sent as base64 Data (GA/T 1400 upload to viid.py's platform),
with a real broker, PostgreSQL and daemon, and a picture server on loopback
standing in for the devices:

  1. each face and vehicle carries the bytes its device served, Width and
     Height read from them, StoragePath empty;
  2. a picture the device no longer has (404) fails its event alone
     (picture_missing), the others are sent;
  3. a device that answers 503 first: the event waits, is tried again and
     sent once;
  4. a picture larger than picture_max_bytes fails its event;
  5. the devices' credentials (Basic) are sent, and never logged.
"""

from __future__ import annotations

import base64
import http.server
import json
import struct
import threading

import pytest

import services
import viid
from ingest import start_daemon
from test_forward import outbox, wait_until
from test_viid_upload import BARRIER_ID, GATE_ID, OUR_ID, PASSWORD, UP, fixture, publish, \
    viid_config


def jpeg(width: int, height: int, fill: int = 0) -> bytes:
    """A JPEG's header as devices send it: SOI, a baseline SOF0 with the
    size, some bytes, EOI (enough for the size and the format)."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + \
        bytes([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])
    return b"\xff\xd8" + sof + bytes([fill]) * 64 + b"\xff\xd9"


class PictureServer:
    """Serves pictures by path; `fail_first[path] = n` answers 503 n times."""

    def __init__(self, auth: tuple[str, str] | None = None):
        self.pictures: dict[str, bytes] = {}
        self.fail_first: dict[str, int] = {}
        self.requests: list[str] = []
        self.auth = auth
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                with server.lock:
                    server.requests.append(self.path)
                    fails = server.fail_first.get(self.path, 0)
                    if fails:
                        server.fail_first[self.path] = fails - 1
                    body = server.pictures.get(self.path)
                want = None
                if server.auth is not None:
                    want = "Basic " + base64.b64encode(
                        f"{server.auth[0]}:{server.auth[1]}".encode()).decode()
                if want is not None and self.headers.get("Authorization") != want:
                    self._send(401, b"no", "text/plain",
                               {"WWW-Authenticate": 'Basic realm="camera"'})
                elif fails:
                    self._send(503, b"busy", "text/plain")
                elif body is None:
                    self._send(404, b"not found", "text/plain")
                else:
                    self._send(200, body, "image/jpeg")

            def _send(self, status, body, ctype, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer((services.LOCALHOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://{services.LOCALHOST}:{self.port}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def platform():
    p = viid.ViidPlatform(OUR_ID, password=PASSWORD)
    p.start()
    try:
        yield p
    finally:
        p.stop()


def person_at(n: int, url: str) -> tuple[str, bytes]:
    topic, doc = fixture("gate_person_access_hikvision")
    ev = doc["AccessControllerEvent"]
    ev["serialNo"] = 40000 + n
    ev["frontSerialNo"] = 40000 + n - 1
    doc["dateTime"] = f"2025-03-18T08:{n // 60 % 60:02d}:{n % 60:02d}+08:00"
    ev["pictureURL"] = url
    return topic, json.dumps(doc).encode()


def vehicle_at(n: int, urls: list[str]) -> tuple[str, bytes]:
    topic, doc = fixture("vehicle_barrier_anpr_hikvision")
    doc["dateTime"] = f"2025-03-18T10:{n // 60 % 60:02d}:{n % 60:02d}+08:00"
    doc["ANPR"]["vehicleInfo"]["index"] = 7000 + n
    doc["pictures"] = [dict(doc["pictures"][0], url=u) for u in urls]
    return topic, json.dumps(doc).encode()


def config(tmp_path, mosquitto, pg, platform, **target) -> str:
    t = {"picture": "data", "picture_timeout": 3}
    t.update(target)
    return viid_config(tmp_path, mosquitto, pg, platform, target=t)


def rows_settled(pg, n: int) -> list[dict]:
    return wait_until(lambda: (r := outbox(pg)) and len(r) == n and
                      all(x["state"] != "pending" for x in r) and r, 40,
                      f"{n} outbox rows settled")


def images(obj: dict) -> list[dict]:
    return obj["SubImageList"]["SubImageInfoObject"]


def test_pictures_sent_as_data(daemon, mosquitto, private_postgres, platform, tmp_path):
    pg = private_postgres
    with PictureServer() as pics:
        face = [jpeg(240, 300, fill=n) for n in range(3)]
        for n, b in enumerate(face):
            pics.pictures[f"/face/{n}.jpg"] = b
        car, plate = jpeg(1920, 1080, 7), jpeg(320, 96, 9)
        pics.pictures["/anpr/car.jpg"] = car
        pics.pictures["/anpr/plate.jpg"] = plate
        pics.fail_first["/face/2.jpg"] = 1
        conf = tmp_path / "gridbridge.conf"
        conf.write_text(config(tmp_path, mosquitto, pg, platform))
        start_daemon(daemon, conf)
        daemon.wait_log(UP, timeout=20)
        publish(mosquitto, [person_at(n, pics.url(f"/face/{n}.jpg")) for n in range(3)] +
                [person_at(3, pics.url("/face/gone.jpg")),
                 vehicle_at(0, [pics.url("/anpr/car.jpg"), pics.url("/anpr/plate.jpg")])])
        rows = rows_settled(pg, 5)

    by_state = {r["state"] for r in rows}
    assert by_state == {"sent", "failed"}, rows
    failed = [r for r in rows if r["state"] == "failed"]
    assert len(failed) == 1 and failed[0]["last_error"].startswith("picture_missing: HTTP 404")
    # The 503 picture was fetched again: its event went on its second attempt.
    assert pics.requests.count("/face/2.jpg") == 2
    assert sorted(r["attempts"] for r in rows if r["state"] == "sent") == [1, 1, 1, 2]

    faces = [r for r in platform.received("faces") if r.accepted]
    assert len(faces) == 3 and len({f.id for f in faces}) == 3
    got = sorted(base64.b64decode(images(f.obj)[0]["Data"]) for f in faces)
    assert got == sorted(face)
    for f in faces:
        img = images(f.obj)[0]
        assert img["StoragePath"] == "" and img["FileFormat"] == "Jpeg"
        assert (img["Width"], img["Height"]) == (240, 300)
    vehicles = [r for r in platform.received("motor_vehicles") if r.accepted]
    assert len(vehicles) == 1
    imgs = images(vehicles[0].obj)
    assert [base64.b64decode(i["Data"]) for i in imgs] == [car, plate]
    assert [(i["Width"], i["Height"]) for i in imgs] == [(1920, 1080), (320, 96)]
    assert platform.violations == []
    # No URL in the log: it may carry a device's address and credentials.
    assert not [x for x in daemon.lines if "/face/" in x or "/anpr/" in x]


def test_picture_too_large_and_device_credentials(daemon, mosquitto, private_postgres, platform,
                                                  tmp_path):
    pg = private_postgres
    pw = tmp_path / "camera-password"
    pw.write_text("cam-secret\n")
    pw.chmod(0o600)
    with PictureServer(auth=("camuser", "cam-secret")) as pics:
        pics.pictures["/small.jpg"] = jpeg(100, 100)
        pics.pictures["/big.jpg"] = jpeg(100, 100) + bytes(4096)
        conf = tmp_path / "gridbridge.conf"
        conf.write_text(config(tmp_path, mosquitto, pg, platform, picture_max_bytes="2K",
                               picture_username="camuser", picture_password_file=pw))
        start_daemon(daemon, conf)
        daemon.wait_log(UP, timeout=20)
        publish(mosquitto, [person_at(10, pics.url("/small.jpg")),
                            person_at(11, pics.url("/big.jpg"))])
        rows = rows_settled(pg, 2)
    states = sorted((r["state"], r["last_error"] or "") for r in rows)
    assert states[0][0] == "failed" and "max_bytes" in states[0][1], states
    assert states[1][0] == "sent"
    assert len([r for r in platform.received("faces") if r.accepted]) == 1
    assert "cam-secret" not in "\n".join(daemon.lines)
