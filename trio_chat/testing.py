"""Helpers for testing trio-chat and its plugins over real sockets.

Plugin authors use it the way pytest plugin authors use ``pytester``::

    from trio_chat.testing import open_test_server, open_client

    async def test_roll():
        async with open_test_server(my_plugin) as chat, open_client(chat, "alice") as alice:
            await alice.command("/roll 2d6")
            event = await alice.expect("message")
            assert "rolled" in event.text

Everything listens on 127.0.0.1 with free ports and every wait is bounded by a timeout, so
a broken server fails a test instead of hanging it. ``pytest_plugins = ["trio_chat.testing"]``
also gives the ``chat_server`` fixture (a server with the built-in commands only).
"""

from __future__ import annotations

import collections
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from typing import Any

import trio
import trio_websocket

from .config import ServerConfig
from .framing import LineBuffer
from .protocol import ServerEvent, decode_server_event
from .server import ChatServer
from .textmode import NICK_PROMPT
from .transports.streams import read_line

#: Seconds any single wait in these helpers may take before the test fails.
DEFAULT_TIMEOUT = 5.0
_PROMPT = NICK_PROMPT.encode()

#: Seconds a test server may take to start: more than one wait, since it opens its database
#: and listeners and, with a broker, imports the Redis client (``coredis``: 3-4 s on a
#: loaded 2-core machine, where the first broker test of a run failed at 5 s) and connects.
START_TIMEOUT = 20.0


@dataclass
class TestServer:
    """A running in-process server and the addresses it bound."""

    __test__ = False  # not a pytest test class

    server: ChatServer
    addresses: list[str]

    def address(self, scheme: str = "tcp") -> tuple[str, int]:
        """``(host, port)`` of the ``tcp`` or ``ws`` listener (``tls``/``wss`` with TLS)."""
        schemes = {"tcp": ("tcp", "tls"), "ws": ("ws", "wss")}.get(scheme, (scheme,))
        for address in self.addresses:
            if address.split("://", 1)[0] in schemes:
                host, _, port = address.split("://", 1)[1].rpartition(":")
                return host.strip("[]"), int(port)
        raise LookupError(f"the server has no {scheme} listener")

    @property
    def ws_url(self) -> str:
        host, port = self.address("ws")
        scheme = "wss" if self.server.ssl_context is not None else "ws"
        return f"{scheme}://{host}:{port}/"


def local_config(**overrides: Any) -> ServerConfig:
    """A config for tests: loopback, free ports, a throwaway in-memory database, no installed
    entry-point plugins, and flood and per-host limits out of the way."""
    base = ServerConfig(
        host="127.0.0.1",
        port=0,
        ws_port=0,
        entry_points=False,
        db=":memory:",
        db_sync_full=False,
        # Tests connect many clients from one host and send in bursts; the limits have
        # tests of their own.
        flood_rate=10_000.0,
        flood_burst=10_000,
        max_connections_per_host=10_000,
    )
    return replace(base, **overrides)


@asynccontextmanager
async def open_test_server(
    *plugins: object, config: ServerConfig | None = None, builtins: bool = True
) -> AsyncIterator[TestServer]:
    """Start a server with ``plugins`` registered; stop it gracefully on exit."""
    server = ChatServer(config or local_config(), plugins=plugins, builtins=builtins)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(START_TIMEOUT):
            addresses = await nursery.start(server.serve)
        try:
            yield TestServer(server, addresses)
        finally:
            server.shutdown()


class ChatClient:
    """A minimal protocol client for tests: send frames, wait for the events you expect."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.nick: str | None = None
        #: Every event received so far, in order.
        self.history: list[ServerEvent] = []

    async def send_raw(self, data: bytes | str) -> None:
        raise NotImplementedError

    async def _receive_one(self) -> ServerEvent | None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one frame given as a dict, e.g. ``{"type": "say", "text": "hi"}``."""
        await self.send_raw(json.dumps(frame))

    async def say(self, text: str, room: str | None = None) -> None:
        frame: dict[str, Any] = {"type": "say", "text": text}
        if room is not None:
            frame["room"] = room
        await self.send(frame)

    async def command(self, line: str) -> None:
        """Send a command written as typed: ``"/nick bob"``."""
        name, _, args = line.lstrip("/").partition(" ")
        await self.send({"type": "command", "name": name, "args": args})

    async def join(self, room: str) -> None:
        """``/join room``, and wait until the server says this client is in it (the info
        answering the command, which comes after the room's join and history)."""
        await self.command(f"/join {room}")
        await self.expect("info", lambda e: e.data and e.data.get("room") == room)

    async def receive(self) -> ServerEvent:
        """The next event; fails the test if none comes within the timeout or the server closed."""
        with trio.fail_after(self.timeout):
            event = await self._receive_one()
        if event is None:
            raise ConnectionError("the server closed the connection")
        self.history.append(event)
        return event

    async def expect(self, kind: str, predicate: Callable[[Any], bool] | None = None) -> Any:
        """Skip events until one of type ``kind`` (matching ``predicate``) arrives; return it."""
        with trio.fail_after(self.timeout):
            while True:
                event = await self.receive()
                if event.TYPE == kind and (predicate is None or predicate(event)):
                    return event

    async def login(self, nick: str, **hello: Any) -> Any:
        """Send ``hello`` (with any extra ``hello`` fields) and wait for ``welcome``."""
        await self.send({"type": "hello", "nick": nick, **hello})
        while True:
            event = await self.receive()
            if event.TYPE == "welcome":
                self.nick = event.nick  # type: ignore[attr-defined]
                return event
            if event.TYPE == "error":
                raise ValueError(f"login refused: {event.text}")  # type: ignore[attr-defined]

    async def closed(self) -> bool:
        """Wait (bounded) until the server closes the connection; True if it did."""
        with trio.move_on_after(self.timeout):
            while await self._receive_one() is not None:
                pass
            return True
        return False


