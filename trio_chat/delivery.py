"""Delivery: the half of the hub that hands numbered events to this process's members.

A published event is a :class:`Pending` (who gets it is decided when it is delivered, not
when it is numbered). The hub gives each to its :class:`Broker`, which passes it, in id
order, to the publisher task, which calls :meth:`Delivery.deliver_many`: a plain
synchronous loop of ``mailbox.offer`` calls, a run of lines to one room offered as one
:class:`~trio_chat.parcels.Bundle` per member, and a receiver that refuses dropped as too
slow. A pass holding a join gathers what each receiver writing directly gets in it into
one write (a room refilling after a restart: see :func:`_gathers`). A fan-out to many
receivers that takes longer than :attr:`Delivery.fanout_budget` is *sliced*: the rest of
its receivers are owed the event, paid a slice per scheduling round by the publisher, so
that one line to a big room does not hold back every other room's lines for its whole
fan-out (see :meth:`Delivery.pay_owed`).
:class:`~trio_chat.hub.Hub` is a :class:`Delivery`; the split keeps numbering and
the registry of users and rooms (hub.py) apart from the hot path (here).
"""

from __future__ import annotations

import collections
import itertools
import logging
import operator
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .changes import MessageIndex
from .mailbox import Fanout, Mailbox, Parcel
from .names import name_key
from .parcels import Bundle, Gathered, Payload, Raw
from .protocol import (
    Error,
    History,
    Joined,
    Message,
    MessageChange,
    MessageDeleted,
    MessageEdited,
    NumberedEvent,
    Reaction,
    ServerEvent,
)
from .rooms import Room
from .users import Device, Receiver, Session

if TYPE_CHECKING:
    from .metrics import Metrics
    from .recent import RecentLines

__all__ = [
    "Arrival",
    "Broker",
    "Delivery",
    "Pending",
    "RoomEvent",
    "author_of",
    "bundles",
    "lines_said",
    "pending_lines",
]

log = logging.getLogger("trio_chat.hub")


RoomEvent = NumberedEvent
#: The events that change a message already said (:mod:`trio_chat.changes`).
_CHANGES = frozenset({MessageEdited, MessageDeleted, Reaction})
#: The changes that a delete before them cancels.
_LATE_CHANGES = frozenset({MessageEdited, Reaction})


@dataclass(frozen=True, slots=True)
class Arrival:
    """A user joining a room: from its ``join`` on (as that is delivered) it gets the
    room's events live, and ``to`` gets the room's history right after the ``join``."""

    session: Session
    room: Room
    #: Who gets the history: the connection that asked (or the user).
    to: Receiver


@dataclass(slots=True)
class Pending:
    """A numbered event on its way out: who gets it is decided when it is delivered, so a
    member who joined meanwhile gets it live (and not in their joining history).

    Never changed once made (treat it as frozen), but not declared so: a frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__``, which made
    it cost three times as much, and a broker makes two per chat line on each node."""

    event: RoomEvent | ServerEvent
    room: Room | None
    #: Receivers besides the room's: users, or (for a reply) one connection.
    extra: tuple[Receiver, ...] = ()
    #: Stored before delivery (chat lines and private messages).
    persist: bool = False
    #: Told if storing it failed.
    sender: Session | None = None
    #: A private message's sender and recipient account keys at the time it was numbered
    #: (it is stored only between two accounts; see :meth:`Hub.private`).
    accounts: tuple[str, str] | None = None
    #: For a ``join``: the user who starts getting the room's events with it.
    arrival: Arrival | None = None
    #: For a chat line to a room said on another node: the account key it was said under
    #: (its author, who alone may edit it; see :mod:`trio_chat.changes`), ``None`` for a
    #: guest's. A line said on this node leaves it out: :func:`author_of` asks its sender.
    author: str | None = None

    def with_event(self, event: RoomEvent | ServerEvent) -> Pending:
        """The same, carrying ``event`` (``dataclasses.replace``, in a fraction of the time:
        a broker does it for every event of its own it reads back)."""
        return Pending(
            event,
            self.room,
            self.extra,
            self.persist,
            self.sender,
            self.accounts,
            self.arrival,
            self.author,
        )

    def receivers(self) -> Collection[Receiver]:
        if self.room is None:
            return dict.fromkeys(self.extra)
        if not self.extra:
            return self.room.here.values()
        return {**{s: None for s in self.room.here.values()}, **dict.fromkeys(self.extra)}


