"""The goodbye's wait for a connection's last lines, bounded without a cancel scope each.

A connection that ends while a line it said is still on its way (being committed, then
delivered: the churn's "say a line, quit") waits until everything said so far has reached
the mailboxes (:meth:`ChatHost.settle`), so that its echo comes before its ``bye``; but
never longer than the goodbye's time (``GOODBYE_TIMEOUT``: a stuck database must not keep
it). That was a ``move_on_after`` around the settle in every such connection's task: a
cancel scope entered and left, its deadline pushed onto trio's heap, about 3% of a churn
connection's instructions (bench/README.md, "Seventh round").

Here one :class:`Settler` keeps those waits for every connection, as the doorstep keeps
the waits for a first line (:mod:`.doorstep`): a connection's task waits (:meth:`Settler.wait`,
woken by a reschedule, as an event would wake it) and two tasks of the Settler's own wake
it: one settles for every connection waiting when it starts (one settle for all of them,
no deadline), the other wakes those whose time ran out (all waits are of one length, so
their deadlines come in the order the waits began: one sleep at a time, for the first).
Without a running Settler (a server not serving yet) a wait is the scope it was.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable

import outcome
import trio

log = logging.getLogger("trio_chat.connection")


class Settler:
    """Waits for ``settle()``, each at most ``delay`` seconds, kept while :meth:`run` runs."""

    def __init__(self, settle: Callable[[], Awaitable[None]], delay: float) -> None:
        self._settle = settle
        self._delay = delay
        #: Waits in the order they began (their deadlines' order); ended ones are dropped
        #: when they reach the front.
        self._waiting: deque[_Wait] = deque()
        #: How many waits began so far (a wait's number: the settle task serves those
        #: numbered before its settle began).
        self._began = 0
        self._running = False
        #: Set when a wait begins while a task of ours has none to keep.
        self._arrived: trio.Event | None = None

    def __len__(self) -> int:
        """Waits not ended yet."""
        return sum(not wait.ended for wait in self._waiting)

    async def wait(self) -> bool:
        """Wait until everything said so far has been delivered (``True``), or ``delay``
        seconds passed (``False``). Cancellable, like any wait."""
        if not self._running:
            with trio.move_on_after(self._delay):
                await self._settle()
                return True
            return False
        wait = _Wait(trio.lowlevel.current_task(), self._began, trio.current_time() + self._delay)
        self._began += 1
        self._waiting.append(wait)
        if self._arrived is not None:
            self._arrived.set()

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            wait.ended = True
            return trio.lowlevel.Abort.SUCCEEDED

        settled: bool = await trio.lowlevel.wait_task_rescheduled(abort)
        return settled

    async def run(self) -> None:
        """Keep the waits until cancelled; then end those left as run out of time (their
        tasks go on with the goodbye, bounded as it is)."""
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._settle_forever)
                nursery.start_soon(self._expire_forever)
        finally:
            self._running = False
            for wait in self._waiting:
                wait.end(False)
            self._waiting.clear()

    async def _until_someone_waits(self) -> None:
        """Return once a wait not ended is at the front (the ended ones dropped)."""
        waiting = self._waiting
        while True:
            while waiting and waiting[0].ended:
                waiting.popleft()
            if waiting:
                return
            if self._arrived is None:
                self._arrived = trio.Event()
            arrived = self._arrived
            await arrived.wait()
            if self._arrived is arrived:
                self._arrived = None

    async def _settle_forever(self) -> None:
        """Settle for everyone waiting when the settle begins; again while anyone waits."""
        waiting = self._waiting
        while True:
            await self._until_someone_waits()
            began = self._began
            settled = True
            try:
                await self._settle()
            except Exception:  # one connection's failure before; not the server's now
                log.exception("settling failed (goodbyes waiting: %d)", len(waiting))
                settled = False
            while waiting and waiting[0].number < began:
                waiting.popleft().end(settled)

    async def _expire_forever(self) -> None:
        """Wake the waits whose time ran out, in the order they began."""
        waiting = self._waiting
        while True:
            await self._until_someone_waits()
            await trio.sleep_until(waiting[0].deadline)
            now = trio.current_time()
            while waiting and (waiting[0].ended or waiting[0].deadline <= now):
                waiting.popleft().end(False)


class _Wait:
    """One task waiting in :meth:`Settler.wait`."""

    __slots__ = ("deadline", "ended", "number", "task")

    def __init__(self, task: trio.lowlevel.Task, number: int, deadline: float) -> None:
        self.task = task
        self.number = number
        self.deadline = deadline
        self.ended = False

    def end(self, settled: bool) -> None:
        """Wake its task with ``settled`` (once; not one whose wait was cancelled)."""
        if not self.ended:
            self.ended = True
            trio.lowlevel.reschedule(self.task, outcome.Value(settled))
