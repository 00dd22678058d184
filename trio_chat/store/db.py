"""The trio-facing store: what callers ask of the database, and its open and close.

Why a facade over two parts: every write goes through one writer task (:mod:`.writer`:
batched commits, backpressure, the flush on close), every read through a few read
connections, and callers should see neither, only "append, then it is committed" and
"history, without stalling the loop". What SQLite does in the worker threads is
:mod:`.sqlite`.

* :meth:`Store.append` returns only once its message is committed, so a server that
  appends first and fans out second never shows a message it could lose on a crash.
* Reads run in worker threads on their own connections (WAL lets readers and the writer
  proceed at once), so neither a long history query nor a slow commit stalls the loop;
  the reads waiting at one moment run together, in one thread job (:mod:`.reader`), so a
  storm of logins costs a thread trip per batch, not per lookup.
* Accounts are rows like messages: created and changed through the writer, looked up
  through the readers; password hashing (:mod:`.accounts`) runs in a few threads of its
  own.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Literal, TypeVar, cast

import trio

from ..names import name_key
from ..protocol import MessageChange
from . import plugin_data, read_markers
from . import search as search_sql
from .accounts import check_password, dummy_hash, hash_password
from .changes import add_reactions
from .health import LogLimiter, StoreStats
from .reader import Reader
from .records import (
    AccountExists,
    Row,
    StoredMessage,
    StoreError,
    private_conversation,
    room_conversation,
    store_error,
)
from .sqlite import (
    COLUMNS,
    account_keys,
    close_all,
    empty_log,
    open_connections,
    passive_checkpoint,
    row_to_message,
    words_indexed_to,
)
from .writer import Commit, WriteItem, Writer, message_item

# Commit and StoreStats are defined beside the writer and the counters, and importable here.
__all__ = ["MAX_HISTORY_LIMIT", "Commit", "Store", "StoreStats"]

log = logging.getLogger("trio_chat.store")

T = TypeVar("T")

#: Largest ``limit`` one history query accepts.
MAX_HISTORY_LIMIT = 10_000


class Store:
    """Chat history and accounts in one SQLite file. Make one with :meth:`open`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        writer: sqlite3.Connection,
        readers: list[sqlite3.Connection],
        *,
        last_id: int,
        batch_max: int,
        close_timeout: float,
        account_keys: set[str] | None = None,
        indexed_to: int = 0,
        checkpointer: sqlite3.Connection | None = None,
    ) -> None:
        self.path = path
        self.stats = StoreStats()
        #: The connection every write goes through (only ever from the writer's thread).
        self._writer = writer
        self._writes = Writer(
            path,
            writer,
            self.stats,
            last_id=last_id,
            batch_max=batch_max,
            close_timeout=close_timeout,
            indexed_to=indexed_to,
        )
        if readers:
            self._reads = Reader(path, readers, trio.CapacityLimiter(len(readers)))
        else:
            # ":memory:": one connection for everything; reads hold the writer's lock so
            # they run between transactions, never inside one.
            self._reads = Reader(
                path, [writer], trio.CapacityLimiter(1), conn_lock=self._writes.conn_lock
            )
        #: The connection checkpoints run on (a file's store), beside the writer: see
        #: :func:`~trio_chat.store.sqlite.passive_checkpoint`.
        self._checkpointer = checkpointer
        self._checkpoint_limiter = trio.CapacityLimiter(1)
        # scrypt takes 16 MiB per call: a few at a time, not one per connected client.
        self._hash_limiter = trio.CapacityLimiter(2)
        #: The name key of every account, read at open and added to as accounts are
        #: created here: whether a nick is registered (asked at every guest's login) is
        #: answered from memory, with no read. Accounts are only ever created through this
        #: store (one server per database file), and never deleted.
        self._account_keys: set[str] = set() if account_keys is None else account_keys

    # ------------------------------------------------------------------------ lifetime

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        batch_max: int = 512,
        synchronous: Literal["normal", "full"] = "normal",
        busy_timeout: float = 2.0,
        close_timeout: float = 10.0,
        readers: int = 2,
        max_size: int | None = None,
        checkpoint_every: float | None = 1.0,
        index_every: float | None = 0.5,
    ) -> AsyncIterator[Store]:
        """Open (creating or upgrading) the database at ``path`` for the block's duration.

        ``":memory:"`` gives a private in-memory database. The file is checked to be a
        trio-chat database and migrated to the current schema in one transaction; a file
        that is locked, unreadable, corrupt, someone else's, or from a newer trio-chat
        raises :class:`StoreError` and is left as it was.

        ``synchronous="normal"`` (WAL) survives a crash of this process with every
        committed message; ``"full"`` also survives power loss, at a cost per batch.
        ``busy_timeout`` bounds how long any statement waits for another process's lock.
        ``max_size`` caps the file (bytes): appends beyond it fail until :meth:`prune`.
        ``readers`` is the number of read connections (concurrent history queries).
        ``checkpoint_every`` (seconds; ``None``: never) runs :meth:`checkpoint` in the
        background after lines were committed, from a connection of its own, and the
        writer's commits then never checkpoint (a copy and a flush to the disk on the way of
        every line behind them); a write-ahead log that cannot be checkpointed is logged and
        counted. ``None`` leaves checkpoints to SQLite's own, made by commits.
        ``index_every`` (seconds; ``None``: only when a search asks) is how often lines
        committed since are indexed for search, sooner when thousands wait (see
        :meth:`index_now`); on exit, what waits is indexed too, within ``close_timeout``.
        On exit, queued writes are flushed for at most ``close_timeout`` seconds (plus up
        to ``busy_timeout`` for a batch already waiting on another process's lock); their
        callers get :class:`StoreError` after that.
        """
        if batch_max < 1 or readers < 1:
            raise ValueError("batch_max and readers must be at least 1")
        if synchronous not in ("normal", "full"):
            raise ValueError("synchronous must be 'normal' or 'full'")
        memory = os.fspath(path) == ":memory:"
        checkpoints_apart = checkpoint_every is not None and not memory
        writer, reader_conns, last_id = await trio.to_thread.run_sync(
            open_connections,
            path,
            memory,
            busy_timeout,
            synchronous,
            0 if memory else readers + 1,  # the last one checkpoints
            max_size,
            checkpoints_apart,
        )
        try:
            keys = await trio.to_thread.run_sync(account_keys, writer, path)
            indexed_to = await trio.to_thread.run_sync(words_indexed_to, writer)
        except BaseException:
            await trio.to_thread.run_sync(close_all, [*reader_conns, writer])
            raise
        store = cls(
            path,
            writer,
            reader_conns[:readers],
            checkpointer=reader_conns[readers] if reader_conns else None,
            last_id=last_id,
            batch_max=batch_max,
            close_timeout=close_timeout,
            account_keys=keys,
            indexed_to=indexed_to,
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store._writes.run)
                nursery.start_soon(store._reads.run)
                checkpoints = trio.CancelScope()
                if checkpoints_apart and checkpoint_every is not None:

                    async def checkpoint_forever(every: float) -> None:
                        with checkpoints:
                            await store._checkpoint_forever(every)

                    nursery.start_soon(checkpoint_forever, checkpoint_every)
                indexing = trio.CancelScope()
                if index_every is not None:
                    nursery.start_soon(store._index_forever, index_every, indexing)
                try:
                    yield store
                finally:
                    checkpoints.cancel()
                    indexing.cancel()
                    try:
                        await store._index_before_close(close_timeout)
                    finally:
                        # (always: the writer's thread runs until told to stop)
                        await store._writes.stop()
                        # Reads queued by now (tasks outside the block) are served before
                        # the readers end and their connections close; each is one short
                        # query.
                        store._reads.stop()
        finally:
            store._writes.close()
            store._reads.close()
            with trio.CancelScope(shield=True):
                # The writer last: the last connection to close checkpoints and removes the WAL.
                await trio.to_thread.run_sync(close_all, [*reader_conns, writer])

    @property
    def last_id(self) -> int:
        """The highest message id ever stored here (0 if none): continue numbering after it.

        Survives restarts and pruning. Kept up to date as messages are committed.
        """
        return self._writes.last_id

    @property
    def _closed(self) -> bool:
        return self._writes.closed

    # ------------------------------------------------------------------------ messages

    async def append(self, record: StoredMessage) -> None:
        """Store one message; returns once it is committed.

        Raises :class:`StoreError` if this message could not be written (disk full, I/O
        error, duplicate id); the store goes on working for later messages.
        """
        await self._writes.submit(message_item((record.row(),)))

    async def append_many(self, records: Sequence[StoredMessage]) -> None:
        """Store several messages in one transaction: all are committed, or none."""
        if records:
            await self._writes.submit(message_item([r.row() for r in records]))

    async def write_many(self, entries: Sequence[Row | MessageChange]) -> None:
        """Store rows and changes of messages (in id order) in one transaction."""
        if entries:
            await self._writes.submit(message_item(entries))

    def append_rows_nowait(self, rows: Sequence[Row | MessageChange]) -> Commit:
        """Queue several messages, as rows (see :func:`~trio_chat.store.records.message_row`),
        for one transaction and return at once; the result's ``wait()`` returns when they
        are committed.

        For a caller that keeps working while the disk does (the publisher takes the next
        batch meanwhile), with no scheduling round spent on handing the batch over. Raises
        ``trio.WouldBlock`` when the writer's queue is full (then :meth:`append_many`
        waits for room), and :class:`StoreError` once the store is closed.
        """
        return self._writes.submit_nowait(message_item(rows))

    async def history(
        self,
        room: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> list[StoredMessage]:
        """Messages of a room (compared by name key), ascending by id.

        * neither bound: the latest ``limit`` messages;
        * ``after``: the first ``limit`` messages with ``id > after`` (fills a gap; page on
          with the last id returned);
        * ``before``: the ``limit`` messages just before ``before`` (pages backwards);
        * both: the first ``limit`` messages strictly between them.
        """
        return await self._conversation(room_conversation(room), before, after, limit)

    async def changed_history(
        self, room: str, *, changed_after: int, before: int | None = None, limit: int = 50
    ) -> list[StoredMessage]:
        """The first ``limit`` messages of ``room`` whose latest change (edit, delete or
        reaction) has an id above ``changed_after`` (and below ``before``), in their
        current state, ordered by that change's id."""
        if not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_HISTORY_LIMIT}")
        sql = (
            f"SELECT {COLUMNS} FROM messages WHERE conv = ? AND changed > ?"
            + (" AND changed < ?" if before is not None else "")
            + " ORDER BY changed LIMIT ?"
        )
        params: list[object] = [room_conversation(room), changed_after]
        if before is not None:
            params.append(before)
        params.append(limit)

        def query(conn: sqlite3.Connection) -> list[StoredMessage]:
            messages = [row_to_message(row) for row in conn.execute(sql, params)]
            add_reactions(conn, messages)
            return messages

        return await self._read(query)

    async def room_message(self, room: str, message_id: int) -> StoredMessage | None:
        """Message ``message_id`` of ``room`` in its current state (reactions included),
        or ``None`` when the room has no such message (a private one is none of it)."""
        sql = f"SELECT {COLUMNS} FROM messages WHERE id = ? AND conv = ? AND room IS NOT NULL"
        params = (message_id, room_conversation(room))

        def query(conn: sqlite3.Connection) -> StoredMessage | None:
            row = conn.execute(sql, params).fetchone()
            if row is None:
                return None
            message = row_to_message(row)
            add_reactions(conn, [message])
            return message

        return await self._read(query)

    async def private_history(
        self,
        account_a: str,
        account_b: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> list[StoredMessage]:
        """Private messages between two accounts, either direction; bounds as
        :meth:`history`. An account is named by its key or its registered name.

        By account, not by nick: the nicks shown in the messages are whatever the two
        used at the time, and a nick says nothing about who holds it today.
        """
        conv = private_conversation(name_key(account_a), name_key(account_b))
        return await self._conversation(conv, before, after, limit)

    async def export_room(self, room: str, *, chunk: int = 1000) -> AsyncIterator[StoredMessage]:
        """Every message of a room, oldest first, read ``chunk`` at a time.

        Nothing is held open between chunks, so stopping early is fine. Messages committed
        during the export appear if their id is above the last one yielded.
        """
        after = 0
        while True:
            page = await self.history(room, after=after, limit=chunk)
            for message in page:
                yield message
            if len(page) < chunk:
                return
            after = page[-1].id

    async def prune(self, older_than: float, *, chunk: int = 5000) -> int:
        """Delete messages with ``ts < older_than`` (seconds since the epoch); return how many.

        Walks the oldest ids, ``chunk`` rows per transaction (so appends are not held up
        behind a big deletion), and stops at the first chunk that is not all old: ids are
        given in time order, so what follows is newer. (A message stamped earlier than one
        before it, after the clock was set back, may wait for a later prune.) Ids keep
        rising afterwards (see :attr:`last_id`).
        """

        def delete(conn: sqlite3.Connection) -> int:
            # The high-water mark first: the newest messages may be among those deleted.
            conn.execute(
                "UPDATE meta SET value = max(value, (SELECT coalesce(max(id), 0) FROM messages))"
                " WHERE key = 'last_id'"
            )
            old = "SELECT id FROM (SELECT id, ts FROM messages ORDER BY id LIMIT ?) WHERE ts < ?"
            # Their reactions first, while the subquery still finds them.
            conn.execute(f"DELETE FROM reactions WHERE message_id IN ({old})", (chunk, older_than))
            cursor = conn.execute(f"DELETE FROM messages WHERE id IN ({old})", (chunk, older_than))
            return cursor.rowcount

        total = 0
        while True:
            deleted = await self._writes.submit(WriteItem(job=delete))
            assert isinstance(deleted, int)
            total += deleted
            if deleted < chunk:
                return total

    async def checkpoint(self) -> int:
        """Copy what the write-ahead log holds into the database (a passive checkpoint: it
        never waits for readers); return the frames left in the log (0 when it caught up).

        SQLite also checkpoints by itself as commits go, but says nothing when that fails
        (a full disk) or cannot finish: the log then grows without bound, unseen. This
        makes it seen: the result is kept in :attr:`stats` (``wal_frames``), and a failure
        counts in ``checkpoint_failures`` and raises :class:`StoreError`.

        If a delete's commit could not empty the log (a reader was in it), this empties it
        first, so a deleted text is gone from the log by the next checkpoint at the latest.
        """
        writes = self._writes

        def erase_then_checkpoint(conn: sqlite3.Connection) -> tuple[int, int, int]:
            if writes.erase_pending:  # in the writer thread, as every write
                writes.erase_pending = not empty_log(conn)
            return passive_checkpoint(conn)

        try:
            if writes.erase_pending or self._checkpointer is None:
                item = WriteItem(job=erase_then_checkpoint, transaction=False)
                result = await writes.submit(item)
            else:
                result = await self._checkpoint_apart(self._checkpointer)
        except StoreError:
            self.stats.checkpoint_failures += 1
            raise
        assert isinstance(result, tuple)
        _, frames, copied = result
        self.stats.wal_frames = max(0, frames - copied)  # -1, -1 when not in WAL mode
        return self.stats.wal_frames

    async def _checkpoint_apart(self, conn: sqlite3.Connection) -> tuple[int, int, int]:
        """A passive checkpoint on the checkpointer's connection, in a worker thread."""
        try:
            return await trio.to_thread.run_sync(
                passive_checkpoint, conn, limiter=self._checkpoint_limiter
            )
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from exc

    async def _checkpoint_forever(self, every: float) -> None:
        """Every ``every`` seconds in which something was committed (or while frames or a
        delete's old pages are left in the log, or checkpoints fail), :meth:`checkpoint`
        and say how it went."""
        limiter = LogLimiter(window=max(every, 10.0))
        seen = -1
        while True:
            await trio.sleep(every)
            written = self._writes.batches_done
            if written == seen and not (
                self.stats.wal_frames or self._writes.erase_pending or limiter.failing
            ):
                continue
            seen = written
            await self._checkpoint_and_report(limiter)

    async def _checkpoint_and_report(self, limiter: LogLimiter) -> None:
        """One :meth:`checkpoint`; a failure is logged once per run (``limiter``), and the
        first success after one says that it works again."""
        try:
            await self.checkpoint()
        except StoreError as exc:
            limiter.error(
                log,
                trio.current_time(),
                "WAL checkpoint failed; the write-ahead log of %s keeps growing: %s",
                os.fspath(self.path),
                exc,
            )
        else:
            limiter.recovery(log, "WAL checkpoint of %s works again", os.fspath(self.path))

    async def index_now(self) -> None:
        """Index for search every room line committed before this call (returns at once
        when none waits; raises :class:`StoreError` if an indexing job fails).

        Lines are indexed after their commit, in batches, by jobs on the writer (ordered
        with the commits, so nothing committed is missed); searches call this first, so
        they see every line committed before they were asked.
        """
        writes = self._writes
        target = writes.last_id
        while writes.unindexed and writes.indexed_to < target:
            await writes.submit(writes.index_item())

    async def _index_forever(self, every: float, scope: trio.CancelScope) -> None:
        """Index what waits every ``every`` seconds, or as soon as thousands wait."""
        writes = self._writes
        limiter = LogLimiter(window=10.0)
        with scope:
            while True:
                with trio.move_on_after(every):
                    await writes.index_wanted.wait()
                writes.index_wanted = trio.Event()
                if not writes.unindexed:
                    continue
                try:
                    await writes.submit(writes.index_item())
                except StoreError as exc:  # counted in stats by the writer; tried again
                    limiter.error(log, trio.current_time(), "search indexing failed: %s", exc)

    async def _index_before_close(self, close_timeout: float) -> None:
        """On close, index what waits (bounded by ``close_timeout``), so a file closed
        cleanly is fully indexed; what is left is indexed after the next open anyway."""
        with trio.move_on_after(close_timeout, shield=True):
            try:
                await self.index_now()
            except StoreError as exc:
                log.warning("%s: lines left unindexed at close: %s", os.fspath(self.path), exc)

    async def _conversation(
        self, conv: str, before: int | None, after: int | None, limit: int
    ) -> list[StoredMessage]:
        if not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_HISTORY_LIMIT}")
        where = "conv = ?"
        params: list[object] = [conv]
        if after is not None:
            where += " AND id > ?"
            params.append(after)
        if before is not None:
            where += " AND id < ?"
            params.append(before)
        params.append(limit)
        if after is not None:
            sql = f"SELECT {COLUMNS} FROM messages WHERE {where} ORDER BY id LIMIT ?"
        else:
            # Newest `limit` first (walking the index backwards), then put back in order.
            sql = (
                f"SELECT * FROM (SELECT {COLUMNS} FROM messages WHERE {where}"
                " ORDER BY id DESC LIMIT ?) ORDER BY id"
            )

        def query(conn: sqlite3.Connection) -> list[StoredMessage]:
            messages = [row_to_message(row) for row in conn.execute(sql, params)]
            add_reactions(conn, messages)
            return messages

        return await self._read(query)

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query`` on a read connection, in a worker thread, batched with the other
        reads waiting (see :mod:`.reader`); its SQLite errors raise :class:`StoreError`."""
        if self._closed:
            raise StoreError(f"store {os.fspath(self.path)} is closed")
        return cast(T, await self._reads.submit(query))

    # -------------------------------------------------------------------------- search

    async def search(
        self, rooms: Sequence[str], match: str, *, before: int, limit: int
    ) -> list[StoredMessage]:
        """Up to ``limit`` lines of ``rooms`` (compared by name key) that the FTS5 query
        ``match`` finds (make it with :func:`~trio_chat.store.search.match_all`: a user's
        words are never query syntax), with ids below ``before``, newest first. Private
        messages are never found; nor are deleted lines (their text is empty)."""
        if not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_HISTORY_LIMIT}")
        await self.index_now()
        query = functools.partial(
            search_sql.search,
            match=match,
            conversations=[room_conversation(room) for room in rooms],
            before=before,
            limit=limit,
        )
        return await self._read(query)

    async def lines_naming(
        self,
        rooms: Sequence[str],
        *,
        match: str | None,
        keep: Callable[[StoredMessage], bool],
        before: int,
        limit: int,
        candidates: int = 1000,
        scan_latest: int = 0,
    ) -> list[StoredMessage]:
        """Up to ``limit`` lines of ``rooms`` below ``before`` that ``keep`` (called in the
        reading thread) says yes to, newest first; see
        :func:`~trio_chat.store.search.lines_naming` for which lines it is asked about."""
        await self.index_now()
        query = functools.partial(
            search_sql.lines_naming,
            match=match,
            conversations=[room_conversation(room) for room in rooms],
            before=before,
            limit=limit,
            keep=keep,
            candidates=candidates,
            scan_latest=scan_latest,
        )
        return await self._read(query)

    # ------------------------------------------------------------------------ accounts

    async def create_account(self, nick_key: str, password: str) -> None:
        """Register ``nick_key`` with a password. Raises :class:`AccountExists`, or
        :class:`ValueError` for an empty or overlong password."""
        key = name_key(nick_key)
        encoded = await trio.to_thread.run_sync(hash_password, password, limiter=self._hash_limiter)
        now = time.time()

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO accounts (nick_key, password_hash, created, changed)"
                    " VALUES (?, ?, ?, ?)",
                    (key, encoded, now, now),
                )
            except sqlite3.IntegrityError:
                raise AccountExists(f"the name {nick_key!r} is already registered") from None

        try:
            await self._writes.submit(WriteItem(job=insert))
        except AccountExists:
            self._account_keys.add(key)
            raise
        self._account_keys.add(key)

    async def note_last_id(self, last_id: int) -> None:
        """Raise the stored id high-water mark to ``last_id``.

        The server numbers joins and leaves too, which are not stored; noting the last id it
        gave out (at shutdown) keeps ids rising across restarts for every event.
        """

        def update(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'last_id'", (last_id,))

        await self._writes.submit(WriteItem(job=update))
        self._writes.last_id = max(self._writes.last_id, last_id)

    async def account_exists(self, nick_key: str) -> bool:
        """Whether ``nick_key`` (a name, compared by key) is registered (see
        :meth:`account_exists_nowait`)."""
        return self.account_exists_nowait(nick_key)

    def account_exists_nowait(self, nick_key: str) -> bool:
        """:meth:`account_exists`, answered at once: the keys are kept in memory, so no
        read, no worker thread, not even a coroutine (a storm of guests logging in asks
        it of every one: see :meth:`~trio_chat.logins.Logins.is_registered_nowait`)."""
        if self._closed:
            raise StoreError(f"store {os.fspath(self.path)} is closed")
        return name_key(nick_key) in self._account_keys

    async def verify_password(self, nick_key: str, password: str) -> bool:
        """Whether the account exists and ``password`` is its password.

        Takes as long for a missing account as for a wrong password (no enumeration by
        timing); scrypt runs in a worker thread.
        """
        stored = await self._password_hash(name_key(nick_key))
        return await self._check(password, stored)

    async def change_password(self, nick_key: str, old: str, new: str) -> bool:
        """Replace the password if ``old`` is right; False if it is not (or no account).

        Raises :class:`ValueError` if ``new`` is empty or overlong.
        """
        key = name_key(nick_key)
        stored = await self._password_hash(key)
        if not await self._check(old, stored):
            return False
        encoded = await trio.to_thread.run_sync(hash_password, new, limiter=self._hash_limiter)
        now = time.time()

        def update(conn: sqlite3.Connection) -> bool:
            # Only if the hash is still the one checked: two concurrent changes cannot both
            # win with the same old password.
            cursor = conn.execute(
                "UPDATE accounts SET password_hash = ?, changed = ?"
                " WHERE nick_key = ? AND password_hash = ?",
                (encoded, now, key, stored),
            )
            return cursor.rowcount == 1

        return bool(await self._writes.submit(WriteItem(job=update)))

    async def all_accounts(self) -> list[tuple[str, str, float, float]]:
        """Every account as ``(name key, password hash, created, changed)``, by key: what a
        node hands over when its accounts move to the broker (see
        :meth:`~trio_chat.broker.accounts.RedisAccounts.copy_in`)."""

        def query(conn: sqlite3.Connection) -> list[tuple[str, str, float, float]]:
            rows = conn.execute(
                "SELECT nick_key, password_hash, created, changed FROM accounts ORDER BY nick_key"
            )
            return [(str(k), str(h), float(c), float(d)) for k, h, c, d in rows]

        return await self._read(query)

    async def _password_hash(self, key: str) -> str | None:
        def query(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT password_hash FROM accounts WHERE nick_key = ?", (key,)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._read(query)

    async def _check(self, password: str, stored: str | None) -> bool:
        def check() -> bool:
            matches = check_password(password, stored if stored is not None else dummy_hash())
            return matches and stored is not None

        return await trio.to_thread.run_sync(check, limiter=self._hash_limiter)

    # --------------------------------------------------------------------- plugin data

    async def plugin_get(self, namespace: str, key: str) -> str | None:
        """The JSON text stored under ``key`` in a plugin's ``namespace`` (``None``: none)."""
        return await self._read(functools.partial(plugin_data.get, namespace=namespace, key=key))

    async def plugin_put(self, namespace: str, key: str, value: str) -> None:
        """Store JSON text under ``key`` (replacing what was there); returns once committed."""
        job = functools.partial(plugin_data.put, namespace=namespace, key=key, value=value)
        await self._writes.submit(WriteItem(job=job))

    async def plugin_delete(self, namespace: str, key: str) -> bool:
        """Delete ``key``; whether it was there. Returns once committed."""
        job = functools.partial(plugin_data.delete, namespace=namespace, key=key)
        return bool(await self._writes.submit(WriteItem(job=job)))

    async def plugin_items(
        self, namespace: str, prefix: str, after: str | None, limit: int
    ) -> list[tuple[str, str]]:
        """Up to ``limit`` ``(key, JSON text)`` of ``namespace`` starting with ``prefix``
        (after ``after``, if given), in key order."""
        query = functools.partial(
            plugin_data.items, namespace=namespace, prefix=prefix, after=after, limit=limit
        )
        return await self._read(query)

    # --------------------------------------------------------------------- read markers

    async def read_markers(self, account: str) -> list[tuple[str, str, int]]:
        """Every read marker of ``account``: ``(room key, room name, message id)``."""
        return await self._read(functools.partial(read_markers.of_account, account=account))

    async def advance_read_marker(
        self, account: str, room_key: str, room: str, message_id: int
    ) -> None:
        """Move ``account``'s read marker in ``room`` forward to ``message_id`` (a marker
        further on already stays); returns once committed."""
        job = functools.partial(
            read_markers.advance, account=account, room_key=room_key, room=room, marker=message_id
        )
        await self._writes.submit(WriteItem(job=job))

    async def all_read_markers(self) -> list[tuple[str, str, str, int]]:
        """Every read marker as ``(account, room key, room name, message id)``: what a node
        hands over when its markers move to the broker (see
        :func:`~trio_chat.broker.markers.move_in`)."""
        return await self._read(read_markers.every_marker)
