"""A task's wait for a socket's input in trio's own epoll set, without trio's coroutines.

The parking lot's waits (:meth:`~.parking.ParkingLot.wait_readable`: a busy connection's
reader between two reads, a new connection's wait for its first bytes) used to be armed in
the lot's own epoll set: trio's epoll woke the lot's task, whose step polled its set and
woke the reader, one more task step and one more scheduling round for every line a busy
connection got (bench/README.md, "A line at a steady rate: the reader's side"). Here the
waiting task is registered in trio's own table of readers instead, as trio's
``wait_readable`` registers it, so that trio's epoll wakes it directly; but without the
four coroutine frames and the abort closure that trio's wait would keep for as long as the
task waits (0.6 KiB: the lot's wait keeps one generator and its own small object).

That table is trio's private ``EpollIOManager._registered`` (a reader and a writer task
per descriptor) and ``_update_registrations`` (what re-arms the descriptor): the two
members trio's own ``wait_readable`` and its abort use, used the same way. They are
looked up once, by :meth:`TrioEpoll.of_current_run`, which gives ``None`` where they are
not what is expected (another I/O manager, another trio): the lot then arms its waits in
its own epoll set, as before. tests/test_parking.py runs the lot both ways.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from trio.lowlevel import Task

try:
    from trio._core import _run as trio_run
except ImportError:  # another trio: the lot waits in its own epoll set
    trio_run = None  # type: ignore[assignment]


class TrioEpoll:
    """trio's table of the tasks waiting for readiness (Linux's epoll I/O manager), for a
    wait that is its own awaitable (see the module's docstring)."""

    __slots__ = ("_registered", "_update")

    def __init__(self, registered: Any, update: Callable[[int], None]) -> None:
        #: trio's ``{fd: EpollWaiters}`` (a defaultdict: ``read_task``, ``write_task``).
        self._registered = registered
        #: trio's re-arming of ``fd`` after a change of its waiters.
        self._update = update

    @classmethod
    def of_current_run(cls) -> TrioEpoll | None:
        """The table of the trio run this is called in, or ``None`` if its I/O manager is
        not the epoll one this knows (then wait some other way)."""
        context = getattr(trio_run, "GLOBAL_RUN_CONTEXT", None)
        manager: Any = getattr(getattr(context, "runner", None), "io_manager", None)
        registered = getattr(manager, "_registered", None)
        update = getattr(manager, "_update_registrations", None)
        make = getattr(registered, "default_factory", None)
        if not callable(update) or not callable(make):
            return None
        probe = make()
        if not all(hasattr(probe, name) for name in ("read_task", "write_task")):
            return None
        return cls(registered, update)

    def watch(self, fd: int, task: Task) -> None:
        """Have trio's epoll reschedule ``task``, the current task, when ``fd`` has input
        (or its end, or an error), with ``Value(None)``; what ``trio.lowlevel.wait_readable``
        does before it waits. Raises ``trio.BusyResourceError`` if a task waits for that
        already, and ``OSError`` if ``fd`` is no descriptor epoll can watch."""
        waiters = self._registered[fd]
        if waiters.read_task is not None:
            raise trio.BusyResourceError("another task is already reading this fd")
        waiters.read_task = task
        self._update(fd)

    def withdraw(self, fd: int, task: Task) -> bool:
        """Take back :meth:`watch` (the task is woken some other way, or cancelled), as
        trio's abort does; whether ``task`` was still watching (``False``: trio's epoll
        has rescheduled it already)."""
        waiters = self._registered.get(fd)
        if waiters is None or waiters.read_task is not task:
            return False
        waiters.read_task = None
        self._update(fd)
        return True


def notify_closing(fd: int) -> None:
    """``trio.lowlevel.notify_closing(fd)``, before ``fd`` is closed, only where a task
    waits for ``fd`` in trio's epoll (or where that cannot be told: another trio).

    trio's call wakes those tasks with ``ClosedResourceError`` and takes ``fd`` out of its
    epoll set. With nobody waiting there is nobody to wake, and closing the descriptor takes
    it out of every epoll set anyway, so the call would only make its error object and ask
    the kernel to unregister a descriptor that, as a rule, trio never watched (a failing
    system call, its exception caught): 3.3 us, for every connection that ends. trio keeps
    a descriptor in its table only while a task waits on it (see :class:`TrioEpoll`)."""
    context = getattr(trio_run, "GLOBAL_RUN_CONTEXT", None)
    manager: Any = getattr(getattr(context, "runner", None), "io_manager", None)
    registered = getattr(manager, "_registered", None)
    if registered is None or fd in registered:
        trio.lowlevel.notify_closing(fd)
