"""Typing notices: "bob is typing" in a room, live only, thinned, for those who asked.

A client sends ``{"type": "typing", "active": true}`` as its user types (as often as it
likes: on every key, say) and ``"active": false`` when the user stops or clears the line.
Passing each of those on would make typing the chattiest thing on the server, so they are
*thinned* per user and room (:class:`TypingThrottle`, no I/O, tested on its own):

* an ``active: true`` passes at most once every :data:`TYPING_EVERY` seconds; the ones
  in between are dropped (receivers keep showing "typing" meanwhile);
* an ``active: false`` passes only when an ``active: true`` passed before it (and was not
  ended since), so a stop nobody was told of a start of costs nothing;
* a line the user says in the room ends the typing there too, with nothing sent: the
  receivers clear "typing" when the ``message`` comes (documented for clients), and the
  user's next ``active: true`` passes at once.

Who gets the ``typing`` event: the connections of the room's other members on this node
that sent ``"typing": true`` in their ``hello`` (:attr:`Device.typing
<trio_chat.users.Device.typing>`), except users who turned typing notices off
(``/typing off``, :attr:`Session.typing_off <trio_chat.users.Session.typing_off>`), whose
own typing is not passed on either. Never the typist's own connections, never text mode or
IRC (they cannot ask), never stored, never numbered.

With a broker (several nodes, ``--broker``) a notice that passed here is also handed to
:attr:`TypingNotices.share` (the broker's, which appends it to the shared log when the room
has members elsewhere); each other node gives it to its own receivers by the same rule
(:func:`typing_receivers`) as it reads it from the log, so it comes in its place among the
room's lines: a ``typing`` never arrives after the line that ended it. The thinning is
done once, here, at the typist's node.

A muted user's typing is dropped without a word (a client sends it unasked, on every key:
an error for each would be noise; the user learns of the mute when a line is refused).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .hub import Hub, NotInRoom, Receiver, Room, Session
from .names import name_key
from .protocol import Message, Typing

__all__ = ["TYPING_EVERY", "TypingNotices", "TypingThrottle", "typing_receivers"]

#: Seconds between two ``active: true`` notices of one user in one room that are passed on.
TYPING_EVERY = 3.0


class TypingThrottle:
    """Which typing notices pass (sans-IO: the caller gives the time).

    Per user (its session id) and room key it remembers when the last ``active: true``
    passed, as long as that typing has not ended (an ``active: false`` passed, the user
    said a line, or left the room); nothing for anyone who is not typing.
    """

    __slots__ = ("every", "typists")

    def __init__(self, every: float = TYPING_EVERY) -> None:
        self.every = every
        #: user id -> room key -> when its last passed ``active: true`` was: only the users
        #: typing somewhere (``in`` it is the cheap test before :meth:`ended`).
        self.typists: dict[int, dict[str, float]] = {}

    def passes(self, user: int, room: str, active: bool, now: float) -> bool:
        """Whether this notice of ``user`` in ``room`` goes out (and remember that it did)."""
        rooms = self.typists.get(user)
        if active:
            if rooms is None:
                rooms = self.typists[user] = {}
            last = rooms.get(room)
            if last is not None and now - last < self.every:
                return False
            rooms[room] = now
            return True
        return self.ended(user, room)

    def ended(self, user: int, room: str) -> bool:
        """The typing of ``user`` in ``room`` ended (a line said, a part); whether it was
        shown. Cheap when it was not: this runs for every line said."""
        rooms = self.typists.get(user)
        if rooms is None or rooms.pop(room, None) is None:
            return False
        if not rooms:
            del self.typists[user]
        return True

    def shown(self, user: int) -> list[str]:
        """The room keys where ``user``'s typing is shown now."""
        return list(self.typists.get(user, ()))

    def forget(self, user: int) -> None:
        """``user`` is gone: drop whatever was remembered of it."""
        self.typists.pop(user, None)

    def __len__(self) -> int:
        """Users typing somewhere (for tests: nothing is kept for anyone else)."""
        return len(self.typists)


def typing_receivers(room: Room, typist: Session) -> tuple[Receiver, ...]:
    """Who gets ``typist``'s ``typing`` events in ``room`` on this node: the connections of
    its other members here that asked (``"typing": true`` in their ``hello``), unless their
    user turned typing off. Never the typist's own (a user typing on its laptop is not
    shown typing on its phone). The same rule on every node of a broker."""
    return tuple(
        device
        for member in room.here.values()
        if member is not typist and not member.typing_off
        for device in member.devices
        if device.typing
    )


class TypingNotices:
    """The server's typing notices: frames in, thinned ``typing`` events out (see the
    module's doc). Observes the hub: a line said ends its sender's typing in that room;
    a part or a leave forgets it."""

    def __init__(self, hub: Hub, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.hub = hub
        self.throttle = TypingThrottle()
        self._clock = clock
        #: Set by a broker while it serves (``--broker``): called with each notice that
        #: passed here (the typist, its room, ``active``), to carry it to the other nodes.
        self.share: Callable[[Session, Room, bool], None] | None = None
        hub.on_said.append(self._said)
        hub.on_part.append(self._parted)
        hub.on_detach.append(self._detached)

    def typing(self, session: Session, room_name: str, active: bool) -> None:
        """``session`` is typing in ``room_name`` (or stopped): tell whoever asked, if the
        notice passes. Raises :class:`~trio_chat.rooms.NotInRoom` for a room it is not in."""
        room = self.hub.room(room_name)
        if room is None or session.id not in room.members:
            raise NotInRoom(f"you are not in {room_name}")
        if session.typing_off or session.id in room.muted:
            return
        if self.throttle.passes(session.id, name_key(room.name), active, self._clock()):
            self._tell(session, room.name, active)

    def set_enabled(self, session: Session, on: bool) -> None:
        """``/typing on|off``: whether ``session`` sends and receives typing notices. Going
        off ends its typing shown anywhere (the receivers get ``active: false``)."""
        session.typing_off = not on
        if on:
            return
        for key in self.throttle.shown(session.id):
            self.throttle.ended(session.id, key)
            room = self.hub.rooms.get(key)
            if room is not None:
                self._tell(session, room.name, False)

    def _tell(self, typist: Session, room_name: str, active: bool) -> None:
        room = self.hub.room(room_name)
        if room is None:
            return
        receivers = typing_receivers(room, typist)
        if receivers:
            self.hub.tell(receivers, Typing(room=room.name, nick=typist.nick, active=active))
        if self.share is not None:
            self.share(typist, room, active)

    def _said(self, lines: Sequence[Message], sender: Session) -> None:
        # Receivers clear "typing" on the message itself: nothing to send, only to forget.
        # (This runs for every line said, or run of them: for a sender not typing, one
        # dict look-up. The lines are of one room.)
        if sender.id in self.throttle.typists:
            self.throttle.ended(sender.id, name_key(lines[0].room))

    def _parted(self, session: Session, room: str, reason: str | None) -> None:
        # Receivers clear "typing" on the leave; nothing to send.
        self.throttle.ended(session.id, name_key(room))

    def _detached(self, session: Session) -> None:
        self.throttle.forget(session.id)
