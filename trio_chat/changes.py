"""Replies, edits, deletes and reactions: the rules, without I/O.

A message said in a room can be answered (a ``say`` with ``reply_to``: the new line
carries a short ``quote`` of the one it answers), edited by its author, deleted by its
author or an operator of the room, and reacted to by any member. Each change is a numbered
room event (``edit``, ``delete``, ``reaction``) that goes the way of a chat line: the
broker's order, the publisher's commit, then every member. This module holds what can be
decided on plain values: which emoji is acceptable, how a quote is cut, who may change a
message, and how a message's current state (the history's form) follows from a change.

Who wrote a message must be known safely, never by nick (a nick a guest used may be
registered by someone else later). A line said while logged in belongs to that account
(kept with the line in the store and in the broker's log); a guest's line belongs to the
guest's session alone, which only this node's memory knows (:class:`MessageIndex`): so a
guest may change its lines while they are among the room's latest
:data:`INDEX_SIZE` on the node it is connected to, and nobody may after it leaves.
"""

from __future__ import annotations

import bisect
import copy
import unicodedata
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import FixedCodeError
from .names import name_key
from .protocol import (
    MessageChange,
    MessageDeleted,
    MessageEdited,
    Reaction,
    find_control_character,
)

__all__ = [
    "INDEX_SIZE",
    "MAX_EMOJI_BYTES",
    "MAX_REACTIONS",
    "QUOTE_CHARS",
    "Authored",
    "BadEmoji",
    "MessageIndex",
    "NoSuchMessage",
    "Said",
    "apply_change",
    "check_emoji",
    "cut_quote",
    "describe",
]

#: Characters of the answered message's text a reply's ``quote`` keeps.
QUOTE_CHARS = 100
#: Most bytes (UTF-8) of one reaction: an emoji with its modifiers, or a short token.
MAX_EMOJI_BYTES = 32
#: Most distinct reactions one message may have (a new one past it is refused).
MAX_REACTIONS = 20
#: Latest lines per room whose authors this node keeps in memory (guests' lines can be
#: changed only while among them; others are looked up in the store past them).
INDEX_SIZE = 1000


class NoSuchMessage(FixedCodeError):
    """No message with that id in that room, or it was deleted."""

    code = "no_such_message"


class BadEmoji(FixedCodeError):
    """A reaction that is not one emoji or short token."""

    code = "bad_field"


def check_emoji(emoji: str) -> str:
    """``emoji`` if it may be a reaction: at most :data:`MAX_EMOJI_BYTES` bytes of UTF-8,
    no whitespace, no control or format-only character but the joiners emoji use
    (ZWJ, variation selectors). Else :class:`BadEmoji`."""
    if not emoji:
        raise BadEmoji("a reaction needs an emoji")
    if len(emoji.encode("utf-8", "surrogatepass")) > MAX_EMOJI_BYTES:
        raise BadEmoji(f"a reaction is at most {MAX_EMOJI_BYTES} bytes")
    if find_control_character(emoji) is not None:
        raise BadEmoji("a reaction cannot hold control characters")
    for char in emoji:
        category = unicodedata.category(char)
        if char.isspace() or category in ("Zs", "Zl", "Zp", "Cc", "Cs", "Co", "Cn"):
            raise BadEmoji("a reaction is one emoji or word, without spaces")
        if category == "Cf" and char not in "\u200d\ufe0e\ufe0f":
            raise BadEmoji("a reaction cannot hold invisible characters")
    return emoji


def cut_quote(text: str) -> str:
    """The part of a message's text a reply quotes: at most :data:`QUOTE_CHARS`
    characters, ``…`` at the end when cut."""
    if len(text) <= QUOTE_CHARS:
        return text
    return text[: QUOTE_CHARS - 1] + "…"


@dataclass(slots=True)
class Authored:
    """What this node knows of one message of a room: enough to say who may change it
    and what a reply to it quotes."""

    id: int
    nick: str
    #: The account key it was said under; ``None`` for a guest's line.
    account: str | None
    #: For a guest's line said on this node: the guest's session id (else ``None``).
    session_id: int | None
    #: Its text as a quote shows it (:func:`cut_quote`).
    quote: str
    deleted: bool = False
    #: Emoji -> nicks that reacted so, in order of reacting.
    reactions: dict[str, list[str]] = field(default_factory=dict)

    def written_by(self, account: str | None, session_id: int) -> bool:
        """Whether the user logged in to ``account`` (``None``: a guest) on the session
        ``session_id`` is this message's author."""
        if self.account is not None:
            return account == self.account
        return self.session_id is not None and self.session_id == session_id

    def apply(self, change: MessageChange) -> None:
        """Follow a change of this message (delivered in id order)."""
        if isinstance(change, MessageDeleted):
            self.deleted = True
            self.quote = ""
            self.reactions.clear()
        elif isinstance(change, MessageEdited):
            self.quote = cut_quote(change.text)
        elif not self.deleted:
            toggle(self.reactions, change)


