"""TCP transport: JSON lines for programs, plain text lines for ``nc`` and friends.

Both dialects share the port. The server waits briefly (``sniff_delay``) for the client to
speak first: a client that opens with ``{`` speaks JSON lines (it sends ``hello`` at once);
anything else, or silence, is a person on a line client, who is then asked for a nickname.
A JSON frame as the first line after that prompt was a program's late ``hello``: the link
becomes JSON lines then (see ``TcpLink._parse``).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ..framing import EOF, NEED_DATA, LineBuffer, LineEvent, LineTooLong
from ..hub import host_of
from ..limits import BLANK_LINE, Overhead
from ..parcels import Item, Parcel
from ..protocol import (
    ClientFrame,
    RemoteProtocolError,
    SayLines,
    ServerEvent,
    ServerPing,
    decode_client_frame,
    decode_client_lines,
)
from ..proxyproto import NO_PROXY_HEADER, ProxyProtocolError, looks_like_proxy_header
from ..textmode import NICK_PROMPT, decode_text_line, parse_command_line
from ..wire import JSON_LINES, TEXT_LINES, WireFormat, encoded, sizer
from .connection import Arrival, serve_accepted
from .doorstep import Doorstep
from .fdstream import FdStream
from .http import response
from .parking import ParkingLot, Woken
from .streams import (
    RECEIVE_SIZE,
    SHARE_PORTS,
    accept_forever,
    accept_tls,
    close_now,
    closed_now,
    idle_fd,
    kept_stream,
    listener_address,
    open_listeners,
    read_nowait,
    read_proxy_header,
    receive_on_fd,
    receive_or_end,
    refuse,
    set_connection_defaults,
    socket_fd,
    write_all_nowait,
    write_nowait,
)

if TYPE_CHECKING:
    from .host import ChatHost, ConnectionSlot

log = logging.getLogger("trio_chat.tcp")

_PING_TOKENS = itertools.count(1)


class TcpLink:
    """A :class:`~trio_chat.transports.connection.Link` over a trio stream of lines.

    Slotted, as every object a connection keeps for its life: a ``__dict__`` is most of
    an object's size (bench/README.md, "Memory per connection")."""

    #: Reading a line writes nothing back.
    receive_writes = False
    #: What arrived is handed over in runs too (:meth:`receive_ready`).
    hands_runs = True

    __slots__ = (
        "_by_silence",
        "_lines",
        "_skip_prompt",
        "address",
        "batching",
        "format",
        "keepalive_ping",
        "last_heard",
        "measure",
        "park_fd",
        "plain_text",
        "stream",
        "transport",
        "write_now",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        address: str,
        *,
        plain_text: bool,
        max_line_bytes: int,
        already_received: bytes = b"",
    ) -> None:
        self.stream = stream
        self.address = address
        self.plain_text = plain_text
        self.transport = "tcp-text" if plain_text else "tcp-json"
        self.format: WireFormat[bytes] = TEXT_LINES if plain_text else JSON_LINES
        self._lines = LineBuffer(max_line_bytes)
        if already_received:
            self._lines.feed(already_received)
        # A person who typed before any prompt has answered it: their line is the nickname.
        self._skip_prompt = plain_text and bool(already_received.strip())
        # Text mode chosen by silence (nothing within sniff_delay) may still be a program
        # whose hello was merely late (a loaded client, a slow link): see _parse.
        self._by_silence = plain_text and not already_received.strip()
        self.last_heard = trio.current_time()
        self.measure = sizer(self.format)
        self.park_fd = socket_fd(stream)
        self.write_now: Callable[[Parcel], bytes] | None = (
            None if self.park_fd is None else self._write_direct
        )
        # Lines are batched into one write anyway; a "batch" hello changes nothing here.
        self.batching = False
        # A person on nc cannot answer pings; TCP keepalive (set on the socket) notices a
        # vanished peer instead, and reading then fails.
        self.keepalive_ping: Callable[[], ServerEvent] | None = None if plain_text else json_ping

    async def receive(self) -> ClientFrame | RemoteProtocolError | Overhead | None:
        while True:
            event = self._lines.next_event()
            if event is NEED_DATA:
                await self.fill()
                continue
            return self._frame_of(event)

    def receive_ready(self) -> list[ClientFrame | SayLines | RemoteProtocolError | Overhead | None]:
        """What :meth:`receive` would return, call after call, for the frames that have
        arrived (as many as one cut of the line buffer holds: see
        :meth:`~trio_chat.framing.LineBuffer.whole_lines`), without reading the socket; an
        empty list when none has (nor the end). Plain ``say`` frames that come one after
        another come as one :class:`~trio_chat.protocol.SayLines`: a reader at full speed
        gets a read's lines framed and decoded in one loop each, not in a few calls each
        (see :meth:`~trio_chat.transports.resident.Resident._handle_runs`)."""
        lines = self._lines.whole_lines()
        if not lines or self.plain_text:
            if lines:  # a person's lines, or a program's late hello among them: one by one
                return [self._text_frame(line) for line in lines]
            event = self._lines.next_event()
            return [] if event is NEED_DATA else [self._frame_of(event)]
        # Blank lines (None) become BLANK_LINE in place: no second list for the usual read.
        frames: list[ClientFrame | SayLines | RemoteProtocolError | Overhead | None]
        frames = decode_client_lines(lines)  # type: ignore[assignment]  # (no Overhead in it)
        for index, frame in enumerate(frames):
            if frame is None:
                frames[index] = BLANK_LINE
        return frames

    def _frame_of(self, event: LineEvent) -> ClientFrame | RemoteProtocolError | Overhead | None:
        """What :meth:`receive` returns for a line buffer's event (not ``NEED_DATA``)."""
        if event is EOF:
            return None
        if isinstance(event, LineTooLong):
            return RemoteProtocolError(
                "line_too_long",
                f"line longer than {event.limit} bytes was dropped",
            )
        assert isinstance(event, bytes)
        return self._text_frame(event)

    def _text_frame(self, line: bytes) -> ClientFrame | RemoteProtocolError | Overhead:
        """What :meth:`receive` returns for a whole line."""
        try:
            frame = self._parse(line)
        except RemoteProtocolError as exc:
            return exc
        # A blank line is nothing to do, but reading it was not free: flood control
        # counts it like any line.
        return BLANK_LINE if frame is None else frame

    def _speak_json(self) -> None:
        """Become a JSON-lines link: the client's first line, after the nickname prompt it
        was sent for its silence, was a JSON frame. Nothing but that prompt was sent yet."""
        self.plain_text = False
        self.transport = "tcp-json"
        self.format = JSON_LINES
        self.measure = sizer(JSON_LINES)
        self.keepalive_ping = json_ping

    async def fill(self) -> None:
        fd = self.park_fd
        self.feed(await (receive_or_end(self.stream) if fd is None else receive_on_fd(fd)))

    def feed(self, data: bytes | bytearray) -> None:
        if data:
            self.last_heard = trio.current_time()
        self._lines.feed(data)

    def heard(self) -> float:
        """:attr:`last_heard`, for the keepalive (a bound method: a closure per connection
        costs three times its memory)."""
        return self.last_heard

    def input_waiting(self) -> bool:
        return self._lines.has_line()

    def _parse(self, line: bytes) -> ClientFrame | None:
        if self.plain_text:
            if self._by_silence and line.strip():
                self._by_silence = False  # only the first line may change the dialect
                frame = _late_json(line)
                if frame is not None:
                    self._speak_json()
                    return frame
            return parse_command_line(decode_text_line(line))
        if not line.strip():
            return None  # blank lines between JSON frames are allowed
        return decode_client_frame(line)

    async def send(self, events: list[Item]) -> int:
        data = self._encoded(events)
        await self.stream.send_all(data)
        return len(data)

    def write_nowait(self, events: list[Item]) -> bytes | None:
        fd = idle_fd(self.stream)
        return None if fd is None else write_all_nowait(fd, self._encoded(events))

    def _encoded(self, events: list[Item]) -> bytes:
        fmt = self.format
        if len(events) == 1:
            return encoded(events[0], fmt)
        return b"".join([encoded(e, fmt) for e in events])

    def _write_direct(self, parcel: Parcel) -> bytes:
        """For a plain TCP socket (``write_now``): write a parcel without waiting
        (``os.write`` on the non-blocking socket), returning the part the kernel did not
        take. ``write_nowait(fd, encoded(parcel, fmt))`` with the cache lookup inlined:
        the hub calls this once per receiver of every message, and the encoding is cached
        for all but the first. (A bound method: a third of a closure's memory per link.)"""
        fmt = self.format
        data = parcel.wire.get(fmt.name)
        if not isinstance(data, bytes):
            data = encoded(parcel, fmt)
        assert self.park_fd is not None
        return write_nowait(self.park_fd, data)

    async def prompt_nick(self) -> None:
        if self._skip_prompt:
            self._skip_prompt = False
        elif self.plain_text:
            await self.stream.send_all(NICK_PROMPT.encode() + b"\n")

    async def aclose(self) -> None:
        await self.stream.aclose()

    def close_nowait(self) -> bool:
        return closed_now(self.stream)

    def abort(self) -> None:
        close_now(self.stream)


