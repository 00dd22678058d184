"""What one node spends on a chat line read from the log, counted by valgrind:
``python bench/broker_receive.py``.

``broker_instructions.py`` counts a whole chat (two nodes and a redis-server), and how
many lines each read of the log brings moves with timing, so its runs of one tree spread
by 10-20%. This counts one node's side alone, with fixed batches, so that a run repeats
to the instruction: a server (no database, the built-ins loaded) whose broker is a
:class:`~trio_chat.broker.redis.RedisBroker` that never talks to Redis, with ``--members``
members in ``#lobby`` whose mailboxes count what they are offered (``--encode``: and
encode it as JSON lines, as the first TCP receiver of a parcel does in a server). Its
reader is handed ``--groups`` groups of 32 chat lines, ``--read`` groups at a time (one
``XREAD``), exactly as the reader hands on what Redis answered; the publisher delivers
each read before the next. ``--own``: the groups are this node's own, said by a member
here one line at a time (``Hub.say``; ``--runs``: a group's lines at a time, through
``Hub.say_lines``, as a server hands on the lines of one read) and read back, the sending
node's cost per line; else another node's, the receiving node's.

Counted twice, with ``--groups`` and twice as many, and the difference divided by the
lines is a line's cost with start-up taken out. ``--compare REV`` counts another
commit's tree too, in the same run. ``--profile N`` instead runs it once, without
valgrind, and prints the top N of a cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from instructions import collected, per_tree

ROOM = "#lobby"
GROUP = 32  # lines in a group (the broker's GROUP_LINES)
TEXT = "x" * 64


async def receive(args: argparse.Namespace) -> None:
    """The counted run (under valgrind from :func:`count`)."""
    from trio_chat import testing
    from trio_chat.broker.log import own_event_prefix, own_line_prefix
    from trio_chat.broker.redis import RedisBroker
    from trio_chat.hub import Pending
    from trio_chat.mailbox import Mailbox, Parcel
    from trio_chat.program import quiet_gc
    from trio_chat.protocol import chat_line
    from trio_chat.testing import local_config, open_test_server
    from trio_chat.wire import JSON_LINES, encoded

    class CountingMailbox(Mailbox):
        """A member here: takes every offer, counts it (and encodes it, ``--encode``)."""

        def __init__(self) -> None:  # no queue, no socket
            self.offered = 0

        def offer(self, parcel: Parcel) -> bool:
            self.offered += parcel.events
            if args.encode:
                encoded(parcel, JSON_LINES)
            return True

        def hang_up(self) -> None:
            pass

    testing.DEFAULT_TIMEOUT = 300.0  # under valgrind a server takes long to start
    testing.START_TIMEOUT = 300.0
    config = local_config(db=None, ws_port=None)
    async with open_test_server(config=config) as test_server:
        server = test_server.server
        hub, publisher = server.hub, server.publisher
        assert publisher is not None
        mailboxes = [CountingMailbox() for _ in range(args.members)]
        sessions = []
        for i, mailbox in enumerate(mailboxes):
            session = hub.attach(f"m{i}", mailbox, address="127.0.0.1:1", transport="bench")
            hub.join(session, ROOM)
            sessions.append(session)
        await publisher.settle()  # the joins went out: the members are the room's receivers
        # A broker that reads what it is handed: as the server makes its own, never run.
        broker = RedisBroker(
            "redis://127.0.0.1:1/0",
            hub,
            publisher.accept,
            deliver_many=publisher.accept_many,
            node="here",
        )
        publisher.attach(broker)
        broker.attach()
        own, own_line = own_event_prefix(broker.node), own_line_prefix(broker.node)
        next_id = hub.last_id + 1
        # Another node's group, made once by its broker as it writes one (in whatever
        # form the tree's writer uses), then sent again with each group's running numbers.
        there = RedisBroker("redis://127.0.0.1:1/0", hub, publisher.accept, node="there")
        lobby = hub.room(ROOM)
        for i in range(GROUP):
            line = chat_line(0, 1.7e9 + i, ROOM, "there", TEXT, "say")
            there.publish(Pending(line, lobby, (), True))
        (unit,) = there._outgoing
        prefix = b'["' + there._payload(unit)[2:3] + b'","there",1,'
        group = there._payload(unit).removeprefix(prefix)
        assert group != there._payload(unit), "the group's start is not as expected"
        quiet_gc()  # as `trio-chat serve` does once started
        for _ in range(0, args.groups, args.read):
            entries: list[tuple[bytes, bytes | None]] = []
            if args.own and args.runs:  # said here a run at a time, as a read's lines are
                for _ in range(args.read):
                    if not hub.say_lines(sessions[0], ROOM, [TEXT] * GROUP):  # (as the
                        for _ in range(GROUP):  # server: a run declined is said line by line)
                            hub.say(sessions[0], ROOM, TEXT)
            elif args.own:  # said here, one line at a time
                for _ in range(args.read * GROUP):
                    hub.say(sessions[0], ROOM, TEXT)
            if args.own:  # then read back
                units = list(broker._outgoing)
                broker._outgoing.clear()
                broker._open_group = None
                for unit in units:
                    payload = broker._payload(unit)
                    next_id += len(unit[2])
                    entries.append((b"%d-0" % (next_id - 1), payload))
            else:  # another node's groups, as its broker appends them
                for _ in range(args.read):
                    seq, next_id = next_id, next_id + GROUP  # (its own running numbers)
                    payload = prefix.replace(b",1,", b",%d," % seq) + group
                    entries.append((b"%d-0" % (next_id - 1), payload))
            broker._read_entries(entries, own, own_line)  # type: ignore[arg-type]
            await publisher.settle()
        lines = args.groups * GROUP
        assert all(m.offered >= lines for m in mailboxes), "a member missed lines"
        # As the server stops: no goodbyes through a broker that is not there.
        publisher.attach(None)
        broker.detach()


def count(tree: Path, args: argparse.Namespace, groups: int) -> int:
    arguments = ["--members", str(args.members), "--groups", str(groups), "--read", str(args.read)]
    arguments += ["--own"] * args.own + ["--runs"] * args.runs + ["--encode"] * args.encode
    return collected(tree, "broker_receive.py", arguments)


def per_line(tree: Path, args: argparse.Namespace) -> float:
    small = count(tree, args, args.groups)
    large = count(tree, args, 2 * args.groups)
    return (large - small) / (args.groups * GROUP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=50, help="room members on this node")
    parser.add_argument("--groups", type=int, default=256, help="groups of the smaller run")
    parser.add_argument("--read", type=int, default=8, help="groups handed on per read")
    parser.add_argument("--own", action="store_true", help="this node's own lines, read back")
    parser.add_argument(
        "--runs", action="store_true", help="with --own: said a group at a time (say_lines)"
    )
    parser.add_argument("--encode", action="store_true", help="members encode as JSON lines")
    parser.add_argument("--compare", action="append", default=[], help="another git rev")
    parser.add_argument("--profile", type=int, default=0, help="instead: top N of a cProfile")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        trio.run(receive, args)
        return
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        trio.run(receive, args)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
        return
    results = per_tree(args.compare, lambda tree: per_line(tree, args))
    base = results[0][1]
    whose = "this node's own" if args.own else "another node's"
    print(
        f"{whose} lines to {args.members} members, {args.read} groups of {GROUP} a read"
        + (", encoded as JSON lines" if args.encode else "")
        + ":"
    )
    for name, instructions in results:
        ratio = instructions / base
        print(f"  {name:>12}: {instructions:>10,.0f} instructions per line ({ratio:.3f}x)")


if __name__ == "__main__":
    main()
