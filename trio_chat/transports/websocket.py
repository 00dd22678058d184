"""WebSocket transport and the browser page, on one port.

This module accepts TCP itself, reads the HTTP request head (parsed by h11), and then either
upgrades to a WebSocket or serves the page; every HTTP answer, the page's and the errors',
is written by h11 in :mod:`trio_chat.transports.http`. The WebSocket is wsproto (sans-IO)
driven by the connection's own tasks, the same as every TCP connection's (its reader, and
a writer while something is queued): no extra task per connection, several frames handled
per read, and outgoing frames encoded once per event for all receivers (trio-websocket,
used by the clients, costs a task and a lock round per message, which capped the server's
fan-out).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from typing import TYPE_CHECKING

import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, CloseConnection, Event, Ping, Pong, Request
from wsproto.events import Message as WsMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError as HandshakeRefused

from ..limits import FRAGMENT_COST, FRAME_COST, PONG_COST, Overhead
from ..parcels import Item, Parcel, Raw
from ..protocol import (
    ClientFrame,
    RemoteProtocolError,
    SayLines,
    ServerEvent,
    decode_client_frame,
    decode_client_lines,
)
from ..proxyproto import ProxyTrust, client_from_headers, format_address
from ..routes import RouteSpec, request_parts
from ..wire import (
    WEBSOCKET_BATCH_FRAMES,
    WEBSOCKET_FRAMES,
    WEBSOCKET_KEEPALIVE_PING,
    WireFormat,
    batch_text,
    encoded,
    sizer,
    websocket_text_frame,
)
from . import wsframes
from .connection import Arrival, serve_accepted
from .http import CONNECTION_CLOSE, Header, response
from .link import LINK_TURN, LinkTurn
from .streams import (
    accept_tls,
    close_now,
    closed_now,
    idle_fd,
    kept_stream,
    receive_on_fd,
    receive_or_end,
    serve_port,
    socket_fd,
    write_all_nowait,
    write_nowait,
)
from .webroutes import serve_route
from .wsframes import FrameBoundary

if TYPE_CHECKING:
    from .host import ChatHost

log = logging.getLogger("trio_chat.websocket")

MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT = 10.0
#: Hard WebSocket message cap: beyond it the server closes with 1009 (message too big).
#: Below it, a message over the frame limit only gets an error frame; the connection stays.
WS_HARD_LIMIT = 1024 * 1024
#: Most frames one message may come in: beyond, the server closes with 1008 (policy
#: violation). Browsers never fragment, and libraries that do cut pieces of kilobytes; 128
#: frames carry a message of the default 16 KiB limit even in 128-byte pieces, while an
#: endless stream of empty continuation frames is cut off at once.
WS_MAX_FRAGMENTS = 128

#: What the link reports for each frame that carries nothing for the chat (see Overhead).
_PING = Overhead(FRAME_COST)
_PONG = Overhead(PONG_COST)
_FRAGMENT = Overhead(FRAGMENT_COST)

#: What :meth:`WebSocketLink.receive_ready` hands over, item by item.
Ready = ClientFrame | SayLines | RemoteProtocolError | Overhead | LinkTurn | None


class WebSocketLink:
    """A :class:`~trio_chat.transports.connection.Link` over one WebSocket.

    wsproto parses what arrives (the handshake, frames, pings, close); what the server
    sends is framed by :mod:`trio_chat.wire` and cached on each parcel, so a message fanned
    out to many WebSocket clients is framed once, like a JSON line, and everything queued
    for a client goes out in one write.

    What arrives is parsed as the reader asks for it: the whole messages at the start of a
    read (each in one frame: what a chatting client sends) at once, without wsproto
    (:func:`wsframes.whole_messages`), anything after them one frame at a time by wsproto;
    and every frame is reported (pings, pongs and unfinished fragments as
    :class:`Overhead`), so flood control and the reader's turn-taking see each frame,
    however many one read brought. The reader takes them one by one (:meth:`receive`) or
    in runs (:meth:`receive_ready`, the plain says decoded together). A
    message in fragments is joined as they arrive into one buffer, which keeps at most
    ``max_frame_bytes`` (beyond that the message will be refused anyway, so only its size
    is counted), in at most :data:`WS_MAX_FRAGMENTS` frames.
    """

    __slots__ = (
        "_ahead",
        "_batching",
        "_closed",
        "_events",
        "_fragments",
        "_frames",
        "_message",
        "_message_size",
        "_message_text",
        "_pending",
        "_send_lock",
        "_taken",
        "address",
        "format",
        "keepalive_ping",
        "last_heard",
        "max_frame_bytes",
        "measure",
        "park_fd",
        "stream",
        "write_now",
        "ws",
    )

    transport = "websocket"
    plain_text = False
    #: A ping is answered, a close returned, as they are read.
    receive_writes = True
    #: What arrived is handed over in runs too (:meth:`receive_ready`): the reader takes
    #: a read of plain says in one pass, and a frame that needs an answer as its turn.
    hands_runs = True

    def __init__(
        self,
        stream: trio.abc.Stream,
        address: str,
        max_frame_bytes: int,
        already_received: bytes = b"",
    ) -> None:
        self.stream = stream
        #: The frame parser while this connection has bytes to parse (lent from
        #: :mod:`.wsframes` at each read, given back when they are all handled), or
        #: ``None``: nothing received is left to parse (most of the time).
        self.ws: WsConnection | None = None
        #: Where the frames of what arrived end (whether the parser can be given back).
        self._frames = FrameBoundary()
        self.address = address
        self.max_frame_bytes = max_frame_bytes
        self.measure = sizer(WEBSOCKET_FRAMES)
        #: How events are framed for this client (:attr:`batching` chooses).
        self.format: WireFormat[bytes] = WEBSOCKET_FRAMES
        self._batching = False
        self.last_heard = trio.current_time()
        # Whole messages taken from what arrived without wsproto (wsframes.whole_messages),
        # not yet handed out from ``_taken`` on (None: none), then wsproto's events for the
        # bytes after them, parsed as they are asked for (None once they are all handled:
        # then the socket is read again), and the next one, taken ahead to know whether
        # there is one (a message from ``_pending`` as itself, a str or bytes).
        self._pending: list[str | bytes] | None = None
        self._taken = 0
        self._events: Iterator[Event] | None = None
        self._ahead: Event | str | bytes | None = None
        # The message arriving in fragments: its bytes (up to max_frame_bytes), its size
        # (all of it), whether it is text, and how many of its frames have come.
        self._message: bytearray | None = None  # made at a message's first fragment
        self._message_size = 0
        self._message_text = False
        self._fragments = 0
        self._closed = False  # a close frame came or went: nothing more to read
        # The writer and the reader (answering pings) share the stream; trio allows one
        # send_all at a time. Made at the first write that waits (most connections only
        # ever write directly, see write_now).
        self._send_lock: trio.Lock | None = None
        # Keepalive pings are WebSocket ping frames, which every client library and browser
        # answers by itself; they go through the writer like everything else.
        self.keepalive_ping: Callable[[], ServerEvent] | None = websocket_ping
        self.park_fd = socket_fd(stream)
        self.write_now: Callable[[Parcel], bytes] | None = (
            None if self.park_fd is None else self._write_nowait
        )
        if already_received:  # frames a client sent right behind its upgrade request
            self._parse(already_received)

    def heard(self) -> float:
        """:attr:`last_heard`, for the keepalive (a bound method: a closure per connection
        costs three times its memory)."""
        return self.last_heard

    @property
    def batching(self) -> bool:
        """The client asked for several events per message (``"batch": true``)."""
        return self._batching

    @batching.setter
    def batching(self, batching: bool) -> None:
        self._batching = batching
        self.format = WEBSOCKET_BATCH_FRAMES if batching else WEBSOCKET_FRAMES

    def input_waiting(self) -> bool:
        return self._closed or self._peek() is not None

    def _peek(self) -> Event | str | bytes | None:
        """The next message or event of what was received (wsproto's parsing one frame
        for it), or ``None``."""
        if self._ahead is None:
            pending = self._pending
            if pending is not None:
                taken = self._taken
                self._ahead = pending[taken]
                if taken + 1 < len(pending):
                    self._taken = taken + 1
                else:
                    self._pending = None
            elif self._events is not None:
                self._ahead = next(self._events, None)
                if self._ahead is None:
                    self._events = None
                    self._rest()
        return self._ahead

    def _parse(self, data: bytes) -> None:
        """Take the whole messages at the start of received bytes as they are, when no
        frame is half-parsed (:func:`wsframes.whole_messages`), and hand the rest to the
        parser (lent one if it has none)."""
        ws = self.ws
        if ws is None:
            messages, taken = wsframes.whole_messages(data)
            if messages:
                pending = self._pending
                if pending is not None:  # (not all handed out yet: after those)
                    messages[:0] = pending[self._taken :]
                self._pending, self._taken = messages, 0
                if taken == len(data):
                    return
                data = data[taken:]
            ws = self.ws = wsframes.lend()
        ws.receive_data(data)
        self._frames.feed(data)
        self._events = ws.events()

    def _rest(self) -> None:
        """Every event of what was received is handed out: give the parser back if that
        ended on a frame boundary outside any fragmented message (it then holds nothing)."""
        ws = self.ws
        if ws is not None and self._frames.at_rest and ws.state is ConnectionState.OPEN:
            self.ws = None
            wsframes.give_back(ws)

    def _parser(self) -> WsConnection:
        """The frame parser, to send with (lent one if it has none: it is at rest)."""
        ws = self.ws
        if ws is None:
            ws = self.ws = wsframes.lend()
        return ws

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for a message still arriving in fragments (at most
        ``max_frame_bytes``, however the message is cut up)."""
        return 0 if self._message is None else len(self._message)

    async def receive(self) -> ClientFrame | RemoteProtocolError | Overhead | None:
        while True:
            event = self._peek()
            if event is None:
                if self._closed:
                    return None
                await self.fill()
                continue
            self._ahead = None
            if type(event) is str or type(event) is bytes:
                return self._decode(event)
            item = await self._on_event(event)  # type: ignore[arg-type]  # (an Event)
            if item is not None:
                return item

    def receive_ready(self) -> list[Ready]:
        """What :meth:`receive` would return, call after call, for the frames that have
        arrived, as far as none needs an answer, without reading the socket (empty when
        none has, nor the end); whole messages that are plain ``say`` frames one after
        another as one :class:`~trio_chat.protocol.SayLines` (decoded together, as a TCP
        link's lines are). A frame that needs an answer or waits (a ping, a close, a
        fragment, one wsproto refuses) ends the list as :data:`~.link.LINK_TURN`, left for
        :meth:`receive`, which the reader then awaits for it."""
        items: list[Ready] = []
        messages: list[str | bytes] = []
        while True:
            event = self._peek()
            if event is None:
                break
            kind = type(event)
            if kind is str or kind is bytes:
                self._ahead = None
                messages.append(event)  # type: ignore[arg-type]  # (str or bytes)
                pending = self._pending
                if pending is not None:  # and every message after it that arrived with it
                    messages += pending[self._taken :]
                    self._pending = None
                continue
            if (
                isinstance(event, WsMessage)
                and event.message_finished
                and not self._fragments
                and not self._message_size
            ):
                self._ahead = None
                messages.append(event.data)
                continue
            if messages:
                items += self._decode_all(messages)
                messages = []
            if kind is Pong:
                self._ahead = None
                items.append(_PONG)
                continue
            items.append(LINK_TURN)  # (left in _ahead for receive)
            return items
        if messages:
            items += self._decode_all(messages)
        if not items and self._closed:
            return [None]
        return items

    def _decode_all(self, messages: list[str | bytes]) -> list[Ready]:
        """What :meth:`_decode` makes of each whole message, in one loop (see
        :func:`~trio_chat.protocol.decode_client_lines`), plain says one after another as
        one :class:`~trio_chat.protocol.SayLines`."""
        alone = self._decoded_alone
        for message in messages:
            if alone(message):
                break  # one to decode on its own: not all of them in one go
        else:
            # (decode_client_lines takes a str as it takes bytes: orjson reads both.)
            return decode_client_lines(messages)  # type: ignore[arg-type,return-value]
        items: list[Ready] = []
        run: list[str | bytes] = []
        for message in messages:
            if alone(message):
                if run:
                    items += decode_client_lines(run)  # type: ignore[arg-type]
                    run = []
                items.append(self._decode(message))
            else:
                run.append(message)
        if run:
            items += decode_client_lines(run)  # type: ignore[arg-type]
        return items

    def _decoded_alone(self, message: str | bytes) -> bool:
        """Whether ``message`` is decoded on its own (:meth:`_decode`): blank, or over
        ``max_frame_bytes``."""
        return not message.strip() or self._oversize(message) > 0

    def _oversize(self, message: str | bytes) -> int:
        """``message``'s size in bytes if it is over ``max_frame_bytes``, else 0."""
        limit = self.max_frame_bytes
        if len(message) > limit >> 2:  # (fewer characters are within the limit in UTF-8)
            size = self._size(message)
            if size > limit:
                return size
        return 0

    @staticmethod
    def _size(message: str | bytes) -> int:
        """A message's size in bytes (a text one's in UTF-8)."""
        return len(message.encode() if isinstance(message, str) else message)

    async def fill(self) -> None:
        if self._closed:
            return
        fd = self.park_fd
        self.feed(await (receive_or_end(self.stream) if fd is None else receive_on_fd(fd)))

    def feed(self, data: bytes | bytearray) -> None:
        if self._closed:
            return
        if not data:
            self._closed = True
            return
        self.last_heard = trio.current_time()
        self._parse(bytes(data))

    async def _on_event(self, event: Event) -> ClientFrame | RemoteProtocolError | Overhead | None:
        """What one wsproto event means for the reader (``None``: nothing yet, read on)."""
        if isinstance(event, WsMessage):
            data = event.data
            if event.message_finished and not self._fragments and not self._message_size:
                return self._decode(data)  # a whole message in one frame: the usual case
            return await self._fragment(data, event.frame_finished, event.message_finished)
        if isinstance(event, Ping):
            ws = self._parser()
            if ws.state is ConnectionState.OPEN:
                await self._write(ws.send(event.response()))
            return _PING
        if isinstance(event, Pong):
            return _PONG
        if isinstance(event, CloseConnection):
            # The peer closes (or sent something wsproto refuses, given here as the close
            # it calls for): answer, and read no more.
            await self._close(event.code, event.reason or "")
        return None

    async def _fragment(
        self, data: str | bytes, frame_finished: bool, message_finished: bool
    ) -> ClientFrame | RemoteProtocolError | Overhead | None:
        """Add a piece of a message that comes in several frames, or in several reads."""
        if not self._message_size and not self._fragments:
            self._message_text = isinstance(data, str)
        chunk = data.encode() if isinstance(data, str) else data
        self._message_size += len(chunk)
        if self._message_size > WS_HARD_LIMIT:
            await self._close(CloseReason.MESSAGE_TOO_BIG, "message too big")
            return None
        if self._message_size <= self.max_frame_bytes:
            if self._message is None:
                self._message = bytearray()
            self._message += chunk
        else:  # it will be refused: keep counting, stop keeping
            self._message = None
        if message_finished:
            size, message = self._message_size, bytes(self._message or b"")
            self._message, self._message_size, self._fragments = None, 0, 0
            if size > self.max_frame_bytes:
                return self._too_large(size)
            return self._decode(message.decode() if self._message_text else message)
        if not frame_finished:
            return None  # the rest of this frame is still on its way
        self._fragments += 1
        if self._fragments >= WS_MAX_FRAGMENTS:  # and this one did not finish the message
            await self._close(
                CloseReason.POLICY_VIOLATION,
                f"message in more than {WS_MAX_FRAGMENTS} fragments",
            )
            return None
        return _FRAGMENT

    def _too_large(self, size: int) -> RemoteProtocolError:
        return RemoteProtocolError(
            "frame_too_large", f"message of {size} bytes is over {self.max_frame_bytes}"
        )

    def _decode(self, message: str | bytes) -> ClientFrame | RemoteProtocolError:
        size = self._oversize(message)
        if size:
            return self._too_large(size)
        try:
            return decode_client_frame(message)
        except RemoteProtocolError as exc:
            return exc

    async def send(self, events: list[Item]) -> int:
        await self._write(self._encoded(events))
        measure = self.measure
        return sum(measure(item) for item in events)

    def write_nowait(self, events: list[Item]) -> bytes | None:
        lock = self._send_lock
        fd = idle_fd(self.stream)
        if (lock is not None and lock.locked()) or fd is None:
            return None
        return write_all_nowait(fd, self._encoded(events))

    def _encoded(self, events: list[Item]) -> bytes:
        if len(events) == 1 or not self._batching:
            fmt = self.format
            if len(events) == 1:
                return encoded(events[0], fmt)
            return b"".join([encoded(item, fmt) for item in events])
        return b"".join(_batched(events))

    def _write_nowait(self, parcel: Parcel) -> bytes:
        """For a plain socket (``write_now``): write a parcel without waiting, returning
        the part the kernel did not take (all of it while another write is under way:
        it is queued). The hub calls this once per receiver of every message: the
        encoding's cache is looked up here, as :meth:`TcpLink._write_direct` does."""
        fmt = self.format
        data = parcel.wire.get(fmt.name)
        if not isinstance(data, bytes):
            data = encoded(parcel, fmt)
        fd, lock = self.park_fd, self._send_lock
        if (lock is not None and lock.locked()) or self._closed or fd is None:
            return data  # another write is under way: queue it
        return write_nowait(fd, data)

    async def _write(self, data: bytes) -> None:
        lock = self._send_lock
        if lock is None:
            lock = self._send_lock = trio.Lock()
        try:
            lock.acquire_nowait()  # no scheduling round when nobody else writes
        except trio.WouldBlock:
            await lock.acquire()
        try:
            await self.stream.send_all(data)
        finally:
            lock.release()

    async def _close(self, code: int, reason: str) -> None:
        """Send a close frame if the WebSocket is still open (best effort), then stop reading."""
        self._closed = True
        self._events = self._ahead = self._pending = None
        self._message = None
        ws = self._parser()
        if ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._write(ws.send(CloseConnection(code=code, reason=reason)))

    async def prompt_nick(self) -> None:
        return None

    async def aclose(self) -> None:
        await self._close(CloseReason.NORMAL_CLOSURE, "")
        await self.stream.aclose()

    def close_nowait(self) -> bool:
        """At once only when no close frame is owed (the closing handshake is done): a
        plain socket's close then needs no waiting."""
        ws = self.ws
        if ws is None or ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return False
        return closed_now(self.stream)

    def abort(self) -> None:
        close_now(self.stream)


