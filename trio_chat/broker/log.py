"""The shared log's entries, without I/O: what a node writes to the Redis stream and reads.

Every node appends to one stream and reads all of it in the same order, so the stream is
the chat's one order. Two kinds of entry:

* an **event** (a chat line, a private message, a join, a leave, a nick change, a topic):
  its stream id is ``<event id>-0``, given by the append script from one counter, so ids
  rise with the stream and ``after=ID`` gap-fill reads the same on every node. The entry
  says who gets it besides a room's members (``to``: nick keys), whether it is stored, and
  a private message's two accounts;
* a **control** entry (``hello``/``bye`` of a user, a ``sync`` request from a node that
  starts, the ``snapshot`` each node answers with, ``gone`` when a node died, a ``rule``
  of a room given or taken: operator, mute, ban; a ``tell``, a notice for a user of another
  node; ``typing``, a typing notice that passed at its typist's node; ``away``, a user
  who went away or came back): stream id ``<last event id>-<n>``, never seen by clients
  as such.

Each entry names the node that wrote it and that node's running number (``seq``), which
makes appending idempotent: the script skips a number it has already appended, so a node
that lost its connection mid-append simply sends the batch again.

Forms told apart by their first bytes. Most entries are a JSON object
(``{"k":"event","n":NODE,"s":SEQ,"e":{...},...}``). Plain chat lines (a ``message`` to
its room's members and no one else, the bulk of any log) are JSON arrays instead, their
fields by position: 90 bytes fewer to append, store and read back on every node, and read
straight into a :class:`~trio_chat.protocol.Message` without the object's dict, key checks
and :class:`Entry` in between, which were most of what a line cost a node that did not
write it. A node writes the chat lines it appends together as one entry, a **group**
(:func:`encode_group`, ``["g",NODE,FIRST_SEQ,COUNT,ROW,...]``): each line keeps its own
running number and id (the group's stream id is its last line's id; the lines before it
have the ids just below), and what an entry costs — Redis's ``XADD``, every node's RESP
parse and loop, the writer's own check of it — is paid once per group instead of once per
line (:func:`decode_group`; a node reads its own groups from their start alone,
:func:`own_group_seqs`). A chat line in an entry of its own (:func:`encode_line`,
``["l",NODE,SEQ,...]``, what nodes from before groups append) and chat lines of the
object form (from before the array form) are still read, so a node reads a log older
nodes wrote, or are still writing. Not the other way round: an older node skips each
group (or line of the array form) with a warning, which is why the README says to
upgrade all the nodes of a chat at once.

A group is written **by column** (:func:`encode_columns`, ``["c",NODE,FIRST_SEQ,COUNT,
PERSIST,ROOM,NICK,KIND,AUTHOR,[TS,...],[TEXT,...]]``, and a last ``[MORE,...]`` when any
line has more): ``PERSIST``, ``ROOM``, ``NICK``, ``KIND`` and ``AUTHOR`` are given once
when every line shares them (most groups: one room, often one sender), else as a list of
one per line. Reading it makes three strings fewer a line and checks each column in C;
writing it is one ``orjson.dumps`` per group instead of one per line. Groups of rows
(``"g"``) are still read, from nodes of before; a node of before skips a group by column
with a warning, so, as for groups, upgrade all the nodes of a chat at once.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from itertools import repeat
from typing import Any, Literal, TypeAlias, get_args

import orjson

from ..hub import Rule, RuleChange
from ..protocol import (
    Message,
    MessageKind,
    RemoteProtocolError,
    ServerEvent,
    chat_line,
    lines_by_column,
    server_event_from_dict,
)

__all__ = [
    "BadEntry",
    "Entry",
    "EntryKind",
    "Group",
    "Line",
    "decode_entries",
    "decode_entry",
    "decode_group",
    "decode_line",
    "encode_columns",
    "encode_entry",
    "encode_group",
    "encode_line",
    "encode_row",
    "own_columns_prefix",
    "own_event_prefix",
    "own_event_seq",
    "own_group_prefix",
    "own_group_seqs",
    "own_line_prefix",
]


class BadEntry(ValueError):
    """A stream entry that is not one of ours (another program shares the Redis)."""


EntryKind = Literal[
    "event", "hello", "bye", "sync", "snapshot", "gone", "rule", "tell", "typing", "away"
]
_KINDS = frozenset(get_args(EntryKind))
_RULES = frozenset(get_args(Rule))


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of the shared log, as read back."""

    kind: EntryKind
    node: str
    seq: int
    #: The stream id (``"12-0"``): an event's id is its first part.
    stream_id: str = ""
    #: For ``event``: the numbered event.
    event: ServerEvent | None = None
    #: For ``event``: the room whose members get it (``None``: only ``to``).
    room: str | None = None
    #: For ``event``: nick keys that get it too (private messages, replies to the actor).
    to: tuple[str, ...] = ()
    persist: bool = False
    accounts: tuple[str, str] | None = None
    #: For a chat line: the account it was said under (its author; ``None``: a guest).
    author: str | None = None
    #: For ``rule``: the change, checked when read.
    rule: RuleChange | None = None
    #: For control entries: what they carry (``nick``, ``account``, ``users``, ...).
    data: dict[str, Any] = field(default_factory=dict)


