"""A receiver's mailbox: all of delivering events to one connection, behind one call.

The hub wraps an event in a :class:`Parcel`, hands it to each receiver's mailbox with
:meth:`Mailbox.offer` and drops the receivers that refuse (too slow, or going away); it
needs to know nothing else. The mailbox owns what a receiver's delivery takes, in one place:

* the bounded queue between the hub and the connection's writer task, bounded in events
  (a :class:`~trio_chat.parcels.Bundle` counts as the events in it) and in bytes (as the
  receiver's wire format sizes them: a few huge messages fill a socket as surely as many
  small ones);
* the direct write: while nothing of the receiver's is queued or being written, an
  event goes straight to its socket (one syscall, where waking the writer costs three
  task steps and two more scheduling rounds: at N=100 the last writer woken wrote
  milliseconds later). What the socket does not take is queued, in order;
* the wake-up hooks: the writer's, called at the next event queued or at close (a
  connection's writer task is started by it, see :meth:`Mailbox.call_when_queued`, and
  ends when nothing is left; a writer may also wait in :meth:`Mailbox.take`);
  the reader's, called when the server hangs up (:meth:`Mailbox.hang_up`, from
  ``Session.close``); and while the connection is parked with no task at all (see
  :mod:`trio_chat.transports.parking`), its resume in place of both.

The transport says how its wire sizes and writes events (:class:`DirectWrite`). What every
receiver of one fan-out shares (how many events it stands for, its size on each wire, its
encoding in each wire format: :func:`trio_chat.wire.encoded`) is worked out once, in its
:class:`~trio_chat.parcels.Parcel`, not once per receiver: every mailbox queues that same
parcel, so a fanned-out message is encoded once per format.

``offer`` is on the hottest path of the server (once per receiver of every message, or of
every bundle of messages), so it does the least it can: a receiver that can be written to
directly is not even measured unless its socket leaves something over. One producer (the
hub) and one consumer (the writer task, there only while something is queued) per
mailbox, both on the trio thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol

import trio

from .parcels import Item, Parcel, Raw, events_in

__all__ = ["DirectWrite", "Fanout", "Mailbox", "Parcel", "events_in"]


class DirectWrite(Protocol):
    """What a transport tells the mailbox of its connection about its wire."""

    @property
    def measure(self) -> Callable[[Item], int]:
        """Bytes an item takes on this wire; one function shared by every connection of a
        wire format (see :func:`trio_chat.wire.sizer`). The writer's ``sent`` counts alike."""
        ...

    @property
    def write_now(self) -> Callable[[Parcel], bytes] | None:
        """Write a parcel's payload to the socket without waiting, returning what it did not take
        (``b""`` if all); ``OSError`` if the socket is broken. ``None`` where the
        transport cannot (TLS). Called only while nothing is queued or being written."""
        ...


