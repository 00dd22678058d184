"""The SQL of message changes (edits, deletes, reactions): how each is written, and how a
page of messages gets its reactions (synchronous, for the writer and reader threads).

A change is written in the same transaction as the chat lines numbered around it, in id
order (see :func:`~trio_chat.store.writer.message_item`), so a change is committed before
anyone is told of it, exactly as a line is, and survives a crash the same way.

What a delete leaves: the row (its id, time, author and kind, so that history keeps its
place), with ``text`` empty and ``deleted`` set; its reactions, its own quote and the text
quoted of it by replies are deleted with it. The deleted words are gone from the file's
tables (SQLite may keep freed pages until they are reused; ``secure_delete`` is on for
the writer, so they are overwritten with zeros), and from its write-ahead log, which the
writer empties right after the commit (:func:`.sqlite.empty_log`). The search index
keeps a deleted line's single words in its pages until SQLite merges them, unless SQLite
is 3.42 or newer (its ``secure-delete`` option, set at open).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from ..names import name_key
from ..protocol import MessageChange, MessageDeleted, MessageEdited
from .records import StoredMessage, room_conversation

Statement = tuple[str, list[object]]

_EDIT = (
    "UPDATE messages SET text = ?, edited = ?, changed = ?"
    " WHERE id = ? AND conv = ? AND deleted = 0 AND room IS NOT NULL"
)
_DELETE = (
    "UPDATE messages SET text = '', deleted = 1, changed = ?, quote_text = NULL,"
    " quote_nick = NULL, edited = NULL WHERE id = ? AND conv = ? AND room IS NOT NULL"
)
_DELETE_REACTIONS = "DELETE FROM reactions WHERE message_id = ?"
_UNQUOTE = "UPDATE messages SET quote_text = '' WHERE reply_to = ? AND conv = ?"
_REACT = (
    "INSERT OR IGNORE INTO reactions (id, message_id, emoji, nick, nick_key)"
    " SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM messages"
    " WHERE id = ? AND conv = ? AND deleted = 0 AND room IS NOT NULL)"
)
_UNREACT = "DELETE FROM reactions WHERE message_id = ? AND emoji = ? AND nick_key = ?"
_TOUCH = "UPDATE messages SET changed = ? WHERE id = ? AND conv = ? AND deleted = 0"


def change_statements(change: MessageChange) -> list[Statement]:
    """The statements that write ``change`` (a change of a message that is not there, or
    was deleted, changes nothing)."""
    conv = room_conversation(change.room)
    target = change.target
    if isinstance(change, MessageEdited):
        return [(_EDIT, [change.text, change.ts, change.id, target, conv])]
    if isinstance(change, MessageDeleted):
        return [
            (_DELETE, [change.id, target, conv]),
            (_DELETE_REACTIONS, [target]),
            (_UNQUOTE, [target, conv]),
        ]
    key = name_key(change.nick)
    if change.on:
        react = [change.id, target, change.emoji, change.nick, key, target, conv]
        statements = [(_REACT, react)]
    else:
        statements = [(_UNREACT, [target, change.emoji, key])]
    return [*statements, (_TOUCH, [change.id, target, conv])]


def add_reactions(conn: sqlite3.Connection, messages: Iterable[StoredMessage]) -> None:
    """Fill in the reactions of ``messages`` that were ever changed (the others have none),
    emoji -> nicks in the order they reacted."""
    changed = {m.id: m for m in messages if m.changed is not None and not m.deleted}
    if not changed:
        return
    marks = ",".join("?" * len(changed))
    rows = conn.execute(
        f"SELECT message_id, emoji, nick FROM reactions WHERE message_id IN ({marks}) ORDER BY id",
        list(changed),
    )
    for message_id, emoji, nick in rows:
        message = changed[message_id]
        if message.reactions is None:
            message.reactions = {}
        message.reactions.setdefault(str(emoji), []).append(str(nick))
