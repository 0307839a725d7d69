#!/usr/bin/env python3
"""The layers of gridbridge, as a test: which file may include which header.

usage: layers.py SOURCE_ROOT     check daemon/*.c and include/*.h
       layers.py --self-test     check that breaches are caught and named

The data flows mqtt -> journal -> decode -> store -> forward. Each stage
includes its own headers and the base (log, backoff, secret, sha256, util,
version, and the record every stage passes on: event.pb-c, event_names),
never another stage's; the glue (main.c, pipeline.c, routing.c,
gridbridgectl.c) wires the stages together. config.c knows no stage: it
parses, and the glue registers the stages' checks with it. config.h is the
glue's; a stage includes it only for the apply function of its reloadable
keys. Each external library's header is included only by its own stage's
files and the glue files that use it.

A file belongs to the module whose name pattern its name matches, so a
file split off a stage (store_batch.c, forward_body.c, dec_foo.c) is
checked as part of that stage without changing this table. A file that
matches no pattern is an error: name it after its stage, or add it here.
"""
import fnmatch
import os
import re
import sys
import tempfile

# Headers any file may include.
BASE = {"log.h", "metrics.h", "backoff.h", "secret.h", "sha256.h", "util.h", "version.h", "event.pb-c.h",
        "event_names.h"}

# External libraries' headers (angle or quoted includes matching these);
# other <...> headers are the system's and are not checked.
LIBRARIES = ["mosquitto.h", "mqtt_protocol.h", "libpq-fe.h", "curl/*", "event2/*",
             "jansson.h", "yajl/*", "ini.h", "systemd/*", "protobuf-c/*", "openssl/*"]

ANY = "any"   # the glue may include every one of our headers


class Module:
    def __init__(self, name, role, files, headers, libraries):
        self.name = name            # what messages call it
        self.role = role            # base, stage or glue
        self.files = files          # name patterns (without .c/.h) of its files
        self.headers = headers      # our headers it may include beyond its own and BASE
        self.libraries = libraries  # external headers it may include

    def owns(self, stem):
        return any(fnmatch.fnmatchcase(stem, p) for p in self.files)


MODULES = [
    # The base, used by every layer.
    Module("log", "base", ["log"], {"config.h"}, []),      # config.h: log_apply()
    Module("util", "base", ["util"], set(), []),           # libc only
    Module("metrics", "base", ["metrics"], set(), []),     # libc only
    Module("backoff", "base", ["backoff"], set(), []),
    Module("secret", "base", ["secret"], set(), []),
    Module("sha256", "base", ["sha256", "sha256_*"], set(), ["openssl/*"]),
    Module("config", "base", ["config", "config_*"], set(), ["ini.h"]),
    Module("notify", "base", ["notify"], set(), ["event2/*", "systemd/*"]),
    Module("loop", "base", ["loop"], set(), ["event2/*"]),  # the event base (main.c)
    # The record every stage passes on (event.proto) and its enum names.
    Module("event", "base", ["event.pb-c", "event_names"], set(), ["protobuf-c/*"]),
    # The stages, in the order the data flows.
    Module("mqtt", "stage", ["mqtt", "mqtt_*"], set(),
           ["mosquitto.h", "mqtt_protocol.h", "event2/*"]),
    Module("journal", "stage", ["journal", "journal_*"], {"config.h"}, []),  # journal_apply()
    Module("decode", "stage", ["decode", "decode_*", "dec_*", "route", "route_*", "repeats", "ratelimit"],
           set(), ["jansson.h", "yajl/*"]),
    # Events no device sends (the registry, welfare, reports), from the
    # stored ones and the clock: pure, between decode and store.
    Module("derive", "stage", ["derive", "derive_*"], set(), ["jansson.h"]),
    Module("store", "stage", ["store", "store_*", "schema", "outbox"], set(),
           ["libpq-fe.h", "event2/*"]),
    Module("forward", "stage", ["forward", "forward_*", "rules", "rules_*", "event_json"],
           {"outbox.h", "event.pb-c.h"},
           ["curl/*", "event2/*", "jansson.h", "protobuf-c/*", "openssl/*"]),
    # The glue.
    Module("main.c", "glue", ["main"], ANY, ["event2/*"]),
    Module("admin.c", "glue", ["admin"], ANY, ["event2/*"]),
    Module("pipeline.c", "glue", ["pipeline"], ANY, ["event2/*"]),
    Module("routing.c", "glue", ["routing"], ANY, []),
    Module("gridbridgectl.c", "glue", ["gridbridgectl", "gridbridgectl_*"], ANY,
           ["jansson.h", "curl/*"]),
]

RULE = ("The data flows mqtt -> journal -> decode -> store -> forward. A stage includes "
        "its own headers and the base (" + ", ".join(sorted(BASE)) + "), never another "
        "stage's; config.c includes no stage's; main.c, pipeline.c, routing.c and "
        "gridbridgectl.c wire the stages; each external library's header is included "
        "only by its stage and the glue that uses it. The table is MODULES in "
        "tests/layers.py.")