def websocket_ping() -> ServerEvent:
    """A keepalive ping: a WebSocket ping frame (one function for every link)."""
    return Raw(data=WEBSOCKET_KEEPALIVE_PING)


def _batched(items: list[Item]) -> list[bytes]:
    """Frames for a batching client: each run of events as one ``batch`` message (a lone
    event as itself); bytes already framed (``Raw``: a ping, the rest of a direct write)
    go out as they are, in their place."""
    frames: list[bytes] = []
    run: list[Item] = []
    for item in [*items, None]:
        payload = item.event if isinstance(item, Parcel) else item
        if item is not None and not isinstance(payload, Raw):
            run.append(item)
            continue
        if len(run) == 1:
            frames.append(encoded(run[0], WEBSOCKET_BATCH_FRAMES))
        elif run:
            frames.append(batch_frame(run))
        run = []
        if isinstance(payload, Raw):
            frames.append(payload.data)
    return frames


def batch_frame(items: list[Item]) -> bytes:
    """One WebSocket frame holding a ``batch`` message of the events of ``items``."""
    return websocket_text_frame(batch_text(items).encode())


async def read_head(stream: trio.abc.Stream) -> bytes | None:
    """Read up to the end of the HTTP request head (bounded in size); ``None`` on failure."""
    head = b""
    while b"\r\n\r\n" not in head:
        if len(head) > MAX_HEAD_BYTES:
            return None
        data = await stream.receive_some(MAX_HEAD_BYTES)
        if not data:
            return None
        head += data
    return head


