"""The doorstep: new TCP connections whose first bytes are not there yet, held without a task.

A program sends its ``hello`` as it connects, but the server nearly always accepts the
connection a moment before the ``hello`` arrives: the client's connect returns when the
kernel has completed the handshake, and only then does it write. Each new connection used
to get its task at once, and that task's first act was to wait in the parking lot for
those bytes (``sniff``): a task started, suspended and woken again, for a wait of a
fraction of a millisecond, thousands of times over when a crowd reconnects.

Instead the accept loop takes the connection's place in the limits (so a crowd of silent
connections is capped as before) and leaves it *parked* in the
:class:`~.parking.ParkingLot`, with no task: its task starts when its first bytes (or its
end) arrive, and reads them at once, or when ``sniff_delay`` passed in silence (a person
at a prompt: the task then prompts for a nickname at once, as before). One task keeps
those deadlines for every waiting connection (:meth:`Doorstep.run`): they all wait
``sniff_delay``, so they expire in the order they arrived.

Only where the lot runs (Linux) and for plain connections that are not from a trusted
proxy (a PROXY header and TLS keep their own bounded reads, in their task).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .fdstream import FdStream
    from .host import ConnectionSlot
    from .parking import ParkingLot

#: What starts a connection's task once it leaves the doorstep (its first bytes came, or
#: not in time): called with the stream, the peer's ``host:port`` and its slot.
Serve = Callable[["FdStream", str, "ConnectionSlot"], None]


class Doorstep:
    """New connections waiting for their first bytes in ``lot``, each up to ``delay``
    seconds, then handed to ``serve`` (which starts their task). Holds them only while
    :meth:`run` runs and the lot does."""

    def __init__(self, lot: ParkingLot, delay: float, serve: Serve) -> None:
        self._lot = lot
        self._delay = delay
        self._serve = serve
        #: Waiting connections in the order they came, which is their deadlines' order
        #: (one delay for all); those served already are dropped when they reach the front.
        self._waiting: deque[_Waiting] = deque()
        self._running = False
        #: Set when a connection comes while none waits (:meth:`run` sleeps on it).
        self._arrived: trio.Event | None = None

    def __len__(self) -> int:
        """Connections waiting now."""
        return sum(not waiting.done for waiting in self._waiting)

    def wait(self, stream: FdStream, peer: str, slot: ConnectionSlot) -> bool:
        """Hold ``stream`` (from ``peer``, admitted: ``slot``) until its first bytes, its
        end or the delay; ``False`` (and nothing done) if it cannot be held here now."""
        if not self._running or not self._lot.available or self._delay <= 0:
            return False
        waiting = _Waiting(self, stream, peer, slot, trio.current_time() + self._delay)
        self._lot.park(stream.fileno(), waiting)
        self._waiting.append(waiting)
        if self._arrived is not None:
            self._arrived.set()
        return True

    async def run(self) -> None:
        """Serve the connections whose delay passed, as it passes, until cancelled; then
        close those still waiting (the server is stopping)."""
        waiting = self._waiting
        self._running = True
        try:
            while True:
                while waiting and waiting[0].done:
                    waiting.popleft()
                if not waiting:
                    self._arrived = trio.Event()
                    await self._arrived.wait()
                    self._arrived = None
                    continue
                await trio.sleep_until(waiting[0].deadline)
                now = trio.current_time()
                while waiting and (waiting[0].done or waiting[0].deadline <= now):
                    first = waiting.popleft()
                    if not first.done:
                        first.expire()
        finally:
            self._running = False
            for left in waiting:
                if not left.done:
                    left.abandon()
            waiting.clear()


class _Waiting:
    """One connection at the doorstep: what the lot resumes (see ``Parked``)."""

    __slots__ = ("deadline", "done", "doorstep", "peer", "slot", "stream")

    def __init__(
        self,
        doorstep: Doorstep,
        stream: FdStream,
        peer: str,
        slot: ConnectionSlot,
        deadline: float,
    ) -> None:
        self.doorstep = doorstep
        self.stream = stream
        self.peer = peer
        self.slot = slot
        self.deadline = deadline
        self.done = False

    def resume(self) -> None:
        """Its first bytes (or its end) came: its task reads them at once."""
        self.done = True
        self.doorstep._serve(self.stream, self.peer, self.slot)

    def expire(self) -> None:
        """Nothing came within the delay: its task takes it for a person at a prompt."""
        self.done = True
        self.doorstep._lot.unpark(self.stream.fileno())
        self.doorstep._serve(self.stream, self.peer, self.slot)

    def abandon(self) -> None:
        """The server is stopping with the connection still at the door: close it."""
        self.done = True
        self.doorstep._lot.unpark(self.stream.fileno())
        self.slot.give_back()
        self.stream.close()
