"""Work done at the end of a scheduling round: once every task that was ready has run,
before trio waits for I/O again, in no task's step of its own.

Why: the publisher delivers what the readers of a round said (their lines together, one
bundle per member: :mod:`trio_chat.publisher`). As a task of its own, woken by the first
line, it ran in the round after theirs, and a lone line (a chat at a steady rate: one
line every few milliseconds) paid for that round and that step: trio's poll of the
sockets (an ``epoll_wait`` that finds nothing), the switch into the publisher's frames,
its event and its wait again, all of it coming back cold into the cache after the idle
milliseconds between two lines (bench/README.md, "A line at a steady rate: third round").
At the end of the readers' own round the lines are the same ones, all of them, and none
of that is paid.

trio's hook for that moment is an instrument's ``before_io_wait`` (``trio.abc.Instrument``,
``trio.lowlevel.add_instrument``). Two things come with it, both handled here:

* the work runs in no task: it is run in the context of the task that opened the
  :func:`round_end` (its context variables, as if it ran in that task's step), and it
  must not await nor raise (trio would log the error and drop the instrument: the
  caller hands an error to its task itself);
* trio has chosen how long to wait for I/O before it calls the hook, from its run queue
  as the round left it. When the work makes a task runnable (a writer started for a
  socket that did not take everything, an event a task waits for), a wait that would
  block must be cut short: a call of nothing through ``run_sync_soon`` (trio's wake-up
  socket) does it. Whether the work made one runnable is trio's run queue
  (``Runner.runq``, private: looked up once by :func:`round_end`, which gives ``None``
  where it is not what this expects; the caller then does without, as before).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sized
from contextvars import Context
from typing import Any

import trio

try:
    from trio._core import _run as trio_run
except ImportError:  # another trio: no round's end (the caller wakes a task instead)
    trio_run = None  # type: ignore[assignment]


def _nothing() -> None:
    """What ``run_sync_soon`` is given to cut trio's wait for I/O short."""


class RoundEnd(trio.abc.Instrument):
    """Calls ``work`` at the end of a scheduling round in which :attr:`due` was set (see
    the module's docstring); made by :func:`round_end`."""

    __slots__ = ("_context", "_runq", "_token", "_work", "due")

    def __init__(
        self,
        work: Callable[[], None],
        context: Context,
        runq: Sized,
        token: trio.lowlevel.TrioToken,
    ) -> None:
        #: Set to have ``work`` called at the end of this round (cleared as it is called).
        self.due = False
        self._work = work
        self._context = context
        self._runq = runq
        self._token = token

    def tasks_ready(self) -> bool:
        """Whether tasks are ready to run in the next round (for the work to ask: under
        load, it may wait for that round's end)."""
        return bool(self._runq)

    def before_io_wait(self, timeout: float) -> None:
        if not self.due:
            return
        self.due = False
        self._context.run(self._work)
        # A task made runnable (or work due again) while trio meant to wait: wake it now.
        if timeout and (self._runq or self.due):
            self._token.run_sync_soon(_nothing)


def _run_queue() -> Sized | None:
    """trio's queue of the tasks to run in the next round, or ``None`` if this trio keeps
    it some other way."""
    context = getattr(trio_run, "GLOBAL_RUN_CONTEXT", None)
    runq: Any = getattr(getattr(context, "runner", None), "runq", None)
    if runq is None or not hasattr(runq, "__len__") or not hasattr(runq, "append"):
        return None
    return runq  # type: ignore[no-any-return]


@contextlib.contextmanager
def round_end(work: Callable[[], None]) -> Iterator[RoundEnd | None]:
    """While the block runs (in a task), call ``work``, in this task's context, at the end
    of every scheduling round in which the yielded :class:`RoundEnd`'s ``due`` is set;
    ``None`` where trio's run loop is not one this knows (nothing is called then)."""
    runq = _run_queue()
    if runq is None:
        yield None
        return
    hook = RoundEnd(
        work, trio.lowlevel.current_task().context, runq, trio.lowlevel.current_trio_token()
    )
    trio.lowlevel.add_instrument(hook)
    try:
        yield hook
    finally:
        with contextlib.suppress(KeyError):  # (dropped by trio already: it raised)
            trio.lowlevel.remove_instrument(hook)