#: A chat line of the log as :func:`decode_line` reads it: the node that wrote it, its
#: running number, the line (numbered with the log's id; its room's members get it),
#: whether it is stored, and the account it was said under (``None``: a guest's). A plain
#: tuple: a NamedTuple cost 0.3 us more per line read.
Line: TypeAlias = tuple[str, int, Message, bool, str | None]


#: The first element of an entry of the array form (a chat line; see :func:`encode_line`).
_LINE_TAG = "l"
#: The first element of a group of chat lines (see :func:`encode_group`).
_GROUP_TAG = "g"
#: The first element of a group of chat lines by column (see :func:`encode_columns`).
_COLUMNS_TAG = "c"
#: A line of a row, as :func:`decode_line` and a group's row by row reading give it: the
#: line (numbered with its id), whether it is stored, and the account it was said under
#: (``None``: a guest's).
GroupLine: TypeAlias = tuple[Message, bool, str | None]
#: The fields of a :class:`~trio_chat.protocol.Message` an array entry holds by position,
#: after the tag, node, running number and the ``persist`` flag (0/1).
_LINE_FIELDS = ("ts", "room", "nick", "text", "kind")
#: Any other field of ``Message`` (a field added later, to the protocol) goes by name in an
#: object after them, left out when each is ``None``; a reader takes those it knows, as
#: :func:`~trio_chat.protocol.server_event_from_dict` ignores unknown fields.
_LINE_EXTRAS = tuple(f.name for f in fields(Message) if f.name not in {"id", *_LINE_FIELDS})
_LINE_NAMES = frozenset(_LINE_EXTRAS)
#: The values of those fields of a line, as a tuple (``attrgetter`` of two names or more).
_line_extra_values = operator.attrgetter(*_LINE_EXTRAS)
assert len(_LINE_EXTRAS) > 1, "_line_extra_values would not give a tuple"
#: The key, in that object, of the account the line was said under (no field of
#: ``Message``: it never goes to clients, only between nodes; see :mod:`trio_chat.changes`).
_AUTHOR = "@a"


#: ``Message(id=..., ts=..., room=..., nick=..., text=..., kind=...)`` in under half the
#: time (a node makes one for every chat line another node said), the
#: other fields at their ``None``: the hub's own fast constructor. ``kind`` is checked by
#: the caller.
line_message = chat_line


#: ``number_own_line(event, event_id)``: give ``event``, a chat line of this node's read
#: back from the log, the log's id, in place of the one the hub gave it.
#:
#: In place, though ``Message`` is frozen: with a broker, a line is sent to no one before
#: the log numbered it, so no one saw the id it replaces (the caller of the hub's ``say``,
#: which holds the same line, sees the log's id from now on), and a copy per line was a
#: cost on every line a node says, as it reads each of them back. The slot's own setter,
#: not a function around it: a call less for each of them.
number_own_line: Callable[[Message, int], None] = Message.__dict__["id"].__set__


def encode_line(
    node: str, seq: int, event: Message, *, persist: bool = False, author: str | None = None
) -> bytes:
    """The payload of a chat line to ``event.room``'s members (only them), in the array
    form: ``["l",NODE,SEQ,PERSIST,TS,ROOM,NICK,TEXT,KIND]`` (plus ``{FIELD: VALUE}`` for
    fields of a newer :class:`~trio_chat.protocol.Message`, and ``"@a": ACCOUNT`` for the
    ``author``'s account). The id is the log's."""
    if author is None and _line_extra_values(event).count(None) == len(_LINE_EXTRAS):
        # Most lines: no reply, no account, no field of a newer Message: no row to grow.
        return orjson.dumps(
            (
                _LINE_TAG,
                node,
                seq,
                1 if persist else 0,
                event.ts,
                event.room,
                event.nick,
                event.text,
                event.kind,
            )
        )
    return orjson.dumps([_LINE_TAG, node, seq, *_row(event, persist, author)])


