"""Parking: idle connections held without a task of their own.

A logged-in connection that is being served has a task, its reader (and a writer task
while something is queued for it). A task and its coroutine frames are what a busy
connection costs over an idle one (about 1.1 of the 5.5-6 KiB of a busy one; bench/README.md,
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

A connection that *has* a task waits for input through the lot too
(:meth:`ParkingLot.wait_readable`): its reader suspends itself until its socket is
readable or the connection has been idle for ``park_after`` (the lot keeps that
deadline; a hang-up interrupts the wait: :meth:`ParkingLot.interrupt`). That is what trio's
``wait_readable`` under a cancel scope with a moving deadline did, for less memory per
busy connection: trio's wait keeps four coroutine frames, a waiters object and an abort
closure, and each read left a deadline in trio's heap (bench/README.md, "Memory per
connection"). The socket is armed in the lot's epoll set, and the lot's task wakes the
waiting task; or, for a *busy* reader (its input comes every few milliseconds: the
caller says so), the socket is watched by trio's own epoll, which wakes the waiting task
directly (:mod:`.readiness`): then a line read costs no step of the lot's and no
scheduling round of its own, and the lot keeps the wait's deadline only. Only then: trio's
watch keeps a little more memory while the task waits (trio's entry for the socket, about
0.1 KiB), which a reader that waits seconds for each line would hold for nothing (the
lot's step is what it saves, once a line).

A new plain TCP connection whose first bytes are a moment late (its ``hello`` still on
the way) is parked here with no task at all, by the accept loop (:mod:`.doorstep`, which
keeps those deadlines). One whose task has started already (from a trusted proxy, or
when the doorstep could not hold it) waits for them here in its task, until
``sniff_delay``: waits of other lengths than ``park_after`` keep their deadlines in lanes
of their own (see ``ParkingLot._lanes``).

Linux only (``select.epoll``); elsewhere :attr:`ParkingLot.available` is false and
connections simply keep their tasks and wait with trio. The lot knows nothing of chat: it
maps file descriptors to whatever resumes them, or to the task waiting on them.
"""

from __future__ import annotations

import enum
import logging
import math
import select
from collections.abc import Awaitable, Generator
from typing import Any, Protocol

import outcome
import trio
from trio._core._traps import WaitTaskRescheduled
from trio.lowlevel import Abort, Task

from .readiness import TrioEpoll

log = logging.getLogger("trio_chat.parking")

#: Ready sockets handled per wake-up before the lot lets other tasks run.
RESUME_SLICE = 256

#: How precisely the lot keeps idle deadlines: it wakes for them at most this often (a
#: deadline is met up to this late), not once per read of every busy connection.
IDLE_RESOLUTION = 0.01

#: How a parked socket, or one a task waits on, is registered: one wake-up per arming (the
#: lot re-arms it at the next wait or parking, one ``epoll_ctl``, as trio does its own).
_ARMED = select.EPOLLIN | select.EPOLLONESHOT if hasattr(select, "EPOLLONESHOT") else 0

#: Whether busy readers' waits in :meth:`ParkingLot.wait_readable` are watched by trio's
#: own epoll (see :mod:`.readiness`); off, by the lot's set as every other wait (tests run
#: both).
TRIO_WATCHES = True