def json_ping() -> ServerEvent:
    """A new keepalive ``ping`` with a token of its own (one function for every link: a
    closure per connection would cost memory for nothing)."""
    return ServerPing(token=str(next(_PING_TOKENS)))


def _late_json(line: bytes) -> ClientFrame | None:
    """The frame of a first line that is JSON (a program's late ``hello``), else ``None``:
    a person who types something with a brace in it stays in text mode."""
    if not line.lstrip().startswith(b"{"):
        return None
    try:
        return decode_client_frame(line)
    except RemoteProtocolError:
        return None


async def sniff(
    stream: trio.abc.Stream, delay: float, first: bytes = b"", lot: ParkingLot | None = None
) -> tuple[bytes, bool] | None:
    """Wait up to ``delay`` seconds for the first bytes (unless ``first`` already holds
    some); decide JSON or text.

    Returns ``(bytes already read, plain_text)``, or ``None`` if the peer closed at once.

    A program sends its ``hello`` as it connects, so it has nearly always arrived by the
    time the connection is served: a plain socket is asked for it without waiting first,
    which spares the timeout's cancel scope and the scheduling round of a trio read for
    each of thousands of clients reconnecting at once. One whose ``hello`` is a moment
    late waits for it in the parking ``lot`` (when it runs), which keeps the delay
    without a scope, as it keeps a busy connection's idle time.
    """
    if not first:
        ready = _received_already(stream)
        if ready is None:
            fd = socket_fd(stream)
            if lot is not None and lot.available and fd is not None and delay > 0:
                ready = await _first_bytes_in(lot, fd, trio.current_time() + delay)
                if ready is None:
                    return b"", True  # silence: a person at a prompt
        if ready is not None:
            return None if not ready else (ready, not ready.lstrip().startswith(b"{"))
        with trio.move_on_after(delay):
            first = bytes(await stream.receive_some(RECEIVE_SIZE))
            if not first:
                return None
    return first, not first.lstrip().startswith(b"{")


