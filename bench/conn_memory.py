"""What one connection costs the server in memory, idle and busy, per transport.

Issue 19 asks for <= 6 KiB per busy connection. The community scenario (bench/run.py)
measures it among everything else; this measures only that, small and fast enough to run
after each change, and can look inside the server:

* starts ``trio-chat serve --no-db`` (TCP and WebSocket ports) as a subprocess, like
  ``bench/run.py`` does (``servers.start_server``), from git ``--ref`` (default HEAD;
  ``worktree``: the working tree, uncommitted changes included) and, with
  ``--compare REF``, the same from another ref, each repeat running both in turn;
* opens ``--n`` connections of one transport (``json``: TCP JSON lines; ``ws``:
  WebSocket with ``"batch": true``, as the community's users do), in rooms of
  ``--room-size`` (each user joins one room with a ``/join`` command);
* makes them **busy**: every user says a line to its room every ``--every`` seconds
  (offsets spread evenly) for ``--duration`` seconds, so each connection both reads and
  is written to all the time and never idles long enough to park (``park_after`` is 2 s);
* reads the server's VmRSS before the first connect, once everyone joined (*joined*),
  at the end of the busy time (*busy*) and after ``park_after`` more seconds of quiet
  (*parked*); KiB per connection = (VmRSS - VmRSS before) / connections. Medians of
  ``--repeats``.

``--trace DIR`` runs the server under ``tracemalloc`` (slower, and more memory: only for
the breakdown, not for the figures) and writes, for each phase, the 50 largest growths
since the first connect by file:line, to ``DIR/<server>-<transport>-<phase>.txt`` (and the
snapshots beside them, ``.tm``, for a closer look).

    python bench/conn_memory.py --n 1000 --transports json,ws --repeats 3 --compare main
    python bench/conn_memory.py --n 1000 --transports ws --ref worktree --trace /tmp/mem

Like the rest of the bench the clients do not import trio-chat (``community_load.Loop``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import community_load
import loadgen
import servers as servers_mod

#: Seconds a connection may stay quiet before it parks (trio-chat's default park_after).
PARK_AFTER = 2.0

#: Lines of each table in a ``--trace`` breakdown.
TOP = 50

#: This checkout: a trace names trio-chat's files relative to it.
_REPO = str(Path(__file__).resolve().parent.parent)

#: Runs the server with a SIGUSR1 handler that writes a tracemalloc snapshot.
_TRACED = """
import signal, sys, tracemalloc
_count = [0]
def _dump(signum, frame):
    _count[0] += 1
    tracemalloc.take_snapshot().dump(f"snapshot-{_count[0]}.tm.part")
    import os
    os.rename(f"snapshot-{_count[0]}.tm.part", f"snapshot-{_count[0]}.tm")
