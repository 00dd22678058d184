"""A logged-in connection's tasks: one per busy connection, a writer only while a backlog
lasts (trio_chat/transports/resident.py), over real sockets.

The tasks are counted in the server's own task tree, by the coroutine each runs.
"""

from __future__ import annotations

import json
import socket
from collections import Counter

import pytest
import trio
import trio.testing
from test_parking import LotSteps, read_messages

from trio_chat.protocol import ClientFrame, Say, SayLines
from trio_chat.server import ChatServer
from trio_chat.testing import local_config, open_client, open_test_server, stalled_client
from trio_chat.transports import resident as resident_module
from trio_chat.transports.resident import Resident
from trio_chat.users import Session

#: Long enough that no connection parks during a test: the busy case.
NO_PARKING = 600.0


def connection_tasks() -> Counter[str]:
    """How many tasks run each of the Resident's coroutines now (``run``: a spell,
    ``_write``: a writer)."""
    counts: Counter[str] = Counter()
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        code = getattr(task.coro, "cr_code", None)
        if code is not None and code.co_qualname.startswith("Resident."):
            counts[code.co_qualname.removeprefix("Resident.")] += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return counts


async def logged_in(server: ChatServer, nick: str) -> None:
    """Until ``nick`` is a user of the server (a raw client's hello was handled)."""
    with trio.fail_after(5):
        while server.hub.find(nick) is None:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def writers_gone(server: ChatServer) -> None:
    """Until no writer task runs (bounded)."""
    with trio.fail_after(5):
        while connection_tasks()["_write"]:
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(0.01)


async def test_a_busy_connection_has_one_task() -> None:
    async with open_test_server(config=local_config(park_after=NO_PARKING)) as chat:
        async with (
            open_client(chat, "tcp1") as tcp1,
            open_client(chat, "tcp2") as tcp2,
            open_client(chat, "ws1", websocket=True) as ws1,
            open_client(chat, "ws2", websocket=True, batch=True) as ws2,
        ):
            clients = (tcp1, tcp2, ws1, ws2)
            for n, sender in enumerate(clients * 3):
                await sender.say(f"line {n}")
                for client in clients:
                    assert (await client.expect("message")).text == f"line {n}"
            await trio.testing.wait_all_tasks_blocked()
            # Each reads and is written to, and none parked: a spell each, no writers.
            assert len(chat.server.parking) == 0
            assert connection_tasks() == Counter({"run": 4})


async def test_a_backlog_gets_a_writer_until_it_is_written() -> None:
    total, text = 300, "z" * 2000  # 600 KB: far more than the socket buffers hold
    async with open_test_server(config=local_config(park_after=NO_PARKING)) as chat:
        with stalled_client(chat, "slow") as slow:
            async with open_client(chat, "alice") as alice:
                await logged_in(chat.server, "slow")
                for n in range(total):  # slow reads nothing meanwhile
                    await alice.say(f"{n} {text}")
                    await alice.expect("message")
                # slow's socket is full and the rest queued: a writer waits to write it.
                await trio.testing.wait_all_tasks_blocked()
                assert connection_tasks() == Counter({"run": 2, "_write": 1})
                slow.setblocking(False)
                got = await read_messages(slow, total)
                assert got == [f"{n} {text}" for n in range(total)]
                await writers_gone(chat.server)  # all written: the writer ended
                # And the next backlog starts one again.
                await alice.say("after")
                assert await read_messages(slow, 1) == ["after"]
                assert connection_tasks()["run"] == 2


