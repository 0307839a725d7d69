#!/usr/bin/python3
"""Does the broker keep to its in-flight window? (see bench/README.md)

    /usr/bin/python3 bench/broker_window.py [--window 20] [-n 2000]

Starts a private mosquitto (bench/ingest.py's settings, `max_inflight_messages
WINDOW`, `max_queued_messages 0`), subscribes to sac/# with QoS 1 from a bare
MQTT 3.1.1 client written here, has bench/loadgen publish N messages at once,
and then:

  1. acknowledges nothing: how many PUBLISHes arrive (should be WINDOW);
  2. acknowledges only the oldest unacknowledged message, a few times: how
     many arrive per PUBACK (should be 1);
  3. acknowledges everything it has in one write, each time the broker goes
     quiet: the size of each burst (should never exceed WINDOW).

mosquitto 2.0.11 (Debian 12) gives WINDOW, then WINDOW per PUBACK, then
bursts of WINDOW, WINDOW^2, ...: it keeps to the window only until the first
PUBACK of a backlog. Exit status 0 if the broker kept to it, 1 if not.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # noqa: E402  (Broker, the build directory)


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    n, length = len(body), b""
    while True:
        d, n = n % 128, n // 128
        length += bytes([d | (0x80 if n else 0)])
        if not n:
            return bytes([first]) + length + body


class Client:
    """Just enough MQTT 3.1.1: CONNECT, SUBSCRIBE, read PUBLISH, send PUBACK."""

    def __init__(self, port: int, client_id: str):
        self.sock = socket.create_connection((ingest.HOST, port))
        self.buf = b""
        self.sock.sendall(_packet(0x10, _str("MQTT") + bytes([4, 0x00]) +
                                  struct.pack("!H", 60) + _str(client_id)))
        self.sock.sendall(_packet(0x82, struct.pack("!H", 1) + _str("sac/#") + b"\x01"))
        kinds = [t >> 4 for t, _ in self.read(0.5)]
        if 2 not in kinds or 9 not in kinds:
            raise RuntimeError(f"no CONNACK/SUBACK from the broker: {kinds}")

    def read(self, quiet: float) -> list[tuple[int, bytes]]:
        """Packets received until nothing came for `quiet` seconds."""
        self.sock.settimeout(quiet)
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    break
                self.buf += data
        except socket.timeout:
            pass
        out = []
        while len(self.buf) >= 2:
            i, mult, n = 1, 1, 0
            while i < len(self.buf):
                d = self.buf[i]
                i += 1
                n += (d & 127) * mult
                mult *= 128
                if not d & 128:
                    break
            else:
                break
            if len(self.buf) < i + n:
                break
            out.append((self.buf[0], self.buf[i:i + n]))
            self.buf = self.buf[i + n:]
        return out

    def publishes(self, quiet: float) -> list[bytes]:
        """Packet ids of the QoS 1 PUBLISHes received."""
        mids = []
        for first, body in self.read(quiet):
            if first >> 4 == 3:
                tlen = struct.unpack("!H", body[:2])[0]
                mids.append(body[2 + tlen:4 + tlen])
        return mids

    def ack(self, mids: list[bytes]) -> None:
        self.sock.sendall(b"".join(_packet(0x40, m) for m in mids))

    def close(self) -> None:
        self.sock.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--window", type=int, default=20, help="max_inflight_messages (20)")
    ap.add_argument("-n", "--count", type=int, default=2000, help="messages (2000)")
    ap.add_argument("--build", type=Path, default=ingest.REPO / "build")
    args = ap.parse_args()
    loadgen = args.build.resolve() / "bench" / "loadgen"
    if not loadgen.is_file():
        print(f"{loadgen} missing: meson compile -C {args.build}", file=sys.stderr)
        return 1
    w, quiet = args.window, 0.3
    d = Path(tempfile.mkdtemp(prefix="broker-window-"))
    broker = ingest.Broker(d, w).start()
    kept = True
    try:
        c = Client(broker.port, "broker-window")
        subprocess.run([str(loadgen), "-p", str(broker.port), "-n", str(args.count),
                        "-t", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=90, check=True)
        unacked = c.publishes(quiet)
        print(f"max_inflight_messages {w}, {args.count} messages queued")
        print(f"1. no PUBACK: {len(unacked)} PUBLISHes arrive (window {w})")
        kept &= len(unacked) <= w

        per_ack = []
        for _ in range(3):
            c.ack([unacked.pop(0)])
            new = c.publishes(quiet)
            unacked += new
            per_ack.append(len(new))
        print(f"2. one PUBACK at a time: {per_ack} new PUBLISHes per PUBACK, "
              f"{len(unacked)} unacknowledged now (window {w})")
        kept &= len(unacked) <= w

        bursts, total = [], len(unacked)
        for _ in range(50):
            c.ack(unacked)
            unacked = c.publishes(quiet)
            if not unacked:
                break
            bursts.append(len(unacked))
            total += len(unacked)
        print(f"3. acknowledging everything each time: bursts {bursts[:8]}"
              f"{' ...' if len(bursts) > 8 else ''}, largest {max(bursts, default=0)} "
              f"(window {w})")
        kept &= max(bursts, default=0) <= w
        c.close()
    finally:
        broker.stop()
        shutil.rmtree(d, ignore_errors=True)
    print("the broker kept to its window" if kept else
          "the broker did NOT keep to its window")
    return 0 if kept else 1


if __name__ == "__main__":
    sys.exit(main())
