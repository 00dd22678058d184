"""Coming back after a lost connection, without sockets: back-off, rejoin, gap-fill.

The client's session outlives its connections (see :mod:`.app`). What it must remember
and decide to come back well is kept here, apart from any I/O, so that it can be tested
with plain function calls: how long to wait before the next attempt
(:func:`backoff_delay`), which rooms to join again and in what order, which gaps to ask
for, and which events wait (:class:`Resume`) until every gap is filled, to be shown then
once each (:class:`SeenIds`) and in order of id, and, once back, which older messages
changed meanwhile (:class:`ChangedMeanwhile`). Times are passed in (``now``), never read.
"""

from __future__ import annotations

import collections
import dataclasses
import random
from collections.abc import Mapping
from typing import Any

from ..names import name_key
from ..protocol import (
    History,
    Joined,
    Left,
    Message,
    NumberedEvent,
    RemoteProtocolError,
    ServerEvent,
)
from .events import changed_items, event_from_dict

#: Seconds events are held back waiting for a rejoin's history before they are shown anyway.
HOLD_TIMEOUT = 15.0
#: Reconnect delays: the first, and the longest (doubling in between).
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
#: Messages per gap-filling ``history`` page (the protocol's largest).
GAP_PAGE = 500
#: Message ids remembered to show each message once.
SEEN_IDS = 20_000
#: Where everyone starts: a rejoin lands there first, and leaves it if we were not in it.
LOBBY = name_key("#lobby")

#: Events that carry an ``id``: the ones held back and shown once.
Numbered = NumberedEvent


def backoff_delay(attempt: int, rand: random.Random | None = None) -> float:
    """Seconds before reconnect attempt ``attempt`` (0 first): doubling, capped, jittered
    (between half the step and the whole of it)."""
    step = min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** min(attempt, 16))
    fraction: float = (rand or random).random()
    return step * (0.5 + 0.5 * fraction)


def room_of(event: ServerEvent) -> str | None:
    """The room an event belongs to, if any."""
    room = getattr(event, "room", None)
    return room if isinstance(room, str) else None


@dataclasses.dataclass
class RoomState:
    """A room the user is in, as the client remembers it across reconnects."""

    name: str
    #: The highest id shown of this room: where its gap starts after a reconnect.
    last_id: int | None = None
    members: set[str] = dataclasses.field(default_factory=set)


class SeenIds:
    """The ids of the last :data:`SEEN_IDS` events shown, to show each one once."""

    def __init__(self, size: int = SEEN_IDS) -> None:
        self._ids: set[int] = set()
        self._order: collections.deque[int] = collections.deque()
        self._size = size

    def add(self, event_id: int) -> bool:
        """Remember ``event_id``; ``False`` if it was seen already."""
        if event_id in self._ids:
            return False
        self._ids.add(event_id)
        self._order.append(event_id)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())
        return True


def history_events(event: History) -> list[ServerEvent]:
    """The messages of a history page as events."""
    out: list[ServerEvent] = []
    for item in event.messages:
        if not isinstance(item, dict):
            continue
        try:
            out.append(event_from_dict(item))
        except (RemoteProtocolError, TypeError):
            continue
    return out


def event_order(event: ServerEvent) -> float:
    """Where a held event goes: by id; a history block just after its newest message."""
    if isinstance(event, Numbered):
        return float(event.id)
    if isinstance(event, History):
        ids = [m.get("id") for m in event.messages]
        return max((float(i) for i in ids if isinstance(i, int)), default=0.0) + 0.5
    return 0.0


def is_join_history(event: ServerEvent) -> bool:
    """The history a server sends by itself on a join (not an answer to a request)."""
    return isinstance(event, History) and event.ref is None and event.room is not None