async def _first_bytes_in(lot: ParkingLot, fd: int, deadline: float) -> bytes | None:
    """What a plain socket receives first, waiting in ``lot`` until ``deadline`` (``b""``:
    the peer closed); ``None`` if nothing came by then."""
    while await lot.wait_readable(fd, deadline) is Woken.READABLE:
        data = read_nowait(fd)
        if data is not None:
            return data
    return None


def _received_already(stream: trio.abc.Stream) -> bytes | None:
    """What a plain socket has received and not yet read (``b""``: the peer closed), or
    ``None`` if nothing is there yet (or the stream is not a plain socket)."""
    fd = socket_fd(stream)
    if fd is None:
        return None
    try:
        return os.read(fd, RECEIVE_SIZE)
    except BlockingIOError:
        return None
    except OSError:  # reset: the end, as a read through trio would find it
        return b""


#: HTTP methods a browser or WebSocket client opens with; they belong on the WebSocket port.
HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"OPTIONS ")


def http_misdirected(ws_port: int | None) -> bytes:
    """A short HTTP 400 for an HTTP/WebSocket client that dialled the chat TCP port."""
    where = f"port {ws_port}" if ws_port else "the WebSocket port"
    body = (
        f"This is the trio-chat TCP port (JSON lines or plain text). "
        f"For WebSocket and the browser page use {where}.\n"
    ).encode()
    return response(400, body)


def enable_keepalive(
    stream: trio.SocketStream | trio.socket.SocketType, idle: int = 60, interval: int = 10
) -> bool:
    """Let the kernel probe quiet peers, so one that vanished (cable pulled, laptop shut)
    is noticed within about ``idle + 3 * interval`` seconds even if it never writes.
    Whether every option took."""
    try:
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    except OSError:
        return False
    return True


#: Whether a socket accepted on Linux has its listener's keepalive options (the kernel
#: copies the listening socket's state into each connection it accepts); elsewhere each
#: connection is given them itself.
KEEPALIVE_INHERITED = sys.platform == "linux"

#: Whether the TCP chat port accepts each connection as its descriptor (where its options
#: are inherited: see :func:`serve_tcp_chat`); off, through trio's ``SocketStream``, as
#: the WebSocket port does (tests compare the two).
PLAIN_ACCEPT = True


