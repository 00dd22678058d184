"""Read markers: how far a user has read each room, the same on every one of its devices.

A client sends ``{"type": "read", "room": "#dev", "id": 1234}`` when its user has seen the
room up to message 1234 (the page when the room is on screen, a terminal when a line is
shown). The marker:

* only moves forward: an id at or below the marker changes nothing (and is not answered);
  an id above the newest the server has given out is refused (``bad_field``), so that no
  client can push a marker past every message to come;
* belongs to the **account** for a user logged in to one (every device, and the next
  login, start from it), stored in the database (the ``read_markers`` table, committed
  before the server counts it as saved, so a SIGKILL keeps it; in memory for the run with
  ``--no-db``); a guest's is kept for its session, in memory;
* is told to the user's **other** connections at once (a ``read`` event), so a phone
  clears the unread count the laptop just read;
* comes with the ``welcome`` (``read``: room -> id, for the rooms the user is in) and as a
  ``read`` event after the user's ``join`` of a room it has a marker in (at login, on
  ``/join``), and, for a connection that joins a user connected already (or kept
  offline), after the welcome and the rooms' history.

Loading is done once per account and server run, at login (:meth:`ReadMarkers.load`);
from then on memory is the truth and the database follows, so nothing is read per frame.

With a broker (several nodes, ``--broker``) the markers are not the node's database's but
one shared book in Redis (:mod:`~trio_chat.broker.markers`, :attr:`ReadMarkers.shared`):
another node may have moved them since this one last read them, so they are read at
*each* login of the account, and merged forward with what this node holds (each marker
keeps the larger id); each move is written through, forward only there too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from .errors import ChatError
from .hub import Device, Hub, NotInRoom, Session
from .names import name_key
from .protocol import ReadMarker
from .store import StoreError

__all__ = ["MarkerBook", "ReadMarkers"]

log = logging.getLogger("trio_chat.read_markers")

#: Per room key: (the room's name as shown, the id of the newest message read there).
Markers = dict[str, tuple[str, int]]


class MarkerBook(Protocol):
    """Where accounts' markers are kept: the node's :class:`~trio_chat.store.Store`, or,
    with a broker, :class:`~trio_chat.broker.markers.RedisMarkers`. Both raise
    :class:`~trio_chat.store.StoreError` when they cannot."""

    async def read_markers(self, account: str) -> list[tuple[str, str, int]]:
        """Every marker of ``account``: ``(room key, room name, message id)``."""
        ...

    async def advance_read_marker(
        self, account: str, room_key: str, room: str, message_id: int
    ) -> None:
        """Move ``account``'s marker in the room forward to ``message_id`` (never back)."""
        ...


