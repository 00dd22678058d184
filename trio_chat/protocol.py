"""The trio-chat wire protocol, without any I/O (in the spirit of h11 and wsproto).

Everything a client and a server exchange is a *frame*: a JSON object with a ``"type"``
field. This module defines each frame as a frozen dataclass, turns client frames from bytes
into objects (validating every field), and turns server events into bytes. It never touches
a socket, so every rule here is unit-tested on plain bytes; the transports in
:mod:`trio_chat.transports` are thin trio tasks around it.

``docs/protocol.md`` is the human reference for the same rules; keep the two in step.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, field, fields
from itertools import repeat
from typing import Any, ClassVar, Literal, SupportsIndex, TypeAlias, TypeVar, overload

import orjson

from .errors import ChatError

#: Protocol version announced in the ``welcome`` frame. Bump on incompatible changes.
PROTOCOL_VERSION = 1

#: Default maximum size of one frame (one JSON line, or one WebSocket message), in bytes.
DEFAULT_MAX_FRAME_BYTES = 16 * 1024


# C0 and C1 control characters and DEL, except TAB: a line of chat never holds a newline, an
# escape sequence or a carriage return (each could forge lines or drive a terminal).
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
#: Largest whole number a frame may carry (an SQLite integer).
MAX_FRAME_INT = 2**63 - 1


def find_control_character(text: str) -> str | None:
    """The first forbidden control character in ``text``, or ``None`` if it is clean.

    Lone surrogates (from JSON escapes like ``\\ud800``) count too: they are not text and
    no UTF-8 encoder can send them on.
    """
    if text.isprintable():  # (both kinds are unprintable: the usual text, in C at once)
        return None
    match = _CONTROL_CHARACTERS.search(text)
    return match.group() if match else None


class RemoteProtocolError(ChatError):
    """The peer sent something that breaks the protocol.

    ``code`` is a stable machine-readable token (documented in ``docs/protocol.md``);
    ``message`` (the same as ``text``) is one human-readable line. ``ref`` echoes the
    offending frame's ``ref`` when it could be read, so the client can match the error to
    its request.
    """

    def __init__(self, code: str, message: str, *, ref: str | None = None) -> None:
        super().__init__(code, message, ref=ref)

    @property
    def message(self) -> str:
        return self.text


# --------------------------------------------------------------------------------------
# Client -> server frames
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame of a JSON session: who the user wants to be (and, for an account, the
    password; never shown in a repr or a log)."""

    nick: str
    client: str | None = None
    password: str | None = field(default=None, repr=False)
    #: With ``password``: create the account for ``nick`` (first come, first served).
    register: bool = False
    #: WebSocket only: the client accepts ``batch`` messages holding several events.
    batch: bool = False
    #: The client wants an ``info`` (``data.event`` ``"away"``) when someone sharing a
    #: room with it goes away or comes back (IRC's ``away-notify``); off by default.
    away_notify: bool = False
    #: The client wants ``typing`` events (someone in its rooms is typing); off by default.
    typing: bool = False
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Say:
    """A chat line, sent as-is (a leading ``/`` is *not* a command here)."""

    text: str
    room: str | None = None
    #: The id of a message of the same room this line answers (see :mod:`trio_chat.changes`).
    reply_to: int | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace the text of one's own message ``id`` (of ``room``, default the current one)."""

    id: int
    text: str
    room: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete message ``id``: one's own, or any as an operator of the room."""

    id: int
    room: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class React:
    """Add (``on``) or take back (``on`` false) one's reaction ``emoji`` to message ``id``."""

    id: int
    emoji: str
    on: bool = True
    room: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """A slash-command: ``name`` without the slash, ``args`` as one string."""

    name: str
    args: str = ""
    room: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """Liveness check; the server answers with :class:`Pong` carrying the same token."""

    token: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class PongReply:
    """Answer to the server's :class:`ServerPing` (``"type": "pong"`` from a client)."""

    token: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """Ask for stored messages of ``room`` (or of the private talk ``with`` a nick).

    ``after`` fills a gap (messages newer than the last id the client saw); ``before`` pages
    back; neither gives the latest ones.
    """

    room: str | None = None
    with_nick: str | None = None
    before: int | None = None
    after: int | None = None
    limit: int | None = None
    #: Instead of ``before``/``after``: the room's messages changed (edited, deleted,
    #: reacted to) by a change with an id above this, in their current state.
    changed_after: int | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """Search the stored lines of the rooms the user is in (of ``room`` alone, if given)
    for ``query``'s words; ``before`` pages back from an id, newest first. Answered with
    :class:`SearchResults`."""

    query: str
    room: str | None = None
    before: int | None = None
    limit: int | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Quit:
    """The client leaves; ``reason`` is shown to others in the leave notice."""

    reason: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class TypingNotice:
    """The user is typing in ``room`` (``active``) or stopped; passed on, thinned, to the
    room's members that asked (see :mod:`trio_chat.typing_notices`)."""

    active: bool
    room: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class MarkRead:
    """The user has read ``room`` up to message ``id`` (see :mod:`trio_chat.read_markers`)."""

    id: int
    room: str | None = None
    ref: str | None = None


