"""Always-on users: an account's user stays in its rooms when its last connection ends.

Phones drop off networks, laptops sleep, and on today's chats that does not make you leave
every room. With the server setting ``always_on``, a user logged in to an account (never
a guest, never a bot) whose last connection ends, however it ends (closed, lost, timed
out, too slow, ``/quit``), is *kept offline* instead of leaving:

* it stays a member of its rooms, with its operator status, holding its nick; nobody sees
  a ``leave``;
* it is shown away with the reason ``offline`` (``/who``, the ``away`` notices of
  ``away_notify``, IRC's ``AWAY``), and whoever sends it ``/msg`` is told so;
* it has no connection, so nothing is queued for it: it is out of its rooms' receivers
  (a room's fan-out costs nothing for it) and its mailbox (:class:`OfflineMailbox`, as a
  bot's) drops what is offered; private messages between two accounts are stored as
  ever, for its history;
* logging in to the account again brings it back as one more connection does (see
  :meth:`Hub.add_device <trio_chat.hub.Hub.add_device>`): a ``welcome`` with its rooms
  and ``"connections": 1``, each room's recent history, and its away mark is what it
  was before it went offline (usually none: "back" for ``away_notify``).

It leaves for good when the server stops, or when a plugin ends its session
(``server.disconnect``): whatever closes the session itself (:meth:`Session.close
<trio_chat.users.Session.close>`), not one connection. With several processes
(``--broker``) it stays on the node it was connected to; a login on another node is
refused as for any user connected there. The other nodes show it away too: its away mark
goes through :meth:`Hub.tell_away <trio_chat.hub.Hub.tell_away>`, whose ``on_away``
observer, the broker, carries it to them (:mod:`trio_chat.broker.presence`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from .hub import Hub, Session
from .mailbox import Mailbox, Parcel
from .names import name_key

__all__ = ["OFFLINE", "AlwaysOn", "OfflineMailbox"]

log = logging.getLogger("trio_chat.always_on")

#: The away reason of a user kept offline.
OFFLINE = "offline"


class OfflineMailbox(Mailbox):
    """The mailbox of a user kept offline: takes whatever is offered and keeps nothing
    (there is no connection to queue it for). ``delivers_here`` is false, as for a bot's:
    a room it joins does not count it among its receivers. Closing the session
    (:meth:`hang_up`) makes it leave at once."""

    delivers_here = False

    def __init__(self, on_hang_up: Callable[[], None]) -> None:  # no queue, no wire
        self._gone = on_hang_up

    def offer(self, parcel: Parcel) -> bool:
        return True

    def hang_up(self) -> None:
        self._gone()


class AlwaysOn:
    """Keeps the hub's account users offline when their last connection ends (see the
    module's doc); made by the server when ``always_on`` is set."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        #: Per user kept offline (session id): its away mark before it went offline.
        self._away_before: dict[int, str | None] = {}
        hub.keep_offline = self.keep
        hub.on_back = self.back
        hub.on_detach.append(self._left)

    def keep(self, session: Session, reason: str) -> bool:
        """``session``'s last connection ended with ``reason``: keep it offline (``True``),
        unless it is no account's user (``False``: it leaves as ever)."""
        if session.account is None or session.bot or session.closed:
            return False
        session.mailbox = OfflineMailbox(functools.partial(self._closed, session))
        for name in session.rooms:
            room = self.hub.rooms.get(name_key(name))
            if room is not None:
                room.here.pop(session.id, None)
        self._away_before[session.id] = session.away
        if session.away != OFFLINE:
            session.away = OFFLINE
            self.hub.tell_away(session)
        log.info("offline nick=%s reason=%r rooms=%d", session.nick, reason, len(session.rooms))
        return True

    def back(self, session: Session) -> None:
        """A user kept offline logged in again: its away mark is what it was before."""
        away = self._away_before.pop(session.id, None)
        if session.away != away:
            session.away = away
            self.hub.tell_away(session)
        log.info("back nick=%s", session.nick)

    def _closed(self, session: Session) -> None:
        """The session itself was closed while offline (server stopping, a moderator):
        it leaves now."""
        self.hub.detach(session, session.close_reason or OFFLINE)

    def _left(self, session: Session) -> None:
        self._away_before.pop(session.id, None)

    @property
    def offline(self) -> int:
        """Users kept offline now."""
        return len(self._away_before)