class ReadMarkers:
    """The server's read markers (see the module's doc). ``store`` is set while the server
    serves with a database, or a broker (then ``shared`` too)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.store: MarkerBook | None = None
        #: Whether :attr:`store` is shared with other nodes, which move the markers too:
        #: then an account's are read at each of its logins, not once per run.
        self.shared = False
        #: Per account key, loaded at its first login in this run (see :meth:`load`).
        self._accounts: dict[str, Markers] = {}
        #: Per guest (session id), for as long as it is connected.
        self._guests: dict[int, Markers] = {}
        hub.on_join.append(self._joined)
        hub.on_detach.append(self._detached)

    def clear(self) -> None:
        """Forget everything held in memory (the server stopped: the next run loads anew)."""
        self._accounts.clear()
        self._guests.clear()

    async def load(self, account: str) -> None:
        """Have ``account``'s markers at hand: read from the database once per run, or from
        the shared book (:attr:`shared`) at every login. A failed read is logged and
        leaves what this node holds (unloaded: tried again at the next login): the login
        goes on, with the markers this node had, if any."""
        if account in self._accounts and not self.shared:
            return
        rows: list[tuple[str, str, int]] = []
        if self.store is not None:
            try:
                rows = await self.store.read_markers(account)
            except StoreError as exc:
                log.error("read markers of %s could not be read: %s", account, exc)
                return
        # Another login of the account may have loaded (and moved) them meanwhile; a
        # marker moved here but not saved may be further on than the book: forward only.
        held = self._accounts.setdefault(account, {})
        for key, room, marker in rows:
            mine = held.get(key)
            if mine is None or mine[1] < marker:
                held[key] = (room, marker)

    def _of(self, session: Session, *, create: bool = False) -> Markers | None:
        if session.account is not None:
            markers = self._accounts.get(session.account)
            if markers is None and create:
                markers = self._accounts[session.account] = {}
            return markers
        markers = self._guests.get(session.id)
        if markers is None and create:
            markers = self._guests[session.id] = {}
        return markers

    def marker(self, session: Session, room: str) -> int | None:
        """The id ``session`` has read ``room`` up to, or ``None``."""
        held = (self._of(session) or {}).get(name_key(room))
        return None if held is None else held[1]

    def of_rooms(self, session: Session, rooms: Iterable[str]) -> dict[str, int] | None:
        """``session``'s markers in ``rooms`` (room -> id), ``None`` when it has none there:
        the ``welcome``'s ``read``."""
        markers = self._of(session)
        if not markers:
            return None
        found = {}
        for room in rooms:
            held = markers.get(name_key(room))
            if held is not None:
                found[held[0]] = held[1]
        return found or None

    async def mark(self, session: Session, room_name: str, message_id: int) -> bool:
        """``session`` has read ``room_name`` up to ``message_id``: move its marker there
        (whether it moved), tell its other connections, and store it for an account.

        Raises :class:`~trio_chat.rooms.NotInRoom`, or a ``ChatError`` ``bad_field`` (an id
        not given out yet) or ``store_error`` (moved, and told, but not saved)."""
        room = self.hub.room(room_name)
        if room is None or session.id not in room.members:
            raise NotInRoom(f"you are not in {room_name}")
        if message_id > self.hub.last_id:
            raise ChatError("bad_field", f"there is no message {message_id} yet")
        key = name_key(room.name)
        markers = self._of(session, create=True)
        assert markers is not None
        held = markers.get(key)
        if held is not None and held[1] >= message_id:
            return False
        markers[key] = (room.name, message_id)
        asking = self.hub.connection_of(session)
        others = tuple(device for device in session.devices if device is not asking)
        if others:
            self.hub.tell(others, ReadMarker(room=room.name, message_id=message_id))
        if session.account is not None and self.store is not None:
            try:
                await self.store.advance_read_marker(session.account, key, room.name, message_id)
            except StoreError as exc:
                log.error("read marker of %s in %s not saved: %s", session.nick, room.name, exc)
                raise ChatError(
                    "store_error", "your read marker could not be saved; try again later"
                ) from None
        return True

    def tell_device(self, device: Device) -> None:
        """A connection that joined its user (its welcome listed the rooms): a ``read``
        event for each of those rooms with a marker."""
        session = device.session
        for room in session.rooms:
            marker = self.marker(session, room)
            if marker is not None:
                self.hub.tell((device,), ReadMarker(room=room, message_id=marker))

    def tell_user(self, session: Session, rooms: Iterable[str]) -> None:
        """A ``read`` event for each of ``rooms`` ``session`` has a marker in, to every
        connection of it (after a login to an account from a connection in rooms)."""
        for room in list(rooms):
            marker = self.marker(session, room)
            if marker is not None:
                self.hub.tell((session,), ReadMarker(room=room, message_id=marker))

    def _joined(self, session: Session, room: str) -> None:
        """After a ``join`` (and the history that comes with it), the room's marker, to
        every connection of the user (each got the ``join``)."""
        self.tell_user(session, (room,))

    def _detached(self, session: Session) -> None:
        self._guests.pop(session.id, None)