ClientFrame: TypeAlias = (
    Hello
    | Say
    | Command
    | Ping
    | PongReply
    | HistoryRequest
    | Quit
    | Edit
    | Delete
    | React
    | TypingNotice
    | MarkRead
    | SearchRequest
)

# Per client frame type: its class, and its fields as (JSON name, required, JSON type).
# The attribute is the JSON name, except where _ATTRIBUTE renames it (``with`` is a keyword).
_FieldSpec = tuple[str, bool, type]
_CLIENT_FRAMES: dict[str, tuple[type[Any], tuple[_FieldSpec, ...]]] = {
    "hello": (
        Hello,
        (
            ("nick", True, str),
            ("client", False, str),
            ("password", False, str),
            ("register", False, bool),
            ("batch", False, bool),
            ("away_notify", False, bool),
            ("typing", False, bool),
        ),
    ),
    "say": (Say, (("text", True, str), ("room", False, str), ("reply_to", False, int))),
    "edit": (Edit, (("id", True, int), ("text", True, str), ("room", False, str))),
    "delete": (Delete, (("id", True, int), ("room", False, str))),
    "react": (
        React,
        (("id", True, int), ("emoji", True, str), ("on", False, bool), ("room", False, str)),
    ),
    "command": (Command, (("name", True, str), ("args", False, str), ("room", False, str))),
    "ping": (Ping, (("token", False, str),)),
    "pong": (PongReply, (("token", False, str),)),
    "history": (
        HistoryRequest,
        (
            ("room", False, str),
            ("with", False, str),
            ("before", False, int),
            ("after", False, int),
            ("limit", False, int),
            ("changed_after", False, int),
        ),
    ),
    "quit": (Quit, (("reason", False, str),)),
    "search": (
        SearchRequest,
        (("query", True, str), ("room", False, str), ("before", False, int), ("limit", False, int)),
    ),
    "typing": (TypingNotice, (("active", True, bool), ("room", False, str))),
    "read": (MarkRead, (("id", True, int), ("room", False, str))),
}
_ATTRIBUTE = {"with": "with_nick"}


def decode_client_frame(data: bytes | str) -> ClientFrame:
    """Parse one client frame (one JSON line without its newline, or one WebSocket message).

    Raises :class:`RemoteProtocolError` with code ``bad_utf8``, ``bad_json``, ``bad_frame``,
    ``unknown_type``, ``missing_field`` or ``bad_field``. Unknown extra fields are ignored so
    that newer clients can talk to older servers.
    """
    try:
        obj = orjson.loads(data)  # checks UTF-8 as well; only a failure needs to know which
    except orjson.JSONDecodeError as exc:
        if isinstance(data, bytes):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as not_utf8:
                raise RemoteProtocolError(
                    "bad_utf8", f"frame is not valid UTF-8 (byte {not_utf8.start})"
                ) from None
        raise RemoteProtocolError("bad_json", f"frame is not valid JSON: {exc}") from None
    if type(obj) is dict:
        kind = obj.get("type")
        if kind == "say":
            say = _plain_say(obj)
            if say is not None:
                return say
        elif kind == "hello":
            hello = _plain_hello(obj)
            if hello is not None:
                return hello
    if not isinstance(obj, dict):
        raise RemoteProtocolError("bad_frame", "a frame must be a JSON object")
    ref = obj.get("ref")
    if ref is not None and (
        not isinstance(ref, str | int)
        or isinstance(ref, bool)
        or (isinstance(ref, str) and (len(ref) > 64 or find_control_character(ref)))
    ):
        raise RemoteProtocolError(
            "bad_field", "field 'ref' must be a string of at most 64 printable characters"
        )
    ref = None if ref is None else str(ref)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise RemoteProtocolError("bad_frame", "a frame needs a string field 'type'", ref=ref)
    spec = _CLIENT_FRAMES.get(kind)
    if spec is None:
        known = ", ".join(sorted(_CLIENT_FRAMES))
        raise RemoteProtocolError(
            "unknown_type", f"unknown frame type {kind!r} (known: {known})", ref=ref
        )
    cls, wanted = spec
    kwargs: dict[str, Any] = {"ref": ref}
    for name, required, json_type in wanted:
        value = obj.get(name)
        if value is None:
            if required:
                raise RemoteProtocolError(
                    "missing_field", f"'{kind}' frame needs field {name!r}", ref=ref
                )
            continue
        if json_type is bool:
            if not isinstance(value, bool):
                raise RemoteProtocolError(
                    "bad_field", f"field {name!r} of '{kind}' must be true or false", ref=ref
                )
            kwargs[name] = value
            continue
        if json_type is int:
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 0 <= value <= MAX_FRAME_INT
            ):
                raise RemoteProtocolError(
                    "bad_field", f"field {name!r} of '{kind}' must be a whole number", ref=ref
                )
            kwargs[_ATTRIBUTE.get(name, name)] = value
            continue
        if not isinstance(value, str):
            raise RemoteProtocolError(
                "bad_field", f"field {name!r} of '{kind}' must be a string", ref=ref
            )
        bad = find_control_character(value)
        if bad is not None:
            raise RemoteProtocolError(
                "bad_field",
                f"field {name!r} contains the control character U+{ord(bad):04X}",
                ref=ref,
            )
        kwargs[_ATTRIBUTE.get(name, name)] = value
    # ``cls(**kwargs)`` in half the time (a say frame comes with every line): each field
    # set as the frozen dataclass's __init__ sets it, those left out to their defaults.
    frame: ClientFrame = _new(cls)
    for attribute, default in _FRAME_FIELDS[cls]:
        _set_field(frame, attribute, kwargs.get(attribute, default))
    return frame