def encode_row(event: Message, *, persist: bool = False, author: str | None = None) -> bytes:
    """One chat line of a group (see :func:`encode_group`): ``[PERSIST,TS,ROOM,NICK,TEXT,
    KIND]``, plus ``{FIELD: VALUE}`` as :func:`encode_line` adds it. Made as the line is
    said: a group is these rows joined."""
    if author is None and _line_extra_values(event).count(None) == len(_LINE_EXTRAS):
        return orjson.dumps(
            (1 if persist else 0, event.ts, event.room, event.nick, event.text, event.kind)
        )
    return orjson.dumps(_row(event, persist, author))


def _row(event: Message, persist: bool, author: str | None) -> list[Any]:
    """A line's fields by position, then, if any, the object of its other fields."""
    row: list[Any] = [1 if persist else 0]
    row += (event.ts, event.room, event.nick, event.text, event.kind)
    extras = _more(event, author)
    if extras is not None:
        row.append(extras)
    return row


def _more(event: Message, author: str | None) -> dict[str, Any] | None:
    """The object of a line's other fields (those of a newer ``Message`` that are not
    ``None``, and ``"@a"``: its author's account), or ``None`` when it has none."""
    extras: dict[str, Any] | None = None  # (none, for most lines: no dict made)
    for name in _LINE_EXTRAS:
        value = getattr(event, name)
        if value is not None:
            if extras is None:
                extras = {}
            extras[name] = value
    if author is not None:
        if extras is None:
            extras = {}
        extras[_AUTHOR] = author
    return extras


def encode_group(node: str, first_seq: int, rows: list[bytes]) -> bytes:
    """The payload of chat lines ``node`` appends together (each of :func:`encode_row`,
    running numbers from ``first_seq`` on): ``["g",NODE,FIRST_SEQ,COUNT,ROW,...]``. The
    append script gives the group as many ids as it has lines."""
    head = b'["g",' + orjson.dumps(node) + b",%d,%d," % (first_seq, len(rows))
    return head + b",".join(rows) + b"]"


def encode_columns(
    node: str,
    first_seq: int,
    lines: list[Message],
    persist: list[bool],
    authors: list[str | None],
) -> bytes:
    """The payload of chat lines ``node`` appends together (running numbers from
    ``first_seq`` on; ``persist`` and ``authors`` one per line), written by column:
    ``["c",NODE,FIRST_SEQ,COUNT,PERSIST,ROOM,NICK,KIND,AUTHOR,[TS,...],[TEXT,...]]``, each
    of ``PERSIST`` (0 or 1), ``ROOM``, ``NICK``, ``KIND`` and ``AUTHOR`` (the account a
    line was said under, ``null`` for a guest's) once when every line has the same, else
    a list of one per line; and when any line has more (a reply, a field of a newer
    ``Message``), a last ``[MORE,...]``: per line ``null`` or the object of its other
    fields. The append script gives the group as many ids as it has lines.

    Made as the writer takes the group, in one ``orjson.dumps``: each column is taken
    from the lines by a ``map`` (in C), where a row each cost a call and a dump per line."""
    count = len(lines)
    times = list(map(_TS, lines))
    texts = list(map(_TEXT, lines))
    columns: list[Any] = [_COLUMNS_TAG, node, first_seq, count]
    stored = persist.count(True)
    columns.append(1 if stored == count else 0 if not stored else [int(p) for p in persist])
    shared: tuple[list[Any], ...] = (
        list(map(_ROOM, lines)),
        list(map(_NICK, lines)),
        list(map(_KIND, lines)),
        authors,
    )
    for column in shared:
        first = column[0]
        columns.append(first if column.count(first) == count else column)
    columns += (times, texts)
    if list(map(_line_extra_values, lines)).count(_NO_EXTRAS) != count:
        columns.append([_more(line, None) for line in lines])
    return orjson.dumps(columns)


