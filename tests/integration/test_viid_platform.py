"""The VIID (GA/T 1400) test platform and subscriber of viid.py behave as the
daemon's tests will assume, and libcurl's Digest (through the curl tool)
interoperates with them. Fast: no broker, database or daemon."""

import copy
import ctypes
import http.client
import json
import re
import shutil
import subprocess
import time

import pytest

import services
import viid

FIXTURES = services.FIXTURES_DIR / "viid"
ID = viid.DEFAULT_DEVICE_ID
PASSWORD = "Pass1234"
CURL = shutil.which("curl")

needs_curl = pytest.mark.skipif(CURL is None, reason="the curl tool is not installed (scripts/deps)")


@pytest.fixture
def platform():
    p = viid.ViidPlatform(ID, password=PASSWORD)
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


def curl(server, method, path, doc=None, *, user=ID, password=PASSWORD, user_identify=ID,
         auth="--digest", content_type=viid.VIID_CONTENT_TYPE, raw: bytes | None = None,
         cacert=None, extra=(), urls=None):
    """Run the curl tool against server; (http status, parsed body or text)."""
    args = [CURL, "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"]
    if auth is not None:
        args += [auth, "-u", f"{user}:{password}"]
    if user_identify is not None:
        args += ["-H", f"User-Identify: {user_identify}"]
    args += ["-H", "Accept: application/json,application/VIID+JSON"]
    data = raw if raw is not None else (json.dumps(doc, ensure_ascii=False).encode()
                                        if doc is not None else None)
    if data is not None:
        args += ["-H", f"Content-Type: {content_type}", "--data-binary", "@-"]
    if method not in ("GET", "POST") or (method == "POST" and data is None):
        args += ["-X", method]
    if cacert is not None:
        args += ["--cacert", str(cacert)]
    args += list(extra)
    args += urls if urls is not None else [server.url + path]
    r = subprocess.run(args, input=data, capture_output=True, timeout=20)
    assert r.returncode == 0, f"curl failed: {r.stderr.decode(errors='replace')}"
    out = r.stdout.decode()
    body, _, status = out.rpartition("\n")
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = body
    return int(status), parsed


def register(server, **kw):
    return curl(server, "POST", "/VIID/System/Register",
                {"RegisterObject": {"DeviceID": ID}}, **kw)


def codes(doc):
    return [o["StatusCode"] for o in doc["ResponseStatusListObject"]["ResponseStatusObject"]]


def ids(doc):
    return [o.get("Id") for o in doc["ResponseStatusListObject"]["ResponseStatusObject"]]


def client(server, **kw):
    kw.setdefault("username", ID)
    kw.setdefault("password", PASSWORD)
    kw.setdefault("user_identify", ID)
    return viid.ViidClient(server.url, **kw)


def registered_client(platform, **kw):
    c = client(platform, **kw)
    r = c.post("/VIID/System/Register", {"RegisterObject": {"DeviceID": ID}})
    assert r.status == 200 and r.json()["ResponseStatusObject"]["StatusCode"] == 0
    return c


# --------------------------------------------------------------------------
# Digest computation


def test_digest_matches_the_test_vector():
    v = viid.read_digest_vector(FIXTURES / "digest_test_vector.txt")
    assert viid.digest_ha1(v["username"], v["realm"], v["password"]) == v["HA1"]
    assert viid.digest_ha2(v["method"], v["uri"]) == v["HA2"]
    assert viid.digest_response(v["username"], v["realm"], v["password"], v["method"],
                                v["uri"], v["nonce"], v["nc"], v["cnonce"], v["qop"]) \
        == v["response"]


def test_auth_params_unquote_and_keep_commas_inside_quotes():
    scheme, rest = viid.split_auth_header(
        'Digest realm="a, b", qop="auth", nonce=abc, stale=true, x="q\\"q"')
    assert scheme == "digest"
    assert viid.parse_auth_params(rest) == {"realm": "a, b", "qop": "auth", "nonce": "abc",
                                            "stale": "true", "x": 'q"q'}


# --------------------------------------------------------------------------
# libcurl's Digest against the platform: the whole upload session


