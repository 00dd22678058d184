"""The client's side of the wire: TCP JSON lines or WebSocket, behind one small interface.

:func:`parse_target` turns what the user typed (``localhost``, ``tls://host:port``,
``ws://host:port/``) into a :class:`Target`; :func:`open_connection` connects (with TLS for
``tls`` and ``wss``) and yields a :class:`ServerConnection` that sends client frames and
receives server events, whatever the transport. Every failure a user can meet becomes a
:class:`ConnectError` carrying one readable line.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import trio
import trio_websocket

from ..framing import LineBuffer, LineTooLong
from ..protocol import (
    Ping,
    RemoteProtocolError,
    ServerEvent,
    encode_client_frame,
)
from ..textmode import NICK_PROMPT
from ..transports.streams import TLS_REQUIRED, read_line
from .events import Outgoing, decode_event, encode_frame
from .terminal import printable
from .tls import NOT_TLS_HINT, client_ssl_context, describe_tls_error

#: Seconds to wait for the TCP connection, and again for the TLS and WebSocket handshakes.
CONNECT_TIMEOUT = 10.0
#: Seconds a WebSocket close handshake (or a TLS close_notify) may take when the client leaves.
DISCONNECT_TIMEOUT = 2.0
#: Seconds to spend finding out why a ``wss://`` handshake failed.
PROBE_TIMEOUT = 5.0
#: Largest server line or message the client accepts; the server's own cap is far lower.
MAX_EVENT_BYTES = 1024 * 1024

#: Sent as soon as a connection opens, before the user is asked for a nickname. The server's
#: TCP port also serves people on ``nc``: it waits a moment for the client to speak and takes
#: silence for a person typing, so a JSON client must speak at once. The ``pong`` it earns
#: also tells the client that a chat server is listening (on either transport).
OPENING_PING = Ping(token="trio-chat-client")
#: Over TCP the opening ping is followed by a blank line, which a chat server ignores but
#: which ends an HTTP request: pointed at an HTTP port (the chat's WebSocket port, say), the
#: client gets an HTTP answer at once instead of waiting for the server to give up on it.
OPENING_BYTES = encode_client_frame(OPENING_PING).rstrip(b"\n") + b"\r\n\r\n"
#: Codes of the :class:`RemoteProtocolError` a connection returns for a line that is not
#: JSON: an HTTP answer, or a plain-text ``!! ...`` line (its text without the ``!!``).
NOT_CHAT_HTTP = "client_http_answer"
SERVER_TEXT = "client_server_text"
_PROMPT = NICK_PROMPT.encode()


class ConnectError(Exception):
    """Connecting failed; ``str(exc)`` is one line for the user (without the program name)."""


class BadTarget(ValueError):
    """What the user gave as HOST is not a host name or a usable ``tls://``/``ws://`` URL."""


