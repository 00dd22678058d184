"""Instructions per login after a restart, counted by valgrind (``login_instructions.py``).

The storm scenario (``run.py --scenarios storm``) measures CPU time per login, which moves
by 10-30% from run to run on a shared 2-core machine, more than most changes to the login
path. This counts instead, as ``instructions.py`` does for a chat line: a fixed storm in
one process under ``valgrind --tool=callgrind``, whose instruction count does not depend on
what else the machine does (the garbage collector set as ``trio-chat serve`` sets it).

The storm: an in-process server with a store (``trio_chat.testing``'s in-memory SQLite)
where ``#lobby`` holds 20 lines; then ``--users`` users log in over TCP JSON lines,
``--wave`` of them at once, each as the storm's users do (``bench/storm_load.py``):
``hello``, then after the ``welcome`` a ``history`` of ``#lobby`` after its 10th line and a
``join`` of its room (rooms of ``--room-size`` users: every join is announced to the room,
which is at most ``quiet_room_size``), and once its own ``join`` came a ``history`` of that
room. User ``u`` of ``R`` rooms joins ``#s{u % R}``, as in the storm: the users of a room
come back among everyone else's, so only the first joins of a room (those of the first
wave) find it without its latest lines in memory and wait for them to be read. Run with
``--users`` and twice as many (and twice the rooms, so rooms are the same size), the
difference divided by ``--users`` is the cost of one login with start-up, imports and the
history's filling taken out. The clients' few lines count too, the same
whichever tree runs.

``--churn`` counts the ``churn`` scenario's connections instead (``bench/loadgen.py``):
each connects, says ``hello``, and after the ``welcome`` says one line and ``quit``, then
reads until the server closes; ``--wave`` of them at once (4, as the scenario's workers).
Its connections/s are set by the CPU per connection, which moves with the machine's load
as the storm's does.

``--compare REV`` counts another commit's tree too, in the same run (``git archive``).
The count is not quite fixed: what the server does in the storm depends a little on timing
(a connection parked or not, a pass holding one join or two), which valgrind's slowdown
stretches: two counts of one tree differed by 0.6-1.7% (50 against 100 users) and by
0.4-1.3% (200 against 400). ``--repeats`` reports the median of several.
Instructions are not time (a system call counts as the few instructions around it, a
cache miss once): a figure here says where work was added or removed, the storm what it
is worth.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from instructions import collected, per_tree

HISTORY = 20


def patient_start() -> None:
    """Give the server under valgrind time to start: ``open_test_server`` allows it
    ``DEFAULT_TIMEOUT`` (5 s), which a valgrind run on a loaded machine exceeded (the
    counted run then failed). Start-up is not what is counted (see above)."""
    import trio_chat.testing

    trio_chat.testing.DEFAULT_TIMEOUT = max(trio_chat.testing.DEFAULT_TIMEOUT, 300.0)


async def storm(users: int, room_size: int, wave: int) -> None:
    """The counted storm (run under valgrind by :func:`count`)."""
    import trio

    from trio_chat.program import quiet_gc
    from trio_chat.testing import local_config, open_test_server

    patient_start()

    async def lines_of(stream: trio.SocketStream, buffer: list[bytes]) -> list[dict]:
        data = await stream.receive_some(65536)
        if not data:
            raise RuntimeError("the server closed a user")
        *lines, buffer[0] = (buffer[0] + data).split(b"\n")
        return [json.loads(line) for line in lines if line]

    async def send(stream: trio.SocketStream, frame: dict) -> None:
        await stream.send_all(json.dumps(frame).encode() + b"\n")

    async def fill(port: int) -> int:
        """The lines said before the restart; the id of the 10th."""
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await send(stream, {"type": "hello", "nick": "filler"})
        for n in range(HISTORY):
            await send(stream, {"type": "say", "text": f"before the restart {n}"})
        ids: list[int] = []
        buffer = [b""]
        while len(ids) < HISTORY:
            for event in await lines_of(stream, buffer):
                if event.get("type") == "message":
                    ids.append(event["id"])
        await stream.aclose()
        return ids[HISTORY // 2 - 1]

    rooms = max(1, users // room_size)

    async def come_back(port: int, user: int, after: int, back: list[trio.SocketStream]) -> None:
        nick, room = f"u{user}", f"#s{user % rooms}"
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await send(stream, {"type": "hello", "nick": nick})
        buffer = [b""]
        gaps = {"L", "R"}
        while gaps:
            for event in await lines_of(stream, buffer):
                kind = event.get("type")
                if kind == "welcome":
                    await send(
                        stream, {"type": "history", "room": "#lobby", "after": after, "ref": "L"}
                    )
                    await send(stream, {"type": "command", "name": "join", "args": room})
                elif kind == "join" and event.get("nick") == nick and event["room"] == room:
                    await send(stream, {"type": "history", "room": room, "after": 0, "ref": "R"})
                elif kind == "history" and event.get("ref") in gaps:
                    gaps.discard(event["ref"])
                elif kind in ("error", "bye"):
                    raise RuntimeError(f"{nick}: {event}")
        back.append(stream)

    with trio.fail_after(1200):
        # Under valgrind a hello can come later than the usual sniff_delay: the server
        # would take the client for a person at a prompt (one more path to count).
        async with open_test_server(config=local_config(sniff_delay=10.0)) as server:
            port = server.address("tcp")[1]
            quiet_gc()  # as `trio-chat serve` does once started (see instructions.py)
            after = await fill(port)
            back: list[trio.SocketStream] = []
            for first in range(0, users, wave):
                async with trio.open_nursery() as nursery:
                    for user in range(first, min(users, first + wave)):
                        nursery.start_soon(come_back, port, user, after, back)
            for stream in back:
                await stream.aclose()


async def churn(users: int, wave: int) -> None:
    """The counted churn (``--churn``): ``users`` connections, ``wave`` at a time, each
    as the churn scenario's (``loadgen._one_churn``)."""
    import trio

    from trio_chat.program import quiet_gc
    from trio_chat.testing import local_config, open_test_server

    patient_start()

    async def one(port: int, n: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        hello = {"type": "hello", "nick": f"c{n}"}
        await stream.send_all(json.dumps(hello).encode() + b"\n")
        received = b""
        while b'"type":"welcome"' not in received:
            data = await stream.receive_some(65536)
            if not data:
                raise RuntimeError(f"c{n}: closed before the welcome")
            received = received[-64:] + data
        said = {"type": "say", "text": f"hello from c{n}"}
        await stream.send_all(json.dumps(said).encode() + b'\n{"type":"quit"}\n')
        while await stream.receive_some(65536):
            pass
        await stream.aclose()

    with trio.fail_after(1200):
        async with open_test_server(config=local_config(sniff_delay=10.0)) as server:
            port = server.address("tcp")[1]
            quiet_gc()
            for first in range(0, users, wave):
                async with trio.open_nursery() as nursery:
                    for n in range(first, min(users, first + wave)):
                        nursery.start_soon(one, port, n)


def count(tree: Path, users: int, args: argparse.Namespace) -> int:
    """Instructions the whole storm (or churn) took, with ``tree``'s ``trio_chat``."""
    arguments = ["--users", str(users), "--room-size", str(args.room_size)]
    arguments += ["--wave", str(args.wave)] + (["--churn"] if args.churn else [])
    return collected(tree, "login_instructions.py", arguments)


def per_login(tree: Path, args: argparse.Namespace) -> float:
    """The median over ``--repeats`` of the two runs' difference per user (see above)."""
    each = []
    for _ in range(args.repeats):
        small = count(tree, args.users, args)
        large = count(tree, 2 * args.users, args)
        each.append((large - small) / args.users)
    return statistics.median(each)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="users of the smaller run")
    parser.add_argument("--room-size", type=int, default=25, help="users per room")
    parser.add_argument("--wave", type=int, help="users at once (storm 25, churn 4)")
    parser.add_argument("--churn", action="store_true", help="count churn connections")
    parser.add_argument("--compare", action="append", default=[], help="another git rev")
    parser.add_argument(
        "--repeats", type=int, default=1, help="counts per tree, the median reported"
    )
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.wave is None:
        args.wave = 4 if args.churn else 25
    if args.inner:
        import trio

        if args.churn:
            trio.run(churn, args.users, args.wave)
        else:
            trio.run(storm, args.users, args.room_size, args.wave)
        return
    results = per_tree(args.compare, lambda tree: per_login(tree, args))
    base = results[0][1]
    if args.churn:
        print(f"churn connections (hello, welcome, a line, quit), {args.wave} at once:")
    else:
        print(f"logins after a restart, rooms of {args.room_size}, {args.wave} at once:")
    what = "connection" if args.churn else "login"
    for name, instructions in results:
        print(
            f"  {name:>12}: {instructions:>12,.0f} instructions per {what}"
            f" ({instructions / base:.3f}x)"
        )


if __name__ == "__main__":
    main()