@needs_curl
def test_curl_registers_keeps_alive_uploads_and_unregisters(platform):
    status, doc = register(platform)
    assert status == 200
    assert doc["ResponseStatusObject"]["StatusCode"] == 0
    assert doc["ResponseStatusObject"]["Id"] == ID
    assert platform.sessions == [ID]
    # the first request carried no credentials and was challenged
    first, second = platform.requests[:2]
    assert first.http_status == 401 and "Authorization" not in first.headers
    assert first.headers["User-Identify"] == ID and second.authorized

    status, doc = curl(platform, "POST", "/VIID/System/Keepalive",
                       {"KeepaliveObject": {"DeviceID": ID}})
    assert (status, doc["ResponseStatusObject"]["StatusCode"]) == (200, 0)
    assert platform.keepalives == 1

    faces = [viid.sample_face(1), viid.sample_face(3)]
    status, doc = curl(platform, "POST", "/VIID/Faces", viid.faces_body(faces))
    assert status == 200 and codes(doc) == [0, 0]
    assert ids(doc) == [f["FaceID"] for f in faces]
    vehicles = [viid.sample_vehicle(1)]
    status, doc = curl(platform, "POST", "/VIID/MotorVehicles", viid.vehicles_body(vehicles))
    assert status == 200 and codes(doc) == [0]
    status, doc = curl(platform, "PUT", "/VIID/APEs", viid.apes_body([viid.sample_ape()]))
    assert status == 200 and codes(doc) == [0]

    status, doc = curl(platform, "GET", "/VIID/System/Time")
    assert status == 200 and viid.valid_viid_time(doc["SystemTimeObject"]["LocalTime"])

    status, doc = curl(platform, "POST", "/VIID/System/UnRegister",
                       {"UnRegisterObject": {"DeviceID": ID}})
    assert (status, doc["ResponseStatusObject"]["StatusCode"]) == (200, 0)
    assert platform.sessions == []

    assert platform.violations == []
    assert platform.auth_failures == []
    assert platform.accepted_ids("faces") == [f["FaceID"] for f in faces]
    assert platform.accepted_ids("motor_vehicles") == [vehicles[0]["MotorVehicleID"]]
    assert platform.duplicates("faces") == {}


def _fixture_request(name):
    """(method, path, headers, document) of a NAME.http.txt + NAME.json sample."""
    http_txt, body = FIXTURES / f"{name}.http.txt", FIXTURES / f"{name}.json"
    if not (http_txt.exists() and body.exists()):
        pytest.skip(f"sample {name} not in tests/fixtures/viid")
    lines = http_txt.read_text().splitlines()
    method, path, _ = lines[0].split()
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line
                   and not line.startswith("#"))
    text = re.sub(r'"<base64 [^">]*>"', json.dumps(viid.SAMPLE_JPEG_B64), body.read_text())
    return method, path, headers, json.loads(text)


@needs_curl
@pytest.mark.parametrize("name", ["faces_upload_request", "motorvehicles_upload_request",
                                  "apes_status_update_request"])
def test_curl_uploads_the_fixture_samples(platform, name):
    method, path, headers, doc = _fixture_request(name)
    assert headers["User-Identify"] == ID and \
        viid.content_type_ok(headers["Content-Type"])
    assert register(platform)[0] == 200
    status, reply = curl(platform, method, path, doc)
    assert status == 200
    assert set(codes(reply)) == {0}
    assert platform.violations == []


def test_fixture_register_and_reply_samples_match_the_platform(platform):
    """The platform's replies have the shape of the response samples."""
    for name in ("register_response_ok", "upload_response_ok"):
        if not (FIXTURES / f"{name}.json").exists():
            pytest.skip(f"sample {name} not in tests/fixtures/viid")
    sample = json.loads((FIXTURES / "register_response_ok.json").read_text())
    c = client(platform)
    got = c.post("/VIID/System/Register", {"RegisterObject": {"DeviceID": ID}}).json()
    assert set(got) == set(sample)
    assert set(got["ResponseStatusObject"]) == set(sample["ResponseStatusObject"])
    sample = json.loads((FIXTURES / "upload_response_ok.json").read_text())
    got = c.post("/VIID/Faces", viid.faces_body([viid.sample_face()])).json()
    assert set(got["ResponseStatusListObject"]["ResponseStatusObject"][0]) == \
        set(sample["ResponseStatusListObject"]["ResponseStatusObject"][0])