_TS = operator.attrgetter("ts")
_TEXT = operator.attrgetter("text")
_ROOM = operator.attrgetter("room")
_NICK = operator.attrgetter("nick")
_KIND = operator.attrgetter("kind")
#: The values of a line's other fields when it has none (see ``_line_extra_values``).
_NO_EXTRAS = (None,) * len(_LINE_EXTRAS)


def decode_line(stream_id: str, payload: bytes) -> Line:
    """A chat line of the array form (see :func:`encode_line`) with the id of its stream
    id; :class:`BadEntry` if it is not one (checked field by field: it is delivered as it
    is read)."""
    try:
        row = orjson.loads(payload)
        tag, node, seq, persist, *fields = row
        event_id = int(stream_id.partition("-")[0])
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise BadEntry(f"log entry {stream_id} is not ours") from None
    if not (tag == _LINE_TAG and type(node) is str and type(seq) is int):
        raise BadEntry(f"log entry {stream_id} is not a chat line of ours")
    event, persisted, author = _checked_line(stream_id, event_id, persist, fields)
    return node, seq, event, persisted, author


def _checked_line(stream_id: str, event_id: int, persist: object, fields: Any) -> GroupLine:
    """The line of a row's fields after its ``persist`` flag (``TS,ROOM,NICK,TEXT,KIND``
    and at most an object of others), each checked; :class:`BadEntry` if it is not one."""
    try:
        ts, room, nick, text, kind, *more = fields
    except (TypeError, ValueError):
        raise BadEntry(f"log entry {stream_id} is not a chat line of ours") from None
    if not (
        type(room) is str
        and type(nick) is str
        and type(text) is str
        and (kind == "say" or kind == "action" or kind == "notice")
        and type(ts) in (float, int)
        and len(more) <= 1
    ):
        raise BadEntry(f"log entry {stream_id} is not a chat line of ours")
    author = None
    if more and isinstance(more[0], dict):
        extras = {k: v for k, v in more[0].items() if k in _LINE_NAMES}
        if not _good_reply(extras.get("reply_to"), extras.get("quote")):
            raise BadEntry(f"log entry {stream_id} has a bad reply")
        author = more[0].get(_AUTHOR)
        if not isinstance(author, str):
            author = None
        try:
            event = Message(
                id=event_id, ts=ts, room=room, nick=nick, text=text, kind=kind, **extras
            )
        except TypeError:
            raise BadEntry(f"log entry {stream_id} is not a chat line of ours") from None
    else:
        event = line_message(event_id, ts, room, nick, text, kind)
    return event, persist == 1, author


@dataclass(frozen=True, slots=True)
class Group:
    """A group of chat lines read from the log (see :func:`encode_group`), by column:
    what a node hands on of another node's group is made a column at a time."""

    node: str
    #: The running number of its first line (the others follow it).
    first_seq: int
    #: Its lines, numbered up to the id of the group's stream id.
    lines: list[Message]
    #: Per line: whether it is stored.
    persist: list[bool]
    #: Per line: the account it was said under (``None``: a guest's).
    authors: list[str | None]
    #: The room of every line, when they share one (most groups); else ``None``.
    room: str | None


def decode_group(stream_id: str, payload: bytes) -> Group:
    """A group of chat lines (see :func:`encode_columns`, and :func:`encode_group` of
    nodes of before), its lines numbered up to the id of the group's stream id;
    :class:`BadEntry` if it is not one (every line checked, as :func:`decode_line` checks
    one)."""
    if payload[2:3] == b"c":
        return _decode_columns(stream_id, payload)
    try:
        tag, node, first_seq, count, *rows = orjson.loads(payload)
        last_id = int(stream_id.partition("-")[0])
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise BadEntry(f"log entry {stream_id} is not ours") from None
    if not (
        tag == _GROUP_TAG
        and type(node) is str
        and type(first_seq) is int
        and type(count) is int
        and count == len(rows) > 0
    ):
        raise BadEntry(f"log entry {stream_id} is not a group of chat lines of ours")
    first_id = last_id - count + 1
    plain = _plain_rows(node, first_seq, first_id, rows)
    if plain is not None:
        return plain
    lines: list[Message] = []
    persist: list[bool] = []
    authors: list[str | None] = []
    for event_id, row in enumerate(rows, first_id):
        if type(row) is not list or not row:
            raise BadEntry(f"log entry {stream_id} is not a group of chat lines of ours")
        line, persisted, author = _checked_line(stream_id, event_id, row[0], row[1:])
        lines.append(line)
        persist.append(persisted)
        authors.append(author)
    rooms = {line.room for line in lines}
    return Group(node, first_seq, lines, persist, authors, rooms.pop() if len(rooms) == 1 else None)