def parse_request(head: bytes) -> h11.Request | None:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    return event if isinstance(event, h11.Request) else None


def is_websocket_upgrade(request: h11.Request) -> bool:
    headers = {name.lower(): value.lower() for name, value in request.headers}
    return headers.get(b"upgrade") == b"websocket"


#: The browser page's files, the only ones served: request path -> (file in the
#: ``trio_chat.web`` package, Content-Type). Anything else is a 404, so no request path is
#: ever joined to a file name (no traversal, no dotfiles, no Python source).
WEB_FILES: dict[bytes, tuple[str, str]] = {
    b"/": ("index.html", "text/html; charset=utf-8"),
    b"/index.html": ("index.html", "text/html; charset=utf-8"),
    b"/style.css": ("style.css", "text/css; charset=utf-8"),
    **{
        f"/{name}".encode(): (name, "text/javascript; charset=utf-8")
        for name in (
            "app.js",
            "chat.js",
            "frames.js",
            "connection.js",
            "conversations.js",
            "view.js",
            "input.js",
            "format.js",
            "storage.js",
            "messages.js",
            "composer.js",
            "changes.js",
            "typing.js",
            "search.js",
        )
    },
}


def web_file(name: str) -> bytes:
    return resources.files("trio_chat.web").joinpath(name).read_bytes()


