#!/usr/bin/python3
"""The install test: `meson install` into a temporary DESTDIR, then what a
packager or an operator looks at, as TAP:

  * a build with the default options installs where the docs' paths say;
  * the tree holds the files README.md ("Running in production") lists, at
    this build's prefix and sysconfdir, and nothing else;
  * gridbridged(8) FILES names installed paths;
  * both programs' default configuration is the installed file, and the
    unit runs the installed daemon on it;
  * the installed configuration is the shipped example and passes
    `gridbridged -n`; a second install keeps an edited one;
  * the man pages of the unit's Documentation= are installed;
  * `systemd-analyze verify` on the installed unit says nothing (a warning
    is a failure: it exits 0 on unknown keys and bad values), in a root
    made of the DESTDIR and this machine's system units, so that the
    ExecStart= binaries are the installed ones;
  * `systemd-analyze security` rates the unit at most EXPOSURE_MAX.

Everything is made in one temporary directory, removed at the end.

usage: check.py --meson MESON --source-root DIR --build-root DIR
                --prefix P --bindir D --sbindir D --datadir D --mandir D
                --sysconfdir D
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

# The unit's rating when this test was written; lower is better. A change
# to the sandbox that raises it fails here; one that lowers it lowers this.
EXPOSURE_MAX = 1.2

# How README.md and gridbridged(8) write paths: those of the default build
# (prefix /usr/local, sysconfdir /etc).
DOC_PREFIX = "/usr/local"
DOC_CONFDIR = "/etc/gridbridge"
DOC_DIRS = {"bindir": "bin", "sbindir": "sbin", "datadir": "share", "mandir": "share/man"}

SYSTEM_UNIT_DIRS = ("/usr/lib/systemd/system", "/lib/systemd/system")
# The directories of system units systemd reads (systemd-analyze unit-paths)
# that an install may use.
UNIT_PATH = ("/etc/systemd/system", "/usr/local/lib/systemd/system", *SYSTEM_UNIT_DIRS)


class Tap:
    def __init__(self) -> None:
        self.n = 0
        self.failed = 0

    def ok(self, cond: bool, what: str, diag: str | list[str] = "") -> bool:
        self.n += 1
        print(f"{'ok' if cond else 'not ok'} {self.n} - {what}")
        if not cond:
            self.failed += 1
            lines = diag if isinstance(diag, list) else str(diag).splitlines()
            for line in lines:
                print(f"# {line}")
        sys.stdout.flush()
        return cond

    def skip(self, what: str, why: str) -> None:
        self.n += 1
        print(f"ok {self.n} - {what} # SKIP {why}")

    def done(self) -> int:
        print(f"1..{self.n}")
        return 1 if self.failed else 0


class Layout:
    """Where this build installs, as absolute paths without the DESTDIR."""

    def __init__(self, a: argparse.Namespace) -> None:
        p = Path(a.prefix)
        self.prefix = p
        self.dirs = {k: getattr(a, k) for k in DOC_DIRS}
        self.confdir = p / a.sysconfdir / "gridbridge"   # an absolute sysconfdir wins
        self.config = self.confdir / "gridbridge.conf"
        self.daemon = p / a.sbindir / "gridbridged"
        self.ctl = p / a.bindir / "gridbridgectl"
        self.unit = p / "lib" / "systemd" / "system" / "gridbridged.service"
        self.mandir = p / a.mandir
        self.example = p / a.datadir / "doc" / "gridbridge" / "gridbridge.conf"

    def files(self) -> set[Path]:
        return {self.config, self.daemon, self.ctl, self.unit, self.example,
                self.mandir / "man8" / "gridbridged.8",
                self.mandir / "man8" / "gridbridgectl.8",
                self.mandir / "man5" / "gridbridge.conf.5"}

    def documented(self) -> bool:
        """Whether the docs' paths map onto this build by prefix and sysconfdir alone."""
        return self.dirs == DOC_DIRS

    def from_doc(self, path: str) -> Path:
        """A path as the docs write it, at this build's prefix and sysconfdir."""
        if path == DOC_CONFDIR or path.startswith(DOC_CONFDIR + "/"):
            return self.confdir / path[len(DOC_CONFDIR) + 1:]
        if path.startswith(DOC_PREFIX + "/"):
            return self.prefix / path[len(DOC_PREFIX) + 1:]
        return Path(path)


