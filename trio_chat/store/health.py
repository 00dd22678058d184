"""How the store says how it is doing: counters for /metrics (:class:`StoreStats`), and
failure logs that say the database is failing once, not once per refused message.

Both live apart from the store so that its writer (:mod:`.writer`) and its facade
(:mod:`.db`) count and log the same way.

On a full disk every message is refused; logging each refusal wrote 302,708 lines (47 MB)
in 30 s, which helps nobody and fills the next disk. :class:`LogLimiter` lets the first
failure of a run through at once, then at most one line per window, each saying how many
were left out since the one before.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass


@dataclass(slots=True)
class StoreStats:
    """Counters for tests and metrics."""

    #: Messages committed.
    messages: int = 0
    #: Transactions that committed messages (fewer than ``messages`` when batching works).
    batches: int = 0
    #: Messages refused with :class:`~trio_chat.store.StoreError`.
    failed: int = 0
    #: Most messages committed in one transaction.
    largest_batch: int = 0
    #: Writes that failed in SQLite: one per message not saved, one per other write (an
    #: id reservation, an account) that raised an SQLite error.
    write_failures: int = 0
    #: False once a write failed for the database's sake (see ``is_database_fault``: disk
    #: full, I/O error, ...), True again after the next write that succeeds.
    healthy: bool = True
    #: WAL checkpoints (:meth:`Store.checkpoint <trio_chat.store.Store.checkpoint>`) that
    #: failed.
    checkpoint_failures: int = 0
    #: Frames left in the WAL, not copied into the database, after the last checkpoint
    #: (grows when checkpoints cannot complete).
    wal_frames: int = 0


class LogLimiter:
    """Decide which of a run of repeated failures is logged; the caller passes ``now``.

    ::

        limiter.error(log, trio.current_time(), "message %d not saved: %s", id, exc)
        ...
        limiter.recovery(log, "messages are saved again")  # once it works again
    """

    __slots__ = ("_quiet_until", "_suppressed", "window")

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._quiet_until = -math.inf
        self._suppressed = 0

    def hit(self, now: float) -> int | None:
        """One more failure at ``now``. ``None``: stay quiet about it. Otherwise log it,
        with the returned number of failures left out since the last line logged (0: none)."""
        if now < self._quiet_until:
            self._suppressed += 1
            return None
        left_out, self._suppressed = self._suppressed, 0
        self._quiet_until = now + self.window
        return left_out

    @property
    def failing(self) -> bool:
        """Whether a failure was seen since the last :meth:`recovered`."""
        return self._quiet_until != -math.inf

    def recovered(self) -> int:
        """The failures stopped: return how many were left out and not yet reported, and
        start afresh (the next failure is logged at once)."""
        left_out, self._suppressed = self._suppressed, 0
        self._quiet_until = -math.inf
        return left_out

    def more_text(self, left_out: int) -> str:
        """`` (and N more like it in the last W s)`` for a line :meth:`hit` let through."""
        if not left_out:
            return ""
        return f" (and {left_out} more like it in the last {self.window:g} s)"

    def error(self, log: logging.Logger, now: float, msg: str, *args: object) -> None:
        """Log ``msg % args`` as an error if :meth:`hit` lets it through, with how many
        like it were left out since the last line."""
        left_out = self.hit(now)
        if left_out is not None:
            log.error(msg + "%s", *args, self.more_text(left_out))

    def recovery(self, log: logging.Logger, msg: str, *args: object) -> None:
        """After a success: if failures were seen, log ``msg % args`` as a warning with how
        many were not logged, and start afresh (see :meth:`recovered`)."""
        if self.failing:
            log.warning(msg + " (%d more failures not logged)", *args, self.recovered())
