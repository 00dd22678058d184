"""The broker's own cost per chat line, without clients: ``python bench/broker_path.py``.

The fan-out bench (``run.py``) measures whole servers, with sockets to hundreds of
clients, a load generator and a redis-server sharing the machine's cores: its CPU per
delivery moves by tens of percent from run to run here. This measures only the path a
line takes through the broker, in one process: ``--nodes`` in-process servers
(:func:`trio_chat.testing.open_test_server`, no database) share a chat through a private
redis-server, each with ``--members`` users in one room whose mailboxes only count what
they are offered; one user on the first node says ``--lines`` lines, ``--burst`` at a
time (``--runs``: each burst through ``Hub.say_lines``, as a server hands on the lines of
one read, or line by line where it declines; a line refused as busy, when the log is
MAX_WAITING lines behind on a loaded machine, is said again a millisecond later, and
counted), and the run ends once every member of
every node was offered every line. Printed:
the process's CPU per line (all nodes together, as the workers of ``--workers`` would
spend it, without the sockets), and the same with no broker (``--nodes 0``: one plain
server) for reference. ``--profile`` adds the top of a cProfile. The garbage collector is
set as ``trio-chat serve`` sets it (``quiet_gc``: start-up frozen). ``--hop N`` measures
the broker's hop instead: N lines said one at a time, 2 ms apart, each timed from the
``say`` until every member of every node was offered it (p50, p90, p99 per run), and
until the timing task woke up after that (how it was timed before 2026-12-03);
``--parts`` adds where it went, from the task steps of each line (see :func:`hop_parts`).

Runs the ``trio_chat`` it imports (``PYTHONPATH=DIR`` runs another tree, e.g. an older
commit's ``git archive``), so two versions are compared by running it twice.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import free_port, redis_server

from trio_chat import testing
from trio_chat.broker.connection import open_redis_connection
from trio_chat.hub import Hub, ServerBusy, Session
from trio_chat.mailbox import Mailbox, Parcel
from trio_chat.program import quiet_gc
from trio_chat.testing import local_config, open_test_server

ROOM = "#bench"


class CountingMailbox(Mailbox):
    """A member of this node that takes every offer and only counts its events."""

    def __init__(self, node: Counter) -> None:  # no queue, no wire: nothing is kept
        self.node = node

    def offer(self, parcel: Parcel) -> bool:
        self.node.add(parcel.events)
        return True

    def hang_up(self) -> None:
        pass


class Counter:
    """What one node's members were offered; ``done`` is set once it reaches ``target``."""

    def __init__(self) -> None:
        self.offered = 0
        self.offers = 0  # parcels: a bundle of lines is one
        self.target = 0
        self.done = trio.Event()
        #: When ``offered`` reached ``target`` (``time.perf_counter()``).
        self.reached = 0.0

    def add(self, events: int) -> None:
        self.offered += events
        self.offers += 1
        if self.target and self.offered >= self.target and not self.done.is_set():
            self.reached = time.perf_counter()
            self.done.set()


async def until(predicate: Callable[[], bool]) -> None:
    while not predicate():  # noqa: ASYNC110 (the hubs have no event for it)
        await trio.sleep(0.01)


def members(hub: Hub, node: Counter, count: int, prefix: str) -> list[Session]:
    sessions = []
    for i in range(count):
        session = hub.attach(
            f"{prefix}{i}", CountingMailbox(node), address="127.0.0.1:1", transport="bench"
        )
        hub.join(session, ROOM)
        sessions.append(session)
    return sessions


