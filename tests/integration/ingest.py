"""Helpers for the MQTT ingest and journal tests.

    daemon_config(...)        gridbridge.conf text for a broker from services.py
                              (optionally a real database and the shipped routes)
    shipped_routes()          the [decode] and [route ...] sections of conf/gridbridge.conf
    PublisherGroup / Publisher  paho publishers in threads, QoS 1, unique ids,
                              counting only what the broker PUBACKed
    MessagePublisher          a Publisher of given (topic, payload) messages
    JournalCtl                `gridbridgectl journal stat|dump` as Python data
    JournalWatcher            incremental `dump --from`, waits for message ids
    read_segment, encode_record, crc32c   the on-disk format, for recovery tests

Every published payload is JSON with the publisher's name and a per-publisher
sequence number: {"pub": "p0", "seq": 17, ...}; key_of(record) gives
("p0", 17) back from a journal record.

Standard library and paho-mqtt only; run with Debian's /usr/bin/python3.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import re
import secrets
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import services
from services import SANITIZER_MARKERS, ServiceError, free_port

CTL_NAME = "gridbridgectl"


# --------------------------------------------------------------------------
# configuration


def daemon_config(tmp_path: Path, broker: services.Mosquitto, *,
                  client_id: str = "gridbridge-test",
                  subscribe: Iterable[str] = ("sac/#",),
                  mqtt: dict | None = None, journal: dict | None = None,
                  tls: bool = False, ca_file: Path | str | None = None,
                  log_level: str = "info", keepalive: int = 30,
                  store_db: "services.Postgres | None" = None, store: dict | None = None,
                  routes: bool = False) -> str:
    """A gridbridge.conf for `broker` with the journal under tmp_path/state.

    mqtt / journal: more keys of those sections ({"protocol": 5}). tls=True
    points the daemon at the broker's TLS listener with the test PKI's client
    certificate (ca_file overrides the CA it trusts).

    Without store_db the store points at a port where nothing listens: no
    database consumes the journal, so the journal keeps every record the
    daemon received. With store_db (a services.Postgres) it uses that
    database, the password in tmp_path/store-password. store: more [store]
    keys ({"batch_rows": 500}). routes=True appends the shipped [decode] and
    [route ...] sections (shipped_routes()).
    """
    state = tmp_path / "state"
    state.mkdir(parents=True, exist_ok=True)
    mq = {
        "host": broker.host,
        "port": broker.tls_port if tls else broker.port,
        "client_id": client_id,
        "keepalive": keepalive,
    }
    if tls:
        mq.update(tls="true", ca_file=ca_file or broker.pki.ca_file,
                  cert_file=broker.pki.client_cert, key_file=broker.pki.client_key)
    mq.update(mqtt or {})
    lines = ["[daemon]", f"log_level = {log_level}", f"state_dir = {state}", "",
             "[mqtt]"]
    lines += [f"{k} = {v}" for k, v in mq.items()]
    lines += [f"subscribe = {f}" for f in subscribe]
    lines += ["", "[journal]"] + [f"{k} = {v}" for k, v in (journal or {}).items()]
    if store_db is None:
        st = {"host": "127.0.0.1", "port": free_port(), "connect_timeout": 2}
    else:
        pwfile = store_db.write_password_file(tmp_path / "store-password")
        st = {"host": store_db.host, "port": store_db.port, "dbname": store_db.dbname,
              "user": store_db.user, "password_file": pwfile, "connect_timeout": 2}
    st.update(store or {})
    lines += ["", "[store]"] + [f"{k} = {v}" for k, v in st.items()] + [""]
    text = "\n".join(lines)
    if routes:
        text += shipped_routes()
    return text


def shipped_routes() -> str:
    """The [decode] and [route ...] sections of the shipped conf/gridbridge.conf."""
    text = (services.REPO_ROOT / "conf" / "gridbridge.conf").read_text()
    return "\n" + text[text.index("[decode]"):]


def journal_dir_of(tmp_path: Path) -> Path:
    """Where daemon_config(tmp_path, ...) puts the journal."""
    return tmp_path / "state" / "journal"


def start_daemon(daemon: services.Daemon, conf: Path, env: dict | None = None,
                 timeout: float = 30.0, subscribed: bool = True) -> int:
    """Start, wait for READY=1 and the `subscribed` (else `connected`) line.

    Returns the index of the first line after which the caller may look.
    """
    daemon.start(conf, env=env)
    daemon.wait_notify("READY=1", timeout=timeout)
    msg = "subscribed" if subscribed else "connected"
    daemon.wait_log(rf'mod=mqtt msg="{msg}"', timeout=timeout)
    return len(daemon.lines)


# --------------------------------------------------------------------------
# publishers


def make_payload(pub: str, seq: int, size: int = 0) -> bytes:
    """{"pub":..,"seq":..} padded with "pad" to about `size` bytes."""
    body = {"pub": pub, "seq": seq, "sent_at": round(time.time(), 6)}
    raw = json.dumps(body, separators=(",", ":"))
    if size > len(raw) + 10:
        body["pad"] = "x" * (size - len(raw) - 9)
        raw = json.dumps(body, separators=(",", ":"))
    return raw.encode()


class Publisher:
    """One paho client publishing `count` QoS 1 messages from a thread.

    Messages go round-robin over `topics`, seq = first .. first+count-1.
    `window` bounds the messages not yet acknowledged by the broker (paho's
    in-flight window and our own back-pressure). The client reconnects by
    itself (0.1 .. 1 s) when the broker goes away and resends what was not
    acknowledged. Only messages whose PUBACK arrived count as acked.
    """

    def __init__(self, broker: services.Mosquitto, name: str, topics: list[str],
                 count: int, *, first: int = 1, rate: float | None = None,
                 payload_size: int = 0, window: int = 100, tls: bool = False):
        self.broker, self.name, self.topics = broker, name, list(topics)
        self.count, self.first, self.rate = count, first, rate
        self.payload_size, self.window, self.tls = payload_size, window, tls
        self.gate = threading.Event()
        self.gate.set()
        self.parked = threading.Event()   # the thread waits at the closed gate
        self.error: str | None = None
        self.sent: list[tuple[int, str, object]] = []  # (seq, topic, MQTTMessageInfo)
        self._sem = threading.Semaphore(window)
        self._stop = False
        self._thread: threading.Thread | None = None
        self.client = None

    def start(self) -> "Publisher":
        c = self.broker.client(client_id=f"pub-{self.name}-{secrets.token_hex(3)}",
                               tls=self.tls)
        c.max_inflight_messages_set(self.window)
        c.reconnect_delay_set(min_delay=0.1, max_delay=1)
        c.on_publish = lambda client, userdata, mid: self._sem.release()
        self.client = c
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"publisher-{self.name}")
        self._thread.start()
        return self

    def _run(self) -> None:
        interval = 1.0 / self.rate if self.rate else 0.0
        next_at = time.monotonic()
        for i in range(self.count):
            if self._stop:
                return
            while not self.gate.wait(0.1):
                self.parked.set()
                if self._stop:
                    return
            self.parked.clear()
            if interval:
                now = time.monotonic()
                if next_at > now:
                    time.sleep(next_at - now)
                next_at = max(next_at + interval, time.monotonic() - 0.2)
            while not self._sem.acquire(timeout=0.1):
                if self._stop:
                    return
            seq = self.first + i
            topic, payload = self._message(i, seq)
            info = self.client.publish(topic, payload, qos=1)
            self.sent.append((seq, topic, info))

    def _message(self, i: int, seq: int) -> tuple[str, bytes]:
        """The i-th message to publish (seq = first + i): (topic, payload)."""
        return (self.topics[i % len(self.topics)],
                make_payload(self.name, seq, self.payload_size))

    @property
    def done_publishing(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    @staticmethod
    def _is_acked(info) -> bool:
        # paho sets _published when the PUBACK arrived. is_published() would
        # raise for a message published while disconnected (rc NO_CONN),
        # which paho still sends after reconnecting.
        return info._published

    def outstanding(self) -> int:
        return sum(1 for _, _, info in list(self.sent) if not self._is_acked(info))

    def acked(self) -> set[tuple[str, int]]:
        """(name, seq) of every message the broker acknowledged."""
        return {(self.name, seq) for seq, _, info in list(self.sent) if self._is_acked(info)}

    def topic_of(self) -> dict[tuple[str, int], str]:
        return {(self.name, seq): topic for seq, topic, _ in list(self.sent)}

    def close(self) -> None:
        self._stop = True
        self.gate.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.client is not None:
            try:
                self.client.disconnect()
            finally:
                self.client.loop_stop()
            self.client = None


class MessagePublisher(Publisher):
    """A Publisher of the given messages [(topic, payload), ...] in order;
    seq i (acked(), topic_of()) is the index into `messages`."""

    def __init__(self, broker: services.Mosquitto, name: str,
                 messages: list[tuple[str, bytes]], *, rate: float | None = None,
                 window: int = 100, tls: bool = False):
        super().__init__(broker, name, [t for t, _ in messages[:1]] or ["unused"],
                         len(messages), first=0, rate=rate, window=window, tls=tls)
        self.messages = messages

    def _message(self, i: int, seq: int) -> tuple[str, bytes]:
        return self.messages[i]


class PublisherGroup:
    """n Publishers, `per_publisher` messages each, two device topics each:

        sac/c<k>/gate/dev<k>a/event, sac/c<k>/gate/dev<k>b/event

    rate: messages per second over the whole group (None: as fast as the
    broker acknowledges). pause()/resume() hold every publisher.
    """

    def __init__(self, broker: services.Mosquitto, n: int = 4, per_publisher: int = 5000,
                 *, rate: float | None = None, payload_size: int = 0, window: int = 100,
                 tls: bool = False, prefix: str = "sac", name_prefix: str = "p"):
        self.publishers = [
            Publisher(broker, f"{name_prefix}{k}",
                      [f"{prefix}/c{k}/gate/dev{k}{x}/event" for x in "ab"],
                      per_publisher, rate=(rate / n if rate else None),
                      payload_size=payload_size, window=window, tls=tls)
            for k in range(n)]

    @classmethod
    def of(cls, publishers: Iterable[Publisher]) -> "PublisherGroup":
        """A group of publishers made elsewhere (e.g. MessagePublishers)."""
        group = cls.__new__(cls)
        group.publishers = list(publishers)
        return group

    def __enter__(self) -> "PublisherGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> "PublisherGroup":
        for p in self.publishers:
            p.start()
        return self

    def pause(self, timeout: float = 10) -> None:
        """Hold every publisher, and return once none can publish any more:
        a thread already past the gate (sleeping for its rate) publishes one
        more message first, which wait_idle() must see."""
        for p in self.publishers:
            p.gate.clear()
        deadline = time.monotonic() + timeout
        for p in self.publishers:
            while not p.parked.is_set() and not p.done_publishing and p._thread is not None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"publisher {p.name} still publishing {timeout}s "
                                       "after the pause")
                time.sleep(0.01)

    def resume(self) -> None:
        for p in self.publishers:
            p.gate.set()

    @property
    def done_publishing(self) -> bool:
        return all(p.done_publishing for p in self.publishers)

    def published_count(self) -> int:
        return sum(len(p.sent) for p in self.publishers)

    def outstanding(self) -> int:
        return sum(p.outstanding() for p in self.publishers)

    def expected(self) -> set[tuple[str, int]]:
        """Every (name, seq) the group is to publish."""
        return {(p.name, p.first + i) for p in self.publishers for i in range(p.count)}

    def acked(self) -> set[tuple[str, int]]:
        out: set = set()
        for p in self.publishers:
            out |= p.acked()
        return out

    def topics(self) -> dict[tuple[str, int], str]:
        out: dict = {}
        for p in self.publishers:
            out.update(p.topic_of())
        return out

    def wait_idle(self, timeout: float) -> None:
        """Wait until every message handed to paho so far was acknowledged."""
        deadline = time.monotonic() + timeout
        while self.outstanding():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.outstanding()} message(s) not acknowledged by "
                                   f"the broker within {timeout}s")
            time.sleep(0.05)

    def finish(self, timeout: float) -> set[tuple[str, int]]:
        """Wait until everything was published and acknowledged; return acked()."""
        deadline = time.monotonic() + timeout
        while not self.done_publishing:
            if time.monotonic() > deadline:
                raise TimeoutError(f"publishers still publishing after {timeout}s "
                                   f"({self.published_count()} handed to paho)")
            time.sleep(0.05)
        self.wait_idle(max(0.0, deadline - time.monotonic()))
        return self.acked()

    def close(self) -> None:
        for p in self.publishers:
            p.close()


# --------------------------------------------------------------------------
# gridbridgectl


class JournalCtl:
    """`gridbridgectl -c CONF journal ...` (or `-d JOURNAL_DIR`) as Python data."""

    def __init__(self, build_dir: Path | str, conf: Path | str | None = None,
                 journal_dir: Path | str | None = None, log_path: Path | None = None):
        if (conf is None) == (journal_dir is None):
            raise ValueError("give exactly one of conf and journal_dir")
        self.binary = Path(build_dir) / CTL_NAME
        self.where = ["-c", str(conf)] if conf is not None else ["-d", str(journal_dir)]
        self.log_path = log_path

    def check_binary(self) -> None:
        if not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
            raise ServiceError(f"{self.binary} not found or not executable: build it "
                               f"(meson compile -C build) or set GRIDBRIDGE_BUILD_DIR")

    def run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        self.check_binary()
        argv = [str(self.binary), *self.where, *args]
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
        err = r.stderr.decode("utf-8", "replace")
        if self.log_path is not None:
            with open(self.log_path, "a") as log:
                log.write(f"### {' '.join(argv)} -> {r.returncode}\n{err}")
        if r.returncode != 0 or any(m in err for m in SANITIZER_MARKERS):
            raise ServiceError(f"{' '.join(argv)} exited with status {r.returncode}:\n"
                               f"{err[-4000:]}")
        r.stderr_text = err
        return r

    def stat(self) -> dict[str, int | str]:
        """{"dir": ..., "segments": N, "bytes": N, "records": N, "first_seq": N, ...}"""
        out = self.run("journal", "stat").stdout.decode()
        st: dict[str, int | str] = {}
        for line in out.splitlines():
            if not line.strip():
                continue
            key, _, value = line.partition(" ")
            value = value.strip()
            st[key] = int(value) if re.fullmatch(r"-?\d+", value) else value
        return st

    def dump(self, from_seq: int | None = None) -> list[dict]:
        """Every record (from seq `from_seq` on) as a dict, in journal order."""
        args = ["journal", "dump"]
        if from_seq is not None:
            args += ["--from", str(from_seq)]
        out = self.run(*args).stdout
        recs = []
        for n, line in enumerate(out.splitlines(), 1):
            if not line.strip():
                continue
            try:
                recs.append(json.loads(line))
            except ValueError as e:
                raise AssertionError(f"dump line {n} is not JSON ({e}): {line[:300]!r}")
        return recs


def payload_bytes(rec: dict) -> bytes | None:
    """The payload of a dump record, or None (oversize)."""
    if "payload" in rec:
        return rec["payload"].encode("utf-8")
    if "payload_base64" in rec:
        return base64.b64decode(rec["payload_base64"])
    return None


def key_of(rec: dict) -> tuple[str, int] | None:
    """(pub, seq) of a record whose payload came from make_payload(), else None."""
    raw = payload_bytes(rec)
    if not raw:
        return None
    try:
        body = json.loads(raw)
        return body["pub"], body["seq"]
    except (ValueError, KeyError, TypeError):
        return None


def key_counts(records: Iterable[dict]) -> collections.Counter:
    return collections.Counter(k for k in map(key_of, records) if k is not None)


def describe_missing(missing: set, limit: int = 10) -> str:
    by_pub = collections.defaultdict(list)
    for pub, seq in missing:
        by_pub[pub].append(seq)
    parts = []
    for pub in sorted(by_pub):
        seqs = sorted(by_pub[pub])
        parts.append(f"{pub}: {len(seqs)} (e.g. {seqs[:limit]})")
    return "; ".join(parts)


class JournalWatcher:
    """Follows the journal with `dump --from <next seq>`; records accumulate in
    `records` (journal order). Complete records never change, so reading
    only what is new is enough, also across daemon restarts."""

    def __init__(self, ctl: JournalCtl):
        self.ctl = ctl
        self.records: list[dict] = []
        self.counts: collections.Counter = collections.Counter()

    @property
    def next_seq(self) -> int | None:
        return self.records[-1]["seq"] + 1 if self.records else None

    def poll(self) -> int:
        nxt = self.next_seq
        new = [r for r in self.ctl.dump(nxt) if nxt is None or r["seq"] >= nxt]
        self.records.extend(new)
        self.counts.update(k for k in map(key_of, new) if k is not None)
        return len(new)

    def wait_for_keys(self, keys: set, timeout: float, interval: float = 0.25,
                      alive: Callable[[], bool] | None = None, what: str = "") -> None:
        """Poll until every key of `keys` is in the journal (at least once)."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            missing = keys - self.counts.keys()
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what or 'journal'}: {len(missing)} of {len(keys)} "
                                   f"message(s) not in the journal after {timeout}s: "
                                   f"{describe_missing(missing)}")
            if alive is not None and not alive():
                self.poll()
                missing = keys - self.counts.keys()
                if not missing:
                    return
                raise AssertionError(f"{what or 'journal'}: the daemon died with "
                                     f"{len(missing)} message(s) not in the journal")
            time.sleep(interval)


