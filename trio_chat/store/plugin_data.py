"""Plugins' key-value data in the ``plugin_data`` table (schema version 5), without trio.

The statements and the one pure helper they need; :class:`~trio_chat.store.db.Store` runs
them (writes through its writer task, reads on its read connections), and
:mod:`trio_chat.plugin_storage` is what plugins see. Values arrive here as JSON text
already checked: this layer stores strings under ``(namespace, key)`` and nothing more.
"""

from __future__ import annotations

import sqlite3
import time

#: The highest code point: a key starting with a prefix sorts below the prefix followed by
#: the next code point (see :func:`prefix_upper_bound`).
_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix`` (``None``
    when there is none: an empty prefix, or one of nothing but U+10FFFF).

    SQLite compares TEXT as UTF-8 bytes, which is code point order, so
    ``prefix <= key < bound`` selects exactly the keys starting with ``prefix`` and lets
    the primary key's index do it (a ``LIKE`` or ``substr`` test would read the whole
    namespace). Surrogates cannot be stored, so the step from U+D7FF skips them.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < _MAX_CODE_POINT:
            following = last + 1
            if following in _SURROGATES:
                following = _SURROGATES.stop
            return "".join(chars) + chr(following)
    return None


def get(conn: sqlite3.Connection, namespace: str, key: str) -> str | None:
    row = conn.execute(
        "SELECT value FROM plugin_data WHERE namespace = ? AND key = ?", (namespace, key)
    ).fetchone()
    return None if row is None else str(row[0])


def put(conn: sqlite3.Connection, namespace: str, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO plugin_data (namespace, key, value, changed) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,"
        " changed = excluded.changed",
        (namespace, key, value, time.time()),
    )


def delete(conn: sqlite3.Connection, namespace: str, key: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM plugin_data WHERE namespace = ? AND key = ?", (namespace, key)
    )
    return cursor.rowcount == 1


def items(
    conn: sqlite3.Connection, namespace: str, prefix: str, after: str | None, limit: int
) -> list[tuple[str, str]]:
    """Up to ``limit`` ``(key, JSON text)`` pairs of ``namespace`` whose key starts with
    ``prefix`` (and sorts after ``after``, if given), in key order."""
    sql = "SELECT key, value FROM plugin_data WHERE namespace = ? AND key >= ?"
    params: list[object] = [namespace, prefix]
    if after is not None:
        sql += " AND key > ?"
        params.append(after)
    bound = prefix_upper_bound(prefix)
    if bound is not None:
        sql += " AND key < ?"
        params.append(bound)
    sql += " ORDER BY key LIMIT ?"
    params.append(limit)
    return [(str(k), str(v)) for k, v in conn.execute(sql, params)]