def lines_said(lines: list[Message], room: Room, sender: Session) -> list[Pending]:
    """``[Pending(line, room, (), True, sender) for line in lines]`` (chat lines of this
    node, stored before delivery), made by :func:`pending_lines`: the hub publishes a run
    of lines of one read this way (see :meth:`Hub.say_lines`)."""
    repeat = itertools.repeat
    return pending_lines(lines, repeat(room), repeat(True), repeat(sender), repeat(None))


def pending_lines(
    lines: list[Message],
    rooms: Iterable[Room | None],
    persist: Iterable[bool],
    senders: Iterable[Session | None],
    authors: Iterable[str | None],
) -> list[Pending]:
    """``[Pending(line, room, (), stored, sender, None, None, author) for ...]``, the other
    fields a column each (which may go on past the lines: a ``repeat``), made in one loop
    without a call of ``__init__`` for each: a run of this node's lines
    (:func:`lines_said`), or of another node's read from the log."""
    made: list[Pending] = []
    append = made.append
    for line, room, stored, sender, author in zip(
        lines, rooms, persist, senders, authors, strict=False
    ):
        pending = _new(Pending)
        pending.event = line
        pending.room = room
        pending.extra = ()
        pending.persist = stored
        pending.sender = sender
        pending.accounts = None
        pending.arrival = None
        pending.author = author
        append(pending)
    return made


_new = object.__new__
# pending_lines sets each field: one added to Pending must be added there too.
assert tuple(Pending.__slots__) == (
    "event",
    "room",
    "extra",
    "persist",
    "sender",
    "accounts",
    "arrival",
    "author",
)


def author_of(pending: Pending) -> str | None:
    """The account a chat line was said under: the one the log says (another node's
    line), else its sender's now. (Its sender's then, but for a ``/register`` or
    ``/login`` of the same connection between the line's numbering and this: the same
    person's account, as a user logged in elsewhere would be another user.)"""
    if pending.author is not None:
        return pending.author
    sender = pending.sender
    return None if sender is None else sender.account


class Broker(Protocol):
    """Where the hub puts what it publishes (see :mod:`trio_chat.broker`)."""

    def publish(self, pending: Pending) -> None:
        """Take one published event, without waiting (the hub is in the middle of a
        synchronous change). ``pending.event`` is a room event with an id, or a reply
        without one that must reach its receiver after the events published before it."""
        ...


@dataclass(slots=True)
class _Owed:
    """What one sliced fan-out still owes: its parcel to ``receivers`` from ``paid`` on."""

    receivers: list[Receiver]
    parcel: Parcel
    paid: int = 0


def _owner_key(receiver: Receiver) -> int:
    """What a receiver is owed is kept under: the ``id()`` of its user. A user's connections
    change (one logs in, one ends: its mailbox becomes another), and a reply to one
    connection must wait behind what its user is owed, so it is the user, not a mailbox,
    that is owed something."""
    return id(receiver.session) if type(receiver) is Device else id(receiver)


def _gathered(parcels: list[Parcel]) -> Parcel:
    """``parcels`` for one receiver as one parcel, for one write (see
    :class:`~trio_chat.parcels.Gathered`)."""
    return parcels[0] if len(parcels) == 1 else Parcel(Gathered.of(parcels))


def _gathers(batch: list[Pending]) -> bool:
    """Whether a delivery pass over ``batch`` gathers each receiver's parcels into one
    write: when it holds a join. Users coming back after a restart join rooms by the
    thousand, and each join in a room of at most ``quiet_room_size`` members goes to every
    member: one write each, where the joins of one pass to one member can be one. (A
    pass of chat lines alone writes as before: its runs are bundles already.)"""
    return Joined in map(type, map(_EVENT, batch))  # (in C: no frame per event)