@contextlib.asynccontextmanager
async def open_chat(
    args: argparse.Namespace, url: str | None
) -> AsyncIterator[tuple[list[Hub], list[Counter], Session]]:
    """The nodes' hubs, what each node's members were offered, and the user who speaks,
    once every node knows every member."""
    count = max(1, args.nodes)
    if url is not None:  # each run starts from an empty log (a node catches up on it)
        async with await open_redis_connection(url) as redis:
            await redis.call(b"FLUSHALL")
    async with contextlib.AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(
                open_test_server(
                    config=local_config(db=None, broker=url, ws_port=None), builtins=False
                )
            )
            for _ in range(count)
        ]
        hubs = [s.server.hub for s in servers]
        counters = [Counter() for _ in hubs]
        local = [
            members(h, c, args.members, f"n{i}u")
            for i, (h, c) in enumerate(zip(hubs, counters, strict=True))
        ]
        # Every node must know every member before the lines start.
        expected = args.members * count
        with trio.fail_after(20):
            await until(lambda: all(len(h.rooms[ROOM].members) == expected for h in hubs))
        await trio.sleep(0.2)  # the joins' fan-out is done
        yield hubs, counters, local[0][0]


class Steps(trio.abc.Instrument):
    """The task steps of one timed line (start, end, task name), for ``--parts``."""

    def __init__(self) -> None:
        self.steps: list[tuple[float, float, str]] = []
        self._began = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._began = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps.append((self._began, time.perf_counter(), task.name))


def hop_parts(steps: list[tuple[float, float, str]], start: float, end: float) -> dict[str, float]:
    """Where one line's hop went (seconds), from its task steps: the ``say`` (this task's
    step), until the writer's step began (its wake-up), the writer's step (the append
    made and sent: the send wakes redis-server), until a reader's step began (Redis
    runs the script, answers the blocked ``XREAD`` of each node, and the readers' wake-
    up), the readers' steps until the last offer (each node's read and delivery; the
    nodes share this process), and the rest (the tasks run between them)."""
    said = next((b for a, b, name in steps if name.endswith("hop")), start)
    writing = [(a, b) for a, b, name in steps if name.endswith("_write_forever") and a >= said]
    if not writing:
        return {}
    written = writing[0][1]
    reading = [(a, b) for a, b, name in steps if name.endswith("_read_forever") and a >= written]
    if not reading:
        return {}
    parts = {
        "say": said - start,
        "writer wakes": writing[0][0] - said,
        "writer's step": written - writing[0][0],
        "Redis and the readers' wake-up": reading[0][0] - written,
        "readers' steps": sum(min(b, end) - a for a, b in reading if a < end),
    }
    parts["the rest"] = end - start - sum(parts.values())
    return parts


async def hop(args: argparse.Namespace, url: str | None) -> tuple[list[float], list[float]]:
    """Seconds from saying a line to every member of every node being offered it, for
    ``--hop`` lines said one at a time, 2 ms apart (the broker's hop, at no load); and
    to this task's waking up after that.

    The first is the hop: a member's offer is its write to the socket in a server
    (:meth:`~trio_chat.mailbox.Mailbox.offer` writes at once when nothing waits). The
    second adds what runs before this task gets its turn (the nodes' readers sending
    their next ``XREAD``, the writer reading its reply): how the hop was timed before
    2026-12-03, by up to 0.2 ms more with a broker."""
    async with open_chat(args, url) as (hubs, counters, sender):
        seconds, woken = [], []
        parts: dict[str, list[float]] = {}
        steps = Steps()
        if args.parts:
            trio.lowlevel.add_instrument(steps)
        with trio.fail_after(120):
            for _ in range(args.hop):
                for counter in counters:
                    counter.done = trio.Event()
                    counter.target = counter.offered + args.members
                steps.steps.clear()
                start = time.perf_counter()
                hubs[0].say(sender, ROOM, "x" * 64)
                for counter in counters:
                    await counter.done.wait()
                woken.append(time.perf_counter() - start)
                reached = max(c.reached for c in counters)
                seconds.append(reached - start)
                for name, value in hop_parts(steps.steps, start, reached).items():
                    parts.setdefault(name, []).append(value)
                await trio.sleep(0.002)
        if args.parts:
            trio.lowlevel.remove_instrument(steps)
            print(
                "  medians: "
                + ", ".join(f"{k} {sorted(v)[len(v) // 2] * 1e3:.3f}" for k, v in parts.items())
                + " ms"
            )
        return seconds, woken


