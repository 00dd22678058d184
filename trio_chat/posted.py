"""Between delivery and the ``message_posted`` hook (and ``bot_messaged``): a bounded
queue and one task.

Delivery is a synchronous loop on the path of every line (see :mod:`trio_chat.delivery`);
a plugin listening to every line must never sit in it. So the hub only tells
:meth:`PostedFeed.heard` that a line went out, which puts it in a bounded queue and
returns; one task of the server's takes the lines in order and calls the hook. What an
``async def`` listener returns runs in the background, in a nursery of that task's,
bounded by the plugin timeout (the plugin manager's guard) and in number
(:data:`MAX_RUNNING`): a listener that hangs on every line holds at most that many
tasks, never the delivery, and never the other listeners' plain calls.

A listener that falls behind by more than :data:`MAX_BEHIND` lines misses the newest ones
(counted, and logged at most every :data:`LOG_EVERY` seconds): better a bot that skips
lines under a flood than a server whose memory grows with it.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

__all__ = ["LOG_EVERY", "MAX_BEHIND", "MAX_RUNNING", "PostedFeed"]

log = logging.getLogger("trio_chat.plugins")

#: Lines that may wait for the listeners before the newest are missed.
MAX_BEHIND = 1000
#: Awaitables of listeners (``async def`` implementations) running at once, at most.
MAX_RUNNING = 100
#: Seconds between two log lines about lines missed or listeners skipped.
LOG_EVERY = 10.0


class PostedFeed:
    """The lines said on this node, on their way to the ``message_posted`` listeners (or
    the private messages to bots, on their way to ``bot_messaged``).

    ``call(*args)`` calls the listeners (the hook) with what :meth:`heard` was given and
    returns their results; ``wanted()`` says whether there are any (else nothing is even
    queued). ``what`` names the hook in the log.
    """

    def __init__(
        self,
        call: Callable[..., object],
        wanted: Callable[[], bool],
        *,
        what: str = "message_posted",
        max_behind: int = MAX_BEHIND,
        max_running: int = MAX_RUNNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._call = call
        self._wanted = wanted
        self.what = what
        self.max_behind = max_behind
        self.max_running = max_running
        self._clock = clock
        self._send: trio.MemorySendChannel[tuple[Any, ...]] | None = None
        self.running = 0
        #: Lines missed because the listeners were too far behind, since the start.
        self.missed = 0
        #: Awaitables not run because :attr:`max_running` were running, since the start.
        self.skipped = 0
        self._last_log = -LOG_EVERY
        self._unlogged: dict[str, int] = {}

    def heard(self, *args: Any) -> None:
        """A line went out (called in the middle of delivery: never waits); ``args`` are
        what the listeners are called with (``message, sender`` from the hub)."""
        send = self._send
        if send is not None and self._wanted():
            self._queue(send, args)

    def heard_all(self, lines: Sequence[Any], *rest: Any) -> None:
        """:meth:`heard` of ``(line, *rest)`` for each of ``lines``, in order (the hub's
        lines of one sender, delivered together: see ``Hub.on_said``), with the listeners
        looked for once."""
        send = self._send
        if send is not None and self._wanted():
            for line in lines:
                self._queue(send, (line, *rest))

    def _queue(self, send: trio.MemorySendChannel[tuple[Any, ...]], item: tuple[Any, ...]) -> None:
        """Queue one line for the listeners, or count it missed if they are too far behind."""
        try:
            send.send_nowait(item)
        except trio.WouldBlock:
            self.missed += 1
            self._note(f"lines missed: the {self.what} listeners are behind")

    async def run(self) -> None:
        """Call the listeners for each line heard, in order, until cancelled."""
        send, receive = trio.open_memory_channel[tuple[Any, ...]](self.max_behind)
        self._send = send
        try:
            async with trio.open_nursery() as background, receive:
                async for args in receive:
                    self._dispatch(background, self._call(*args))
        finally:
            self._send = None

    def _dispatch(self, background: trio.Nursery, results: object) -> None:
        for result in results if isinstance(results, list) else ():
            if not inspect.isawaitable(result):
                self._note(
                    f"a {self.what} listener returned {type(result).__name__}, "
                    "not None or an awaitable (ignored)"
                )
                continue
            if self.running >= self.max_running:
                self.skipped += 1
                if inspect.iscoroutine(result):
                    result.close()
                self._note(f"listeners skipped: {self.max_running} were running")
                continue
            self.running += 1
            background.start_soon(self._run_one, result)

    async def _run_one(self, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable  # guarded by the plugin manager: its errors and time are bounded
        finally:
            self.running -= 1

    def _note(self, what: str) -> None:
        """Log ``what`` now, or count it towards the next log line (at most one every
        :data:`LOG_EVERY` seconds: a flood must not become a flood of logs)."""
        self._unlogged[what] = self._unlogged.get(what, 0) + 1
        now = self._clock()
        if now - self._last_log < LOG_EVERY:
            return
        self._last_log = now
        for text, count in self._unlogged.items():
            log.error("%s (%d times)", text, count)
        self._unlogged.clear()
