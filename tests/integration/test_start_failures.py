"""A daemon that cannot start exits 1 and says why in its log: the error
that stopped it as a logfmt line at error, then `mod=main msg="cannot start"`
naming the stage, also for a configuration with errors (whose
`FILE:LINE: message` lines stay on stderr for people)."""

import os
import re
import textwrap

import pytest

import logfmt
from services import free_port

FILE_LINE = re.compile(r"^\S+?:(\d+:)? ")


def base_config(tmp_path, mqtt="", store="", state=None):
    state = state or tmp_path / "state"
    return textwrap.dedent(f"""\
        [daemon]
        state_dir = {state}
        [mqtt]
        host = 127.0.0.1
        port = {free_port()}
        {mqtt}
        [store]
        host = 127.0.0.1
        port = {free_port()}
        connect_timeout = 2
        {store}
        """)


def logfmt_lines(lines):
    """(fields) of every logfmt line; other lines must be FILE:LINE errors."""
    out = []
    for line in lines:
        if line.startswith("<"):
            out.append(logfmt.check(line))
        else:
            assert FILE_LINE.match(line), f"neither logfmt nor FILE:LINE: {line!r}"
    return out


def failed_start(daemon, conf, env=None):
    daemon.start(conf, env=env)
    assert daemon.wait(10) == 1
    assert "READY=1" not in daemon.notify_assignments()
    fields = logfmt_lines(daemon.lines)
    last = [f for f in fields if f["mod"] == "main" and f["msg"] == "cannot start"]
    assert len(last) == 1, daemon.lines
    assert last[0]["level"] == "error", last
    return fields, last[0]


def errors_of(fields, mod, msg):
    return [f for f in fields if f["mod"] == mod and f["msg"] == msg and f["level"] == "error"]


def test_config_errors_at_start_are_logged_too(daemon, tmp_path):
    conf = daemon.write_config(base_config(tmp_path) + "no_such_key = 1\n[journal]\nsync_batch = x\n")
    fields, last = failed_start(daemon, conf)
    human = [x for x in daemon.lines if x.startswith(f"{conf}:")]
    assert len(human) == 2, daemon.lines
    logged = errors_of(fields, "config", "invalid configuration")
    assert len(logged) == 2, fields
    assert {(f["file"], f["line"]) for f in logged} == \
        {(str(conf), x.split(":")[1]) for x in human}
    assert last["stage"] == "config" and last["errors"] == "2", last


def test_missing_config_file(daemon, tmp_path):
    fields, last = failed_start(daemon, tmp_path / "nowhere.conf")
    logged = errors_of(fields, "config", "invalid configuration")
    assert logged and "No such file" in logged[0]["error"], fields
    assert last["stage"] == "config", last


def test_state_dir_that_is_a_file(daemon, tmp_path):
    state = tmp_path / "state-file"
    state.write_text("")
    fields, last = failed_start(daemon, daemon.write_config(base_config(tmp_path, state=state)))
    assert errors_of(fields, "main", "state directory is not a directory"), fields
    assert last["stage"] == "state_dir", last


def test_journal_that_cannot_be_opened(daemon, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "journal").write_text("not a directory")
    fields, last = failed_start(daemon, daemon.write_config(base_config(tmp_path)))
    assert errors_of(fields, "journal", "cannot open journal directory"), fields
    assert last["stage"] == "journal", last


def test_missing_password_file(daemon, tmp_path):
    conf = daemon.write_config(base_config(
        tmp_path, store=f"password_file = {tmp_path / 'no-such-password'}"))
    fields, last = failed_start(daemon, conf)
    assert errors_of(fields, "store", "cannot open password file"), fields
    assert last["stage"] == "secrets", last


def test_relative_password_file_without_credentials(daemon, tmp_path):
    conf = daemon.write_config(base_config(tmp_path, mqtt="password_file = mqtt-password"))
    fields, last = failed_start(daemon, conf)
    assert errors_of(fields, "mqtt", "relative password file without CREDENTIALS_DIRECTORY")
    assert last["stage"] == "secrets", last


def test_mqtt_tls_with_missing_ca_file(daemon, tmp_path):
    conf = daemon.write_config(base_config(
        tmp_path, mqtt=f"tls = true\nca_file = {tmp_path / 'no-ca.pem'}"))
    fields, last = failed_start(daemon, conf)
    assert errors_of(fields, "mqtt", "cannot set up TLS"), fields
    assert last["stage"] == "mqtt", last


# --------------------------------------------------------------------------
# secret files other users may read


def fix_of(fields):
    refused = [f for f in fields if f["msg"] == "secret file readable by other users"]
    assert len(refused) == 1 and refused[0]["level"] == "error", fields
    return refused[0]


def expected_fix(path, mode):
    """The chmod gridbridge.conf(5) says the daemon asks for."""
    st = path.stat()
    group_read = st.st_uid == 0 and (st.st_gid == os.getegid() or st.st_gid in os.getgroups())
    refused = 0o007 | (0o030 if group_read else 0o070)
    return f"chmod {(mode & ~refused) | 0o400:o} {path}"


