"""Searching room lines through the full-text index (``message_words``, made by the
schema's ``_search_index`` migration), without trio.

The statements :class:`~trio_chat.store.db.Store` runs on its read connections (in a
worker thread, batched with the other reads), and the one pure helper they need: what a
user typed becomes an FTS5 query that is never FTS5 syntax (:func:`match_all`).
Private messages are not in the index, so nothing here can find one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

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


#: How long one search may read, in seconds. The index finds a word's lines in every room
#: and each is then checked against the asker's rooms, so a common word asked for in a
#: quiet room could read most of the index; past this the read stops (the reader is shared
#: with everyone's history).
READ_BUDGET = 0.5
#: SQLite virtual machine steps between two looks at the clock.
_STEPS = 10_000


class SearchTooBroad(Exception):
    """A search read for longer than :data:`READ_BUDGET` and was stopped."""


@contextlib.contextmanager
def read_budget(conn: sqlite3.Connection, seconds: float) -> Iterator[list[bool]]:
    """Stop the statements run on ``conn`` within the block once ``seconds`` have passed
    (they raise ``sqlite3.OperationalError``, "interrupted"); the list yielded holds
    ``True`` once that happened."""
    deadline = time.monotonic() + seconds
    stopped: list[bool] = []

    def check() -> int:
        if time.monotonic() > deadline:
            stopped.append(True)
            return 1
        return 0

    conn.set_progress_handler(check, _STEPS)
    try:
        yield stopped
    finally:
        conn.set_progress_handler(None, _STEPS)


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
    by :func:`match_all`), with ids below ``before``, newest first. Raises
    :class:`SearchTooBroad` when that reads for longer than :data:`READ_BUDGET`."""
    rooms = orjson.dumps(list(conversations)).decode()
    with read_budget(conn, READ_BUDGET) as stopped:
        try:
            rows = conn.execute(_SEARCH_SQL, (match, before, rooms, limit)).fetchall()
        except sqlite3.OperationalError:
            if stopped:
                raise SearchTooBroad(f"the search read for more than {READ_BUDGET} s") from None
            raise
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
    one request costs a bounded read whatever the store holds; the index's part stops
    after :data:`READ_BUDGET` seconds with what it found by then.
    """
    found: dict[int, StoredMessage] = {}
    if match is not None:
        rooms = orjson.dumps(list(conversations)).decode()
        with read_budget(conn, READ_BUDGET) as stopped:
            cursor = conn.cursor()
            try:
                for row in cursor.execute(_SEARCH_SQL, (match, before, rooms, candidates)):
                    message = row_to_message(row)
                    if keep(message):
                        found[message.id] = message
                        if len(found) >= limit:
                            break
            except sqlite3.OperationalError:
                if not stopped:
                    raise
            finally:
                cursor.close()
    if scan_latest:
        for conversation in conversations:
            for row in conn.execute(_LATEST_SQL, (conversation, before, scan_latest)):
                message = row_to_message(row)
                if message.id not in found and keep(message):
                    found[message.id] = message
    return sorted(found.values(), key=lambda m: m.id, reverse=True)[:limit]
