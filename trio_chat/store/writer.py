"""The store's single writer: one task, one thread at a time, batched commits.

Why one writer: SQLite takes one write transaction at a time anyway, and a message is only
acknowledged once it is committed, so the fastest safe way is to commit whatever is waiting
together. Here is everything about that, apart from what is written (the store builds
the items) and when (the store's open and close call :meth:`Writer.run`, :meth:`Writer.stop`
and :meth:`Writer.close`):

* Every write (messages, accounts, pruning) is a :class:`WriteItem` queued for one
  writing thread of the writer's own (a :class:`~trio_chat.store.lane.Lane`, run by
  :meth:`Writer.run`), which takes everything waiting (up to ``batch_max`` items), writes
  it in one transaction, and hands it back to the loop thread, which wakes each waiting
  caller. The thread takes a write as soon as it can have the GIL, even while the loop
  is busy fanning out (see :mod:`.lane` for why not a ``trio.to_thread`` job per batch).
* The queue is bounded: when the disk falls behind, :meth:`Writer.submit` waits
  (backpressure) instead of letting memory grow.
* The search index is not written by the commits: an indexing job (:meth:`Writer.index_item`)
  indexes the lines above its mark in one statement, on this same writer, so it is ordered
  with the commits. The store asks for one every half second while lines wait, sooner when
  thousands do, and before every search.
* On close the queued writes are flushed, shielded from cancellation but bounded by
  ``close_timeout``; callers still waiting after that get :class:`StoreError`.

A commit that has started in its worker thread is never abandoned on cancellation: it
finishes (or fails) and its callers are told which.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from ..protocol import MessageChange, MessageDeleted
from .health import StoreStats
from .lane import Lane
from .records import Row, StoreError, store_error
from .sqlite import (
    INDEX_BATCH,
    INDEX_LINES_SQL,
    belongs_to_one_message,
    empty_log,
    index_waiting_lines,
    is_database_fault,
    rollback,
    write_statements,
)

log = logging.getLogger("trio_chat.store")


@dataclass(eq=False, slots=True)
class WriteItem:
    """One item on the writer's channel: messages to insert, or a job to run."""

    ids: tuple[int, ...] = ()  # of the messages to insert
    statements: list[tuple[str, list[object]]] = field(default_factory=list)  # inserting them
    job: Callable[[sqlite3.Connection], object] | None = None
    #: Whether the job runs in a transaction of its own (a checkpoint cannot).
    transaction: bool = True
    done: trio.Event = field(default_factory=trio.Event)
    result: object = None
    error: BaseException | None = None
    #: Set by the writer thread once it has recorded a result or an error.
    finished: bool = False
    #: Called in the writer thread with the job's result once its transaction committed.
    committed: Callable[[object], None] | None = None
    #: Whether the messages' statements delete a message's text: once they are committed,
    #: the write-ahead log is emptied of the old pages (:func:`.sqlite.empty_log`).
    erases: bool = False


def message_item(rows: Sequence[Row | MessageChange]) -> WriteItem:
    """A writer item for ``rows`` (and changes of messages among them, in id order), its
    statements made here, by the caller.

    On the event loop thread on purpose: the writer thread then holds the GIL only to hand
    a few statements to SQLite, instead of building rows while the loop thread waits.
    """
    ids = tuple(row[0] if type(row) is tuple else row.id for row in rows)  # type: ignore[union-attr]
    erases = MessageDeleted in map(type, rows)  # (in C: the lines of a batch are many)
    return WriteItem(ids=ids, statements=write_statements(rows), erases=erases)


class Commit:
    """Messages handed to the writer by :meth:`Store.append_rows_nowait
    <trio_chat.store.Store.append_rows_nowait>`."""

    __slots__ = ("_item",)

    def __init__(self, item: WriteItem) -> None:
        self._item = item

    async def wait(self) -> None:
        """Return once the messages are committed; raise :class:`StoreError` if they were
        not (all of them: one transaction)."""
        await self._item.done.wait()
        if self._item.error is not None:
            raise self._item.error

    def committed(self) -> bool:
        """Whether the messages are committed already (False while they wait, and if
        they failed: :meth:`wait` says how)."""
        return self._item.done.is_set() and self._item.error is None


