"""Searching room lines through the full-text index (``message_words``, made by the
schema's ``_search_index`` migration), without trio.

The statements :class:`~trio_chat.store.db.Store` runs on its read connections (in a
worker thread, batched with the other reads), and the one pure helper they need: what a
user typed becomes an FTS5 query that is never FTS5 syntax (:func:`match_all`).
Private messages are not in the index, so nothing here can find one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence

import orjson

from .records import StoredMessage
from .sqlite import COLUMNS, row_to_message

#: The message columns, named for a query that joins the index (which has a ``text`` too).
_MESSAGE_COLUMNS = ", ".join(f"m.{name}" for name in COLUMNS.split(", "))

#: Room lines matching an FTS5 query in some conversations, newest first, below an id.
#: The index walks its matches by id, newest first, and each is checked against the
#: conversations (a JSON array, so that one statement serves any number of rooms).
_SEARCH_SQL = (
    f"SELECT {_MESSAGE_COLUMNS} FROM message_words AS w JOIN messages AS m ON m.id = w.rowid"
    " WHERE message_words MATCH ? AND w.rowid < ?"
    " AND m.conv IN (SELECT value FROM json_each(?))"
    " ORDER BY w.rowid DESC LIMIT ?"
)
#: The latest lines of one conversation below an id (its index, walked backwards).
_LATEST_SQL = f"SELECT {COLUMNS} FROM messages WHERE conv = ? AND id < ? ORDER BY id DESC LIMIT ?"


def phrase(word: str) -> str:
    """``word`` as an FTS5 string: whatever it holds (``"``, ``*``, ``AND``, ``NEAR(``) is
    words to find, never query syntax. FTS5 splits it into its words as it splits the
    text, so ``don't`` finds ``don`` followed by ``t``."""
    return '"' + word.replace('"', '""') + '"'


def match_all(words: Iterable[str]) -> str:
    """An FTS5 query for lines holding every one of ``words``."""
    return " ".join(phrase(word) for word in words)


def match_any(words: Iterable[str]) -> str:
    """An FTS5 query for lines holding any one of ``words``."""
    return " OR ".join(phrase(word) for word in words)


def search(
    conn: sqlite3.Connection,
    *,
    match: str,
    conversations: Sequence[str],
    before: int,
    limit: int,
) -> list[StoredMessage]:
    """Up to ``limit`` room lines of ``conversations`` that ``match`` (an FTS5 query made
    by :func:`match_all`), with ids below ``before``, newest first."""
    rows = conn.execute(_SEARCH_SQL, (match, before, orjson.dumps(list(conversations)), limit))
    return [row_to_message(row) for row in rows]


def lines_naming(
    conn: sqlite3.Connection,
    *,
    match: str | None,
    conversations: Sequence[str],
    before: int,
    limit: int,
    keep: Callable[[StoredMessage], bool],
    candidates: int,
    scan_latest: int,
) -> list[StoredMessage]:
    """Up to ``limit`` room lines of ``conversations`` below ``before`` that ``keep``
    says yes to, newest first.

    The lines ``keep`` is asked about: the first ``candidates`` matches of ``match`` (an
    FTS5 query for the words a name is written with) and, when ``scan_latest``, the latest
    ``scan_latest`` lines of each conversation (for a name the index cannot look up: one
    of no letters or digits, or an account's, known only by its key). Both bounded, so
    one request costs a bounded read whatever the store holds.
    """
    found: dict[int, StoredMessage] = {}
    if match is not None:
        cursor = conn.execute(
            _SEARCH_SQL, (match, before, orjson.dumps(list(conversations)), candidates)
        )
        for row in cursor:
            message = row_to_message(row)
            if keep(message):
                found[message.id] = message
                if len(found) >= limit:
                    break
        cursor.close()
    if scan_latest:
        for conversation in conversations:
            for row in conn.execute(_LATEST_SQL, (conversation, before, scan_latest)):
                message = row_to_message(row)
                if message.id not in found and keep(message):
                    found[message.id] = message
    return sorted(found.values(), key=lambda m: m.id, reverse=True)[:limit]
