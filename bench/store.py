#!/usr/bin/python3
"""Store benchmark: rows/s into `events` by the daemon's insert (unnest of
binary arrays, ON CONFLICT DO NOTHING) against the alternatives, on a private
PostgreSQL 15 cluster.

    /usr/bin/python3 bench/store.py [-n 200000] [-b 500] [--repeat 3]
                                    [--variants abcdef] [--pad R:A] [--build DIR]

Starts a cluster with tests/integration/services.py's Postgres (127.0.0.1,
free port, temporary directory, fsync on; as root it runs as the postgres
user), grants the gridbridge role pg_checkpoint (so bench_store can CHECKPOINT
before each variant), applies --pg settings (default shared_buffers=128MB,
PostgreSQL's own default; the test cluster has 32MB), then runs
build/bench/bench_store --repeat times. Each run makes a fresh schema, the
same rows, and runs every variant once; the order of the variants rotates
from run to run (abcdef, bcdefa, cdefab, ...) so that none always goes first. Each
run's ratios are against variant a in that same run.

Prints each run's lines, then a table: per variant, rows/s of every run, the
median, the median of the per-run ratios to a, and the medians of the
backend's CPU µs per row, WAL bytes per row and table bytes per row.

Before each run it waits (up to --quiet-wait s) until the CPUs are less than
--quiet busy. Every run has a timeout (--timeout); the cluster is stopped and
removed at the end, also on Ctrl-C or an error. Exit status 1 if a run failed.

Standard library + psycopg2 (services.py); run with Debian's /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import services  # noqa: E402

NAMES = {
    "a": "unnest binary, attrs on (daemon)",
    "b": "unnest binary, attrs NULL",
    "c": "COPY binary -> TEMP staging + INSERT SELECT ON CONFLICT",
    "d": "unnest text arrays, attrs on",
    "e": "COPY binary -> staging, attrs NULL",
    "f": "COPY binary straight into events (no ON CONFLICT; ceiling)",
    "g": "unnest binary without ON CONFLICT (reference)",
}


def cpu_busy(seconds: float = 0.5) -> float:
    """Fraction of all CPUs not idle over the next `seconds` (/proc/stat)."""
    def sample():
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(f), f[3] + f[4]
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / (t1 - t0) if t1 > t0 else 0.0


def wait_quiet(limit: float, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    busy = cpu_busy()
    while busy > limit and time.monotonic() < deadline:
        busy = cpu_busy(1.0)
    return busy


def parse(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


def rotate(s: str, k: int) -> str:
    k %= len(s)
    return s[k:] + s[:k]


def fmt_int(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--rows", type=int, default=200000)
    ap.add_argument("-b", "--batch", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants", default="abcdef",
                    help="letters (a must be among them for ratios): " +
                    ", ".join(f"{k} {v}" for k, v in NAMES.items()))
    ap.add_argument("--pad", metavar="R:A", default=None,
                    help="bench_store -p: records R times, attrs A times bigger (e.g. 2:1.6)")
    ap.add_argument("--no-rotate", action="store_true", help="same order in every run")
    ap.add_argument("--build", type=Path, default=REPO / "build", help="build directory")
    ap.add_argument("--pg", action="append", default=None, metavar="KEY=VALUE",
                    help="server setting (ALTER SYSTEM); default shared_buffers=128MB")
    ap.add_argument("--timeout", type=float, default=240, help="seconds per run")
    ap.add_argument("--quiet", type=float, default=0.15)
    ap.add_argument("--quiet-wait", type=float, default=30)
    args = ap.parse_args()

    exe = args.build.resolve() / "bench" / "bench_store"
    if not os.access(exe, os.X_OK):
        print(f"{exe} not built: ninja -C {args.build}", file=sys.stderr)
        return 1
    if any(v not in NAMES for v in args.variants) or not args.variants:
        print(f"bad --variants {args.variants!r}", file=sys.stderr)
        return 2
    settings = args.pg if args.pg is not None else ["shared_buffers=128MB"]

    t_start = time.monotonic()
    failed = False
    runs: list[dict[str, dict[str, str]]] = []
    pg = services.Postgres()
    try:
        pg.start()
        conn = pg.superuser_connect(dbname=pg.dbname)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'GRANT pg_checkpoint TO "{pg.user}"')
            for kv in settings:
                k, v = kv.split("=", 1)
                cur.execute(f"ALTER SYSTEM SET {k} = %s", (v,))
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]
        conn.close()
        if settings:
            pg.restart()
        conn = pg.superuser_connect(dbname=pg.dbname)
        with conn.cursor() as cur:
            shown = {}
            for k in ("shared_buffers", "max_wal_size", "synchronous_commit", "fsync",
                      "wal_compression", "temp_buffers"):
                cur.execute(f"SHOW {k}")
                shown[k] = cur.fetchone()[0]
        conn.close()
        print(f"postgres {version} on {pg.host}:{pg.port}: " +
              " ".join(f"{k}={v}" for k, v in shown.items()), flush=True)

        for i in range(args.repeat):
            order = args.variants if args.no_rotate else rotate(args.variants, i)
            busy = wait_quiet(args.quiet, args.quiet_wait)
            print(f"--- run {i + 1}/{args.repeat} order={order}"
                  f" cpu_busy_before={busy:.0%}{' (BUSY)' if busy > args.quiet else ''}",
                  flush=True)
            try:
                argv = [str(exe), "-v", order, "-s", "1"]
                if args.pad:
                    argv += ["-p", args.pad]
                r = subprocess.run([*argv, pg.dsn, str(args.rows), str(args.batch)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"run {i + 1}: timed out after {args.timeout:.0f} s", file=sys.stderr)
                failed = True
                continue
            sys.stdout.write(r.stdout)
            sys.stderr.write(r.stderr)
            if r.returncode != 0:
                print(f"run {i + 1}: bench_store exited {r.returncode}: {r.stderr.strip()}",
                      file=sys.stderr)
                failed = True
                continue
            res = {}
            for line in r.stdout.splitlines():
                kv = parse(line)
                if "variant" in kv:
                    res[kv["variant"]] = kv
            runs.append(res)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        failed = True
    finally:
        pg.close()

    if runs:
        print()
        print(f"{args.rows:,} rows per variant and run, batches of {args.batch},"
              f" one transaction per batch; ratio = rows/s / variant a's in the same run")
        hdr = ["variant", *[f"run {i + 1} rows/s" for i in range(len(runs))],
               "median rows/s", "ratio (median)", "server µs/row", "client µs/row",
               "WAL B/row", "table B/row"]
        print("| " + " | ".join(hdr) + " |")
        print("|" + "---|" * len(hdr))
        for v in args.variants:
            got = [run.get(v) for run in runs]
            rates = [float(g["rows_per_s"]) if g else None for g in got]
            ok = [g for g in got if g]

            def med(key):
                xs = [float(g[key]) for g in ok if g.get(key, "-") != "-"]
                return statistics.median(xs) if xs else None
            ratio = med("ratio")
            srv, cli = med("server_cpu_us_row"), med("client_cpu_us_row")
            cells = [f"{v} {NAMES[v]}", *[fmt_int(x) for x in rates],
                     fmt_int(med("rows_per_s")),
                     "-" if ratio is None else f"{ratio:.2f}",
                     "-" if srv is None else f"{srv:.0f}",
                     "-" if cli is None else f"{cli:.1f}",
                     fmt_int(med("wal_bytes_row")), fmt_int(med("table_bytes_row"))]
            print("| " + " | ".join(cells) + " |")
    print(f"total {time.monotonic() - t_start:.0f} s")
    return 1 if failed or not runs else 0


if __name__ == "__main__":
    sys.exit(main())