def page() -> bytes:
    return web_file("index.html")


#: The page loads nothing from elsewhere and talks only to its own server.
SECURITY_HEADERS: tuple[Header, ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; img-src 'self' data:",
    ),
)
#: The headers of every answer on this port, after Content-Type and Content-Length.
_HEADERS: tuple[Header, ...] = (("Cache-Control", "no-cache"), CONNECTION_CLOSE, *SECURITY_HEADERS)


def http_response(request: h11.Request | None) -> bytes:
    """The whole HTTP/1.1 response for a non-WebSocket request: the page for ``GET /``,
    and its files (:data:`WEB_FILES`)."""
    if request is None:
        return http_error(400, b"bad request\n")
    if request.method not in (b"GET", b"HEAD"):
        # RFC 9110 section 15.5.6: a 405 says which methods the resource has.
        return response(405, b"method not allowed\n", headers=(("Allow", "GET, HEAD"), *_HEADERS))
    head_only = request.method == b"HEAD"
    found = WEB_FILES.get(request.target.split(b"?")[0])
    if found is None:
        return http_error(404, b"not found\n", head_only=head_only)
    name, content_type = found
    return response(
        200, web_file(name), content_type=content_type, headers=_HEADERS, head_only=head_only
    )


def http_error(status: int, body: bytes, *, head_only: bool = False) -> bytes:
    """A complete plain-text HTTP response with ``status``: its body too, unless it answers
    a ``HEAD`` (``head_only``), whose answer is the head alone (RFC 9110 section 9.3.2)."""
    return response(status, body, headers=_HEADERS, head_only=head_only)


