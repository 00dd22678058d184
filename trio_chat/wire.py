"""Wire formats: how a server event becomes bytes (or text) for one kind of connection.

A :class:`WireFormat` is chosen per connection (JSON lines, plain text, WebSocket JSON).
:func:`encoded` caches the result on the event itself, so however many receivers share a
format, a fanned-out message is encoded once per format and the same bytes object is
written to every socket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .protocol import Bundle, Raw, ServerEvent, encode_server_event, encode_server_line
from .textmode import render_text

T = TypeVar("T", bytes, str)


@dataclass(frozen=True, slots=True)
class WireFormat(Generic[T]):
    """A named encoding of server events; the name keys the per-event cache.

    ``encodes_bundles``: ``encode`` handles a :class:`~trio_chat.protocol.Bundle` itself
    (otherwise a bundle is its events' encodings one after another).
    """

    name: str
    encode: Callable[[ServerEvent], T]
    encodes_bundles: bool = False

    def __call__(self, event: ServerEvent) -> T:
        return encoded(event, self)


def encoded(event: ServerEvent, fmt: WireFormat[T]) -> T:
    """The event encoded in ``fmt``, computed at most once per event and format.

    A :class:`~trio_chat.protocol.Bundle` encodes as its events one after another (for a
    WebSocket format that is only its size: the transport sends each event as a message).
    """
    cached = event.wire.get(fmt.name)
    if cached is None:
        if isinstance(event, Bundle) and not fmt.encodes_bundles:
            parts = [encoded(e, fmt) for e in event.events]
            fresh = parts[0][:0].join(parts)  # bytes or str, as the format gives
        else:
            fresh = fmt.encode(event)
        event.wire[fmt.name] = fresh
        return fresh
    return cached  # type: ignore[return-value]  # same format name, same type


def _json_line(event: ServerEvent) -> bytes:
    if isinstance(event, Raw):
        return event.data
    return encode_server_line(event)


def _text_line(event: ServerEvent) -> bytes:
    if isinstance(event, Raw):
        return event.data
    return render_text(event).encode() + b"\n"


#: One compact JSON object per line (TCP clients that speak the protocol).
JSON_LINES: WireFormat[bytes] = WireFormat("json-lines", _json_line)
#: One human-readable line per event (``nc`` and other plain line clients).
TEXT_LINES: WireFormat[bytes] = WireFormat("text-lines", _text_line)
#: One JSON object per WebSocket text message: the message's text.
WEBSOCKET_JSON: WireFormat[str] = WireFormat("ws-json", encode_server_event)


def websocket_text_frame(payload: bytes) -> bytes:
    """A whole, unmasked WebSocket text frame (RFC 6455 5.2) as a server sends it."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


#: The ping frame the server's keepalive sends (opcode 9, payload "keepalive").
WEBSOCKET_KEEPALIVE_PING = bytes((0x89, 9)) + b"keepalive"


def _ws_frame(event: ServerEvent) -> bytes:
    if isinstance(event, Raw):
        return event.data
    return websocket_text_frame(encoded(event, WEBSOCKET_JSON).encode())


def batch_text(events: list[ServerEvent]) -> str:
    """The text of one ``batch`` message holding ``events``, each as it would be sent alone."""
    parts = [encoded(event, WEBSOCKET_JSON) for event in events]
    return '{"type":"batch","events":[' + ",".join(parts) + "]}"


def _ws_batch_frame(event: ServerEvent) -> bytes:
    if isinstance(event, Bundle):
        return websocket_text_frame(batch_text(list(event.events)).encode())
    return encoded(event, WEBSOCKET_FRAMES)


#: Each event as a complete WebSocket frame, ready for the socket: one message per event.
WEBSOCKET_FRAMES: WireFormat[bytes] = WireFormat("ws-frames", _ws_frame)
#: The same for a client that asked for ``batch`` messages: a bundle is one ``batch`` frame.
WEBSOCKET_BATCH_FRAMES: WireFormat[bytes] = WireFormat(
    "ws-batch-frames", _ws_batch_frame, encodes_bundles=True
)


_SIZERS: dict[str, Callable[[ServerEvent], int]] = {}


def sizer(fmt: WireFormat[T]) -> Callable[[ServerEvent], int]:
    """The one function giving an event's encoded size in ``fmt`` (encoding it, cached).

    Every connection of a format shares it, so the hub can size an event once per format
    rather than once per receiver.
    """
    known = _SIZERS.get(fmt.name)
    if known is not None:
        return known

    name = fmt.name

    def size(event: ServerEvent) -> int:
        # len(encoded(event, fmt)) with the cache lookup inlined: a mailbox with a backlog
        # measures every event offered to it, and all but the first find it cached.
        data = event.wire.get(name)
        return len(encoded(event, fmt) if data is None else data)

    _SIZERS[fmt.name] = size
    return size
