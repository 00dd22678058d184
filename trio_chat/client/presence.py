"""Who is typing, and how far the user has read: the client's bookkeeping, without I/O.

:class:`TypingSender` decides when to tell the server that the user is typing at the
prompt: ``active`` when a chat line is started (again every :data:`TYPING_EVERY`
seconds while it changes), ``active: false`` when it is cleared; a line sent ends it
with nothing more (the server knows). :class:`TypingNow` turns others' ``typing`` notices
into the status line under the prompt (``alice is typing…``). A notice lasts until its
typist stops, speaks or leaves, and at most :data:`TYPING_SHOWN` seconds after the last
one (a typist whose connection dropped sends no "stopped"). :class:`ReadMarks` decides
which ``read`` frames to send: the newest message shown in the current room, once per
:data:`READ_INTERVAL` at most, never an id the server has already (sent before, or moved
there by another connection of the user).
Times are passed in (``now``), never read.
"""

from __future__ import annotations

from ..names import name_key

#: Seconds a ``typing`` notice is shown without another from the same typist.
TYPING_SHOWN = 6.0
#: Seconds between two ``read`` frames, at least.
READ_INTERVAL = 1.0
#: Typists named in the status line; more are counted.
TYPISTS_NAMED = 3
#: Seconds between two ``active`` notices while the user types (the server passes one
#: every 3 seconds at most, and receivers show it for :data:`TYPING_SHOWN`).
TYPING_EVERY = 3.0


class TypingSender:
    """The ``typing`` notices of the user's own prompt."""

    def __init__(self, every: float = TYPING_EVERY) -> None:
        self._every = every
        #: The room told "typing" last, and when; ``None`` while not typing.
        self._room: str | None = None
        self._since = float("-inf")

    def changed(self, text: str, room: str | None, now: float) -> tuple[str, bool] | None:
        """The line at the prompt is now ``text`` (``room`` is current): the notice to
        send, as (room, active), or ``None``. A command (``/...``) is not a chat line."""
        chatting = bool(text.strip()) and (not text.startswith("/") or text.startswith("//"))
        if chatting and room is not None:
            if room == self._room and now - self._since < self._every:
                return None
            self._room, self._since = room, now
            return room, True
        if not chatting and self._room is not None:
            stopped, self._room = self._room, None
            return stopped, False
        return None

    def said(self) -> None:
        """The line was sent: typing ended there, and the server knows it."""
        self._room = None


class TypingNow:
    """Who is typing where, each until a deadline."""

    def __init__(self, shown_for: float = TYPING_SHOWN) -> None:
        self._shown_for = shown_for
        #: (room key, nick) -> until when, in the order they started.
        self._until: dict[tuple[str, str], float] = {}

    def notice(self, room: str, nick: str, active: bool, now: float) -> None:
        key = (name_key(room), nick)
        self._until.pop(key, None)
        if active:
            self._until[key] = now + self._shown_for

    def stopped(self, nick: str, room: str | None = None) -> bool:
        """``nick`` spoke (in ``room``) or left (every room when ``room`` is ``None``);
        whether they were shown typing there."""
        gone = [k for k in self._until if k[1] == nick and (room is None or k[0] == name_key(room))]
        for key in gone:
            del self._until[key]
        return bool(gone)

    def typists(self, room: str, now: float) -> list[str]:
        key = name_key(room)
        self._until = {k: t for k, t in self._until.items() if t > now}
        return [nick for (where, nick) in self._until if where == key]

    def status(self, room: str | None, now: float) -> str:
        """The status line for ``room``: ``""`` when nobody types there."""
        nicks = self.typists(room, now) if room else []
        if not nicks:
            return ""
        if len(nicks) == 1:
            return f"{nicks[0]} is typing…"
        if len(nicks) <= TYPISTS_NAMED:
            return f"{', '.join(nicks[:-1])} and {nicks[-1]} are typing…"
        named = ", ".join(nicks[:TYPISTS_NAMED])
        return f"{named} and {len(nicks) - TYPISTS_NAMED} more are typing…"

    def next_change(self) -> float:
        """When the next notice runs out (``inf``: none shown)."""
        return min(self._until.values(), default=float("inf"))


class ReadMarks:
    """The read markers to send, per room."""

    def __init__(self) -> None:
        #: Room key -> the newest id the server knows we read.
        self._known: dict[str, int] = {}
        #: Room key -> (room, id) to send.
        self._pending: dict[str, tuple[str, int]] = {}

    def shown(self, room: str, message_id: int) -> bool:
        """A message of ``room`` was shown to the user; ``True`` if there is now a
        marker to send."""
        key = name_key(room)
        if message_id <= self._known.get(key, 0):
            return False
        pending = self._pending.get(key)
        if pending is None or message_id > pending[1]:
            self._pending[key] = (room, message_id)
        return True

    def known(self, room: str, message_id: int) -> None:
        """The server has this marker already (another connection moved it, or the
        welcome said so): never send one below it."""
        key = name_key(room)
        self._known[key] = max(self._known.get(key, 0), message_id)
        pending = self._pending.get(key)
        if pending is not None and pending[1] <= self._known[key]:
            del self._pending[key]

    def take(self) -> list[tuple[str, int]]:
        """The markers to send now (each then known)."""
        due = list(self._pending.values())
        self._pending.clear()
        for room, message_id in due:
            self._known[name_key(room)] = message_id
        return due