# --------------------------------------------------------------------------
# on-disk format (little-endian)
#
#   segment  %020llu.seg, versions 3 and 2 (40 bytes):
#            "GBJ1" | u32 version | u64 first_seq | 16 B journal id |
#            u32 seed | u32 crc32c(the 36 bytes before)
#            version 1 (earlier releases, 16 bytes): "GBJ1" | u32 1 | u64 first_seq
#   record:  u32 magic 0x4A524247 ("GBRJ") | u32 len | u32 crc32c(body),
#            the CRC starting from the segment's seed (version 1: from 0)
#            body (len bytes): u64 seq | i64 received_time_us | u8 qos |
#            u8 flags (bit0 oversize, bit1 retained) | u16 topic_len |
#            u32 payload_len | u16 mid (version 3 only) | topic | payload

SEG_MAGIC = b"GBJ1"
SEG_HEADER = struct.Struct("<4sIQ")
SEG_HEADER_V2 = struct.Struct("<4sIQ16sII")
REC_MAGIC = 0x4A524247
REC_HEAD = struct.Struct("<III")
REC_FIXED = struct.Struct("<QqBBHIH")       # version 3
REC_FIXED_V2 = struct.Struct("<QqBBHI")     # versions 1, 2: no mid
FLAG_OVERSIZE = 0x01
FLAG_RETAIN = 0x02


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes, init: int = 0) -> int:
    """CRC-32C (Castagnoli), as in iSCSI / ext4: crc32c(b"123456789") == 0xE3069283.
    `init` continues from a previous CRC (the journal starts from a seed)."""
    crc = init ^ 0xFFFFFFFF
    t = _CRC32C
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


