"""SQLite itself, without trio: opening and checking a file, the statements that store
messages, and what an SQLite error means for the messages it failed.

Everything here runs in a worker thread (or is a pure function); :mod:`.db` (reads, and
opening and closing) and :mod:`.writer` (every write) schedule it from trio.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from ..protocol import MessageChange
from . import schema
from .changes import change_statements
from .records import Row, StoredMessage, StoreError, store_error

log = logging.getLogger("trio_chat.store")

COLUMNS = (
    "id, ts, room, sender, text, kind, recipient, sender_account, recipient_account,"
    " reply_to, quote_nick, quote_text, edited, deleted, changed"
)
#: Rows per INSERT statement, at most: each statement is ``INSERT ... VALUES (...), (...)``
#: with this many row groups, or a smaller power of two for the rest of a batch (so only a
#: few distinct statements exist, all in sqlite3's statement cache). Why several rows per
#: statement: sqlite3 lets go of the GIL around each statement it steps, and
#: ``executemany`` steps once per row, so the writer thread took the GIL back hundreds of
#: times per batch while the loop thread waited for it each time. Measured beside a loop
#: thread doing socket calls: it kept ~40% of its speed with executemany, ~85% with one
#: statement per batch; and SQLite spends less CPU per row
#: this way, not more.
ROWS_PER_INSERT = 64


def _insert_sql(rows: int) -> str:
    return (
        "INSERT INTO messages (id, ts, room, sender, text, kind, recipient, conv,"
        " sender_account, recipient_account, reply_to, quote_nick, quote_text) VALUES "
        + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    )


_INSERT_SQL = {1 << k: _insert_sql(1 << k) for k in range(ROWS_PER_INSERT.bit_length())}
#: Indexes the words of the room lines among the ids given (a JSON array) for search
#: (schema: ``_search_index``): only for lines committed at or below the index's mark,
#: which a writer whose ids rise never commits (see :func:`index_waiting_lines`).
INDEX_LINES_SQL = (
    "INSERT INTO message_words (rowid, text)"
    " SELECT id, text FROM room_lines WHERE id IN (SELECT value FROM json_each(?))"
)
#: How many stored rows one indexing job takes at most: it holds the writer meanwhile
#: (about 10 ms per thousand chat lines).
INDEX_BATCH = 5000


def words_indexed_to(conn: sqlite3.Connection) -> int:
    """The search index's high-water mark: every room line up to this id is indexed."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'words_indexed_to'").fetchone()
    return int(row[0]) if row is not None else 0


def index_waiting_lines(conn: sqlite3.Connection, limit: int = INDEX_BATCH) -> tuple[int, bool]:
    """Index the room lines above the mark, at most ``limit`` stored rows of them, and
    raise the mark past them, in the caller's transaction. Returns the new mark and
    whether that caught up (nothing is left above it).

    One statement for the batch: FTS5 collects the words of all its rows in memory and
    writes them out once, where indexing each commit's lines wrote them out every commit.
    The rows counted are all messages (private ones are above the mark too, and are simply
    not room lines), so a batch is bounded whatever the mix.
    """
    mark = words_indexed_to(conn)
    top, count = conn.execute(
        "SELECT max(id), count(*) FROM (SELECT id FROM messages WHERE id > ? ORDER BY id LIMIT ?)",
        (mark, limit),
    ).fetchone()
    if not count:
        return mark, True
    conn.execute(
        "INSERT INTO message_words (rowid, text)"
        " SELECT id, text FROM room_lines WHERE id > ? AND id <= ?",
        (mark, top),
    )
    conn.execute("UPDATE meta SET value = ? WHERE key = 'words_indexed_to'", (top,))
    return int(top), count < limit