def under(root: Path, path: Path) -> Path:
    return root / path.relative_to("/")


def run(argv: list, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, LANG="C", LC_ALL="C", SYSTEMD_COLORS="0", SYSTEMD_LOG_COLOR="0",
               SYSTEMD_PAGER="", PAGER="cat")
    env.pop("DESTDIR", None)
    argv = [str(x) for x in argv]
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, **kw)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(argv, 127, "", str(e))


def output(r: subprocess.CompletedProcess) -> list[str]:
    return [f"$ {shlex.join(str(x) for x in r.args)}  (exit {r.returncode})",
            *(r.stdout + r.stderr).splitlines()]


def meson_install(a: argparse.Namespace, destdir: Path) -> subprocess.CompletedProcess:
    # meson install rewrites the build's install log, which `ninja uninstall`
    # reads: keep the one of a real install.
    log = Path(a.build_root) / "meson-logs" / "install-log.txt"
    saved = log.read_bytes() if log.exists() else None
    try:
        return run([a.meson, "install", "-C", a.build_root, "--no-rebuild", "--quiet",
                    "--destdir", destdir])
    finally:
        if saved is not None:
            log.write_bytes(saved)
        else:
            log.unlink(missing_ok=True)


def tree(root: Path) -> set[Path]:
    """Every file and link under root, as absolute paths without root."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            found.add(Path("/") / (Path(dirpath) / name).relative_to(root))
    return found


def readme_paths(source: Path) -> list[str]:
    """The paths of the install table in README.md's "Running in production"."""
    text = (source / "README.md").read_text()
    m = re.search(r"^## Running in production\n(.*?)(?=^## )", text, re.S | re.M)
    if m is None:
        return []
    return re.findall(r"^\| `(/[^`]+)` \|", m.group(1), re.M)


def man_files(source: Path) -> list[str]:
    """The paths in gridbridged(8) FILES."""
    text = (source / "man" / "gridbridged.8").read_text()
    m = re.search(r"^\.Sh FILES\n(.*?)(?=^\.Sh |\Z)", text, re.S | re.M)
    if m is None:
        return []
    return re.findall(r"^\.It Pa (\S+)", m.group(1), re.M)


def unit_entries(unit: Path) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            entries.setdefault(key.strip(), []).append(value.strip())
    return entries


def default_config(binary: Path) -> str | None:
    r = run([binary, "--help"])
    m = re.search(r"\(default (/[^)\s]+)\)", r.stdout + r.stderr)
    return m.group(1) if m else None


def check_tree(t: Tap, a: argparse.Namespace, lay: Layout, dest: Path) -> None:
    got, want = tree(dest), lay.files()
    t.ok(got == want, "the install holds the expected files and nothing else",
         [f"missing: {p}" for p in sorted(want - got)] +
         [f"not expected: {p}" for p in sorted(got - want)])
    for p in (lay.daemon, lay.ctl):
        mode = under(dest, p).stat().st_mode if under(dest, p).exists() else 0
        t.ok(bool(mode & stat.S_IXOTH), f"{p} is executable", f"mode {oct(mode)}")

    source = Path(a.source_root)
    if not lay.documented():
        t.skip("README.md lists the installed files", "bindir, sbindir, datadir or mandir "
               "is not the default, which the docs' paths assume")
        t.skip("gridbridged(8) FILES names installed paths", "same")
        return
    doc = {lay.from_doc(p) for p in readme_paths(source)}
    t.ok(doc == want, "README.md (Running in production) lists the installed files",
         [f"installed, not listed: {p}" for p in sorted(want - doc)] +
         [f"listed, not installed: {p}" for p in sorted(doc - want)])
    # A path under the prefix, or named like an installed file, is one the
    # install must have made; the others (the state directory, the
    # credentials) are made by systemd or the administrator.
    listed = [lay.from_doc(p) for p in man_files(source)]
    names = {p.name for p in want}
    wrong = [p for p in listed if p not in want and (p.name in names or (
        lay.prefix in p.parents and lay.confdir not in p.parents))]
    t.ok(bool(listed) and not wrong, "gridbridged(8) FILES names installed paths",
         ["no FILES section"] if not listed else [f"not installed: {p}" for p in wrong])