class LibCurl:
    """One libcurl easy handle, through ctypes, used as the daemon uses one:
    CURLAUTH_DIGEST and the Digest state kept between requests."""

    URL, USERPWD, HTTPAUTH, HTTPHEADER, HTTPGET = 10002, 10005, 107, 10023, 80
    POSTFIELDSIZE, COPYPOSTFIELDS, WRITEFUNCTION, CUSTOMREQUEST = 60, 10165, 20011, 10036
    INFO_RESPONSE_CODE, AUTH_DIGEST = 0x200002, 2
    _WRITE = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                              ctypes.c_size_t, ctypes.c_void_p)

    def __init__(self, user=ID, password=PASSWORD, user_identify=ID):
        try:
            self.lib = lib = ctypes.CDLL("libcurl.so.4")
        except OSError as e:
            pytest.skip(f"libcurl.so.4: {e}")
        lib.curl_easy_init.restype = ctypes.c_void_p
        lib.curl_slist_append.restype = ctypes.c_void_p
        lib.curl_slist_append.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.curl_easy_cleanup.argtypes = [ctypes.c_void_p]
        lib.curl_slist_free_all.argtypes = [ctypes.c_void_p]
        self.h = ctypes.c_void_p(lib.curl_easy_init())
        self.body = bytearray()
        self._cb = self._WRITE(self._write)
        self._set(self.WRITEFUNCTION, self._cb)
        self._set(self.HTTPAUTH, ctypes.c_long(self.AUTH_DIGEST))
        self._set(self.USERPWD, f"{user}:{password}".encode())
        headers = None
        for line in (f"User-Identify: {user_identify}", f"Content-Type: {viid.VIID_CONTENT_TYPE}"):
            headers = lib.curl_slist_append(headers, line.encode())
        self._headers = ctypes.c_void_p(headers)
        self._set(self.HTTPHEADER, self._headers)

    def _write(self, ptr, size, n, _user):
        self.body += ctypes.string_at(ptr, size * n)
        return size * n

    def _set(self, opt, value):
        if isinstance(value, bytes):
            value = ctypes.c_char_p(value)
        assert self.lib.curl_easy_setopt(self.h, ctypes.c_int(opt), value) == 0, opt

    def request(self, method, url, doc=None):
        """(CURLcode, HTTP status, parsed body)"""
        self.body = bytearray()
        if doc is None:
            self._set(self.HTTPGET, ctypes.c_long(1))
        else:
            data = json.dumps(doc, ensure_ascii=False).encode()
            self._set(self.POSTFIELDSIZE, ctypes.c_long(len(data)))
            self._set(self.COPYPOSTFIELDS, data)
        self._set(self.CUSTOMREQUEST, ctypes.c_char_p(method.encode() if method == "PUT" else None))
        self._set(self.URL, url.encode())
        rc = self.lib.curl_easy_perform(self.h)
        code = ctypes.c_long()
        self.lib.curl_easy_getinfo(self.h, ctypes.c_int(self.INFO_RESPONSE_CODE), ctypes.byref(code))
        return rc, code.value, json.loads(self.body) if self.body else None

    def close(self):
        self.lib.curl_easy_cleanup(self.h)
        self.lib.curl_slist_free_all(self._headers)


@pytest.fixture
def libcurl():
    c = LibCurl()
    yield c
    c.close()


def _nc(req):
    return viid.parse_auth_params(viid.split_auth_header(req.headers["Authorization"])[1])["nc"]


def test_libcurl_handle_reuses_the_nonce_with_increasing_nc(platform, libcurl):
    reg = {"RegisterObject": {"DeviceID": ID}}
    assert libcurl.request("POST", platform.url + "/VIID/System/Register", reg)[:2] == (0, 200)
    rc, status, doc = libcurl.request("POST", platform.url + "/VIID/Faces",
                                      viid.faces_body([viid.sample_face()]))
    assert (rc, status, codes(doc)) == (0, 200, [0])
    assert libcurl.request("PUT", platform.url + "/VIID/APEs",
                           viid.apes_body([viid.sample_ape()]))[:2] == (0, 200)
    assert libcurl.request("GET", platform.url + "/VIID/System/Time")[:2] == (0, 200)
    reqs = platform.requests
    assert [r.http_status for r in reqs] == [401, 200, 200, 200, 200]
    assert [_nc(r) for r in reqs[1:]] == ["00000001", "00000002", "00000003", "00000004"]
    assert platform.auth_failures == [] and platform.violations == []


def test_libcurl_handle_after_a_platform_restart(platform, libcurl):
    """One plain 401 on the old nonce; the handle keeps the new challenge, so
    the registration that follows goes through at once."""
    reg = {"RegisterObject": {"DeviceID": ID}}
    faces = viid.faces_body([viid.sample_face()])
    assert libcurl.request("POST", platform.url + "/VIID/System/Register", reg)[1] == 200
    platform.expire_sessions()
    platform.clear()
    assert libcurl.request("POST", platform.url + "/VIID/Faces", faces)[1] == 401
    assert libcurl.request("POST", platform.url + "/VIID/System/Register", reg)[1] == 200
    assert libcurl.request("POST", platform.url + "/VIID/Faces", faces)[1] == 200
    assert [r.http_status for r in platform.requests] == [401, 200, 200]
    assert [why for _, why in platform.auth_failures] == ["unknown nonce"]


def test_libcurl_answers_a_stale_nonce_by_itself(libcurl):
    with viid.ViidPlatform(ID, password=PASSWORD, nonce_ttl_s=0.5) as p:
        assert libcurl.request("GET", p.url + "/VIID/System/Time")[1] == 200
        time.sleep(0.6)
        assert libcurl.request("GET", p.url + "/VIID/System/Time")[1] == 200
        assert [r.http_status for r in p.requests] == [401, 200, 401, 200]
        assert "stale=true" in p.requests[2].response_header("WWW-Authenticate")


