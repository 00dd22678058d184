"""How long the last member of a room waits when a line is written to N sockets one by one.

A chat server writes a room's line to its members one after another, so its last member
hears it after N `send` calls, whatever the server is written in. This measures that
floor on this machine with no chat server at all: one process holds N loopback TCP
connections (TCP_NODELAY, non-blocking, as trio-chat's) and sends one 150-byte line to
each in a plain loop, ``--rounds`` times, 20 ms apart; a second process (nice 10, as the
bench's bulk receivers) reads and drops everything. It prints the loop's wall time (p50
and p99: when the last socket had its line) and the CPU of the sending process per send,
user and system.

    python bench/fanout_floor.py --n 100,1000

Compare its p50 with a server's steady p50 at the same N with the probes joining last
(``run.py --scenarios steady``): what is above it is the server's own work per member.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import statistics
import time

LINE = (
    b'{"type":"message","id":12345,"room":"#lobby","nick":"sender1","text":"'
    + b"x" * 64
    + b'","ts":1764740000.123}\n'
)


def drain(port: int, n: int) -> None:
    """The receivers: connect N sockets and read until the sender closes them."""
    os.nice(10)
    sel = selectors.DefaultSelector()
    for _ in range(n):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.setblocking(False)
        sel.register(conn, selectors.EVENT_READ)
    open_count = n
    while open_count:
        for key, _ in sel.select(30):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(sock)
                sock.close()
                open_count -= 1


def measure(n: int, rounds: int) -> str:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    child = os.fork()
    if child == 0:
        try:
            drain(port, n)
        finally:
            os._exit(0)
    members = []
    try:
        for _ in range(n):
            sock, _addr = listener.accept()
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            members.append(sock)
        walls = []
        before = os.times()
        for _ in range(rounds):
            start = time.perf_counter()
            for sock in members:
                sock.send(LINE)
            walls.append(time.perf_counter() - start)
            time.sleep(0.02)
        after = os.times()
    finally:
        for sock in members:
            sock.close()
        listener.close()
        os.waitpid(child, 0)
    walls.sort()
    sends = rounds * n
    return (
        f"N={n}: last member after p50 {statistics.median(walls) * 1e3:.2f} ms, "
        f"p99 {walls[int(len(walls) * 0.99)] * 1e3:.2f} ms; per send: wall "
        f"{statistics.median(walls) / n * 1e6:.2f} us, CPU user "
        f"{(after.user - before.user) / sends * 1e6:.2f} us, system "
        f"{(after.system - before.system) / sends * 1e6:.2f} us"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="100,1000", help="members, a comma list (default 100,1000)")
    p.add_argument("--rounds", type=int, default=200, help="lines sent to all (default 200)")
    args = p.parse_args()
    for n in (int(x) for x in args.n.split(",")):
        print(measure(n, args.rounds), flush=True)


if __name__ == "__main__":
    main()
