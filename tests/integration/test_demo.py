"""The README's first command, `./scripts/demo`, minus its install and build
steps: scripts/demo.py against this build (GRIDBRIDGE_BUILD_DIR), with its
own private broker, PostgreSQL, HTTPS endpoint and GA/T 1400 platforms.

It must say what a new user is told to look for: every sample device event
accepted by the broker, each one stored, events received by the police
platform's endpoint, the daemon stopped with status 0, and its verdict
"demo succeeded" (the demo checks, besides, the GA/T 1400 uploads, the
cascade notifications, the welfare alert and the status command). The
daemon's own log lines in its output carry none of the samples' names and
plates.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import services

DEMO = services.REPO_ROOT / "scripts" / "demo.py"
# The samples' personal data: a card holder's and a face's names, a plate.
PERSONAL = ("LI Si", "ZHANG", "A12345")


def test_demo_runs_and_says_what_it_did():
    env = dict(os.environ, GRIDBRIDGE_BUILD_DIR=str(services.default_build_dir()))
    proc = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True,
                          timeout=300, env=env, stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    lines = out.splitlines()
    assert proc.returncode == 0, f"demo exited {proc.returncode}:\n{out[-4000:]}"
    assert lines and re.match(r"demo succeeded in [0-9.]+ s$", lines[-1]), out[-2000:]

    total = len(services.device_fixtures())
    assert f"{total} of {total} sample device events accepted by the broker." in lines, \
        out[-4000:]
    stored = [ln for ln in lines if re.match(r"-> \d+ events and \d+ quarantined", ln)]
    assert stored and stored[0].startswith(f"-> {total} events and 0 quarantined"), stored
    received = [re.search(r"the endpoint received (\d+) events", ln) for ln in lines]
    received = [int(m.group(1)) for m in received if m]
    assert received and received[0] > 0, out[-4000:]
    assert "-> gridbridged exited with status 0" in lines, out[-4000:]

    daemon_lines = [ln for ln in lines if ln.lstrip().startswith("gridbridged |")]
    assert daemon_lines, "the demo shows none of the daemon's log lines"
    leaked = [ln for ln in daemon_lines if any(p in ln for p in PERSONAL)]
    assert not leaked, leaked