def _plain_say(obj: dict[str, Any]) -> Say | None:
    """The common ``say`` frame (``text``, perhaps ``room`` and a string ``ref``, nothing
    else, all printable) as :func:`decode_client_frame` makes it, checked and built in a
    third of the time; ``None`` for any other, which the general rules then decode (a
    line comes with every frame, so the usual one is worth its own few lines).

    What passes here would pass there the same: each string printable has no control
    character, a ``ref`` of at most 64 of them is valid, and with no other key there is
    nothing else to check (``reply_to``, or a field a newer client adds, takes the general
    way). A ``null`` field counts as left out, as there."""
    text = obj.get("text")
    if type(text) is not str or not text.isprintable():
        return None
    room = obj.get("room")
    ref = obj.get("ref")
    if len(obj) != 2 + ("room" in obj) + ("ref" in obj):
        return None
    if room is not None and (type(room) is not str or not room.isprintable()):
        return None
    if ref is not None and (type(ref) is not str or len(ref) > 64 or not ref.isprintable()):
        return None
    say = _new(Say)
    _set_say_text(say, text)
    _set_say_room(say, room)
    _set_say_reply_to(say, None)
    _set_say_ref(say, ref)
    return say


def _plain_hello(obj: dict[str, Any]) -> Hello | None:
    """The usual ``hello`` (a printable ``nick``; perhaps a printable ``client`` and a
    printable string ``ref``, and ``batch``, ``away_notify`` and ``typing`` as true or
    false; no password, nothing else) as :func:`decode_client_frame` makes it, checked
    and built by its keys; ``None`` for any other, which the general rules decode.

    Every connection starts with one, and the general rules check each of the frame's
    seven fields whether it came or not, one by one: the largest single function of a
    connection that comes and goes. What passes here would pass there the same (see
    :func:`_plain_say`); ``null`` counts as left out, as there."""
    nick = obj.get("nick")
    if type(nick) is not str or not nick.isprintable():
        return None
    hello = _new(Hello)
    for attribute, default in _HELLO_DEFAULTS:
        _set_field(hello, attribute, default)
    _set_field(hello, "nick", nick)
    if len(obj) == 2:  # type and nick: nothing else to check
        return hello
    for key, value in obj.items():
        if key in _HELLO_FLAGS:
            if type(value) is not bool:
                return None
        elif key in _HELLO_STRINGS:
            if value is None:
                continue
            if (
                type(value) is not str
                or not value.isprintable()
                or (key == "ref" and len(value) > 64)
            ):
                return None
        elif key == "type" or key == "nick":
            continue
        else:
            return None
        _set_field(hello, key, value)
    return hello