def toggle(reactions: dict[str, list[str]], change: Reaction) -> None:
    """Add or take back ``change.nick``'s reaction in ``reactions`` (emoji -> nicks);
    nothing happens when it is already so."""
    key = name_key(change.nick)
    nicks = reactions.get(change.emoji, [])
    present = [n for n in nicks if name_key(n) == key]
    if change.on and not present:
        reactions[change.emoji] = [*nicks, change.nick]
    elif not change.on and present:
        rest = [n for n in nicks if name_key(n) != key]
        if rest:
            reactions[change.emoji] = rest
        else:
            reactions.pop(change.emoji, None)


class Said(Protocol):
    """What delivery hands the index of a line: the hub's
    :class:`~trio_chat.delivery.Pending` it was delivered as."""

    @property
    def event(self) -> Any: ...  # the Message
    @property
    def author(self) -> str | None: ...  # the account it was said under
    @property
    def sender(self) -> Any: ...  # the Session that said it on this node, or None


#: What the index keeps of a line until a change or a reply asks about it: its nick, the
#: account it was said under, the guest session that said it on this node, and the part
#: of its text a quote shows (:func:`cut_quote`: all there is to know of it here). Only
#: strings and numbers, in a room's :class:`_Lines` (four entries of its ``rows`` a
#: line): the garbage collector finds nothing to follow in them, and looks at a room's
#: list only in a full collection (rare: :func:`trio_chat.program.quiet_gc`), so a
#: thousand lines kept per room cost it next to nothing. (Keeping the events themselves
#: made every line survive a collection or two, which cost the delivery of a line more
#: than everything else the index does.)
_Kept = tuple[str, str | None, int | None, str]


class _Lines:
    """One room's kept lines by column: their ids in an array (ascending: the hub
    delivers a room's lines in id order), and a list of four entries a line, the line's
    :data:`_Kept` values, the first replaced by an :class:`Authored` once one is made.

    Why not a dict of tuples: with no database the index keeps a room's latest thousand
    to two thousand lines, so in a community of a few hundred small rooms at a modest
    rate it keeps every line said for minutes; as a dict entry (with its share of the
    table), a tuple of four, an id ``int`` and the text a line was ~265 bytes for a
    text of 64 characters, as columns it is ~158 (bench/README.md, "the community's
    memory"). Of a text only what a quote shows is kept (:func:`cut_quote`: all the
    index ever needs of it)."""

    __slots__ = ("ids", "latest", "rows")

    def __init__(self) -> None:
        self.ids = array("q")
        #: The last id (``ids[-1]``, without making an ``int`` of it at each line).
        self.latest = -1
        self.rows: list[Any] = []

    def __len__(self) -> int:
        return len(self.ids)

    def find(self, message_id: int) -> int:
        """The line's place, or -1."""
        ids = self.ids
        at = bisect.bisect_left(ids, message_id)
        return at if at < len(ids) and ids[at] == message_id else -1

    def put(self, message_id: int, kept: _Kept) -> None:
        """A line that is not the latest (delivered out of id order; not on the hub's
        path): in its place, or over the one with its id."""
        at = bisect.bisect_left(self.ids, message_id)
        if at < len(self.ids) and self.ids[at] == message_id:
            self.rows[4 * at : 4 * at + 4] = kept
        else:
            self.ids.insert(at, message_id)
            self.rows[4 * at : 4 * at] = kept

    def keep_latest(self, count: int) -> None:
        drop = len(self.ids) - count
        if drop > 0:
            del self.ids[:drop]
            del self.rows[: 4 * drop]