class Writer:
    """Runs :class:`WriteItem` s on ``conn``, in batches, one transaction at a time.

    Counts what it commits and fails in ``stats``, and keeps :attr:`last_id`, the highest
    message id committed (or noted by the store), up to date, and :attr:`indexed_to`, the
    search index's mark, with :attr:`unindexed` (whether lines may wait above it).
    """

    #: Rows committed since the last indexing job that make :attr:`index_wanted` fire
    #: before the next tick of the store's indexing task.
    INDEX_WHEN_WAITING = 2000

    def __init__(
        self,
        path: str | os.PathLike[str],
        conn: sqlite3.Connection,
        stats: StoreStats,
        *,
        last_id: int,
        batch_max: int,
        close_timeout: float,
        indexed_to: int = 0,
    ) -> None:
        self.path = path
        self.stats = stats
        self.last_id = last_id
        #: The search index's mark (``meta.words_indexed_to``), as committed; written only
        #: in the writer thread.
        self.indexed_to = indexed_to
        #: Whether room lines may wait above :attr:`indexed_to` (True until a job caught up).
        self.unindexed = True
        #: Rows committed since the last indexing job.
        self.waiting = 0
        #: Set once :attr:`waiting` reaches :attr:`INDEX_WHEN_WAITING` (the store's indexing
        #: task replaces it after each wake-up).
        self.index_wanted = trio.Event()
        #: Held by the writing thread around each batch. An in-memory store's reads take it
        #: too (they run on the same connection, between transactions).
        self.conn_lock = threading.Lock()
        #: Set by :meth:`close`: no more writes.
        self.closed = False
        #: Set by :meth:`stop`: no new writes (those queued are still written).
        self._stopping = False
        #: A delete was committed but the log could not be emptied at once (a reader was
        #: in it): the store's next checkpoint empties it (see :meth:`.Store.checkpoint`).
        self.erase_pending = False
        self._conn = conn
        self._close_timeout = close_timeout
        self._lane = Lane(self._write_batch, self._finished, batch_max=batch_max)
        #: Items queued and not yet handed back; :meth:`submit` waits for room above
        #: :attr:`_queue_max` (a batch being written and a whole one waiting behind it).
        self._unfinished = 0
        self._queue_max = 2 * batch_max
        #: Batches handed back so far (whatever they held): whether anything was written.
        self.batches_done = 0
        self._room = trio.Event()
        self._done = trio.Event()

    # ------------------------------------------------------------------------ callers

    async def submit(self, item: WriteItem) -> object:
        """Queue ``item`` (waiting for room) and return its result once it is written;
        raise its error, or :class:`StoreError` once the writer is closed."""
        while True:
            if self.closed or self._stopping:
                raise self._closed_error()
            if self._unfinished < self._queue_max:
                break
            room = self._room
            if room.is_set():
                room = self._room = trio.Event()
            await room.wait()
        self._queue(item)
        # If the caller is cancelled here, the item stays queued and may still be committed:
        # an append that did not return is "maybe stored", never "acknowledged and lost".
        await item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    def submit_nowait(self, item: WriteItem) -> Commit:
        """Queue ``item`` and return at once. Raises ``trio.WouldBlock`` when the queue is
        full, :class:`StoreError` once the writer is closed."""
        if self.closed or self._stopping:
            raise self._closed_error()
        if self._unfinished >= self._queue_max:
            raise trio.WouldBlock
        self._queue(item)
        return Commit(item)

    def _queue(self, item: WriteItem) -> None:
        self._unfinished += 1
        self._lane.put(item)

    def _closed_error(self) -> StoreError:
        return StoreError(f"store {os.fspath(self.path)} is closed")

    # ---------------------------------------------------------------------- lifetime

    async def run(self) -> None:
        """The writer task: run the writing thread until :meth:`stop`."""
        # Shielded: cancelling the server must not drop queued messages. The flush is
        # bounded by stop(), which aborts the thread after close_timeout (a batch begun
        # in SQLite is never abandoned: it ends, or fails when interrupted).
        try:
            with trio.CancelScope(shield=True):
                await self._lane.run()
        finally:
            self._done.set()

    def _finished(self, batch: list[WriteItem]) -> None:
        """In the loop thread, once the writing thread is done with ``batch``: wake its
        callers (and those waiting for room), and the indexing task if it is due."""
        self._unfinished -= len(batch)
        self.batches_done += 1
        self._room.set()
        if self.waiting >= self.INDEX_WHEN_WAITING:
            self.index_wanted.set()
        for item in batch:
            if not item.finished:
                item.error = StoreError(f"store {os.fspath(self.path)}: write interrupted")
            item.done.set()

    async def stop(self) -> None:
        """Take no new writes; wait (at most ``close_timeout``) for :meth:`run` to flush
        what is queued, then stop it."""
        self._stopping = True
        self._room.set()  # callers waiting for room: the store is closing
        self._lane.stop()
        with trio.move_on_after(self._close_timeout, shield=True):
            await self._done.wait()
        if not self._done.is_set():
            log.error(
                "%s: could not flush queued writes within %.1f s; giving up",
                os.fspath(self.path),
                self._close_timeout,
            )
            # Stops a long-running statement. A wait for another process's lock is not
            # interruptible: a batch stuck on one still ends within busy_timeout.
            self._lane.abort()
            self._conn.interrupt()

    def index_item(self) -> WriteItem:
        """A job that indexes the lines waiting above the mark (at most
        :data:`~trio_chat.store.sqlite.INDEX_BATCH` rows) and raises the mark, in one
        transaction; its result is whether it caught up."""
        return WriteItem(job=index_waiting_lines, committed=self._indexed)

    def _indexed(self, result: object) -> None:
        # In the writer thread, right after the job's commit: the next commit already
        # compares its ids with the new mark.
        assert isinstance(result, tuple)
        self.indexed_to, caught_up = result
        if caught_up:
            self.unindexed = False
            self.waiting = 0
        else:
            self.waiting = max(0, self.waiting - INDEX_BATCH)

    def close(self) -> None:
        """Refuse new writes, and fail the callers of writes still queued (after
        :meth:`run` returned: the thread took no more)."""
        self.closed = True
        for item in self._lane.take_left():
            item.error = StoreError(f"store {os.fspath(self.path)} closed before the write")
            item.done.set()

    # ------------------------------------------------------------ in the writer thread

    def _write_batch(self, batch: list[WriteItem]) -> None:
        """In the writer thread: consecutive message items share one transaction."""
        with self.conn_lock:
            self._write_items(batch)

    def _write_items(self, batch: list[WriteItem]) -> None:
        run: list[WriteItem] = []
        for item in batch:
            if item.job is None:
                run.append(item)
                continue
            self._commit_messages(run)
            run = []
            self._run_job(item)
        self._commit_messages(run)

    def _commit_messages(self, items: list[WriteItem]) -> None:
        if not items:
            return
        conn = self._conn
        ids = [message_id for item in items for message_id in item.ids]
        statements = [statement for item in items for statement in item.statements]
        below_mark = bool(ids) and min(ids) <= self.indexed_to
        try:
            if len(statements) == 1 and not below_mark:
                # One statement is a transaction of its own (autocommit): no BEGIN and
                # COMMIT around it. Each call into SQLite gives up the GIL and takes it back,
                # and while the event loop is busy that wait is most of a commit's time
                # (at a steady rate most commits are one INSERT).
                conn.execute(*statements[0])
            else:
                conn.execute("BEGIN IMMEDIATE")
                for sql, params in statements:  # made by the items' callers
                    conn.execute(sql, params)
                if below_mark:
                    # Below the mark (ids committed out of order): the index jobs will
                    # never look there, so these lines are indexed now, as the triggers
                    # expect.
                    low = ",".join([str(i) for i in ids if i <= self.indexed_to])
                    conn.execute(INDEX_LINES_SQL, [f"[{low}]"])
                # meta.last_id is not raised here: at open, the last id is the larger of it
                # and the largest stored id; pruning raises it before deleting (one
                # statement less per commit).
                conn.execute("COMMIT")
        except Exception as exc:
            rollback(conn)
            if len(items) > 1 and belongs_to_one_message(exc):
                for item in items:
                    self._commit_messages([item])
                return
            for item in items:
                doing = "could not save message " + ", ".join(map(str, item.ids))
                if isinstance(exc, sqlite3.Error):
                    item.error = store_error(exc, self.path, doing)
                else:
                    item.error = StoreError(f"{doing}: {exc}")
                item.finished = True
            self.stats.failed += len(ids)
            self.stats.write_failures += len(ids)
            if is_database_fault(exc):
                self.stats.healthy = False
            return
        self.stats.healthy = True
        self.last_id = max(self.last_id, *ids)
        self.unindexed = True
        self.waiting += len(ids)
        self.stats.messages += len(ids)
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(ids))
        for item in items:
            item.finished = True
        if any(item.erases for item in items):
            self._empty_log_after_delete(conn)

    def _empty_log_after_delete(self, conn: sqlite3.Connection) -> None:
        """A delete was committed: empty the log of the old pages now, or leave it to the
        next checkpoint (:attr:`erase_pending`). The delete stands either way: a failure
        here (a full disk during the checkpoint) is logged, never the commit's."""
        try:
            self.erase_pending = not empty_log(conn)
        except sqlite3.Error as exc:
            self.erase_pending = True
            log.warning("%s: could not empty the write-ahead log: %s", os.fspath(self.path), exc)

    def _run_job(self, item: WriteItem) -> None:
        assert item.job is not None
        conn = self._conn
        try:
            if item.transaction:
                conn.execute("BEGIN IMMEDIATE")
            item.result = item.job(conn)
            if item.transaction:
                conn.execute("COMMIT")
            if item.committed is not None:
                item.committed(item.result)
        except sqlite3.Error as exc:
            rollback(conn)
            item.error = store_error(exc, self.path)
            if item.transaction:  # a checkpoint has counters of its own
                self.stats.write_failures += 1
                if is_database_fault(exc):
                    self.stats.healthy = False
        except Exception as exc:
            rollback(conn)
            item.error = exc
        else:
            if item.transaction:
                self.stats.healthy = True
        item.finished = True
