"""What running trio-chat as a program adds around a :class:`~trio_chat.server.ChatServer`:
stopping on SIGINT/SIGTERM, and garbage-collector settings for the whole process.

Kept apart from the server because both act on the process, not on one server: a program
embedding a ChatServer (or a test running several) decides these for itself.
"""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Callable

import trio

from .server import ChatServer

log = logging.getLogger("trio_chat.server")


#: Collections of the middle generation between two full (oldest-generation) collections;
#: CPython's default is 10. See :func:`quiet_gc`.
FULL_GC_EVERY = 1000


def quiet_gc() -> None:
    """Keep the cyclic garbage collector's full collections out of the latency tail.

    A full collection walks every tracked object: the ~30,000 the server's code and modules
    make at start-up, plus a few hundred per connection. That is a stop-the-world pause of
    12-14 ms at 100 connections on the bench machine, and with CPython's default thresholds
    it came every second or so at 500 messages/s (and found nothing to free): it set the p99
    of steady delivery. So: freeze what start-up made (never garbage, now never walked) and
    run a full collection only once per ``FULL_GC_EVERY`` middle-generation ones. The young
    generations, where a chat server's garbage is, are collected as before; cycles that
    live long enough to reach the oldest generation are freed later, not never.
    Process-wide, so called by the program's entry point, not by :class:`ChatServer`.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_GC_EVERY)


async def run_until_signal(
    server: ChatServer, announce: Callable[[list[str]], None] | None = None
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully (used by the CLI).

    A second signal during the graceful shutdown stops at once. So does a signal before
    the server listens (a broker that is not answering can hold the start for as long as
    it takes): there is nobody to tell yet, and Ctrl-C must never be swallowed.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            listening = False

            async def serve_then_stop(task_status: trio.TaskStatus[list[str]]) -> None:
                await server.serve(task_status=task_status)
                nursery.cancel_scope.cancel()  # served out: stop watching signals

            async def stop_on_signals() -> None:
                async for signum in signals:
                    log.info("received %s, shutting down", signal.Signals(signum).name)
                    if not listening or server.stopping:
                        nursery.cancel_scope.cancel()
                    server.shutdown()

            nursery.start_soon(stop_on_signals)
            addresses = await nursery.start(serve_then_stop)
            listening = True
            quiet_gc()  # listening: everything start-up makes exists now
            if announce is not None:
                announce(addresses)