async def measure(args: argparse.Namespace, url: str | None) -> dict[str, float]:
    async with open_chat(args, url) as (hubs, counters, sender):
        for counter in counters:
            counter.target = counter.offered + args.lines * args.members
        offers = sum(c.offers for c in counters)
        text = "x" * 64
        quiet_gc()  # as `trio-chat serve` does once started
        profile = cProfile.Profile() if args.profile else None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profile is not None:
            profile.enable()
        sent = busy = 0
        with trio.fail_after(120):
            while sent < args.lines:
                burst = min(args.burst, args.lines - sent)
                if args.runs and hubs[0].say_lines(sender, ROOM, [text] * burst):
                    sent += burst
                    await trio.lowlevel.checkpoint()
                    continue
                for _ in range(burst):
                    try:
                        hubs[0].say(sender, ROOM, text)
                    except ServerBusy:  # the log is MAX_WAITING lines behind: wait a bit
                        busy += 1
                        await trio.sleep(0.001)
                        break
                    sent += 1
                await trio.lowlevel.checkpoint()
            for counter in counters:
                await counter.done.wait()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        if profile is not None:
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
        offers = sum(c.offers for c in counters) - offers
        return {
            "cpu_us_per_line": cpu / args.lines * 1e6,
            "wall_s": wall,
            "lines_per_offer": args.lines * args.members * len(hubs) / offers,
            "busy": busy,
        }


def _quantiles(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    at = {q: ordered[min(len(ordered) - 1, int(len(ordered) * q))] for q in (0.5, 0.9, 0.99)}
    return ", ".join(f"p{q * 100:g} {v * 1e3:.3f} ms" for q, v in at.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2, help="0: one server, no broker")
    parser.add_argument("--members", type=int, default=50, help="room members per node")
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--burst", type=int, default=64, help="lines said per scheduling round")
    parser.add_argument(
        "--runs", action="store_true", help="each burst said as a run (Hub.say_lines)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, help="print this many cProfile rows")
    parser.add_argument(
        "--hop", type=int, default=0, help="instead: the latency of this many lines, one at a time"
    )
    parser.add_argument(
        "--parts", action="store_true", help="with --hop: where the hop went (task steps)"
    )
    # (How bench/broker_instructions.py runs it under callgrind: as without it.)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:  # under valgrind, a node takes more than a test's 5 s to start
        testing.DEFAULT_TIMEOUT = 300.0
        testing.START_TIMEOUT = 300.0  # (its start, too: beyond 20 s under valgrind here)
    results: list[dict[str, float]] = []
    with contextlib.ExitStack() as stack:
        url = None
        if args.nodes:
            if shutil.which("redis-server") is None:
                sys.exit("redis-server is not installed")
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            port = free_port()
            stack.enter_context(redis_server(workdir, port))
            url = f"redis://127.0.0.1:{port}/0"
        if args.hop:
            for _ in range(args.repeats):
                seconds, woken = trio.run(hop, args, url)
                print(
                    f"  offered: {_quantiles(seconds)}; the timing task woken: {_quantiles(woken)}"
                )
            return
        for _ in range(args.repeats):
            result: dict[str, Any] = trio.run(measure, args, url)
            results.append(result)
            print(
                f"  {result['cpu_us_per_line']:.1f} us CPU per line, {result['wall_s']:.2f} s, "
                f"{result['lines_per_offer']:.1f} lines per offer (bundles)"
                + (f", refused as busy {result['busy']} times" if result["busy"] else "")
            )
    cpu = sorted(r["cpu_us_per_line"] for r in results)[len(results) // 2]
    print(f"nodes={args.nodes} members/node={args.members}: median {cpu:.1f} us CPU per line")


if __name__ == "__main__":
    main()