#: A pending's event (``map`` over a batch with it runs in C).
_EVENT = operator.attrgetter("event")


def bundles(pending: Pending) -> bool:
    """Whether ``pending`` may share a bundle with its neighbours: a chat line to a room's
    members and no one else (the receivers of a run must be the same for every line)."""
    return isinstance(pending.event, Message) and pending.room is not None and not pending.extra


class Delivery:
    """Fan-out of numbered events in id order (see the module's doc); the hub's base."""

    # Set up by Hub.__init__ (declared here for the methods below).
    metrics: Metrics
    sessions: dict[str, Session]
    recent: dict[str, RecentLines]
    join_history: Callable[[Session, str], History | None] | None
    on_said: list[Callable[[Sequence[Message], Session], None]]
    #: The authors and state of each room's latest lines (see :mod:`trio_chat.changes`).
    messages: MessageIndex
    _last_id: int
    _undelivered: collections.deque[int]
    #: While :meth:`deliver_many` gathers: what each receiver writing directly was given
    #: so far in this pass, by ``id()`` of its mailbox (see :meth:`_write_held`).
    _held: dict[int, tuple[Receiver, Mailbox, list[Parcel]]] | None = None
    #: A fan-out to more receivers than this may be sliced (see :meth:`_offer_sliced`).
    #: No slicing (the default) unless something pays what is owed: the publisher sets
    #: it, with :attr:`fanout_slice`, :attr:`fanout_budget` and :attr:`wake_payer`.
    fanout_sliced_from: int = sys.maxsize
    #: The clock is read after each this many offers (and payments: :meth:`pay_owed`).
    fanout_slice: int = 32
    #: Seconds a fan-out may take before the rest of its receivers are owed the event,
    #: and that :meth:`pay_owed` may take at a time.
    fanout_budget: float = 0.0
    #: What sliced fan-outs still owe, oldest first. A user is in one of them at most.
    _owed: collections.deque[_Owed]
    #: By :func:`_owner_key` of a user still owed: what came meanwhile for it or for one of
    #: its connections, to go after, in order.
    _after: dict[int, list[tuple[Receiver, Parcel]]]
    #: Sliced fan-outs so far, and of them those paid in full (they are paid in order):
    #: what :meth:`owes_since` compares.
    owed_made: int = 0
    owed_paid: int = 0
    #: The :func:`_owner_key` of every user still owed, made when a fan-out first needs it
    #: (one while something is owed) and kept up from then on; ``None`` until then.
    _owed_keys: set[int] | None = None
    #: Called when something comes to be owed (the publisher's payer wakes up).
    wake_payer: Callable[[], None]

    def detach(self, session: Session, reason: str) -> None:
        raise NotImplementedError  # the hub's

    def _drop_device(self, device: Device) -> None:
        raise NotImplementedError  # the hub's

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
        if len(batch) > 1 and self._held is None and _gathers(batch):
            self._held = {}
            try:
                self._deliver_batch(batch, failed)
            finally:
                self._write_held()
            return
        self._deliver_batch(batch, failed)

    def _deliver_batch(self, batch: list[Pending], failed: frozenset[int]) -> None:
        run: list[Pending] = []
        for pending in batch:
            failed_here = id(pending) in failed
            # bundles(pending), written out: it is asked of every event delivered.
            if (
                isinstance(pending.event, Message)
                and pending.room is not None
                and not pending.extra
                and not failed_here
            ):
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
        """Deliver ``run``, chat lines to the members of one room and no one else (see
        :func:`bundles`), as :meth:`deliver` would each, in one fan-out: a run of lines as
        one :class:`~trio_chat.parcels.Bundle`, a lone line as itself (a chat at a steady
        rate: every line, with no call of :meth:`deliver` and what it looks for that a
        line to a room never is)."""
        if not run:
            return
        undelivered = self._undelivered
        for pending in run:  # self._release(pending.event.id) for each, written out
            if undelivered and undelivered[0] == pending.event.id:  # type: ignore[union-attr]
                undelivered.popleft()
        room = run[0].room
        assert room is not None
        # As _fanout_timed does for a Pending to the room's members and no one else.
        start = time.perf_counter()
        self.messages.add(room.name, run)
        if len(run) == 1:
            line: Message = run[0].event  # type: ignore[assignment]
            self._fanout(room.here.values(), line)
            if self.recent:
                recent = self.recent.get(name_key(room.name))
                if recent is not None:
                    recent.add(line)
        else:
            lines = tuple(map(_EVENT, run))
            self._fanout(room.here.values(), Bundle(lines))
            if self.recent:
                recent = self.recent.get(name_key(room.name))
                if recent is not None:
                    recent.extend(lines)
        self.metrics.fanout_seconds.observe(time.perf_counter() - start)
        if self.on_said:
            sender = run[0].sender
            if len(run) > 1:
                self._said_run(run)
            elif sender is not None:
                self._said(run[0].event, sender)  # type: ignore[arg-type]

    def expect(self, event_id: int) -> None:
        """Event ``event_id`` (numbered by the broker's log, in rising order) is on its way
        to :meth:`deliver_many`: history stops below it until then."""
        self._last_id = max(self._last_id, event_id)
        self._undelivered.append(event_id)

    def expect_run(self, first_id: int, last_id: int) -> None:
        """:meth:`expect` each of ``first_id`` to ``last_id`` (a group of chat lines another
        node said, read from the broker's log), in one call."""
        if last_id > self._last_id:
            self._last_id = last_id
        self._undelivered.extend(range(first_id, last_id + 1))

    def _release(self, event_id: int) -> None:
        """``event_id`` is being delivered (or dropped): history may now reach past it."""
        if self._undelivered and self._undelivered[0] == event_id:
            self._undelivered.popleft()

    def _fanout_timed(self, pending: Pending) -> None:
        """Fan out a numbered event, timed for ``trio_chat_fanout_seconds``."""
        start = time.perf_counter()
        if type(pending.event) in _LATE_CHANGES and self._after_delete(pending):
            return
        arrival = pending.arrival
        if arrival is not None and not self._arrive(arrival, pending.event.id):  # type: ignore[union-attr]
            arrival = None
        event = pending.event
        self._fanout(pending.receivers(), event)
        if type(event) is Message:
            self.messages.add(event.room, (pending,))
            if self.recent:
                recent = self.recent.get(name_key(event.room))
                if recent is not None:
                    recent.add(event)
        elif type(event) in _CHANGES:
            self._changed(event)  # type: ignore[arg-type]
        if arrival is not None and self.join_history is not None:
            history = self.join_history(arrival.session, arrival.room.name)
            if history is not None:
                self._fanout((arrival.to,), history)
        self.metrics.fanout_seconds.observe(time.perf_counter() - start)
        if self.on_said and pending.sender is not None and type(event) is Message:
            self._said(event, pending.sender)

    def _after_delete(self, pending: Pending) -> bool:
        """Whether ``pending`` is an edit or a reaction of a message whose delete was
        delivered before it (checked against this node's memory when it was asked for,
        the delete was numbered meanwhile: elsewhere, or while the message was read from
        the store). Then nobody gets it (the store did not apply it either), and its sender
        is told, as if it had come a moment later."""
        change: MessageEdited | Reaction = pending.event  # type: ignore[assignment]
        if not self.messages.was_deleted(change.room, change.target):
            return False
        if pending.sender is not None:
            text = f"there is no message {change.target} in {change.room}: it was deleted"
            self._fanout((pending.sender,), Error(code="no_such_message", text=text))
        return True

    def _changed(self, change: MessageChange) -> None:
        """A change of a message went out: what this node keeps of the room's latest lines
        follows it (the index of authors, and the lines a joiner is shown)."""
        self.messages.apply(change)
        recent = self.recent.get(name_key(change.room))
        if recent is not None:
            recent.change(change)

    def _said(self, message: Message, sender: Session) -> None:
        """A line said on this node went out to its room: tell the ``on_said`` observers
        (the server queues it for the ``message_posted`` hook; nothing waits here)."""
        for callback in self.on_said:
            callback((message,), sender)

    def _said_run(self, run: list[Pending]) -> None:
        """The lines of ``run`` went out to their room: tell the ``on_said`` observers of
        those said on this node, once for each stretch of them by one sender."""
        callbacks = self.on_said
        stretch: list[Message] = []
        by: Session | None = None
        for pending in run:
            sender = pending.sender
            if sender is not by:
                if stretch and by is not None:
                    for callback in callbacks:
                        callback(stretch, by)
                stretch = []
                by = sender
            stretch.append(pending.event)  # type: ignore[arg-type]
        if stretch and by is not None:
            for callback in callbacks:
                callback(stretch, by)

    def _arrive(self, arrival: Arrival, joined_id: int) -> bool:
        """The ``join`` ``joined_id`` of ``arrival`` is being delivered: the user gets the
        room's events from it on. ``False`` if it left (or the room vanished) meanwhile."""
        session, room = arrival.session, arrival.room
        if room.members.get(session.id) is not session or session.closed:
            return False
        if session.mailbox.delivers_here:
            room.here[session.id] = session
        session.history_bound[name_key(room.name)] = joined_id
        return True

    def _fanout(self, receivers: Collection[Receiver], event: Payload) -> None:
        overflowed: list[Receiver] = []
        delivered = 0
        parcel = Parcel(event)
        held, owed = self._held, self._owed
        if held is not None and type(event) is not Raw:
            for receiver in receivers:
                mailbox = receiver.mailbox
                key = id(mailbox)
                gathering = held.get(key)
                if gathering is not None:
                    gathering[2].append(parcel)
                elif owed and (owner := _owner_key(receiver)) in self._keys_owed():
                    self._after.setdefault(owner, []).append((receiver, parcel))
                elif (
                    type(mailbox) is Mailbox
                    and mailbox.writes_directly
                    and (type(receiver) is not Device or receiver.session.mailbox is mailbox)
                ):  # (a connection of a user connected twice is written to as its user is)
                    held[key] = (receiver, mailbox, [parcel])
                elif mailbox.offer(parcel):
                    delivered += 1
                else:
                    overflowed.append(receiver)
        else:
            if held:  # bytes for one connection: after what it was held for
                for receiver in receivers:
                    self._write_held_for(receiver.mailbox)
            big = len(receivers) > self.fanout_sliced_from
            if big and owed:  # a big room that is busy: one fan-out at a time, as unsliced
                self.pay_all_owed()
            if big or owed:
                delivered = self._offer_sliced(receivers, parcel, overflowed)
            else:
                for receiver in receivers:
                    if receiver.mailbox.offer(parcel):
                        delivered += 1
                    else:
                        overflowed.append(receiver)  # too slow, or its connection is going away
        self.metrics.messages_out_total.inc(delivered * parcel.events)
        # Handled after the loop: detaching announces a leave, which fans out again.
        for receiver in overflowed:
            self._drop_slow(receiver)

    def _offer_sliced(
        self, receivers: Collection[Receiver], parcel: Parcel, overflowed: list[Receiver]
    ) -> int:
        """Offer ``parcel`` to ``receivers`` until :attr:`fanout_budget` seconds have gone
        (the clock is read after each :attr:`fanout_slice` offers), and owe it to the rest;
        a receiver owed something already gets it after that instead (so each receiver
        still gets everything in id order). How many took it now.

        Timed rather than counted: an offer to a mailbox that is queueing is an append
        (the loop is over long before the budget), while one that writes to its socket
        is a system call, and only then is there a fan-out long enough to slice. What is
        owed costs a list of the receivers left, made in one step. (A big fan-out pays
        what is owed before it comes here: see :meth:`_fanout`.)"""
        keys = self._keys_owed() if self._owed else None
        every = countdown = self.fanout_slice
        deadline = time.perf_counter() + self.fanout_budget
        rest: list[Receiver] = []
        delivered = 0
        remaining = iter(receivers)
        for receiver in remaining:
            if keys is not None and (owner := _owner_key(receiver)) in keys:
                self._after.setdefault(owner, []).append((receiver, parcel))
                continue
            if receiver.mailbox.offer(parcel):
                delivered += 1
            else:
                overflowed.append(receiver)
            countdown -= 1
            if not countdown:
                countdown = every
                if time.perf_counter() >= deadline:
                    rest = self._not_owed(remaining, keys, parcel)
                    break
        if rest:
            if not self._owed:
                self.wake_payer()
            self._owed.append(_Owed(rest, parcel))
            self.owed_made += 1
            if keys is not None:
                keys.update([_owner_key(r) for r in rest])
        return delivered

    def _not_owed(
        self, receivers: Iterator[Receiver], keys: set[int] | None, parcel: Parcel
    ) -> list[Receiver]:
        """The rest of ``receivers`` that are owed nothing yet (``keys``); the others get
        ``parcel`` after what they are owed."""
        if keys is None:
            return list(receivers)
        rest = []
        for receiver in receivers:
            key = _owner_key(receiver)
            if key in keys:
                self._after.setdefault(key, []).append((receiver, parcel))
            else:
                rest.append(receiver)
        return rest

    def _keys_owed(self) -> set[int]:
        """The :func:`_owner_key` of every user owed something (made at the first call)."""
        keys = self._owed_keys
        if keys is None:
            keys = self._owed_keys = {
                _owner_key(receiver)
                for owed in self._owed
                for receiver in itertools.islice(owed.receivers, owed.paid, None)
            }
        return keys

    def pay_owed(self) -> bool:
        """Offer receivers what they are owed, oldest first, for up to
        :attr:`fanout_budget` seconds (at least one :attr:`fanout_slice` of them); whether
        anyone is still owed anything. The publisher calls it once per scheduling round
        while anything is owed: between two calls, other tasks run, and a line said
        meanwhile in a small room goes out at once to its members who are owed nothing.
        """
        owed = self._owed
        keys, after = self._owed_keys, self._after
        deadline = time.perf_counter() + self.fanout_budget
        overflowed: list[Receiver] = []
        delivered = 0
        while owed:
            job = owed[0]
            parcel = job.parcel
            end = job.paid + self.fanout_slice
            for receiver in job.receivers[job.paid : end]:
                if keys is not None or after:
                    key = _owner_key(receiver)
                    if keys is not None:
                        keys.discard(key)
                    more = after.pop(key, None) if after else None
                    if more is not None:
                        delivered += self._pay(receiver, parcel, more, overflowed)
                        continue
                if receiver.mailbox.offer(parcel):
                    delivered += parcel.events
                else:
                    overflowed.append(receiver)
            job.paid = end
            if end >= len(job.receivers):
                owed.popleft()
                self.owed_paid += 1
            if time.perf_counter() >= deadline:
                break
        if not owed:
            self._owed_keys = None
        self.metrics.messages_out_total.inc(delivered)
        for receiver in overflowed:
            self._drop_slow(receiver)
        return bool(owed)

    @property
    def owes(self) -> bool:
        """Whether a sliced fan-out still owes anyone anything."""
        return bool(self._owed)

    def owes_since(self, made: int) -> bool:
        """Whether one of the first ``made`` sliced fan-outs (an :attr:`owed_made` read
        earlier) still owes anyone anything."""
        return self.owed_paid < made

    def pay_all_owed(self) -> None:
        """Offer everything owed now (the server is stopping: the goodbyes come after)."""
        while self.pay_owed():
            pass

    def pay_owed_to(self, session: Session) -> None:
        """Offer ``session`` what it is owed now, ahead of its turn: its connections are
        about to change, and one that joins it gets the rooms' history up to here (so it
        must not be given an owed line as well, when the user is paid later)."""
        key = id(session)
        if not self._owed:
            return
        keys = self._keys_owed()
        if key not in keys:
            return
        for job in self._owed:
            receivers = job.receivers
            for index in range(job.paid, len(receivers)):
                receiver = receivers[index]
                if _owner_key(receiver) == key:
                    del receivers[index]  # (the job is popped when paid up, as ever)
                    keys.discard(key)
                    overflowed: list[Receiver] = []
                    more = self._after.pop(key, [])
                    delivered = self._pay(receiver, job.parcel, more, overflowed)
                    self.metrics.messages_out_total.inc(delivered)
                    for refused in overflowed:
                        self._drop_slow(refused)
                    return

    def _pay(
        self,
        receiver: Receiver,
        parcel: Parcel,
        more: list[tuple[Receiver, Parcel]],
        overflowed: list[Receiver],
    ) -> int:
        """Offer ``receiver`` the ``parcel`` it is owed, then ``more`` (what came meanwhile
        for its user or one of its connections), in order; each receiver's run in one write
        where it writes directly. How many events were taken (a receiver that refused one
        is put in ``overflowed``, and gets nothing more here)."""
        runs: list[tuple[Receiver, list[Parcel]]] = [(receiver, [parcel])]
        for to, later in more:
            if to is runs[-1][0]:
                runs[-1][1].append(later)
            else:
                runs.append((to, [later]))
        delivered = 0
        refused: set[int] = set()
        for to, parcels in runs:
            if id(to) in refused:
                continue
            mailbox = to.mailbox
            if (
                type(mailbox) is Mailbox
                and mailbox.writes_directly
                and not any(type(p.event) is Raw for p in parcels)
            ):
                parcels = [_gathered(parcels)]
            for one in parcels:
                if not mailbox.offer(one):
                    overflowed.append(to)
                    refused.add(id(to))
                    break
                delivered += one.events
        return delivered

    def _write_held(self) -> None:
        """End a pass that gathered parcels: each receiver's, in one write (see
        :meth:`deliver_many`); one that refuses is dropped as too slow, as ever."""
        held, self._held = self._held, None
        if not held:
            return
        overflowed: list[Receiver] = []
        delivered = 0
        for receiver, mailbox, parcels in held.values():
            parcel = _gathered(parcels)
            if mailbox.offer(parcel):
                delivered += parcel.events
            else:
                overflowed.append(receiver)
        self.metrics.messages_out_total.inc(delivered)
        for receiver in overflowed:
            self._drop_slow(receiver)

    def _write_held_for(self, mailbox: Mailbox | Fanout) -> None:
        """Offer what was gathered for ``mailbox`` now (something must follow it at once)."""
        assert self._held is not None
        gathered = self._held.pop(id(mailbox), None)
        if gathered is None:
            return
        receiver, held_mailbox, parcels = gathered
        parcel = _gathered(parcels)
        if held_mailbox.offer(parcel):
            self.metrics.messages_out_total.inc(parcel.events)
        else:
            self._drop_slow(receiver)

    def _drop_slow(self, receiver: Receiver) -> None:
        if isinstance(receiver, Device):  # a reply to one connection
            devices = receiver.session.devices
            if receiver not in devices:
                return  # already gone
            if len(devices) > 1:
                self._drop_device(receiver)
                return
            receiver = receiver.session
        session = receiver
        if self.sessions.get(session.key) is not session:
            return  # already gone (a reply that came after it left)
        if session.closed:
            self.detach(session, session.close_reason or "connection closed")
            return
        if session.always_on and len(session.devices) == 1:
            # Its connection is closed alone; the user stays, offline (trio_chat.always_on).
            log.info("slow_consumer nick=%s addr=%s", session.nick, session.address)
            self.metrics.queue_drops_total.inc()
            session.devices[0].close("slow_consumer", "too slow: your send queue was full")
            return
        log.info("slow_consumer nick=%s addr=%s", session.nick, session.address)
        self.metrics.queue_drops_total.inc()
        session.close("slow_consumer", "too slow: your send queue was full")
        self.detach(session, "too slow to receive messages")
