"""First integration tests of gridbridged: start-up against a real broker and
database, sd_notify, logfmt on stderr, SIGHUP reload, config errors, -n/-nv,
--version, clean shutdown on SIGTERM and SIGINT."""

import configparser
import re
import signal
import textwrap
import time

import pytest

import logfmt

READY_TIMEOUT = 15.0

# Every key the spec promises in the effective configuration (-nv).
SPEC_KEYS = {
    "daemon": {"log_level", "state_dir"},
    "mqtt": {"host", "port", "client_id", "keepalive", "username", "password",
             "password_file"},
    "store": {"host", "port", "dbname", "user", "password", "password_file"},
}


def config_text(tmp_path, mosquitto, postgres, log_level="info"):
    """A complete, valid configuration for the fixtures' broker and database."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    pwfile = postgres.write_password_file(tmp_path / "store-password")
    return textwrap.dedent(f"""\
        [daemon]
        log_level = {log_level}
        state_dir = {state}

        [mqtt]
        host = {mosquitto.host}
        port = {mosquitto.port}
        client_id = gridbridge-test
        keepalive = 30

        [store]
        host = {postgres.host}
        port = {postgres.port}
        dbname = {postgres.dbname}
        user = {postgres.user}
        password_file = {pwfile}
        """)


def start_ready(daemon, conf):
    daemon.start(conf)
    daemon.wait_notify("READY=1", timeout=READY_TIMEOUT)
    return daemon


def assert_logfmt(lines):
    """Every line as log.c writes it: <N> prefix matching its level, then
    level, mod, msg (quoted)."""
    assert lines, "the daemon printed nothing on stderr"
    for line in lines:
        logfmt.check(line)  # raises on a malformed line


def assert_no_secret(daemon, secret):
    leaks = [x for x in daemon.lines + daemon.notifications if secret in x]
    assert not leaks, f"secret printed: {leaks}"


# --------------------------------------------------------------------------
# start-up and shutdown


def test_starts_connects_and_reports_ready(daemon, mosquitto, postgres, tmp_path):
    conf = daemon.write_config(config_text(tmp_path, mosquitto, postgres))
    daemon.start(conf)

    assert daemon.wait_notify("READY=1", timeout=READY_TIMEOUT) == "READY=1"
    assert any(a.startswith("STATUS=") for a in daemon.notify_assignments())
    daemon.wait_log(r'mod=main msg="ready"')
    mqtt = logfmt.fields(daemon.wait_log(r'mod=mqtt msg="connected"', timeout=READY_TIMEOUT))
    assert (mqtt["host"], mqtt["port"]) == ("127.0.0.1", str(mosquitto.port))
    daemon.wait_log(r'mod=store msg="connected"', timeout=READY_TIMEOUT)

    # what an operator would check on the other side
    assert re.search(r"New client connected from .* as gridbridge-test ",
                     mosquitto.log_path.read_text()), "broker never saw client gridbridge-test"
    su = postgres.superuser_connect()
    try:
        with su.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity "
                        "WHERE usename = 'gridbridge' AND datname = 'gridbridge'")
            assert cur.fetchone()[0] >= 1
    finally:
        su.close()

    assert daemon.stop() == 0
    lines = daemon.lines
    assert logfmt.select(lines, mod="main", msg="started"), lines
    assert_logfmt(lines)
    assert_no_secret(daemon, postgres.password)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(daemon, mosquitto, postgres, tmp_path, sig):
    start_ready(daemon, daemon.write_config(config_text(tmp_path, mosquitto, postgres)))
    mark = len(daemon.notifications)
    daemon.signal(sig)
    assert daemon.wait(10) == 0
    # the datagram may still be on its way to the reader when the process ends
    assert daemon.wait_notify("STOPPING=1", timeout=5, since=mark)
    lines = daemon.lines
    stopping = logfmt.select(lines, mod="main", msg="stopping")
    stopped = logfmt.select(lines, mod="main", msg="stopped")
    assert stopping and stopped, lines
    assert lines.index(stopping[0]) < lines.index(stopped[0])
    assert_logfmt(lines)


# --------------------------------------------------------------------------
# SIGHUP


def test_sighup_reload_applies_new_log_level(daemon, mosquitto, postgres, tmp_path):
    text = config_text(tmp_path, mosquitto, postgres, log_level="info")
    conf = daemon.write_config(text)
    start_ready(daemon, conf)

    lmark, nmark = daemon.wait_quiet(), len(daemon.notifications)
    assert not [x for x in daemon.lines if "level=debug" in x]
    daemon.write_config(text.replace("log_level = info", "log_level = debug"))
    daemon.signal(signal.SIGHUP)
    daemon.wait_notify("READY=1", since=nmark)
    assignments = daemon.notify_assignments(since=nmark)
    assert "RELOADING=1" in assignments
    assert assignments.index("RELOADING=1") < assignments.index("READY=1")
    daemon.wait_log(r'mod=config msg="configuration reloaded"', since=lmark)
    assert daemon.running

    assert daemon.stop() == 0
    after = daemon.lines[lmark:]
    assert any(logfmt.fields(x)["level"] == "debug" for x in after), \
        "no debug line after reloading with log_level = debug:\n" + "\n".join(after)
    assert_logfmt(daemon.lines)
    assert_no_secret(daemon, postgres.password)


def test_sighup_with_broken_config_keeps_running(daemon, mosquitto, postgres, tmp_path):
    text = config_text(tmp_path, mosquitto, postgres)
    conf = daemon.write_config(text)
    start_ready(daemon, conf)
    daemon.wait_quiet()

    broken = text.replace("log_level = info", "log_level = loud") \
                 .replace("keepalive = 30", "keepalive = abc")
    lines_of = {n + 1: line for n, line in enumerate(broken.splitlines())}
    bad_lines = {n for n, line in lines_of.items() if line in ("log_level = loud",
                                                                "keepalive = abc")}
    assert len(bad_lines) == 2

    lmark, nmark = len(daemon.lines), len(daemon.notifications)
    daemon.write_config(broken)
    daemon.signal(signal.SIGHUP)
    failed = daemon.wait_log(
        r'mod=config msg="reload failed, keeping previous configuration"', since=lmark)
    assert logfmt.fields(failed)["level"] == "error"
    daemon.wait_notify("READY=1", since=nmark)
    assert "RELOADING=1" in daemon.notify_assignments(since=nmark)

    after = daemon.lines[lmark:]
    invalid = logfmt.select(after, mod="config", msg="invalid configuration")
    errors = [logfmt.fields(x) for x in invalid]
    assert all(e["level"] == "error" for e in errors)
    assert all(e["file"] == str(conf) and e["error"] for e in errors), errors
    assert {int(e["line"]) for e in errors} == bad_lines, errors
    assert len(errors) == 2, errors
    assert after.index(failed) > max(after.index(x) for x in invalid)
    assert not logfmt.select(after, mod="config", msg="configuration reloaded")

    time.sleep(0.5)
    assert daemon.running
    assert daemon.stop() == 0
    assert logfmt.select(daemon.lines, mod="main", msg="stopped"), \
        "previous log level (info) not kept"
    assert_logfmt(daemon.lines)


def test_reload_to_error_level_still_reports_reload_errors(daemon, mosquitto, postgres,
                                                           tmp_path):
    text = config_text(tmp_path, mosquitto, postgres, log_level="info")
    conf = daemon.write_config(text)
    start_ready(daemon, conf)

    nmark = len(daemon.notifications)
    daemon.write_config(text.replace("log_level = info", "log_level = error"))
    daemon.signal(signal.SIGHUP)
    daemon.wait_notify("READY=1", since=nmark)

    lmark, nmark = daemon.wait_quiet(), len(daemon.notifications)
    daemon.write_config(text.replace("log_level = info", "log_level = error")
                        .replace("[mqtt]", "[mqtt]\nno_such_key = 1"))
    daemon.signal(signal.SIGHUP)
    failed = daemon.wait_log(
        r'mod=config msg="reload failed, keeping previous configuration"', since=lmark)
    daemon.wait_notify("READY=1", since=nmark)
    after = daemon.lines[lmark:]
    assert logfmt.select(after, mod="config", msg="invalid configuration"), after
    quieter = [x for x in after[:after.index(failed)]
               if logfmt.fields(x)["level"] in ("debug", "info", "notice")]
    assert not quieter, f"lines below log_level = error: {quieter}"
    assert daemon.running
    assert daemon.stop() == 0
    assert_logfmt(daemon.lines)


# --------------------------------------------------------------------------
# configuration errors and -n / -nv

BAD_CONFIG = """\
; five distinct errors, one per kind
[daemon]
log_level = info
no_such_key = 1
[mqtt]
port = abc
keepalive = 30
keepalive = 45
[store]
port = 70000
[no_such_section]
foo = bar
"""
# line numbers above: unknown key 4, bad int 6, duplicate key 8, out of range 10,
# unknown section 11 (or 12, its first key: inih reports sections through keys)


def config_errors(stderr: str, path) -> dict[int, list[str]]:
    """{line number: [messages]} of the `FILE:LINE: message` lines in stderr."""
    rx = re.compile(re.escape(str(path)) + r":(\d+): (.+)$")
    out: dict[int, list[str]] = {}
    for line in stderr.splitlines():
        m = rx.match(line)
        if m:
            out.setdefault(int(m.group(1)), []).append(m.group(2))
    return out


def assert_bad_config_errors(stderr, path):
    errors = config_errors(stderr, path)
    assert {4, 6, 8, 10} <= set(errors), f"missing FILE:LINE errors in:\n{stderr}"
    assert errors.keys() & {11, 12}, f"no error for the unknown section in:\n{stderr}"
    assert not set(errors) - {4, 6, 8, 10, 11, 12}, f"errors on good lines:\n{stderr}"


def test_bad_config_at_start_reports_every_error_and_exits_1(daemon):
    conf = daemon.write_config(BAD_CONFIG)
    daemon.start(conf)
    assert daemon.wait(10) == 1
    assert_bad_config_errors("\n".join(daemon.lines), conf)
    assert "READY=1" not in daemon.notify_assignments()


def test_check_mode_on_bad_config_exits_1(daemon):
    conf = daemon.write_config(BAD_CONFIG)
    r = daemon.run(["-n", "-c", str(conf)])
    assert r.returncode == 1, r
    assert_bad_config_errors(r.stderr, conf)


def test_check_mode_on_good_config_exits_0(daemon, tmp_path):
    conf = daemon.write_config(textwrap.dedent(f"""\
        [daemon]
        log_level = warning
        state_dir = {tmp_path / 'state'}
        [mqtt]
        port = 1884
        """))
    r = daemon.run(["-n", "-c", str(conf)])
    assert r.returncode == 0, r


def test_shipped_example_config_passes_check(daemon, repo_root):
    example = repo_root / "conf" / "gridbridge.conf"
    assert example.is_file(), f"{example} is missing: the shipped example config"
    r = daemon.run(["-n", "-c", str(example)])
    assert r.returncode == 0, f"{example} fails -n:\n{r.stderr}"


@pytest.mark.parametrize("flags", [["-nv"], ["-n", "-v"]], ids=["-nv", "-n -v"])
def test_check_verbose_prints_effective_config_with_secrets_redacted(daemon, tmp_path, flags):
    store_secret, mqtt_secret = "s3cret-store-pw-81f2", "s3cret-mqtt-pw-6c0e"
    conf = daemon.write_config(textwrap.dedent(f"""\
        [daemon]
        state_dir = {tmp_path / 'state'}
        [mqtt]
        port = 1884
        password = {mqtt_secret}
        [store]
        dbname = events
        password = {store_secret}
        """))
    r = daemon.run([*flags, "-c", str(conf)])
    assert r.returncode == 0, r
    for secret in (store_secret, mqtt_secret):
        assert secret not in r.stdout and secret not in r.stderr

    ini = configparser.ConfigParser(interpolation=None, strict=True)
    ini.read_string(r.stdout)
    for section, keys in SPEC_KEYS.items():
        assert section in ini, f"[{section}] missing from -nv output:\n{r.stdout}"
        assert keys <= set(ini[section]), f"keys missing from [{section}]:\n{r.stdout}"
    assert ini["store"]["password"] == "<redacted>"
    assert ini["mqtt"]["password"] == "<redacted>"
    assert re.search(r"^password = <redacted>$", r.stdout, re.M)
    # values from the file
    assert ini["mqtt"]["port"] == "1884"
    assert ini["store"]["dbname"] == "events"
    assert ini["daemon"]["state_dir"] == str(tmp_path / "state")
    # defaults filled in
    assert ini["daemon"]["log_level"] == "info"
    assert ini["mqtt"]["host"] == "127.0.0.1"
    assert ini["mqtt"]["client_id"] == "gridbridge"
    assert ini["mqtt"]["keepalive"] == "60"
    assert ini["store"]["port"] == "5432"
    assert ini["store"]["user"] == "gridbridge"


def test_version_and_help(daemon):
    r = daemon.run(["--version"])
    assert r.returncode == 0, r
    assert re.fullmatch(r"gridbridged \S+\n?", r.stdout), r.stdout
    r = daemon.run(["-h"])
    assert r.returncode == 0, r
    assert "usage" in (r.stdout + r.stderr).lower()
