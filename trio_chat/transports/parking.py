"""Parking: idle connections held without a task of their own.

A logged-in connection that is being served has a task, its reader (and a writer task
while something is queued for it). A task's coroutine frames and cancel scopes are most
of what a connection costs (about 5 of the 10-11 KiB of a busy one; bench/README.md,
"Memory per connection"), and a chat server's connections are idle nearly all the time.
So a connection that has been quiet for a while (nothing read, nothing queued to send)
ends its task and *parks*: its socket is handed to the :class:`ParkingLot`, one task that waits
on an epoll set of every parked socket, and its mailbox is told whom to call.
Messages still reach a parked connection without any task: the hub writes them straight
to the socket when nothing is queued (see :mod:`trio_chat.mailbox`). The connection resumes,
in a new task, as soon as any of these happens:

- its socket becomes readable (the peer said something, or hung up);
- something is queued in its mailbox (the socket was full, or the transport has no direct
  writes);
- the server closes its session (kick, ping timeout, shutdown).

Linux only (``select.epoll``); elsewhere :attr:`ParkingLot.available` is false and
connections simply keep their tasks. The lot knows nothing of chat: it maps file
descriptors to whatever resumes them.
"""

from __future__ import annotations

import contextlib
import logging
import select
from typing import Protocol

import trio

log = logging.getLogger("trio_chat.parking")

#: Ready sockets handled per wake-up before the lot lets other tasks run.
RESUME_SLICE = 256


class Parked(Protocol):
    """What the lot holds for each parked socket."""

    def resume(self) -> None:
        """The socket is ready: serve the connection again (start a task; do not block)."""

    def abandon(self) -> None:
        """The lot is closing with the connection still parked: close it now."""


class ParkingLot:
    """One task's worth of waiting for many sockets.

    While :meth:`run` runs, :meth:`park` registers a socket; the first time the socket is
    readable (or in error) its owner's ``resume()`` is called, once, and the socket
    forgotten. :meth:`unpark` forgets it without a call (the connection resumed for another
    reason). When :meth:`run` ends, whoever is still parked is abandoned.
    """

    def __init__(self) -> None:
        self._epoll: select.epoll | None = None  # open while run() runs
        self._parked: dict[int, Parked] = {}

    @property
    def available(self) -> bool:
        """Whether connections can park now (the lot runs, on Linux)."""
        return self._epoll is not None

    def __len__(self) -> int:
        """Sockets parked now."""
        return len(self._parked)

    def __contains__(self, fd: int) -> bool:
        return fd in self._parked

    def park(self, fd: int, parked: Parked) -> None:
        """Call ``parked.resume()`` once ``fd`` has input, an error, or its end of stream."""
        if self._epoll is None:
            raise RuntimeError("the parking lot is not running")
        if fd in self._parked:
            raise RuntimeError(f"fd {fd} is already parked")
        self._epoll.register(fd, select.EPOLLIN)
        self._parked[fd] = parked

    def unpark(self, fd: int) -> None:
        """Forget ``fd`` without a call (no-op if it is not parked). Must be called before
        a parked socket is closed: the descriptor number may be reused."""
        if self._parked.pop(fd, None) is not None and self._epoll is not None:
            with contextlib.suppress(OSError):  # already closed: the kernel dropped it
                self._epoll.unregister(fd)

    def ready(self, limit: int = RESUME_SLICE) -> int:
        """Resume up to ``limit`` parked connections whose sockets are ready now; how many.
        (The non-blocking half of :meth:`run`.)"""
        if self._epoll is None or not self._parked:
            return 0
        resumed = 0
        for fd, _events in self._epoll.poll(0, limit):
            parked = self._parked.get(fd)
            self.unpark(fd)
            if parked is None:
                continue
            resumed += 1
            try:
                parked.resume()
            except Exception:
                log.exception("resuming the connection on fd %d failed", fd)
        return resumed

    async def run(self) -> None:
        """Wait on all parked sockets at once until cancelled; resume those that become
        ready. Returns at once where there is no epoll (connections then never park)."""
        if not hasattr(select, "epoll"):
            return
        self._epoll = select.epoll()
        try:
            while True:
                await trio.lowlevel.wait_readable(self._epoll.fileno())
                while self.ready() == RESUME_SLICE:
                    await trio.lowlevel.checkpoint()
        finally:
            epoll, self._epoll = self._epoll, None
            parked, self._parked = list(self._parked.values()), {}
            epoll.close()
            for connection in parked:
                connection.abandon()
