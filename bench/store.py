#!/usr/bin/python3
"""Store benchmark: rows/s into `events` by the daemon's insert (unnest of
binary arrays, ON CONFLICT DO NOTHING) against the alternatives, on a private
PostgreSQL 15 cluster.

    /usr/bin/python3 bench/store.py [-n 200000] [-b 500] [--batches B:N,...]
                                    [--repeat 3] [--variants abcdef] [--pad R:A]
                                    [--build DIR]

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
median, the median of the per-run ratios to a (to h without a), each run's
CPU µs per row of the whole cluster and its median, the median of the
per-run ratios of that to the COPY pipe's (t) and to COPY per batch (s), and
the medians of the backend's and the client's CPU µs per row and of the WAL
bytes per row. --batches runs several batch sizes (each with its row count)
in every repeat, one after the other, and prints one table per batch size.
After each run: the CPU the machine's other processes used meanwhile
(/proc/stat less bench_store's and the cluster's), DISTURBED over 0.25 cores.

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
    "a": "unnest binary, attrs on (events alone; the daemon's batch is h)",
    "b": "unnest binary, attrs NULL",
    "c": "COPY binary -> TEMP staging + INSERT SELECT ON CONFLICT",
    "d": "unnest text arrays, attrs on",
    "e": "COPY binary -> staging, attrs NULL",
    "f": "COPY binary straight into events (no ON CONFLICT; ceiling)",
    "g": "unnest binary without ON CONFLICT (reference)",
    "h": "daemon batch as is (events+event_ids+outbox, notify, checkpoint)",
    "i": "daemon, attrs NULL",
    "j": "daemon, without events' 3 secondary btree indexes",
    "k": "daemon, dedupe by events PK only (no event_ids)",
    "l": "daemon, events insert without ON CONFLICT (event_ids decides)",
    "m": "daemon, without pg_notify",
    "n": "daemon, without the checkpoint upsert",
    "o": "daemon, no outbox rows (no event matches a rule)",
    "p": "daemon, an outbox row for every event",
    "q": "daemon, prepared statements",
    "r": "daemon, prepared + attrs NULL + no secondary indexes",
    "s": "COPY raw(topic, payload) text, one transaction per batch",
    "t": "COPY pipe: raw(topic, payload), all rows in one COPY (e2e baseline)",
    "u": "r + dedupe by events PK only (no event_ids)",
    "v": "daemon, prepared + attrs NULL",
    "w": "daemon, prepared + no secondary indexes",
    "x": "u with no outbox rows (the events insert alone)",
    "y": "daemon, prepared, without pg_notify and checkpoint upsert",
    "z": "daemon, prepared, an event_ids row for every event (as before)",
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


def machine_busy_s() -> float:
    """CPU seconds not idle, all CPUs, since boot (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def cluster_cpu_s(data_dir: Path) -> float:
    """CPU seconds of our cluster: postmaster (with its ended children) and
    its live children."""
    tck = os.sysconf("SC_CLK_TCK")
    try:
        pm = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        f = Path(f"/proc/{pm}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return 0.0
    total = sum(int(x) for x in f[11:15]) / tck
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                g = (d / "stat").read_text().rsplit(")", 1)[1].split()
                if int(g[1]) == pm:
                    total += (int(g[11]) + int(g[12])) / tck
            except (OSError, ValueError, IndexError):
                pass
    return total


def parse_batches(text: str, rows: int, batch: int) -> list[tuple[int, int]]:
    if not text:
        return [(batch, rows)]
    out = []
    for part in text.split(","):
        b, _, n = part.partition(":")
        out.append((int(b), int(n) if n else rows))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--rows", type=int, default=200000)
    ap.add_argument("-b", "--batch", type=int, default=500)
    ap.add_argument("--batches", default="", metavar="B:N,...",
                    help="several batch sizes, each with its row count (e.g."
                    " 500:40000,10:6000,1:1500); every repeat runs each in turn")
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
    batches = parse_batches(args.batches, args.rows, args.batch)

    t_start = time.monotonic()
    failed = False
    # runs[batch] = list of {variant: line}; others[batch] = other processes'
    # CPU (cores) during each run
    runs: dict[int, list[dict[str, dict[str, str]]]] = {b: [] for b, _ in batches}
    others: dict[int, list[float]] = {b: [] for b, _ in batches}
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
                      "wal_compression", "temp_buffers", "autovacuum"):
                cur.execute(f"SHOW {k}")
                shown[k] = cur.fetchone()[0]
        conn.close()
        print(f"postgres {version} on {pg.host}:{pg.port}: " +
              " ".join(f"{k}={v}" for k, v in shown.items()), flush=True)

        for i in range(args.repeat):
            order = args.variants if args.no_rotate else rotate(args.variants, i)
            for batch, nrows in batches:
                busy = wait_quiet(args.quiet, args.quiet_wait)
                print(f"--- run {i + 1}/{args.repeat} batch={batch} rows={nrows} order={order}"
                      f" cpu_busy_before={busy:.0%}{' (BUSY)' if busy > args.quiet else ''}",
                      flush=True)
                m0, k0 = machine_busy_s(), cluster_cpu_s(pg.data_dir)
                r0, w0 = os.times(), time.monotonic()
                try:
                    argv = [str(exe), "-v", order, "-s", "1"]
                    if args.pad:
                        argv += ["-p", args.pad]
                    r = subprocess.run([*argv, pg.dsn, str(nrows), str(batch)],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True,
                                       timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    print(f"run {i + 1}: timed out after {args.timeout:.0f} s", file=sys.stderr)
                    failed = True
                    continue
                r1, w1 = os.times(), time.monotonic()
                mine = (r1.children_user + r1.children_system - r0.children_user
                        - r0.children_system) + (cluster_cpu_s(pg.data_dir) - k0)
                other = max(0.0, (machine_busy_s() - m0 - mine) / (w1 - w0))
                sys.stdout.write(r.stdout)
                sys.stderr.write(r.stderr)
                print(f"other processes during the run: {other:.2f} cores"
                      f"{' (DISTURBED)' if other > 0.25 else ''}", flush=True)
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
                runs[batch].append(res)
                others[batch].append(other)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        failed = True
    finally:
        pg.close()

    for batch, nrows in batches:
        if runs[batch]:
            table(args, batch, nrows, runs[batch], others[batch])
    print(f"total {time.monotonic() - t_start:.0f} s")
    return 1 if failed or not any(runs.values()) else 0


def table(args, batch: int, nrows: int, runs: list[dict], others: list[float]) -> None:
    """Per variant: rows/s, cluster and backend CPU per row (medians), and
    the ratios, each per run then the median: rows/s to a's (or h's), cluster
    CPU per row to the COPY pipe's (t) and to COPY per batch (s)."""
    base = "a" if "a" in args.variants else "h" if "h" in args.variants else None

    def per_run_ratio(run, v, ref, key, inv=False):
        if v not in run or ref not in run:
            return None
        x, y = run[v].get(key, "-"), run[ref].get(key, "-")
        if x == "-" or y == "-" or float(y) == 0:
            return None
        return float(y) / float(x) if inv else float(x) / float(y)

    print()
    print(f"{nrows:,} rows per variant and run, batches of {batch} rows, one transaction"
          f" per batch; {len(runs)} runs (other processes: "
          + ", ".join(f"{o:.2f}" for o in others) + " cores)")
    hdr = ["variant", *[f"run {i + 1} rows/s" for i in range(len(runs))],
           "median rows/s", f"rows/s ÷ {base}" if base else "-",
           "cluster µs/row (runs)", "cluster µs/row", "× COPY pipe (t)",
           "× COPY per batch (s)", "backend µs/row", "client µs/row", "WAL B/row"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for v in args.variants:
        got = [run.get(v) for run in runs]
        rates = [float(g["rows_per_s"]) if g else None for g in got]
        ok = [g for g in got if g]

        def med(key):
            xs = [float(g[key]) for g in ok if g.get(key, "-") != "-"]
            return statistics.median(xs) if xs else None

        def med_ratio(ref, key, inv=False):
            xs = [per_run_ratio(run, v, ref, key, inv) for run in runs]
            xs = [x for x in xs if x is not None]
            return statistics.median(xs) if xs else None
        rr = med_ratio(base, "rows_per_s") if base else None
        kt, ks = (med_ratio("t", "cluster_cpu_us_row"),
                  med_ratio("s", "cluster_cpu_us_row"))
        kc = [g.get("cluster_cpu_us_row", "-") if g else "-" for g in got]
        srv, cli, kl = med("server_cpu_us_row"), med("client_cpu_us_row"), med(
            "cluster_cpu_us_row")
        cells = [f"{v} {NAMES[v]}", *[fmt_int(x) for x in rates],
                 fmt_int(med("rows_per_s")),
                 "-" if rr is None else f"{rr:.2f}",
                 " / ".join(kc),
                 "-" if kl is None else f"{kl:.1f}",
                 "-" if kt is None else f"{kt:.1f}",
                 "-" if ks is None else f"{ks:.2f}",
                 "-" if srv is None else f"{srv:.1f}",
                 "-" if cli is None else f"{cli:.1f}",
                 fmt_int(med("wal_bytes_row"))]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
