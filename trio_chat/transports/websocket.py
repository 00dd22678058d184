"""WebSocket transport and the browser page, on one port.

trio-websocket's own ``serve_websocket`` answers a plain ``GET`` with 400 and dies with the
first handler that raises (see ``shared/LIBRARIES.md``), so this module accepts TCP itself,
reads the HTTP request head, and then either upgrades (replaying the head into
``trio_websocket.wrap_server_stream``) or serves the page with h11. Each connection's
WebSocket reader task runs in that connection's own nursery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING

import h11
import trio
import trio_websocket

from ..protocol import (
    Bundle,
    ClientFrame,
    RemoteProtocolError,
    ServerEvent,
    decode_client_frame,
)
from ..wire import WEBSOCKET_JSON, encoded, sizer
from .connection import run_connection
from .streams import ReplayStream, accept_tls, listener_address, peer_address, refuse

if TYPE_CHECKING:
    from ..server import ChatServer

log = logging.getLogger("trio_chat.websocket")

MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT = 10.0
#: Hard WebSocket message cap: beyond it trio-websocket closes with 1009. Below it, a message
#: over the frame limit only gets an error frame and the connection stays open.
WS_HARD_LIMIT = 1024 * 1024


class WebSocketLink:
    """A :class:`~trio_chat.transports.connection.Link` over one WebSocket."""

    transport = "websocket"
    plain_text = False

    def __init__(
        self, ws: trio_websocket.WebSocketConnection, address: str, max_frame_bytes: int
    ) -> None:
        self.ws = ws
        self.address = address
        self.max_frame_bytes = max_frame_bytes
        self.measure = sizer(WEBSOCKET_JSON)
        self.batching = False
        # Every write goes through trio-websocket's own writer.
        self.write_now: Callable[[ServerEvent], bytes] | None = None

    async def receive(self) -> ClientFrame | RemoteProtocolError | None:
        try:
            message = await self.ws.get_message()
        except trio_websocket.ConnectionClosed:
            return None
        size = len(message.encode() if isinstance(message, str) else message)
        if size > self.max_frame_bytes:
            return RemoteProtocolError(
                "frame_too_large", f"message of {size} bytes is over {self.max_frame_bytes}"
            )
        try:
            return decode_client_frame(message)
        except RemoteProtocolError as exc:
            return exc

    async def send(self, events: list[ServerEvent]) -> int:
        parts = [
            encoded(event, WEBSOCKET_JSON)
            for item in events
            for event in (item.events if isinstance(item, Bundle) else (item,))
        ]
        try:
            if self.batching and len(parts) > 1:
                # One WebSocket message for everything queued: each event as it would be
                # sent alone (encoded once for every receiver), in order.
                await self.ws.send_message('{"type":"batch","events":[' + ",".join(parts) + "]}")
            else:
                for part in parts:
                    await self.ws.send_message(part)
        except trio_websocket.ConnectionClosed as exc:
            raise trio.BrokenResourceError("websocket closed") from exc
        return sum(map(len, parts))

    async def prompt_nick(self) -> None:
        return None

    async def keepalive(
        self, idle: float, answer_within: float, send_ping: Callable[[], None]
    ) -> str:
        """WebSocket ping frames, which every client library and browser answers by itself."""
        while True:
            await trio.sleep(idle)
            with trio.move_on_after(answer_within):
                try:
                    await self.ws.ping()
                except trio_websocket.ConnectionClosed:
                    return "connection lost"
                continue
            return "ping timeout"

    async def aclose(self) -> None:
        await self.ws.aclose()


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


def page() -> bytes:
    return resources.files("trio_chat.web").joinpath("index.html").read_bytes()


#: The page loads nothing from elsewhere and talks only to its own server.
SECURITY_HEADERS = (
    b"X-Content-Type-Options: nosniff\r\n"
    b"X-Frame-Options: DENY\r\n"
    b"Referrer-Policy: no-referrer\r\n"
    b"Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
    b"style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:\r\n"
)

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
_TEXT = b"text/plain; charset=utf-8"


def http_response(request: h11.Request | None) -> bytes:
    """The whole HTTP/1.1 response for a non-WebSocket request: the page for ``GET /``."""
    if request is None:
        return http_error(400, b"bad request\n")
    if request.method not in (b"GET", b"HEAD"):
        return http_error(405, b"method not allowed\n")
    if request.target.split(b"?")[0] not in (b"/", b"/index.html"):
        return http_error(404, b"not found\n")
    body = page()
    head = _head(200, b"text/html; charset=utf-8", len(body))
    return head if request.method == b"HEAD" else head + body


def http_error(status: int, body: bytes) -> bytes:
    """A complete plain-text HTTP response with ``status``."""
    return _head(status, _TEXT, len(body)) + body


def _head(status: int, content_type: bytes, length: int) -> bytes:
    return (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n".encode()
        + b"Content-Type: "
        + content_type
        + f"\r\nContent-Length: {length}\r\n".encode()
        + b"Cache-Control: no-cache\r\nConnection: close\r\n"
        + SECURITY_HEADERS
        + b"\r\n"
    )


async def handle_ws_port(server: ChatServer, stream: trio.SocketStream) -> None:
    """One connection to the WebSocket port: upgrade to chat, or serve the page."""
    address = peer_address(stream)
    try:
        with server.connection_slot(address) as refusal:
            if refusal is not None:
                await refuse(stream, http_error(503, f"{refusal}\n".encode()))
                return
            await serve_ws_port_connection(server, stream, address)
    except (
        trio.BrokenResourceError,
        trio.ClosedResourceError,
        trio_websocket.ConnectionClosed,
        trio_websocket.HandshakeError,
    ):
        pass
    except Exception:
        log.exception("websocket connection from %s failed", address)


async def serve_ws_port_connection(
    server: ChatServer, stream: trio.SocketStream, address: str
) -> None:
    """TLS (if on), the HTTP request head, then the page or the WebSocket chat."""
    async with stream:
        web_stream: trio.abc.Stream = stream
        head: bytes | None = None
        with trio.move_on_after(HEAD_TIMEOUT):
            if server.ssl_context is not None:
                tls = await accept_tls(stream, server.ssl_context)
                if tls is None:
                    return
                web_stream = tls
            head = await read_head(web_stream)
            request = parse_request(head) if head else None
            if request is None or not is_websocket_upgrade(request):
                await web_stream.send_all(http_response(request))
                return
        if head is None:
            return
        async with trio.open_nursery() as nursery:
            ws_request = await trio_websocket.wrap_server_stream(
                nursery, ReplayStream(web_stream, head), max_message_size=WS_HARD_LIMIT
            )
            ws = await ws_request.accept()
            await run_connection(server, WebSocketLink(ws, address, server.config.max_frame_bytes))
            nursery.cancel_scope.cancel()


async def serve_websocket_chat(
    server: ChatServer,
    handler_nursery: trio.Nursery,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on the WebSocket/HTTP port forever."""
    cfg = server.config
    assert cfg.ws_port is not None

    async def handler(stream: trio.SocketStream) -> None:
        await handle_ws_port(server, stream)

    listeners = await trio.open_tcp_listeners(cfg.ws_port, host=cfg.host)
    scheme = "ws" if server.ssl_context is None else "wss"
    addresses = [listener_address(scheme, listener) for listener in listeners]
    task_status.started(addresses)
    await trio.serve_listeners(handler, listeners, handler_nursery=handler_nursery)
