"""pytest fixtures around services.py: real broker, database, HTTPS endpoint, daemon.

    mosquitto         a private broker per test
    postgres          one PostgreSQL cluster per session (shared; do not stop it)
    private_postgres  a cluster of the test's own, free to stop -m immediate and restart
    https_endpoint    an mTLS endpoint per test
    daemon            a Daemon helper per test; fails the test on sanitizer reports
    build_dir         $GRIDBRIDGE_BUILD_DIR or <repo>/build
"""

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
