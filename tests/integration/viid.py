"""A GA/T 1400 (VIID, 视图库) test platform and a test subscriber, on loopback.

    ViidPlatform(...)     the police platform gridbridge uploads to (upload mode):
                          Digest, User-Identify, sessions, /VIID/System/*,
                          /VIID/Faces, /VIID/MotorVehicles, /VIID/APEs
    ViidSubscriber(...)   the upper platform's ReceiveAddr in cascade mode: takes
                          SubscribeNotificationListObject POSTs and records them
    SubscribeClient(...)  the upper platform's side of /VIID/Subscribes: POST,
                          PUT, cancel and DELETE against a gridbridge listener

Real HTTP(S) on 127.0.0.1, an ephemeral port, served from a thread; standard
library only (run with Debian's /usr/bin/python3). Everything a sender gets
wrong is recorded in `violations` (a test asserts it stays empty) and answered
the way a strict platform answers it.

Where the public implementations of GA/T 1400 disagree, this platform takes
the side a sender must survive, or can be told to take either:

- Digest (GA/T 1400.4 registration, RFC 7616/2617): MD5, qop=auth, a fresh
  nonce and the opaque on every 401 challenge; nc must increase per nonce,
  `uri` must equal the request target, the opaque must come back. A nonce
  older than nonce_ttl_s is answered 401 with stale=true (libcurl then retries
  by itself). A nonce the platform does not know (it restarted) is answered
  401 *without* stale by default, as most platforms do: the sender sees a
  plain 401 and must register again; stale_unknown_nonce=True models the
  platforms that answer stale=true when the response hash is right.
  auth_on="all" (default) challenges every request, "register" only the
  registration (many platforms trust the session and User-Identify after
  that); auth="basic" or "none" for the platforms that use those.
- User-Identify is required on every request, the first unauthenticated one
  included, and must equal the registered 20-digit DeviceID: otherwise 401
  with no challenge (retrying with credentials would not help).
- Sessions: Register (authenticated, RegisterObject.DeviceID equal to
  User-Identify) opens one; only Register and Keepalive refresh it (an upload
  is not a keepalive: a sender that stops keeping alive while uploading loses
  its session after session_timeout_s); UnRegister closes it. Uploads and
  keepalives without a session are answered 401 (no stale). GET
  /VIID/System/Time needs no session.
- Time: SystemTimeObject.LocalTime as 14 digits (GA/T 1400.4),
  17 digits (with milliseconds) or epoch milliseconds (a JSON number, or a
  string with time_form="epoch_ms_str"), in Beijing time (UTC+8).
- Replies: ResponseStatusListObject with one ResponseStatusObject per object,
  in order, each with RequestURL, StatusCode (a number; code_as_string=True
  sends "0"), StatusString, Id, LocalTime. Whole-request failures (bad JSON,
  wrong envelope, wrong method) are answered with a single
  ResponseStatusObject. StatusCode (GA/T 1400.4): 0 OK, 1 other error,
  2 device busy, 3 device error, 4 invalid operation, 5 invalid XML format,
  6 invalid XML content, 7 invalid JSON format, 8 invalid JSON content,
  9 reboot. An object that fails validation is answered 8.
- Identifiers (GA/T 1400.1): DeviceID 20 digits; image id 41 digits = device
  id + "02" + YYYYMMDDhhmmss + 5-digit sequence; object id 48 digits = image
  id + object type ("06" face, "02" motor vehicle) + 5-digit sequence;
  SourceID = the first 41 digits of the object id, and its first 20 the
  DeviceID. Subscription and notification ids: 33 digits. Times
  YYYYMMDDhhmmss and a real calendar date.
- Faces (GA/T 1400.3 FaceObject, automatic collection): FaceID, InfoKind,
  SourceID, DeviceID and the five flags IsSuspectedTerrorist,
  IsCriminalInvolved, IsDetainees, IsVictim, IsSuspiciousPerson (0 or 1) are
  required; the bounding box is all four of LeftTopX/LeftTopY/RightBtmX/
  RightBtmY or none; every SubImageInfoObject needs ImageID (41 digits),
  EventSort, DeviceID, Type, FileFormat, ShotTime and Data (strict base64) or
  a StoragePath.
- Motor vehicles (MotorVehicleObject): MotorVehicleID, InfoKind, SourceID,
  DeviceID, StorageUrl1, PassTime, LaneNo, PlateColor, VehicleColor required;
  PlateNo (unless HasPlate is "0") without the separator dot. PlateColor and
  VehicleColor are strings from the colour code table: 1 black, 2 white,
  3 grey, 4 red, 5 blue, 6 yellow, 7 orange, 8 brown, 9 green, 10 purple,
  11 cyan, 12 pink, 13 transparent, 99 other.
- APEs: upload as PUT /VIID/APEs (POST accepted too) with
  APEListObject.APEObject[]; ApeID (20 digits), FunctionType and IsOnline
  ("1" online, "2" offline, "9" other) required.
- Notifications (cascade): SubscribeNotificationListObject.
  SubscribeNotificationObject[] with NotificationID, SubscribeID, Title,
  TriggerTime, InfoIDs and FaceObjectList.FaceObject[],
  MotorVehicleObjectList.MotorVehicleObject[], DeviceList.APEObject[]
  (catalogue) or DeviceStatusList.APEStatusObject[] (status). SubscribeDetail
  codes (GA/T 1400.4): 3 device catalogue, 4 device status, 12 faces,
  13 motor vehicles.
- Content-Type of every body: application/VIID+JSON;charset=UTF-8 (media
  type compared without case, parameters as written).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import http.server
import json
import re
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import services

VIID_CONTENT_TYPE = "application/VIID+JSON;charset=UTF-8"
BEIJING = timezone(timedelta(hours=8))
DEFAULT_DEVICE_ID = "34010405011200000001"

# ResponseStatusObject.StatusCode, GA/T 1400.4
OK, OTHER_ERROR, DEVICE_BUSY, DEVICE_ERROR, INVALID_OPERATION = 0, 1, 2, 3, 4
INVALID_XML_FORMAT, INVALID_XML_CONTENT, INVALID_JSON_FORMAT, INVALID_JSON_CONTENT = 5, 6, 7, 8
REBOOT = 9
STATUS_STRINGS = {0: "OK", 1: "Other Error", 2: "Device Busy", 3: "Device Error",
                  4: "Invalid Operation", 5: "Invalid XML Format",
                  6: "Invalid XML Content", 7: "Invalid JSON Format",
                  8: "Invalid JSON Content", 9: "Reboot"}

COLOR_CODES = frozenset([str(i) for i in range(1, 14)] + ["99"])
IS_ONLINE_CODES = frozenset({"1", "2", "9"})
FACE_FLAGS = ("IsSuspectedTerrorist", "IsCriminalInvolved", "IsDetainees",
              "IsVictim", "IsSuspiciousPerson")
BBOX = ("LeftTopX", "LeftTopY", "RightBtmX", "RightBtmY")

OBJECT_TYPE_FACE, OBJECT_TYPE_VEHICLE = "06", "02"
IMAGE_TYPE = "02"

# SubscribeDetail, GA/T 1400.4
SUBSCRIBE_DEVICE_CATALOGUE, SUBSCRIBE_DEVICE_STATUS = "3", "4"
SUBSCRIBE_FACES, SUBSCRIBE_MOTOR_VEHICLES = "12", "13"


# --------------------------------------------------------------------------
# HTTP Digest (RFC 7616 with MD5, RFC 2617 qop=auth)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def digest_ha1(username: str, realm: str, password: str) -> str:
    return _md5(f"{username}:{realm}:{password}")


def digest_ha2(method: str, uri: str) -> str:
    return _md5(f"{method}:{uri}")


def digest_response(username: str, realm: str, password: str, method: str, uri: str,
                    nonce: str, nc: str, cnonce: str, qop: str = "auth") -> str:
    """The request-digest of RFC 7616 3.4.1 for algorithm MD5 and qop=auth."""
    ha1 = digest_ha1(username, realm, password)
    ha2 = digest_ha2(method, uri)
    return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def read_digest_vector(path: Path | str) -> dict[str, str]:
    """key=value pairs of a digest test vector file (whitespace separated)."""
    out = {}
    for word in Path(path).read_text().split():
        key, _, value = word.partition("=")
        out[key] = value
    return out


_AUTH_PARAM = re.compile(r'\s*([A-Za-z][\w-]*)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]*)\s*,?')


def parse_auth_params(text: str) -> dict[str, str]:
    """The auth-params of a Digest challenge or credentials (after the scheme),
    names lowercased, quoted strings unquoted."""
    params, pos = {}, 0
    while pos < len(text):
        m = _AUTH_PARAM.match(text, pos)
        if m is None or m.end() == pos:
            break
        value = m.group(3) if m.group(3) is not None else m.group(2)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return params


def split_auth_header(value: str) -> tuple[str, str]:
    """'Digest a=b, ...' -> ('digest', 'a=b, ...')."""
    scheme, _, rest = value.strip().partition(" ")
    return scheme.lower(), rest


# --------------------------------------------------------------------------
# identifiers, times, sample objects


def beijing_now(offset_s: float = 0.0) -> datetime:
    return datetime.now(BEIJING) + timedelta(seconds=offset_s)


def viid_time(t: datetime | None = None) -> str:
    """YYYYMMDDhhmmss in Beijing time."""
    return (t or beijing_now()).astimezone(BEIJING).strftime("%Y%m%d%H%M%S")


def is_digits(value: Any, n: int) -> bool:
    return isinstance(value, str) and len(value) == n and value.isascii() and value.isdigit()


def valid_viid_time(value: Any) -> bool:
    """14 digits that are a real date and time."""
    if not is_digits(value, 14):
        return False
    try:
        datetime.strptime(value, "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


def image_id(device_id: str, when: str, seq: int) -> str:
    """41 digits: device id + "02" + YYYYMMDDhhmmss + 5-digit sequence."""
    return f"{device_id}{IMAGE_TYPE}{when}{seq:05d}"


def object_id(source_id: str, object_type: str, seq: int = 1) -> str:
    """48 digits: image id + object type + 5-digit sequence."""
    return f"{source_id}{object_type}{seq:05d}"


# The smallest file that starts like a JPEG, so Data decodes as one.
SAMPLE_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
SAMPLE_JPEG_B64 = base64.b64encode(SAMPLE_JPEG).decode()


def sample_face(seq: int = 1, device_id: str = "34010405011190000001",
                when: str = "20250318074215") -> dict:
    """A FaceObject like tests/fixtures/viid/faces_upload_request.json, with
    ids made from seq (the image sequence) and real base64 Data."""
    src = image_id(device_id, when, seq)

    def picture(n: int, kind: str, w: int, h: int) -> dict:
        return {"ImageID": image_id(device_id, when, seq + n), "EventSort": 10,
                "DeviceID": device_id, "StoragePath": "", "Type": kind,
                "FileFormat": "Jpeg", "ShotTime": when, "Width": w, "Height": h,
                "Data": SAMPLE_JPEG_B64}
    return {
        "FaceID": object_id(src, OBJECT_TYPE_FACE), "InfoKind": 1, "SourceID": src,
        "DeviceID": device_id, "LeftTopX": 812, "LeftTopY": 306, "RightBtmX": 1010,
        "RightBtmY": 552, "ShotTime": when, "FaceAppearTime": when,
        "FaceDisAppearTime": when, "IsDriver": 0, "IsForeigner": 0,
        "IsSuspectedTerrorist": 0, "IsCriminalInvolved": 0, "IsDetainees": 0,
        "IsVictim": 0, "IsSuspiciousPerson": 0,
        "SubImageList": {"SubImageInfoObject": [picture(0, "14", 1920, 1080),
                                                picture(1, "11", 240, 300)]},
    }


def sample_vehicle(seq: int = 1, device_id: str = "34010405011190000011",
                   when: str = "20250318080533") -> dict:
    """A MotorVehicleObject like tests/fixtures/viid/motorvehicles_upload_request.json."""
    src = image_id(device_id, when, seq)
    return {
        "MotorVehicleID": object_id(src, OBJECT_TYPE_VEHICLE), "InfoKind": 1,
        "SourceID": src, "DeviceID": device_id,
        "StorageUrl1": f"http://10.20.0.5:8080/pic/anpr_{when}_{seq}.jpg",
        "LeftTopX": 420, "LeftTopY": 380, "RightBtmX": 1480, "RightBtmY": 1060,
        "LaneNo": 1, "HasPlate": "1", "PlateClass": "02", "PlateColor": "5",
        "PlateNo": "皖A12345", "VehicleColor": "2", "PassTime": when,
        "SubImageList": {"SubImageInfoObject": [
            {"ImageID": src, "EventSort": 12, "DeviceID": device_id, "StoragePath": "",
             "Type": "01", "FileFormat": "Jpeg", "ShotTime": when, "Width": 2688,
             "Height": 1520, "Data": SAMPLE_JPEG_B64}]},
    }


def sample_ape(ape_id: str = "34010405011190000001", online: str = "1") -> dict:
    """An APEObject like tests/fixtures/viid/apes_status_update_request.json."""
    return {"ApeID": ape_id, "Name": "North gate pedestrian lane 1", "Model": "face terminal",
            "FunctionType": "2", "IPAddr": "10.20.1.31", "Port": 80,
            "Longitude": 117.2272, "Latitude": 31.8206, "PlaceCode": "340104",
            "IsOnline": online}


def faces_body(faces: list[dict]) -> dict:
    return {"FaceListObject": {"FaceObject": faces}}


def vehicles_body(vehicles: list[dict]) -> dict:
    return {"MotorVehicleListObject": {"MotorVehicleObject": vehicles}}


def apes_body(apes: list[dict]) -> dict:
    return {"APEListObject": {"APEObject": apes}}


# --------------------------------------------------------------------------
# validation of received objects: each check returns a list of problems


def _check_device_id(obj: dict, key: str, problems: list[str], required: bool = True) -> None:
    if key not in obj:
        if required:
            problems.append(f"{key} missing")
    elif not is_digits(obj[key], 20):
        problems.append(f"{key} {obj[key]!r} is not 20 digits")


def _check_image_id(value: Any, key: str, problems: list[str]) -> None:
    if not is_digits(value, 41):
        problems.append(f"{key} {value!r} is not 41 digits")
        return
    if value[20:22] != IMAGE_TYPE:
        problems.append(f"{key} {value} has type {value[20:22]!r}, not {IMAGE_TYPE!r}")
    if not valid_viid_time(value[22:36]):
        problems.append(f"{key} {value} has no valid time at digits 23-36")


def _check_object_ids(obj: dict, id_key: str, object_type: str, problems: list[str]) -> None:
    oid, src = obj.get(id_key), obj.get("SourceID")
    if id_key not in obj:
        problems.append(f"{id_key} missing")
    elif not is_digits(oid, 48):
        problems.append(f"{id_key} {oid!r} is not 48 digits")
    elif oid[41:43] != object_type:
        problems.append(f"{id_key} {oid} has object type {oid[41:43]!r}, not {object_type!r}")
    if "SourceID" not in obj:
        problems.append("SourceID missing")
        return
    _check_image_id(src, "SourceID", problems)
    if is_digits(oid, 48) and is_digits(src, 41) and oid[:41] != src:
        problems.append(f"{id_key} {oid} does not start with SourceID {src}")
    if is_digits(src, 41) and is_digits(obj.get("DeviceID"), 20) and src[:20] != obj["DeviceID"]:
        problems.append(f"SourceID {src} does not start with DeviceID {obj['DeviceID']}")


def _check_time(obj: dict, key: str, problems: list[str], required: bool = False) -> None:
    if key not in obj:
        if required:
            problems.append(f"{key} missing")
    elif not valid_viid_time(obj[key]):
        problems.append(f"{key} {obj[key]!r} is not a valid YYYYMMDDhhmmss time")


def _check_int(obj: dict, key: str, problems: list[str], required: bool = False,
               allowed: set | None = None) -> None:
    if key not in obj:
        if required:
            problems.append(f"{key} missing")
        return
    v = obj[key]
    if not isinstance(v, int) or isinstance(v, bool):
        problems.append(f"{key} {v!r} is not an integer")
    elif allowed is not None and v not in allowed:
        problems.append(f"{key} {v!r} not in {sorted(allowed)}")


def _check_code(obj: dict, key: str, table: frozenset, problems: list[str],
                required: bool = True) -> None:
    if key not in obj:
        if required:
            problems.append(f"{key} missing")
    elif not isinstance(obj[key], str) or obj[key] not in table:
        problems.append(f"{key} {obj[key]!r} is not a code of its table")


def _check_bbox(obj: dict, problems: list[str]) -> None:
    present = [k for k in BBOX if k in obj]
    if not present:
        return
    if len(present) != len(BBOX):
        problems.append(f"bounding box incomplete: only {present}")
        return
    for k in BBOX:
        _check_int(obj, k, problems)
    if all(isinstance(obj[k], int) for k in BBOX) and \
            not (obj["LeftTopX"] < obj["RightBtmX"] and obj["LeftTopY"] < obj["RightBtmY"]):
        problems.append(f"bounding box {[obj[k] for k in BBOX]} is empty or inverted")


def _check_sub_images(obj: dict, problems: list[str]) -> None:
    if "SubImageList" not in obj:
        return
    lst = obj["SubImageList"]
    images = lst.get("SubImageInfoObject") if isinstance(lst, dict) else None
    if not isinstance(images, list):
        problems.append("SubImageList has no SubImageInfoObject list")
        return
    for i, img in enumerate(images):
        where = f"SubImageInfoObject[{i}]"
        if not isinstance(img, dict):
            problems.append(f"{where} is not an object")
            continue
        sub: list[str] = []
        if "ImageID" in img:
            _check_image_id(img["ImageID"], "ImageID", sub)
        else:
            sub.append("ImageID missing")
        _check_int(img, "EventSort", sub, required=True)
        _check_device_id(img, "DeviceID", sub)
        for key in ("Type", "FileFormat"):
            if not isinstance(img.get(key), str) or not img.get(key):
                sub.append(f"{key} missing or empty")
        _check_time(img, "ShotTime", sub, required=True)
        _check_int(img, "Width", sub)
        _check_int(img, "Height", sub)
        data, path = img.get("Data"), img.get("StoragePath")
        if data:
            try:
                base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError, TypeError):
                sub.append("Data is not base64")
        elif not path:
            sub.append("neither Data nor StoragePath")
        problems.extend(f"{where}: {p}" for p in sub)


def check_face(obj: dict) -> list[str]:
    """Problems with a FaceObject (empty when valid)."""
    p: list[str] = []
    _check_device_id(obj, "DeviceID", p)
    _check_object_ids(obj, "FaceID", OBJECT_TYPE_FACE, p)
    _check_int(obj, "InfoKind", p, required=True, allowed={0, 1, 2})
    for flag in FACE_FLAGS:
        _check_int(obj, flag, p, required=True, allowed={0, 1})
    for flag in ("IsDriver", "IsForeigner"):
        _check_int(obj, flag, p, allowed={0, 1, 2})
    _check_bbox(obj, p)
    for key in ("ShotTime", "FaceAppearTime", "FaceDisAppearTime"):
        _check_time(obj, key, p)
    _check_sub_images(obj, p)
    return p


def check_vehicle(obj: dict) -> list[str]:
    """Problems with a MotorVehicleObject (empty when valid)."""
    p: list[str] = []
    _check_device_id(obj, "DeviceID", p)
    _check_object_ids(obj, "MotorVehicleID", OBJECT_TYPE_VEHICLE, p)
    _check_int(obj, "InfoKind", p, required=True, allowed={0, 1, 2})
    if not isinstance(obj.get("StorageUrl1"), str) or not obj.get("StorageUrl1"):
        p.append("StorageUrl1 missing or empty")
    _check_time(obj, "PassTime", p, required=True)
    _check_int(obj, "LaneNo", p, required=True)
    _check_code(obj, "PlateColor", COLOR_CODES, p)
    _check_code(obj, "VehicleColor", COLOR_CODES, p)
    if obj.get("HasPlate") != "0":
        plate = obj.get("PlateNo")
        if not isinstance(plate, str) or not plate:
            p.append("PlateNo missing or empty")
        elif any(c in plate for c in ".·•"):
            p.append(f"PlateNo {plate!r} carries a separator dot")
    if "Direction" in obj and not (isinstance(obj["Direction"], str) and obj["Direction"].isdigit()):
        p.append(f"Direction {obj['Direction']!r} is not a code")
    _check_bbox(obj, p)
    _check_sub_images(obj, p)
    return p


def check_ape(obj: dict) -> list[str]:
    """Problems with an APEObject (empty when valid)."""
    p: list[str] = []
    _check_device_id(obj, "ApeID", p)
    if not isinstance(obj.get("FunctionType"), str) or not obj.get("FunctionType"):
        p.append("FunctionType missing or empty")
    _check_code(obj, "IsOnline", IS_ONLINE_CODES, p)
    _check_int(obj, "Port", p)
    return p


def check_ape_status(obj: dict) -> list[str]:
    """Problems with an APEStatusObject {ApeID, IsOnline, CurrentTime}."""
    p: list[str] = []
    _check_device_id(obj, "ApeID", p)
    _check_code(obj, "IsOnline", IS_ONLINE_CODES, p)
    _check_time(obj, "CurrentTime", p, required=True)
    return p


@dataclass(frozen=True)
class ObjectKind:
    """One VIID object list: its envelope, the id field and its checker."""
    name: str          # "faces", "motor_vehicles", "apes"
    list_key: str      # "FaceListObject"
    item_key: str      # "FaceObject"
    id_key: str        # "FaceID"
    check: Callable[[dict], list[str]]


FACES = ObjectKind("faces", "FaceListObject", "FaceObject", "FaceID", check_face)
MOTOR_VEHICLES = ObjectKind("motor_vehicles", "MotorVehicleListObject",
                            "MotorVehicleObject", "MotorVehicleID", check_vehicle)
APES = ObjectKind("apes", "APEListObject", "APEObject", "ApeID", check_ape)

UPLOAD_PATHS = {"/VIID/Faces": (FACES, ("POST",)),
                "/VIID/MotorVehicles": (MOTOR_VEHICLES, ("POST",)),
                "/VIID/APEs": (APES, ("PUT", "POST"))}

# containers of a SubscribeNotificationObject: key -> (item key, id key, check, kind)
NOTIFICATION_LISTS = {
    "FaceObjectList": ("FaceObject", "FaceID", check_face, "faces"),
    "MotorVehicleObjectList": ("MotorVehicleObject", "MotorVehicleID", check_vehicle,
                               "motor_vehicles"),
    "DeviceList": ("APEObject", "ApeID", check_ape, "devices"),
    "DeviceStatusList": ("APEStatusObject", "ApeID", check_ape_status, "device_status"),
}


def content_type_ok(value: str | None) -> bool:
    """application/VIID+JSON;charset=UTF-8, media type and charset without case."""
    if not value:
        return False
    media, _, params = value.partition(";")
    if media.strip().lower() != "application/viid+json":
        return False
    charset = dict(p.strip().lower().partition("=")[::2] for p in params.split(";") if p.strip())
    return charset.get("charset", "").strip('"') == "utf-8"


# --------------------------------------------------------------------------
# what the server records and how it is told to answer


@dataclass
class ViidRequest:
    """One request as received, and how it was answered."""
    no: int                  # 1, 2, ... in order of arrival
    method: str
    path: str                # the request target, query included
    headers: Any             # email.message.Message, case-insensitive
    body: bytes
    received_at: float       # time.time()
    authorized: bool = False
    http_status: int | None = None   # None: connection dropped
    response_body: bytes = b""
    response_headers: list = field(default_factory=list)   # [(name, value)]

    def response_header(self, name: str) -> str | None:
        return next((v for k, v in self.response_headers if k.lower() == name.lower()), None)

    def json(self):
        return json.loads(self.body)


@dataclass
class Violation:
    """Something a sender got wrong; `str(v)` reads as one line."""
    request_no: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"#{self.request_no} {self.path}: {self.message}"


@dataclass
class Received:
    """One object taken from an upload or a notification."""
    kind: str                # "faces", "motor_vehicles", "apes", "devices", ...
    id: str | None
    obj: dict
    request_no: int
    index: int               # position in its list
    status_code: int | None  # what the platform answered for it (None: no status list)
    problems: list[str]
    parent: int | None = None  # in a notification: the notification's position

    @property
    def accepted(self) -> bool:
        return self.status_code == OK


@dataclass
class Reply:
    """How to answer a request, beyond the defaults. Positions are 0-based.

    http_status   other than 200: answered with that status (and a
                  ResponseStatusObject body unless body is given)
    body          a raw body instead of the status list (e.g. b"OK": a 200
                  that is not a status list)
    delay         seconds to wait before answering (objects are recorded first)
    drop          close the connection without answering
    code          StatusCode for every object; codes: {position: StatusCode}
    omit_ids      leave Id out of every ResponseStatusObject
    single        one ResponseStatusObject (the first object's) instead of a list
    code_as_string  StatusCode "0" instead of 0
    content_type  of the reply
    """
    http_status: int = 200
    body: bytes | str | None = None
    delay: float = 0.0
    drop: bool = False
    code: int | None = None
    codes: dict[int, int] = field(default_factory=dict)
    status_string: str | None = None
    omit_ids: bool = False
    single: bool = False
    code_as_string: bool = False
    content_type: str = VIID_CONTENT_TYPE


@dataclass
class _Rule:
    path: str | None         # None: every upload (or notification) path
    reply: Reply
    remaining: int | None    # None: forever


@dataclass
class _Nonce:
    issued: float            # time.monotonic()
    last_nc: int = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as libcurl expects
    server_version = "gridbridge-test-viid"
    timeout = 30

    def log_message(self, format, *args):
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self):
        server: _ViidServer = self.server.viid
        req = server._new_request(self.command, self.path, self.headers, self._read_body())
        status, headers, body, delay, drop = server._dispatch(req)
        if delay:
            time.sleep(delay)
        if drop:
            server._finish(req, None, b"", [])
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        server._finish(req, status, body, headers)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


class _HTTPServer(http.server.ThreadingHTTPServer):
    """TLS handshake in the connection's thread, so a bad client blocks nobody."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, viid: "_ViidServer"):
        self.viid = viid
        super().__init__(address, _Handler)

    def finish_request(self, request, client_address):
        request.settimeout(10)
        try:
            conn = request if self.viid.context is None else \
                self.viid.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.viid._note_tls_failure(client_address, e)
            return
        conn.settimeout(_Handler.timeout)
        self.viid._track(conn, True)
        try:
            self.RequestHandlerClass(conn, client_address, self)
        except (OSError, ValueError):
            pass
        finally:
            self.viid._track(conn, False)
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def handle_error(self, request, client_address):
        pass


def _json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


class _ViidServer:
    """What the platform and the subscriber share: the listener (HTTP or TLS
    with the test PKI), Digest/Basic authentication, User-Identify, recording,
    violations and scripted replies. Subclasses implement _route()."""

    def __init__(self, *, username: str | None = None, password: str = "Pass1234",
                 realm: str = "viid", auth: str = "digest", auth_on: str = "all",
                 user_identify: str | None = DEFAULT_DEVICE_ID,
                 nonce_ttl_s: float = 300.0, stale_unknown_nonce: bool = False,
                 pki: "services.TestPKI | None" = None, require_client_cert: bool = False,
                 port: int = 0):
        if auth not in ("digest", "basic", "none") or auth_on not in ("all", "register"):
            raise ValueError(f"auth={auth!r} auth_on={auth_on!r}")
        self.user_identify = user_identify
        self.username = username if username is not None else (user_identify or "admin")
        self.password = password
        self.realm = realm
        self.auth = auth
        self.auth_on = auth_on
        self.nonce_ttl_s = nonce_ttl_s
        self.stale_unknown_nonce = stale_unknown_nonce
        self.pki = pki
        self.context: ssl.SSLContext | None = None
        if pki is not None:
            # as services.HttpsEndpoint builds it; client certificates optional
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.minimum_version = ssl.TLSVersion.TLSv1_2
            self.context.load_cert_chain(pki.server_cert, pki.server_key)
            self.context.load_verify_locations(cafile=pki.ca_file)
            self.context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
        self.host = services.LOCALHOST
        self.port = port
        self._cond = threading.Condition()
        self._requests: list[ViidRequest] = []
        self._violations: list[Violation] = []
        self._auth_failures: list[tuple[int, str]] = []
        self._received: list[Received] = []
        self._tls_failures: list[tuple[tuple, str]] = []
        self._nonces: dict[str, _Nonce] = {}
        self._opaque = secrets.token_hex(16)
        self._oneshot: list[_Rule] = []
        self._always: list[_Rule] = []
        self._id_codes: dict[str, list] = {}   # id -> [code, status_string, remaining]
        self._conns: set = set()
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle

    @property
    def scheme(self) -> str:
        return "https" if self.context is not None else "http"

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. http://127.0.0.1:41234."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self):
        if self._server is not None:
            raise services.ServiceError(f"{self!r} is already serving")
        self._server = _HTTPServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"viid-{self.port}", daemon=True)
        self._thread.start()
        services._register(self)
        return self

    def stop(self) -> None:
        """Stop listening and cut the open connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self._thread.join(5)
        with self._cond:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        services._unregister(self)

    _emergency_stop = stop

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} {'serving' if self.running else 'stopped'}>"

    def _track(self, conn, add: bool) -> None:
        with self._cond:
            (self._conns.add if add else self._conns.discard)(conn)

    def _note_tls_failure(self, address, error) -> None:
        with self._cond:
            self._tls_failures.append((address, str(error)))
            self._cond.notify_all()

    # --- what was received

    @property
    def requests(self) -> list[ViidRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def violations(self) -> list[str]:
        """Every protocol or content error of the senders, one line each."""
        with self._cond:
            return [str(v) for v in self._violations]

    @property
    def auth_failures(self) -> list[tuple[int, str]]:
        """(request no, why) for every request whose credentials were refused
        (a 401 challenge to a request without credentials is not one)."""
        with self._cond:
            return list(self._auth_failures)

    @property
    def tls_failures(self) -> list[tuple[tuple, str]]:
        with self._cond:
            return list(self._tls_failures)

    def received(self, kind: str | None = None) -> list[Received]:
        """Every object received (each delivery), optionally of one kind."""
        with self._cond:
            return [r for r in self._received if kind is None or r.kind == kind]

    def accepted_ids(self, kind: str) -> list[str]:
        """Ids of the objects answered StatusCode 0, in order, repeats included."""
        return [r.id for r in self.received(kind) if r.accepted]

    def duplicates(self, kind: str) -> dict[str, int]:
        """Ids accepted more than once -> how often."""
        return {k: n for k, n in Counter(self.accepted_ids(kind)).items() if n > 1}

    def clear(self) -> None:
        """Forget requests, objects, violations and failures (not sessions or scripts)."""
        with self._cond:
            self._requests.clear()
            self._violations.clear()
            self._auth_failures.clear()
            self._received.clear()
            self._tls_failures.clear()

    def wait_for(self, pred: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        """Wait until pred() (called under the lock as requests arrive) holds."""
        with self._cond:
            if not self._cond.wait_for(pred, timeout):
                raise TimeoutError(f"{self!r}: {what or 'condition'} not within {timeout}s "
                                   f"({len(self._requests)} requests, violations: "
                                   f"{[str(v) for v in self._violations][:5]})")

    def wait_for_requests(self, n: int, path: str | None = None,
                          timeout: float = 10.0) -> list[ViidRequest]:
        def count():
            return sum(1 for r in self._requests
                       if r.http_status is not None and (path is None or r.path == path))
        self.wait_for(lambda: count() >= n, timeout, f"{n} answered request(s) to {path or '*'}")
        return [r for r in self.requests if path is None or r.path == path]

    def wait_for_accepted(self, kind: str, n: int, timeout: float = 10.0) -> list[str]:
        """Wait until n distinct ids of kind were answered 0; return accepted ids."""
        def distinct():
            return len({r.id for r in self._received if r.kind == kind and r.accepted})
        self.wait_for(lambda: distinct() >= n, timeout, f"{n} accepted {kind}")
        return self.accepted_ids(kind)

    # --- scripting

    def reply_next(self, path: str | None = None, times: int = 1, **kwargs) -> None:
        """Answer the next `times` requests to path (None: every object
        upload/notification path) as Reply(**kwargs) says; queued rules are
        used in order, before reply_always()."""
        with self._cond:
            self._oneshot.append(_Rule(path, Reply(**kwargs), times))

    def reply_always(self, path: str | None = None, **kwargs) -> None:
        """Answer every request to path as Reply(**kwargs) says (the latest
        such rule wins); reply_always(path) with no arguments restores the
        normal answer."""
        with self._cond:
            self._always = [r for r in self._always if r.path != path]
            if kwargs:
                self._always.append(_Rule(path, Reply(**kwargs), None))

    def status_for_id(self, object_id: str, code: int, times: int | None = None,
                      status_string: str | None = None) -> None:
        """Answer StatusCode code for the object with this id (the next `times`
        deliveries, None: always)."""
        with self._cond:
            self._id_codes[object_id] = [code, status_string, times]

    def status_for_position(self, index: int, code: int, path: str | None = None) -> None:
        """Answer StatusCode code for the object at 0-based position index of
        the next upload (to path)."""
        self.reply_next(path, codes={index: code})

    def reset_scripts(self) -> None:
        with self._cond:
            self._oneshot.clear()
            self._always.clear()
            self._id_codes.clear()

    def _take_reply(self, path: str, object_path: bool) -> Reply:
        with self._cond:
            for i, rule in enumerate(self._oneshot):
                if rule.path == path or (rule.path is None and object_path):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        del self._oneshot[i]
                    return rule.reply
            for rule in reversed(self._always):
                if rule.path == path or (rule.path is None and object_path):
                    return rule.reply
        return Reply()

    def _take_id_code(self, oid: str | None) -> tuple[int, str | None] | None:
        with self._cond:
            entry = self._id_codes.get(oid) if oid is not None else None
            if entry is None:
                return None
            code, text, remaining = entry
            if remaining is not None:
                entry[2] -= 1
                if entry[2] <= 0:
                    del self._id_codes[oid]
            return code, text

    # --- request processing

    def _new_request(self, method: str, path: str, headers, body: bytes) -> ViidRequest:
        with self._cond:
            req = ViidRequest(no=len(self._requests) + 1, method=method, path=path,
                              headers=headers, body=body, received_at=time.time())
            self._requests.append(req)
            return req

    def _finish(self, req: ViidRequest, status: int | None, body: bytes, headers: list) -> None:
        with self._cond:
            req.http_status, req.response_body, req.response_headers = status, body, headers
            self._cond.notify_all()

    def _violation(self, req: ViidRequest, message: str) -> None:
        with self._cond:
            self._violations.append(Violation(req.no, req.path, message))

    def _auth_failure(self, req: ViidRequest, why: str) -> None:
        with self._cond:
            self._auth_failures.append((req.no, why))

    def _dispatch(self, req: ViidRequest):
        """(status, headers, body, delay, drop) for a request."""
        try:
            return self._route(req)
        except Exception as e:  # a bug here must show in the test, not hang it
            self._violation(req, f"test server error: {e!r}")
            return 500, [], str(e).encode(), 0.0, False

    def _route(self, req: ViidRequest):
        raise NotImplementedError

    # --- replies

    def status_object(self, req: ViidRequest, code: int, oid: str | None,
                      text: str | None = None, as_string: bool = False) -> dict:
        obj = {"RequestURL": urllib.parse.urlsplit(req.path).path,
               "StatusCode": str(code) if as_string else code,
               "StatusString": text or STATUS_STRINGS.get(code, "Error")}
        if oid is not None:
            obj["Id"] = oid
        obj["LocalTime"] = viid_time()
        return obj

    def _json_reply(self, doc: Any, status: int = 200, headers: list | None = None,
                    content_type: str = VIID_CONTENT_TYPE, delay: float = 0.0):
        return (status, [("Content-Type", content_type), *(headers or [])],
                _json_bytes(doc), delay, False)

    def _single(self, req: ViidRequest, code: int, oid: str | None = None,
                text: str | None = None, status: int = 200, headers: list | None = None):
        return self._json_reply({"ResponseStatusObject": self.status_object(req, code, oid, text)},
                                status, headers)

    def _unauthorized(self, req: ViidRequest, text: str, challenge: bool = True,
                      stale: bool = False):
        headers = [("WWW-Authenticate", self._challenge(stale))] if challenge and \
            self.auth != "none" else []
        return self._single(req, INVALID_OPERATION, None, text, 401, headers)

    # --- authentication

    def _challenge(self, stale: bool = False) -> str:
        if self.auth == "basic":
            return f'Basic realm="{self.realm}"'
        nonce = secrets.token_hex(16)
        with self._cond:
            now = time.monotonic()
            # forget nonces long expired, so the table stays small
            self._nonces = {k: v for k, v in self._nonces.items()
                            if now - v.issued < 4 * self.nonce_ttl_s}
            self._nonces[nonce] = _Nonce(issued=now)
        return (f'Digest realm="{self.realm}", qop="auth", nonce="{nonce}", '
                f'opaque="{self._opaque}", algorithm=MD5'
                + (", stale=true" if stale else ""))

    def _needs_auth(self, req: ViidRequest) -> bool:
        if self.auth == "none":
            return False
        return self.auth_on == "all" or \
            urllib.parse.urlsplit(req.path).path == "/VIID/System/Register"

    def _authenticate(self, req: ViidRequest):
        """None when the request may proceed, else the 401 reply."""
        if not self._needs_auth(req):
            return None
        value = req.headers.get("Authorization")
        if not value:
            return self._unauthorized(req, "authentication required")
        scheme, rest = split_auth_header(value)
        if self.auth == "basic":
            return self._check_basic(req, scheme, rest)
        if scheme != "digest":
            self._auth_failure(req, f"scheme {scheme!r}, Digest expected")
            return self._unauthorized(req, "Digest expected")
        return self._check_digest(req, parse_auth_params(rest))

    def _check_basic(self, req: ViidRequest, scheme: str, rest: str):
        try:
            user, _, pw = base64.b64decode(rest.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = pw = None
        if scheme != "basic" or user != self.username or pw != self.password:
            self._auth_failure(req, "bad Basic credentials")
            return self._unauthorized(req, "bad credentials")
        req.authorized = True
        return None

    def _check_digest(self, req: ViidRequest, p: dict[str, str]):
        def refuse(why: str, stale: bool = False):
            self._auth_failure(req, why)
            return self._unauthorized(req, why, stale=stale)

        missing = [k for k in ("username", "realm", "nonce", "uri", "response", "qop",
                               "nc", "cnonce") if k not in p]
        if missing:
            return refuse(f"Digest parameters missing: {missing}")
        if p["username"] != self.username:
            return refuse(f"unknown user {p['username']!r}")
        if p["realm"] != self.realm:
            return refuse(f"realm {p['realm']!r}, not {self.realm!r}")
        if p.get("algorithm", "MD5").upper() != "MD5":
            return refuse(f"algorithm {p['algorithm']!r}")
        if p["qop"] != "auth":
            return refuse(f"qop {p['qop']!r}")
        if p["uri"] != req.path:
            return refuse(f"uri {p['uri']!r} is not the request target {req.path!r}")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", p["nc"]):
            return refuse(f"nc {p['nc']!r} is not 8 hex digits")
        expected = digest_response(self.username, self.realm, self.password, req.method,
                                   p["uri"], p["nonce"], p["nc"], p["cnonce"], p["qop"])
        right = hmac.compare_digest(expected, p["response"].lower())
        nc = int(p["nc"], 16)
        with self._cond:
            entry = self._nonces.get(p["nonce"])
            if entry is None:
                verdict = "unknown"
            elif p.get("opaque") != self._opaque:
                verdict = "opaque"
            elif time.monotonic() - entry.issued > self.nonce_ttl_s:
                verdict = "expired"
            elif right and nc <= entry.last_nc:
                verdict = "replay"
            else:
                verdict = "ok"
                if right:
                    entry.last_nc = nc
        if not right:
            return refuse("wrong response (password)")
        if verdict == "unknown":
            return refuse("unknown nonce", stale=self.stale_unknown_nonce)
        if verdict == "opaque":
            return refuse("opaque not returned as issued")
        if verdict == "expired":
            return refuse("nonce expired", stale=True)
        if verdict == "replay":
            return refuse(f"nc {p['nc']} not above the last one for this nonce")
        req.authorized = True
        return None

    def _check_user_identify(self, req: ViidRequest):
        """None when User-Identify is right (or not checked), else the reply."""
        if self.user_identify is None:
            return None
        ui = req.headers.get("User-Identify")
        if ui is None:
            self._violation(req, "User-Identify missing")
            return self._unauthorized(req, "User-Identify missing", challenge=False)
        if ui != self.user_identify:
            self._violation(req, f"User-Identify {ui!r} is not {self.user_identify!r}")
            return self._unauthorized(req, "User-Identify unknown", challenge=False)
        return None

    def _parse_json_body(self, req: ViidRequest):
        """(document, None) or (None, error reply); checks the Content-Type."""
        if not content_type_ok(req.headers.get("Content-Type")):
            self._violation(req, f"Content-Type {req.headers.get('Content-Type')!r}, "
                                 f"not {VIID_CONTENT_TYPE!r}")
        try:
            return json.loads(req.body.decode("utf-8")), None
        except (UnicodeDecodeError, ValueError) as e:
            self._violation(req, f"body is not UTF-8 JSON: {e}")
            return None, self._single(req, INVALID_JSON_FORMAT, None, "Invalid JSON Format")

    def _envelope(self, req: ViidRequest, doc: Any, list_key: str, item_key: str):
        """(items, None) or (None, error reply) for {list_key: {item_key: [...]}}."""
        inner = doc.get(list_key) if isinstance(doc, dict) else None
        items = inner.get(item_key) if isinstance(inner, dict) else None
        if not isinstance(items, list) or not items or \
                not all(isinstance(o, dict) for o in items):
            self._violation(req, f"envelope is not {{{list_key!r}: {{{item_key!r}: [objects]}}}}")
            return None, self._single(req, INVALID_JSON_CONTENT, None,
                                      f"{list_key}.{item_key} expected")
        if set(doc) != {list_key}:
            self._violation(req, f"unexpected top-level keys {sorted(set(doc) - {list_key})}")
        return items, None

    def _answer_objects(self, req: ViidRequest, kind: str, id_key: str, items: list[dict],
                        check: Callable[[dict], list[str]]):
        """Validate, record and answer a list of objects, as the scripts say."""
        path = urllib.parse.urlsplit(req.path).path
        reply = self._take_reply(path, True)
        statuses, seen = [], set()
        for i, obj in enumerate(items):
            oid = obj.get(id_key) if isinstance(obj.get(id_key), str) else None
            problems = check(obj)
            if oid is not None and oid in seen:
                problems.append(f"{id_key} {oid} twice in one request")
            seen.add(oid)
            for prob in problems:
                self._violation(req, f"{kind}[{i}] {oid}: {prob}")
            code, text = self._object_code(i, oid, problems, reply)
            statuses.append((code, text, oid))
            with self._cond:
                self._received.append(Received(
                    kind, oid, obj, req.no, i,
                    code if reply.http_status == 200 and reply.body is None and not reply.drop
                    else None, problems))
        return self._status_list_reply(req, reply, statuses)

    def _object_code(self, i: int, oid: str | None, problems: list[str],
                     reply: Reply) -> tuple[int, str | None]:
        if problems:
            return INVALID_JSON_CONTENT, "; ".join(problems)[:200]
        scripted = self._take_id_code(oid)
        if scripted is not None:
            return scripted
        if i in reply.codes:
            return reply.codes[i], reply.status_string
        if reply.code is not None:
            return reply.code, reply.status_string
        return OK, None

    def _status_list_reply(self, req: ViidRequest, reply: Reply,
                           statuses: list[tuple[int, str | None, str | None]]):
        if reply.drop:
            return 0, [], b"", reply.delay, True
        if reply.body is not None:
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
            return reply.http_status, [("Content-Type", reply.content_type)], body, \
                reply.delay, False
        if reply.http_status != 200:
            doc = {"ResponseStatusObject": self.status_object(req, OTHER_ERROR, None,
                                                              "scripted HTTP error")}
            return self._json_reply(doc, reply.http_status, content_type=reply.content_type,
                                    delay=reply.delay)
        objs = [self.status_object(req, code, None if reply.omit_ids else oid, text,
                                   reply.code_as_string) for code, text, oid in statuses]
        doc = {"ResponseStatusObject": objs[0]} if reply.single else \
            {"ResponseStatusListObject": {"ResponseStatusObject": objs}}
        return self._json_reply(doc, content_type=reply.content_type, delay=reply.delay)


# --------------------------------------------------------------------------
# the platform (upload mode)


TIME_FORMS = ("14", "17", "epoch_ms", "epoch_ms_str")


class ViidPlatform(_ViidServer):
    """A GA/T 1400 platform on 127.0.0.1:<ephemeral> (see the module docstring
    for what it enforces).

        p = ViidPlatform(device_id="34010405011200000001", password="Pass1234")
        p.start(); p.url                      # http://127.0.0.1:PORT (https with pki=)
        p.sessions, p.expire_sessions()       # a platform restart
        p.status_for_id(face_id, 8); p.status_for_position(1, 2)
        p.reply_next(http_status=503); p.reply_always(omit_ids=True)
        p.accepted_ids("faces"), p.duplicates("faces"), p.violations

    device_id: the registered 20-digit DeviceID (User-Identify must equal it);
    username: defaults to device_id. session_timeout_s: a session not kept
    alive for that long is gone (None: never). time_form: how GET
    /VIID/System/Time answers (TIME_FORMS); clock_offset_s skews that clock.
    """

    def __init__(self, device_id: str = DEFAULT_DEVICE_ID, *,
                 session_timeout_s: float | None = None, time_form: str = "14",
                 clock_offset_s: float = 0.0, server_id: str = "34010000005030000001",
                 **kwargs):
        if time_form not in TIME_FORMS:
            raise ValueError(f"time_form {time_form!r} not in {TIME_FORMS}")
        super().__init__(user_identify=device_id, **kwargs)
        self.device_id = device_id
        self.session_timeout_s = session_timeout_s
        self.time_form = time_form
        self.clock_offset_s = clock_offset_s
        self.server_id = server_id
        self._sessions: dict[str, float] = {}   # DeviceID -> last Register/Keepalive
        self.registrations = 0
        self.keepalives = 0
        self.unregistrations = 0
        self.restarts = 0

    @property
    def sessions(self) -> list[str]:
        """DeviceIDs with a live session."""
        with self._cond:
            return [d for d in self._sessions if self._session_alive(d)]

    def expire_sessions(self) -> None:
        """Forget every session and nonce, as a platform restart does."""
        with self._cond:
            self._sessions.clear()
            self._nonces.clear()
            self._opaque = secrets.token_hex(16)
            self.restarts += 1

    def wait_registered(self, timeout: float = 10.0, registrations: int = 1) -> None:
        """Wait until a session is open after at least `registrations` registrations."""
        self.wait_for(lambda: self.registrations >= registrations and
                      any(self._session_alive(d) for d in self._sessions),
                      timeout, f"registration #{registrations}")

    def _session_alive(self, device_id: str) -> bool:
        last = self._sessions.get(device_id)
        if last is None:
            return False
        return self.session_timeout_s is None or \
            time.monotonic() - last <= self.session_timeout_s

    def local_time(self) -> str | int:
        t = beijing_now(self.clock_offset_s)
        if self.time_form == "14":
            return t.strftime("%Y%m%d%H%M%S")
        if self.time_form == "17":
            return t.strftime("%Y%m%d%H%M%S") + f"{t.microsecond // 1000:03d}"
        ms = int(t.timestamp() * 1000)
        return ms if self.time_form == "epoch_ms" else str(ms)

    def _route(self, req: ViidRequest):
        path = urllib.parse.urlsplit(req.path).path
        refused = self._check_user_identify(req) or self._authenticate(req)
        if refused is not None:
            return refused
        if path == "/VIID/System/Time":
            if req.method != "GET":
                return self._single(req, INVALID_OPERATION)
            return self._time_reply(req)
        system = {"/VIID/System/Register": ("RegisterObject", self._register),
                  "/VIID/System/Keepalive": ("KeepaliveObject", self._keepalive),
                  "/VIID/System/UnRegister": ("UnRegisterObject", self._unregister)}
        if path in system:
            if req.method != "POST":
                self._violation(req, f"{req.method}, POST expected")
                return self._single(req, INVALID_OPERATION)
            return self._system(req, path, *system[path])
        if path in UPLOAD_PATHS:
            kind, methods = UPLOAD_PATHS[path]
            if req.method not in methods:
                self._violation(req, f"{req.method}, {'/'.join(methods)} expected")
                return self._single(req, INVALID_OPERATION)
            if not self._has_session():
                return self._unauthorized(req, "not registered", challenge=self._needs_auth(req))
            doc, err = self._parse_json_body(req)
            if err is not None:
                return err
            items, err = self._envelope(req, doc, kind.list_key, kind.item_key)
            if err is not None:
                return err
            return self._answer_objects(req, kind.name, kind.id_key, items, kind.check)
        self._violation(req, f"{req.method} {path}: no such resource")
        return 404, [("Content-Type", "text/plain")], b"not found\n", 0.0, False

    def _has_session(self) -> bool:
        with self._cond:
            return self._session_alive(self.device_id)

    def _time_reply(self, req: ViidRequest):
        reply = self._take_reply("/VIID/System/Time", False)
        if reply.body is not None or reply.http_status != 200 or reply.drop:
            return self._status_list_reply(req, reply, [])
        doc = {"SystemTimeObject": {"VIIDServerID": self.server_id, "TimeMode": "1",
                                    "LocalTime": self.local_time(), "TimeZone": "Asia/Shanghai"}}
        return self._json_reply(doc, content_type=reply.content_type, delay=reply.delay)

    def _system(self, req: ViidRequest, path: str, envelope: str, action):
        doc, err = self._parse_json_body(req)
        if err is not None:
            return err
        obj = doc.get(envelope) if isinstance(doc, dict) else None
        if not isinstance(obj, dict):
            self._violation(req, f"envelope {envelope!r} missing")
            return self._single(req, INVALID_JSON_CONTENT, None, f"{envelope} expected")
        dev = obj.get("DeviceID")
        if not is_digits(dev, 20):
            self._violation(req, f"{envelope}.DeviceID {dev!r} is not 20 digits")
            return self._single(req, INVALID_JSON_CONTENT, None, "DeviceID")
        if dev != self.device_id:
            self._violation(req, f"{envelope}.DeviceID {dev} is not {self.device_id}")
            return self._single(req, INVALID_JSON_CONTENT, dev, "DeviceID unknown")
        reply = self._take_reply(path, False)
        if reply.body is not None or reply.http_status != 200 or reply.drop:
            return self._status_list_reply(req, reply, [])
        refused = action(req)
        if refused is not None:
            return refused
        code = reply.code if reply.code is not None else OK
        if code != OK:  # a refused registration/keepalive leaves no session
            with self._cond:
                self._sessions.pop(dev, None)
        obj = self.status_object(req, code, None if reply.omit_ids else dev,
                                 reply.status_string, reply.code_as_string)
        return self._json_reply({"ResponseStatusObject": obj},
                                content_type=reply.content_type, delay=reply.delay)

    def _register(self, req: ViidRequest):
        with self._cond:
            self._sessions[self.device_id] = time.monotonic()
            self.registrations += 1
            self._cond.notify_all()
        return None

    def _keepalive(self, req: ViidRequest):
        with self._cond:
            if not self._session_alive(self.device_id):
                self._sessions.pop(self.device_id, None)
                return self._unauthorized(req, "not registered", challenge=self._needs_auth(req))
            self._sessions[self.device_id] = time.monotonic()
            self.keepalives += 1
            self._cond.notify_all()
        return None

    def _unregister(self, req: ViidRequest):
        with self._cond:
            self._sessions.pop(self.device_id, None)
            self.unregistrations += 1
            self._cond.notify_all()
        return None


# --------------------------------------------------------------------------
# the test subscriber (cascade mode): the ReceiveAddr of the upper platform


class ViidSubscriber(_ViidServer):
    """Receives SubscribeNotificationListObject POSTs at receive_path and
    records each notification and the objects it carries.

        s = ViidSubscriber().start()
        s.receive_addr                         # put it in SubscribeObject.ReceiveAddr
        s.notifications, s.received("faces"), s.accepted_ids("devices")
        s.status_for_id(notification_id, 2)    # per NotificationID
        s.reply_next(http_status=503)

    No authentication and no User-Identify check by default (the platforms
    that want them configure them: auth="digest", user_identify=...). A
    notification is answered per NotificationID; it is accepted (StatusCode
    0) only when every object in it is valid.
    """

    def __init__(self, receive_path: str = "/VIID/SubscribeNotifications", *,
                 auth: str = "none", user_identify: str | None = None, **kwargs):
        super().__init__(auth=auth, user_identify=user_identify, **kwargs)
        self.receive_path = receive_path
        self._notifications: list[Received] = []

    @property
    def receive_addr(self) -> str:
        return self.url + self.receive_path

    @property
    def notifications(self) -> list[Received]:
        """Every SubscribeNotificationObject received (kind "notifications")."""
        return self.received("notifications")

    def notifications_for(self, subscribe_id: str) -> list[Received]:
        return [n for n in self.notifications if n.obj.get("SubscribeID") == subscribe_id]

    def _route(self, req: ViidRequest):
        path = urllib.parse.urlsplit(req.path).path
        refused = self._check_user_identify(req) or self._authenticate(req)
        if refused is not None:
            return refused
        if path != self.receive_path:
            self._violation(req, f"{req.method} {path}: not the ReceiveAddr")
            return 404, [("Content-Type", "text/plain")], b"not found\n", 0.0, False
        if req.method != "POST":
            self._violation(req, f"{req.method}, POST expected")
            return self._single(req, INVALID_OPERATION)
        doc, err = self._parse_json_body(req)
        if err is not None:
            return err
        items, err = self._envelope(req, doc, "SubscribeNotificationListObject",
                                    "SubscribeNotificationObject")
        if err is not None:
            return err
        position = iter(range(len(items)))
        answer = self._answer_objects(req, "notifications", "NotificationID", items,
                                      lambda n: self._check_notification(req, n, next(position)))
        # an object carried is accepted when its notification was
        with self._cond:
            codes = {r.index: r.status_code for r in self._received
                     if r.request_no == req.no and r.kind == "notifications"}
            for r in self._received:
                if r.request_no == req.no and r.parent is not None and not r.problems:
                    r.status_code = codes.get(r.parent)
        return answer

    def _check_notification(self, req: ViidRequest, n: dict, position: int) -> list[str]:
        """Problems of one notification; records the objects it carries."""
        p: list[str] = []
        for key in ("NotificationID", "SubscribeID"):
            if not is_digits(n.get(key), 33):
                p.append(f"{key} {n.get(key)!r} is not 33 digits")
        if not isinstance(n.get("Title"), str):
            p.append("Title missing")
        _check_time(n, "TriggerTime", p, required=True)
        carried, ids = 0, []
        for list_key, (item_key, id_key, check, kind) in NOTIFICATION_LISTS.items():
            if list_key not in n:
                continue
            inner = n[list_key]
            items = inner.get(item_key) if isinstance(inner, dict) else None
            if not isinstance(items, list):
                p.append(f"{list_key} has no {item_key} list")
                continue
            for i, obj in enumerate(items):
                probs = check(obj) if isinstance(obj, dict) else ["not an object"]
                p.extend(f"{list_key}[{i}]: {x}" for x in probs)
                oid = obj.get(id_key) if isinstance(obj, dict) else None
                ids.append(oid)
                with self._cond:
                    self._received.append(Received(kind, oid, obj, req.no, i,
                                                   None if not probs else INVALID_JSON_CONTENT,
                                                   probs, parent=position))
            carried += len(items)
        if carried == 0:
            p.append("notification carries no object list")
        info = n.get("InfoIDs")
        if info is not None and (not isinstance(info, str) or
                                 sorted(x for x in info.split(",") if x) !=
                                 sorted(i for i in ids if i)):
            p.append(f"InfoIDs {info!r} do not list the ids carried")
        return p


# --------------------------------------------------------------------------
# a client for /VIID/Subscribes (the upper platform subscribing downward)


@dataclass
class ClientResponse:
    status: int
    headers: Any
    body: bytes

    def json(self):
        return json.loads(self.body)

    def status_codes(self) -> list:
        """StatusCode of each ResponseStatusObject (list or single)."""
        doc = self.json()
        if "ResponseStatusListObject" in doc:
            return [o.get("StatusCode") for o in
                    doc["ResponseStatusListObject"].get("ResponseStatusObject", [])]
        return [doc.get("ResponseStatusObject", {}).get("StatusCode")]


def subscription(subscribe_id: str, details: str | list[str], receive_addr: str,
                 resource_uri: str = DEFAULT_DEVICE_ID, title: str = "gridbridge test",
                 begin: str | None = None, end: str | None = None,
                 report_interval: int = 1, **extra) -> dict:
    """A SubscribeObject (GA/T 1400.4) with every field a subscription needs.
    details: SubscribeDetail codes, e.g. [SUBSCRIBE_FACES, SUBSCRIBE_DEVICE_STATUS]."""
    if not isinstance(details, str):
        details = ",".join(details)
    now = beijing_now()
    obj = {"SubscribeID": subscribe_id, "Title": title, "SubscribeDetail": details,
           "ResourceURI": resource_uri, "ApplicantName": "test", "ApplicantOrg": "test",
           "BeginTime": begin or viid_time(now - timedelta(minutes=1)),
           "EndTime": end or viid_time(now + timedelta(days=1)),
           "ReceiveAddr": receive_addr, "ReportInterval": report_interval,
           "Reason": "integration test", "OperateType": 0}
    obj.update(extra)
    return obj


class ViidClient:
    """A small VIID client: Digest answered from the 401 challenge (nc counted
    per nonce, a stale=true challenge answered again), User-Identify and the
    VIID Content-Type on every request. SubscribeClient adds /VIID/Subscribes.

        c = ViidClient(platform.url, "user", "pass", user_identify=ID)
        c.post("/VIID/System/Register", {"RegisterObject": {"DeviceID": ID}})
    """

    def __init__(self, base_url: str, username: str | None = None, password: str | None = None,
                 user_identify: str | None = None, context: ssl.SSLContext | None = None,
                 timeout: float = 10.0):
        u = urllib.parse.urlsplit(base_url)
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        self.base_path = u.path.rstrip("/")
        self.username, self.password = username, password
        self.user_identify = user_identify
        self.context = context
        self.timeout = timeout
        self._challenge: dict[str, str] | None = None
        self._nc = 0

    def _connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _authorization(self, method: str, uri: str) -> str | None:
        ch = self._challenge
        if ch is None or self.username is None:
            return None
        self._nc += 1
        nc, cnonce = f"{self._nc:08x}", secrets.token_hex(8)
        resp = digest_response(self.username, ch["realm"], self.password or "", method, uri,
                               ch["nonce"], nc, cnonce)
        auth = (f'Digest username="{self.username}", realm="{ch["realm"]}", '
                f'nonce="{ch["nonce"]}", uri="{uri}", qop=auth, nc={nc}, '
                f'cnonce="{cnonce}", response="{resp}", algorithm=MD5')
        if "opaque" in ch:
            auth += f', opaque="{ch["opaque"]}"'
        return auth

    def request(self, method: str, path: str, doc: Any = None) -> ClientResponse:
        """One request; a 401 Digest challenge is answered once (twice when stale)."""
        uri = self.base_path + path
        body = _json_bytes(doc) if doc is not None else None
        for _ in range(3):
            headers = {"Accept": "application/json,application/VIID+JSON"}
            if body is not None:
                headers["Content-Type"] = VIID_CONTENT_TYPE
            if self.user_identify is not None:
                headers["User-Identify"] = self.user_identify
            auth = self._authorization(method, uri)
            if auth is not None:
                headers["Authorization"] = auth
            conn = self._connection()
            try:
                conn.request(method, uri, body=body, headers=headers)
                r = conn.getresponse()
                resp = ClientResponse(r.status, r.headers, r.read())
            finally:
                conn.close()
            challenge = resp.headers.get("WWW-Authenticate", "")
            scheme, rest = split_auth_header(challenge) if challenge else ("", "")
            if resp.status != 401 or scheme != "digest" or self.username is None:
                return resp
            params = parse_auth_params(rest)
            retry = auth is None or params.get("stale", "").lower() == "true"
            self._challenge, self._nc = params, 0
            if not retry:
                return resp
        return resp

    def get(self, path: str) -> ClientResponse:
        return self.request("GET", path)

    def post(self, path: str, doc: Any) -> ClientResponse:
        return self.request("POST", path, doc)

    def put(self, path: str, doc: Any) -> ClientResponse:
        return self.request("PUT", path, doc)


class SubscribeClient(ViidClient):
    """POST/PUT/DELETE /VIID/Subscribes as an upper platform does in cascade mode.

        c = SubscribeClient(gridbridge_url, "user", "pass", user_identify=ID, context=ctx)
        c.subscribe([subscription(id, [SUBSCRIBE_FACES], subscriber.receive_addr)])
        c.cancel(id); c.delete([id])
    """

    def subscribe(self, subscriptions: list[dict]) -> ClientResponse:
        """POST /VIID/Subscribes with SubscribeListObject."""
        return self.request("POST", "/VIID/Subscribes",
                            {"SubscribeListObject": {"SubscribeObject": subscriptions}})

    def update(self, subscriptions: list[dict]) -> ClientResponse:
        """PUT /VIID/Subscribes with SubscribeListObject."""
        return self.request("PUT", "/VIID/Subscribes",
                            {"SubscribeListObject": {"SubscribeObject": subscriptions}})

    def cancel(self, subscribe_id: str, reason: str = "test over") -> ClientResponse:
        """PUT /VIID/Subscribes/{id} with SubscribeObject: the cancel of GA/T 1400.4."""
        obj = {"SubscribeID": subscribe_id, "SubscribeCancelOrg": "test",
               "SubscribeCancelPerson": "test", "CancelTime": viid_time(),
               "CancelReason": reason}
        return self.request("PUT", f"/VIID/Subscribes/{subscribe_id}", {"SubscribeObject": obj})

    def delete(self, subscribe_ids: list[str]) -> ClientResponse:
        """DELETE /VIID/Subscribes?IDList=a,b."""
        return self.request("DELETE", "/VIID/Subscribes?IDList=" + ",".join(subscribe_ids))
