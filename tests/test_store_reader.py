"""The store's batched reads (``trio_chat/store/reader.py``): many reads waiting at once run
in few worker thread jobs, each gets its own answer or its own error, a cancelled caller
costs nothing, and a store that closes serves what was queued and refuses what comes after.

On a real database file in ``tmp_path``; every wait bounded with ``trio.fail_after``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_chat.store import AccountExists, Store, StoredMessage, StoreError
from trio_chat.store.reader import Reader

TIMEOUT = 10.0


def msg(id: int, room: str) -> StoredMessage:
    return StoredMessage(id=id, ts=1_700_000_000.0 + id, room=room, sender="bob", text=f"m{id}")


async def test_reads_waiting_together_share_thread_jobs_and_each_gets_its_own_page(
    tmp_path: Path,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            await store.append_many([msg(i, f"#r{i % 20}") for i in range(1, 401)])
            await store.plugin_put("ns", "alice", '"a"')
            pages: dict[int, list[int]] = {}
            values: dict[str, str | None] = {}

            async def page(n: int) -> None:
                room = f"#r{n % 20}"
                got = await store.history(room, after=n, limit=5)
                pages[n] = [m.id for m in got]

            async def lookup(key: str) -> None:
                values[key] = await store.plugin_get("ns", key)

            async with trio.open_nursery() as nursery:
                for n in range(1, 301):
                    nursery.start_soon(page, n)
                for key in ("alice", "Alice", "bob"):
                    nursery.start_soon(lookup, key)
            reads, jobs = store._reads.reads, store._reads.jobs
    for n in range(1, 301):
        assert pages[n] == [i for i in range(n + 1, 401) if i % 20 == n % 20][:5], n
    assert values == {"alice": '"a"', "Alice": None, "bob": None}
    assert reads == 303
    # Two readers: the first two reads start a job each, the rest wait and go together.
    assert jobs <= 10, (reads, jobs)


async def test_a_failing_read_fails_alone(tmp_path: Path) -> None:
    def broken(conn: sqlite3.Connection) -> object:
        return conn.execute("SELECT * FROM no_such_table").fetchall()

    def wrong(conn: sqlite3.Connection) -> object:
        raise ValueError("not a store error")

    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            await store.append(msg(1, "#a"))
            outcome: dict[str, object] = {}

            async def run(name: str, call: object) -> None:
                try:
                    outcome[name] = await call  # type: ignore[misc]
                except Exception as exc:
                    outcome[name] = exc

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, "broken", store._read(broken))
                nursery.start_soon(run, "wrong", store._read(wrong))
                nursery.start_soon(run, "good", store.history("#a"))
                nursery.start_soon(run, "none", store.plugin_get("ns", "nobody"))
    assert isinstance(outcome["broken"], StoreError)
    assert isinstance(outcome["broken"].__cause__, sqlite3.OperationalError)
    assert isinstance(outcome["wrong"], ValueError)
    good = outcome["good"]
    assert isinstance(good, list) and [m.id for m in good] == [1]
    assert outcome["none"] is None


async def test_a_cancelled_reader_returns_at_once_and_its_read_is_skipped(tmp_path: Path) -> None:
    """While a read runs, one queued behind it is cancelled: its caller is back at once,
    and the query never runs."""
    started = trio.Event()
    release = trio.Event()
    token = trio.lowlevel.current_trio_token()
    ran: list[str] = []

    def slow(conn: sqlite3.Connection) -> int:
        token.run_sync_soon(started.set)
        # Block the only reader until the test lets it go.
        trio.from_thread.run(release.wait, trio_token=token)
        ran.append("slow")
        return 1

    def skipped(conn: sqlite3.Connection) -> int:
        ran.append("skipped")
        return 2

    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db", readers=1) as store:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store._read, slow)
                await started.wait()
                with trio.move_on_after(0.05) as scope:
                    await store._read(skipped)
                assert scope.cancelled_caught
                release.set()
            assert await store._read(lambda conn: 3) == 3
    assert ran == ["slow"]


async def test_reads_queued_at_close_are_served_and_later_ones_refused(tmp_path: Path) -> None:
    results: list[object] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as outside:
            async with Store.open(tmp_path / "chat.db") as store:
                await store.append(msg(1, "#a"))

                async def read_late() -> None:
                    results.append([m.id for m in await store.history("#a")])

                for _ in range(5):
                    outside.start_soon(read_late)
                await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(StoreError, match="closed"):
                await store.history("#a")
    assert results == [[1]] * 5


async def test_a_reader_needs_a_connection() -> None:
    with pytest.raises(ValueError):
        Reader(":memory:", [], trio.CapacityLimiter(1))


async def test_in_memory_reads_run_between_the_writers_transactions() -> None:
    with trio.fail_after(TIMEOUT):
        async with Store.open(":memory:") as store:
            async with trio.open_nursery() as nursery:
                for i in range(1, 51):
                    nursery.start_soon(store.append, msg(i, "#a"))
                    nursery.start_soon(store.history, "#a")
            assert [m.id for m in await store.history("#a", limit=100)] == list(range(1, 51))


async def test_whether_a_nick_is_registered_is_known_without_a_read(tmp_path: Path) -> None:
    """Asked at every guest's login: answered from the keys read at open, kept up to date."""
    path = tmp_path / "chat.db"
    with trio.fail_after(TIMEOUT):
        async with Store.open(path) as store:
            await store.create_account("Alice", "secret")
        async with Store.open(path) as store:
            assert await store.account_exists("ALICE")
            assert not await store.account_exists("bob")
            with pytest.raises(AccountExists):
                await store.create_account("alice", "other")
            await store.create_account("Bob", "secret")
            assert await store.account_exists("bob")
            assert store._reads.reads == 0
            assert await store.verify_password("bob", "secret")  # the hash is read
            assert store._reads.reads == 1
        with pytest.raises(StoreError, match="closed"):
            await store.account_exists("bob")