async def handle_tcp(
    server: ChatHost, stream: trio.SocketStream, *, keepalive_set: bool = False
) -> None:
    """Serve one TCP connection (see :func:`serve_accepted`). ``keepalive_set``: the
    socket has the keepalive options already (from its listener)."""
    if not keepalive_set:
        enable_keepalive(stream)
    await serve_accepted(server, stream, open_tcp_link, refused_line)


async def handle_plain_tcp(
    server: ChatHost,
    stream: FdStream,
    peer: str,
    slot: ConnectionSlot | None = None,
    first: bytes = b"",
    waited: bool = False,
) -> None:
    """Serve one TCP connection accepted as its descriptor, from ``peer`` (see
    :func:`~.streams.accept_plain_waiting`; its options came from its listener), in its
    place in the limits if it has one already (``slot``), with the bytes read from it
    already (``first``); ``waited``: its first bytes were waited for already, at the
    doorstep (see :func:`arrive_plain_tcp`)."""
    open_link = open_tcp_link
    if first or waited:
        open_link = functools.partial(open_tcp_link, first=first, waited=waited)
    await serve_accepted(server, stream, open_link, refused_line, peer, slot)


def arrive_plain_tcp(
    server: ChatHost,
    nursery: trio.Nursery,
    doorstep: Doorstep,
    stream: FdStream,
    peer: str,
) -> None:
    """The accept loop's hand-off of a TCP connection taken as its descriptor (no TLS):
    its task starts at once if its first bytes are there already, else it waits at the
    ``doorstep`` without one (see :mod:`.doorstep`), its place in the limits taken (a
    refused one, or one the doorstep cannot hold, starts its task at once)."""
    if _proxied(server, peer):  # its PROXY header is read, within a time limit, by its task
        nursery.start_soon(handle_plain_tcp, server, stream, peer, name=_NAME)
        return
    first = read_nowait(stream.fileno())
    if first == b"":  # gone already
        stream.close()
        return
    slot = server.connection_slot(peer)
    if first is None and slot.refusal is None and doorstep.wait(stream, peer, slot):
        return
    nursery.start_soon(handle_plain_tcp, server, stream, peer, slot, first or b"", name=_NAME)


def _left_the_doorstep(
    server: ChatHost, nursery: trio.Nursery, stream: FdStream, peer: str, slot: ConnectionSlot
) -> None:
    """A connection leaves the doorstep (its first bytes came, or not in time): its task
    reads what is there without waiting again."""
    nursery.start_soon(handle_plain_tcp, server, stream, peer, slot, b"", True, name=_NAME)


#: The name of every connection's task (trio would make each a string of its own).
_NAME = "trio_chat.connection"


def _proxied(server: ChatHost, peer: str) -> bool:
    trust = server.proxy_trust
    return bool(trust) and trust.trusts(host_of(peer))


def refused_line(reason: str) -> bytes:
    return f"!! connection refused: {reason}\n".encode()


#: Why a PROXY header from a peer that is not a trusted proxy is refused.
UNTRUSTED_PROXY_HEADER = (
    "a PROXY protocol header is accepted only from a trusted proxy (setting trusted_proxies)"
)
#: Why a connection from a trusted proxy without a PROXY header is refused.
PROXY_HEADER_REQUIRED = (
    "connections from a trusted proxy must start with a PROXY protocol header "
    "(nginx: proxy_protocol on;)"
)