def _plain_rows(node: str, first_seq: int, first_id: int, rows: list[Any]) -> Group | None:
    """The group of ``rows`` if each is a plain row (``[PERSIST,TS,ROOM,NICK,TEXT,KIND]``,
    each field of the right type; most groups), read a column at a time; ``None`` if
    any is not (a line with more fields, or not ours: :func:`decode_group` reads those
    row by row).

    Why by column: another node's line costs a node mostly its reading, and each step
    done per line in Python (a check, a call) showed; a column is checked, and set on
    every line's ``Message``, in C (``zip``, ``map``, ``count``). Anything that is not a
    list of six gives a column of the wrong types here (a string row gives characters, an
    object its keys), or no columns at all."""
    try:
        persists, times, rooms, nicks, texts, kinds = zip(*rows, strict=True)
    except (TypeError, ValueError):
        return None
    count = len(rows)
    room, nick = rooms[0], nicks[0]
    one_room = type(room) is str and rooms.count(room) == count
    if not (
        (one_room or _strings(rooms))
        and ((type(nick) is str and nicks.count(nick) == count) or _strings(nicks))
        and (kinds.count("say") == count or (_strings(kinds) and set(kinds) <= _KINDS_OF_LINES))
        and _strings(texts)
        and set(map(type, times)) <= _TIME_TYPES
    ):
        return None
    lines = lines_by_column(first_id, count, times, rooms, nicks, texts, kinds)
    # (As ``flag == 1`` for each.)
    persist = [True] * count if persists.count(1) == count else [flag == 1 for flag in persists]
    return Group(node, first_seq, lines, persist, [None] * count, room if one_room else None)


def _decode_columns(stream_id: str, payload: bytes) -> Group:
    """A group by column (see :func:`encode_columns`): each column checked whole, in C
    (a shared value once; a list by its length, ``str.join`` and its set of types), and
    the lines' ``Message`` made a field at a time (:func:`~trio_chat.protocol.lines_by_column`);
    a group whose lines have more (a reply, an author) is read line by line."""
    try:
        tag, node, first_seq, count, persist, rooms, nicks, kinds, author, times, texts, *more = (
            orjson.loads(payload)
        )
        last_id = int(stream_id.partition("-")[0])
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise BadEntry(f"log entry {stream_id} is not ours") from None
    if not (
        tag == _COLUMNS_TAG
        and type(node) is str
        and type(first_seq) is int
        and type(count) is int
        and count > 0
        and type(times) is list
        and len(times) == count
        and set(map(type, times)) <= _TIME_TYPES
        and type(texts) is list
        and len(texts) == count
        and _strings(texts)
        and len(more) <= 1
        and _column(rooms, count)
        and _column(nicks, count)
        and _column(kinds, count)
        and (kinds in _KINDS_OF_LINES if type(kinds) is str else set(kinds) <= _KINDS_OF_LINES)
        and (type(persist) is int or (type(persist) is list and len(persist) == count))
        and (author is None or type(author) is str or _accounts(author, count))
    ):
        raise BadEntry(f"log entry {stream_id} is not a group of chat lines of ours")
    one_room = rooms if type(rooms) is str else None
    if one_room is None and rooms.count(rooms[0]) == count:
        one_room = rooms[0]
    if isinstance(persist, list):
        stored = [flag == 1 for flag in persist]
    else:
        stored = [persist == 1] * count
    first_id = last_id - count + 1
    room_of = repeat(rooms) if type(rooms) is str else rooms
    nick_of = repeat(nicks) if type(nicks) is str else nicks
    kind_of = repeat(kinds) if type(kinds) is str else kinds
    authors = author if type(author) is list else [author] * count
    if not more or more[0] is None:  # (most groups)
        lines = lines_by_column(first_id, count, times, room_of, nick_of, texts, kind_of)
        return Group(node, first_seq, lines, stored, authors, one_room)
    extras = more[0]
    if type(extras) is not list or len(extras) != count:
        raise BadEntry(f"log entry {stream_id} is not a group of chat lines of ours")
    lines = []
    rows = zip(itertools.count(first_id), times, room_of, nick_of, texts, kind_of, extras)
    for event_id, *row in rows:
        if row[-1] is None:
            del row[-1]
        elif type(row[-1]) is dict:
            row[-1].pop(_AUTHOR, None)  # (the column's, not the object's)
        lines.append(_checked_line(stream_id, event_id, 1, row)[0])
    return Group(node, first_seq, lines, stored, authors, one_room)


