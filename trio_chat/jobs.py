"""Plugins' background work: tasks that live as long as the server, and periodic jobs.

Why the server runs them rather than the plugin: a plugin that opened a nursery of its
own would have no parent that lives as long as the server, and a thread would outlive it.
Here every task a plugin starts is a child of one nursery inside the server's, so it is
cancelled when the server stops (before the users are told goodbye and the database
closes) or when its plugin is removed, and nothing a job does can take another job, a
user or the server down with it:

* a task (:meth:`Jobs.start_soon`) runs until it returns or the server stops; whatever it
  raises is logged with its plugin's name, and only that task ends;
* a periodic job (:meth:`Jobs.every`) runs every ``seconds``, each run bounded by a
  timeout (the plugin timeout unless given); a run that raises or times out is logged and
  the job keeps its schedule (a job that keeps failing is logged once a minute, with a
  count, and once more when it works again); a run that overruns its period skips the
  times it missed rather than piling up, and runs of one job never overlap.

Plugins get the :class:`Jobs` of the server in the ``start_jobs`` hook (and as
``server.jobs``); which plugin a job belongs to is taken from the hook that is running,
as for commands. Nothing here imports the rest of trio-chat: the server hands in what it
needs (the timeout, who is calling).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .store.health import LogLimiter

log = logging.getLogger("trio_chat.plugins")

#: A periodic job failing again and again is logged once per this many seconds.
FAILURE_LOG_WINDOW = 60.0

#: What a job is: a function (plain or ``async def``) called with the arguments given.
JobFunction = Callable[..., "Awaitable[Any] | Any"]


class JobsNotRunning(RuntimeError):
    """A job was started while the server is not serving (there is nowhere to run it)."""


class Jobs:
    """The server's background work for plugins. ``start_soon`` and ``every`` work while
    the server serves (from ``start_jobs``, or from a command handler via ``server.jobs``);
    outside that they raise :class:`JobsNotRunning`."""

    def __init__(self, timeout: float = 10.0, owner: Callable[[], str] = lambda: "") -> None:
        #: Longest one run of a periodic job may take unless it says otherwise.
        self.timeout = timeout
        #: Names the plugin whose hook implementation is calling (``""`` outside one): the
        #: server passes :func:`~trio_chat.plugins.calling_plugin`.
        self._calling = owner
        self._nursery: trio.Nursery | None = None
        self._stopped = trio.Event()
        # Each running task's cancel scope, by plugin: removing a plugin stops its jobs.
        self._scopes: dict[str, set[trio.CancelScope]] = {}

    @property
    def running(self) -> bool:
        """Whether jobs can be started now (the server is serving)."""
        return self._nursery is not None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the jobs until :meth:`stop` (or cancellation); for ``nursery.start``."""
        self._stopped = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await self._stopped.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            self._scopes.clear()

    def stop(self) -> None:
        """Cancel every job; :meth:`run` returns once they have all ended."""
        self._stopped.set()

    def cancel_plugin(self, plugin: str) -> None:
        """Cancel every job of ``plugin`` (it is being removed)."""
        for scope in self._scopes.pop(plugin, set()):
            scope.cancel()

    def start_soon(
        self, function: JobFunction, *args: Any, name: str | None = None, plugin: str = ""
    ) -> None:
        """Run ``function(*args)`` in the background until it returns or the server stops.

        For a loop of the plugin's own (reading a feed, waiting on a channel). Whatever it
        raises is logged and ends this task alone. ``name`` is what the log calls it
        (default: the function's name); ``plugin`` whose it is, when not started from a
        hook of that plugin.
        """
        if not callable(function):
            raise TypeError(f"start_soon: {function!r} is not callable")
        owner, label = self._owner(plugin), name or _name_of(function)
        self._spawn(owner, label, self._run_task, owner, label, function, args)

    def every(
        self,
        seconds: float,
        function: JobFunction,
        *args: Any,
        name: str | None = None,
        timeout: float | None = None,
        immediately: bool = False,
        plugin: str = "",
    ) -> None:
        """Run ``function(*args)`` every ``seconds`` until the server stops.

        The first run is ``seconds`` from now (at once with ``immediately=True``). Each
        run may take at most ``timeout`` seconds (default: the plugin timeout) and is then
        cancelled; a run that raises or times out is logged and the next runs at its time.
        A run that takes longer than ``seconds`` makes the job skip the times it missed:
        runs of one job never overlap.
        """
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"every: seconds must be a positive number, not {seconds!r}")
        limit = self.timeout if timeout is None else timeout
        if not (isinstance(limit, int | float) and limit > 0):
            raise ValueError(f"every: timeout must be a positive number, not {timeout!r}")
        if not callable(function):
            raise TypeError(f"every: {function!r} is not callable")
        owner, label = self._owner(plugin), name or _name_of(function)
        self._spawn(
            owner,
            label,
            self._run_periodic,
            owner,
            label,
            float(seconds),
            float(limit),
            immediately,
            function,
            args,
        )

    # --------------------------------------------------------------------------- inside

    def _owner(self, plugin: str) -> str:
        return plugin or self._calling() or "(unknown plugin)"

    def _spawn(
        self, owner: str, label: str, runner: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        if self._nursery is None:
            raise JobsNotRunning(f"job {label!r} of {owner!r}: the server is not serving")
        scope = trio.CancelScope()
        scopes = self._scopes.setdefault(owner, set())
        scopes.add(scope)

        async def task() -> None:
            try:
                with scope:
                    await runner(*args)
            finally:
                scopes.discard(scope)

        self._nursery.start_soon(task, name=f"job {label} of {owner}")

    async def _run_task(
        self, owner: str, label: str, function: JobFunction, args: tuple[Any, ...]
    ) -> None:
        try:
            await _call(function, args)
        except Exception:
            log.exception("plugin %r: job %s raised (it has ended)", owner, label)

    async def _run_periodic(
        self,
        owner: str,
        label: str,
        seconds: float,
        limit: float,
        immediately: bool,
        function: JobFunction,
        args: tuple[Any, ...],
    ) -> None:
        due = trio.current_time() + (0.0 if immediately else seconds)
        # A job failing every second would write a traceback a second: the first failure
        # of a run of them is logged in full, then one line a minute, then its recovery.
        failures = LogLimiter(window=FAILURE_LOG_WINDOW)
        while True:
            await trio.sleep_until(due)
            failed = True
            try:
                with trio.move_on_after(limit) as run:
                    await _call(function, args)
                if run.cancelled_caught:
                    failures.error(
                        log,
                        trio.current_time(),
                        "plugin %r: job %s took longer than %ss (cancelled; it runs again at "
                        "its next time)",
                        owner,
                        label,
                        limit,
                    )
                else:
                    failed = False
            except Exception as exc:
                left_out = failures.hit(trio.current_time())
                if left_out is not None:
                    log.error(
                        "plugin %r: job %s raised (it runs again at its next time)%s",
                        owner,
                        label,
                        failures.more_text(left_out),
                        exc_info=exc,
                    )
            if not failed:
                failures.recovery(log, "plugin %r: job %s works again", owner, label)
            due += seconds
            now = trio.current_time()
            if due <= now:  # overran: the next time still ahead, on the same grid
                due += math.ceil((now - due) / seconds) * seconds
                if due <= now:
                    due += seconds


async def _call(function: JobFunction, args: tuple[Any, ...]) -> None:
    result = function(*args)
    if inspect.isawaitable(result):
        await result


def _name_of(function: JobFunction) -> str:
    return str(getattr(function, "__qualname__", None) or getattr(function, "__name__", function))