@needs_curl
def test_curl_over_tls_with_the_test_pki(tmp_path):
    pki = services.TestPKI(tmp_path / "pki")
    with viid.ViidPlatform(ID, password=PASSWORD, pki=pki) as p:
        assert p.url.startswith("https://127.0.0.1:")
        status, doc = register(p, cacert=pki.ca_file)
        assert status == 200 and doc["ResponseStatusObject"]["StatusCode"] == 0
        assert p.violations == []


# --------------------------------------------------------------------------
# refusals


@needs_curl
def test_wrong_password_is_refused(platform):
    status, _ = register(platform, password="wrong")
    assert status == 401
    assert platform.sessions == []
    assert [why for _, why in platform.auth_failures] == ["wrong response (password)"]
    assert platform.registrations == 0


@needs_curl
def test_wrong_user_is_refused(platform):
    status, _ = register(platform, user="admin")
    assert status == 401 and platform.sessions == []
    assert "unknown user" in platform.auth_failures[0][1]


@needs_curl
def test_missing_user_identify_is_refused_on_the_first_request(platform):
    status, doc = register(platform, user_identify=None)
    assert status == 401
    # no challenge: credentials would not help, so curl did not try again
    (req,) = platform.requests
    assert "Authorization" not in req.headers
    assert platform.sessions == []
    assert platform.violations == ["#1 /VIID/System/Register: User-Identify missing"]


@needs_curl
def test_wrong_user_identify_is_refused(platform):
    status, _ = register(platform, user_identify="34010405011200000002")
    assert status == 401 and platform.sessions == []
    assert "is not" in platform.violations[0]


@needs_curl
def test_register_object_must_name_the_user_identify(platform):
    status, doc = curl(platform, "POST", "/VIID/System/Register",
                       {"RegisterObject": {"DeviceID": "34010405011200000002"}})
    assert status == 200 and doc["ResponseStatusObject"]["StatusCode"] == viid.INVALID_JSON_CONTENT
    assert platform.sessions == []
    assert "RegisterObject.DeviceID" in platform.violations[0]


@needs_curl
def test_upload_without_a_session_is_401(platform):
    status, _ = curl(platform, "POST", "/VIID/Faces", viid.faces_body([viid.sample_face()]))
    assert status == 401
    assert platform.received("faces") == []
    status, _ = curl(platform, "POST", "/VIID/System/Keepalive",
                     {"KeepaliveObject": {"DeviceID": ID}})
    assert status == 401


@needs_curl
def test_expired_sessions_give_401_then_register_again_works(platform):
    assert register(platform)[0] == 200
    body = viid.faces_body([viid.sample_face(1)])
    assert curl(platform, "POST", "/VIID/Faces", body)[0] == 200
    platform.expire_sessions()
    assert platform.sessions == []
    assert curl(platform, "POST", "/VIID/Faces", viid.faces_body([viid.sample_face(3)]))[0] == 401
    assert register(platform)[0] == 200
    status, doc = curl(platform, "POST", "/VIID/Faces", viid.faces_body([viid.sample_face(3)]))
    assert status == 200 and codes(doc) == [0]
    assert platform.registrations == 2 and platform.restarts == 1
    assert len(platform.accepted_ids("faces")) == 2 and platform.violations == []


def test_session_times_out_without_keepalive():
    with viid.ViidPlatform(ID, password=PASSWORD, session_timeout_s=0.5) as p:
        c = registered_client(p)
        time.sleep(0.3)
        assert c.post("/VIID/System/Keepalive", {"KeepaliveObject": {"DeviceID": ID}}).status == 200
        time.sleep(0.3)   # kept alive: still there after 0.6 s in all
        assert p.sessions == [ID]
        # uploads do not keep the session alive
        assert c.post("/VIID/Faces", viid.faces_body([viid.sample_face()])).status == 200
        time.sleep(0.55)
        assert p.sessions == []
        assert c.post("/VIID/System/Keepalive", {"KeepaliveObject": {"DeviceID": ID}}).status == 401


# --------------------------------------------------------------------------
# Digest details, with hand-made requests


def _raw(server, method, path, auth=None, doc=None, user_identify=ID):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    headers = {"User-Identify": user_identify, "Content-Type": viid.VIID_CONTENT_TYPE}
    if auth is not None:
        headers["Authorization"] = auth
    body = json.dumps(doc).encode() if doc is not None else None
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        return r.status, r.headers.get("WWW-Authenticate")
    finally:
        conn.close()


def _challenge(server, path="/VIID/System/Time"):
    status, header = _raw(server, "GET", path)
    assert status == 401
    return viid.parse_auth_params(viid.split_auth_header(header)[1])


