"""pytest fixtures around services.py: real broker, database, HTTPS endpoint, daemon.

    mosquitto         a private broker per test
    postgres          one PostgreSQL cluster per session (shared; do not stop it)
    private_postgres  a cluster of the test's own, free to stop -m immediate and restart
    https_endpoint    an mTLS endpoint per test
    daemon            a Daemon helper per test; fails the test on sanitizer reports
    build_dir         $GRIDBRIDGE_BUILD_DIR or <repo>/build
    broker_factory    make_broker(extra_conf=..., tls=pki): brokers stopped at teardown
    ingest_broker     a broker for heavy QoS 1 traffic (services.INGEST_BROKER_CONF)
    pki               a services.TestPKI in the test's directory
    report            report(text): a line for the summary at the end of the run
"""

import os
import tempfile
from pathlib import Path

import pytest

import services


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return services.REPO_ROOT


@pytest.fixture(scope="session")
def build_dir() -> Path:
    return services.default_build_dir()


@pytest.fixture
def mosquitto(tmp_path):
    broker = services.Mosquitto(tmp_path / "mosquitto")
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    db = services.Postgres(tmp_path_factory.mktemp("postgres"))
    try:
        db.start()
        yield db
    finally:
        db.close()


@pytest.fixture
def private_postgres(tmp_path):
    db = services.Postgres(tmp_path / "postgres")
    try:
        db.start()
        yield db
    finally:
        db.close()


@pytest.fixture
def https_endpoint(tmp_path):
    endpoint = services.HttpsEndpoint(tmp_path / "https")
    try:
        endpoint.start()
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture
def daemon(build_dir, tmp_path):
    d = services.Daemon(build_dir, tmp_path / "daemon")
    try:
        d.check_binary()
    except services.ServiceError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield d
    finally:
        d.close()
    report = d.sanitizer_reports()
    if report:
        pytest.fail(f"sanitizer report on the daemon's stderr (log: {d.log_path}):\n{report}",
                    pytrace=False)


@pytest.fixture
def broker_factory(tmp_path):
    """make_broker(**kwargs) -> a started services.Mosquitto; all stopped at teardown."""
    brokers = []

    def make_broker(**kwargs):
        b = services.Mosquitto(tmp_path / f"mosquitto{len(brokers) or ''}", **kwargs)
        brokers.append(b)
        return b.start()
    try:
        yield make_broker
    finally:
        for b in brokers:
            b.stop()


@pytest.fixture
def ingest_broker(broker_factory):
    """A broker for heavy QoS 1 traffic that is not killed: the in-flight window
    and unlimited queue of gridbridge.conf(5) BROKER SETTINGS, persistence on
    but saved on a clean stop only. (autosave_on_changes, also recommended
    there, fsyncs the whole database per loop pass: ~600 messages/s, and
    quadratic while thousands are queued; test_faults.py uses it where the
    broker is killed.)"""
    return broker_factory(extra_conf=services.INGEST_BROKER_CONF, save_every_change=False)


@pytest.fixture
def pki(tmp_path):
    return services.TestPKI(tmp_path / "pki")


# report() lines go through a file, so that the lines of pytest-xdist's
# workers reach the summary the controller prints.
_REPORTS_ENV = "GRIDBRIDGE_TEST_REPORTS"


def pytest_configure(config):
    if not hasattr(config, "workerinput") and _REPORTS_ENV not in os.environ:
        fd, path = tempfile.mkstemp(prefix="gridbridge-reports-", suffix=".txt")
        os.close(fd)
        os.environ[_REPORTS_ENV] = path
        config._gridbridge_reports = path


def pytest_unconfigure(config):
    path = getattr(config, "_gridbridge_reports", None)
    if path is not None:
        os.environ.pop(_REPORTS_ENV, None)
        try:
            os.unlink(path)
        except OSError:
            pass


@pytest.fixture
def report(request):
    """report(text): printed in the terminal summary (e.g. duplicate counts)."""
    def add(text: str) -> None:
        line = f"{request.node.name}: {text}".replace("\n", " ")
        path = os.environ.get(_REPORTS_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        print(text)
    return add


def pytest_terminal_summary(terminalreporter, config):
    path = getattr(config, "_gridbridge_reports", None)
    if path is None:
        return
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    if lines:
        terminalreporter.section("gridbridge measurements")
        for line in lines:
            terminalreporter.write_line(line)
