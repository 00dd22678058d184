"""The database schema, its version, and the migrations between versions (synchronous).

A trio-chat database is marked by ``PRAGMA application_id`` (:data:`APPLICATION_ID`) and
carries its schema version in ``PRAGMA user_version``. A new database is built by running
every migration from version 0, so the path an old database takes and the path a new one
takes are the same code.

:func:`prepare` runs in a worker thread when the store opens. Everything it does happens in
one ``BEGIN IMMEDIATE`` transaction: an upgrade is applied completely or not at all, and a
file that is not ours, or comes from a newer trio-chat, is refused before a byte is written.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

from ..names import name_key
from .records import StoreError, room_conversation

#: "tcht": marks the file as a trio-chat database (``PRAGMA application_id``).
APPLICATION_ID = 0x74636874


def _v1(conn: sqlite3.Connection) -> None:
    """Version 1: messages, looked up by room."""
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(
        """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            room TEXT,
            sender TEXT NOT NULL,
            text TEXT NOT NULL,
            kind TEXT NOT NULL,
            recipient TEXT
        )
        """
    )
    conn.execute("CREATE INDEX messages_room ON messages (room, id)")


def _conversation(room: str | None, sender: str, recipient: str | None) -> str:
    if room is not None:
        return room_conversation(room)
    # As version 2 keyed private messages: by the two nicks (version 4 drops those rows).
    a, b = sorted((name_key(sender), name_key(recipient or "")))
    return f"p:{a} {b}"


def _v2(conn: sqlite3.Connection) -> None:
    """Version 2: conversation keys, accounts, an id high-water mark, retention index.

    v1 looked rooms up by their exact spelling and had no way to find one pair's private
    messages. v2 keys every message by conversation (room name key, or the sorted pair of
    nick keys), computed in Python (``name_key`` is NFKC case folding, which SQL lacks).
    ``meta.last_id`` remembers the highest id ever stored, so ids keep rising after old
    messages are pruned.
    """
    conn.create_function("tc_conversation", 3, _conversation, deterministic=True)
    conn.execute("ALTER TABLE messages ADD COLUMN conv TEXT NOT NULL DEFAULT ''")
    conn.execute("UPDATE messages SET conv = tc_conversation(room, sender, recipient)")
    conn.execute("DROP INDEX messages_room")
    conn.execute("CREATE INDEX messages_conv ON messages (conv, id)")
    conn.execute("CREATE INDEX messages_ts ON messages (ts)")
    conn.execute(
        """
        CREATE TABLE accounts (
            nick_key TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            created REAL NOT NULL,
            changed REAL NOT NULL
        )
        """
    )
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
    conn.execute(
        "INSERT INTO meta (key, value) SELECT 'last_id', coalesce(max(id), 0) FROM messages"
    )


def _v3(conn: sqlite3.Connection) -> None:
    """Version 3: no index on ``ts``.

    It served only pruning, and cost about a fifth of the CPU of every insert. Ids rise with
    time, so pruning walks the oldest ids instead (see ``Store.prune``).
    """
    conn.execute("DROP INDEX IF EXISTS messages_ts")


def _v4(conn: sqlite3.Connection) -> None:
    """Version 4: private messages belong to accounts; the old ones are deleted.

    Until now a private message was kept under its two nicks, so whoever registered a nick
    a guest had used could read that guest's private history. From now on a private
    message is stored only between two accounts, under their keys (``sender_account``,
    ``recipient_account``; the conversation key is ``p:<account> <account>``), and a
    guest's private messages are not kept past the session.

    The private rows already stored name nicks only, and nothing proves which account (if
    any) was behind a nick when a row was written. Keeping rows whose two nicks had
    accounts created before the message looks safe but is not: an account could be
    registered under a nick while a guest still held it (connected), and that guest's
    later messages would then go to the new account. So the safe choice is taken: every
    old private row is deleted. Room messages are kept as they are. The id high-water mark
    is raised first, so ids keep rising even if the newest rows were private ones.
    """
    conn.execute("ALTER TABLE messages ADD COLUMN sender_account TEXT")
    conn.execute("ALTER TABLE messages ADD COLUMN recipient_account TEXT")
    conn.execute(
        "UPDATE meta SET value = max(value, (SELECT coalesce(max(id), 0) FROM messages))"
        " WHERE key = 'last_id'"
    )
    conn.execute("DELETE FROM messages WHERE kind = 'private'")


def _v5(conn: sqlite3.Connection) -> None:
    """Version 5: plugins' own data (``server.storage(namespace)``), as JSON text.

    One row per key of a plugin's namespace. ``WITHOUT ROWID``: the primary key is the
    only way rows are looked up (one key, or a namespace's keys in order), so the table is
    that index and nothing else. Nothing older changes.
    """
    conn.execute(
        """
        CREATE TABLE plugin_data (
            namespace TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            changed REAL NOT NULL,
            PRIMARY KEY (namespace, key)
        ) WITHOUT ROWID
        """
    )


def _read_markers(conn: sqlite3.Connection) -> None:
    """Read markers: per account and room, the id of the newest message read there (see
    :mod:`trio_chat.read_markers`), so every device of the account, and the next login,
    starts from where the user left off.

    Keyed by the account and the room's name key (``WITHOUT ROWID``: the key is the only
    way rows are read, an account's at login); ``room`` keeps the name as it was shown.
    Nothing older changes.
    """
    conn.execute(
        """
        CREATE TABLE read_markers (
            account TEXT NOT NULL,
            room_key TEXT NOT NULL,
            room TEXT NOT NULL,
            id INTEGER NOT NULL,
            changed REAL NOT NULL,
            PRIMARY KEY (account, room_key)
        ) WITHOUT ROWID
        """
    )


def _search_index(conn: sqlite3.Connection) -> None:
    """A full-text index of room lines (SQLite FTS5), for ``search`` and ``/mentions``.

    An *external content* index: it keeps the words and where they are, not a second copy
    of the text, which stays in ``messages`` alone. Its content is the view
    ``room_lines`` (the room lines: private messages are never searched), so FTS5's own
    ``rebuild`` and ``integrity-check`` see exactly what is indexed. The words are split by
    FTS5's ``unicode61`` tokenizer with ``remove_diacritics 2``: letters and digits make
    words, case and accents do not count. ``columnsize=0``: no per-line word counts, which
    only ranking by relevance reads (lines are found newest first), and which cost a fifth
    of each insert. The lines already stored are indexed here, in the migration's
    transaction.

    Lines are indexed off the commit path, in batches, by the store's writer
    (:func:`~trio_chat.store.sqlite.index_waiting_lines`): ``meta.words_indexed_to`` is
    the high-water mark, the highest message id up to which every room line is indexed;
    the lines above it wait. Indexing in the commit of each batch cost the commit half
    again of its CPU (``bench/store_insert.py``); a search first brings the index up to
    date, so it still finds every line committed before it was asked. The mark starts at
    the largest id indexed by the rebuild here.

    A changed or deleted row is kept right by triggers on ``messages``, so whatever
    changes it (an edit, a delete, pruning) needs no code of its own: a text updated is
    taken out under its old words and put back under its new ones (a deleted line, whose
    text becomes ``""``, has none, so it is never found); a row deleted is taken out. Each
    fires for indexed room lines only (``old.id <=`` the mark): FTS5 must be told a row's
    old text exactly as it was indexed, and must never be told to delete a row it does
    not hold. A line not yet indexed needs nothing: it is indexed as it is when its turn
    comes.
    """
    conn.execute("CREATE VIEW room_lines AS SELECT id, text FROM messages WHERE room IS NOT NULL")
    conn.execute(
        "CREATE VIRTUAL TABLE message_words USING fts5(text, content='room_lines',"
        " content_rowid='id', columnsize=0, tokenize='unicode61 remove_diacritics 2')"
    )
    conn.execute("INSERT INTO message_words (message_words) VALUES ('rebuild')")
    conn.execute(
        "INSERT INTO meta (key, value)"
        " SELECT 'words_indexed_to', coalesce(max(id), 0) FROM messages"
    )
    conn.execute(
        f"""
        CREATE TRIGGER message_words_update AFTER UPDATE OF text ON messages
        WHEN new.room IS NOT NULL AND old.id <= {_INDEXED_TO} BEGIN
            INSERT INTO message_words (message_words, rowid, text)
                VALUES ('delete', old.id, old.text);
            INSERT INTO message_words (rowid, text) VALUES (new.id, new.text);
        END
        """
    )
    conn.execute(
        f"""
        CREATE TRIGGER message_words_delete AFTER DELETE ON messages
        WHEN old.room IS NOT NULL AND old.id <= {_INDEXED_TO} BEGIN
            INSERT INTO message_words (message_words, rowid, text)
                VALUES ('delete', old.id, old.text);
        END
        """
    )


#: The search index's high-water mark, as the triggers read it.
_INDEXED_TO = "(SELECT value FROM meta WHERE key = 'words_indexed_to')"


def _message_changes(conn: sqlite3.Connection) -> None:
    """Replies, edits, deletes and reactions (see :mod:`trio_chat.changes`).

    A room line now keeps the message it answers (``reply_to``, with the author and the
    cut text quoted of it), when it was last edited (``edited``), whether it was deleted
    (``deleted``; its text is then empty), and the id of its latest change (``changed``:
    what ``history`` with ``changed_after`` pages by, hence the partial index). Its
    author's account goes in ``sender_account``, which room lines left empty until now: a
    line stored before this version has none, so nobody can edit it (an operator can
    delete it). Reactions are rows of their own, numbered by the event that added them
    (so they read back in the order given). Nothing older changes.
    """
    for column in (
        "reply_to INTEGER",
        "quote_nick TEXT",
        "quote_text TEXT",
        "edited REAL",
        "deleted INTEGER NOT NULL DEFAULT 0",
        "changed INTEGER",
    ):
        conn.execute(f"ALTER TABLE messages ADD COLUMN {column}")
    conn.execute(
        "CREATE INDEX messages_changed ON messages (conv, changed) WHERE changed IS NOT NULL"
    )
    conn.execute("CREATE INDEX messages_replies ON messages (reply_to) WHERE reply_to IS NOT NULL")
    conn.execute(
        """
        CREATE TABLE reactions (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL,
            emoji TEXT NOT NULL,
            nick TEXT NOT NULL,
            nick_key TEXT NOT NULL,
            UNIQUE (message_id, emoji, nick_key)
        )
        """
    )


#: MIGRATIONS[v] turns a version-v database into version v + 1. Append, never edit.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _v1,
    _v2,
    _v3,
    _v4,
    _v5,
    _read_markers,
    _search_index,
    _message_changes,
)
SCHEMA_VERSION = len(MIGRATIONS)


def read_version(conn: sqlite3.Connection, path: str | os.PathLike[str]) -> int:
    """The schema version of an open database, 0 for an empty one.

    Raises :class:`StoreError` if the file is someone else's database or comes from a
    newer trio-chat. Reads only.
    """
    where = os.fspath(path)
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ).fetchone()[0]
    if app_id == 0 and version == 0 and tables == 0:
        return 0
    if app_id != APPLICATION_ID:
        raise StoreError(f"{where} is not a trio-chat database (it belongs to another program)")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"database {where} was made by a newer trio-chat "
            f"(schema {version} > {SCHEMA_VERSION}); upgrade trio-chat to use it"
        )
    if version < 1:
        raise StoreError(f"{where} is not a trio-chat database (no schema version)")
    return int(version)


def prepare(conn: sqlite3.Connection, path: str | os.PathLike[str]) -> int:
    """Check the database is ours and bring it to :data:`SCHEMA_VERSION` in one transaction.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Returns the version the
    file had. Raises :class:`StoreError` (nothing written) or :class:`sqlite3.Error`.
    """
    # IMMEDIATE takes the write lock up front: a database another process is writing is
    # refused here, at open, rather than at the first message.
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = read_version(conn, path)
        for version in range(found, SCHEMA_VERSION):
            MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        if found == SCHEMA_VERSION:
            conn.execute("ROLLBACK")
        else:
            conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found