class ConnectionLost(Exception):
    """The server went away while we were sending."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect: ``scheme`` is ``tcp``, ``tls`` (JSON lines over TLS), ``ws`` or
    ``wss``."""

    scheme: str
    host: str
    port: int
    resource: str = "/"

    @property
    def display(self) -> str:
        """How the target is named in messages: ``host:port`` or the URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.scheme in ("tcp", "tls"):
            return f"{host}:{self.port}"
        return f"{self.scheme}://{host}:{self.port}{self.resource}"

    @property
    def secure(self) -> bool:
        """Whether the connection uses TLS."""
        return self.scheme in ("tls", "wss")


def parse_target(host: str, port: int, tls: bool = False) -> Target:
    """A host name (TCP on ``port``, with TLS if ``tls``), a ``tls://HOST[:PORT]`` URL, or a
    ``ws://`` / ``wss://`` URL (its own port).

    Raises :class:`BadTarget` with the reason.
    """
    text = host.strip()
    if "://" not in text:
        if not text or any(ch.isspace() or ch in "/?#" for ch in text):
            raise BadTarget(f"bad host name {host!r}")
        return Target("tls" if tls else "tcp", text.strip("[]"), port)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("tls", "ws", "wss"):
        raise BadTarget(f"bad URL {host!r}: use ws://HOST:PORT/ (or wss://)")
    if scheme == "ws" and tls:
        raise BadTarget(f"--tls with {host!r}: use wss:// for WebSocket over TLS")
    try:
        url_port = parts.port
    except ValueError:
        raise BadTarget(f"bad URL {host!r}: the port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise BadTarget(f"bad URL {host!r}: no host name")
    if scheme == "tls":
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise BadTarget(f"bad URL {host!r}: use tls://HOST:PORT")
        return Target("tls", parts.hostname, port if url_port is None else url_port)
    if url_port is None:
        url_port = 443 if scheme == "wss" else 80
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return Target(scheme, parts.hostname, url_port, resource)


class ServerConnection(Protocol):
    """An open connection to a chat server, as the client app sees it."""

    async def send(self, frame: Outgoing) -> None:
        """Send one frame; raises :class:`ConnectionLost` if the server is gone."""
        ...

    async def receive(self) -> ServerEvent | RemoteProtocolError | None:
        """The next event, a frame we could not read, or ``None`` once the server is gone."""
        ...


class TcpServerConnection:
    """JSON lines over a TCP stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._lines = LineBuffer(MAX_EVENT_BYTES)
        # Two tasks may send (the input loop, and a final quit); keep their lines whole.
        self._send_lock = trio.Lock()

    async def send(self, frame: Outgoing) -> None:
        await self.send_bytes(encode_frame(frame))

    async def send_bytes(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionLost(str(exc)) from None

    async def receive(self) -> ServerEvent | RemoteProtocolError | None:
        while True:
            event = await read_line(self.stream, self._lines)
            if event is None:
                return None
            if isinstance(event, LineTooLong):
                return RemoteProtocolError("line_too_long", "the server sent an over-long line")
            assert isinstance(event, bytes)
            if not event.strip() or event.strip() == _PROMPT:
                # The prompt: sent before our opening line arrived (a slow link); the
                # server takes that line as JSON all the same (docs/protocol.md, 1).
                continue
            if event.strip() == TLS_REQUIRED.strip():
                # A TLS port says so in plain text to a client that opened without TLS.
                return RemoteProtocolError("tls_required", "the server speaks TLS")
            if event.startswith(b"HTTP/"):
                # An HTTP server (the chat's WebSocket port, say) answering our opening line.
                return RemoteProtocolError(NOT_CHAT_HTTP, event.decode("utf-8", "replace"))
            if event.startswith(b"!! "):
                # A plain-text line: the server refusing the connection (too many, ...).
                return RemoteProtocolError(SERVER_TEXT, event[3:].decode("utf-8", "replace"))
            try:
                return decode_event(event)
            except RemoteProtocolError as exc:
                return exc


class WebSocketServerConnection:
    """One JSON object per WebSocket text message."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws

    async def send(self, frame: Outgoing) -> None:
        # encode_frame makes a JSON *line*; a WebSocket message carries no newline.
        text = encode_frame(frame).decode().rstrip("\n")
        try:
            await self.ws.send_message(text)
        except trio_websocket.ConnectionClosed as exc:
            raise ConnectionLost(str(exc)) from None

    async def receive(self) -> ServerEvent | RemoteProtocolError | None:
        try:
            message: str | bytes = await self.ws.get_message()
        except trio_websocket.ConnectionClosed:
            return None
        try:
            return decode_event(message)
        except RemoteProtocolError as exc:
            return exc


def describe_os_error(exc: BaseException) -> str:
    """A few words for why a connection attempt failed (``connection refused``, ...)."""
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    # trio.open_tcp_stream raises "all attempts to connect ... failed" with the per-address
    # errors grouped in __cause__: look inside for the real reason.
    found = _first_connect_error(exc)
    if found is None:
        return str(exc) or type(exc).__name__
    if isinstance(found, ConnectionRefusedError) or found.errno == errno.ECONNREFUSED:
        return "connection refused"
    if found.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "host unreachable"
    if isinstance(found, TimeoutError) or found.errno == errno.ETIMEDOUT:
        return "timed out"
    return (found.strerror or str(found)).lower()


def _first_connect_error(exc: BaseException | None) -> OSError | None:
    if exc is None:
        return None
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_connect_error(inner)
            if found is not None:
                return found
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc
    if exc.__cause__ is not None:
        return _first_connect_error(exc.__cause__) or (exc if isinstance(exc, OSError) else None)
    return exc if isinstance(exc, OSError) else None


@asynccontextmanager
async def open_connection(
    target: Target, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[ServerConnection]:
    """Connect to ``target`` and send :data:`OPENING_PING`; closed when the block ends.

    ``ssl_context`` is used for ``tls`` and ``wss`` targets (default: certificates checked
    against the system's CAs). Raises :class:`ConnectError` if it cannot connect.
    """
    context = (ssl_context or client_ssl_context()) if target.secure else None
    if target.scheme in ("tcp", "tls"):
        stream = await _open_tcp(target) if context is None else await _open_tls(target, context)
        try:
            connection = TcpServerConnection(stream)
            await connection.send_bytes(OPENING_BYTES)
            yield connection
        finally:
            # Bounded: a TLS stream sends its close_notify first. Cancelled, it still closes.
            with trio.move_on_after(DISCONNECT_TIMEOUT):
                await stream.aclose()
        return
    connected = False
    try:
        async with trio_websocket.open_websocket(
            target.host,
            target.port,
            target.resource,
            use_ssl=False if context is None else context,
            max_message_size=MAX_EVENT_BYTES,
            connect_timeout=CONNECT_TIMEOUT,
            disconnect_timeout=DISCONNECT_TIMEOUT,
        ) as ws:
            connected = True
            try:
                websocket = WebSocketServerConnection(ws)
                await websocket.send(OPENING_PING)
                yield websocket
            finally:
                # Close here, bounded and even when cancelled, so that open_websocket finds
                # the socket closed: its own close would raise DisconnectionTimeout over
                # whatever ended our block if the server is slow to answer the close.
                with trio.CancelScope(shield=True), trio.move_on_after(DISCONNECT_TIMEOUT):
                    await ws.aclose()
    except trio_websocket.ConnectionRejected as exc:
        if connected:
            raise
        body = (exc.body or b"").decode("utf-8", "replace").strip()
        if exc.status_code == 503 and body:
            # The server is full, or this address has too many connections: it says which.
            refused = body.splitlines()[0].removeprefix("!! ")[:200]
            raise ConnectError(f"cannot connect to {target.display}: {refused}") from None
        raise ConnectError(
            f"cannot connect to {target.display}: the server refused the WebSocket "
            f"(HTTP {exc.status_code}); is this the WebSocket port?"
        ) from None
    except trio_websocket.ConnectionTimeout:
        if connected:
            raise
        if context is None:
            # A wss:// port answers a plain client with a line trio-websocket cannot read.
            reason: str | None = "no WebSocket handshake in time (does the server want wss://?)"
        else:
            # trio-websocket reports a failed TLS handshake (an untrusted or expired
            # certificate, a port without TLS) only as this timeout: find out why ourselves.
            reason = await _tls_failure(target, context)
        raise ConnectError(
            f"cannot connect to {target.display}: {reason or 'no WebSocket handshake in time'}"
        ) from None
    except (trio_websocket.HandshakeError, OSError) as exc:
        if connected:
            raise
        cause = exc.__cause__ if isinstance(exc, trio_websocket.HandshakeError) else exc
        reason = describe_os_error(cause) if cause is not None else "handshake failed"
        raise ConnectError(f"cannot connect to {target.display}: {reason}") from None


async def _open_tcp(target: Target) -> trio.SocketStream:
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            return await trio.open_tcp_stream(target.host, target.port)
    except trio.TooSlowError:
        raise ConnectError(f"cannot connect to {target.display}: timed out") from None
    except OSError as exc:
        raise ConnectError(
            f"cannot connect to {target.display}: {describe_os_error(exc)}"
        ) from None


async def _open_tls(target: Target, context: ssl.SSLContext) -> trio.SSLStream[trio.SocketStream]:
    """TCP, then a completed TLS handshake (what ``trio.open_ssl_over_tcp_stream`` does, with
    each failure put into words)."""
    stream = trio.SSLStream(await _open_tcp(target), context, server_hostname=target.host)
    reason = await _handshake(stream)
    if reason is not None:
        raise ConnectError(f"cannot connect to {target.display}: {reason}")
    return stream


async def _handshake(stream: trio.SSLStream[trio.SocketStream]) -> str | None:
    """Complete the TLS handshake; ``None``, or why it failed (the stream is then closed)."""
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            await stream.do_handshake()
    except trio.TooSlowError:
        reason = f"no TLS handshake in time{NOT_TLS_HINT}"
    except trio.BrokenResourceError as exc:
        reason = describe_tls_error(exc.__cause__)
    except BaseException:
        await trio.aclose_forcefully(stream)  # cancelled (Ctrl-C): leave nothing open
        raise
    else:
        return None
    await trio.aclose_forcefully(stream)
    return reason


async def _tls_failure(target: Target, context: ssl.SSLContext) -> str | None:
    """Why a TLS handshake with ``target`` fails (or takes too long); ``None`` if it works.

    Raises :class:`ConnectError` if even the TCP connection fails.
    """
    with trio.move_on_after(PROBE_TIMEOUT):
        stream = trio.SSLStream(await _open_tcp(target), context, server_hostname=target.host)
        reason = await _handshake(stream)
        if reason is None:
            await trio.aclose_forcefully(stream)
        return reason
    return f"no TLS handshake in time{NOT_TLS_HINT}"


def not_a_chat_server(target: Target, event: ServerEvent | RemoteProtocolError | None) -> str:
    """Why the first thing the server at ``target`` said (``None``: it closed at once) is
    not the answer of a trio-chat server: one line for the user, with a hint if one helps."""
    server = target.display
    if event is None:
        return f"{server} closed the connection without a word: not a trio-chat server?"
    if isinstance(event, RemoteProtocolError):
        if event.code == "tls_required":
            return f"{server} speaks TLS: connect with --tls"
        if event.code == NOT_CHAT_HTTP:
            hint = ""
            if target.scheme in ("tcp", "tls"):
                scheme = "wss" if target.secure else "ws"
                host = f"[{target.host}]" if ":" in target.host else target.host
                hint = f" (the WebSocket port? use {scheme}://{host}:{target.port}/)"
            return f"{server} is not a trio-chat server: it answers HTTP{hint}"
        if event.code == SERVER_TEXT:
            return f"{server}: {printable(event.message)}"
    return f"{server} is not a trio-chat server (it does not speak the protocol)"
