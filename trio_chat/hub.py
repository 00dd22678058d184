"""The hub: who is connected, which rooms exist, and fan-out of events to sessions.

The hub knows nothing about sockets or wire formats. Every connected user is a
:class:`Session` (the identity: nick, account, rooms, roles) with one or more connections
(:class:`Device`), each with its own :class:`~trio_chat.mailbox.Mailbox`, which owns
delivery to it (a bounded queue, a direct write to its socket, waking its writer). The
session's ``mailbox`` is its one connection's, or, while it has several, a
:class:`~trio_chat.mailbox.Fanout` over theirs. Fan-out is a plain synchronous loop of
``offer`` calls, so:

* every room event gets its id and timestamp and reaches all members with no ``await``
  in between: all members see one and the same order;
* nobody waits for a slow receiver. A channel gives each item to *one* receiver (trio
  issue #987), so broadcast is one bounded mailbox per session plus a slow-consumer policy:
  a session whose mailbox refuses an event is disconnected with a reason, never waited on.

In a running server the hub hands each numbered event to its broker
(:mod:`trio_chat.broker`: in this process, or through Redis to several), which passes it
to the publisher task (:mod:`trio_chat.publisher`: commit first) before
:meth:`Hub.deliver_many` fans it out to this process's members, a run of lines to one room
as one :class:`~trio_chat.parcels.Bundle` per member.
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence

from .changes import MessageIndex
from .delivery import Arrival, Broker, Delivery, Pending, RoomEvent, lines_said
from .errors import FixedCodeError
from .mailbox import Fanout, Mailbox, Parcel
from .metrics import Metrics
from .names import DEFAULT_ROOM, name_key, normalize_nick
from .protocol import (
    History,
    Info,
    Joined,
    Left,
    Message,
    MessageChange,
    MessageKind,
    NickChanged,
    Private,
    ServerEvent,
    Topic,
    chat_line,
    chat_lines,
)
from .recent import RecentLines
from .rooms import NotAllowed, NotInRoom, Room, Rule, RuleChange, reason_is_public
from .users import (
    Device,
    NickInUse,
    NoSuchNick,
    Receiver,
    Session,
    TooManyConnections,
    host_of,
    serving,
)

#: Besides its own, the hub's module gives the names of :mod:`trio_chat.users` and
#: :mod:`trio_chat.rooms` that plugins and tests have always imported from here.
__all__ = [
    "Arrival",
    "Broker",
    "Device",
    "Hub",
    "NickInUse",
    "NoSuchNick",
    "NotAllowed",
    "NotInRoom",
    "NotSaved",
    "Pending",
    "Receiver",
    "Room",
    "RoomEvent",
    "Rule",
    "RuleChange",
    "ServerBusy",
    "Session",
    "TooManyConnections",
    "host_of",
    "reason_is_public",
    "rule_notice",
    "serving",
]

log = logging.getLogger("trio_chat.hub")


class NotSaved(FixedCodeError):
    """The message could not be numbered: ids cannot be reserved in the store right now
    (see :attr:`Hub.message_id_limit`), and ids must never go backwards."""

    code = "not_saved"


class ServerBusy(FixedCodeError):
    """Too many messages wait for the store; this one was refused, not queued."""

    code = "busy"


#: How :func:`rule_notice` words a change: (on, off), with the author, the nick and the room.
_RULE_WORDS: dict[Rule, tuple[str, str]] = {
    "operator": (
        "{by} made {nick} an operator of {room}",
        "{by} took operator status from {nick} in {room}",
    ),
    "muted": ("{by} muted {nick} in {room}", "{by} unmuted {nick} in {room}"),
    "banned": ("{by} banned {nick} from {room}", "{by} unbanned {nick} from {room}"),
}


def rule_notice(change: RuleChange, by: str | None) -> Info:
    """The ``info`` a room's members get when its rules change: the words for people, and
    ``data`` for programs (an IRC connection turns it into ``MODE``). ``by`` is ``None``
    when no user made the change (a plugin): then the server did."""
    on, off = _RULE_WORDS[change.rule]
    text = (on if change.on else off).format(
        by=by or "the server", nick=change.nick, room=change.room
    )
    data = {
        "event": "mode",
        "room": change.room,
        "by": by,
        "nick": change.nick,
        "rule": change.rule,
        "on": change.on,
    }
    return Info(text=text, data=data)


class Hub(Delivery):
    """Registry of sessions and rooms, and the one place events are numbered and fanned out."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, metrics: Metrics | None = None
    ) -> None:
        self._clock = clock
        self.metrics = metrics if metrics is not None else Metrics()
        self._last_id = 0
        self._session_ids = itertools.count(1)
        #: Set by the server while it serves: numbered events (and replies behind them) go
        #: to the broker, and come back through :meth:`deliver_many` once they may go out.
        #: Without one (a hub on its own, in tests) they are fanned out at once.
        self.broker: Broker | None = None
        self._undelivered: collections.deque[int] = collections.deque()
        #: Rooms with more members than this announce joins and leaves to no one else.
        self.quiet_room_size = 50
        #: Most messages that may wait for the store before new ones are refused as busy.
        self.max_undelivered = 10_000
        #: Chat lines and private messages are numbered only while the last id is below
        #: this (set by the publisher from the ids reserved in the store); past it they are
        #: refused with :class:`NotSaved`. Other events are not refused (a leave cannot be).
        self.message_id_limit: float = math.inf
        self.sessions: dict[str, Session] = {}  # by nick key
        self.rooms: dict[str, Room] = {}  # by room key
        #: Set by a broker whose shared log gives events their ids and order (Redis): the
        #: ids this hub gives are then only provisional, and the broker tells the hub which
        #: real ids are on their way to :meth:`deliver_many` (see :meth:`expect`).
        self.numbered_by_log = False
        #: Observers, called after a session joined / left a room (for plugin hooks).
        self.on_join: list[Callable[[Session, str], None]] = []
        self.on_part: list[Callable[[Session, str, str | None], None]] = []
        #: Observers, called once a session is attached / detached (for brokers).
        self.on_attach: list[Callable[[Session], None]] = []
        self.on_detach: list[Callable[[Session], None]] = []
        #: Observers, called after a room's rules changed through :meth:`set_rule` (for
        #: brokers). A room's creator becoming its operator is not one of these: that goes
        #: with the join.
        self.on_rule: list[Callable[[RuleChange], None]] = []
        #: Observers, called when a user of this node went away or came back (through
        #: :meth:`tell_away`; for brokers: the other nodes show it too).
        self.on_away: list[Callable[[Session], None]] = []
        #: Observers, called with the chat lines said on this node (and their sender) once
        #: they were delivered to the room (for the ``message_posted`` hook): each time
        #: with one or more lines of one sender to one room, in order. (One call for the
        #: lines a sender said together: a call for each was a tenth of a line's cost.)
        self.on_said: list[Callable[[Sequence[Message], Session], None]] = []
        #: Per room key, the room's latest lines, for the history a joiner gets with its
        #: ``join`` (filled by the history service: :mod:`trio_chat.recent`); fed with
        #: each line delivered, dropped when the room vanishes.
        self.recent: dict[str, RecentLines] = {}
        #: The authors and state of each room's latest lines, fed as they are delivered
        #: (see :mod:`trio_chat.changes`): who may edit or delete one, what a reply quotes.
        self.messages = MessageIndex()
        self._owed = collections.deque()
        self._after = {}
        self.wake_payer = lambda: None  # (nothing is owed before the publisher slices)
        #: The history frame a user who joins a room gets right after its ``join`` (or
        #: ``None``: none), called as the ``join`` is delivered. Set by the server when it
        #: keeps history; without it a join comes with no history.
        self.join_history: Callable[[Session, str], History | None] | None = None
        #: Set by the server with ``always_on`` (see :mod:`trio_chat.always_on`): called
        #: when a user's last connection ended; ``True`` if it keeps the user in its rooms
        #: (offline) instead of the user leaving them.
        self.keep_offline: Callable[[Session, str], bool] | None = None
        #: Set with :attr:`keep_offline`: called when a user kept offline has a connection
        #: again (after it is back among its rooms' receivers).
        self.on_back: Callable[[Session], None] | None = None
        #: Set by the publisher while its broker is the in-process one: takes a run of
        #: published events at once, in order, as the broker's ``publish`` takes each
        #: (see :meth:`say_lines`); ``None`` otherwise.
        self.publish_run: Callable[[list[Pending]], None] | None = None
        #: Set by a broker whose log numbers events (with :attr:`numbered_by_log`): takes
        #: a run of this node's chat lines as :attr:`publish_run` does, or raises
        #: :class:`ServerBusy` and takes none (see :meth:`say_lines`).
        self.log_run: Callable[[list[Pending]], None] | None = None

    # ----------------------------------------------------------------------- sessions

    def attach(
        self,
        nick: str,
        mailbox: Mailbox,
        *,
        address: str,
        transport: str,
    ) -> Session:
        """Register a new user under ``nick`` (validated) or raise InvalidName/NickInUse."""
        return self._register(nick, mailbox, address, transport, bot=False)

    def attach_bot(self, nick: str, mailbox: Mailbox) -> Session:
        """Register a plugin's bot under ``nick`` (validated, unique as any nick): a user
        with no connection (no :class:`Device`), whose ``mailbox`` takes what is sent to it
        (see :mod:`trio_chat.bots`). Observers hear of it as of any user (a broker tells the
        other nodes). Raises InvalidName/NickInUse."""
        return self._register(nick, mailbox, "?", "bot", bot=True)

    def _register(
        self, nick: str, mailbox: Mailbox, address: str, transport: str, *, bot: bool
    ) -> Session:
        nick = normalize_nick(nick)
        key = name_key(nick)
        if key in self.sessions:
            raise NickInUse(f"the nickname {nick!r} is taken")
        session = Session(
            id=next(self._session_ids),
            nick=nick,
            address=address,
            transport=transport,
            mailbox=mailbox,
            bot=bot,
        )
        if not bot:  # a bot has no connection
            session.devices.append(Device(session, mailbox, address, transport))
        self.sessions[key] = session
        for callback in self.on_attach:
            callback(session)
        return session

    def add_device(
        self,
        session: Session,
        mailbox: Mailbox,
        *,
        address: str,
        transport: str,
        first: ServerEvent | None = None,
    ) -> Device:
        """Give a user of this node another connection: from now on it gets every event
        the user gets. ``first`` (its welcome) is offered to it alone before anything else.
        The caller checked that it may (the same account, a connection to spare)."""
        offline = self._is_offline(session)
        if not offline and (not session.devices or not session.mailbox.delivers_here):
            raise ValueError("only a user of this node gets more connections")
        self.pay_owed_to(session)  # the new connection gets the history up to here instead
        device = Device(session, mailbox, address, transport, rejoined=True)
        if first is not None:
            mailbox.offer(Parcel(first))
        self._offer_rooms_history(device)
        session.devices.append(device)
        self._refit(session)
        if offline:
            self._back_online(session)
        return device

    def _is_offline(self, session: Session) -> bool:
        """Whether ``session`` is a user of this node kept in its rooms with no connection
        (see :attr:`keep_offline`)."""
        return session.always_on and not session.devices and not session.closed

    def _back_online(self, session: Session) -> None:
        """A user kept offline has a connection again: it is among its rooms' receivers
        from now on (its connection got each room's history up to here)."""
        for name in session.rooms:
            room = self.rooms.get(name_key(name))
            if room is not None and room.members.get(session.id) is session:
                room.here[session.id] = session
        if self.on_back is not None:
            self.on_back(session)

    def _last_connection_ended(self, session: Session, reason: str) -> None:
        """The user's last connection ended: it leaves its rooms with ``reason``, unless it
        is kept offline (:attr:`keep_offline`)."""
        keep = self.keep_offline
        if keep is not None and session.always_on and not session.closed and keep(session, reason):
            return
        self.detach(session, reason)

    def tell(self, receivers: tuple[Receiver, ...], event: ServerEvent) -> None:
        """A live, unnumbered event to ``receivers`` (users or connections), after what was
        published before it; nobody else gets it (``typing``, ``read``)."""
        if self.broker is not None and (self._undelivered or self.numbered_by_log):
            self.broker.publish(Pending(event, None, receivers))
        else:
            self._fanout(receivers, event)

    def move_device(
        self, device: Device, to: Session, reason: str, *, first: ServerEvent | None = None
    ) -> None:
        """A connection of one user becomes one of ``to`` (a ``/login`` to the account of a
        user connected elsewhere): it leaves its user (who leaves its rooms with
        ``reason`` if this was its only connection), and then gets what ``to`` gets,
        ``first`` before anything else."""
        old = device.session
        if old is to:
            return
        self.pay_owed_to(old)  # what it was owed as ``old``'s comes before ``first``
        self.pay_owed_to(to)  # and what ``to`` is owed is in the history it gets
        offline = self._is_offline(to)
        if device in old.devices:
            old.devices.remove(device)
            if old.devices:
                self._refit(old)
            else:
                self._last_connection_ended(old, reason)
        device.session = to
        device.history_bound.clear()
        if first is not None:
            device.mailbox.offer(Parcel(first))
        self._offer_rooms_history(device)
        to.devices.append(device)
        self._refit(to)
        if offline:
            self._back_online(to)

    def _offer_rooms_history(self, device: Device) -> None:
        """A connection joining its user gets the history of each of the user's rooms
        whose latest lines are at hand (:attr:`recent`), before anything live: what was
        delivered so far (below :meth:`history_bound`, from where its live stream
        begins). Marked in ``device.history_bound``; the other rooms' history is read
        from the store later (``ServerAPI.after_attach``)."""
        if self.join_history is None:
            return
        bound = self.history_bound()
        session = device.session
        for room in session.rooms:
            key = name_key(room)
            recent = self.recent.get(key)
            if recent is None or not recent.ready:
                continue
            device.history_bound[key] = bound
            history = self.join_history(session, room)
            if history is not None:
                device.mailbox.offer(Parcel(history))

    def detach_device(self, device: Device, reason: str) -> None:
        """A connection ended: forget it; if it was the user's last, :meth:`detach` the
        user with ``reason``. Safe to call more than once."""
        session = device.session
        if device not in session.devices:
            return
        session.devices.remove(device)
        if not session.devices:
            self._last_connection_ended(session, reason)
        else:
            self._refit(session)

    def _refit(self, session: Session) -> None:
        """Point the session's mailbox at its connections' (see :class:`Fanout`)."""
        devices = session.devices
        if len(devices) == 1:
            session.mailbox = devices[0].mailbox
        elif devices:
            mailboxes = [device.mailbox for device in devices]
            session.mailbox = Fanout(mailboxes, functools.partial(self._drop_devices, session))

    def _drop_devices(self, session: Session, refused: list[Mailbox]) -> None:
        """Some of a user's connections refused an event the others took: each is closed
        alone, as too slow (a closed one is already on its way out)."""
        for device in [d for d in session.devices if d.mailbox in refused]:
            self._drop_device(device)

    def _drop_device(self, device: Device) -> None:
        session = device.session
        if not device.closed:
            log.info("slow_consumer nick=%s addr=%s", session.nick, device.address)
            self.metrics.queue_drops_total.inc()
            device.close("slow_consumer", "too slow: your send queue was full")
        session.devices.remove(device)
        self._refit(session)

    def detach(self, session: Session, reason: str) -> None:
        """Remove a session and tell its rooms it left. Safe to call more than once.

        The ``on_detach`` observers hear of it before the leaves are announced, so a broker
        frees the nick on other nodes before anyone there sees the ``leave``.
        """
        if self.sessions.get(session.key) is not session:
            return
        del self.sessions[session.key]
        for callback in self.on_detach:
            callback(session)
        for room_name in list(session.rooms):
            self.part(session, room_name, reason)

    def find(self, nick: str) -> Session | None:
        return self.sessions.get(name_key(nick))

    def rename(self, session: Session, new_nick: str) -> NickChanged | None:
        """Change a nick (validated, unique); everyone sharing a room is told once."""
        new_nick = normalize_nick(new_nick)
        new_key = name_key(new_nick)
        if new_nick == session.nick:
            return None
        holder = self.sessions.get(new_key)
        if holder is not None and holder is not session:
            raise NickInUse(f"the nickname {new_nick!r} is taken")
        old = session.nick
        del self.sessions[session.key]
        session.nick = new_nick
        self.sessions[new_key] = session
        event = NickChanged(id=self._next_id(), ts=self._clock(), old=old, new=new_nick)
        self._publish(event, extra=tuple(self.neighbours(session, include_self=True)))
        return event

    def neighbours(self, session: Session, *, include_self: bool) -> list[Session]:
        """Everyone who shares at least one room with ``session``, each once."""
        seen: dict[int, Session] = {session.id: session} if include_self else {}
        for room_name in session.rooms:
            room = self.rooms.get(name_key(room_name))
            if room is not None:
                seen.update(room.members)
        if not include_self:
            seen.pop(session.id, None)
        return list(seen.values())

    # -------------------------------------------------------------------------- rooms

    def join(self, session: Session, room_name: str) -> Room:
        """Put a session in a room (created on demand) and announce it to the room.

        Whoever creates a room is its first operator; a banned session is refused.

        The session is a member at once (``/who``), but gets the room's events only from
        its ``join`` on, as that is delivered: then, before any later event, the room's
        history (:attr:`join_history`) goes to the connection that asked.
        """
        key = name_key(room_name)
        room = self.rooms.get(key)
        if room is None:
            room = self.rooms[key] = Room(room_name)
            if room_name != DEFAULT_ROOM:
                room.operators.add(session.id)
        if session.id not in room.members:
            if room.is_banned(session):
                raise NotAllowed(f"you are banned from {room.name}")
            room.members[session.id] = session
            session.rooms[room.name] = None
            session.history_bound.pop(key, None)
            arrival = Arrival(session, room, self.connection_of(session))
            joined = Joined(
                id=self._next_id(),
                ts=self._clock(),
                room=room.name,
                nick=session.nick,
                bot=True if session.bot else None,
            )
            if self._quiet(room):
                self._publish(joined, extra=(session,), arrival=arrival)
            else:
                self._publish(joined, room=room, arrival=arrival)
            for callback in self.on_join:
                callback(session, room.name)
        session.room = room.name
        return room

    def part(
        self,
        session: Session,
        room_name: str,
        reason: str | None = None,
        *,
        tell_self: bool = False,
    ) -> None:
        """Take a session out of a room and tell those who stay. Empty rooms vanish.

        ``tell_self`` also sends the ``leave`` to the session itself (kicks, parts).
        """
        key = name_key(room_name)
        room = self.rooms.get(key)
        if room is None or not room.remove(session):
            return
        event = Left(
            id=self._next_id(), ts=self._clock(), room=room.name, nick=session.nick, reason=reason
        )
        told = (session,) if tell_self and not session.closed else ()
        if self._quiet(room, leaving=True) and not reason_is_public(reason):
            self._publish(event, extra=told)
        else:
            self._publish(event, room=room, extra=told)
        if not room.members and room.name != DEFAULT_ROOM:
            self.drop_room(key)
        for callback in self.on_part:
            callback(session, room.name, reason)

    def drop_room(self, key: str) -> None:
        """The room of ``key`` is empty: it vanishes, with its latest lines (unless a
        join is reading them from the store: that one is still filling)."""
        del self.rooms[key]
        self.messages.forget_room(key)
        recent = self.recent.get(key)
        if recent is not None and recent.ready:
            del self.recent[key]

    def set_rule(
        self,
        room: Room,
        rule: Rule,
        who: Session | str,
        on: bool,
        *,
        host: str = "?",
        by: str | None = None,
    ) -> bool:
        """Make ``who`` (a session, or a nick) an operator of ``room``, muted in it or banned
        from it (with ``host``; ``"?"`` for none), or no longer; then tell the ``on_rule``
        observers, and the room's members (:func:`rule_notice`: moderation is done in the
        open, as an IRC ``MODE`` is), naming ``by`` (the operator's nick) as its author.
        ``False`` if nothing changed (nobody is told): an operator or mute needs someone
        connected by that nick."""
        session = who if isinstance(who, Session) else self.find(who)
        nick = who.nick if isinstance(who, Session) else who
        change = RuleChange(room.name, rule, nick, on, host if rule == "banned" and on else "?")
        if not room.apply(change, session):
            return False
        for callback in self.on_rule:
            callback(change)
        self.tell_room(room, rule_notice(change, by))
        return True

    def tell_away(self, session: Session) -> None:
        """``session`` went away or came back (:attr:`Session.away`): tell the connections
        of those sharing a room with it that asked (:attr:`Device.away_notify`), as an
        unnumbered ``info`` with ``data`` ``{"event": "away", "nick", "away"}``. Nobody
        else gets anything (the IRCv3 ``away-notify`` rule). The ``on_away`` observers
        hear of it first (a broker: the other nodes tell their users alike)."""
        for callback in self.on_away:
            callback(session)
        notice = self.away_notice(session)
        if notice is not None:
            self.tell(notice.extra, notice.event)

    def away_notice(self, session: Session) -> Pending | None:
        """The ``away`` notice of ``session``'s away state now, for the connections of this
        node that get it (see :meth:`tell_away`); ``None`` when none does."""
        receivers = tuple(
            device
            for neighbour in self.neighbours(session, include_self=False)
            for device in neighbour.devices
            if device.away_notify
        )
        if not receivers:
            return None
        away = session.away
        text = f"{session.nick} is away: {away}" if away else f"{session.nick} is back"
        event = Info(text=text, data={"event": "away", "nick": session.nick, "away": away})
        return Pending(event, None, receivers)

    def tell_room(self, room: Room, event: Info) -> None:
        """An unnumbered notice to every member of ``room`` (each connection), live only:
        not stored, not in history, so the room's numbered events and gap-fill stay as
        they were. Members of other nodes get its text from their node (a broker's
        ``tell``), without ``data``."""
        members = tuple(room.members.values())
        if self.broker is not None and (self._undelivered or self.numbered_by_log):
            self.broker.publish(Pending(event, None, members))
        else:
            self._fanout(members, event)

    def _quiet(self, room: Room, *, leaving: bool = False) -> bool:
        """Whether joins and leaves in ``room`` go only to the user concerned: in a big room,
        telling everyone about everyone is quadratic noise (``/who`` still lists them).
        The size counted includes the user joining or ``leaving``."""
        return len(room.members) + leaving > self.quiet_room_size

    def room(self, room_name: str) -> Room | None:
        return self.rooms.get(name_key(room_name))

    # ------------------------------------------------------------------------ messages

    def say(
        self,
        session: Session,
        room_name: str,
        text: str,
        kind: MessageKind = "say",
        *,
        reply_to: int | None = None,
        quote: dict[str, str] | None = None,
    ) -> Message:
        """Number a message and fan it out to every member of the room, sender included.
        ``reply_to`` and ``quote``: the message of the room it answers, checked by the
        caller (see :mod:`trio_chat.message_changes`)."""
        room = self.rooms.get(name_key(room_name))
        if room is None or session.id not in room.members:
            raise NotInRoom(f"you are not in {room_name}")
        if session.id in room.muted:
            raise NotAllowed(f"you are muted in {room.name}")
        self._check_message_id()
        message = chat_line(
            self._next_id(),
            self._clock(),
            room.name,
            session.nick,
            text,
            kind,
            reply_to,
            quote,
        )
        # Its author's account is the sender's (see delivery.author_of): not looked up here.
        self._publish(message, room=room, persist=True, sender=session)
        return message

    def say_lines(self, session: Session, room_name: str, texts: list[str]) -> bool:
        """Say ``texts`` in ``room_name`` as ``session``, in order, each a plain line (kind
        ``say``): what :meth:`say` does for each in turn, done in one pass; or, when any of
        them would be refused (not a member, muted, the ids or the queue for the store
        running out), or the broker takes events one at a time, nothing at all, and
        ``False``: the caller then says each line with :meth:`say`, which refuses the
        same lines the same way.

        With a broker whose log numbers the lines (:attr:`numbered_by_log`), the ids given
        here are provisional, as :meth:`say`'s are then: nothing waits for them in
        :attr:`_undelivered`, and the run goes to the broker's :attr:`log_run`.

        Why: a client at full speed sends many lines in one read, and a line went through
        a dozen calls on its way to the publisher (ten of them checks and look-ups the
        same for every line of the run); here the room, the rules and the limits are
        looked at once, the lines numbered in one loop and handed over in one call.
        """
        by_log = self.numbered_by_log
        publish_run = self.log_run if by_log else self.publish_run
        room = self.rooms.get(name_key(room_name))
        if (
            publish_run is None
            or room is None
            or session.id not in room.members
            or session.id in room.muted
        ):
            return False
        count = len(texts)
        last = self._last_id
        # As _check_message_id before each line (the last one is checked with the id
        # before it), and _publish's bound on what waits for the store.
        if last + count - 1 >= self.message_id_limit or (
            not by_log and len(self._undelivered) + count > self.max_undelivered
        ):
            return False
        first = last + 1
        # Its author's account is the sender's (see delivery.author_of): not looked up here.
        if count == 1:  # a chat at a steady rate: each line alone, made as say() makes it
            line = chat_line(first, self._clock(), room.name, session.nick, texts[0], "say")
            said = [Pending(line, room, (), True, session)]
        else:
            lines = chat_lines(first, self._clock, room.name, session.nick, texts)
            said = lines_said(lines, room, session)
        self._last_id = last + count
        if by_log:
            try:
                publish_run(said)
            except ServerBusy:  # (what may wait for the log is full: none taken)
                self._last_id = last
                return False
            return True
        if count == 1:
            self._undelivered.append(first)
        else:
            self._undelivered.extend(range(first, first + count))
        publish_run(said)
        return True

    def change(
        self, session: Session, room: Room, make: Callable[[int, float], MessageChange]
    ) -> MessageChange:
        """Number a change of a message of ``room`` (``make(id, ts)`` builds it), store it
        and fan it out to the room, as a chat line goes. The caller checked that
        ``session`` may (see :mod:`trio_chat.message_changes`)."""
        self._check_message_id()
        change = make(self._next_id(), self._clock())
        self._publish(change, room=room, persist=True, sender=session)
        return change

    def private(self, sender: Session, target_nick: str, text: str) -> Private:
        """A message seen by two users alone: delivered to the target, echoed to the sender."""
        target = self.find(target_nick)
        if target is None:
            raise NoSuchNick(f"no one called {target_nick!r} is online")
        self._check_message_id()
        event = Private(
            id=self._next_id(), ts=self._clock(), nick=sender.nick, to=target.nick, text=text
        )
        # Stored only between two accounts, as they are now: a /login or /register a
        # moment later does not change whose message it is.
        accounts = (sender.account, target.account) if sender.account and target.account else None
        self._publish(
            event,
            extra=(target, sender),
            persist=accounts is not None,
            sender=sender,
            accounts=accounts,
        )
        return event

    def set_topic(self, session: Session, room: Room, topic: str) -> Topic:
        room.topic = topic
        event = Topic(
            id=self._next_id(), ts=self._clock(), room=room.name, nick=session.nick, topic=topic
        )
        self._publish(event, room=room)
        return event

    def send_to(self, session: Receiver, event: ServerEvent, *, in_order: bool = False) -> None:
        """Queue an event for one session (replies, errors), under the same slow policy.

        While room events wait for the store, a reply waits behind them, so a user sees the
        answer to ``/who`` after the line they typed before it. ``in_order`` sends it
        through the broker even when nothing waits, to be delivered in one pass (one
        write: see :meth:`deliver_many`) with what is published right after it: a
        welcome, with the join and history that follow it.

        A user connected more than once gets it on every connection, except from the task
        handling one of its connections' frames (:data:`serving`): a reply goes to the
        connection that asked. A :class:`Device` gets it alone.
        """
        receiver: Receiver = session
        if type(session.mailbox) is Fanout:
            device = serving.get()
            if device is not None and device.session is session:
                receiver = device
        if self.broker is not None and (self._undelivered or self.numbered_by_log or in_order):
            self.broker.publish(Pending(event, None, (receiver,)))
        else:
            self._fanout((receiver,), event)

    def connection_of(self, session: Session) -> Receiver:
        """The connection of ``session`` whose frame the current task handles
        (:data:`serving`), or the whole session from anywhere else."""
        device = serving.get()
        if device is not None and device.session is session:
            return device
        return session

    def send_to_info(self, session: Session, text: str) -> None:
        """Tell one session something (an ``info`` event)."""
        self.send_to(session, Info(text=text))

    # ------------------------------------------------------------------------ internals

    @property
    def last_id(self) -> int:
        """The id given to the latest event (0 before any)."""
        return self._last_id

    def start_ids_after(self, last_id: int) -> None:
        """Continue numbering after ``last_id`` (the store's high-water mark at start-up)."""
        self._last_id = max(self._last_id, last_id)

    def _check_message_id(self) -> None:
        if self._last_id >= self.message_id_limit:
            self.metrics.messages_not_saved_total.inc()
            raise NotSaved("your message could not be saved; not sent")

    def _next_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def _publish(
        self,
        event: RoomEvent,
        *,
        room: Room | None = None,
        extra: tuple[Session, ...] = (),
        persist: bool = False,
        sender: Session | None = None,
        accounts: tuple[str, str] | None = None,
        arrival: Arrival | None = None,
    ) -> None:
        """Fan out an event with an id: at once, or through the broker."""
        pending = Pending(event, room, extra, persist, sender, accounts, arrival)
        if self.broker is None:
            self._fanout_timed(pending)
            return
        if self.numbered_by_log:  # the broker's log numbers and orders it
            self.broker.publish(pending)
            return
        if persist and len(self._undelivered) >= self.max_undelivered:
            raise ServerBusy("the server is busy saving messages; try again in a moment")
        self._undelivered.append(event.id)
        self.broker.publish(pending)