def _credentials(ch, method, uri, nc="00000001", password=PASSWORD, sent_uri=None):
    resp = viid.digest_response(ID, ch["realm"], password, method, uri, ch["nonce"], nc, "c0ffee")
    return (f'Digest username="{ID}", realm="{ch["realm"]}", nonce="{ch["nonce"]}", '
            f'uri="{sent_uri or uri}", qop=auth, nc={nc}, cnonce="c0ffee", '
            f'response="{resp}", opaque="{ch["opaque"]}", algorithm=MD5')


def test_challenge_is_digest_md5_qop_auth_with_fresh_nonces(platform):
    a, b = _challenge(platform), _challenge(platform)
    assert a["realm"] == "viid" and a["qop"] == "auth" and a["algorithm"] == "MD5"
    assert a["nonce"] != b["nonce"] and a["opaque"] == b["opaque"]


def test_nc_must_increase(platform):
    ch = _challenge(platform)
    t = "/VIID/System/Time"
    assert _raw(platform, "GET", t, _credentials(ch, "GET", t, "00000001"))[0] == 200
    assert _raw(platform, "GET", t, _credentials(ch, "GET", t, "00000001"))[0] == 401
    assert _raw(platform, "GET", t, _credentials(ch, "GET", t, "00000003"))[0] == 200
    assert [why for _, why in platform.auth_failures] == \
        ["nc 00000001 not above the last one for this nonce"]


def test_uri_must_be_the_request_target(platform):
    ch = _challenge(platform)
    t = "/VIID/System/Time"
    auth = _credentials(ch, "GET", "/VIID/Faces", sent_uri="/VIID/Faces")
    assert _raw(platform, "GET", t, auth)[0] == 401
    assert "is not the request target" in platform.auth_failures[0][1]


def test_expired_nonce_is_answered_stale():
    with viid.ViidPlatform(ID, password=PASSWORD, nonce_ttl_s=0.5) as p:
        ch = _challenge(p)
        time.sleep(0.6)
        t = "/VIID/System/Time"
        status, header = _raw(p, "GET", t, _credentials(ch, "GET", t))
        assert status == 401 and "stale=true" in header
        # the client library answers the stale challenge by itself
        c = client(p)
        assert c.get(t).status == 200


@pytest.mark.parametrize("stale", [False, True])
def test_nonce_from_before_a_restart(stale):
    with viid.ViidPlatform(ID, password=PASSWORD, stale_unknown_nonce=stale) as p:
        ch = _challenge(p)
        p.expire_sessions()
        t = "/VIID/System/Time"
        status, header = _raw(p, "GET", t, _credentials(ch, "GET", t))
        assert status == 401 and ("stale=true" in header) == stale


def test_client_after_a_restart_sees_one_401_then_registers_again(platform):
    """What the daemon will live through: a plain 401 on the old nonce; the
    next request answers the new challenge."""
    c = registered_client(platform)
    platform.expire_sessions()
    assert c.post("/VIID/Faces", viid.faces_body([viid.sample_face()])).status == 401
    r = c.post("/VIID/System/Register", {"RegisterObject": {"DeviceID": ID}})
    assert r.status == 200 and platform.sessions == [ID]


def test_digest_on_register_only():
    with viid.ViidPlatform(ID, password=PASSWORD, auth_on="register") as p:
        assert _raw(p, "POST", "/VIID/Faces", doc=viid.faces_body([viid.sample_face()]))[0] == 401
        registered_client(p)
        status, _ = _raw(p, "POST", "/VIID/Faces", doc=viid.faces_body([viid.sample_face()]))
        assert status == 200 and p.violations == []


@needs_curl
def test_basic_auth_platform():
    with viid.ViidPlatform(ID, password=PASSWORD, auth="basic") as p:
        assert register(p, auth="--basic", password="wrong")[0] == 401
        assert register(p, auth="--basic")[0] == 200
        assert p.sessions == [ID]


# --------------------------------------------------------------------------
# scripted replies


def test_scripted_statuses_by_position_and_id(platform):
    c = registered_client(platform)
    faces = [viid.sample_face(s) for s in (1, 3, 5)]
    platform.status_for_position(1, viid.INVALID_JSON_CONTENT)
    platform.status_for_id(faces[2]["FaceID"], viid.DEVICE_BUSY, times=1)
    r = c.post("/VIID/Faces", viid.faces_body(faces))
    assert codes(r.json()) == [0, 8, 2]
    assert ids(r.json()) == [f["FaceID"] for f in faces]
    # both scripts were one-shot: the retry of the third is accepted
    r = c.post("/VIID/Faces", viid.faces_body([faces[2], faces[1]]))
    assert codes(r.json()) == [0, 0]
    assert platform.accepted_ids("faces") == [faces[0]["FaceID"], faces[2]["FaceID"],
                                              faces[1]["FaceID"]]
    assert [x.status_code for x in platform.received("faces")] == [0, 8, 2, 0, 0]
    assert platform.violations == []


