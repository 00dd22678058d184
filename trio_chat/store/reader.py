"""The store's readers: the reads waiting at one moment run together, in one worker thread job.

Why batch reads: when thousands of users log back in at once (a restart), each asks for
an account lookup and a history page or two, every one a short query. Run one by one, each
cost a trip to a worker thread and back (a wake-up of the thread, the GIL handed over and
back, trio naming the thread for the job and naming it back), several times what the
query itself costs. Here every read is a :class:`ReadItem` on one channel; a reader task
takes everything waiting (up to ``batch_max``) and runs it in one ``trio.to_thread``
job, so a storm costs a thread trip per batch, not per query, and a lone read costs what it
did.

* One reader task per read connection (WAL lets them run beside the writer and each
  other), all taking from the same channel: a long query (an export) holds up only the
  reads in its own batch; the next ones go to the other reader.
* A caller cancelled while its read waits is gone at once; its read is skipped if it has
  not started (a read changes nothing, so there is nothing to finish).
* On close the readers serve what is queued and stop; a read queued after that gets
  :class:`~trio_chat.store.records.StoreError`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from .records import StoreError, store_error

#: Most reads one worker thread job runs. Bounds how long the last of a batch waits behind
#: the others (each is one short indexed query as a rule).
BATCH_MAX = 256
#: Reads that may wait at once before callers wait to queue theirs (backpressure).
QUEUE_MAX = 4096


@dataclass(eq=False, slots=True)
class ReadItem:
    """One read on the readers' channel: a query to run on a read connection."""

    query: Callable[[sqlite3.Connection], object]
    done: trio.Event = field(default_factory=trio.Event)
    result: object = None
    error: BaseException | None = None
    #: Set when the caller stopped waiting: the reader skips it if it has not started.
    abandoned: bool = False
    #: Set by the worker thread once it has recorded a result or an error.
    finished: bool = False


def run_batch(
    conn: sqlite3.Connection, batch: list[ReadItem], path: str | os.PathLike[str]
) -> None:
    """In a worker thread: run each read of ``batch`` on ``conn``, recording its result or
    its error (an SQLite error as :class:`StoreError`); one failing read fails no other."""
    for item in batch:
        if item.abandoned:
            continue
        try:
            item.result = item.query(conn)
        except sqlite3.Error as exc:
            error = store_error(exc, path)
            error.__cause__ = exc
            item.error = error
        except Exception as exc:
            item.error = exc
        item.finished = True


class Reader:
    """Runs :class:`ReadItem` s on the read connections, in batches (see the module's doc).

    ``limiter`` bounds the worker threads running reads: one per connection. An in-memory
    store's one connection is the writer's: its reads hold ``conn_lock``, the lock the
    writing thread holds around each batch, so a read runs between transactions, never
    inside one.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        conns: list[sqlite3.Connection],
        limiter: trio.CapacityLimiter,
        *,
        batch_max: int = BATCH_MAX,
        conn_lock: threading.Lock | None = None,
    ) -> None:
        if not conns or batch_max < 1:
            raise ValueError("a reader needs a connection and batch_max of at least 1")
        self.path = path
        self._conns = conns
        self._limiter = limiter
        self._conn_lock = conn_lock
        self._batch_max = batch_max
        self._send, self._receive = trio.open_memory_channel[ReadItem](QUEUE_MAX)
        #: Reads run so far, and the worker thread jobs they took (for tests and metrics).
        self.reads = 0
        self.jobs = 0

    async def submit(self, query: Callable[[sqlite3.Connection], object]) -> object:
        """Queue ``query`` (waiting for room) and return its result once it ran; raise its
        error, or :class:`StoreError` once the readers are stopped."""
        item = ReadItem(query)
        try:
            await self._send.send(item)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise self._closed_error() from None
        try:
            await item.done.wait()
        except BaseException:
            item.abandoned = True
            raise
        if item.error is not None:
            raise item.error
        return item.result

    def _closed_error(self) -> StoreError:
        return StoreError(f"store {os.fspath(self.path)} is closed")

    # ---------------------------------------------------------------------- lifetime

    async def run(self) -> None:
        """The reader tasks, one per connection, until :meth:`stop` and the queue is empty."""
        async with trio.open_nursery() as nursery:
            for conn in self._conns:
                nursery.start_soon(self._serve, conn)

    async def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            try:
                first = await self._receive.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
            batch = [first]
            while len(batch) < self._batch_max:
                try:
                    batch.append(self._receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
            try:
                await trio.to_thread.run_sync(self._run_batch, conn, batch, limiter=self._limiter)
            finally:
                for item in batch:
                    if not item.finished and not item.abandoned:
                        # Not run: the job never started (this task was cancelled first).
                        item.error = StoreError(f"store {os.fspath(self.path)}: read interrupted")
                    item.done.set()
            self.reads += len(batch)
            self.jobs += 1

    def _run_batch(self, conn: sqlite3.Connection, batch: list[ReadItem]) -> None:
        with self._conn_lock or contextlib.nullcontext():
            run_batch(conn, batch, self.path)

    def stop(self) -> None:
        """Take no new reads; the reader tasks serve what is queued, then end."""
        self._send.close()

    def close(self) -> None:
        """Fail the callers of reads still queued (the reader tasks were cancelled)."""
        self._send.close()
        while True:
            try:
                item = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            item.error = StoreError(f"store {os.fspath(self.path)} closed before the read")
            item.done.set()