async def test_a_write_that_takes_too_long_ends_the_connection_alone() -> None:
    config = local_config(park_after=NO_PARKING, send_timeout=0.3)
    async with open_test_server(config=config) as chat:
        with stalled_client(chat, "slow") as slow:
            async with open_client(chat, "alice") as alice:
                await logged_in(chat.server, "slow")
                session = chat.server.hub.find("slow")
                assert session is not None
                mailbox = session.devices[0].mailbox
                # Far more than slow's socket takes, so that its writer waits on a full
                # socket (a little left over might still go out as the kernel frees room).
                n = 0
                while mailbox.unsent_bytes < 200_000 and not mailbox.closed:
                    n += 1
                    assert n < 2000, "slow's socket never filled"
                    await alice.say(f"{n} " + "z" * 2000)
                    await alice.expect("message")
                # Dropped while alice still talked (a loaded machine: a turn of the loop
                # took longer than send_timeout), her expect of a message skipped the leave.
                left = [e for e in alice.history if e.TYPE == "leave" and e.nick == "slow"]
                leave = left[0] if left else await alice.expect("leave", lambda e: e.nick == "slow")
                assert leave.reason == "write timed out"
                timeouts = chat.server.metrics.value(
                    "trio_chat_disconnects_total", reason="write_timeout"
                )
                assert timeouts == 1
                await writers_gone(chat.server)
                await alice.say("still here")
                assert (await alice.expect("message")).text == "still here"
        slow.close()


async def test_a_closed_session_gets_what_was_queued_then_its_bye() -> None:
    total, text = 200, "q" * 2000
    async with open_test_server(config=local_config(park_after=NO_PARKING)) as chat:
        with stalled_client(chat, "slow") as slow:
            async with open_client(chat, "alice") as alice:
                await logged_in(chat.server, "slow")
                for n in range(total):
                    await alice.say(f"{n} {text}")
                    await alice.expect("message")
                await trio.testing.wait_all_tasks_blocked()
                assert connection_tasks()["_write"] == 1  # a backlog being written
                session = chat.server.hub.find("slow")
                assert session is not None
                session.close("kicked", "bye now")
                slow.setblocking(False)
                events = [json.loads(line) for line in (await read_until_closed(slow)).splitlines()]
                texts = [e["text"] for e in events if e["type"] == "message"]
                assert texts == [f"{n} {text}" for n in range(total)]
                assert events[-1]["type"] == "bye" and events[-1]["text"] == "bye now"
                await writers_gone(chat.server)


async def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    with trio.fail_after(5):
        while True:
            await trio.lowlevel.wait_readable(sock)
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk


async def test_a_connection_that_fails_ends_alone_and_the_server_serves_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with open_test_server(config=local_config(park_after=NO_PARKING)) as chat:
        handle = chat.server.handle

        async def failing_for_victim(session: Session, frame: ClientFrame) -> None:
            if session.nick == "victim":
                raise RuntimeError("a bug in handling this frame")
            await handle(session, frame)

        say_run = chat.server.say_run

        def failing_run_for_victim(session: Session, frames: list[Say]) -> None:
            if session.nick == "victim":
                raise RuntimeError("a bug in handling these frames")
            say_run(session, frames)

        monkeypatch.setattr(chat.server, "handle", failing_for_victim)
        monkeypatch.setattr(chat.server, "say_run", failing_run_for_victim)  # a plain say's way
        async with open_client(chat, "bob") as bob, open_client(chat, "victim") as victim:
            await bob.expect("join", lambda e: e.nick == "victim")
            await victim.say("this fails")
            await bob.expect("leave", lambda e: e.nick == "victim")
            assert await victim.closed()
            await bob.say("still served")
            assert (await bob.expect("message")).text == "still served"
            async with open_client(chat, "carol") as carol:
                await carol.say("and new users too")
                assert (await carol.expect("message")).text == "and new users too"


def reading_scope_now() -> trio.CancelScope | None:
    """The reading scope of the connection the current task serves (a spell's task runs
    ``Resident.run``)."""
    frame = trio.lowlevel.current_task().coro.cr_frame
    assert frame is not None and frame.f_code.co_qualname == "Resident.run"
    resident: Resident = frame.f_locals["self"]
    return resident._reading