class SayLines:
    """Plain ``say`` frames that came one after another (those :func:`_plain_say` takes:
    ``text``, perhaps ``room`` and ``ref``, no ``reply_to``), kept as their fields'
    lists instead of a :class:`Say` each: a reader at full speed hands a read's lines to
    the hub as a run (see :meth:`~trio_chat.hub.Hub.say_lines`), which wants the texts
    together, and a ``Say`` made for each line only to be taken apart again was a sixth
    of its decoding. :meth:`frame` makes one, for a line that goes the general way."""

    __slots__ = ("refs", "rooms", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.rooms: list[str | None] = []
        self.refs: list[str | None] = []

    def __len__(self) -> int:
        return len(self.texts)

    def frame(self, index: int) -> Say:
        """The ``index``-th line as :func:`decode_client_frame` decodes it."""
        return Say(text=self.texts[index], room=self.rooms[index], ref=self.refs[index])

    def frames(self) -> list[Say]:
        """Every line as :func:`decode_client_frame` decodes it, in order."""
        return [self.frame(index) for index in range(len(self.texts))]

    def append(self, say: Say) -> None:
        """Append a plain ``say`` frame (no ``reply_to``) decoded on its own."""
        self.texts.append(say.text)
        self.rooms.append(say.room)
        self.refs.append(say.ref)

    def add(self, other: SayLines, start: int = 0, stop: int | None = None) -> None:
        """Append ``other``'s lines from ``start`` to ``stop`` (default: all of them)."""
        self.texts += other.texts[start:stop]
        self.rooms += other.rooms[start:stop]
        self.refs += other.refs[start:stop]

    def part(self, start: int, stop: int | None = None) -> SayLines:
        """The lines from ``start`` to ``stop`` (default: the end), as a new run."""
        part = SayLines()
        part.add(self, start, stop)
        return part


def decode_client_lines(
    lines: Iterable[bytes],
) -> list[ClientFrame | SayLines | RemoteProtocolError | None]:
    """What :func:`decode_client_frame` makes of each JSON line (or the
    :class:`RemoteProtocolError` it raises; ``None`` for a blank line), in one loop, with
    the plain ``say`` frames that come one after another gathered in one
    :class:`SayLines`: a reader takes a read's lines this way (see
    :meth:`~trio_chat.framing.LineBuffer.whole_lines`), and a plain line costs about half
    of what a call of :func:`decode_client_frame` and a ``Say`` for it cost.

    What goes into a :class:`SayLines` is what :func:`_plain_say` takes (each of its
    checks, written out); any other line takes :func:`decode_client_frame` itself."""
    decoded: list[ClientFrame | SayLines | RemoteProtocolError | None] = []
    says: SayLines | None = None
    loads, error, frame_of = orjson.loads, orjson.JSONDecodeError, decode_client_frame
    for line in lines:
        try:
            obj = loads(line)
        except error:
            obj = None
        if type(obj) is dict and obj.get("type") == "say":
            text = obj.get("text")
            size = len(obj)
            if type(text) is str and text.isprintable():
                if size == 2:  # {"type": "say", "text": ...}: the usual one
                    room = ref = None
                else:
                    room = obj.get("room")
                    ref = obj.get("ref")
                    if (
                        size != 2 + ("room" in obj) + ("ref" in obj)
                        or (room is not None and (type(room) is not str or not room.isprintable()))
                        or (
                            ref is not None
                            and (type(ref) is not str or len(ref) > 64 or not ref.isprintable())
                        )
                    ):
                        text = None
                if text is not None:
                    if says is None:
                        says = SayLines()
                        decoded.append(says)
                    says.texts.append(text)
                    says.rooms.append(room)
                    says.refs.append(ref)
                    continue
        says = None
        if not line.strip():
            decoded.append(None)
            continue
        try:
            decoded.append(frame_of(line))
        except RemoteProtocolError as exc:
            decoded.append(exc)
    return decoded


def encode_client_frame(frame: ClientFrame) -> bytes:
    """Encode a client frame as one JSON line (used by the terminal client and tests).

    A field is left out when it is ``None`` or its default (``"register": false`` says
    nothing), never when it is required: ``{"type": "typing", "active": false}`` needs
    its ``false``."""
    kind = _CLIENT_TYPE_NAMES[type(frame)]
    obj: dict[str, Any] = {"type": kind}
    names = {attribute: name for name, attribute in _ATTRIBUTE.items()}
    for f in fields(frame):
        value = getattr(frame, f.name)
        if value is not None and not (value is False and f.default is False):
            obj[names.get(f.name, f.name)] = value
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)


_CLIENT_TYPE_NAMES: dict[type[Any], str] = {cls: name for name, (cls, _) in _CLIENT_FRAMES.items()}
#: Each client frame class's fields with their defaults (a required field has none: it is
#: always given), as :func:`decode_client_frame` sets them.
_FRAME_FIELDS: dict[type[Any], tuple[tuple[str, Any], ...]] = {
    cls: tuple((f.name, f.default) for f in fields(cls)) for cls in _CLIENT_TYPE_NAMES
}
assert not any(hasattr(cls, "__post_init__") for cls in _FRAME_FIELDS)
#: How :func:`_plain_say` sets each field of a :class:`Say` (its slots' ``__set__``).
_set_say_text, _set_say_room, _set_say_reply_to, _set_say_ref = (
    Say.__dict__[name].__set__ for name in ("text", "room", "reply_to", "ref")
)
assert tuple(f.name for f in fields(Say)) == ("text", "room", "reply_to", "ref")
assert all(f.default_factory is MISSING for cls in _FRAME_FIELDS for f in fields(cls))
#: What :func:`_plain_hello` takes besides ``type`` and ``nick``: each a field of
#: :class:`Hello` by the same name.
_HELLO_FLAGS = frozenset({"batch", "away_notify", "typing"})
_HELLO_STRINGS = frozenset({"client", "ref"})
_HELLO_DEFAULTS = tuple((name, default) for name, default in _FRAME_FIELDS[Hello] if name != "nick")
assert _HELLO_FLAGS | _HELLO_STRINGS < {name for name, _ in _FRAME_FIELDS[Hello]}