def rule_for(m, header, owner):
    """The rule an include of `header` (ours, of module `owner`) by `m` breaks."""
    if header == "config.h":
        return ("config.h is the glue's: a stage includes it only for the apply function "
                "of its reloadable keys (then add config.h to its row)")
    if m.name == "config":
        return "config knows no stage: the glue registers the stages' checks with it"
    if owner is None:
        return "every header belongs to a module: name it after its stage"
    return ("a stage (or the base) includes its own headers and the base, never another "
            "stage's: the glue wires them")


INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def stem(name):
    base = os.path.basename(name)
    for ext in (".c", ".h"):
        if base.endswith(ext):
            return base[:-len(ext)]
    return base


def module_of(name):
    for m in MODULES:
        if m.owns(stem(name)):
            return m
    return None


def library_of(header):
    return next((p for p in LIBRARIES if fnmatch.fnmatchcase(header, p)), None)


def library_owners(pattern):
    return [m.name for m in MODULES if pattern in m.libraries]


def check_file(path, shown, text):
    """The breaches of one file, as messages naming file, line, header and rule."""
    m = module_of(shown)
    if m is None:
        return ["%s: belongs to no module (rule: a file is named after its stage: store_*.c, "
                "forward_*.c, dec_*.c, decode_*.c, ...; or it gets a row in MODULES)" % shown]
    errors = []
    for lineno, line in enumerate(text.splitlines(), 1):
        hit = INCLUDE.match(line)
        if hit is None:
            continue
        quoted, header = hit.group(1) == '"', hit.group(2)
        lib = library_of(header)
        if lib is not None:
            if lib not in m.libraries:
                errors.append("%s:%d: includes <%s>, a library of %s, not of %s (rule: each "
                              "library's header only in its stage's files and the glue that "
                              "uses it)" % (shown, lineno, header,
                                            ", ".join(library_owners(lib)), m.name))
            continue
        if not quoted:
            continue        # a system header
        owner = module_of(header)
        if owner is m or header in BASE or m.headers == ANY or header in m.headers:
            continue
        whose = "%s's" % owner.name if owner is not None else "no module's"
        errors.append("%s:%d: includes \"%s\", %s header, into %s (%s) (rule: %s)"
                      % (shown, lineno, header, whose, m.name, m.role,
                         rule_for(m, header, owner)))
    return errors


def sources(root):
    for sub, ext in (("daemon", ".c"), ("include", ".h")):
        d = os.path.join(root, sub)
        for name in sorted(os.listdir(d)):
            if name.endswith(ext):
                yield os.path.join(d, name), sub + "/" + name


def check_tree(root):
    errors, n = [], 0
    for path, shown in sources(root):
        with open(path, encoding="utf-8") as f:
            errors += check_file(path, shown, f.read())
        n += 1
    return errors, n


def self_test():
    """Breaches are caught and named; files split off a stage are at home."""
    tree = {
        "daemon/config.c": '#include "config.h"\n#include <ini.h>\n#include "decode.h"\n',
        "daemon/rules.c": '#include "rules.h"\n#include "config.h"\n',
        "daemon/store_batch.c": '#include "store.h"\n#include <libpq-fe.h>\n'
                                '#include <curl/curl.h>\n',
        "daemon/forward_body.c": '#include "forward.h"\n#include "event_json.h"\n'
                                 '#include <jansson.h>\n',
        "daemon/dec_new.c": '#include "decode.h"\n#include <jansson.h>\n#include <math.h>\n',
        "daemon/main.c": '#include "store.h"\n#include <event2/event.h>\n',
        "daemon/frobnicate.c": '#include "log.h"\n',
        "include/store.h": '#include "outbox.h"\n',
    }
    want = [
        'daemon/config.c:3: includes "decode.h", decode\'s header, into config (base) '
        '(rule: config knows no stage',
        'daemon/dec_new.c',     # no error expected: the absence is checked below
        'daemon/frobnicate.c: belongs to no module',
        'daemon/rules.c:2: includes "config.h", config\'s header, into forward (stage) '
        '(rule: config.h is the glue\'s',
        'daemon/store_batch.c:3: includes <curl/curl.h>, a library of forward, gridbridgectl.c, not of store',
    ]
    with tempfile.TemporaryDirectory() as root:
        for name, text in tree.items():
            os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
            with open(os.path.join(root, name), "w", encoding="utf-8") as f:
                f.write(text)
        errors, _ = check_tree(root)
    ok = True
    for w in want:
        found = [e for e in errors if e.startswith(w)]
        expected = not w.endswith("dec_new.c")
        if bool(found) != expected:
            print("self-test: %s %s" % ("missing" if expected else "unexpected", w))
            ok = False
    if len(errors) != len(want) - 1 or not all("(rule: " in e for e in errors):
        print("self-test: got\n  " + "\n  ".join(errors))
        ok = False
    print("layers self-test: %s" % ("ok" if ok else "FAILED"))
    return 0 if ok else 1


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    errors, n = check_tree(argv[1])
    for e in errors:
        print(e)
    if errors:
        print(RULE)
    print("layers: %d files, %d breaches" % (n, len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
