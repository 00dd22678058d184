"""What attackers cost the good clients: latency, loss, and the server's memory and CPU.

Starts a trio-chat server in a subprocess (default settings, no database), logs in a few
well-behaved TCP clients that chat at a steady pace and time every delivery, then runs one
kind of attacker beside them for a while, and reports the good clients' latency and loss
and the server's RSS and CPU. Not a test: figures to compare (run a change beside the code
before it with ``--src``), never asserted in CI.

    python bench/abuse.py --attack ws-empty-fragments --attackers 5 --duration 10
    python bench/abuse.py --attack blank-lines --src /tmp/old-checkout

Attacks (each from its own loopback address, 127.0.0.100 and up):

* ``none``: the good clients alone.
* ``ws-empty-fragments``: after ``hello``, a text frame with FIN=0, then empty continuation
  frames for ever (issue 12, item 2).
* ``ws-small-fragments``: the same with 2-byte continuation frames.
* ``ws-pings``: WebSocket ping frames as fast as the socket takes them.
* ``blank-lines``: a JSON-lines client sending bare newlines.
* ``paste``: a text-mode client (as on ``nc``) pasting 30 lines at once; the report counts
  how many of its lines the good clients saw.

Every loop is bounded in time; everything talks to 127.0.0.0/8 only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parent.parent
GOOD_SOURCE = "127.0.0.2"


# ------------------------------------------------------------------- the server process


class Server:
    """A ``trio-chat serve`` subprocess on free ports, and what /proc says about it."""

    def __init__(self, src: Path, extra: list[str]) -> None:
        env = dict(os.environ, PYTHONPATH=str(src))
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        command = [sys.executable, "-m", "trio_chat.cli", "serve", "--port", "0"]
        command += ["--ws-port", "0", "--no-db", "--no-entry-points", "--log-level", "error"]
        # cwd too: ``python -m`` puts the working directory ahead of PYTHONPATH.
        self.proc = subprocess.Popen(
            [*command, *extra],
            env=env,
            cwd=src,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        line = b""
        while time.monotonic() < deadline and b"serving on" not in line:
            line = self.proc.stdout.readline()
        found = dict(re.findall(rb"(tcp|ws)://127\.0\.0\.1:(\d+)", line))
        self.tcp_port, self.ws_port = int(found[b"tcp"]), int(found[b"ws"])

    def rss_kib(self) -> int:
        """The server's resident memory (0 once it has exited)."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+)", text)
        return int(found.group(1)) if found else 0

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-2000:].decode(errors="replace")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# ------------------------------------------------------------------------ good clients


class GoodClients:
    """``n`` JSON-lines clients in #lobby; each says a stamped line every ``interval`` s."""

    def __init__(self, n: int, interval: float) -> None:
        self.n = n
        self.interval = interval
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self.received = 0
        self.paste_lines_seen = 0

    async def run(self, port: int, duration: float) -> None:
        streams = []
        for k in range(self.n):
            stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=GOOD_SOURCE)
            await stream.send_all(
                json.dumps({"type": "hello", "nick": f"good{k}"}).encode() + b"\n"
            )
            streams.append(stream)
        async with trio.open_nursery() as nursery:
            for k, stream in enumerate(streams):
                nursery.start_soon(self._read, stream)
                nursery.start_soon(self._say, stream, k, duration)
            await trio.sleep(duration + 5)  # the last lines arrive
            nursery.cancel_scope.cancel()
        for stream in streams:
            await stream.aclose()

    async def _say(self, stream: trio.SocketStream, k: int, duration: float) -> None:
        await trio.sleep(0.5 + k * self.interval / self.n)
        end = trio.current_time() + duration
        n = 0
        while trio.current_time() < end:
            text = f"g{k}-{n}"
            self.sent[text] = trio.current_time()
            await stream.send_all(json.dumps({"type": "say", "text": text}).encode() + b"\n")
            n += 1
            await trio.sleep(self.interval)

    async def _read(self, stream: trio.SocketStream) -> None:
        buffer = b""
        while data := await stream.receive_some(65536):
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            now = trio.current_time()
            for line in lines:
                event = json.loads(line)
                if event.get("type") != "message":
                    continue
                text = event.get("text", "")
                if text in self.sent:
                    self.received += 1
                    self.latencies.append(now - self.sent[text])
                elif text.startswith("paste-"):
                    self.paste_lines_seen += 1

    def report(self) -> dict[str, float]:
        expected = len(self.sent) * self.n
        lat = sorted(self.latencies) or [float("nan")]
        return {
            "good_p50_ms": 1000 * statistics.median(lat),
            "good_p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "good_max_ms": 1000 * lat[-1],
            "good_lost": expected - self.received,
            "good_expected": expected,
        }


