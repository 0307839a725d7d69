"""The fault suite: the integration suite's services (real mosquitto,
PostgreSQL and HTTPS endpoint on loopback, the daemon under test), one
scenario per test, and the table of what each survived at the end.

    python3 -m pytest tests/fault                 # every scenario, CI sizes
    python3 -m pytest tests/fault -k postgres     # one scenario (or a few)
    GRIDBRIDGE_FAULT_SCALE=10 python3 -m pytest tests/fault   # ten times the sizes
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

INTEGRATION = Path(__file__).resolve().parent.parent / "integration"
sys.path.insert(0, str(INTEGRATION))

# The integration suite's fixtures and hooks (services, daemon, report).
_spec = importlib.util.spec_from_file_location("gridbridge_integration_conftest",
                                               INTEGRATION / "conftest.py")
_integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_integration)
for _name, _value in vars(_integration).items():
    if not _name.startswith("__") and _name not in ("pytest_terminal_summary",):
        globals()[_name] = _value

_ROWS_ENV = "GRIDBRIDGE_FAULT_ROWS"
COLUMNS = ("events", "lost", "duplicated", "unexpected", "fwd_missing", "fwd_dup",
           "recovery_s", "peak_rss_mib")


def pytest_configure(config):
    _integration.pytest_configure(config)
    if not hasattr(config, "workerinput") and _ROWS_ENV not in os.environ:
        fd, path = tempfile.mkstemp(prefix="gridbridge-fault-", suffix=".jsonl")
        os.close(fd)
        os.environ[_ROWS_ENV] = path
        config._gridbridge_fault_rows = path


def pytest_unconfigure(config):
    _integration.pytest_unconfigure(config)
    path = getattr(config, "_gridbridge_fault_rows", None)
    if path is not None:
        os.environ.pop(_ROWS_ENV, None)
        try:
            os.unlink(path)
        except OSError:
            pass


@pytest.fixture
def fault_row(request):
    """fault_row(events=, lost=, ...): the scenario's line in the table."""
    def add(**values) -> None:
        row = {"scenario": request.node.name.removeprefix("test_"), **values}
        path = os.environ.get(_ROWS_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        print("fault: " + " ".join(f"{k}={v}" for k, v in row.items()))
    return add


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def pytest_terminal_summary(terminalreporter, config):
    _integration.pytest_terminal_summary(terminalreporter, config)
    path = getattr(config, "_gridbridge_fault_rows", None)
    if path is None:
        return
    try:
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except OSError:
        return
    if not rows:
        return
    rows.sort(key=lambda r: r["scenario"])
    width = max(len("scenario"), *(len(r["scenario"]) for r in rows))
    terminalreporter.section("fault suite")
    terminalreporter.write_line(f"{'scenario':{width}}" +
                                "".join(f"{c:>13}" for c in COLUMNS))
    for r in rows:
        terminalreporter.write_line(f"{r['scenario']:{width}}" +
                                    "".join(f"{_fmt(r.get(c)):>13}" for c in COLUMNS))
