"""Whether a line to a big room holds back lines to other rooms:
``python bench/big_room_delay.py``.

Issue 19: "a message to a 1,000-member room must not add its whole fan-out time to the
latency of messages in other rooms (measure it)". The community scenario's ``--big-room``
measures it among everything else, where its own receivers (a thousand sockets read by the
same few processes that time the small rooms) add lateness of their own. This measures
only that:

* ``trio-chat serve --no-db`` as a subprocess (``servers.start_server``: HEAD, and with
  ``--compare REF`` another commit, each repeat running both in turn);
* ``--members`` drainers in ``#lobby`` (the room everyone joins at login: the big room),
  in a subprocess of their own at nice 10, reading and dropping everything;
* in this process: a sender in ``#lobby``, ``small-a`` and ``small-b`` in ``#small`` alone
  (they ``/part`` ``#lobby``), and a probe that joins ``#lobby`` last (the last receiver
  of every line there, as the independent load generator's probe is);
* ``--rounds`` rounds, ``--gap`` seconds apart, alternately: ``small-a`` says a line to
  ``#small`` *alone*, or *beside* a big line (the sender's line to ``#lobby`` is written
  first, ``small-a``'s right after it). Timed: from ``small-a``'s write to ``small-b``'s
  read (the small room's latency, alone and beside), and from the sender's write to the
  probe's read (the big line's, to its last receiver).

Medians over the repeats of each run's p50 and p90.

    python bench/big_room_delay.py --members 1000 --compare main --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import PIPE

import orjson
import servers as servers_mod
import trio

HERE = Path(__file__).resolve().parent


class Client:
    """One JSON-lines connection; when each line of chat text arrived, by text."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.arrived: dict[str, float] = {}
        self.changed = trio.Event()

    async def send(self, frame: dict[str, object]) -> float:
        data = orjson.dumps(frame) + b"\n"
        sent = time.perf_counter()
        await self.stream.send_all(data)
        return sent

    async def read_forever(self) -> None:
        rest = b""
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                return
            now = time.perf_counter()
            *lines, rest = (rest + data).split(b"\n")
            for line in lines:
                event = orjson.loads(line)
                if event.get("type") in ("message", "join", "leave"):
                    self.arrived[str(event.get("text", event.get("type")))] = now
            self.changed.set()
            self.changed = trio.Event()

    async def until(self, text: str) -> float:
        with trio.move_on_after(30):
            while text not in self.arrived:
                await self.changed.wait()
            return self.arrived[text]
        raise RuntimeError(f"{text!r} did not arrive within 30 s")


async def log_in(port: int, nick: str, nursery: trio.Nursery) -> Client:
    client = Client(await trio.open_tcp_stream("127.0.0.1", port))
    nursery.start_soon(client.read_forever)
    await client.send({"type": "hello", "nick": nick})
    await client.until("join")  # its own join of #lobby
    return client


async def drain(port: int, members: int) -> None:
    """The big room's other members: log in, then read and drop everything."""

    async def member(index: int, ready: Callable[[], None]) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b'{"type":"hello","nick":"drain%d"}\n' % index)
        seen = b""
        while b'"type":"join"' not in seen:
            seen += await stream.receive_some(65536)
        ready()
        while await stream.receive_some(65536):
            pass

    count = [0]

    def ready() -> None:
        count[0] += 1
        if count[0] == members:
            print("ready", flush=True)

    async with trio.open_nursery() as nursery:
        for index in range(members):
            nursery.start_soon(member, index, ready)
            if index % 100 == 99:
                await trio.sleep(0.05)  # within the server's accept backlog


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(port: int, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--drain", str(args.members), "--port", str(port)]
    drainers = await trio.lowlevel.open_process(["nice", "-n", "10", *command], stdout=PIPE)
    try:
        assert drainers.stdout is not None
        said = b""
        with trio.fail_after(120):
            while b"ready" not in said:
                data = await drainers.stdout.receive_some()
                if not data:
                    raise RuntimeError("the drainers did not all log in")
                said += data
        async with trio.open_nursery() as nursery:
            sender = await log_in(port, "big-sender", nursery)
            a = await log_in(port, "small-a", nursery)
            b = await log_in(port, "small-b", nursery)
            for client in (a, b):
                await client.send({"type": "command", "name": "join", "args": "#small"})
                await client.send({"type": "command", "name": "part", "args": "#lobby"})
            probe = await log_in(port, "probe", nursery)
            await b.send({"type": "say", "room": "#small", "text": "settled"})
            await a.until("settled")
            alone: list[float] = []
            beside: list[float] = []
            big: list[float] = []
            for n in range(args.rounds):
                if n % 2:
                    big_sent = await sender.send({"type": "say", "room": "#lobby", "text": f"b{n}"})
                sent = await a.send({"type": "say", "room": "#small", "text": f"s{n}"})
                (beside if n % 2 else alone).append(await b.until(f"s{n}") - sent)
                if n % 2:
                    big.append(await probe.until(f"b{n}") - big_sent)
                await trio.sleep(args.gap)
            nursery.cancel_scope.cancel()
    finally:
        drainers.kill()
        with trio.move_on_after(10):
            await drainers.wait()
    ms = 1000.0
    return {
        "alone_p50": statistics.median(alone) * ms,
        "alone_p90": percentile(alone, 0.9) * ms,
        "beside_p50": statistics.median(beside) * ms,
        "beside_p90": percentile(beside, 0.9) * ms,
        "big_last_p50": statistics.median(big) * ms,
        "big_last_p90": percentile(big, 0.9) * ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000, help="drainers in the big room")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between rounds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", action="append", default=[], help="another git rev")
    parser.add_argument("--drain", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drain:
        trio.run(drain, args.port, args.drain)
        return
    servers_mod.raise_nofile()
    names = ["trio-chat", *(servers_mod.compare_with(ref) for ref in args.compare)]
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names:
            with servers_mod.start_server(name) as server:
                result = trio.run(measure, server.port, args)
            results[name].append(result)
            print(
                f"[{repeat + 1}/{args.repeats}] {name}: "
                + ", ".join(f"{key} {value:.2f}" for key, value in result.items()),
                flush=True,
            )
    print(f"\n{args.members} in the big room; ms, medians of {args.repeats} runs' figures:")
    print(
        "| server | #small alone p50 / p90 | #small beside a big line p50 / p90 "
        "| big line to its last member p50 / p90 |"
    )
    print("|---|---|---|---|")
    for name, runs in results.items():
        med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(
            f"| {name} | {med['alone_p50']:.2f} / {med['alone_p90']:.2f} "
            f"| {med['beside_p50']:.2f} / {med['beside_p90']:.2f} "
            f"| {med['big_last_p50']:.2f} / {med['big_last_p90']:.2f} |"
        )


if __name__ == "__main__":
    main()