def start_after_fix(daemon, conf, fix, env=None):
    """Run the chmod the daemon asked for: then it starts."""
    mode, path = fix.split()[1:]
    os.chmod(path, int(mode, 8))
    daemon.start(conf, env=env)
    daemon.wait_notify("READY=1", timeout=10)
    assert daemon.stop() == 0


def test_world_readable_password_file_is_refused_with_the_chmod(daemon, tmp_path):
    pw = tmp_path / "store-password"
    pw.write_text("not-shown-4e1\n")
    pw.chmod(0o644)
    conf = daemon.write_config(base_config(tmp_path, store=f"password_file = {pw}"))
    fields, last = failed_start(daemon, conf)
    refused = fix_of(fields)
    assert refused["mod"] == "store" and refused["file"] == str(pw), refused
    assert refused["mode"] == "0644", refused
    assert refused["fix"] == expected_fix(pw, 0o644), refused
    assert last["stage"] == "secrets", last
    assert not [x for x in daemon.lines if "not-shown-4e1" in x]
    start_after_fix(daemon, conf, refused["fix"])


def test_readable_mqtt_key_file_is_refused(daemon, pki, tmp_path):
    key = tmp_path / "client.key"
    key.write_bytes(pki.client_key.read_bytes())
    key.chmod(0o604)
    conf = daemon.write_config(base_config(tmp_path, mqtt=textwrap.dedent(f"""\
        tls = true
        ca_file = {pki.ca_file}
        cert_file = {pki.client_cert}
        key_file = {key}""").replace("\n", "\n        ")))
    fields, last = failed_start(daemon, conf)
    refused = fix_of(fields)
    assert refused["mod"] == "mqtt" and refused["fix"] == f"chmod 600 {key}", refused
    assert last["stage"] == "secrets", last
    start_after_fix(daemon, conf, refused["fix"])


def test_readable_token_file_is_refused(daemon, tmp_path):
    token = tmp_path / "platform-token"
    token.write_text("t0ken\n")
    token.chmod(0o664)
    conf = daemon.write_config(base_config(tmp_path) + textwrap.dedent(f"""\
        [forward.target police]
        url = https://127.0.0.1:{free_port()}/events
        token_file = {token}
        """))
    fields, last = failed_start(daemon, conf)
    refused = fix_of(fields)
    assert refused["mod"] == "forward" and refused["fix"] == expected_fix(token, 0o664)
    assert last["stage"] == "forward", last


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file to another user")
def test_systemd_credential_is_accepted(daemon, tmp_path):
    """LoadCredential= files are 0400 for the service's user, or 0440 with an
    ACL granting it read; here one owned by another user, 0440."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    pw = creds / "store-password"
    pw.write_text("pw\n")
    pw.chmod(0o440)
    os.chown(pw, 65534, 65534)
    conf = daemon.write_config(base_config(tmp_path, store="password_file = store-password"))
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    daemon.start(conf, env=env)
    daemon.wait_notify("READY=1", timeout=10)
    assert daemon.stop() == 0
    # others may not read even a credential
    pw.chmod(0o444)
    fields, last = failed_start(daemon, conf, env=env)
    assert fix_of(fields)["fix"] == f"chmod 440 {pw}"


def test_readable_store_sslkey_is_refused(daemon, pki, tmp_path):
    creds = tmp_path / "credentials"
    creds.mkdir()
    key = creds / "db-client.key"
    key.write_bytes(pki.client_key.read_bytes())
    key.chmod(0o644)
    conf = daemon.write_config(base_config(tmp_path, store=textwrap.dedent(f"""\
        sslcert = {pki.client_cert}
        sslkey = db-client.key""").replace("\n", "\n        ")))
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    fields, last = failed_start(daemon, conf, env=env)
    refused = fix_of(fields)
    assert refused["mod"] == "store" and refused["file"] == str(key), refused
    assert refused["fix"] == f"chmod 640 {key}", refused   # a credential: group read is fine
    assert last["stage"] == "secrets", last
    start_after_fix(daemon, conf, refused["fix"], env=env)


def test_relative_key_file_without_credentials(daemon, pki, tmp_path):
    """A relative key file is looked up in $CREDENTIALS_DIRECTORY, as the
    manual says, never in the working directory."""
    key = daemon.dir / "client.key"   # the daemon's working directory
    key.write_bytes(pki.client_key.read_bytes())
    key.chmod(0o600)
    conf = daemon.write_config(base_config(tmp_path, mqtt=textwrap.dedent(f"""\
        tls = true
        ca_file = {pki.ca_file}
        cert_file = {pki.client_cert}
        key_file = client.key""").replace("\n", "\n        ")))
    fields, last = failed_start(daemon, conf)
    assert errors_of(fields, "mqtt", "relative key file without CREDENTIALS_DIRECTORY"), fields
    assert last["stage"] == "secrets", last