class Resume:
    """What waits, for one connection: *holds* (a rejoin, a typed ``/join``) and the
    events they hold back, until each is released.

    A *resync* (:meth:`start`, on being welcomed back) holds every room's lines until every
    gap is filled; a ``sync:KEY`` hold only that room's. Released events come out of
    :meth:`release` and :meth:`flush` ready to show: once each, in order of id, without
    what was shown before the connection was lost.
    """

    def __init__(self, seen_size: int = SEEN_IDS) -> None:
        self.seen = SeenIds(seen_size)
        #: While not empty, numbered events wait in ``held``.
        self.holds: set[str] = set()
        self.held: list[ServerEvent] = []
        #: When the holds are given up on (``now`` of the caller's clock).
        self.deadline = float("inf")
        #: During a resync: per room, the last id shown before (older ids are not new).
        self.floors: dict[str, int] = {}
        #: Rooms being joined again, whose own join and leave lines are not shown.
        self.rejoining: set[str] = set()
        #: The older messages of the rooms with a gap that changed meanwhile.
        self.changed = ChangedMeanwhile()
        self.resyncing = False
        #: New messages shown by the last resync.
        self.missed = 0
        self._rooms_before: list[str] = []
        self._current_before: str | None = None

    def reset(self) -> None:
        """The connection is gone: nothing waits any more (what was seen stays seen)."""
        self.holds.clear()
        self.held.clear()
        self.floors.clear()
        self.rejoining.clear()
        self.changed = ChangedMeanwhile()
        self.resyncing = False
        self.deadline = float("inf")

    def hold(self, name: str, now: float) -> None:
        self.holds.add(name)
        self.deadline = now + HOLD_TIMEOUT

    def progress(self, now: float) -> None:
        """A hold is getting somewhere (a gap page came): wait for it a while longer."""
        self.deadline = now + HOLD_TIMEOUT

    def start(self, rooms: Mapping[str, RoomState], current: str | None, now: float) -> None:
        """Welcomed back: from now on, hold every room's lines until the gaps are filled.

        Called as the welcome arrives, before the events that follow it (our join of
        #lobby, its history) are taken in.
        """
        self._rooms_before = list(rooms)
        self._current_before = name_key(current) if current else None
        self.rejoining = {*rooms, LOBBY}
        self.floors = {k: s.last_id for k, s in rooms.items() if s.last_id is not None}
        self.resyncing = True
        self.missed = 0
        self.hold("sync:resync", now)

    def rejoins(self, rooms: Mapping[str, RoomState]) -> tuple[bool, list[str]]:
        """After :meth:`start`: whether to leave #lobby (we were not in it), and the rooms
        (keys) to join again, the current one last so that it stays current. (A room the
        user is still in, through another connection of ours, is joined again all the same:
        that only makes it current.)"""
        current = self._current_before
        keys = [k for k in self._rooms_before if k in rooms or k == LOBBY]
        leave_lobby = LOBBY not in keys
        order = [k for k in keys if k != current] + ([current] if current in keys else [])
        joins = [k for k in order if k != LOBBY or len(keys) > 1]
        return leave_lobby, joins

    def gaps(self, rooms: Mapping[str, RoomState], now: float) -> list[tuple[str, int]]:
        """The gaps to fill, as (room key, last id shown), each now held until filled."""
        found = [(key, floor) for key, floor in self.floors.items() if key in rooms]
        for key, floor in found:
            self.hold(f"gap:{key}", now)
            self.changed.due[key] = floor
        return found

    def is_own_rejoin(self, event: ServerEvent, nick: str | None) -> bool:
        """Our own join (or leave of #lobby) of a rejoin: not news."""
        return (
            isinstance(event, Joined | Left)
            and event.nick == nick
            and name_key(event.room) in self.rejoining
        )

    def holding(self, event: ServerEvent) -> bool:
        """Whether ``event`` waits: during a resync every room's lines do (they are shown in
        one run, in order); after a typed ``/join``, that room's."""
        if not self.holds or not (isinstance(event, Numbered) or is_join_history(event)):
            return False
        if self.resyncing:
            return True
        room = room_of(event)
        return room is not None and f"sync:{name_key(room)}" in self.holds

    def release(self, name: str, nick: str | None) -> tuple[list[ServerEvent], bool]:
        """Hold ``name`` is over: the events to show now, and whether a resync just ended."""
        self.holds.discard(name)
        if not self.holds:
            return self.flush(nick)
        if self.resyncing:
            return [], False
        ready = [event for event in self.held if not self.holding(event)]
        if not ready:
            return [], False
        self.held = [event for event in self.held if self.holding(event)]
        return self.arrange(ready, nick), False

    def flush(self, nick: str | None) -> tuple[list[ServerEvent], bool]:
        """Give up every hold: everything held, to show now; whether a resync ended."""
        held, self.held = self.held, []
        self.holds.clear()
        self.deadline = float("inf")
        events = self.arrange(held, nick)
        self.floors.clear()
        self.rejoining.clear()
        ended, self.resyncing = self.resyncing, False
        return events, ended

    def arrange(self, held: list[ServerEvent], nick: str | None) -> list[ServerEvent]:
        """Held events to show: once each, by id; a join's history block just after the
        join; nothing at or below a room's floor. Counts the new messages in ``missed``."""
        events: list[ServerEvent] = []
        for event in held:
            key = name_key(event.room) if isinstance(event, History) and event.room else None
            if key is not None and key in self.floors:
                # A rejoin's join-time history overlaps the gap: only its new lines count.
                assert isinstance(event, History)
                events += history_events(event)
            else:
                events.append(event)
        # The server sends a join, then the room's history: keep that order.
        joins = {name_key(e.room): e.id for e in events if isinstance(e, Joined) and e.nick == nick}

        def order(event: ServerEvent) -> float:
            if isinstance(event, History) and event.room and name_key(event.room) in joins:
                return joins[name_key(event.room)] + 0.5
            return event_order(event)

        events.sort(key=order)
        shown: list[ServerEvent] = []
        for event in events:
            if isinstance(event, History):
                for item in history_events(event):
                    if isinstance(item, Numbered):
                        self.seen.add(item.id)
            elif isinstance(event, Numbered):
                room = room_of(event)
                floor = self.floors.get(name_key(room)) if room else None
                if floor is not None and event.id <= floor:
                    continue
                if not self.seen.add(event.id):
                    continue
                if self.resyncing and isinstance(event, Message):
                    self.missed += 1
            shown.append(event)
        return shown


