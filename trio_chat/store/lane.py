"""A worker thread of its own for one SQLite connection, handed work without a round trip.

Why not ``trio.to_thread.run_sync`` per batch: it checkpoints before it starts its thread
(its limiter's acquire), so the job waits for the rest of the scheduling round, and its
result comes back through two more (trio's entry queue wakes the waiting task, which then
wakes the caller). While the loop is busy fanning out, a round is long: in the community
load with SQLite (2,000 users, 1,000 lines/s) a commit waited 40-110 ms for its thread to
start, behind the fan-out step in front of it, and every line waits for its commit before
anyone sees it. Here the thread is started once, for the store's lifetime, by the task that
owns it (:meth:`Lane.run`, so it never outlives its nursery); work is put on a thread-safe
queue and the thread takes it as soon as it can have the GIL, during the fan-out, and what
it finished is handed back by one call in the loop thread (``TrioToken.run_sync_soon``).
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class _Stop:
    """Put after the last item: the thread ends once it has done everything before it."""


_STOP = _Stop()


class Lane(Generic[T]):
    """Runs ``work(batch)`` in one thread, then ``finished(batch)`` in the loop thread.

    ``work`` gets everything queued when the thread looks (at most ``batch_max`` items),
    in the order :meth:`put` queued it; ``finished`` always follows, whatever ``work``
    raised, and must not raise itself. Items queued after :meth:`stop` are never taken:
    :meth:`take_left` gives them back.
    """

    def __init__(
        self,
        work: Callable[[list[T]], None],
        finished: Callable[[list[T]], None],
        *,
        batch_max: int,
    ) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self._work = work
        self._finished = finished
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[T | _Stop] = queue.SimpleQueue()
        #: Set by :meth:`abort`: the thread ends after the batch it is on.
        self._aborted = False

    def put(self, item: T) -> None:
        """Queue ``item`` for the thread (from the loop thread; never blocks)."""
        self._queue.put(item)

    def stop(self) -> None:
        """The thread ends once it has done everything queued so far."""
        self._queue.put(_STOP)

    def abort(self) -> None:
        """The thread ends after the batch it is on, leaving the rest queued."""
        self._aborted = True
        self._queue.put(_STOP)

    def take_left(self) -> list[T]:
        """The items no thread took (after :meth:`run` returned, or before it began)."""
        left: list[T] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return left
            if not isinstance(item, _Stop):
                left.append(item)

    async def run(self) -> None:
        """Run the thread until :meth:`stop` (or :meth:`abort`) and its last batch.

        Cancelling this waits for the thread all the same (a batch begun in SQLite is
        never abandoned): stop or abort it first.
        """
        token = trio.lowlevel.current_trio_token()
        # A limiter of its own: the thread lives as long as the store, and must not hold
        # one of the places trio's default limiter gives everyone's blocking calls.
        await trio.to_thread.run_sync(
            self._serve, token.run_sync_soon, limiter=trio.CapacityLimiter(1)
        )

    def _serve(self, in_loop: Callable[..., object]) -> None:
        """In the thread: take what is queued, do it, hand it back; until a stop."""
        get, batch_max = self._queue.get, self._batch_max
        while True:
            first = get()
            if isinstance(first, _Stop):
                return
            batch, stopping = [first], False
            while len(batch) < batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Stop):
                    stopping = True
                    break
                batch.append(item)
            try:
                self._work(batch)
            finally:
                in_loop(self._finished, batch)
            if stopping or self._aborted:
                return
