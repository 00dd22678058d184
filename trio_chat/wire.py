"""Wire formats: how a server event becomes bytes (or text) for one kind of connection.

A :class:`WireFormat` is chosen per connection (JSON lines, plain text, WebSocket JSON).
:func:`encoded` caches the result on the hub's :class:`~trio_chat.parcels.Parcel` (one per
fan-out, queued as it is by every receiver), so however many receivers share a format, a
fanned-out message is encoded once per format and the same bytes object is written to
every socket. The events themselves stay plain values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .parcels import Bundle, Gathered, Item, Parcel, Payload, Raw
from .protocol import (
    Error,
    ServerEvent,
    encode_server_event,
    encode_server_line,
    encode_server_lines,
)
from .store.health import LogLimiter
from .textmode import render_text

T = TypeVar("T", bytes, str)

log = logging.getLogger("trio_chat.wire")

#: What a receiver gets in place of an event that cannot be encoded (a plugin built it
#: with a value JSON has no form for, say): the others in the fan-out, and the server,
#: go on as if it were any event.
UNSENDABLE = Error(
    code="plugin_error",
    text="the server could not send you something a plugin made (it was logged)",
)
_unsendable_log = LogLimiter(window=60.0)


@dataclass(frozen=True, slots=True)
class WireFormat(Generic[T]):
    """A named encoding of server events; the name keys a parcel's cache.

    ``encode_bundle`` encodes a :class:`~trio_chat.parcels.Bundle` as a whole; without it
    a bundle is its events' encodings one after another.
    """

    name: str
    encode: Callable[[ServerEvent], T]
    encode_bundle: Callable[[Bundle], T] | None = None
    #: Without ``encode_bundle``: a bundle's events encoded one after another in one call
    #: (what ``encode`` gives each, joined), which costs less than a call for each.
    encode_each: Callable[[tuple[ServerEvent, ...]], T] | None = None

    def __call__(self, item: Item) -> T:
        return encoded(item, self)


def encoded(item: Item, fmt: WireFormat[T]) -> T:
    """The item encoded in ``fmt``: for a :class:`~trio_chat.parcels.Parcel`, computed at
    most once per format and kept on the parcel; anything else (an event for one
    connection alone) is encoded as it comes.

    A bundle encodes as its events one after another (for a WebSocket format that is only
    its size: the transport sends each event as a message), unless the format says
    otherwise.
    """
    if isinstance(item, Parcel):
        cache = item.wire
        cached = cache.get(fmt.name)
        if cached is None:
            fresh = cache[fmt.name] = _encode(item.event, fmt)
            return fresh
        return cached  # type: ignore[return-value]  # same format name, same type
    return _encode(item, fmt)


def _encode(payload: Payload, fmt: WireFormat[T]) -> T:
    if type(payload) is Gathered and fmt.encode_bundle is None:
        # Each parcel's encoding as it is cached for its whole fan-out.
        parts = [encoded(parcel, fmt) for parcel in payload.parcels]
        return parts[0][:0].join(parts)
    if isinstance(payload, Bundle):
        if fmt.encode_bundle is not None:
            try:
                return fmt.encode_bundle(payload)
            except Exception:  # one event spoils the whole batch: send the rest without it
                events = tuple(_sendable(event, fmt) for event in payload.events)
                return fmt.encode_bundle(Bundle(events))
        if fmt.encode_each is not None:
            try:
                return fmt.encode_each(payload.events)
            except Exception:  # one at a time below, the one that fails replaced
                pass
        parts = [_encode_event(event, fmt) for event in payload.events]
        return parts[0][:0].join(parts)  # bytes or str, as the format gives
    return _encode_event(payload, fmt)


def _encode_event(event: ServerEvent, fmt: WireFormat[T]) -> T:
    """One event in ``fmt``, or :data:`UNSENDABLE` in its place if it cannot be encoded.

    Encoding happens as a connection is written to, far from whoever made the event: an
    exception here would end the fan-out, or the server. Plugins reach the hub
    (``ctx.hub.send_to``) and may hand it any value, so a failure is contained here, for
    every path at once, and costs nothing while nothing fails.
    """
    try:
        return fmt.encode(event)
    except Exception:
        return fmt.encode(_unsendable(event, fmt))


def _sendable(event: ServerEvent, fmt: WireFormat[T]) -> ServerEvent:
    try:
        fmt.encode(event)
    except Exception:
        return _unsendable(event, fmt)
    return event


def _unsendable(event: ServerEvent, fmt: WireFormat[T]) -> ServerEvent:
    left_out = _unsendable_log.hit(time.monotonic())
    if left_out is not None:
        log.exception(
            "could not encode a %s event for %s (sent an error instead; %d more not logged)",
            type(event).__name__,
            fmt.name,
            left_out,
        )
    return UNSENDABLE


def _json_line(event: ServerEvent) -> bytes:
    if isinstance(event, Raw):
        return event.data
    return encode_server_line(event)


def _json_lines(events: tuple[ServerEvent, ...]) -> bytes:
    return encode_server_lines(events, _json_line)


def _text_line(event: ServerEvent) -> bytes:
    if isinstance(event, Raw):
        return event.data
    line = render_text(event)
    return line.encode() + b"\n" if line else b""


#: One compact JSON object per line (TCP clients that speak the protocol).
JSON_LINES: WireFormat[bytes] = WireFormat("json-lines", _json_line, encode_each=_json_lines)
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
    # (encode_server_event's text as bytes: its JSON line without the newline.)
    return websocket_text_frame(encode_server_line(event)[:-1])


def _batch_elements(bundle: Bundle) -> str:
    return ",".join([encode_server_event(event) for event in bundle.events])


#: The events of an item as the elements of a ``batch`` message's list, comma-separated
#: (only a step to :func:`batch_text`: kept per parcel, so a backlog of several parcels
#: is joined into one ``batch`` without encoding any event again).
_BATCH_ELEMENTS: WireFormat[str] = WireFormat(
    "ws-batch-elements", encode_server_event, _batch_elements
)


def batch_text(items: Sequence[Item]) -> str:
    """The text of one ``batch`` message holding the events of ``items``, each as it would
    be sent alone."""
    parts = [encoded(item, _BATCH_ELEMENTS) for item in items]
    return '{"type":"batch","events":[' + ",".join(parts) + "]}"


def _ws_batch_bundle(bundle: Bundle) -> bytes:
    """``websocket_text_frame(batch_text([bundle]).encode())``, from the events' JSON
    lines made in one loop (:func:`~trio_chat.protocol.encode_server_lines`, as a TCP
    client's bundle is): compact JSON has no raw newline, so the newlines are exactly
    where one event ends, and each becomes the comma between two (the same bytes:
    tests/test_ws_runs.py checks). A bundle of lines said together is one ``batch``
    message to every batching receiver: an event at a time, it was a third of what a
    WebSocket delivery cost."""
    lines = encode_server_lines(bundle.events)
    return websocket_text_frame(
        b'{"type":"batch","events":[' + lines[:-1].replace(b"\n", b",") + b"]}"
    )


#: Each event as a complete WebSocket frame, ready for the socket: one message per event.
WEBSOCKET_FRAMES: WireFormat[bytes] = WireFormat("ws-frames", _ws_frame)
#: The same for a client that asked for ``batch`` messages: a bundle is one ``batch`` frame.
WEBSOCKET_BATCH_FRAMES: WireFormat[bytes] = WireFormat(
    "ws-batch-frames", _ws_frame, _ws_batch_bundle
)


_SIZERS: dict[str, Callable[[Item], int]] = {}


def sizer(fmt: WireFormat[T]) -> Callable[[Item], int]:
    """The one function giving an item's encoded size in ``fmt`` (encoding it, cached on
    a parcel).

    Every connection of a format shares it, so a :class:`~trio_chat.parcels.Parcel` keeps
    an item's size once per format rather than once per receiver.
    """
    known = _SIZERS.get(fmt.name)
    if known is not None:
        return known

    name = fmt.name

    def size(item: Item) -> int:
        # len(encoded(item, fmt)) with the cache lookup inlined: the writer measures
        # what it wrote, and a parcel's encoding is nearly always there already.
        if isinstance(item, Parcel):
            data = item.wire.get(name)
            if data is not None:
                return len(data)
        return len(encoded(item, fmt))

    _SIZERS[fmt.name] = size
    return size
