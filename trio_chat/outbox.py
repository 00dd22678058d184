"""A session's outbox: the bounded queue between the hub and one connection's writer.

The hub fills it synchronously, one item per receiver per message (or per bundle of
messages), so ``put_nowait`` is on the hottest path of the server and does the least it
can: append, count, and wake the writer only if it is asleep. The writer empties it in
bulk (everything waiting, in one write), which a trio memory channel can only do one
``receive_nowait`` at a time. One producer side (the
hub) and one consumer (the writer task) per outbox; both run on the trio thread.

The consumer may also be absent: a parked connection (see
:mod:`trio_chat.transports.parking`) has no writer task, and asks to be called back
(:meth:`Outbox.call_on_put`) when there is something to write.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from .protocol import Bundle, Raw, ServerEvent


def events_in(item: ServerEvent) -> int:
    """How many events a queued item stands for: a bundle its events, the rest of a
    direct write those it finishes, anything else one."""
    if isinstance(item, Bundle):
        return len(item.events)
    if isinstance(item, Raw):
        return item.events
    return 1


class Outbox:
    """Bounded FIFO of server events for one session, bounded in events (a
    :class:`~trio_chat.protocol.Bundle` counts as the events in it)."""

    __slots__ = ("_closed", "_events", "_items", "_wakeup", "max_events")

    def __init__(self, max_events: int) -> None:
        if max_events < 1:
            raise ValueError("an outbox holds at least one event")
        self.max_events = max_events
        # A list, not a deque: the writer nearly always takes everything, and then takes
        # the list itself; an idle connection's empty list is 56 bytes, a deque's 600.
        self._items: list[ServerEvent] = []
        self._events = 0
        self._closed = False
        #: Called once at the next put or close: the waiting writer's wake-up, or a parked
        #: connection's resume. ``None`` while the writer is busy.
        self._wakeup: Callable[[], None] | None = None

    def __len__(self) -> int:
        """Events queued."""
        return self._events

    def put_nowait(self, event: ServerEvent) -> None:
        """Queue ``event`` (counted as :func:`events_in` says); raises ``trio.WouldBlock`` if
        that would overfill the outbox (an empty one takes any one item), and
        ``trio.ClosedResourceError`` once closed (its connection is going away)."""
        if self._closed:
            raise trio.ClosedResourceError("the outbox is closed")
        events = self._events + events_in(event)
        if events > self.max_events and self._events:
            raise trio.WouldBlock
        self._events = events
        self._items.append(event)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup()

    def close(self) -> None:
        """No more events; the writer still gets what is queued, then an empty batch."""
        self._closed = True
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def writer_waiting(self) -> bool:
        """Whether a writer waits in :meth:`take` (and so is not in the middle of a write)."""
        return self._wakeup is not None

    def call_on_put(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` once, at the next :meth:`put_nowait` or :meth:`close` (or
        cancel a callback with ``None``). For a connection with no writer task: it must not
        be waiting in :meth:`take` meanwhile, and the outbox must be empty and open."""
        self._wakeup = callback

    def take_nowait(self, limit: int) -> list[ServerEvent]:
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

    async def take(self, limit: int) -> list[ServerEvent]:
        """Wait for events and return up to ``limit`` of them; ``[]`` once closed and empty."""
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
