"""Who is connected: a user (:class:`Session`, one identity in rooms and ``/who``) and its
connections (:class:`Device`, each with its own mailbox), apart from the hub that keeps
them, so that what a user *is* reads in one place."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any

from .errors import FixedCodeError
from .mailbox import Fanout, Mailbox
from .names import DEFAULT_ROOM, InvalidName, name_key

__all__ = [
    "Device",
    "NickInUse",
    "NoSuchNick",
    "Receiver",
    "Session",
    "TooManyConnections",
    "host_of",
    "serving",
]


class NickInUse(InvalidName):
    """The nickname (compared case-insensitively) belongs to someone connected."""

    code = "nick_taken"


class NoSuchNick(FixedCodeError):
    """Nobody by that nickname is connected."""

    code = "no_such_nick"


class TooManyConnections(FixedCodeError):
    """The account is logged in on as many connections as a user may have."""

    code = "too_many_connections"


@dataclass(eq=False, slots=True)
class Session:
    """One connected user, whatever the transport: one identity in rooms and ``/who``,
    over one or more connections (``devices``, the first one's ``address`` and
    ``transport`` kept here).

    ``mailbox`` delivers events to it (to each of its connections); only the hub offers
    events to it. :meth:`close` ends every connection with a reason (through the
    mailboxes, which tell the transports).

    Slotted, and the dicts most users never fill (:attr:`history_oldest`, :attr:`extra`)
    are made on first use: a server holds one of these per user, and memory per
    connection is what a crowd of users costs (bench/README.md, "Memory per connection").
    """

    id: int
    nick: str
    #: ``host:port`` it connected from; for a user of another node (a broker's), as that
    #: node said (``"?"`` if it did not): bans by host use it, connection limits do not.
    address: str
    transport: str
    #: The one connection's mailbox, or a :class:`~trio_chat.mailbox.Fanout` over every
    #: connection's while there are several (the hub swaps them: :meth:`Hub.add_device`).
    mailbox: Mailbox | Fanout
    rooms: dict[str, None] = field(default_factory=dict)  # ordered set of joined rooms
    room: str = DEFAULT_ROOM  # the room plain messages go to
    closed: bool = False
    close_code: str | None = None
    close_reason: str | None = None
    #: Away message, or ``None`` when present.
    away: str | None = None
    #: Server administrator: operator in every room.
    admin: bool = False
    #: The key of the account this session logged in to (or registered), ``None`` for a
    #: guest. Private messages are stored only between two accounts.
    account: str | None = None
    #: Per room key: the first id this session got live on joining (its ``join``'s, set as
    #: that is delivered); history after an id stops below it, so it never overlaps live
    #: delivery.
    history_bound: dict[str, int] = field(default_factory=dict)
    #: See :attr:`history_oldest` (``None`` until first used).
    _history_oldest: dict[str, int] | None = field(default=None, init=False, repr=False)
    #: See :attr:`extra` (``None`` until first used).
    _extra: dict[str, Any] | None = field(default=None, init=False, repr=False)
    #: This node's connections of the user, in the order they logged in (none for a user
    #: of another node). The user leaves its rooms when the last one ends.
    devices: list[Device] = field(default_factory=list)
    #: A plugin's bot (see :mod:`trio_chat.bots`): a user with no connection, shown as a
    #: bot in ``/who`` and in its ``join`` events.
    bot: bool = False
    #: The user turned typing notices off (``/typing off``): its own are not passed on,
    #: and none reach its connections (see :mod:`trio_chat.typing_notices`).
    typing_off: bool = False
    #: Stays in its rooms, shown away, when its last connection ends (an account's user on
    #: a server with ``always_on``; see :mod:`trio_chat.always_on`). Its last connection's
    #: close then ends that connection alone, as any other connection's does.
    always_on: bool = False

    @property
    def key(self) -> str:
        return name_key(self.nick)

    @property
    def history_oldest(self) -> dict[str, int]:
        """Per room key: the oldest message id this session was shown, where ``/history``
        goes on paging back from."""
        oldest = self._history_oldest
        if oldest is None:
            oldest = self._history_oldest = {}
        return oldest

    @property
    def extra(self) -> dict[str, Any]:
        """Free space for plugins, one entry per plugin name (``ctx.state`` is that entry);
        the server's own data lives in the fields above, never here."""
        extra = self._extra
        if extra is None:
            extra = self._extra = {}
        return extra

    def close(self, code: str, reason: str) -> None:
        """Ask the transports to end every connection of this user with ``reason``
        (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self.close_reason = reason
        self.mailbox.hang_up()


@dataclass(eq=False, slots=True)
class Device:
    """One connection of a session (a phone, a browser tab, a terminal): its own mailbox,
    with its own bounds, keepalive and parking; closed alone (too slow, silent, flooding,
    quit) while the user stays as long as another connection does."""

    session: Session
    mailbox: Mailbox
    address: str
    transport: str
    close_code: str | None = None
    close_reason: str | None = None
    #: See :attr:`history_bound` (``None`` until first used: only a connection that joins
    #: a user already in rooms has any).
    _history_bound: dict[str, int] | None = field(default=None, init=False, repr=False)
    #: The connection asked to be told when a user sharing a room goes away or comes back
    #: (``away_notify`` in its ``hello``; IRC's ``away-notify`` capability). Most do not,
    #: and get nothing: see :meth:`Hub.tell_away <trio_chat.hub.Hub.tell_away>`.
    away_notify: bool = False
    #: The connection asked for ``typing`` events (``"typing": true`` in its ``hello``);
    #: text mode and IRC never do (see :mod:`trio_chat.typing_notices`).
    typing: bool = False
    #: This connection joined a user that was there before it (connected elsewhere, or
    #: kept offline): its welcome listed the user's rooms, and their history follows it
    #: (no ``join`` brings it).
    rejoined: bool = False

    @property
    def nick(self) -> str:
        return self.session.nick

    @property
    def key(self) -> str:
        return self.session.key

    @property
    def history_bound(self) -> dict[str, int]:
        """Per room key: the first id this connection got live, for rooms the user was in
        before it logged in (history stops below it, as for ``Session.history_bound``)."""
        bound = self._history_bound
        if bound is None:
            bound = self._history_bound = {}
        return bound

    @property
    def closed(self) -> bool:
        """Whether this connection is ending (closed alone, or with the whole session)."""
        return self.close_code is not None or self.session.closed

    @property
    def ending(self) -> tuple[str | None, str | None]:
        """Why it ends, as ``(code, reason)``: its own close, else its session's."""
        if self.close_code is not None:
            return self.close_code, self.close_reason
        return self.session.close_code, self.session.close_reason

    def close(self, code: str, reason: str) -> None:
        """Ask the transport to end this connection alone with ``reason`` (idempotent).
        The user's only connection closes the whole session, as it always did, unless
        the user is :attr:`~Session.always_on` (then it is kept offline when this ends)."""
        if self.closed:
            return
        if self.session.devices == [self] and not self.session.always_on:
            self.session.close(code, reason)
            return
        self.close_code = code
        self.close_reason = reason
        self.mailbox.hang_up()


#: Whom an event is for: a user (every connection of it), or one connection.
Receiver = Session | Device

#: The connection whose frame the current task is handling (set by the task serving it).
#: A reply to its user (:meth:`Hub.send_to`) goes to that connection alone.
serving: contextvars.ContextVar[Device | None] = contextvars.ContextVar("serving", default=None)


def host_of(address: str) -> str:
    """The host part of ``host:port`` or ``[v6]:port``."""
    host = address.rpartition(":")[0] if ":" in address else address
    return host.strip("[]") or "?"