def _accounts(column: object, count: int) -> bool:
    """Whether ``column`` is a list of ``count`` accounts (strings), or ``null`` for a
    guest's line."""
    if type(column) is not list or len(column) != count:
        return False
    return _strings([account for account in column if account is not None])


def _column(column: object, count: int) -> bool:
    """Whether ``column`` is one string for every line, or a list of ``count`` strings."""
    return type(column) is str or (
        type(column) is list and len(column) == count and _strings(column)
    )


def _strings(column: tuple[object, ...] | list[object]) -> bool:
    """Whether every value of ``column`` is a string (``str.join`` checks each, in C;
    what JSON gives is never a subclass)."""
    try:
        "".join(column)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


_KINDS_OF_LINES = frozenset(get_args(MessageKind))
_TIME_TYPES = frozenset((float, int))


def _good_reply(reply_to: object, quote: object) -> bool:
    """Whether a line's ``reply_to`` and ``quote`` read from the log are what receivers
    can show: an id and a ``{"nick", "text"}`` of strings (or left out)."""
    if reply_to is not None and type(reply_to) is not int:
        return False
    if quote is None:
        return True
    return (
        isinstance(quote, dict)
        and set(quote) == {"nick", "text"}
        and all(type(v) is str for v in quote.values())
    )


def encode_entry(
    kind: EntryKind,
    node: str,
    seq: int,
    *,
    event: ServerEvent | None = None,
    room: str | None = None,
    to: tuple[str, ...] = (),
    persist: bool = False,
    accounts: tuple[str, str] | None = None,
    rule: RuleChange | None = None,
    data: dict[str, Any] | None = None,
    author: str | None = None,
) -> bytes:
    """The payload appended for one entry (the script adds the stream id): a plain chat
    line in the array form (:func:`encode_line`), anything else as an object."""
    if (
        type(event) is Message
        and room == event.room
        and not to
        and accounts is None
        and not data
        and rule is None
        and kind == "event"
    ):
        return encode_line(node, seq, event, persist=persist, author=author)
    obj: dict[str, Any] = {"k": kind, "n": node, "s": seq}
    if rule is not None:
        data = {**(data or {}), "room": rule.room, "rule": rule.rule, "nick": rule.nick}
        data.update({"on": rule.on, "host": rule.host})
    if event is not None:
        body = event.to_dict()
        body.pop("id", None)  # the log numbers it
        obj["e"] = body
        if room is not None:
            obj["r"] = room
        if to:
            obj["t"] = list(to)
        if persist:
            obj["p"] = 1
        if accounts is not None:
            obj["a"] = list(accounts)
        if author is not None:
            obj["w"] = author
    if data:
        obj["d"] = data
    return orjson.dumps(obj)