def test_scripted_reply_shapes(platform):
    c = registered_client(platform)
    body = viid.faces_body([viid.sample_face(1), viid.sample_face(3)])
    platform.reply_next(omit_ids=True, codes={0: 8})
    doc = c.post("/VIID/Faces", body).json()
    assert codes(doc) == [8, 0] and ids(doc) == [None, None]

    platform.reply_next(single=True)
    doc = c.post("/VIID/Faces", body).json()
    assert doc["ResponseStatusObject"]["StatusCode"] == 0

    platform.reply_next(code_as_string=True, content_type="application/json")
    r = c.post("/VIID/Faces", body)
    assert codes(r.json()) == ["0", "0"] and r.headers["Content-Type"] == "application/json"

    platform.reply_next(body=b"OK")
    r = c.post("/VIID/Faces", body)
    assert (r.status, r.body) == (200, b"OK")

    platform.reply_next(http_status=503)
    assert c.post("/VIID/Faces", body).status == 503
    # not answered with a status list: nothing of those two counts as accepted
    assert [x.status_code for x in platform.received("faces")][-4:] == [None] * 4

    platform.reply_next(delay=0.3)
    t0 = time.monotonic()
    assert c.post("/VIID/Faces", body).status == 200
    assert time.monotonic() - t0 >= 0.3

    platform.reply_next(drop=True)
    with pytest.raises((http.client.HTTPException, OSError)):
        c.post("/VIID/Faces", body)

    platform.reply_always(code=viid.OTHER_ERROR)
    assert codes(c.post("/VIID/Faces", body).json()) == [1, 1]
    assert codes(c.post("/VIID/Faces", body).json()) == [1, 1]
    platform.reply_always()
    assert codes(c.post("/VIID/Faces", body).json()) == [0, 0]
    assert platform.violations == []


def test_scripted_register_failure_leaves_no_session(platform):
    platform.reply_next("/VIID/System/Register", code=viid.DEVICE_ERROR)
    c = client(platform)
    r = c.post("/VIID/System/Register", {"RegisterObject": {"DeviceID": ID}})
    assert r.status == 200 and r.json()["ResponseStatusObject"]["StatusCode"] == 3
    assert platform.sessions == []
    platform.reply_next("/VIID/System/Keepalive", http_status=500)
    registered_client(platform)
    assert c.post("/VIID/System/Keepalive", {"KeepaliveObject": {"DeviceID": ID}}).status == 500


@pytest.mark.parametrize("form,pattern", [("14", r"\d{14}"), ("17", r"\d{17}"),
                                          ("epoch_ms", None), ("epoch_ms_str", r"\d{13}")])
def test_time_forms(form, pattern):
    with viid.ViidPlatform(ID, password=PASSWORD, time_form=form) as p:
        t = client(p).get("/VIID/System/Time").json()["SystemTimeObject"]["LocalTime"]
        if pattern is None:
            assert isinstance(t, int) and abs(t / 1000 - time.time()) < 5
        else:
            assert isinstance(t, str) and re.fullmatch(pattern, t)


# --------------------------------------------------------------------------
# validation


def test_validation_catches_short_source_id_and_bad_time(platform):
    c = registered_client(platform)
    good = viid.sample_face(1)
    short = copy.deepcopy(viid.sample_face(3))
    short["SourceID"] = short["SourceID"][:40]
    bad_time = copy.deepcopy(viid.sample_face(5))
    bad_time["FaceAppearTime"] = "20250231074215"   # 31 February
    doc = c.post("/VIID/Faces", viid.faces_body([good, short, bad_time])).json()
    assert codes(doc) == [0, 8, 8]
    v = platform.violations
    assert any("SourceID" in x and "is not 41 digits" in x for x in v), v
    assert any("FaceAppearTime '20250231074215' is not a valid" in x for x in v), v
    assert platform.accepted_ids("faces") == [good["FaceID"]]


@pytest.mark.parametrize("change,expect", [
    (lambda f: f.pop("IsVictim"), "IsVictim missing"),
    (lambda f: f.update(IsDetainees=2), "IsDetainees 2 not in"),
    (lambda f: f.update(FaceID=f["FaceID"][:41] + "02" + f["FaceID"][43:]), "object type '02'"),
    (lambda f: f.update(FaceID="1" + f["FaceID"][1:]), "does not start with SourceID"),
    (lambda f: f.update(DeviceID="3401040501119000000"), "DeviceID"),
    (lambda f: f.pop("RightBtmY"), "bounding box incomplete"),
    (lambda f: f["SubImageList"]["SubImageInfoObject"][0].pop("EventSort"), "EventSort missing"),
    (lambda f: f["SubImageList"]["SubImageInfoObject"][1].update(Data="<jpeg>"), "not base64"),
])
def test_face_checks(change, expect):
    face = viid.sample_face()
    assert viid.check_face(face) == []
    change(face)
    assert any(expect in p for p in viid.check_face(face)), viid.check_face(face)


