"""A server stopped by cancelling it (a crash, a test's nursery ending), not by
``shutdown()``, still closes every connection's socket: its clients see the end at once,
not a minute later through their keepalive.

Cancelled while a connection is parked (no task of its own: the parking lot watches its
socket), and cancelled just after a second connection of a user logged in, while the
history of that user's rooms is being read, with the client already talking.
"""

from __future__ import annotations

import json

import pytest
import trio

from trio_chat.server import ChatServer
from trio_chat.testing import local_config

PARK_AFTER = 0.05
#: Seconds the client may wait for its socket to end once the server is cancelled.
END_WITHIN = 2.0


async def read_until_end(stream: trio.SocketStream) -> None:
    """Read (and drop) everything until EOF or a reset."""
    try:
        while await stream.receive_some(65536):
            pass
    except trio.BrokenResourceError:
        pass  # a reset: unread bytes were dropped at the server's end


async def log_in(stream: trio.SocketStream, nick: str, password: str | None = None) -> None:
    """Say hello and read until the welcome."""
    hello = {"type": "hello", "nick": nick, **({"password": password} if password else {})}
    await stream.send_all(json.dumps(hello).encode() + b"\n")
    await read_until(stream, b'"welcome"')


async def read_until(stream: trio.SocketStream, needle: bytes) -> None:
    received = b""
    with trio.fail_after(5):
        while needle not in received:
            data = await stream.receive_some(65536)
            assert data, "closed before the welcome"
            received += data


@pytest.mark.parametrize("when", ["parked", "reading history"])
async def test_a_cancelled_server_closes_every_socket(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    chat = ChatServer(local_config(ws_port=None, park_after=PARK_AFTER))
    reading_history = trio.Event()
    if when == "reading history":
        # The history of a user's rooms for its new connection, read as slowly as a busy
        # store makes it: the server is cancelled in the middle of it.
        async def slow_after_attach(*args: object) -> None:
            reading_history.set()
            await trio.sleep_forever()

        monkeypatch.setattr(chat, "after_attach", slow_after_attach)
    server_scope = trio.CancelScope()
    stopped = trio.Event()

    async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            with server_scope:
                await chat.serve(task_status=task_status)
        finally:
            stopped.set()

    (address,) = await nursery.start(serve)
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    first = await trio.open_tcp_stream(host, int(port))
    stream = await trio.open_tcp_stream(host, int(port))
    async with first, stream:
        await log_in(first if when != "parked" else stream, "alice")
        if when == "parked":
            with trio.fail_after(5):
                while len(chat.parking) != 1:  # noqa: ASYNC110
                    await trio.sleep(0.01)
        else:
            command = {"type": "command", "name": "register", "args": "pass-word-1"}
            await first.send_all(json.dumps(command).encode() + b"\n")
            await read_until(first, b"registered")
            await log_in(stream, "alice", "pass-word-1")  # a second connection of alice
            with trio.fail_after(5):
                await reading_history.wait()
            # What a client says right after its welcome (its /help, /who), unread.
            await stream.send_all(b'{"type":"ping","token":"t"}\n' * 3)
        server_scope.cancel()
        with trio.fail_after(5):
            await stopped.wait()
        with trio.fail_after(END_WITHIN):
            await read_until_end(stream)