def decode_entry(stream_id: str, payload: bytes) -> Entry:
    """An entry read from the stream; :class:`BadEntry` if it is not one of ours (a node
    never trusts the log blindly: another program may share the Redis)."""
    if payload[:1] == b"[":
        node, seq, line, persist, author = decode_line(stream_id, payload)
        return _line_entry(node, seq, stream_id, line, persist, author)
    try:
        obj = orjson.loads(payload)
        kind = obj["k"]
        node = str(obj["n"])
        seq = int(obj["s"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise BadEntry(f"log entry {stream_id} is not ours") from None
    if kind not in _KINDS:
        raise BadEntry(f"log entry {stream_id} has kind {kind!r}")
    data = obj.get("d") or {}
    if kind == "rule":
        return Entry(kind, node, seq, stream_id, rule=_rule(stream_id, data), data=data)
    if kind != "event":
        return Entry(kind, node, seq, stream_id, data=data)
    body = obj.get("e")
    if not isinstance(body, dict):
        raise BadEntry(f"log entry {stream_id} has no event")
    event_id, _, _ = stream_id.partition("-")
    body["id"] = int(event_id)
    try:
        event = server_event_from_dict(body)
    except RemoteProtocolError as exc:
        raise BadEntry(f"log entry {stream_id}: {exc.text}") from None
    accounts = obj.get("a")
    author = obj.get("w")
    return Entry(
        "event",
        node,
        seq,
        stream_id,
        event=event,
        room=obj.get("r"),
        to=tuple(obj.get("t") or ()),
        persist=bool(obj.get("p")),
        accounts=(str(accounts[0]), str(accounts[1])) if accounts else None,
        author=author if isinstance(author, str) else None,
        data=data,
    )


def decode_entries(stream_id: str, payload: bytes) -> list[Entry]:
    """:func:`decode_entry`, and a group's lines as an entry each (``seq`` its own running
    number, ``stream_id`` the group's): what a node reads one entry at a time (catching
    up, tests) rather than on the hot path."""
    if payload[:3] != b'["g' and payload[:3] != b'["c':
        return [decode_entry(stream_id, payload)]
    group = decode_group(stream_id, payload)
    return [
        _line_entry(group.node, seq, stream_id, line, persist, author)
        for seq, line, persist, author in zip(
            itertools.count(group.first_seq), group.lines, group.persist, group.authors
        )
    ]


def _line_entry(
    node: str, seq: int, stream_id: str, line: Message, persist: bool, author: str | None
) -> Entry:
    """The entry of a chat line of the array form (or of a group) read back."""
    return Entry(
        "event", node, seq, stream_id, event=line, room=line.room, persist=persist, author=author
    )


def _rule(stream_id: str, data: Any) -> RuleChange:
    """The change a ``rule`` entry carries, every field checked (it is applied as is)."""
    try:
        room, rule, nick, on, host = (data[k] for k in ("room", "rule", "nick", "on", "host"))
    except (KeyError, TypeError):
        raise BadEntry(f"log entry {stream_id} is a rule without its fields") from None
    if not (all(isinstance(v, str) for v in (room, nick, host)) and isinstance(on, bool)):
        raise BadEntry(f"log entry {stream_id} is a rule of the wrong types")
    if rule not in _RULES:
        raise BadEntry(f"log entry {stream_id} has rule {rule!r}")
    return RuleChange(room, rule, nick, on, host)


def own_event_prefix(node: str) -> bytes:
    """How every ``event`` entry that ``node`` appends starts (see :func:`own_event_seq`)."""
    return b'{"k":"event","n":' + orjson.dumps(node) + b',"s":'


def own_line_prefix(node: str) -> bytes:
    """How every chat line that ``node`` appends in the array form starts (see
    :func:`encode_line` and :func:`own_event_seq`)."""
    return b'["l",' + orjson.dumps(node) + b","


def own_event_seq(payload: bytes, prefix: bytes) -> int | None:
    """The running number of an ``event`` entry this node appended (``prefix`` is its
    :func:`own_event_prefix` or :func:`own_line_prefix`), or ``None`` for any other entry.

    The fast path for a node's own events, which it reads back only to learn their place
    and id: it holds each of them already, so it reads no more of the entry than this.
    Cheap and exact: node names are unique to one run, and :func:`encode_entry` writes
    ``k``, ``n`` and ``s`` first (:func:`encode_line`: the tag, node and number)."""
    if not payload.startswith(prefix):
        return None
    start = len(prefix)
    end = payload.find(b",", start)
    if end < 0:
        return None
    try:
        return int(payload[start:end])
    except ValueError:
        return None


def own_group_prefix(node: str) -> bytes:
    """How every group of chat lines that ``node`` appends starts (see
    :func:`encode_group` and :func:`own_group_seqs`)."""
    return b'["g",' + orjson.dumps(node) + b","


def own_columns_prefix(node: str) -> bytes:
    """How every group of chat lines by column that ``node`` appends starts (see
    :func:`encode_columns` and :func:`own_group_seqs`)."""
    return b'["c",' + orjson.dumps(node) + b","


def own_group_seqs(payload: bytes, prefix: bytes) -> tuple[int, int] | None:
    """The first running number and the number of lines of a group this node appended
    (``prefix`` is its :func:`own_group_prefix` or :func:`own_columns_prefix`: both start
    ``[TAG,NODE,FIRST_SEQ,COUNT,``), or ``None`` for any other entry: the
    node holds those lines already, and reads no more of the group than its start."""
    if not payload.startswith(prefix):
        return None
    start = len(prefix)
    comma = payload.find(b",", start)
    end = payload.find(b",", comma + 1)
    if comma < 0 or end < 0:
        return None
    try:
        return int(payload[start:comma]), int(payload[comma + 1 : end])
    except ValueError:
        return None