async def open_tcp_link(
    server: ChatHost,
    stream: trio.abc.Stream,
    arrival: Arrival,
    *,
    first: bytes = b"",
    waited: bool = False,
) -> TcpLink | None:
    """The PROXY header (from a trusted proxy, which must send one), TLS (if on), then JSON
    or text: the link to chat over, or ``None`` if the peer came for something else, was
    refused or left (the caller closes the stream). ``first``: bytes read from the
    connection already; ``waited``: its first bytes were waited for already (what is
    there now is all there is to sniff)."""
    config = server.config
    received = first
    if arrival.proxied:
        # Before TLS, as proxies send it; bounded like the rest of the handshake.
        with trio.move_on_after(config.handshake_timeout) as header_wait:
            try:
                got = await read_proxy_header(stream)
            except ProxyProtocolError as exc:
                problem = str(exc)
                if problem == NO_PROXY_HEADER:
                    problem = PROXY_HEADER_REQUIRED
                await refuse(stream, refused_line(problem))
                return None
        if header_wait.cancelled_caught:
            await refuse(
                stream,
                refused_line(f"no PROXY protocol header within {config.handshake_timeout:g} s"),
            )
            return None
        if got is None:
            return None
        header, received = got
        if not await arrival.admit(header.client_address or arrival.peer):
            return None
    chat_stream: trio.abc.Stream = stream
    if server.ssl_context is not None:
        tls = None
        with trio.move_on_after(config.handshake_timeout):
            if not received:
                received = bytes(await stream.receive_some(RECEIVE_SIZE))
                if not received:
                    return None
                if not arrival.proxied and looks_like_proxy_header(received) is True:
                    await refuse(stream, refused_line(UNTRUSTED_PROXY_HEADER))
                    return None
            tls = await accept_tls(stream, server.ssl_context, received)
        if tls is None:
            return None
        chat_stream, received = tls, b""
    delay = 0.0 if waited else config.sniff_delay
    sniffed = await sniff(chat_stream, delay, received, server.parking)
    if sniffed is None:
        return None
    first, plain_text = sniffed
    if not arrival.proxied and server.ssl_context is None:
        proxy_header, first = await _proxy_header_sent(chat_stream, first, config.sniff_delay)
        if proxy_header:
            await refuse(stream, refused_line(UNTRUSTED_PROXY_HEADER))
            return None
    if first.startswith(HTTP_METHODS):
        await chat_stream.send_all(http_misdirected(server.ws_port))
        return None
    return TcpLink(
        kept_stream(chat_stream),
        arrival.address,
        plain_text=plain_text,
        max_line_bytes=config.max_frame_bytes,
        already_received=first,
    )


async def _proxy_header_sent(
    stream: trio.abc.Stream, first: bytes, delay: float
) -> tuple[bool, bytes]:
    """Whether ``first`` starts with a PROXY header (from a peer that is not a trusted
    proxy: refused, never read as a nickname), and the bytes read so far. Only bytes that
    are a strict beginning of a PROXY signature (``PROX``, a bare ``\\r\\n``) wait for more,
    up to ``delay`` seconds; everyone else costs one comparison."""
    if not first:  # silence: a person at a prompt
        return False, first
    verdict = looks_like_proxy_header(first)
    if verdict is not NEED_DATA:
        return verdict is True, first
    with trio.move_on_after(delay):
        while verdict is NEED_DATA:
            more = await receive_or_end(stream)
            if not more:
                break
            first += more
            verdict = looks_like_proxy_header(first)
    return verdict is True, first


async def serve_tcp_chat(
    server: ChatHost,
    handler_nursery: trio.Nursery,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept TCP connections forever, each served in ``handler_nursery``.

    The keepalive options are set on the listening sockets, once, where connections
    inherit them (Linux): four system calls fewer per connection, which a crowd
    reconnecting after a restart makes by the thousand. So are the options trio's
    ``SocketStream`` sets on each connection (``TCP_NODELAY``, ``TCP_NOTSENT_LOWAT``), and
    then each connection is accepted as its descriptor alone
    (:func:`~.streams.accept_plain_waiting`): none of trio's socket objects, which a
    logged-in connection would give up anyway, nor two more system calls each."""
    scheme = "tcp" if server.ssl_context is None else "tls"
    listeners = await open_listeners(
        server.config.host, server.config.port, reuse_port=SHARE_PORTS.get()
    )
    inherited = KEEPALIVE_INHERITED and all(
        [enable_keepalive(listener.socket) for listener in listeners]
    )
    plain = (
        inherited
        and PLAIN_ACCEPT
        and all([set_connection_defaults(listener.socket) for listener in listeners])
    )
    task_status.started([listener_address(scheme, listener) for listener in listeners])
    arrive = None
    if plain:
        if server.ssl_context is None:
            doorstep = Doorstep(
                server.parking,
                server.config.sniff_delay,
                functools.partial(_left_the_doorstep, server, handler_nursery),
            )
            handler_nursery.start_soon(doorstep.run)
            arrive = functools.partial(arrive_plain_tcp, server, handler_nursery, doorstep)
        else:
            arrive = functools.partial(_serve_plain_tcp, server, handler_nursery)
    await accept_forever(
        listeners,
        functools.partial(handle_tcp, server, keepalive_set=inherited),
        handler_nursery,
        plain=arrive,
    )


def _serve_plain_tcp(server: ChatHost, nursery: trio.Nursery, stream: FdStream, peer: str) -> None:
    """The accept loop's hand-off of a TLS connection taken as its descriptor: its task."""
    nursery.start_soon(handle_plain_tcp, server, stream, peer, name=_NAME)
