"""A session's outbox: the bounded queue between the hub and one connection's writer.

The hub fills it synchronously, one item per receiver per message (or per bundle of
messages), so ``put_nowait`` is on the hottest path of the server and does the least it
can: append, count, and wake the writer only if it is asleep. The writer empties it in
bulk (everything waiting, in one write), which a trio memory channel can only do one
``receive_nowait`` at a time. One producer side (the
hub) and one consumer (the writer task) per outbox; both run on the trio thread.
"""

from __future__ import annotations

import collections

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
        self._items: collections.deque[ServerEvent] = collections.deque()
        self._events = 0
        self._closed = False
        self._wakeup: trio.Event | None = None  # set while the writer waits for events

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
            wakeup.set()

    def close(self) -> None:
        """No more events; the writer still gets what is queued, then an empty batch."""
        self._closed = True
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    def take_nowait(self, limit: int) -> list[ServerEvent]:
        """Up to ``limit`` queued items, oldest first (empty if none)."""
        items = self._items
        if len(items) <= limit:
            batch = list(items)
            items.clear()
            self._events = 0
            return batch
        batch = [items.popleft() for _ in range(limit)]
        self._events -= sum(map(events_in, batch))
        return batch

    async def take(self, limit: int) -> list[ServerEvent]:
        """Wait for events and return up to ``limit`` of them; ``[]`` once closed and empty."""
        while not self._items:
            if self._closed:
                await trio.lowlevel.checkpoint()
                return []
            self._wakeup = trio.Event()
            await self._wakeup.wait()
        # A full checkpoint even when events were waiting: the scheduling round it costs
        # lets more events in, so the caller writes bigger batches.
        await trio.lowlevel.checkpoint()
        return self.take_nowait(limit)