def check_defaults(t: Tap, a: argparse.Namespace) -> None:
    """The docs' paths are those of a build with the default options, which
    this build need not be: ask meson for the defaults."""
    r = run([a.meson, "introspect", "--buildoptions", Path(a.source_root) / "meson.build"])
    try:
        opts = {o["name"]: o["value"] for o in json.loads(r.stdout)}
    except (ValueError, KeyError, TypeError):
        t.ok(False, "meson introspect gives the default options", output(r))
        return
    prefix = Path(opts.get("prefix", ""))
    confdir = prefix / opts.get("sysconfdir", "") / "gridbridge"
    dirs = {k: opts.get(k) for k in DOC_DIRS}
    t.ok(str(prefix) == DOC_PREFIX and dirs == DOC_DIRS and str(confdir) == DOC_CONFDIR,
         f"a default build installs under {DOC_PREFIX}, its configuration in {DOC_CONFDIR},"
         " as the docs write",
         [f"prefix {prefix}, configuration in {confdir}, {dirs}"])


def check_config(t: Tap, a: argparse.Namespace, lay: Layout, dest: Path) -> None:
    shipped = (Path(a.source_root) / "conf" / "gridbridge.conf").read_bytes()
    conf = under(dest, lay.config)
    t.ok(conf.exists() and conf.read_bytes() == shipped,
         f"{lay.config} is the shipped example")
    if conf.exists():
        mode = stat.S_IMODE(conf.stat().st_mode)
        t.ok(mode == 0o644, f"{lay.config} has mode 0644 (the dynamic user reads it)",
             f"mode {oct(mode)}")
    example = under(dest, lay.example)
    t.ok(example.exists() and example.read_bytes() == shipped,
         f"{lay.example} is the shipped example")
    r = run([under(dest, lay.daemon), "-n", "-c", conf])
    t.ok(r.returncode == 0, "the installed daemon accepts the installed configuration",
         output(r))
    for p in (lay.daemon, lay.ctl):
        d = default_config(under(dest, p))
        t.ok(d == str(lay.config), f"{p.name}'s default configuration is {lay.config}",
             f"--help says: {d}")


def check_reinstall(t: Tap, a: argparse.Namespace, lay: Layout, dest: Path) -> None:
    conf, example = under(dest, lay.config), under(dest, lay.example)
    if not conf.exists():
        t.ok(False, "a second install keeps an edited configuration", "nothing installed")
        return
    edited = conf.read_bytes() + b"# edited after the install\n"
    conf.write_bytes(edited)
    example.parent.mkdir(parents=True, exist_ok=True)
    example.write_bytes(b"an older example\n")
    r = meson_install(a, dest)
    kept = conf.read_bytes() == edited
    t.ok(r.returncode == 0 and kept, "a second install keeps an edited configuration",
         output(r) + ([] if kept else [f"{lay.config} was replaced"]))
    shipped = (Path(a.source_root) / "conf" / "gridbridge.conf").read_bytes()
    t.ok(example.read_bytes() == shipped, "a second install replaces the example in doc/")


def check_unit(t: Tap, lay: Layout, dest: Path) -> None:
    unit = under(dest, lay.unit)
    if not t.ok(unit.exists(), f"{lay.unit} is installed"):
        return
    e = unit_entries(unit)
    # Each of these runs the daemon once (ExecReload= then signals it).
    runs = [shlex.split(e[k][0]) if e.get(k) else [k + "= missing"]
            for k in ("ExecStartPre", "ExecStart", "ExecReload")]

    def right(argv: list[str]) -> bool:
        return argv[0] == str(lay.daemon) and "-c" in argv[:-1] and \
            argv[argv.index("-c") + 1] == str(lay.config)
    t.ok(all(right(argv) for argv in runs),
         f"ExecStartPre=, ExecStart= and ExecReload= run {lay.daemon} -c {lay.config}",
         [shlex.join(argv) for argv in runs])
    want = ["gridbridge"] if lay.confdir == Path("/etc/gridbridge") else []
    t.ok(e.get("ConfigurationDirectory", []) == want,
         f"ConfigurationDirectory= is {want or 'unset'} for {lay.confdir}",
         f"the unit has {e.get('ConfigurationDirectory')}")
    creds = [v.split(":", 1)[1] for v in re.findall(r"^#LoadCredential=(\S+)",
                                                     unit.read_text(), re.M)]
    t.ok(bool(creds) and all(Path(c).parent == lay.confdir / "credentials" for c in creds),
         f"the LoadCredential= examples read {lay.confdir / 'credentials'}", creds)
    pages = re.findall(r"man:([\w.-]+)\((\d)\)", " ".join(e.get("Documentation", [])))
    missing = [f"{n}({s})" for n, s in pages
               if not under(dest, lay.mandir / f"man{s}" / f"{n}.{s}").exists()]
    t.ok(bool(pages) and not missing, "the man pages of Documentation= are installed",
         f"not installed: {missing}" if pages else "no man: in Documentation=")


