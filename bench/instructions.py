"""Instructions per chat line, counted by valgrind: ``python bench/instructions.py``.

On a shared 2-core machine the CPU time of a fan-out run moves by 10-30% from run to run,
more than the change it is meant to show (a field on a message, a check per line). This
counts instead: it runs a fixed chat in one process under ``valgrind --tool=callgrind``
(no hardware counters needed), whose instruction count does not depend on what else the
machine does, and reports instructions per line said and per delivery.

The chat: a plain ``trio-chat`` (no database, the built-ins loaded) on loopback, ``--members``
receivers over TCP JSON lines in ``#lobby``, and one sender saying ``--lines`` lines of 64
characters, ``--window`` at a time without waiting for their echo, until every receiver
read the last (``--transport ws``: every client over WebSocket instead, hello with
``"batch": true`` as the community bench's clients; the sender's frames masked once, the
receivers searching the raw frames, which the server does not mask). Run twice, with
``--lines`` and twice as many, and the difference divided by ``--lines`` is the cost of
a line with start-up, imports and the logins taken out.
The garbage collector is set as ``trio-chat serve`` sets it (``quiet_gc``: start-up frozen).
The clients are this script's own few lines (a write, and a search for the last line's
text in what was read), the same whichever tree runs.

``--compare REV`` counts another commit's tree too (``git archive`` into a temp dir), in
the same run: the ratio is what a change costs or saves per line, to a fraction of a
percent. Instructions are not time (a cache miss counts once), so a figure here says
where work was added or removed, and the fan-out bench (``run.py``) says what it is worth.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LAST = "the last line"


#: The upgrade request of a WebSocket client (the key is any 16 bytes, base64).
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def client_frame(payload: bytes) -> bytes:
    """One masked text frame (RFC 6455 5.3) of ``payload``, of under 64 KiB."""
    mask = b"\x37\xfa\x21\x3d"
    size = len(payload)
    head = bytes((0x81, 0x80 | size)) if size < 126 else b"\x81\xfe" + size.to_bytes(2, "big")
    key = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return head + mask + masked


async def chat(members: int, lines: int, window: int, transport: str = "tcp") -> None:
    """The measured chat (run under valgrind by :func:`count`)."""
    import trio

    from trio_chat.program import quiet_gc
    from trio_chat.testing import local_config, open_test_server

    websocket = transport == "ws"

    def framed(body: bytes) -> bytes:
        return client_frame(body) if websocket else body + b"\n"

    async def log_in(port: int, nick: str) -> trio.SocketStream:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        seen = b""
        if websocket:
            await stream.send_all(UPGRADE)
            while b"\r\n\r\n" not in seen:
                seen += await stream.receive_some(65536)
            hello = b'{"type":"hello","nick":"%s","batch":true}' % nick.encode()
        else:
            hello = b'{"type":"hello","nick":"%s"}' % nick.encode()
        await stream.send_all(framed(hello))
        while b'"type":"join"' not in seen:  # its own join of #lobby: in the room
            seen += await stream.receive_some(65536)
        return stream

    async def read_to_end(stream: trio.SocketStream, done: trio.Event) -> None:
        tail = b""
        while True:
            data = await stream.receive_some(65536)
            if not data:
                raise RuntimeError("the server closed a receiver")
            tail = tail[-64:] + data
            if LAST.encode() in tail:
                done.set()
                return

    config = local_config(db=None, ws_port=0 if websocket else None)
    with trio.fail_after(600):
        async with open_test_server(config=config) as server:
            port = server.address("ws" if websocket else "tcp")[1]
            receivers = [await log_in(port, f"r{i}") for i in range(members)]
            sender = await log_in(port, "sender")
            quiet_gc()  # as `trio-chat serve` does once started
            finished = [trio.Event() for _ in range(members + 1)]
            line = framed(b'{"type":"say","text":"%s"}' % (b"x" * 64))
            last = framed(b'{"type":"say","text":"%s"}' % LAST.encode())
            async with trio.open_nursery() as nursery:
                for stream, done in zip([*receivers, sender], finished, strict=True):
                    nursery.start_soon(read_to_end, stream, done)
                sent = 0
                while sent < lines - 1:
                    burst = min(window, lines - 1 - sent)
                    await sender.send_all(line * burst)
                    sent += burst
                    await trio.lowlevel.checkpoint()
                await sender.send_all(last)
                for done in finished:
                    await done.wait()
            for stream in [*receivers, sender]:
                await stream.aclose()


def collected(tree: Path, script: str, arguments: list[str]) -> int:
    """Instructions the run of ``script --inner ARGUMENTS`` (in this folder) took under
    callgrind, with ``tree``'s ``trio_chat``."""
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{HERE}", "PYTHONHASHSEED": "0"}
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, str(HERE / script), "--inner", *arguments]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        sys.exit(f"the counted run failed ({tree}):\n{done.stderr[-3000:]}")
    return int(found.group(1))


def count(tree: Path, members: int, lines: int, window: int, transport: str = "tcp") -> int:
    """Instructions the whole chat took, with ``tree``'s ``trio_chat``."""
    arguments = ["--members", str(members), "--lines", str(lines), "--window", str(window)]
    return collected(tree, "instructions.py", [*arguments, "--transport", transport])


def per_line(tree: Path, args: argparse.Namespace) -> float:
    small = count(tree, args.members, args.lines, args.window, args.transport)
    large = count(tree, args.members, 2 * args.lines, args.window, args.transport)
    return (large - small) / args.lines


def export(rev: str, into: Path) -> Path:
    """``rev``'s ``trio_chat`` in a directory of its own."""
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "trio_chat"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def compiled(tree: Path) -> Path:
    """``tree`` with its bytecode written: else the first counted run would compile what
    the second reads, and the difference would hide that much of a line's cost."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "trio_chat")], check=True)
    return tree


def per_tree(revs: list[str], measure: Callable[[Path], float]) -> list[tuple[str, float]]:
    """``measure`` of the work tree, then of each of ``revs`` (exported and compiled), in
    one run: what ``--compare`` prints side by side."""
    results = [("this tree", measure(compiled(ROOT)))]
    with tempfile.TemporaryDirectory() as scratch:
        for rev in revs:
            tree = compiled(export(rev, Path(scratch) / rev.replace("/", "_")))
            results.append((rev, measure(tree)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10, help="receivers in the room")
    parser.add_argument("--lines", type=int, default=1000, help="lines of the smaller run")
    parser.add_argument("--window", type=int, default=64, help="lines sent per write")
    parser.add_argument(
        "--transport", choices=("tcp", "ws"), default="tcp", help="every client's transport"
    )
    parser.add_argument("--compare", action="append", default=[], help="another git rev")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        import trio

        trio.run(chat, args.members, args.lines, args.window, args.transport)
        return
    deliveries = args.members + 1  # the sender gets its echo
    results = per_tree(args.compare, lambda tree: per_line(tree, args))
    base = results[0][1]
    over = "TCP JSON lines" if args.transport == "tcp" else "WebSocket (batch)"
    print(f"{args.members} receivers + the sender over {over}, lines of 64 characters:")
    for name, instructions in results:
        print(
            f"  {name:>12}: {instructions:>10,.0f} instructions per line, "
            f"{instructions / deliveries:>8,.0f} per delivery ({instructions / base:.3f}x)"
        )


if __name__ == "__main__":
    main()
