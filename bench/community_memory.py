"""What the community load's connections cost the server in memory, and what of.

``bench/conn_memory.py`` measures a busy connection in rooms of 10; the community scenario
(``bench/run.py --scenarios community``) measures more per connection, since its users sit
in Zipf-sized rooms, all of them in ``#lobby`` too, half of them on WebSocket with
``"batch": true``. This runs that community's shape (``bench/community.py``: the same
rooms, members and schedule for the same ``--users``, ``--rooms``, ``--rate``,
``--duration`` and seed) against one ``trio-chat serve --no-db`` from ``--ref``, with all
users in this one process (``community_load.Loop``), and reads the server's VmRSS before
the first connect, once everyone joined (*joined*), at the end of the load (*busy*) and
after ``park_after`` more seconds of quiet (*parked*), per connection.

``--malloc-stats DIR`` runs the server with a handler that writes Python's allocator
statistics (``sys._debugmallocstats()``: pymalloc's arenas, pools and blocks, used and
free) at each phase to ``DIR/community-<phase>.malloc.txt``: what RSS holds that no live
object uses (and, at the last phase, the same again after a full garbage collection:
what is garbage the collector has not looked at yet).

``--trace DIR`` runs the server under ``tracemalloc`` and writes, for each phase, the
growth per connection by allocation site and by the innermost trio-chat line that led to
it (``DIR/community-<phase>.txt``, with the snapshots beside them, ``.tm``). tracemalloc
makes the server some times slower: keep ``--rate`` low enough for it to keep up (the
outboxes of a server that falls behind hold what it could not write yet, and that is
not what a connection keeps).

    python bench/community_memory.py --ref worktree
    python bench/community_memory.py --ref worktree --rate 200 --trace /tmp/cmem

Like the rest of the bench the clients do not import trio-chat.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import community as community_plan
import community_load
import conn_memory
import loadgen
import scenarios
import servers as servers_mod

#: Runs the server with a SIGUSR1 handler that writes ``sys._debugmallocstats()``.
_MALLOC_STATS = """
import os, signal, sys
_count = [0]
def _dump(signum, frame):
    _count[0] += 1
    name = f"snapshot-{_count[0]}.tm"
    with open(name + ".part", "w") as out:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
            _mallinfo()
            if _count[0] == 4:  # the last: what a full collection would free
                import gc
                print(f"\\ngc.collect() found {gc.collect()} unreachable objects; after it:",
                      file=sys.stderr, flush=True)
                sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    os.rename(name + ".part", name)
def _mallinfo():
    # glibc's heap beside pymalloc's arenas (objects over 512 bytes, buffers, C libraries).
    import ctypes
    fields = ["arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
              "uordblks", "fordblks", "keepcost"]
    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in fields]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Info
    info = libc.mallinfo2()
    print(f"\\nglibc heap {info.arena:,} bytes: in use {info.uordblks:,}, free "
          f"{info.fordblks:,}; mmapped {info.hblkhd:,} in {info.hblks} blocks",
          file=sys.stderr, flush=True)
signal.signal(signal.SIGUSR1, _dump)
sys.argv = ["trio-chat", *sys.argv[1:]]
from trio_chat.cli import main
sys.exit(main())
"""


def _wrapped_command(command: list[str], wrapper: str) -> list[str]:
    """``python -m trio_chat.cli ARGS`` -> the same under ``wrapper``."""
    at = command.index("-m")
    return [*command[:at], "-c", wrapper, *command[at + 2 :]]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One run: connect everyone, join, run the schedule, rest; VmRSS at each step."""
    shape = community_plan.CommunityShape(
        users=args.users, rooms=args.rooms, rate=args.rate, duration=args.duration
    )
    the_plan = community_plan.plan(shape)
    users = list(range(the_plan.users))
    # As the community scenario splits its users between 4 processes: half on WebSocket.
    transports = scenarios.community_transports("json", users, 4, mixed=True)
    room_names = [the_plan.room_name(r) for r in range(len(the_plan.members))]
    command = servers_mod._command
    wrapper = conn_memory._TRACED if args.trace else _MALLOC_STATS if args.malloc_stats else None
    if wrapper is not None:
        servers_mod._command = lambda *a, **k: _wrapped_command(command(*a, **k), wrapper)  # type: ignore[assignment]
    dump = args.trace or args.malloc_stats
    try:
        with servers_mod.start_server("trio-chat", ws=True, startup_timeout=120) as srv:
            time.sleep(0.5)
            snapshots = [conn_memory._snapshot(srv, 1)] if dump else []
            rss0 = srv.rss_kb()
            cfg = scenarios.community_load_config(srv, the_plan, users, transports, room_names, 64)
            loop = community_load.Loop(cfg)
            deadline = time.monotonic() + 120 + the_plan.users * 0.02
            loop.connect_all(deadline)
            while not loop.all_ready() and time.monotonic() < deadline:
                loop.pump(0.05)
            ready = sum(u.ready for u in loop.users)
            conn_memory._pump_for(loop, 1.0)
            rss_joined = srv.rss_kb()
            if dump:
                snapshots.append(conn_memory._snapshot(srv, 2))
            start = time.monotonic() + 0.5
            report = loop.run_schedule(start, start + args.duration + 60)
            conn_memory._pump_for(loop, 1.0)  # what is on its way
            rss_busy = srv.rss_kb()
            if dump:
                snapshots.append(conn_memory._snapshot(srv, 3))
            conn_memory._pump_for(loop, conn_memory.PARK_AFTER + (8.0 if args.trace else 1.5))
            rss_parked = srv.rss_kb()
            if dump:
                snapshots.append(conn_memory._snapshot(srv, 4))
            if args.malloc_stats:
                for phase, snap in zip(
                    ("before", "joined", "busy", "parked"), snapshots, strict=True
                ):
                    shutil.copy(snap, Path(args.malloc_stats) / f"community-{phase}.malloc.txt")
            if args.trace:
                conn_memory.write_traces(snapshots, Path(args.trace), "community", max(1, ready))
            received = sum(u.received for u in loop.users)
            disconnected = sum(u.phase == loadgen.CLOSED for u in loop.users)
            loadgen.close_all(loop.users)
    finally:
        servers_mod._command = command  # type: ignore[assignment]
    per = max(1, ready)
    return {
        "ready": ready,
        "disconnected": disconnected,
        "sent": sum(n for _, _, n in report["sent"]),
        "received": received,
        "joined": (rss_joined - rss0) / per,
        "busy": (rss_busy - rss0) / per,
        "parked": (rss_parked - rss0) / per,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--rooms", type=int, default=200)
    p.add_argument("--rate", type=float, default=1000.0, help="messages/s, all users together")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    p.add_argument("--ref", default="HEAD", help="git ref of trio_chat, or 'worktree'")
    p.add_argument("--trace", metavar="DIR", help="tracemalloc growth by file:line into DIR")
    p.add_argument("--malloc-stats", metavar="DIR", help="pymalloc's statistics into DIR")
    args = p.parse_args(argv)
    loadgen.raise_nofile()
    servers_mod.run_trio_chat_from(args.ref)
    for folder in (args.trace, args.malloc_stats):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
    r = measure(args)
    print(
        f"{args.users} users, {args.rooms} rooms, {args.rate:g} messages/s for "
        f"{args.duration:g} s: ready {r['ready']} closed {r['disconnected']} sent {r['sent']} "
        f"received {r['received']}; KiB/conn joined {r['joined']:.1f} busy {r['busy']:.1f} "
        f"parked {r['parked']:.1f}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