class Mailbox:
    """One receiver's delivery: a bounded queue (in events and in bytes), the direct
    write to its socket, and whom to wake when there is something to write."""

    __slots__ = (
        "_closed",
        "_events",
        "_items",
        "_measure",
        "_on_hang_up",
        "_unsent",
        "_wakeup",
        "_write_now",
        "max_bytes",
        "max_events",
    )

    #: Whether offers reach a connection of this process (a user of another node's
    #: mailbox takes offers and drops them: its own node delivers; see trio_chat.broker).
    delivers_here: ClassVar[bool] = True

    def __init__(
        self, max_events: int, max_bytes: int = 1 << 20, wire: DirectWrite | None = None
    ) -> None:
        if max_events < 1:
            raise ValueError("a mailbox holds at least one event")
        self.max_events = max_events
        self.max_bytes = max_bytes
        # A list, not a deque: the writer nearly always takes everything, and then takes
        # the list itself; an idle connection's empty list is 56 bytes, a deque's 600.
        # Parcels as the hub made them (shared by all receivers of a fan-out), and the rest
        # of a direct write.
        self._items: list[Item] = []
        self._events = 0
        #: Bytes offered and not yet written: queued, or in a write under way. Without a
        #: ``wire`` nothing is measured (and so only the event bound holds).
        self._unsent = 0
        self._closed = False
        self._measure = None if wire is None else wire.measure
        self._write_now = None if wire is None else wire.write_now
        #: Called once at the next offer or close: the waiting writer's wake-up, or a
        #: parked connection's resume. ``None`` while the writer is busy.
        self._wakeup: Callable[[], None] | None = None
        #: Called at :meth:`hang_up`: the reader's cancel, or a parked connection's resume.
        self._on_hang_up: Callable[[], None] | None = None

    def __len__(self) -> int:
        """Events queued."""
        return self._events

    def follow(self, wire: DirectWrite) -> None:
        """Measure and write as ``wire`` does now: for a connection whose dialect changed
        before it logged in (a late JSON ``hello`` after the text prompt), while nothing
        is queued yet."""
        self._measure = wire.measure
        self._write_now = wire.write_now

    def offer(self, parcel: Parcel) -> bool:
        """Deliver the parcel: write it to the socket now, or queue it for the
        writer.

        ``False`` if the receiver cannot take it: queued bytes or events would go over
        their bound (a lone event always fits, however big: only a backlog is too
        slow), or the mailbox is closed (its connection is going away). The hub then
        drops the receiver; an event refused is not queued.
        """
        if self._closed:
            return False
        unsent = self._unsent
        if not unsent:
            write_now = self._write_now
            if write_now is not None:
                try:
                    rest = write_now(parcel)
                except OSError:
                    self._write_now = None  # broken: the writer will find out and end it
                else:
                    if not rest:
                        return True
                    self._put(Raw(data=rest, events=parcel.events))
                    self._unsent = len(rest)
                    return True
        measure = self._measure
        if measure is None:
            size = 0
        else:
            known = parcel.sizes.get(measure)
            if known is None:
                known = parcel.sizes[measure] = measure(parcel)
            size = known
        if unsent and unsent + size > self.max_bytes:
            return False
        events = self._events + parcel.events
        if events > self.max_events and self._events:
            return False
        self._events = events
        self._unsent = unsent + size
        self._items.append(parcel)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup()
        return True

    def _put(self, item: Raw) -> None:
        """Queue the rest of a direct write (the mailbox was empty: it always fits)."""
        self._events += item.events
        self._items.append(item)
        self._wake()

    def _wake(self) -> None:
        """Call the one-shot wake-up, if any (:meth:`offer` does the same inline: it is the
        hottest path of the server)."""
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup()

    def sent(self, size: int) -> None:
        """The writer wrote ``size`` bytes (as ``measure`` counts them) of what it took."""
        self._unsent -= size

    @property
    def unsent_bytes(self) -> int:
        """Bytes offered and not yet written (queued, or being written)."""
        return self._unsent

    @property
    def writes_directly(self) -> bool:
        """Whether :meth:`offer` would write to the socket at once now (nothing unsent, a
        direct write, open): the hub may then gather several parcels for one write (see
        :meth:`~trio_chat.delivery.Delivery.deliver_many`)."""
        return not self._unsent and self._write_now is not None and not self._closed

    def close(self) -> None:
        """No more events; the writer still gets what is queued, then an empty batch."""
        self._closed = True
        self._wake()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def writer_waiting(self) -> bool:
        """Whether a writer waits in :meth:`take` (and so is not in the middle of a write)."""
        return self._wakeup is not None

    def call_when_queued(self, callback: Callable[[], None] | None) -> bool:
        """Call ``callback`` once, at the next event queued (one the socket did not take
        whole) or at :meth:`close`: how a connection starts its writer only when there is
        something to write, instead of keeping a task waiting in :meth:`take` (``None``:
        nobody). Refused (``False``, nothing set) if something is queued already or the
        mailbox is closed: the caller has that to deal with now."""
        if callback is not None and (self._items or self._closed):
            return False
        self._wakeup = callback
        return True

    def call_on_hang_up(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` at :meth:`hang_up` (the reader's cancel; ``None``: nobody)."""
        self._on_hang_up = callback

    def hang_up(self) -> None:
        """The server ends this receiver's connection (``Session.close``): stop reading.
        The writer still delivers what is queued; the transport then closes the mailbox."""
        callback = self._on_hang_up
        if callback is not None:
            callback()

    def park(self, resume: Callable[[], None]) -> bool:
        """Let ``resume`` stand in for the connection's reader and writer while it has no
        task: it is called once something is queued (an offer the socket did not take
        whole), at :meth:`close` or at :meth:`hang_up`. Refused (``False``) if something is
        queued or the mailbox is closed: the connection has work, and serves on. Only
        while no writer waits in :meth:`take`."""
        if self._events or self._closed:
            return False
        self._wakeup = self._on_hang_up = resume
        return True

    def unpark(self) -> None:
        """Take back what :meth:`park` gave (whichever woke it has used its own already)."""
        self._wakeup = self._on_hang_up = None

    def take_nowait(self, limit: int) -> list[Item]:
        """Up to ``limit`` queued items, oldest first (empty if none)."""
        items = self._items
        if len(items) <= limit:
            self._items = []
            self._events = 0
            return items
        batch = items[:limit]
        del items[:limit]
        self._events -= sum(map(events_in, batch))
        return batch

    async def take(self, limit: int) -> list[Item]:
        """Wait for events and return up to ``limit`` of them; ``[]`` once closed and empty.
        Once written, the writer reports their size with :meth:`sent`."""
        while not self._items:
            if self._closed:
                await trio.lowlevel.checkpoint()
                return []
            wakeup = trio.Event()
            self._wakeup = wakeup.set
            try:
                await wakeup.wait()
            finally:
                if self._wakeup == wakeup.set:
                    self._wakeup = None  # cancelled while waiting: nobody to wake
        # A full checkpoint even when events were waiting: the scheduling round it costs
        # lets more events in, so the caller writes bigger batches.
        await trio.lowlevel.checkpoint()
        return self.take_nowait(limit)


class Fanout:
    """The mailboxes of one user's several connections, as one mailbox for the hub.

    A session with one connection offers to that connection's :class:`Mailbox` itself; only
    while a user is connected more than once does the hub put one of these in its place
    (and the single mailbox back when one connection remains), so the fan-out of a user
    with one connection costs what it always did.

    Each connection keeps its own bounds: one that refuses an offer (too slow, or going
    away) is handed to ``refused`` after the others got the parcel, and the others go on.
    Only when every one refuses does :meth:`offer` refuse, and the hub drop the user.
    """

    __slots__ = ("_refused", "mailboxes")

    delivers_here: ClassVar[bool] = True

    def __init__(self, mailboxes: list[Mailbox], refused: Callable[[list[Mailbox]], None]) -> None:
        #: One per connection, in the order they logged in. Not changed here: the hub
        #: makes a new fan-out (or goes back to the single mailbox) as connections come
        #: and go.
        self.mailboxes = mailboxes
        self._refused = refused

    def __len__(self) -> int:
        """Events queued for the slowest connection."""
        return max(map(len, self.mailboxes))

    def offer(self, parcel: Parcel) -> bool:
        """Offer the parcel to every connection; ``False`` only if all of them refused
        (a connection that refused alone is given to ``refused``, after the loop)."""
        refused: list[Mailbox] | None = None
        for mailbox in self.mailboxes:
            if not mailbox.offer(parcel):
                if refused is None:
                    refused = []
                refused.append(mailbox)
        if refused is None:
            return True
        if len(refused) == len(self.mailboxes):
            return False
        self._refused(refused)
        return True

    def hang_up(self) -> None:
        """The server ends the user: every connection stops reading."""
        for mailbox in self.mailboxes:
            mailbox.hang_up()