@pytest.mark.parametrize("change,expect", [
    (lambda v: v.update(PlateColor="0"), "PlateColor '0'"),
    (lambda v: v.update(VehicleColor=2), "VehicleColor 2"),
    (lambda v: v.update(PlateNo="皖A·12345"), "separator dot"),
    (lambda v: v.update(PlateNo="皖A.12345"), "separator dot"),
    (lambda v: v.pop("StorageUrl1"), "StorageUrl1"),
    (lambda v: v.update(PassTime="2025031808053"), "PassTime"),
    (lambda v: v.pop("LaneNo"), "LaneNo missing"),
    (lambda v: v.update(MotorVehicleID=v["MotorVehicleID"][:41] + "06" + v["MotorVehicleID"][43:]),
     "object type '06'"),
])
def test_vehicle_checks(change, expect):
    vehicle = viid.sample_vehicle()
    assert viid.check_vehicle(vehicle) == []
    change(vehicle)
    assert any(expect in p for p in viid.check_vehicle(vehicle)), viid.check_vehicle(vehicle)
    assert viid.check_vehicle(dict(viid.sample_vehicle(), PlateColor="99", VehicleColor="99")) == []


def test_ape_checks():
    assert viid.check_ape(viid.sample_ape()) == []
    assert "FunctionType missing or empty" in viid.check_ape(
        {k: v for k, v in viid.sample_ape().items() if k != "FunctionType"})
    assert any("IsOnline" in p for p in viid.check_ape(viid.sample_ape(online="0")))


def test_envelope_json_and_content_type_errors(platform):
    c = registered_client(platform)
    r = c.post("/VIID/Faces", {"FaceObject": [viid.sample_face()]})
    assert r.json()["ResponseStatusObject"]["StatusCode"] == viid.INVALID_JSON_CONTENT
    r = c.post("/VIID/Faces", viid.vehicles_body([viid.sample_vehicle()]))
    assert r.json()["ResponseStatusObject"]["StatusCode"] == viid.INVALID_JSON_CONTENT
    assert c.put("/VIID/Faces", viid.faces_body([viid.sample_face()])).json()[
        "ResponseStatusObject"]["StatusCode"] == viid.INVALID_OPERATION
    assert platform.received("faces") == []
    assert len(platform.violations) == 3
    platform.clear()

    status, doc = curl(platform, "POST", "/VIID/Faces", raw=b'{"FaceListObject": ')
    assert doc["ResponseStatusObject"]["StatusCode"] == viid.INVALID_JSON_FORMAT
    status, doc = curl(platform, "POST", "/VIID/Faces", viid.faces_body([viid.sample_face()]),
                       content_type="application/json")
    assert codes(doc) == [0]   # accepted, but the sender is told off
    assert any("Content-Type 'application/json'" in v for v in platform.violations)


def test_content_type_comparison():
    assert viid.content_type_ok("application/VIID+JSON;charset=UTF-8")
    assert viid.content_type_ok("application/viid+json; charset=utf-8")
    assert not viid.content_type_ok("application/json;charset=UTF-8")
    assert not viid.content_type_ok("application/VIID+JSON")


def test_same_id_twice_in_one_request_is_a_violation(platform):
    c = registered_client(platform)
    face = viid.sample_face()
    assert codes(c.post("/VIID/Faces", viid.faces_body([face, face])).json()) == [0, 8]
    assert "twice in one request" in platform.violations[0]


def test_duplicates_across_requests_are_counted(platform):
    c = registered_client(platform)
    face = viid.sample_face()
    for _ in range(2):
        c.post("/VIID/Faces", viid.faces_body([face]))
    assert platform.duplicates("faces") == {face["FaceID"]: 2}


# --------------------------------------------------------------------------
# the subscriber (cascade mode) and the /VIID/Subscribes client


SUBSCRIBE_ID = "340104050112000000010320250318001"   # 33 digits


def _notification(no, faces=(), statuses=(), subscribe_id=SUBSCRIBE_ID):
    n = {"NotificationID": f"{subscribe_id[:27]}{no:06d}", "SubscribeID": subscribe_id,
         "Title": "faces", "TriggerTime": viid.viid_time()}
    if faces:
        n["FaceObjectList"] = {"FaceObject": list(faces)}
    if statuses:
        n["DeviceStatusList"] = {"APEStatusObject": list(statuses)}
    n["InfoIDs"] = ",".join([f["FaceID"] for f in faces] + [s["ApeID"] for s in statuses])
    return n