# --------------------------------------------------------------------------------------
# Server -> client events
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerEvent:
    """Base of everything the server sends: a plain frozen value (the encodings a fan-out
    shares are kept by its :class:`~trio_chat.parcels.Parcel`, not here)."""

    TYPE: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object for this event: ``type`` first, ``None`` fields left out."""
        obj: dict[str, Any] = {"type": self.TYPE}
        for name in _wire_fields(type(self)):
            value = getattr(self, name)
            if value is not None:
                obj[name] = value
        return obj


_WIRE_FIELDS: dict[type[ServerEvent], tuple[str, ...]] = {}


def _wire_fields(cls: type[ServerEvent]) -> tuple[str, ...]:
    """The fields of an event class that go on the wire, in order (``fields()`` is slow
    enough to show on every message's path, so they are looked up once per class)."""
    names = _WIRE_FIELDS.get(cls)
    if names is None:
        names = _WIRE_FIELDS[cls] = tuple(f.name for f in fields(cls))
    return names


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome(ServerEvent):
    """Sent once after a successful hello: the nick the user got and where they are."""

    TYPE: ClassVar[str] = "welcome"
    nick: str
    room: str
    server: str
    version: str
    protocol: int = PROTOCOL_VERSION
    #: True when logged in to a registered account, false for a guest.
    account: bool = False
    #: Only for a connection that joined its account's user, already connected elsewhere:
    #: the rooms it is in (``room`` is the current one), and its connections, this one
    #: included. Left out for a new session (which is in ``room`` alone).
    rooms: list[str] | None = None
    connections: int | None = None
    #: For an account (or a guest who marked rooms read): per room it is in, the id of the
    #: newest message read there (see :mod:`trio_chat.read_markers`); left out when none.
    read: dict[str, int] | None = None
    ref: str | None = None


MessageKind = Literal["say", "action", "notice"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Message(ServerEvent):
    """A chat line in a room. ``id`` rises strictly; ``ts`` is seconds since the epoch."""

    TYPE: ClassVar[str] = "message"
    id: int
    ts: float
    room: str
    nick: str
    text: str
    kind: MessageKind = "say"
    #: The id of the message of the room this one answers; left out when none.
    reply_to: int | None = None
    #: That message's ``{"nick": ..., "text": ...}`` (its text cut to 100 characters).
    quote: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """As every event's (``type`` first, ``None`` fields left out), written out: one is
        made for every line said. A subclass with fields of its own (the terminal client's
        :class:`~trio_chat.client.events.ChatMessage`) gets the general one."""
        if type(self) is not Message:
            return ServerEvent.to_dict(self)
        obj: dict[str, Any] = {
            "type": "message",
            "id": self.id,
            "ts": self.ts,
            "room": self.room,
            "nick": self.nick,
            "text": self.text,
            "kind": self.kind,
        }
        if self.reply_to is not None:
            obj["reply_to"] = self.reply_to
        if self.quote is not None:
            obj["quote"] = self.quote
        return obj


def chat_line(
    event_id: int,
    ts: float,
    room: str,
    nick: str,
    text: str,
    kind: MessageKind,
    reply_to: int | None = None,
    quote: dict[str, str] | None = None,
) -> Message:
    """``Message(id=event_id, ...)`` in under half the time (the hub makes one for every
    line said, and a broker node one for every line another node said): each field set
    straight through its slot, as its ``__init__`` would set it, without the keyword
    handling or ``object.__setattr__``'s look-up per field. Every field of ``Message``
    but those after ``quote`` (a field added later by another part of the chat, which must
    default to ``None``) is given here."""
    message = _new(Message)
    _set_id(message, event_id)
    _set_ts(message, ts)
    _set_room(message, room)
    _set_nick(message, nick)
    _set_text(message, text)
    _set_kind(message, kind)
    _set_reply_to(message, reply_to)
    _set_quote(message, quote)
    for set_later in _LATER_SETTERS:
        set_later(message, None)
    return message


def chat_lines(
    first_id: int, clock: Callable[[], float], room: str, nick: str, texts: list[str]
) -> list[Message]:
    """``[chat_line(first_id + i, clock(), room, nick, text, "say") for i, text in
    enumerate(texts)]``: lines said one after another, each with its own reading of
    ``clock``, made by :func:`lines_by_column` (the hub numbers a run of lines of one read
    this way: see :meth:`~trio_chat.hub.Hub.say_lines`)."""
    count = len(texts)
    times = [clock() for _ in texts]
    return lines_by_column(
        first_id, count, times, repeat(room, count), repeat(nick, count), texts, repeat("say")
    )


def lines_by_column(
    first_id: int,
    count: int,
    times: Iterable[float],
    rooms: Iterable[str],
    nicks: Iterable[str],
    texts: Iterable[str],
    kinds: Iterable[str],
) -> list[Message]:
    """``count`` plain chat lines (no reply, no quote, nothing a part of the chat added
    later) numbered from ``first_id``, their other fields given a column each, already
    checked: made a field at a time over the whole run, each a ``map`` of the field's
    slot setter (a loop in C), instead of eight setter calls per line. A run of this
    node's lines (:func:`chat_lines`) and another node's read from the log
    (:mod:`trio_chat.broker.log`) are made this way."""
    lines = list(map(_new, repeat(Message, count)))
    each = _each
    each(map(_set_id, lines, range(first_id, first_id + count)))
    each(map(_set_ts, lines, times))
    each(map(_set_room, lines, rooms))
    each(map(_set_nick, lines, nicks))
    each(map(_set_text, lines, texts))
    each(map(_set_kind, lines, kinds))
    for set_none in _SET_TO_NONE:
        each(map(set_none, lines, repeat(None)))
    return lines


_new = object.__new__


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEdited(ServerEvent):
    """``nick`` replaced the text of their message ``target`` with ``text``."""

    TYPE: ClassVar[str] = "edit"
    id: int
    ts: float
    room: str
    nick: str
    target: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDeleted(ServerEvent):
    """``nick`` (its author, or an operator) deleted message ``target``: its text is gone."""

    TYPE: ClassVar[str] = "delete"
    id: int
    ts: float
    room: str
    nick: str
    target: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Reaction(ServerEvent):
    """``nick`` added (``on``) or took back their reaction ``emoji`` to message ``target``."""

    TYPE: ClassVar[str] = "reaction"
    id: int
    ts: float
    room: str
    nick: str
    target: int
    emoji: str
    on: bool


#: The fields of ``Message`` that :func:`chat_line` leaves at ``None``.
_LATER_FIELDS = tuple(
    f.name
    for f in fields(Message)
    if f.name not in {"id", "ts", "room", "nick", "text", "kind", "reply_to", "quote"}
)
assert all(f.default is None for f in fields(Message) if f.name in _LATER_FIELDS)


def _slot_setter(name: str) -> Callable[[Message, Any], None]:
    """What sets field ``name`` of a :class:`Message`: its slot's ``__set__``, which
    a frozen dataclass's ``__init__`` reaches through ``object.__setattr__``."""
    setter: Callable[[Message, Any], None] = Message.__dict__[name].__set__
    return setter


_set_id, _set_ts, _set_room, _set_nick, _set_text, _set_kind, _set_reply_to, _set_quote = (
    _slot_setter(name) for name in ("id", "ts", "room", "nick", "text", "kind", "reply_to", "quote")
)
_LATER_SETTERS = tuple(_slot_setter(name) for name in _LATER_FIELDS)
#: The fields a plain line has as ``None``: set so, a field at a time, by
#: :func:`lines_by_column` (each defaults to it).
_SET_TO_NONE = (_set_reply_to, _set_quote, *_LATER_SETTERS)
#: Consumes an iterator in C (a ``map`` of a setter, for its effect).
_each: Callable[[Iterable[object]], None] = deque[object](maxlen=0).extend
# Message.to_dict names each field: one added must be added there too.
assert _wire_fields(Message) == ("id", "ts", "room", "nick", "text", "kind", "reply_to", "quote")

#: The events that change a message already said (see :mod:`trio_chat.changes`).
MessageChange: TypeAlias = MessageEdited | MessageDeleted | Reaction


@dataclass(frozen=True, slots=True, kw_only=True)
class Joined(ServerEvent):
    """``nick`` entered ``room``."""

    TYPE: ClassVar[str] = "join"
    id: int
    ts: float
    room: str
    nick: str
    #: ``True`` when ``nick`` is a plugin's bot (see :mod:`trio_chat.bots`); left out for
    #: people.
    bot: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Left(ServerEvent):
    """``nick`` left ``room``; ``reason`` says why (quit message, connection lost, ...)."""

    TYPE: ClassVar[str] = "leave"
    id: int
    ts: float
    room: str
    nick: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NickChanged(ServerEvent):
    """``old`` is now called ``new``; sent once to everyone sharing a room with them."""

    TYPE: ClassVar[str] = "nick"
    id: int
    ts: float
    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Private(ServerEvent):
    """A private message from ``nick`` to ``to``; only those two users receive it."""

    TYPE: ClassVar[str] = "private"
    id: int
    ts: float
    nick: str
    to: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Topic(ServerEvent):
    """``nick`` set the topic of ``room`` (an empty topic clears it)."""

    TYPE: ClassVar[str] = "topic"
    id: int
    ts: float
    room: str
    nick: str
    topic: str


#: The events that carry an ``id`` from the one counter (numbered, in the room's one
#: order; what ``history`` and gap-fill are about).
NumberedEvent: TypeAlias = (
    Joined
    | Left
    | Message
    | NickChanged
    | Private
    | Topic
    | MessageEdited
    | MessageDeleted
    | Reaction
)


@dataclass(frozen=True, slots=True, kw_only=True)
class History(ServerEvent):
    """Stored messages, oldest first, each shaped like a ``message`` or ``private`` event.

    ``room`` (or ``with`` for private talk) says whose history it is; ``more`` is true when
    older (for ``before``/latest) or newer (for ``after``) messages remain to be paged.
    """

    TYPE: ClassVar[str] = "history"
    room: str | None = None
    with_nick: str | None = None
    messages: list[dict[str, Any]]
    more: bool = False
    ref: str | None = None

    def to_dict(self) -> dict[str, Any]:
        obj = ServerEvent.to_dict(self)
        if "with_nick" in obj:
            obj["with"] = obj.pop("with_nick")
        return obj


class EncodedMessages(list[dict[str, Any]]):
    """History messages that carry each one's JSON encoding (``parts``, in order), made
    once by whoever keeps them (:class:`~trio_chat.recent.RecentLines`): a ``history``
    holding them is encoded by joining those bytes (see :func:`encode_server_line`)
    instead of encoding every message again.

    Why: after a restart every returning client is sent the same latest lines of a room,
    as the history of its join and again as the gap since the last id it saw, each a new
    ``history`` (its own ``ref``, its own receiver): that was 5-8 us of encoding a page,
    four pages a login. A slice is an :class:`EncodedMessages` too. Neither the list nor
    its messages are changed once made (as for any history page handed out).
    """

    __slots__ = ("parts",)

    def __init__(self, messages: list[dict[str, Any]], parts: list[bytes]) -> None:
        super().__init__(messages)
        self.parts = parts

    @overload
    def __getitem__(self, index: SupportsIndex) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> EncodedMessages: ...

    def __getitem__(self, index: SupportsIndex | slice) -> dict[str, Any] | EncodedMessages:
        if isinstance(index, slice):
            return EncodedMessages(list.__getitem__(self, index), self.parts[index])
        return list.__getitem__(self, index)


def encoded_message(message: dict[str, Any]) -> bytes:
    """One history message's JSON, as it is within the list of a ``history``'s encoding."""
    return orjson.dumps(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchResults(ServerEvent):
    """The answer to a ``search`` frame (or ``/search``): the matching room lines, newest
    first, each shaped like a ``message`` event (with its ``room``); ``more`` is true
    when older matches remain (ask again with ``before`` the last id here)."""

    TYPE: ClassVar[str] = "search"
    query: str
    messages: list[dict[str, Any]]
    more: bool = False
    ref: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Info(ServerEvent):
    """A reply meant for one user (command output). ``data`` holds structured detail."""

    TYPE: ClassVar[str] = "info"
    text: str
    data: dict[str, Any] | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Error(ServerEvent):
    """Something the user sent was refused; the connection stays open."""

    TYPE: ClassVar[str] = "error"
    code: str
    text: str
    ref: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Typing(ServerEvent):
    """``nick`` is typing in ``room`` (``active``), or stopped. Live only: no id, never
    stored; sent to the connections that asked (``"typing": true`` in ``hello``)."""

    TYPE: ClassVar[str] = "typing"
    room: str
    nick: str
    active: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadMarker(ServerEvent):
    """The user has read ``room`` up to message ``id`` (on another of its connections, or
    as it stood at login or ``/join``). Live only, not numbered: on the wire the message
    id is ``id``; here it is ``message_id``, since an event's own ``id`` means a numbered
    event (brokers and delivery go by it)."""

    TYPE: ClassVar[str] = "read"
    room: str
    message_id: int

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, "room": self.room, "id": self.message_id}


def error_reply(exc: ChatError, ref: str | None = None) -> Error:
    """The ``error`` event that tells the user about ``exc``: the one place a
    :class:`~trio_chat.errors.ChatError` becomes a reply. ``ref`` is the refused frame's
    (else the error's own)."""
    return Error(code=exc.code, text=exc.text, ref=exc.ref if ref is None else ref)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(ServerEvent):
    """Answer to :class:`Ping`."""

    TYPE: ClassVar[str] = "pong"
    token: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerPing(ServerEvent):
    """The server has not heard from a JSON-lines client for a while: answer with ``pong``."""

    TYPE: ClassVar[str] = "ping"
    token: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye(ServerEvent):
    """Last frame before the server closes the connection, with the reason."""

    TYPE: ClassVar[str] = "bye"
    code: str
    text: str


# The events every connection is sent once or twice in its life (its welcome, its join,
# its history, its leave, its bye), each encoded for that one connection: their objects
# made directly, as :meth:`Message.to_dict` makes a chat line's, not by the general
# :meth:`ServerEvent.to_dict` (a ``getattr`` for each field: 22 a churn connection). The
# same keys in the same order, ``None`` fields left out (tests/test_direct_encoding.py
# checks the bytes against ``to_dict``'s); a field typed without ``None`` is put as it is.


def _welcome_object(event: Welcome) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "welcome",
        "nick": event.nick,
        "room": event.room,
        "server": event.server,
        "version": event.version,
        "protocol": event.protocol,
        "account": event.account,
    }
    if event.rooms is not None:
        obj["rooms"] = event.rooms
    if event.connections is not None:
        obj["connections"] = event.connections
    if event.read is not None:
        obj["read"] = event.read
    if event.ref is not None:
        obj["ref"] = event.ref
    return obj


def _joined_object(event: Joined) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "join",
        "id": event.id,
        "ts": event.ts,
        "room": event.room,
        "nick": event.nick,
    }
    if event.bot is not None:
        obj["bot"] = event.bot
    return obj


