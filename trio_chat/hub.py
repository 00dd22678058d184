"""The hub: who is connected, which rooms exist, and fan-out of events to sessions.

The hub knows nothing about sockets or wire formats. Every connected user is a
:class:`Session` with one :class:`~trio_chat.mailbox.Mailbox`, which owns delivery to it (a
bounded queue, a direct write to its socket, waking its writer). Fan-out is a plain
synchronous loop of :meth:`~trio_chat.mailbox.Mailbox.offer` calls, so:

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
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import FixedCodeError
from .mailbox import Mailbox, Parcel
from .metrics import Metrics
from .names import DEFAULT_ROOM, InvalidName, name_key, normalize_nick
from .parcels import Bundle, Payload
from .protocol import (
    Info,
    Joined,
    Left,
    Message,
    MessageKind,
    NickChanged,
    Private,
    ServerEvent,
    Topic,
)

log = logging.getLogger("trio_chat.hub")


class NickInUse(InvalidName):
    """The nickname (compared case-insensitively) belongs to someone connected."""

    code = "nick_taken"


class NotInRoom(FixedCodeError):
    """The session tried to speak in a room it has not joined."""

    code = "not_in_room"


class NotAllowed(FixedCodeError):
    """A room or server rule forbids it (banned, muted, not an operator)."""

    code = "not_allowed"


class NoSuchNick(FixedCodeError):
    """Nobody by that nickname is connected."""

    code = "no_such_nick"


@dataclass(eq=False)
class Session:
    """One connected user, whatever the transport.

    ``mailbox`` delivers events to it; only the hub offers events to it. :meth:`close`
    ends the connection with a reason (through the mailbox, which tells the transport).
    """

    id: int
    nick: str
    address: str
    transport: str
    mailbox: Mailbox
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
    #: Per room key: the first id this session got live on joining; history stops below it,
    #: so history and live delivery never overlap.
    history_bound: dict[str, int] = field(default_factory=dict)
    #: Per room key: the oldest message id this session was shown, where ``/history`` goes
    #: on paging back from.
    history_oldest: dict[str, int] = field(default_factory=dict)
    #: Free space for plugins, one entry per plugin name (``ctx.state`` is that entry);
    #: the server's own data lives in the fields above, never here.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return name_key(self.nick)

    def close(self, code: str, reason: str) -> None:
        """Ask the transport to end this connection with ``reason`` (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self.close_reason = reason
        self.mailbox.hang_up()


class NotSaved(FixedCodeError):
    """The message could not be numbered: ids cannot be reserved in the store right now
    (see :attr:`Hub.message_id_limit`), and ids must never go backwards."""

    code = "not_saved"


class ServerBusy(FixedCodeError):
    """Too many messages wait for the store; this one was refused, not queued."""

    code = "busy"


RoomEvent = Joined | Left | Message | NickChanged | Private | Topic


@dataclass(frozen=True, slots=True)
class Pending:
    """A numbered event on its way out: who gets it is decided when it is delivered, so a
    member who joined meanwhile gets it live (and not in their joining history)."""

    event: RoomEvent | ServerEvent
    room: Room | None
    extra: tuple[Session, ...] = ()
    #: Stored before delivery (chat lines and private messages).
    persist: bool = False
    #: Told if storing it failed.
    sender: Session | None = None
    #: A private message's sender and recipient account keys at the time it was numbered
    #: (it is stored only between two accounts; see :meth:`Hub.private`).
    accounts: tuple[str, str] | None = None

    def with_event(self, event: RoomEvent | ServerEvent) -> Pending:
        """The same, carrying ``event`` (``dataclasses.replace``, in a fraction of the time:
        a broker does it for every event of its own it reads back)."""
        return Pending(event, self.room, self.extra, self.persist, self.sender, self.accounts)

    def receivers(self) -> Iterable[Session]:
        if self.room is None:
            return dict.fromkeys(self.extra)
        if not self.extra:
            return self.room.here.values()
        return {**{s: None for s in self.room.here.values()}, **dict.fromkeys(self.extra)}


class Broker(Protocol):
    """Where the hub puts what it publishes (see :mod:`trio_chat.broker`)."""

    def publish(self, pending: Pending) -> None:
        """Take one published event, without waiting (the hub is in the middle of a
        synchronous change). ``pending.event`` is a room event with an id, or a reply
        without one that must reach its receiver after the events published before it."""
        ...


@dataclass(eq=False)
class Room:
    """A room and its rules. Operators are sessions (by id); bans outlive connections."""

    name: str
    #: Everyone in the room, by session id: with a broker, users of other nodes too.
    members: dict[int, Session] = field(default_factory=dict)
    #: The members whose connections are in this process: the ones a fan-out offers
    #: events to (the rest get them from their own node).
    here: dict[int, Session] = field(default_factory=dict)
    topic: str = ""
    operators: set[int] = field(default_factory=set)
    muted: set[int] = field(default_factory=set)
    #: Banned nick keys, each with the host it was last seen from (also refused).
    banned: dict[str, str] = field(default_factory=dict)

    def remove(self, session: Session) -> bool:
        """Take ``session`` out (with its roles here); ``False`` if it was not a member."""
        if self.members.pop(session.id, None) is None:
            return False
        self.here.pop(session.id, None)
        self.operators.discard(session.id)
        self.muted.discard(session.id)
        session.rooms.pop(self.name, None)
        if session.room == self.name:
            session.room = next(iter(session.rooms), DEFAULT_ROOM)
        return True

    def is_operator(self, session: Session) -> bool:
        return session.admin or session.id in self.operators

    def is_banned(self, session: Session) -> bool:
        host = host_of(session.address)
        return session.key in self.banned or (host != "?" and host in self.banned.values())


def _bundles(pending: Pending) -> bool:
    """Whether ``pending`` may share a bundle with its neighbours: a chat line to a room's
    members and no one else (the receivers of a run must be the same for every line)."""
    return isinstance(pending.event, Message) and pending.room is not None and not pending.extra


def host_of(address: str) -> str:
    """The host part of ``host:port`` or ``[v6]:port``."""
    host = address.rpartition(":")[0] if ":" in address else address
    return host.strip("[]") or "?"


def reason_is_public(reason: str | None) -> bool:
    """Kicks and bans are announced even in a quiet room: moderation is done in the open."""
    return reason is not None and reason.startswith(("kicked by ", "banned by "))


class Hub:
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
        )
        self.sessions[key] = session
        for callback in self.on_attach:
            callback(session)
        return session

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
            if session.mailbox.delivers_here:
                room.here[session.id] = session
            session.rooms[room.name] = None
            joined = Joined(id=self._next_id(), ts=self._clock(), room=room.name, nick=session.nick)
            if self._quiet(room):
                self._publish(joined, extra=(session,))
            else:
                self._publish(joined, room=room)
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
            del self.rooms[key]
        for callback in self.on_part:
            callback(session, room.name, reason)

    def _quiet(self, room: Room, *, leaving: bool = False) -> bool:
        """Whether joins and leaves in ``room`` go only to the user concerned: in a big room,
        telling everyone about everyone is quadratic noise (``/who`` still lists them).
        The size counted includes the user joining or ``leaving``."""
        return len(room.members) + leaving > self.quiet_room_size

    def room(self, room_name: str) -> Room | None:
        return self.rooms.get(name_key(room_name))

    # ------------------------------------------------------------------------ messages

    def say(
        self, session: Session, room_name: str, text: str, kind: MessageKind = "say"
    ) -> Message:
        """Number a message and fan it out to every member of the room, sender included."""
        room = self.rooms.get(name_key(room_name))
        if room is None or session.id not in room.members:
            raise NotInRoom(f"you are not in {room_name}")
        if session.id in room.muted:
            raise NotAllowed(f"you are muted in {room.name}")
        self._check_message_id()
        message = Message(
            id=self._next_id(),
            ts=self._clock(),
            room=room.name,
            nick=session.nick,
            text=text,
            kind=kind,
        )
        self._publish(message, room=room, persist=True, sender=session)
        return message

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

    def send_to(self, session: Session, event: ServerEvent) -> None:
        """Queue an event for one session (replies, errors), under the same slow policy.

        While room events wait for the store, a reply waits behind them, so a user sees the
        answer to ``/who`` after the line they typed before it.
        """
        if self.broker is not None and (self._undelivered or self.numbered_by_log):
            self.broker.publish(Pending(event, None, (session,)))
        else:
            self._fanout((session,), event)

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

    def history_bound(self) -> int:
        """Every event with a smaller id has been delivered (so, if stored, committed);
        every event from this id on is still to be delivered to the rooms' members then.

        History read with ``before=history_bound()`` right after joining, plus what arrives
        live, is each message exactly once.
        """
        return self._undelivered[0] if self._undelivered else self._last_id + 1

    def deliver(self, pending: Pending, *, failed: bool = False) -> None:
        """Called (through :meth:`deliver_many`) in id order, once a published event may go out."""
        event_id = getattr(pending.event, "id", None)
        if event_id is None:  # a reply that waited its turn (see send_to)
            self._fanout(pending.receivers(), pending.event)
            return
        self._release(event_id)
        if not failed:
            self._fanout_timed(pending)

    def deliver_many(self, batch: list[Pending], failed: frozenset[int] = frozenset()) -> None:
        """:meth:`deliver` each event of ``batch`` (in id order; ``failed`` holds the ``id()``
        of those not to send), bundling each run of chat lines to the same room.

        A bundle goes into each member's mailbox as one item, so a run of ``k`` lines costs
        the fan-out loop one pass over the members instead of ``k``; every member still
        gets every line, in the same order.
        """
        run: list[Pending] = []
        for pending in batch:
            failed_here = id(pending) in failed
            if _bundles(pending) and not failed_here:
                if run and run[0].room is not pending.room:
                    self._deliver_run(run)
                    run = []
                run.append(pending)
                continue
            self._deliver_run(run)  # first: ids are released in order
            run = []
            self.deliver(pending, failed=failed_here)
        self._deliver_run(run)

    def _deliver_run(self, run: list[Pending]) -> None:
        if len(run) <= 1:
            for pending in run:
                self.deliver(pending)
            return
        for pending in run:
            self._release(pending.event.id)  # type: ignore[union-attr]
        room = run[0].room
        assert room is not None
        # As _fanout_timed does for a Pending to the room's members and no one else.
        start = time.perf_counter()
        self._fanout(room.here.values(), Bundle(tuple(p.event for p in run)))
        self.metrics.fanout_seconds.observe(time.perf_counter() - start)

    def expect(self, event_id: int) -> None:
        """Event ``event_id`` (numbered by the broker's log, in rising order) is on its way
        to :meth:`deliver_many`: history stops below it until then."""
        self._last_id = max(self._last_id, event_id)
        self._undelivered.append(event_id)

    def _release(self, event_id: int) -> None:
        """``event_id`` is being delivered (or dropped): history may now reach past it."""
        if self._undelivered and self._undelivered[0] == event_id:
            self._undelivered.popleft()

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
    ) -> None:
        """Fan out an event with an id: at once, or through the broker."""
        pending = Pending(event, room, extra, persist, sender, accounts)
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

    def _fanout_timed(self, pending: Pending) -> None:
        """Fan out a numbered event, timed for ``trio_chat_fanout_seconds``."""
        start = time.perf_counter()
        self._fanout(pending.receivers(), pending.event)
        self.metrics.fanout_seconds.observe(time.perf_counter() - start)

    def _fanout(self, receivers: Iterable[Session], event: Payload) -> None:
        overflowed: list[Session] = []
        delivered = 0
        parcel = Parcel(event)
        for receiver in receivers:
            if receiver.mailbox.offer(parcel):
                delivered += 1
            else:
                overflowed.append(receiver)  # too slow, or its connection is going away
        self.metrics.messages_out_total.inc(delivered * parcel.events)
        # Handled after the loop: detaching announces a leave, which fans out again.
        for receiver in overflowed:
            self._drop_slow(receiver)

    def _drop_slow(self, session: Session) -> None:
        if self.sessions.get(session.key) is not session:
            return  # already gone (a reply that came after it left)
        if session.closed:
            self.detach(session, session.close_reason or "connection closed")
            return
        log.info("slow_consumer nick=%s addr=%s", session.nick, session.address)
        self.metrics.queue_drops_total.inc()
        session.close("slow_consumer", "too slow: your send queue was full")
        self.detach(session, "too slow to receive messages")