def write_statements(entries: Sequence[Row | MessageChange]) -> list[tuple[str, list[object]]]:
    """The statements that store ``entries`` in order: runs of rows (chat lines and private
    messages) as INSERTs (:func:`insert_statements`), changes of messages as theirs."""
    if all(type(entry) is tuple for entry in entries):
        return insert_statements(entries)  # type: ignore[arg-type]
    statements: list[tuple[str, list[object]]] = []
    run: list[Row] = []
    for entry in entries:
        if type(entry) is tuple:
            run.append(entry)
            continue
        statements += insert_statements(run)
        run = []
        statements += change_statements(entry)  # type: ignore[arg-type]
    statements += insert_statements(run)
    return statements


def insert_statements(rows: Sequence[Row]) -> list[tuple[str, list[object]]]:
    """The INSERT statements (SQL and flat parameters) that store ``rows``. Their words
    are indexed later, in batches (:func:`index_waiting_lines`)."""
    statements: list[tuple[str, list[object]]] = []
    start = 0
    while start < len(rows):
        size = min(ROWS_PER_INSERT, 1 << ((len(rows) - start).bit_length() - 1))
        params: list[object] = []
        for row in rows[start : start + size]:
            params += row
        statements.append((_INSERT_SQL[size], params))
        start += size
    return statements


_PER_MESSAGE_ERRORS = ("SQLITE_CONSTRAINT", "SQLITE_FULL", "SQLITE_TOOBIG", "SQLITE_MISMATCH")


def belongs_to_one_message(exc: Exception) -> bool:
    """Whether a failed batch should be retried message by message.

    A duplicate id, a message too big for the space left, or a value SQLite cannot bind or
    store (no SQLite error code; a datatype mismatch) is one message's fault: retrying one
    by one saves its neighbours. A lock or I/O error is the database's: retrying would only
    wait again.
    """
    name = getattr(exc, "sqlite_errorname", None)
    return name is None or str(name).startswith(_PER_MESSAGE_ERRORS)


_NOT_THE_DATABASES_FAULT = ("SQLITE_CONSTRAINT", "SQLITE_TOOBIG", "SQLITE_MISMATCH")


def is_database_fault(exc: BaseException) -> bool:
    """Whether a failed write says the database cannot take writes (disk full, I/O error,
    locked, read-only, corrupt), rather than that this one value was refused (a duplicate
    id, a value too big or of the wrong type, a refusal in Python such as a taken name)."""
    if not isinstance(exc, sqlite3.Error):
        return False
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    return not name.startswith(_NOT_THE_DATABASES_FAULT)


def connect(path: str | os.PathLike[str], busy_timeout: float) -> sqlite3.Connection:
    # isolation_level=None: autocommit; every transaction here is an explicit BEGIN.
    # check_same_thread=False: trio's worker threads come from a cache, not one fixed thread;
    # the limiters (and the writer's lock, see .lane) make sure one connection is never
    # used by two threads at once.
    return sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )


def row_to_message(row: tuple[Any, ...]) -> StoredMessage:
    """A row of :data:`COLUMNS` as a stored message (its reactions not yet read)."""
    (id_, ts, room, sender, text, kind, recipient, sender_account, recipient_account) = row[:9]
    reply_to, quote_nick, quote_text, edited, deleted, changed = row[9:]
    return StoredMessage(
        id_,
        ts,
        room,
        sender,
        text,
        kind,
        recipient,
        sender_account,
        recipient_account,
        reply_to,
        quote_nick,
        quote_text,
        edited,
        bool(deleted),
        changed,
    )


def rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback failed")


