"""The frames issue 18 added to the protocol, as the terminal client reads and writes them.

The wire format is the contract (docs/protocol.md). The client reads replies, edits,
deletes and reactions into :mod:`trio_chat.protocol`'s classes (``MessageEdited``,
``MessageDeleted``, ``Reaction``; typing notices, read markers and search results are its
``Typing``, ``ReadMarker`` and ``SearchResults``), each field's JSON type checked here
(a broken frame is an error, not a crash), and writes those frames as plain JSON objects
(:class:`WireFrame`), so that it speaks exactly what the protocol says whatever a server's
Python classes are called, and meets an older server gracefully: an unknown field is
ignored by the server, a field left out reads as "none" here.

:class:`ChatMessage` is a ``message`` with every field a message may now carry, live or in
a ``history`` page (a reply's ``quote``, ``edited``, ``deleted``,
``reactions``, ``changed``): it *is* a :class:`~trio_chat.protocol.Message`, so the rest of
the client treats it as one. :func:`decode_event` is the one way the client turns the
server's bytes into an event. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import orjson

from ..protocol import (
    ClientFrame,
    Message,
    MessageDeleted,
    MessageEdited,
    Reaction,
    RemoteProtocolError,
    ServerEvent,
    decode_server_event,
    encode_client_frame,
    server_event_from_dict,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatMessage(Message):
    """A room message with what issue 18 added; each field ``None`` when the server left
    it out (not a reply, never edited, ...)."""

    #: The id of the message this one replies to, and that message's author and text
    #: (``{"nick", "text"}``, the text cut to 100 characters).
    reply_to: int | None = None
    quote: dict[str, Any] | None = None
    #: History only: when it was last edited; ``True`` once deleted (its text is then "");
    #: emoji -> nicks, in order of reacting; the id of its latest change.
    edited: float | None = None
    deleted: bool | None = None
    reactions: dict[str, list[str]] | None = None
    changed: int | None = None


_EVENTS: dict[str, type[ServerEvent]] = {
    cls.TYPE: cls for cls in (MessageEdited, MessageDeleted, Reaction)
}
#: Field -> the JSON types it may hold (anything else is a broken frame, not a crash).
_INTS = frozenset({"id", "target", "reply_to", "changed"})
_CHECKS: dict[str, tuple[type, ...]] = {
    **{name: (int,) for name in _INTS},
    "ts": (int, float),
    "edited": (int, float),
    "room": (str,),
    "nick": (str,),
    "text": (str,),
    "emoji": (str,),
    "on": (bool,),
    "deleted": (bool,),
    "quote": (dict,),
    "reactions": (dict,),
}


_FIELD_NAMES: dict[type[ServerEvent], frozenset[str]] = {}


def _field_names(cls: type[ServerEvent]) -> frozenset[str]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in fields(cls))
    return names


def event_from_dict(obj: dict[str, Any]) -> ServerEvent:
    """The event a decoded JSON object stands for: a ``message`` as a
    :class:`ChatMessage`, issue 18's events as this module's classes, the rest as
    :func:`~trio_chat.protocol.server_event_from_dict` has them. Unknown fields are
    ignored. Raises :class:`RemoteProtocolError` for an unknown type or a bad field."""
    kind = obj.get("type")
    cls = ChatMessage if kind == "message" else _EVENTS.get(str(kind))
    if cls is None:
        return server_event_from_dict(obj)
    names = _field_names(cls)
    values = {k: v for k, v in obj.items() if k in names}
    for name, value in values.items():
        allowed = _CHECKS.get(name)
        if allowed is None or value is None:
            continue
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise RemoteProtocolError("bad_field", f"bad {kind} frame: field {name!r}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise RemoteProtocolError("missing_field", f"bad {kind} frame: {exc}") from None


def decode_event(data: bytes | str) -> ServerEvent:
    """Parse one server frame (a JSON line or a WebSocket message); see
    :func:`event_from_dict`."""
    return decode_server_event(data, event_from_dict)


@dataclass(frozen=True, slots=True)
class WireFrame:
    """A client frame as its JSON object: ``{"type": kind, **fields}`` (``None`` fields
    left out). For the frames issue 18 added and the fields it added to old ones."""

    kind: str
    fields: dict[str, Any]
    ref: str | None = None

    def __repr__(self) -> str:
        # Like Hello's: a password is never shown in a repr or a log.
        shown = {k: ("***" if k == "password" and v else v) for k, v in self.fields.items()}
        return f"WireFrame({self.kind!r}, {shown!r}, ref={self.ref!r})"

    @property
    def room(self) -> str | None:
        room = self.fields.get("room")
        return room if isinstance(room, str) else None

    def to_dict(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"type": self.kind}
        obj.update((k, v) for k, v in self.fields.items() if v is not None)
        if self.ref is not None:
            obj["ref"] = self.ref
        return obj

    def encode(self) -> bytes:
        """One JSON line."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_APPEND_NEWLINE)

    def with_fields(self, **fields: Any) -> WireFrame:
        return WireFrame(self.kind, {**self.fields, **fields}, self.ref)


#: Any frame the client sends.
Outgoing = ClientFrame | WireFrame


def encode_frame(frame: Outgoing) -> bytes:
    """One frame as a JSON line."""
    if isinstance(frame, WireFrame):
        return frame.encode()
    return encode_client_frame(frame)


def changed_items(messages: list[Any]) -> list[dict[str, Any]]:
    """The items of a ``history`` page that carry an ``id`` and the ``changed`` id of
    their latest edit, delete or reaction (an answer to ``changed_after``)."""
    return [
        m
        for m in messages
        if isinstance(m, dict)
        and isinstance(m.get("id"), int)
        and isinstance(m.get("changed"), int)
        and not isinstance(m.get("changed"), bool)
    ]