signal.signal(signal.SIGUSR1, _dump)
sys.argv = ["trio-chat", *sys.argv[1:]]
from trio_chat.cli import main
tracemalloc.start(12)
sys.exit(main())
"""


def _traced_command(command: list[str]) -> list[str]:
    """``python -m trio_chat.cli ARGS`` -> the same under :data:`_TRACED`."""
    at = command.index("-m")
    return [*command[:at], "-c", _TRACED, *command[at + 2 :]]


def _snapshot(srv: servers_mod.RunningServer, index: int) -> Path:
    """Ask the traced server for its ``index``-th snapshot; wait until it is written."""
    path = srv.log_path.parent / f"snapshot-{index}.tm"
    os.kill(srv.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.exists():
            return path
        time.sleep(0.2)
    raise TimeoutError(f"no tracemalloc snapshot from {srv.name}")


def write_traces(snapshots: list[Path], folder: Path, prefix: str, per: int) -> None:
    """The growth from the first snapshot (before) to each later one (joined, busy,
    parked), per connection (``per``), as ``PREFIX-PHASE.txt`` in ``folder``, each snapshot
    kept beside it (``.tm``, for a closer look with ``tracemalloc.Snapshot.load``)."""
    for phase, snap in zip(("joined", "busy", "parked"), snapshots[1:], strict=True):
        out = folder / f"{prefix}-{phase}.txt"
        _write_growth(snapshots[0], snap, out, per)
        shutil.copy(snap, out.with_suffix(".tm"))
    shutil.copy(snapshots[0], folder / f"{prefix}-before.tm")


def _write_growth(before: Path, after: Path, out: Path, connections: int) -> None:
    import tracemalloc

    old = tracemalloc.Snapshot.load(str(before))
    new = tracemalloc.Snapshot.load(str(after))
    stats = new.compare_to(old, "traceback")
    total = sum(s.size_diff for s in stats)
    lines = [f"growth {total / 1024:.0f} KiB, {total / 1024 / connections:.2f} KiB/connection"]
    # By where it was allocated, and by the innermost trio_chat line that led there.
    by_line: dict[str, list[int]] = {}
    by_caller: dict[str, list[int]] = {}
    for stat in stats:
        frames = list(reversed(stat.traceback))  # most recent call first
        for key, table in ((_where(frames[0]), by_line), (_caller(frames), by_caller)):
            sums = table.setdefault(key, [0, 0])
            sums[0] += stat.size_diff
            sums[1] += stat.count_diff
    for title, table in (("allocated at", by_line), ("innermost trio_chat caller", by_caller)):
        lines.append(f"\n{title}:")
        for key, (size, count) in sorted(table.items(), key=lambda kv: -kv[1][0])[:TOP]:
            lines.append(
                f"{size / connections:8.0f} B/conn {count / connections:7.2f} blocks/conn  {key}"
            )
    out.write_text("\n".join(lines) + "\n")


def _where(frame: Any) -> str:
    name = frame.filename.split("site-packages/")[-1].removeprefix(_REPO + os.sep)
    return f"{name}:{frame.lineno}"


def _caller(frames: list[Any]) -> str:
    for frame in frames:
        if "trio_chat/" in frame.filename:
            return _where(frame)
    return _where(frames[-1]) + " (no trio_chat frame)"


def plan(n: int, room_size: int, every: float, duration: float) -> list[tuple[float, int, int]]:
    """(offset s, user, room): each user says a line every ``every`` seconds."""
    schedule = []
    rounds = max(1, int(duration / every))
    for k in range(rounds):
        for user in range(n):
            schedule.append((k * every + every * user / n, user, user // room_size))
    schedule.sort()
    return schedule


def measure(server: str, transport: str, args: argparse.Namespace) -> dict[str, Any]:
    """One server, one transport: connect, join, be busy, rest; VmRSS at each step."""
    n, room_size = args.n, args.room_size
    rooms = (n + room_size - 1) // room_size
    room_names = [f"#m{r}" for r in range(rooms)]
    command = servers_mod._command
    if args.trace:
        servers_mod._command = lambda *a, **k: _traced_command(command(*a, **k))  # type: ignore[assignment]
    try:
        with servers_mod.start_server(server, ws=True, startup_timeout=120) as srv:
            time.sleep(0.5)
            snapshots = [_snapshot(srv, 1)] if args.trace else []
            rss0 = srv.rss_kb()
            cfg = {
                "host": servers_mod.HOST,
                "port": srv.port,
                "ws_port": srv.ws_port,
                "users": [
                    {"user": u, "transport": transport, "rooms": [room_names[u // room_size]]}
                    for u in range(n)
                ],
                "schedule": plan(n, room_size, args.every, args.duration),
                "room_names": room_names,
                "size": 64,
            }
            loop = community_load.Loop(cfg)
            deadline = time.monotonic() + 60 + n * 0.01
            loop.connect_all(deadline)
            while not loop.all_ready() and time.monotonic() < deadline:
                loop.pump(0.05)
            ready = sum(u.ready for u in loop.users)
            _pump_for(loop, 1.0)
            rss_joined = srv.rss_kb()
            if args.trace:
                snapshots.append(_snapshot(srv, 2))
            start = time.monotonic() + 0.2
            loop.run_schedule(start, start + args.duration + 30)
            rss_busy = srv.rss_kb()
            if args.trace:
                snapshots.append(_snapshot(srv, 3))
            _pump_for(loop, PARK_AFTER + (8.0 if args.trace else 1.5))
            rss_parked = srv.rss_kb()
            if args.trace:
                snapshots.append(_snapshot(srv, 4))
                write_traces(snapshots, Path(args.trace), f"{server}-{transport}", max(1, ready))
            received = sum(u.received for u in loop.users)
            disconnected = sum(u.phase == loadgen.CLOSED for u in loop.users)
            loadgen.close_all(loop.users)
    finally:
        servers_mod._command = command  # type: ignore[assignment]
    per = max(1, ready)
    return {
        "server": server,
        "transport": transport,
        "ready": ready,
        "disconnected": disconnected,
        "received": received,
        "rss_before_kib": rss0,
        "joined": (rss_joined - rss0) / per,
        "busy": (rss_busy - rss0) / per,
        "parked": (rss_parked - rss0) / per,
    }


def _pump_for(loop: community_load.Loop, seconds: float) -> None:
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        loop.pump(min(left, 0.05))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="connections (default %(default)s)")
    p.add_argument("--transports", default="json,ws", help="json, ws (default %(default)s)")
    p.add_argument("--room-size", type=int, default=10, help="default %(default)s")
    p.add_argument("--every", type=float, default=1.0, help="seconds between a user's lines")
    p.add_argument("--duration", type=float, default=5.0, help="busy seconds")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ref", default="HEAD", help="git ref of trio_chat, or 'worktree'")
    p.add_argument("--compare", action="append", default=[], help="another ref, side by side")
    p.add_argument("--trace", metavar="DIR", help="tracemalloc growth by file:line into DIR")
    args = p.parse_args(argv)
    loadgen.raise_nofile()
    servers_mod.run_trio_chat_from(args.ref)
    names = ["trio-chat", *(servers_mod.compare_with(ref) for ref in args.compare)]
    if args.trace:
        Path(args.trace).mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for repeat in range(args.repeats):
        for transport in args.transports.split(","):
            for name in names:
                r = measure(name, transport, args)
                results.setdefault((name, transport), []).append(r)
                print(
                    f"[{repeat + 1}/{args.repeats}] {name:<16} {transport:<4} ready {r['ready']}"
                    f" closed {r['disconnected']} received {r['received']}: KiB/conn joined "
                    f"{r['joined']:.1f} busy {r['busy']:.1f} parked {r['parked']:.1f}",
                    flush=True,
                )
    print(
        f"\nmedians of {args.repeats}, {args.n} connections, rooms of {args.room_size}, "
        f"a line per user every {args.every:g} s for {args.duration:g} s"
    )
    print("| server | transport | KiB/conn joined | busy | parked |")
    print("|---|---|---|---|---|")
    for (name, transport), rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("joined", "busy", "parked")}
        print(
            f"| {name} | {transport} | {med['joined']:.1f} | {med['busy']:.1f} | "
            f"{med['parked']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