async def handle_ws_port(server: ChatHost, stream: trio.SocketStream) -> None:
    """One connection to the WebSocket port: upgrade to chat, or serve the page (see
    :func:`serve_accepted`)."""
    await serve_accepted(server, stream, open_ws_link, refused_response)


def refused_response(reason: str) -> bytes:
    return http_error(503, f"{reason}\n".encode())


async def open_ws_link(
    server: ChatHost, stream: trio.SocketStream, arrival: Arrival
) -> WebSocketLink | None:
    """TLS (if on), the HTTP request head, then the page (``None``: done; the caller
    closes the stream) or the upgraded WebSocket to chat over. From a trusted proxy the
    client's address comes from the head (:func:`forwarded_address`), and the connection
    is admitted to the limits with it before anything is served."""
    web_stream: trio.abc.Stream = stream
    head: bytes | None = None
    routes: Mapping[str, RouteSpec] | None = None  # a plugin's, for the request's path
    with trio.move_on_after(HEAD_TIMEOUT):
        if server.ssl_context is not None:
            tls = await accept_tls(stream, server.ssl_context)
            if tls is None:
                return None
            web_stream = tls
        head = await read_head(web_stream)
        request = parse_request(head) if head else None
        if arrival.proxied:
            address = forwarded_address(request, arrival.peer, server.proxy_trust)
            if not await arrival.admit(address, web_stream):
                return None
        if request is None or not is_websocket_upgrade(request):
            if request is not None:
                routes = server.routes.find(request_parts(request.target)[0])
            if routes is None:
                await web_stream.send_all(http_response(request))
                return None
    if head is None:
        return None
    if routes is not None:  # bounded by time limits of its own (see webroutes.py)
        await serve_route(web_stream, head, routes, arrival.address, server.config.plugin_timeout)
        return None
    end = head.index(b"\r\n\r\n") + 4
    ws = accept_websocket(head[:end])
    if ws is None:
        await web_stream.send_all(http_error(400, b"bad WebSocket handshake\n"))
        return None
    accept = ws.send(AcceptConnection())
    # From here on the link parses frames with a parser lent when bytes come (see
    # wsframes): the handshake's objects all go, its frame parser with them.
    del ws
    await web_stream.send_all(accept)
    return WebSocketLink(
        kept_stream(web_stream),
        arrival.address,
        server.config.max_frame_bytes,
        already_received=head[end:],
    )