def _left_object(event: Left) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "leave",
        "id": event.id,
        "ts": event.ts,
        "room": event.room,
        "nick": event.nick,
    }
    if event.reason is not None:
        obj["reason"] = event.reason
    return obj


def _bye_object(event: Bye) -> dict[str, Any]:
    return {"type": "bye", "code": event.code, "text": event.text}


def _history_object(event: History, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """(``with`` last, as :meth:`History.to_dict` puts it: popped and put back.)"""
    obj: dict[str, Any] = {"type": "history"}
    if event.room is not None:
        obj["room"] = event.room
    obj["messages"] = messages
    obj["more"] = event.more
    if event.ref is not None:
        obj["ref"] = event.ref
    if event.with_nick is not None:
        obj["with"] = event.with_nick
    return obj


def _plain_history_object(event: History) -> dict[str, Any]:
    return _history_object(event, event.messages)


#: The events whose objects are made directly, by their exact class (a subclass, such as
#: the terminal client's, may have fields of its own: it takes ``to_dict``).
_DIRECT_OBJECTS: dict[type[ServerEvent], Callable[[Any], dict[str, Any]]] = {
    Welcome: _welcome_object,
    Joined: _joined_object,
    Left: _left_object,
    Bye: _bye_object,
    History: _plain_history_object,
}


def encode_server_event(event: ServerEvent) -> str:
    """Encode a server event as compact JSON text (no newline)."""
    if type(event) is History and type(event.messages) is EncodedMessages:
        return _history_json(event, event.messages).decode()
    direct = _DIRECT_OBJECTS.get(type(event))
    return orjson.dumps(event.to_dict() if direct is None else direct(event)).decode()


def encode_server_line(event: ServerEvent) -> bytes:
    """Encode a server event as one JSON line: UTF-8, compact, ending in a newline.

    orjson, not the standard library: encoding each event once is on the path of every
    message, and it is 4 us there against 0.3 us here (the same bytes: compact, UTF-8
    left as it is, control characters escaped).
    """
    if type(event) is History and type(event.messages) is EncodedMessages:
        return _history_json(event, event.messages) + b"\n"
    direct = _DIRECT_OBJECTS.get(type(event))
    obj = event.to_dict() if direct is None else direct(event)
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)


