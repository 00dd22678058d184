"""Read markers in the ``read_markers`` table, without trio: the statements
:class:`~trio_chat.store.db.Store` runs (the write through its writer task, the read on its
read connections). :mod:`trio_chat.read_markers` is what the server uses.

One row per account and room (by the room's name key): the id of the newest message the
account has read there, which only ever grows: the write keeps the larger of the stored
id and the new one, so two writes in either order end where the later reader is.
"""

from __future__ import annotations

import sqlite3
import time


def of_account(conn: sqlite3.Connection, account: str) -> list[tuple[str, str, int]]:
    """Every marker of ``account``: ``(room key, room name, message id)``."""
    rows = conn.execute(
        "SELECT room_key, room, id FROM read_markers WHERE account = ? ORDER BY room_key",
        (account,),
    )
    return [(str(key), str(room), int(marker)) for key, room, marker in rows]


def every_marker(conn: sqlite3.Connection) -> list[tuple[str, str, str, int]]:
    """Every marker: ``(account, room key, room name, message id)``."""
    rows = conn.execute(
        "SELECT account, room_key, room, id FROM read_markers ORDER BY account, room_key"
    )
    return [(str(a), str(key), str(room), int(marker)) for a, key, room, marker in rows]


def advance(conn: sqlite3.Connection, account: str, room_key: str, room: str, marker: int) -> None:
    """Move ``account``'s marker in the room to ``marker``, unless it is further already."""
    conn.execute(
        "INSERT INTO read_markers (account, room_key, room, id, changed) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (account, room_key) DO UPDATE SET"
        " id = max(id, excluded.id), room = excluded.room, changed = excluded.changed",
        (account, room_key, room, marker, time.time()),
    )