class TcpChatClient(ChatClient):
    """JSON lines over TCP."""

    def __init__(self, stream: trio.abc.Stream, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(timeout)
        self.stream = stream
        self._lines = LineBuffer(1 << 20)
        self._first_line = True

    async def send_raw(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        await self.stream.send_all(raw if raw.endswith(b"\n") else raw + b"\n")

    async def _receive_one(self) -> ServerEvent | None:
        line = await read_line(self.stream, self._lines)
        if self._first_line and isinstance(line, bytes) and is_prompt(line):
            # Our hello came after the sniff delay (a loaded machine): the server sent the
            # text prompt first, and takes the hello as JSON all the same; the prompt is
            # the one line of text we get, to skip (docs/protocol.md, section 1).
            line = await read_line(self.stream, self._lines)
        self._first_line = False
        if line is None:
            return None
        assert isinstance(line, bytes), "the server sent an over-long line"
        return decode_server_event(line)

    async def aclose(self) -> None:
        await self.stream.aclose()


class WebSocketChatClient(ChatClient):
    """One JSON frame per WebSocket text message (or several in a ``batch`` message)."""

    def __init__(
        self, ws: trio_websocket.WebSocketConnection, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        super().__init__(timeout)
        self.ws = ws
        self._backlog: collections.deque[ServerEvent] = collections.deque()
        #: How many ``batch`` messages arrived (to see that batching happened).
        self.batches = 0

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send_message(data)

    async def _receive_one(self) -> ServerEvent | None:
        if self._backlog:
            return self._backlog.popleft()
        try:
            message = await self.ws.get_message()
        except trio_websocket.ConnectionClosed:
            return None
        obj = json.loads(message)
        if isinstance(obj, dict) and obj.get("type") == "batch":
            self.batches += 1
            self._backlog.extend(decode_server_event(json.dumps(e)) for e in obj["events"])
            return self._backlog.popleft()
        return decode_server_event(message)

    async def aclose(self) -> None:
        await self.ws.aclose()


def is_prompt(line: bytes) -> bool:
    """Whether ``line`` (read on the TCP port) is the text-mode prompt. A JSON-lines client
    whose ``hello`` came after the sniff delay (a loaded machine) is sent it first, and
    skips it (docs/protocol.md, section 1): raw clients of tests do the same."""
    return line.strip() == _PROMPT


@contextmanager
def stalled_client(chat: TestServer, nick: str, **hello: Any) -> Iterator[socket.socket]:
    """A raw TCP client that logs in as ``nick`` (with any extra ``hello`` fields, e.g. a
    ``password``) and then reads nothing (its receive buffer made small), for tests of what
    the server does when a receiver falls behind. The caller may read from it later (it is
    a blocking socket until told otherwise)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(chat.address("tcp"))
        sock.sendall(json.dumps({"type": "hello", "nick": nick, **hello}).encode() + b"\n")
        yield sock


@asynccontextmanager
async def open_client(
    chat: TestServer,
    nick: str | None = None,
    *,
    websocket: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    batch: bool = False,
) -> AsyncIterator[ChatClient]:
    """Connect to ``chat`` over TCP (or WebSocket) and, if ``nick`` is given, log in.

    Pass ``ssl_context`` (trusting the server's CA) when the server speaks TLS.
    """
    client: ChatClient
    if websocket:
        async with trio_websocket.open_websocket_url(chat.ws_url, ssl_context=ssl_context) as ws:
            client = WebSocketChatClient(ws)
            if nick is not None:
                await client.login(nick, **({"batch": True} if batch else {}))
            yield client
        return
    host, port = chat.address("tcp")
    stream: trio.abc.Stream
    with trio.fail_after(DEFAULT_TIMEOUT):
        if ssl_context is None:
            stream = await trio.open_tcp_stream(host, port)
        else:
            stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=ssl_context)
    async with stream:
        client = TcpChatClient(stream)
        if nick is not None:
            await client.login(nick)
        yield client


try:  # the fixture, for ``pytest_plugins = ["trio_chat.testing"]``
    import pytest

    @pytest.fixture
    async def chat_server() -> AsyncIterator[TestServer]:
        async with open_test_server() as chat:
            yield chat

except ImportError:  # pytest is only needed for the fixture
    pass