def encode_server_lines(
    events: Iterable[ServerEvent], other: Callable[[ServerEvent], bytes] = encode_server_line
) -> bytes:
    """``b"".join(encode_server_line(event) for event in events)`` (``other`` for each
    event but a plain chat line), in one loop: a run of lines to a room is encoded once
    for all its receivers on a wire format, but that is still a few calls a line, and the
    lines of a full-speed sender come in runs. A chat line without ``reply_to`` and
    ``quote`` (the usual one) has its object made here, as :meth:`Message.to_dict` makes
    it (the same bytes: tests/test_protocol.py checks)."""
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    parts: list[bytes] = []
    append = parts.append
    for event in events:
        if type(event) is Message and event.reply_to is None and event.quote is None:
            obj = {
                "type": "message",
                "id": event.id,
                "ts": event.ts,
                "room": event.room,
                "nick": event.nick,
                "text": event.text,
                "kind": event.kind,
            }
            append(dumps(obj, option=newline))
        else:
            append(other(event))
    return b"".join(parts)


#: Where a ``history``'s messages go in its JSON: the bytes of ``"messages":[]``. Found
#: once in an encoding, it can only be the key: within a JSON string every ``"`` is
#: escaped, so those bytes (a quote right after ``messages``) never occur in one.
_NO_MESSAGES = b'"messages":[]'


