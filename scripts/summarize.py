#!/usr/bin/python3
"""Adds up the results of scripts/test: meson's testlog.json files and
pytest's JUnit XML files in one directory. Prints a line per run and the
closing `N passed, N failed, N skipped`; exits 1 when anything failed, a
build broke, or nothing ran."""
import json
import pathlib
import sys
import xml.etree.ElementTree as ET


def meson_counts(path):
    passed = failed = skipped = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        result = json.loads(line).get("result", "")
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
    return passed, failed, skipped


def junit_counts(path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    passed = failed = skipped = 0
    for s in suites:
        tests = int(s.get("tests", 0))
        f = int(s.get("failures", 0)) + int(s.get("errors", 0))
        sk = int(s.get("skipped", 0))
        failed += f
        skipped += sk
        passed += tests - f - sk
    return passed, failed, skipped


def main():
    results = pathlib.Path(sys.argv[1])
    total = [0, 0, 0]
    broken = sorted(results.glob("*.broken"))
    for b in broken:
        print(b.read_text().strip())
        total[1] += 1
    for path in sorted(results.iterdir()):
        if path.name.endswith("-meson.json"):
            counts = meson_counts(path)
        elif path.name.endswith("-pytest.xml"):
            counts = junit_counts(path)
        else:
            continue
        print(f"{path.stem}: {counts[0]} passed, {counts[1]} failed, {counts[2]} skipped")
        for i in range(3):
            total[i] += counts[i]
    expected = {"plain-meson", "plain-pytest", "sanitize-meson", "sanitize-pytest",
                "fault-pytest", "valgrind-meson"}
    present = {p.stem for p in results.iterdir()}
    for name in sorted(expected - present):
        print(f"{name}: no results (did not run)")
        total[1] += 1
    print(f"{total[0]} passed, {total[1]} failed, {total[2]} skipped")
    return 1 if total[1] or total[0] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