@dataclass
class Record:
    offset: int
    raw: bytes
    seq: int
    received_time_us: int
    qos: int
    flags: int
    topic: str
    payload: bytes
    payload_len: int
    mid: int = 0
    fixed: int = REC_FIXED.size

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def payload_offset(self) -> int:
        """File offset of the first payload byte."""
        return self.offset + REC_HEAD.size + self.fixed + len(self.topic.encode())


@dataclass
class SegmentHeader:
    version: int
    first_seq: int
    journal_id: bytes      # versions 2, 3
    seed: int              # versions 2, 3; 0 for version 1
    size: int


def read_header(data: bytes) -> SegmentHeader:
    magic, version, first_seq = SEG_HEADER.unpack_from(data, 0)
    if magic != SEG_MAGIC or version not in (1, 2, 3):
        raise AssertionError(f"bad segment header {data[:16]!r}")
    if version == 1:
        return SegmentHeader(1, first_seq, b"", 0, SEG_HEADER.size)
    _, _, _, jid, seed, crc = SEG_HEADER_V2.unpack_from(data, 0)
    if crc32c(data[:SEG_HEADER_V2.size - 4]) != crc:
        raise AssertionError(f"segment header CRC mismatch {data[:40]!r}")
    return SegmentHeader(version, first_seq, jid, seed, SEG_HEADER_V2.size)