def passive_checkpoint(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """Copy what the write-ahead log holds into the database, without waiting for the
    writer or for readers: (busy, frames in the log, frames copied).

    Run on a connection of its own, so the copy and its flush to the disk hold up no
    commit: made by a commit (SQLite's automatic checkpoint, when the log passes 1,000
    pages), they held up that commit and every line waiting behind it.
    """
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(busy), int(frames), int(copied)


def close_all(conns: list[sqlite3.Connection]) -> None:
    for conn in conns:
        try:
            conn.close()
        except sqlite3.Error:
            log.exception("closing the database failed")


def account_keys(conn: sqlite3.Connection, path: str | os.PathLike[str]) -> set[str]:
    """In a worker thread: the name key of every account."""
    try:
        return {str(row[0]) for row in conn.execute("SELECT nick_key FROM accounts")}
    except sqlite3.Error as exc:
        raise store_error(exc, path) from exc


def refuse_if_damaged(conn: sqlite3.Connection, path: str | os.PathLike[str]) -> None:
    """Raise :class:`StoreError` if ``PRAGMA quick_check`` finds the file damaged.

    SQLite reads a page only when a query needs it, so a damaged data page went unnoticed
    at start and failed some history query (or some write) much later. ``quick_check``
    reads every page once (about a second per GB) and changes nothing. Starting on a
    damaged file risks damaging it further, so it is refused, with one line that says
    what to do; the file is left as it was.
    """
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as exc:
        # Damage bad enough that the check itself stops on it; other errors (locked, not
        # a database) are reported as they are by the caller.
        if not str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_CORRUPT"):
            raise
        problems = [str(exc)]
    if problems == ["ok"]:
        return
    where = os.fspath(path)
    detail = " ".join(" ".join(problems).split())  # one line, whatever SQLite wrote
    raise StoreError(
        f"database {where} is damaged ({detail}); restore it from a backup, "
        f"or recover what is left with: sqlite3 {where} .recover"
    )


def empty_log(conn: sqlite3.Connection) -> bool:
    """Copy the write-ahead log into the database and cut it to nothing, without waiting
    for readers; ``True`` if it was done (or the file has no log).

    Why: with ``secure_delete`` a deleted message's text is zeroed in the pages that
    replace the old ones, but the old pages stay in the log (which SQLite reuses from its
    start, never shortening it) until they happen to be written over. A reader in the log
    keeps it from being cut: then it is partly copied, and ``False`` says to try again.
    """
    waits = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(waits)}")
    return not busy


def open_connections(
    path: str | os.PathLike[str],
    memory: bool,
    busy_timeout: float,
    synchronous: str,
    readers: int,
    max_size: int | None,
    checkpoints_apart: bool = False,
) -> tuple[sqlite3.Connection, list[sqlite3.Connection], int]:
    """In a worker thread: connect, check, migrate, configure; the writer, readers, last id.

    ``checkpoints_apart``: the writer's commits never checkpoint (``wal_autocheckpoint =
    0``); the caller does, from a connection of its own (:func:`passive_checkpoint`).
    """
    conns: list[sqlite3.Connection] = []
    try:
        writer = connect(path, busy_timeout)
        conns.append(writer)
        if not memory:
            refuse_if_damaged(writer, path)
        # Check and migrate first: nothing below writes to a file that is not ours.
        schema.prepare(writer, path)
        if not memory:
            mode = writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("%s: WAL mode unavailable (journal_mode=%s)", os.fspath(path), mode)
        writer.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        if checkpoints_apart:
            writer.execute("PRAGMA wal_autocheckpoint = 0")
        # A deleted message's words must not linger in freed space (see .changes).
        writer.execute("PRAGMA secure_delete = ON")
        if sqlite3.sqlite_version_info >= (3, 42, 0):  # nor in the search index's pages
            writer.execute(
                "INSERT INTO message_words (message_words, rank) VALUES ('secure-delete', 1)"
            )
        if max_size is not None:
            page_size = writer.execute("PRAGMA page_size").fetchone()[0]
            writer.execute(f"PRAGMA max_page_count = {max(1, max_size // page_size)}")
        last_id = writer.execute(
            "SELECT max((SELECT coalesce(max(id), 0) FROM messages),"
            " (SELECT value FROM meta WHERE key = 'last_id'))"
        ).fetchone()[0]
        reader_conns: list[sqlite3.Connection] = []
        for _ in range(readers):
            reader = connect(path, busy_timeout)
            conns.append(reader)
            reader.execute("PRAGMA query_only = ON")
            reader_conns.append(reader)
        return writer, reader_conns, int(last_id)
    except sqlite3.Error as exc:
        close_all(conns)
        raise store_error(exc, path) from exc
    except BaseException:
        close_all(conns)
        raise
