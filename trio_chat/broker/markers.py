"""Read markers every node shares: one Redis hash per account, beside the accounts.

Why: an account's markers say how far its user has read each room, and with a broker the
ids are the log's, the same on every node; a user who reads on node A and logs in later on
node B must find A's markers there. Kept in each node's SQLite file, they would be that
node's alone. So with a broker they live in Redis, as the accounts do
(:mod:`~trio_chat.broker.accounts`): one hash ``<prefix>:read-markers:<account>`` per
account, the field a room's name key, the value a small JSON object with the id read up
to, the room's name as shown, and when it last moved.

* Forward only, even when two nodes race: a marker moves through a tiny Lua script that
  writes the new id only if it is above the stored one (a ``max``, in Redis, in one step),
  as the SQLite table's ``max(id, excluded.id)`` does on one node.
* :class:`~trio_chat.read_markers.ReadMarkers` reads an account's markers at each of its
  logins (another node may have moved them since) and writes through each move.
* A node that kept markers in its database before (it served alone) copies them in when
  it starts with a broker (:func:`move_in`), at every start, as it does its accounts: the
  script keeps whichever is further, so nothing moves back.

Every call is bounded by :data:`~trio_chat.broker.accounts.TIMEOUT`; when Redis cannot be
reached it raises :class:`~trio_chat.store.StoreError` (a ``store_error`` for a marker
moved then, a login without the markers it would have read).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .accounts import SharedInRedis, until_reached

if TYPE_CHECKING:
    import coredis

    from ..store import Store

__all__ = ["RedisMarkers", "move_in", "open_shared_markers"]

log = logging.getLogger("trio_chat.broker")

#: Write ARGV[3] (the new value) in field ARGV[1] only if the stored id is below ARGV[2]:
#: 1 if it moved. A stored value that is not ours (not JSON, no id) is replaced.
_ADVANCE = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then
  local ok, value = pcall(cjson.decode, held)
  if ok and type(value) == 'table' then
    local id = tonumber(value['id'])
    if id and id >= tonumber(ARGV[2]) then
      return 0
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


def _marker(value: bytes) -> tuple[str, int] | None:
    """The room name and id in a stored value; ``None`` for one that is not ours."""
    try:
        held = json.loads(value)
        room, marker = held["room"], held["id"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(room, str) or type(marker) is not int:
        return None
    return room, marker


class RedisMarkers(SharedInRedis):
    """Every account's read markers, in Redis (the book
    :class:`~trio_chat.read_markers.ReadMarkers` keeps them in with a broker). Make one
    with :meth:`open`."""

    WHAT = "the read markers"

    def __init__(
        self, client: coredis.Redis[bytes], url: str, *, prefix: str = "trio-chat"
    ) -> None:
        super().__init__(client, url)
        self._prefix = f"{prefix}:read-markers:"
        self._advance = client.register_script(_ADVANCE)

    def key(self, account: str) -> str:
        """The hash of ``account``'s markers."""
        return self._prefix + account

    async def read_markers(self, account: str) -> list[tuple[str, str, int]]:
        """Every read marker of ``account``: ``(room key, room name, message id)``."""
        stored: dict[bytes, bytes] = await self._call(
            "read", self._client.hgetall(self.key(account))
        )
        found = []
        for field, value in stored.items():
            held = _marker(value)
            if held is not None:
                found.append((field.decode(errors="replace"), *held))
        return sorted(found)

    async def advance_read_marker(
        self, account: str, room_key: str, room: str, message_id: int
    ) -> None:
        """Move ``account``'s marker in ``room`` forward to ``message_id`` (one further on
        already, written by any node, stays)."""
        await self._move(account, room_key, room, message_id)

    async def _move(self, account: str, room_key: str, room: str, message_id: int) -> bool:
        value = json.dumps({"id": message_id, "room": room, "changed": time.time()})
        moved = await self._call(
            "write",
            self._advance(keys=[self.key(account)], args=[room_key, message_id, value]),
        )
        return bool(moved)

    async def copy_in(self, markers: Iterable[tuple[str, str, str, int]]) -> int:
        """Add markers kept elsewhere (a node's SQLite file), as ``(account, room key, room
        name, id)``; return how many moved a marker (or made one). Forward only."""
        moved = 0
        for account, room_key, room, message_id in markers:
            moved += await self._move(account, room_key, room, message_id)
        return moved


async def move_in(store: Store, markers: RedisMarkers) -> int:
    """Copy the read markers of this node's SQLite file into Redis (see
    :meth:`RedisMarkers.copy_in`), retrying while Redis cannot be reached; return how many
    moved a marker there.

    So a node that served alone keeps its users' markers when it joins a broker, as it
    keeps their accounts (:func:`~trio_chat.broker.accounts.move_in`). Done at every start:
    a marker further on in Redis stays, so copying again moves nothing back.
    """
    local = await store.all_read_markers()
    if not local:
        return 0
    moved = await until_reached(lambda: markers.copy_in(local))
    log.info(
        "read markers: %d of this node's %d read markers copied to the shared markers "
        "(the others were as far or further there)",
        moved,
        len(local),
    )
    return moved


@asynccontextmanager
async def open_shared_markers(url: str, store: Store | None) -> AsyncIterator[RedisMarkers]:
    """The shared markers for a node's run with a broker, with those of its database
    (``store``, if it has one) copied in first."""
    async with RedisMarkers.open(url) as markers:
        if store is not None:
            await move_in(store, markers)
        yield markers