def verify_root(dest: Path, root: Path, unit: Path) -> None:
    """A root for systemd-analyze: this machine's system units (what the unit's
    dependencies resolve to), with the DESTDIR over them. A unit outside the
    directories systemd reads is copied to /etc/systemd/system, where
    `systemctl link` would link it (a link out of the root is not followed
    into it)."""
    copied = set()
    for d in SYSTEM_UNIT_DIRS:
        real = Path(d).resolve()
        if real.is_dir() and real not in copied:
            shutil.copytree(real, under(root, real), symlinks=True, dirs_exist_ok=True)
            copied.add(real)
    for d in ("lib", "bin", "sbin"):   # a merged /usr, like the host's
        if Path("/", d).is_symlink() and not (root / d).exists():
            (root / d).symlink_to(os.readlink(Path("/", d)))
    shutil.copytree(dest, root, symlinks=True, dirs_exist_ok=True)
    if str(unit.parent) not in UNIT_PATH:
        copy = root / "etc" / "systemd" / "system" / unit.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(under(root, unit), copy)


def check_systemd(t: Tap, lay: Layout, dest: Path, work: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if not t.ok(analyze is not None, "systemd-analyze is installed",
                "not found: Debian's systemd package has it (./scripts/deps installs it)"):
        return
    root = work / "root"
    verify_root(dest, root, lay.unit)
    unit = under(root, lay.unit)
    r = run([analyze, "verify", "--man=no", f"--root={root}", unit])
    t.ok(r.returncode == 0 and not (r.stdout + r.stderr).strip(),
         "systemd-analyze verify accepts the installed unit without a message", output(r))

    r = run([analyze, "security", "--offline=true", f"--root={root}", "--no-pager", unit])
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", r.stdout + r.stderr)
    level = float(m.group(1)) if m else None
    print(f"# systemd-analyze security: exposure {level}")
    t.ok(level is not None and level <= EXPOSURE_MAX,
         f"systemd-analyze security rates the unit at most {EXPOSURE_MAX}",
         # the settings it counts against the unit ("-" in the C locale)
         [f"exposure: {level}"] + [line for line in output(r)
                                    if line.startswith(("- ", "✗", "$", "->"))])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("meson", "source-root", "build-root", "prefix", "bindir", "sbindir",
                 "datadir", "mandir", "sysconfdir"):
        ap.add_argument("--" + name, required=True)
    a = ap.parse_args()
    lay = Layout(a)
    t = Tap()
    # meson test stops a test with SIGTERM on a timeout: clean up then too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory(prefix="gridbridge-install-") as tmp:
        work = Path(tmp)
        dest = work / "destdir"
        r = meson_install(a, dest)
        if t.ok(r.returncode == 0, "meson install into a DESTDIR", output(r)):
            for check, args in ((check_defaults, (t, a)),
                                (check_tree, (t, a, lay, dest)),
                                (check_config, (t, a, lay, dest)),
                                (check_unit, (t, lay, dest)),
                                (check_systemd, (t, lay, dest, work)),
                                (check_reinstall, (t, a, lay, dest))):
                try:
                    check(*args)
                except Exception:   # a test that cannot go on fails, the others run
                    t.ok(False, f"{check.__name__} ran to its end",
                         traceback.format_exc())
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