class MessageIndex:
    """Per room, the authors and state of its latest lines delivered on this node (at
    least :data:`INDEX_SIZE`, at most twice as many), with or without a database, fed by
    the hub's delivery in id order.

    On the path of every line, so it does as little as it can there: a line's plain
    values appended to its room's columns (:class:`_Lines`), the oldest dropped
    :data:`INDEX_SIZE` at a time, and an :class:`Authored` made of a line only when a
    change or a reply asks for it."""

    __slots__ = ("_deleted", "_rooms", "size")

    def __init__(self, size: int = INDEX_SIZE) -> None:
        self.size = size
        self._rooms: dict[str, _Lines] = {}
        #: Per room, the ids of messages older than those kept whose delete was delivered
        #: here (the latest :attr:`size` of them): see :meth:`was_deleted`.
        self._deleted: dict[str, dict[int, None]] = {}

    def add(self, room: str, said: Iterable[Said]) -> None:
        """Lines delivered to ``room`` (as delivery holds them), in id order."""
        key = name_key(room)
        lines = self._rooms.get(key)
        if lines is None:
            lines = self._rooms[key] = _Lines()
        ids, rows = lines.ids, lines.rows
        for line in said:
            event, sender = line.event, line.sender
            text = event.text
            if len(text) > QUOTE_CHARS:
                text = cut_quote(text)
            if sender is None:  # another node's line: the log says whose
                kept: _Kept = (event.nick, line.author, None, text)
            elif sender.account is not None:  # (see delivery.author_of)
                kept = (event.nick, sender.account, None, text)
            else:
                kept = (event.nick, None, sender.id, text)
            message_id = event.id
            if message_id > lines.latest:
                lines.latest = message_id
                ids.append(message_id)
                rows += kept
            else:
                lines.put(message_id, kept)
        if len(ids) > 2 * self.size:
            lines.keep_latest(self.size)

    def get(self, room: str, message_id: int) -> Authored | None:
        lines = self._rooms.get(name_key(room))
        if lines is None:
            return None
        at = lines.find(message_id)
        if at < 0:
            return None
        rows = lines.rows
        first = rows[4 * at]
        if isinstance(first, Authored):
            return first
        _, account, guest, quote = rows[4 * at : 4 * at + 4]
        authored = rows[4 * at] = Authored(message_id, first, account, guest, quote)
        return authored

    def covers(self, room: str, message_id: int) -> bool:
        """Whether a message ``message_id`` of ``room`` would be here if it existed (it is
        not older than the oldest line kept, and lines were dropped): then a miss means
        there is none."""
        lines = self._rooms.get(name_key(room))
        if not lines or len(lines) < self.size:
            return False
        return message_id >= lines.ids[0]

    def apply(self, change: MessageChange) -> None:
        """A change delivered to its room: its target (if kept here) follows it."""
        entry = self.get(change.room, change.target)
        if entry is not None:
            entry.apply(change)
        elif isinstance(change, MessageDeleted):
            deleted = self._deleted.setdefault(name_key(change.room), {})
            deleted[change.target] = None
            if len(deleted) > self.size:
                del deleted[next(iter(deleted))]

    def was_deleted(self, room: str, message_id: int) -> bool:
        """Whether a delete of message ``message_id`` of ``room`` was delivered here (as
        far as this node remembers: the lines it keeps, and the latest deletes of older
        ones). An edit or a reaction checked before that delete was numbered, on another
        node or while its message was read from the store, is numbered after it: such a
        change is not delivered (see :meth:`Delivery.deliver
        <trio_chat.delivery.Delivery.deliver>`)."""
        entry = self.get(room, message_id)
        if entry is not None:
            return entry.deleted
        return message_id in self._deleted.get(name_key(room), ())

    def forget_room(self, room: str) -> None:
        self._rooms.pop(name_key(room), None)
        self._deleted.pop(name_key(room), None)


def apply_change(line: dict[str, Any], change: MessageChange) -> dict[str, Any]:
    """A message in its history form (``line``) after ``change``: a new dict (pages
    already sent keep theirs). Sets ``text``, ``edited``, ``deleted``, ``reactions`` and
    ``changed`` as ``docs/protocol.md`` describes them."""
    line = dict(line)
    if line.get("deleted"):
        return line  # nothing changes a deleted message any more
    line["changed"] = change.id
    if isinstance(change, MessageEdited):
        line["text"] = change.text
        line["edited"] = change.ts
    elif isinstance(change, MessageDeleted):
        line["text"] = ""
        line["deleted"] = True
        for name in ("reactions", "quote", "edited"):
            line.pop(name, None)
    else:
        reactions = copy.deepcopy(line.get("reactions") or {})
        toggle(reactions, change)
        if reactions:
            line["reactions"] = reactions
        else:
            line.pop("reactions", None)
    return line


def quote_gone(line: dict[str, Any], deleted_id: int) -> dict[str, Any]:
    """A reply in its history form whose quoted message ``deleted_id`` was deleted: the
    quote keeps the nick, loses the text."""
    quote = line.get("quote")
    if line.get("reply_to") != deleted_id or not isinstance(quote, dict):
        return line
    return {**line, "quote": {**quote, "text": ""}}


def describe(change: MessageChange) -> str:
    """A change in words, for those who read lines (text mode, IRC): ``alice edited
    message 12: new text``."""
    if isinstance(change, MessageEdited):
        return f"{change.nick} edited message {change.target}: {change.text}"
    if isinstance(change, MessageDeleted):
        return f"{change.nick} deleted message {change.target}"
    if change.on:
        return f"{change.nick} reacted {change.emoji} to message {change.target}"
    return f"{change.nick} took back {change.emoji} from message {change.target}"