async def test_plain_lines_are_said_with_no_cancel_scope_and_commands_within_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read of plain says that flood control lets go on at once awaits nothing, so it
    needs no scope for a hang-up to cancel; a command may wait (a plugin's handler), and
    a hang-up must be able to stop it."""
    async with open_test_server(config=local_config(park_after=NO_PARKING)) as chat:
        server = chat.server
        seen: list[tuple[str, bool]] = []
        say_run, handle = server.say_run, server.handle

        def spy_say_run(session: Session, lines: SayLines) -> None:
            seen.append(("say", reading_scope_now() is not None))
            say_run(session, lines)

        async def spy_handle(session: Session, frame: ClientFrame) -> None:
            seen.append((type(frame).__name__, reading_scope_now() is not None))
            await handle(session, frame)

        async with open_client(chat, "alice") as alice:
            await alice.expect("join", lambda e: e.nick == "alice")
            monkeypatch.setattr(server, "say_run", spy_say_run)
            monkeypatch.setattr(server, "handle", spy_handle)
            await alice.say("one")
            assert (await alice.expect("message")).text == "one"
            await alice.command("/me waves")
            await alice.expect("message", lambda e: e.text == "waves")
            await alice.say("two")
            assert (await alice.expect("message")).text == "two"
        assert seen == [("say", False), ("Command", True), ("say", False)]


@pytest.mark.parametrize("busy", [True, False], ids=["busy", "slow"])
async def test_a_busy_reader_reads_once_a_line_and_is_woken_by_trios_epoll(
    monkeypatch: pytest.MonkeyPatch, busy: bool
) -> None:
    """A client saying lines a few milliseconds apart: its socket is read once a line,
    when the line has come, not tried again before the next wait (it would almost never
    have more yet), and trio's epoll wakes its reader, not the lot's task. A client whose
    lines come further apart (made so here by ``BUSY_WAIT``) is read once more a line
    (nothing yet) and waits in the lot's set, which keeps less memory meanwhile. A
    client at full speed is read again at once (its lines all arrive)."""
    monkeypatch.setattr(resident_module, "BUSY_WAIT", 60.0 if busy else 0.0)
    reads: list[bytes | None] = []
    read_nowait = resident_module.read_nowait

    def counted(fd: int) -> bytes | None:
        data = read_nowait(fd)
        reads.append(data)
        return data

    lot_steps = LotSteps()
    async with open_test_server(config=local_config(park_after=NO_PARKING)) as chat:
        async with open_client(chat, "alice") as alice:
            await alice.expect("join", lambda e: e.nick == "alice")
            for warm_up in ("first", "second"):  # (the first resumes it: it parked)
                await alice.say(warm_up)
                await alice.expect("message")
            with monkeypatch.context() as patch:
                patch.setattr(resident_module, "read_nowait", counted)
                trio.lowlevel.add_instrument(lot_steps)
                try:
                    for n in range(10):
                        await alice.say(f"line {n}")
                        assert (await alice.expect("message")).text == f"line {n}"
                finally:
                    trio.lowlevel.remove_instrument(lot_steps)
            if busy:
                assert len(reads) == 10 and None not in reads
                assert lot_steps.steps == 0
            else:
                # Each line read after the wait, then a read of nothing before the next.
                assert len(reads) == 20 and reads[1::2] == [None] * 10 and all(reads[::2])
                assert lot_steps.steps >= 10
            burst = b"".join(b'{"type":"say","text":"burst %d"}\n' % n for n in range(20))
            for start in range(0, len(burst), 200):  # lines cut across writes
                await alice.stream.send_all(burst[start : start + 200])
            for n in range(20):
                assert (await alice.expect("message")).text == f"burst {n}"


async def test_a_hang_up_while_lines_are_said_stops_the_reading() -> None:
    """The server ends a connection while its read's lines are being said (no scope
    around that to cancel): the reading stops there, the connection gets its bye."""
    async with open_test_server(config=local_config(park_after=NO_PARKING)) as chat:
        server = chat.server
        said: list[list[str]] = []
        say_run = server.say_run

        def hanging_up(session: Session, lines: SayLines) -> None:
            said.append(list(lines.texts))
            say_run(session, lines)
            if "bye now" in lines.texts:
                session.close("kicked", "that was the last line")

        server.say_run = hanging_up  # type: ignore[method-assign]
        async with open_client(chat, "bob") as bob:
            await bob.expect("join", lambda e: e.nick == "bob")
            await bob.say("hello")
            await bob.expect("message")
            await bob.send_raw(b'{"type":"say","text":"bye now"}\n')
            bye = await bob.expect("bye")
            assert (bye.code, bye.text) == ("kicked", "that was the last line")
            assert await bob.closed()
        assert said == [["hello"], ["bye now"]]