# --------------------------------------------------------------------------- attackers


def ws_frame(opcode: int, payload: bytes, *, fin: bool) -> bytes:
    """A masked client WebSocket frame (RFC 6455 §5.2)."""
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + size.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


async def open_ws(port: int, source: str, nick: str) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    await stream.send_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(4096)
    hello = json.dumps({"type": "hello", "nick": nick}).encode()
    await stream.send_all(ws_frame(0x1, hello, fin=True))
    return stream


async def drain(stream: trio.SocketStream) -> None:
    try:
        while await stream.receive_some(65536):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def attack(kind: str, server: Server, k: int, end: float, stats: dict[str, int]) -> None:
    source = f"127.0.0.{100 + k}"
    try:
        async with trio.open_nursery() as nursery:
            if kind == "blank-lines":
                stream = await trio.open_tcp_stream(
                    "127.0.0.1", server.tcp_port, local_address=source
                )
                await stream.send_all(
                    json.dumps({"type": "hello", "nick": f"bad{k}"}).encode() + b"\n"
                )
                chunk = b"\n" * 65536
            elif kind == "paste":
                stream = await trio.open_tcp_stream(
                    "127.0.0.1", server.tcp_port, local_address=source
                )
                await stream.send_all(f"paster{k}\n".encode())
            else:
                stream = await open_ws(server.ws_port, source, f"bad{k}")
                if kind == "ws-pings":
                    chunk = ws_frame(0x9, b"p", fin=True) * 4096
                else:
                    await stream.send_all(ws_frame(0x1, b"x", fin=False))
                    payload = b"" if kind == "ws-empty-fragments" else b"ab"
                    chunk = ws_frame(0x0, payload, fin=False) * 4096
            nursery.start_soon(drain, stream)
            while trio.current_time() < end:
                if kind == "paste":  # once: at 5 lines/s it takes a few seconds
                    await trio.sleep(1)  # the good clients are in the room by then
                    lines = "".join(f"paste-{k}-{n}\n" for n in range(30))
                    await stream.send_all(lines.encode())
                    stats["paste_lines_sent"] = stats.get("paste_lines_sent", 0) + 30
                    await trio.sleep_until(end)
                    continue
                with trio.move_on_at(end):
                    await stream.send_all(chunk)
                    stats["attack_bytes"] = stats.get("attack_bytes", 0) + len(chunk)
            nursery.cancel_scope.cancel()
    except* (trio.BrokenResourceError, OSError):
        stats["attackers_cut_off"] = stats.get("attackers_cut_off", 0) + 1


# ---------------------------------------------------------------------------------- main


async def measure(args: argparse.Namespace) -> dict[str, float]:
    server = Server(Path(args.src), args.server_arg)
    try:
        rss_before, cpu_before = server.rss_kib(), server.cpu_seconds()
        good = GoodClients(args.good, args.interval)
        stats: dict[str, int] = {}
        peak = [rss_before]

        async def sample_rss() -> None:
            while True:
                peak[0] = max(peak[0], server.rss_kib())
                await trio.sleep(0.1)

        with trio.fail_after(args.duration + 40):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample_rss)
                end = trio.current_time() + args.duration + 0.5
                if args.attack != "none":
                    for k in range(args.attackers):
                        nursery.start_soon(attack, args.attack, server, k, end, stats)
                await good.run(server.tcp_port, args.duration)
                nursery.cancel_scope.cancel()
        result: dict[str, float] = dict(good.report())
        result.update(stats)
        if args.attack == "paste":
            result["paste_lines_seen_per_good_client"] = good.paste_lines_seen / args.good
        if server.proc.poll() is not None:
            result["server_exited"] = True
            print(server.log_tail(), file=sys.stderr)
        result["server_cpu_s"] = server.cpu_seconds() - cpu_before
        result["rss_growth_mib"] = (server.rss_kib() - rss_before) / 1024
        result["rss_peak_growth_mib"] = (peak[0] - rss_before) / 1024
        return result
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--attack",
        default="none",
        choices=[
            "none",
            "ws-empty-fragments",
            "ws-small-fragments",
            "ws-pings",
            "blank-lines",
            "paste",
        ],
    )
    parser.add_argument("--attackers", type=int, default=5)
    parser.add_argument("--good", type=int, default=5, help="well-behaved clients")
    parser.add_argument(
        "--interval", type=float, default=0.25, help="s between a good client's lines"
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--src", default=str(REPO), help="checkout whose trio_chat to run")
    parser.add_argument("--server-arg", action="append", default=[], help="extra serve flag")
    args = parser.parse_args()
    result = trio.run(measure, args)
    print(json.dumps({"attack": args.attack, "src": args.src, **result}, indent=1))


if __name__ == "__main__":
    main()