def _history_json(event: History, messages: EncodedMessages) -> bytes:
    """The JSON of ``event`` (as ``orjson.dumps(event.to_dict())``, byte for byte) with
    its messages' encodings joined in, not made again."""
    obj = _history_object(event, [])
    head, _, tail = orjson.dumps(obj).partition(_NO_MESSAGES)
    return b"".join((head, b'"messages":[', b",".join(messages.parts), b"]", tail))


_SERVER_EVENTS: dict[str, type[ServerEvent]] = {
    cls.TYPE: cls
    for cls in (
        Welcome,
        Message,
        Joined,
        Left,
        NickChanged,
        Private,
        Topic,
        Info,
        Error,
        Pong,
        ServerPing,
        History,
        Bye,
        MessageEdited,
        MessageDeleted,
        Reaction,
        SearchResults,
        Typing,
        ReadMarker,
    )
}


_Event = TypeVar("_Event", bound=ServerEvent)


def renumbered(event: _Event, event_id: int) -> _Event:
    """``event`` with id ``event_id`` (what ``dataclasses.replace`` does, in a fifth of the
    time: a broker's node does it for each of its own events read back from the shared
    log). A copy of the fields as they are, without ``__init__`` (an event's fields are
    all set by it as given, with nothing to check or work out)."""
    cls = type(event)
    copy = object.__new__(cls)
    for name in _wire_fields(cls):
        _set_field(copy, name, getattr(event, name))
    _set_field(copy, "id", event_id)
    return copy


#: How a frozen dataclass's own ``__init__`` sets its fields.
_set_field = object.__setattr__


def decode_server_event(
    data: bytes | str, from_dict: Callable[[dict[str, Any]], ServerEvent] | None = None
) -> ServerEvent:
    """Parse a server event (for clients and tests). Unknown fields are ignored.

    ``from_dict`` makes the event of the parsed object (default
    :func:`server_event_from_dict`; the terminal client passes its own, which reads
    history-only fields too). Raises :class:`RemoteProtocolError` if the data is not a
    known event.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RemoteProtocolError("bad_json", f"server sent invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError("bad_frame", "server frame is not an object")
    return (from_dict or server_event_from_dict)(obj)


def server_event_from_dict(obj: dict[str, Any]) -> ServerEvent:
    """The server event a decoded JSON object stands for (what :func:`decode_server_event`
    does once the JSON is parsed; a broker's log holds its events as objects). Unknown
    fields are ignored. Raises :class:`RemoteProtocolError` if it is not a known event."""
    cls = _SERVER_EVENTS.get(str(obj.get("type")))
    if cls is None:
        raise RemoteProtocolError("unknown_type", f"unknown server frame {obj.get('type')!r}")
    if cls is ReadMarker and "id" in obj:
        obj = {**obj, "message_id": obj["id"]}
    names = _wire_fields(cls)
    try:
        return cls(**{k: v for k, v in obj.items() if k in names})
    except TypeError as exc:
        raise RemoteProtocolError("missing_field", f"bad {cls.TYPE} frame: {exc}") from None