def _notify(subscriber, notifications):
    c = viid.ViidClient(subscriber.url, user_identify=ID)
    return c.post(subscriber.receive_path, {"SubscribeNotificationListObject": {
        "SubscribeNotificationObject": notifications}})


def test_subscriber_records_notifications_and_their_objects(subscriber):
    assert subscriber.receive_addr.endswith("/VIID/SubscribeNotifications")
    face = viid.sample_face()
    status = {"ApeID": "34010405011190000001", "IsOnline": "1", "CurrentTime": viid.viid_time()}
    n1, n2 = _notification(1, faces=[face]), _notification(2, statuses=[status])
    r = _notify(subscriber, [n1, n2])
    assert r.status == 200 and codes(r.json()) == [0, 0]
    assert ids(r.json()) == [n1["NotificationID"], n2["NotificationID"]]
    assert subscriber.accepted_ids("notifications") == [n1["NotificationID"], n2["NotificationID"]]
    assert subscriber.accepted_ids("faces") == [face["FaceID"]]
    assert subscriber.accepted_ids("device_status") == [status["ApeID"]]
    assert len(subscriber.notifications_for(SUBSCRIBE_ID)) == 2
    assert subscriber.violations == []


def test_subscriber_scripts_and_checks(subscriber):
    face = viid.sample_face()
    n1 = _notification(1, faces=[face])
    subscriber.status_for_id(n1["NotificationID"], viid.DEVICE_BUSY, times=1)
    assert codes(_notify(subscriber, [n1]).json()) == [2]
    assert subscriber.accepted_ids("faces") == []       # its notification was not accepted
    assert codes(_notify(subscriber, [n1]).json()) == [0]
    assert subscriber.accepted_ids("faces") == [face["FaceID"]]

    bad = _notification(3, faces=[face])
    bad["NotificationID"] = bad["NotificationID"][:32]
    bad["InfoIDs"] = "x"
    assert codes(_notify(subscriber, [bad]).json()) == [8]
    v = subscriber.violations
    assert any("NotificationID" in x and "33 digits" in x for x in v), v
    assert any("InfoIDs" in x for x in v), v


class _SubscribesEndpoint(viid._ViidServer):
    """Stands in for gridbridge's listener: Digest, records /VIID/Subscribes."""

    def _route(self, req):
        refused = self._check_user_identify(req) or self._authenticate(req)
        if refused is not None:
            return refused
        doc = req.json() if req.body else None
        if req.method == "POST" or (req.method == "PUT" and req.path == "/VIID/Subscribes"):
            items, err = self._envelope(req, doc, "SubscribeListObject", "SubscribeObject")
            return err or self._answer_objects(req, "subscribes", "SubscribeID", items,
                                               lambda o: [])
        return self._single(req, viid.OK, req.path.rsplit("/", 1)[-1])


def test_subscribe_client_speaks_digest_and_the_subscribes_api(subscriber):
    with _SubscribesEndpoint(username="platform", password="secret", user_identify=ID) as ep:
        c = viid.SubscribeClient(ep.url, "platform", "secret", user_identify=ID)
        sub = viid.subscription(SUBSCRIBE_ID, [viid.SUBSCRIBE_FACES, viid.SUBSCRIBE_DEVICE_STATUS],
                                subscriber.receive_addr)
        r = c.subscribe([sub])
        assert r.status == 200 and r.status_codes() == [0]
        assert c.update([sub]).status_codes() == [0]
        assert c.cancel(SUBSCRIBE_ID).status_codes() == [0]
        assert c.delete([SUBSCRIBE_ID, SUBSCRIBE_ID]).status_codes() == [0]
        reqs = [r for r in ep.requests if r.authorized]
        assert [(r.method, r.path) for r in reqs] == [
            ("POST", "/VIID/Subscribes"), ("PUT", "/VIID/Subscribes"),
            ("PUT", f"/VIID/Subscribes/{SUBSCRIBE_ID}"),
            ("DELETE", f"/VIID/Subscribes?IDList={SUBSCRIBE_ID},{SUBSCRIBE_ID}")]
        posted = reqs[0].json()["SubscribeListObject"]["SubscribeObject"][0]
        assert posted["SubscribeDetail"] == "12,4"
        assert posted["ReceiveAddr"] == subscriber.receive_addr
        assert viid.valid_viid_time(posted["BeginTime"])
        assert reqs[2].json()["SubscribeObject"]["SubscribeID"] == SUBSCRIBE_ID
        # one challenge, then the nonce reused with increasing nc
        assert len(ep.requests) == 5 and ep.auth_failures == [] and ep.violations == []
