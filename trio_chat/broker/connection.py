"""One connection to Redis over trio: the few lines around :mod:`.resp` (h11's
``examples/trio-server.py`` shape), for the broker's hot path.

coredis costs ~0.5 ms of CPU per round trip here (coredis, anyio and trio between the
call and the socket) where a trio stream and :mod:`.resp` cost under a tenth of it; the
broker calls Redis once per batch appended and once per batch read, so that is most of
what it costs per line at a steady pace.

One request at a time (no pipelining). Every wait is bounded by the caller's cancel
scopes; a call cut short (cancelled, timed out, the peer gone) leaves its reply unread,
so the connection is closed and every later call raises :class:`ConnectionLost`: open a
new one.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from types import TracebackType

import trio

from ..redis_url import parse_url
from .resp import (
    NEED_DATA,
    RedisProtocolError,
    ReplyError,
    ReplyParser,
    StreamEntry,
    encode_command,
)

#: Bytes asked of the socket at a time.
RECEIVE_SIZE = 256 * 1024


class RedisError(Exception):
    """Base of what a :class:`RedisConnection` raises besides :class:`OSError` and
    :class:`trio.TooSlowError` (and :class:`.resp.ReplyError`, Redis's own answer)."""


class ConnectionLost(RedisError):
    """The connection is closed, or broke: open a new one."""


class ProtocolFailure(RedisError):
    """Redis sent what is not RESP2 (or more than the parser allows)."""


class CommandError(RedisError):
    """Redis answered a command with an error (``NOSCRIPT ...``, ``WRONGPASS ...``)."""

    def __init__(self, error: ReplyError) -> None:
        super().__init__(str(error))
        self.reply = error

    @property
    def code(self) -> str:
        """The error's first word: ``NOSCRIPT``, ``WRONGPASS``, ``ERR``..."""
        return self.reply.code


class RedisConnection:
    """One connection; :meth:`call` sends one command and returns Redis's reply (see
    :mod:`.resp` for the types), raising :class:`CommandError` for an error reply."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._parser = ReplyParser()
        self._broken: str | None = None
        self._busy = False

    async def call(self, *args: object) -> object:
        """Send one command, return its reply. Not for two tasks at once."""
        return await self._round_trip(encode_command(*args), self._parser.next_reply)

    async def call_encoded(self, request: bytes) -> object:
        """:meth:`call` with the command already encoded (see :func:`.resp.encode_head`)."""
        return await self._round_trip(request, self._parser.next_reply)

    async def read_stream(self, *args: object) -> list[StreamEntry]:
        """Send an ``XREAD`` of one stream (``args``: the whole command); return its
        entries as (id, the ``x`` field's value), none if it timed out (see
        :meth:`.resp.ReplyParser.next_entries`)."""
        return await self.read_stream_encoded(encode_command(*args))

    async def read_stream_encoded(self, request: bytes) -> list[StreamEntry]:
        """:meth:`read_stream` with the command already encoded."""
        got = await self._round_trip(request, self._parser.next_entries)
        return got or []  # type: ignore[return-value]

    async def _round_trip(self, request: bytes, next_reply: Callable[[], object]) -> object:
        if self._broken is not None:
            raise ConnectionLost(f"the connection to Redis is closed ({self._broken})")
        if self._busy:
            raise RuntimeError("another task is waiting for a reply on this connection")
        self._busy = True
        # Any way out but a reply leaves the reply unread: the connection is unusable.
        done = False
        try:
            await self._stream.send_all(request)
            reply = next_reply()
            while reply is NEED_DATA:
                data = await self._stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise ConnectionLost("Redis closed the connection")
                self._parser.feed(data)
                reply = next_reply()
            done = True
        except RedisProtocolError as exc:
            raise ProtocolFailure(str(exc)) from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from exc
        finally:
            self._busy = False
            if not done:
                self._broken = "a call was cut short"
                self._stream_abort()
        if isinstance(reply, ReplyError):
            raise CommandError(reply)
        return reply

    def _stream_abort(self) -> None:
        # Close without waiting (we may be cancelled): trio's aclose is a checkpoint, so
        # close the socket directly where there is one (TLS: drop it uncleanly).
        stream = self._stream
        inner = getattr(stream, "transport_stream", stream)
        socket = getattr(inner, "socket", None)
        if socket is not None:
            socket.close()

    async def aclose(self) -> None:
        if self._broken is None:
            self._broken = "closed"
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await trio.aclose_forcefully(self._stream)

    async def __aenter__(self) -> RedisConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


async def open_redis_connection(url: str) -> RedisConnection:
    """Connect to the Redis of ``url``, authenticate (``AUTH [user] password``) and
    select its database. Close it (``async with``)."""
    address = parse_url(url)
    stream: trio.abc.Stream
    if address.scheme == "unix":
        stream = await trio.open_unix_socket(address.path)
    elif address.scheme == "rediss":
        stream = await trio.open_ssl_over_tcp_stream(
            address.host, address.port, ssl_context=ssl.create_default_context()
        )
    else:
        stream = await trio.open_tcp_stream(address.host, address.port)
    connection = RedisConnection(stream)
    try:
        if address.password is not None:
            if address.username:
                await connection.call("AUTH", address.username, address.password)
            else:
                await connection.call("AUTH", address.password)
        if address.db:
            await connection.call("SELECT", address.db)
    except BaseException:
        await connection.aclose()
        raise
    return connection