class ChangedMeanwhile:
    """The messages shown before a reconnect that were edited, deleted or reacted to while
    the client was away, asked for room by room once the resync is over (``history`` with
    ``changed_after`` the last id shown there), page by page.

    The gap brought every newer message as it is now; of each page, only the messages at or
    below that last id are news. An older server ignores ``changed_after`` and answers
    with its latest messages, none marked ``changed``: nothing is shown then, and no page
    follows.
    """

    def __init__(self) -> None:
        #: Room key -> the last id shown before: to ask once the resync is over.
        self.due: dict[str, int] = {}
        #: Room key -> that id, while its pages come.
        self._floors: dict[str, int] = {}

    def ask_due(self) -> list[tuple[str, int]]:
        """The first request of each room due: (room key, ``changed_after``)."""
        due, self.due = self.due, {}
        self._floors.update(due)
        return list(due.items())

    def page(
        self, key: str, messages: list[Any], more: bool
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page answering room ``key``: its messages to show, and the ``changed_after``
        of the next page (``None``: the room is done)."""
        floor = self._floors.get(key)
        changed = changed_items(messages)
        if floor is None:
            return [], None
        shown = [m for m in changed if m["id"] <= floor]
        if more and changed:
            return shown, max(m["changed"] for m in changed)
        del self._floors[key]
        return shown, None

    def forget(self, key: str) -> None:
        """Room ``key``'s request was refused (no store, not in the room): done."""
        self._floors.pop(key, None)
