"""What crosses the store's boundary: stored messages and the errors the store raises."""

from __future__ import annotations

import functools
import os
import sqlite3
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from ..names import name_key
from ..protocol import Message, Private

StoredKind: TypeAlias = Literal["say", "action", "notice", "private"]
#: A message as the ``messages`` table stores it: ``(id, ts, room, sender, text, kind,
#: recipient, conversation, sender_account, recipient_account, reply_to, quote_nick,
#: quote_text)``. (A room line's ``sender_account`` is its author's account, if any.)
Row: TypeAlias = tuple[
    int,
    float,
    str | None,
    str,
    str,
    str,
    str | None,
    str,
    str | None,
    str | None,
    int | None,
    str | None,
    str | None,
]
_KINDS = ("say", "action", "notice", "private")


class StoreError(Exception):
    """The database could not do what was asked. ``str(exc)`` is one line for the operator,
    naming the file: ``database is locked: chat.db``, ``chat.db is not a trio-chat database``.
    """


class AccountExists(Exception):
    """An account with this name key is already registered."""


@dataclass(slots=True)  # not frozen: that makes __init__ twice as slow, once per message
class StoredMessage:
    """One chat line as stored.

    Room lines have ``room`` set and ``recipient`` None; private lines (``kind="private"``)
    have ``recipient`` set and ``room`` None. ``sender`` and ``recipient`` are nicks as
    displayed; the store compares rooms by :func:`trio_chat.names.name_key`.

    A private line also names the two accounts (keys) that sender and recipient were
    logged in to when it was sent: private history belongs to accounts, never to nicks
    (a nick a guest used can be registered by someone else later). A private message
    with a guest on either side is not stored at all, so a private record always has both.
    A room line names its author's account (``sender_account``) when it was said while
    logged in: only that account may edit it (see :mod:`trio_chat.changes`).

    The fields after ``recipient_account`` are a room line's current state: the message it
    answers (``reply_to``, and the quote of it), when it was last edited, whether it was
    deleted (then ``text`` is empty), the id of its latest change, and its reactions
    (emoji -> nicks, read beside it).
    """

    id: int
    ts: float
    room: str | None
    sender: str
    text: str
    kind: StoredKind = "say"
    recipient: str | None = None
    sender_account: str | None = None
    recipient_account: str | None = None
    reply_to: int | None = None
    quote_nick: str | None = None
    quote_text: str | None = None
    edited: float | None = None
    deleted: bool = False
    changed: int | None = None
    reactions: dict[str, list[str]] | None = None

    def __post_init__(self) -> None:
        if self.id < 1:
            raise ValueError("a message id is a positive integer")
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {', '.join(_KINDS)}, not {self.kind!r}")
        if self.kind == "private":
            if self.recipient is None or self.room is not None:
                raise ValueError("a private message has a recipient and no room")
            if not self.sender_account or not self.recipient_account:
                raise ValueError("a private message is stored only between two accounts")
        elif self.room is None or self.recipient is not None:
            raise ValueError("a room message has a room and no recipient")
        elif self.recipient_account is not None:
            raise ValueError("a room message names no recipient account")

    @classmethod
    def from_message(cls, message: Message) -> StoredMessage:
        """The stored form of a room :class:`~trio_chat.protocol.Message` event."""
        return cls(
            id=message.id,
            ts=message.ts,
            room=message.room,
            sender=message.nick,
            text=message.text,
            kind=message.kind,
        )

    def row(self) -> Row:
        """This message as a table row."""
        r = self
        return (
            r.id,
            r.ts,
            r.room,
            r.sender,
            r.text,
            r.kind,
            r.recipient,
            r.conversation,
            r.sender_account,
            r.recipient_account,
            r.reply_to,
            r.quote_nick,
            r.quote_text,
        )

    @property
    def conversation(self) -> str:
        """The key history is kept under: ``r:<room key>``, or ``p:<account> <account>``
        (sorted) for a private message."""
        if self.room is not None:
            return room_conversation(self.room)
        assert self.sender_account is not None and self.recipient_account is not None
        return private_conversation(self.sender_account, self.recipient_account)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready object (for ``history export``), ``None`` fields left out."""
        obj: dict[str, Any] = {
            "id": self.id,
            "ts": self.ts,
            "kind": self.kind,
            "sender": self.sender,
            "text": self.text,
        }
        if self.room is not None:
            obj["room"] = self.room
        if self.recipient is not None:
            obj["recipient"] = self.recipient
        if self.reply_to is not None:
            obj["reply_to"] = self.reply_to
        if self.edited is not None:
            obj["edited"] = self.edited
        if self.deleted:
            obj["deleted"] = True
        if self.reactions:
            obj["reactions"] = self.reactions
        return obj


def message_row(
    event: Message | Private, accounts: tuple[str, str] | None = None, author: str | None = None
) -> Row:
    """The row that stores a chat line or private message event.

    A private message needs ``accounts``: the account keys of its sender and recipient
    when it was sent; a room line keeps ``author``, the account it was said under. The
    same as ``StoredMessage`` of it would give, without building
    one: the publisher makes a row for every message, and events are valid by construction.
    """
    if isinstance(event, Message):
        quote = event.quote
        return (
            event.id,
            event.ts,
            event.room,
            event.nick,
            event.text,
            event.kind,
            None,
            room_conversation(event.room),
            author,
            None,
            event.reply_to,
            None if quote is None else quote.get("nick"),
            None if quote is None else quote.get("text"),
        )
    if accounts is None:
        raise ValueError("a private message is stored only between two accounts")
    return (
        event.id,
        event.ts,
        None,
        event.nick,
        event.text,
        "private",
        event.to,
        private_conversation(*accounts),
        accounts[0],
        accounts[1],
        None,
        None,
        None,
    )


@functools.lru_cache(maxsize=4096)  # one key per room, asked for on every stored message
def room_conversation(room: str) -> str:
    return "r:" + name_key(room)


@functools.lru_cache(maxsize=4096)
def private_conversation(account_a: str, account_b: str) -> str:
    """The conversation of two accounts, by their keys (taken as they are: an account key
    is already a name key). Keys cannot hold spaces (nor can nicks, see
    trio_chat.names), so the pair key is unambiguous."""
    a, b = sorted((account_a, account_b))
    return f"p:{a} {b}"


def store_error(exc: sqlite3.Error, path: str | os.PathLike[str], doing: str = "") -> StoreError:
    """Turn an sqlite3 error into a :class:`StoreError` with one readable line.

    ``doing`` names the operation (``"could not save message 7"``); it prefixes the reason.
    """
    name = getattr(exc, "sqlite_errorname", "")
    where = os.fspath(path)
    if name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED"):
        reason = f"database is locked: {where} (is another trio-chat using it?)"
    elif name == "SQLITE_NOTADB":
        reason = f"{where} is not a trio-chat database (not an SQLite file)"
    elif name.startswith("SQLITE_CORRUPT"):
        reason = f"database {where} is corrupt: {exc}"
    elif name.startswith("SQLITE_CANTOPEN"):
        reason = f"cannot open database {where}: {exc}"
    elif name == "SQLITE_FULL":
        reason = f"database or disk is full: {where}"
    elif name.startswith("SQLITE_READONLY"):
        reason = f"database {where} is read-only: {exc}"
    else:
        reason = f"database {where}: {exc}"
    return StoreError(f"{doing}: {reason}" if doing else reason)