def forwarded_address(request: h11.Request | None, peer: str, trust: ProxyTrust) -> str:
    """The client's ``host:port`` as the trusted proxy ``peer`` reports it in
    ``X-Forwarded-For`` or ``Forwarded`` (see :func:`~trio_chat.proxyproto.client_from_headers`;
    the port is 0 when the header has none), or ``peer`` itself when it reports nobody."""
    client = None if request is None else client_from_headers(request.headers, trust)
    return peer if client is None else format_address(*client)


def accept_websocket(head: bytes) -> WSConnection | None:
    """A server-side WebSocket for the upgrade request ``head``, ready to accept; ``None``
    if the request is not a valid handshake. (wsproto's server drops bytes that follow the
    request, so the caller hands those to the link itself.)"""
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.receive_data(head)
        if any(isinstance(event, Request) for event in ws.events()):
            return ws
    except HandshakeRefused:
        pass
    return None


async def serve_websocket_chat(
    server: ChatHost,
    handler_nursery: trio.Nursery,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on the WebSocket/HTTP port forever."""
    assert server.config.ws_port is not None
    scheme = "ws" if server.ssl_context is None else "wss"
    await serve_port(
        server.config.host,
        server.config.ws_port,
        scheme,
        functools.partial(handle_ws_port, server),
        handler_nursery,
        task_status=task_status,
    )
