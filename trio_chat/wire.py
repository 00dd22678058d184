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

from .protocol import Bundle, Raw, ServerEvent, encode_server_event
from .textmode import render_text

T = TypeVar("T", bytes, str)


@dataclass(frozen=True, slots=True)
class WireFormat(Generic[T]):
    """A named encoding of server events; the name keys the per-event cache."""

    name: str
    encode: Callable[[ServerEvent], T]

    def __call__(self, event: ServerEvent) -> T:
        return encoded(event, self)


def encoded(event: ServerEvent, fmt: WireFormat[T]) -> T:
    """The event encoded in ``fmt``, computed at most once per event and format.

    A :class:`~trio_chat.protocol.Bundle` encodes as its events one after another (for a
    WebSocket format that is only its size: the transport sends each event as a message).
    """
    cached = event.wire.get(fmt.name)
    if cached is None:
        if isinstance(event, Bundle):
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
    return encode_server_event(event).encode() + b"\n"


def _text_line(event: ServerEvent) -> bytes:
    if isinstance(event, Raw):
        return event.data
    return render_text(event).encode() + b"\n"


#: One compact JSON object per line (TCP clients that speak the protocol).
JSON_LINES: WireFormat[bytes] = WireFormat("json-lines", _json_line)
#: One human-readable line per event (``nc`` and other plain line clients).
TEXT_LINES: WireFormat[bytes] = WireFormat("text-lines", _text_line)
#: One JSON object per WebSocket text message.
WEBSOCKET_JSON: WireFormat[str] = WireFormat("ws-json", encode_server_event)


_SIZERS: dict[str, Callable[[ServerEvent], int]] = {}


def sizer(fmt: WireFormat[T]) -> Callable[[ServerEvent], int]:
    """The one function giving an event's encoded size in ``fmt`` (encoding it, cached).

    Every connection of a format shares it, so the hub can size an event once per format
    rather than once per receiver.
    """
    known = _SIZERS.get(fmt.name)
    if known is not None:
        return known

    def size(event: ServerEvent) -> int:
        return len(encoded(event, fmt))

    _SIZERS[fmt.name] = size
    return size
