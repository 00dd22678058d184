"""What one line costs a server at a steady rate: ``python bench/line_wake.py``.

The fan-out bench measures CPU per *delivery*; at a steady rate a line also costs the
server a fixed amount of its own (its read, its numbering, its fan-out's setup, the
scheduling rounds between them), and that part does not show in instruction counts taken
at full speed, where lines come together and share their rounds. Nor does this: on this
shared machine what a line costs grows with the time since the one before, as the code
and data it touches have left the cache meanwhile. So this measures it the way a chat
has it: one sender says ``--lines`` lines ``GAP`` apart (each of ``--gaps``) to a room of
``--members`` receivers, and the server's CPU while it handles them (its threads'
``/proc/PID/task/*/schedstat``: nanoseconds on a CPU, not ticks) is divided by the
lines. Every receiver must get every line, or the run is void.

Each server (``--servers``: ``trio-chat``, ``ngircd``, ``baseline``; ``--compare REF``
adds trio-chat as of git REF) runs as the fan-out bench runs it (bench/servers.py), one
fresh server per run, the servers and gaps interleaved, ``--repeats`` times; printed: the
median µs of server CPU per line with the runs' range, and the median against the first
server's. Run at two members counts, the difference is the cost per delivery and what is
left the cost per line (bench/README.md, "A line at a steady rate").
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers
from servers import RunningServer, start_server

HOST = "127.0.0.1"
#: Seconds a run may take to connect everyone, and to see its last line arrive.
SETTLE_TIMEOUT = 20.0


def _on_cpu_ns(pid: int) -> int:
    """Nanoseconds the process's threads have run so far (schedstat's first field)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total


class Clients:
    """One sender and ``members`` receivers on one server, with blocking-free sockets;
    the receivers count the lines that carry ``MARK``."""

    MARK = b"wake-line"

    def __init__(self, server: RunningServer, members: int) -> None:
        self.dialect = server.dialect
        self.socks: list[socket.socket] = []
        self.counts = [0] * members
        self._tails = [b""] * members
        for i in range(members + 1):
            sock = socket.create_connection((HOST, server.port), timeout=SETTLE_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.socks.append(sock)
            self._log_in(sock, f"w{i}x{int(time.monotonic() * 1000) % 100000}")
        for sock in self.socks:
            sock.setblocking(False)
        time.sleep(0.5)  # joins and welcomes settle; what they sent is drained below
        self.drain()
        self.counts = [0] * members

    def _log_in(self, sock: socket.socket, nick: str) -> None:
        if self.dialect == "irc":
            sock.sendall(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN #lobby\r\n".encode())
        else:
            sock.sendall(b'{"type":"hello","nick":"' + nick.encode() + b'"}\n')

    def say(self, k: int) -> None:
        text = self.MARK + b" %d" % k
        if self.dialect == "irc":
            line = b"PRIVMSG #lobby :" + text + b"\r\n"
        else:
            line = b'{"type":"say","text":"' + text + b'"}\n'
        self.socks[0].send(line)

    def drain(self) -> None:
        for i, sock in enumerate(self.socks[1:]):
            while True:
                try:
                    data = sock.recv(1 << 16)
                except BlockingIOError:
                    break
                if not data:
                    raise ConnectionError("the server closed a receiver")
                data = self._tails[i] + data
                cut = data.rfind(b"\n") + 1
                self.counts[i] += data.count(self.MARK, 0, cut)
                self._tails[i] = data[cut:]

    def close(self) -> None:
        for sock in self.socks:
            with contextlib.suppress(OSError):
                sock.close()


def measure(name: str, members: int, lines: int, gap: float) -> float:
    """µs of the server's CPU per line, for one run."""
    with start_server(name) as server:
        clients = Clients(server, members)
        try:
            before = _on_cpu_ns(server.pid)
            start = time.perf_counter()
            for k in range(lines):
                clients.say(k)
                due = start + (k + 1) * gap
                while time.perf_counter() < due:
                    clients.drain()
                    time.sleep(min(0.0002, max(0.0, due - time.perf_counter())))
            deadline = time.monotonic() + SETTLE_TIMEOUT
            while min(clients.counts) < lines and time.monotonic() < deadline:
                clients.drain()
                time.sleep(0.001)
            used = _on_cpu_ns(server.pid) - before
            if min(clients.counts) < lines:
                raise RuntimeError(f"{name}: a receiver got {min(clients.counts)} of {lines}")
        finally:
            clients.close()
    return used / lines / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="trio-chat,ngircd")
    parser.add_argument("--compare", action="append", default=[], metavar="REF")
    parser.add_argument("--ref", default=None, help="run trio-chat from this git ref")
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--gaps", default="0.5,2", help="ms between lines, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.ref:
        servers.run_trio_chat_from(args.ref)
    names = [s for s in args.servers.split(",") if s]
    names += [servers.compare_with(ref) for ref in args.compare]
    gaps = [float(g) / 1000 for g in args.gaps.split(",")]
    results: dict[tuple[str, float], list[float]] = {}
    skipped: dict[str, str] = {}
    for repeat in range(args.repeats):
        for gap in gaps:
            for name in names:
                if name in skipped:
                    continue
                try:
                    us = measure(name, args.members, args.lines, gap)
                except servers.ServerUnavailable as exc:
                    skipped[name] = str(exc)
                    continue
                results.setdefault((name, gap), []).append(us)
                print(f"[{repeat + 1}/{args.repeats}] {name} gap {gap * 1000:g} ms: "
                      f"{us:.0f} µs a line", flush=True)  # fmt: skip
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    print(f"\n{args.members} members, {args.lines} lines a run, medians of {args.repeats}")
    print("\n| server | gap | µs of server CPU per line (range) | against " + names[0] + " |")
    print("|---|---|---|---|")
    for gap in gaps:
        base = results.get((names[0], gap))
        for name in names:
            runs = results.get((name, gap))
            if not runs:
                continue
            median = statistics.median(runs)
            ratio = f"{median / statistics.median(base):.2f}x" if base else "-"
            print(f"| {name} | {gap * 1000:g} ms | {median:.0f} ({min(runs):.0f}-"
                  f"{max(runs):.0f}) | {ratio} |")  # fmt: skip


if __name__ == "__main__":
    main()
