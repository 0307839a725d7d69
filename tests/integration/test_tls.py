"""MQTT over TLS with client certificates: the broker's TLS listener requires
a certificate signed by the test CA; the daemon presents one and verifies
the broker's; publishers use TLS too."""

import os
import re
import time

import logfmt
import services
from ingest import JournalCtl, JournalWatcher, daemon_config, make_payload, start_daemon

READY_TIMEOUT = 30.0


def test_tls_with_client_certificate_journals(daemon, broker_factory, pki, build_dir,
                                              tmp_path):
    broker = broker_factory(extra_conf=services.INGEST_BROKER_CONF, tls=pki,
                            save_every_change=False)
    conf = daemon.write_config(daemon_config(tmp_path, broker, tls=True))
    ctl = JournalCtl(build_dir, conf=conf, log_path=daemon.dir / "gridbridgectl.log")
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    connected = logfmt.fields(daemon.wait_log(r'mod=mqtt msg="connected"'))
    assert connected["port"] == str(broker.tls_port), connected
    assert re.search(rf"New connection from \S+ on port {broker.tls_port}\.",
                     broker.log_path.read_text()), services.tail(broker.log_path)

    topic = "sac/c3/vehicle/anpr1/event"
    broker.publish(topic, make_payload("tls", 1), tls=True)
    watcher = JournalWatcher(ctl)
    watcher.wait_for_keys({("tls", 1)}, timeout=30, alive=lambda: daemon.running)
    assert watcher.records[0]["topic"] == topic
    assert daemon.stop(timeout=30) == 0


def test_tls_with_wrong_ca_does_not_connect_and_says_why(daemon, broker_factory, pki,
                                                         build_dir, tmp_path):
    broker = broker_factory(extra_conf=services.INGEST_BROKER_CONF, tls=pki,
                            save_every_change=False)
    conf = daemon.write_config(daemon_config(tmp_path, broker, tls=True,
                                             ca_file=pki.wrong_ca))
    daemon.start(conf)
    daemon.wait_notify("READY=1", timeout=READY_TIMEOUT)
    err = daemon.wait_log(r'mod=mqtt msg="library error"', timeout=15)
    f = logfmt.fields(err)
    assert f["level"] == "error", err
    assert "certificate verify failed" in f["error"], err
    failed = logfmt.fields(daemon.wait_log(r'mod=mqtt msg="connection failed"', timeout=15))
    assert failed["level"] == "warn" and failed.get("error"), failed

    # it keeps trying (and failing) without connecting, and without exiting
    time.sleep(2.0)
    assert daemon.running
    assert not logfmt.select(daemon.lines, mod="mqtt", msg="connected")
    assert not re.search(r"as gridbridge-test", broker.log_path.read_text()), \
        services.tail(broker.log_path)
    # the outage is reported once at warn, not once per retry
    warns = logfmt.select(daemon.lines, mod="mqtt", msg="connection failed", level="warn")
    assert len(warns) == 1, warns
    # meanwhile a publisher over TLS with the right CA still gets through
    broker.publish("sac/c3/vehicle/anpr1/event", make_payload("tls", 2), tls=True)
    assert daemon.stop(timeout=30) == 0
    assert JournalCtl(build_dir, conf=conf).stat()["records"] == 0


def test_tls_failure_after_a_session_still_says_why(daemon, broker_factory, pki, build_dir,
                                                    tmp_path):
    """libmosquitto's own messages are listened to while a connection is made
    (not during a session: it formats a line per packet); a reconnect to a
    broker whose certificate the daemon does not trust still gets its reason."""
    broker = broker_factory(extra_conf=services.INGEST_BROKER_CONF, tls=pki,
                            save_every_change=False)
    conf = daemon.write_config(daemon_config(tmp_path, broker, tls=True))
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    daemon.wait_log(r'mod=mqtt msg="connected"', timeout=15)
    assert not logfmt.select(daemon.lines, mod="mqtt", msg="library error")

    broker.stop()
    other = services.TestPKI(tmp_path / "other-pki")
    impostor = broker_factory(extra_conf=services.INGEST_BROKER_CONF, tls=other,
                              tls_port=broker.tls_port, port=broker.port,
                              save_every_change=False)
    assert impostor.tls_port == broker.tls_port
    err = logfmt.fields(daemon.wait_log(r'mod=mqtt msg="library error"', timeout=30))
    assert err["level"] == "error", err
    assert "certificate verify failed" in err["error"], err
    assert len(logfmt.select(daemon.lines, mod="mqtt", msg="connected")) == 1
    assert daemon.running
    assert daemon.stop(timeout=30) == 0


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_tls_broker_restart_reconnects_without_spinning(daemon, broker_factory, pki,
                                                        build_dir, tmp_path):
    """A TLS connect refused while the broker is down (libmosquitto 2.0 takes
    the failed handshake for one under way) must count as a failed attempt:
    no busy loop until the keepalive (30 s here) runs out, and the broker
    back up is found within the reconnect backoff's cap (5 s)."""
    broker = broker_factory(extra_conf=services.INGEST_BROKER_CONF, tls=pki,
                            save_every_change=False)
    conf = daemon.write_config(daemon_config(tmp_path, broker, tls=True))
    ctl = JournalCtl(build_dir, conf=conf, log_path=daemon.dir / "gridbridgectl.log")
    start_daemon(daemon, conf, timeout=READY_TIMEOUT)
    daemon.wait_log(r'mod=mqtt msg="connected"', timeout=15)

    broker.stop()
    daemon.wait_log(r'mod=mqtt msg="disconnected"', timeout=15)
    before = _cpu_seconds(daemon.pid)
    time.sleep(3.0)     # a few attempts, each refused
    spent = _cpu_seconds(daemon.pid) - before
    assert spent < 0.5, f"{spent:.2f} s of CPU in 3 s with the broker down"

    mark = len(daemon.lines)
    back = broker_factory(extra_conf=services.INGEST_BROKER_CONF, tls=pki,
                          tls_port=broker.tls_port, port=broker.port,
                          save_every_change=False)
    started = time.monotonic()
    _, at = daemon.wait_log_timed(r'mod=mqtt msg="connected"', timeout=30, since=mark)
    assert at - started < 8.0, f"reconnected {at - started:.1f} s after the broker was back"
    back.publish("sac/c3/vehicle/anpr1/event", make_payload("tls", 3), tls=True)
    JournalWatcher(ctl).wait_for_keys({("tls", 3)}, timeout=30, alive=lambda: daemon.running)
    assert daemon.stop(timeout=30) == 0