def encode_record(seq: int, topic: str, payload: bytes, qos: int = 1,
                  received_time_us: int | None = None, oversize_len: int | None = None,
                  seed: int = 0, flags: int = 0, mid: int = 0) -> bytes:
    """A record as the daemon writes it into a version 3 segment whose seed
    is `seed` (oversize_len: an oversize record)."""
    t = topic.encode()
    if received_time_us is None:
        received_time_us = int(time.time() * 1e6)
    plen = len(payload)
    if oversize_len is not None:
        flags, plen, payload = flags | FLAG_OVERSIZE, oversize_len, b""
    body = REC_FIXED.pack(seq, received_time_us, qos, flags, len(t), plen, mid) + t + payload
    return REC_HEAD.pack(REC_MAGIC, len(body), crc32c(body, seed)) + body


def read_segment(path: Path | str) -> tuple[int, list[Record], int]:
    """(first_seq, valid records from the start, offset where parsing stopped)."""
    data = Path(path).read_bytes()
    hdr = read_header(data)
    fixed = REC_FIXED if hdr.version >= 3 else REC_FIXED_V2
    off, recs = hdr.size, []
    while off + REC_HEAD.size <= len(data):
        magic, length, crc = REC_HEAD.unpack_from(data, off)
        end = off + REC_HEAD.size + length
        if magic != REC_MAGIC or length < fixed.size or end > len(data):
            break
        body = data[off + REC_HEAD.size:end]
        if crc32c(body, hdr.seed) != crc:
            break
        seq, rtime, qos, flags, tlen, plen, *mid = fixed.unpack_from(body, 0)
        topic = body[fixed.size:fixed.size + tlen].decode("utf-8", "replace")
        payload = body[fixed.size + tlen:]
        recs.append(Record(off, data[off:end], seq, rtime, qos, flags, topic, payload, plen,
                           mid[0] if mid else 0, fixed.size))
        off = end
    return hdr.first_seq, recs, off


def segment_seed(path: Path | str) -> int:
    return read_header(Path(path).read_bytes()[:SEG_HEADER_V2.size]).seed


def segment_files(journal_dir: Path | str) -> list[Path]:
    return sorted(Path(journal_dir).glob("*.seg"))