class Woken(enum.Enum):
    """Why :meth:`ParkingLot.wait_readable` returned."""

    #: The socket has input (or its end, or an error): read it.
    READABLE = "readable"
    #: Nothing came before the deadline: the connection is idle. (Also when the lot
    #: stops: the caller then waits some other way, or ends.)
    IDLE = "idle"
    #: :meth:`ParkingLot.interrupt`: stop waiting (the server hung up, a write failed).
    INTERRUPTED = "interrupted"


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
    reason). When :meth:`run` ends, whoever is still parked is abandoned, and whoever
    waits in :meth:`wait_readable` is woken (:attr:`Woken.IDLE`).
    """

    def __init__(self) -> None:
        self._epoll: select.epoll | None = None  # open while run() runs
        self._parked: dict[int, Parked] = {}
        #: The tasks waiting in :meth:`wait_readable`, by socket, in *lanes*: each one's
        #: deadline is its ``custom_sleep_data`` (trio's place for what a sleeping task
        #: waits for: no tuple per wait; trio sets it to ``None`` when it reschedules the
        #: task, so an entry whose task trio's epoll woke, and which has not run yet to
        #: take its entry out, is known by that), and each lane is in its deadlines' order,
        #: so the first of a lane to expire is always its first entry. Waits of one length (a
        #: busy connection's ``park_after``, a new one's ``sniff_delay``) come in the
        #: order of their deadlines: a wait joins the first lane whose last deadline is
        #: not after its own, so there are about as many lanes as lengths of wait (the
        #: first lane for nearly all of them).
        self._lanes: list[dict[int, Task]] = [{}]
        #: Each lane's last deadline (an upper bound, once its last wait has gone).
        self._lane_ends: list[float] = [-math.inf]
        #: The scope of :meth:`run`'s waits until its deadline, the next idle deadline
        #: (rounded up to :data:`IDLE_RESOLUTION`), passes.
        self._timer: trio.CancelScope | None = None
        #: trio's epoll, which watches the sockets of busy readers' waits in
        #: :meth:`wait_readable` while :meth:`run` runs (``None``: the lot's own set does).
        self._trio: TrioEpoll | None = None

    @property
    def available(self) -> bool:
        """Whether connections can park now (the lot runs, on Linux)."""
        return self._epoll is not None

    def __len__(self) -> int:
        """Sockets parked now."""
        return len(self._parked)

    @property
    def waiting(self) -> int:
        """Tasks waiting in :meth:`wait_readable` now."""
        return sum(len(lane) for lane in self._lanes)

    def __contains__(self, fd: int) -> bool:
        return fd in self._parked

    def park(self, fd: int, parked: Parked) -> None:
        """Call ``parked.resume()`` once ``fd`` has input, an error, or its end of stream."""
        if self._epoll is None:
            raise RuntimeError("the parking lot is not running")
        if fd in self._parked:
            raise RuntimeError(f"fd {fd} is already parked")
        if self._waits_on(fd):
            raise RuntimeError(f"a task waits on fd {fd}")
        self._arm(self._epoll, fd)
        self._parked[fd] = parked

    def unpark(self, fd: int) -> None:
        """Forget ``fd`` without a call (no-op if it is not parked). Must be called before
        a parked socket is closed: the descriptor number may be reused. (The socket stays
        in the epoll set, perhaps armed: a wake-up for nobody is ignored, and closing the
        socket takes it out.)"""
        self._parked.pop(fd, None)

    def wait_readable(self, fd: int, deadline: float, *, busy: bool = False) -> Awaitable[Woken]:
        """Wait until ``fd`` has input (or its end, or an error), until ``deadline`` (then
        the connection is idle) or until :meth:`interrupt`; which of them. Cancelling
        the wait loses nothing. One task per socket (``trio.BusyResourceError`` if
        another task waits for its input); only while the lot runs (see
        :attr:`available`). Cheapest when waits of the same length are many (see
        ``_lanes``).

        trio's ``wait_readable`` in a cancel scope, for less memory while waiting: the
        task keeps no frame in here, only a :class:`_Wait` (this function registers the
        wait and returns that, to be awaited at once); the deadline is one entry here, not
        a cancel scope's. ``busy``: input is expected within milliseconds, so have trio's
        epoll watch the socket and wake the task itself (:mod:`.readiness`; the lot
        keeps the deadline only), for a little more memory while it waits."""
        epoll = self._epoll
        if epoll is None:
            raise RuntimeError("the parking lot is not running")
        if fd in self._parked:
            raise RuntimeError(f"fd {fd} is parked")
        lanes = self._lanes
        if fd in lanes[0] or (len(lanes) > 1 and self._waits_on(fd)):
            raise trio.BusyResourceError(f"fd {fd} is already waited on")
        task = trio.lowlevel.current_task()
        watcher = self._trio
        if busy and watcher is not None:
            watcher.watch(fd, task)
        else:
            self._arm(epoll, fd)
        task.custom_sleep_data = deadline
        ends = self._lane_ends
        if deadline >= ends[0]:  # (_lane_for's usual answer, without the call)
            ends[0] = deadline
            lanes[0][fd] = task
        else:
            self._lane_for(deadline)[fd] = task
        timer = self._timer
        if timer is not None and deadline < timer.deadline:
            timer.deadline = _rounded(deadline)
        return _Wait(self, fd)

    def _lane_for(self, deadline: float) -> dict[int, Task]:
        """The lane a wait until ``deadline`` joins (see ``_lanes``)."""
        ends = self._lane_ends
        if deadline >= ends[0]:  # nearly always
            ends[0] = deadline
            return self._lanes[0]
        for index, lane in enumerate(self._lanes):
            if not lane or deadline >= ends[index]:
                ends[index] = deadline
                return lane
        self._lanes.append({})
        self._lane_ends.append(deadline)
        return self._lanes[-1]

    def _waits_on(self, fd: int) -> bool:
        lanes = self._lanes
        return fd in lanes[0] or (len(lanes) > 1 and any(fd in lane for lane in lanes[1:]))

    def interrupt(self, fd: int) -> bool:
        """Wake the task waiting on ``fd`` in :meth:`wait_readable` with
        :attr:`Woken.INTERRUPTED`; whether one was waiting."""
        return self._wake(fd, Woken.INTERRUPTED)

    def _wake(self, fd: int, why: Woken) -> bool:
        for lane in self._lanes:
            task = lane.pop(fd, None)
            if task is not None:
                return self._wake_task(fd, task, why)
        return False

    def _taken(self, fd: int) -> Task | None:
        """Take the wait on ``fd`` out of its lane (woken by trio's epoll, or cancelled):
        its task, or ``None`` if the lot took it out already."""
        for lane in self._lanes:
            task = lane.pop(fd, None)
            if task is not None:
                return task
        return None

    def _woken(self, fd: int, rescheduled: outcome.Outcome[Woken | None]) -> Woken:
        """What a wait on ``fd`` that was rescheduled with ``rescheduled`` returns (see
        :class:`_Wait`)."""
        if type(rescheduled) is outcome.Value:
            woken: Woken | None = rescheduled.value
            if woken is not None:
                return woken  # the lot woke it, and took its entry out
            # trio's epoll woke it: the socket is ready. (Its entry out, nearly always
            # from the first lane: what _taken does, without the call.)
            if self._lanes[0].pop(fd, None) is None:
                self._taken(fd)
            return Woken.READABLE
        self._taken(fd)
        rescheduled.unwrap()  # (trio's notify_closing: the socket was closed under it)
        raise AssertionError("an error outcome unwraps to its error")

    def _aborted(self, fd: int) -> None:
        """The wait on ``fd`` was cancelled: forget it (trio's epoll too)."""
        task = self._taken(fd)
        watcher = self._trio
        if watcher is not None and task is not None:
            watcher.withdraw(fd, task)  # (if it watches it: a busy reader's wait)

    def _wake_task(self, fd: int, task: Task, why: Woken) -> bool:
        """Wake ``task``, just taken out of its lane, with ``why``; whether it was still
        waiting (not if trio's epoll woke it already: it has not run since to take its
        entry out)."""
        if task.custom_sleep_data is None:
            return False
        watcher = self._trio
        if watcher is not None:
            watcher.withdraw(fd, task)  # (if it watches it: a busy reader's wait)
        trio.lowlevel.reschedule(task, outcome.Value(why))
        return True

    @staticmethod
    def _arm(epoll: select.epoll, fd: int) -> None:
        """Have the epoll set report ``fd``'s next readiness (once)."""
        try:
            epoll.modify(fd, _ARMED)
        except FileNotFoundError:  # not in the set yet (or closed and its number reused)
            epoll.register(fd, _ARMED)

    def ready(self, limit: int = RESUME_SLICE) -> int:
        """Resume up to ``limit`` parked connections whose sockets are ready now, and wake
        the tasks waiting on ready sockets; how many in all. (The non-blocking half of
        :meth:`run`.)"""
        if self._epoll is None:
            return 0
        # Polled even when nobody is parked or waiting: a socket left armed (its wait was
        # interrupted or cancelled) may have fired, and its event must be taken, or the
        # epoll set stays readable and run() spins.
        resumed = 0
        for fd, _events in self._epoll.poll(0, limit):
            if self._wake(fd, Woken.READABLE):
                resumed += 1
                continue
            parked = self._parked.pop(fd, None)
            if parked is None:
                continue  # a wake-up for nobody (see unpark)
            resumed += 1
            try:
                parked.resume()
            except Exception:
                log.exception("resuming the connection on fd %d failed", fd)
        return resumed

    def expire(self, now: float) -> int:
        """Wake the waits whose deadline has passed (:attr:`Woken.IDLE`); how many."""
        woken = 0
        for lane in self._lanes:
            expired = []
            for fd, task in lane.items():
                deadline = task.custom_sleep_data
                if deadline is not None and deadline > now:
                    break
                expired.append(fd)  # (or woken by trio's epoll already: taken out)
            for fd in expired:
                woken += self._wake_task(fd, lane.pop(fd), Woken.IDLE)
        return woken

    async def _serve(self) -> None:
        """Wake the waits past their deadline, then serve the sockets that are ready."""
        self.expire(trio.current_time())
        while self.ready() == RESUME_SLICE:
            await trio.lowlevel.checkpoint()

    def _next_deadline(self) -> float:
        first = math.inf
        for lane in self._lanes:
            for task in lane.values():
                deadline = task.custom_sleep_data
                if deadline is not None:  # (else woken by trio's epoll, not run yet)
                    first = min(first, deadline)
                    break
        return first if first == math.inf else _rounded(first)

    async def run(self) -> None:
        """Wait on all parked sockets at once until cancelled; resume those that become
        ready, wake the waits of those that do and of those idle past their deadline.
        Returns at once where there is no epoll (connections then never park)."""
        if not hasattr(select, "epoll"):
            return
        self._epoll = epoll = select.epoll()
        self._trio = TrioEpoll.of_current_run() if TRIO_WATCHES else None
        try:
            while True:
                # One timer scope until its deadline passes, the deadline moved meanwhile
                # (when the first wait's, rounded, is another), not a new scope at every
                # wake-up: trio keeps each scope's deadline, and each move of one, in its
                # heap until that deadline passes, the scope with it, and the lot wakes
                # up at every read of every busy connection.
                with trio.CancelScope(deadline=self._next_deadline()) as timer:
                    self._timer = timer
                    while True:
                        await trio.lowlevel.wait_readable(epoll.fileno())
                        await self._serve()
                        deadline = self._next_deadline()
                        if deadline != timer.deadline:  # (a move is trio's heap work)
                            timer.deadline = deadline
                self._timer = None
                await self._serve()
        finally:
            epoll, self._epoll, self._timer = self._epoll, None, None
            parked, self._parked = list(self._parked.values()), {}
            for lane in self._lanes:
                for fd in list(lane):
                    self._wake(fd, Woken.IDLE)
            self._trio = None
            epoll.close()
            for connection in parked:
                connection.abandon()


class _Wait:
    """One task's wait in the lot (:meth:`ParkingLot.wait_readable`), awaited at once:
    what ``trio.lowlevel.wait_task_rescheduled`` does, for less memory. Woken by the lot
    (with why) or by trio's epoll (with nothing: the socket is ready).

    trio's function is a coroutine awaiting a generator (``_async_yield``), and its
    ``abort_fn`` would be a closure over the socket: four objects (0.6 KiB) held for as
    long as a busy connection waits, which is nearly always. Here the awaitable is also
    the abort function, and awaiting it is one generator (:meth:`__await__`): 0.25 KiB.
    (A hand-written iterator instead of the generator would be 48 bytes, but the
    ``StopIteration`` its ``send`` raises to end the wait makes Python keep a frame
    object for the awaiting coroutine, 0.25 KiB again.) It hands trio trio's own request
    type, from a private module: the one private name here, checked by
    tests/test_parking.py like any wait.
    """

    __slots__ = ("_fd", "_lot")

    def __init__(self, lot: ParkingLot, fd: int) -> None:
        self._lot = lot
        self._fd = fd

    def __await__(self) -> Generator[Any, Any, Woken]:
        # Suspended until rescheduled with an outcome: Woken (the lot woke it), None
        # (trio's epoll did: the socket is ready), an error (trio's notify_closing: the
        # socket was closed under it), or Cancelled (see __call__).
        rescheduled = yield WaitTaskRescheduled(self)
        return self._lot._woken(self._fd, rescheduled)

    def __call__(self, _: Any) -> Abort:
        """Cancelled while waiting: forget the wait (the lot's set may keep the socket
        armed: it then wakes the lot for nobody, once)."""
        self._lot._aborted(self._fd)
        return Abort.SUCCEEDED


def _rounded(deadline: float) -> float:
    """``deadline`` rounded up to :data:`IDLE_RESOLUTION`: the lot's timer then moves only
    when a wait's deadline falls in a later slot, not at every read. (Never below it, float
    rounding included: the timer would fire before :meth:`ParkingLot.expire` finds it due.)"""
    return max(deadline, math.ceil(deadline / IDLE_RESOLUTION) * IDLE_RESOLUTION)
