"""The SQLite store: history, batching, durability, migrations, refusals, I/O errors.

Every test uses a real database file in ``tmp_path`` (or ``:memory:`` where that is the
point) and bounds its waits with ``trio.fail_after``.
"""

from __future__ import annotations

import itertools
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_chat.names import name_key
from trio_chat.store import SCHEMA_VERSION, Store, StoredMessage, StoreError
from trio_chat.store import schema as schema_module

TIMEOUT = 10.0
REPO = Path(__file__).resolve().parents[1]


def msg(
    id: int,
    room: str = "#lobby",
    sender: str = "alice",
    text: str | None = None,
    *,
    ts: float | None = None,
) -> StoredMessage:
    return StoredMessage(
        id=id, ts=1_700_000_000.0 + id if ts is None else ts, room=room, sender=sender,
        text=f"message {id}" if text is None else text,
    )  # fmt: skip


def pm(id: int, sender: str, recipient: str, text: str = "psst") -> StoredMessage:
    """A private message between the accounts named like the two nicks."""
    return StoredMessage(
        id=id, ts=1_700_000_000.0 + id, room=None, sender=sender, text=text, kind="private",
        recipient=recipient, sender_account=name_key(sender), recipient_account=name_key(recipient),
    )  # fmt: skip


def ids(messages: list[StoredMessage]) -> list[int]:
    return [m.id for m in messages]


# The version-1 schema exactly as trio-chat 1 wrote it: a frozen fixture, not imported from
# trio_chat.store.schema, so changing the migrations cannot silently change the test.
V1_SCHEMA = """
PRAGMA application_id = 1952671860;
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    room TEXT,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL,
    recipient TEXT
);
CREATE INDEX messages_room ON messages (room, id);
PRAGMA user_version = 1;
"""


def make_v1_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.executemany(
        "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (1, 1.0, "#Lobby", "Alice", "hello", "say", None),
            (2, 2.0, "#lobby", "bob", "waves", "action", None),
            (3, 3.0, None, "Alice", "secret", "private", "Bob"),
            (4, 4.0, "#other", "carol", "elsewhere", "say", None),
        ],
    )
    conn.commit()
    conn.close()


# ----------------------------------------------------------------------------- basics


async def test_append_then_history_round_trip_preserves_every_field(tmp_path: Path) -> None:
    sent = [
        StoredMessage(id=7, ts=1234.5, room="#lobby", sender="Alice", text="hi ünïcode"),
        StoredMessage(id=8, ts=1235.25, room="#lobby", sender="bob", text="waves", kind="action"),
        pm(9, "Alice", "bob"),
    ]
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            for record in sent:
                await store.append(record)
            assert store.last_id == 9
        async with Store.open(tmp_path / "chat.db") as store:
            assert await store.history("#lobby") == sent[:2]
            assert await store.private_history("alice", "bob") == [sent[2]]
            assert store.last_id == 9
            assert store.stats.messages == 0  # counters are per open


async def test_rooms_are_compared_by_name_key(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            await store.append(msg(1, "#Lobby"))
            await store.append(msg(2, "#LOBBY"))
            await store.append(msg(3, "#elsewhere"))
            assert ids(await store.history("#lobby")) == [1, 2]


async def test_history_without_bounds_is_the_latest_in_ascending_order(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            await store.append_many([msg(i) for i in range(1, 101)])
            assert ids(await store.history("#lobby", limit=5)) == [96, 97, 98, 99, 100]
            assert await store.history("#nowhere") == []
            with pytest.raises(ValueError, match="limit"):
                await store.history("#lobby", limit=0)


async def test_before_pages_backwards_with_nothing_missing_or_repeated(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            # Other rooms' messages take ids in between, as they do on a live server.
            await store.append_many(
                [msg(i, "#lobby" if i % 3 else "#other") for i in range(1, 301)]
            )
            expected = [i for i in range(1, 301) if i % 3]
            pages: list[list[int]] = []
            before: int | None = None
            while True:
                page = ids(await store.history("#lobby", before=before, limit=30))
                if not page:
                    break
                assert page == sorted(page)
                pages.append(page)
                before = page[0]
            assert [i for page in reversed(pages) for i in page] == expected
            assert ids(await store.history("#lobby", before=5, limit=50)) == [1, 2, 4]


async def test_after_gives_exactly_the_gap(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            await store.append_many([msg(i, "#lobby" if i % 2 else "#other") for i in range(1, 61)])
            seen = [1, 3, 5, 7, 9]  # a client that disconnected after id 9
            got: list[int] = []
            after = seen[-1]
            while page := ids(await store.history("#lobby", after=after, limit=7)):
                got += page
                after = page[-1]
            assert got == [i for i in range(11, 61, 2)]
            assert not set(got) & set(seen)
            assert len(got) == len(set(got))
            # Both bounds: strictly between, oldest first.
            assert ids(await store.history("#lobby", after=9, before=21, limit=3)) == [11, 13, 15]
            assert await store.history("#lobby", after=59) == []


async def test_private_history_shows_one_pair_only(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            await store.append(pm(1, "Alice", "Bob", "a to b"))
            await store.append(pm(2, "bob", "alice", "b to a"))
            await store.append(pm(3, "alice", "carol", "a to c"))
            await store.append(pm(4, "carol", "bob", "c to b"))
            await store.append(msg(5, "#lobby", "alice", "public"))
            await store.append(pm(6, "ALICE", "bob", "again"))
            assert ids(await store.private_history("alice", "bob")) == [1, 2, 6]
            assert ids(await store.private_history("bob", "alice")) == [1, 2, 6]
            assert ids(await store.private_history("alice", "carol")) == [3]
            assert ids(await store.private_history("bob", "carol")) == [4]
            assert ids(await store.private_history("alice", "dave")) == []
            assert ids(await store.private_history("alice", "bob", after=1, limit=1)) == [2]
            assert ids(await store.private_history("alice", "bob", before=6)) == [1, 2]
            assert ids(await store.history("#lobby")) == [5]


def test_stored_message_refuses_inconsistent_records() -> None:
    with pytest.raises(ValueError, match="private"):
        StoredMessage(id=1, ts=0.0, room="#lobby", sender="a", text="x", kind="private")
    with pytest.raises(ValueError, match="room message"):
        StoredMessage(id=1, ts=0.0, room=None, sender="a", text="x")
    with pytest.raises(ValueError, match="positive"):
        msg(0)
    with pytest.raises(ValueError, match="between two accounts"):
        StoredMessage(id=1, ts=0.0, room=None, sender="a", text="x", kind="private", recipient="b")


async def test_memory_database_works_and_is_private(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with Store.open(":memory:") as store:
            await store.append(msg(1))
            await store.append(pm(2, "a", "b"))
            assert ids(await store.history("#lobby")) == [1]
            assert ids(await store.private_history("a", "b")) == [2]
        async with Store.open(":memory:") as store:
            assert await store.history("#lobby") == []
            assert store.last_id == 0


async def test_export_room_yields_every_message_in_order(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            await store.append_many(
                [msg(i, "#lobby" if i % 4 else "#other") for i in range(1, 101)]
            )
            exported = [m async for m in store.export_room("#lobby", chunk=10)]
            assert ids(exported) == [i for i in range(1, 101) if i % 4]
            assert exported[0].to_dict() == {
                "id": 1, "ts": 1_700_000_001.0, "kind": "say", "sender": "alice",
                "text": "message 1", "room": "#lobby",
            }  # fmt: skip


# ------------------------------------------------------------------ batching, ids, prune


async def test_concurrent_appends_are_batched_and_all_stored(tmp_path: Path) -> None:
    tasks, each = 20, 100
    counter = itertools.count(1)
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            started = time.perf_counter()

            async def sender(n: int) -> None:
                for _ in range(each):
                    await store.append(msg(next(counter), text=f"from {n}"))

            async with trio.open_nursery() as nursery:
                for n in range(tasks):
                    nursery.start_soon(sender, n)
            elapsed = time.perf_counter() - started
            assert store.stats.messages == tasks * each
            # One transaction per message would be 2000; batching makes it ~each.
            assert store.stats.batches < tasks * each // 5
            assert store.stats.largest_batch > 1
            assert elapsed < 5.0
            assert ids(await store.history("#lobby", limit=5000)) == list(range(1, 2001))


async def test_a_lone_insert_commits_without_begin_and_commit(tmp_path: Path) -> None:
    """A batch that is one INSERT runs as a transaction of its own (each call into SQLite
    from the writer thread waits for the GIL while the event loop is busy); a batch of
    several statements still runs in one BEGIN ... COMMIT. Both are on disk at once."""
    executed: list[str] = []
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db", index_every=None) as store:
            store._writes._conn.set_trace_callback(executed.append)
            await store.append(msg(1))
            lone = executed[:]
            executed.clear()
            await store.append_many([msg(n) for n in range(2, 2 + 65)])  # two INSERTs: 64 + 1
            several = executed[:]
            seen = sqlite3.connect(tmp_path / "chat.db")  # another reader: committed?
            try:
                count = seen.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            finally:
                seen.close()
    assert [sql.split()[0] for sql in lone] == ["INSERT"]
    words = [sql.split()[0] for sql in several]
    assert words[0] == "BEGIN" and words[-1] == "COMMIT" and words.count("INSERT") == 2
    assert count == 66


async def test_append_many_is_all_or_nothing(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            await store.append(msg(2))
            with pytest.raises(StoreError, match="could not save message 1, 2, 3"):
                await store.append_many([msg(1), msg(2), msg(3)])
            assert ids(await store.history("#lobby")) == [2]


async def test_unstorable_value_fails_that_append_only(tmp_path: Path) -> None:
    outcome: list[str] = []
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            too_big = StoredMessage(id=2**70, ts=0.0, room="#lobby", sender="a", text="x")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store.append, msg(1))
                nursery.start_soon(append_expecting_error, store, too_big, outcome)
                nursery.start_soon(store.append, msg(2))
            assert outcome == ["StoreError"]
            assert ids(await store.history("#lobby")) == [1, 2]


async def test_duplicate_id_fails_that_append_only(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            await store.append(msg(1))
            with pytest.raises(StoreError, match=r"could not save message 1:.*UNIQUE"):
                await store.append(msg(1, text="again"))
            await store.append(msg(2))
            assert [m.text for m in await store.history("#lobby")] == ["message 1", "message 2"]
            assert store.stats.failed == 1


async def test_ids_keep_rising_across_restarts_even_after_pruning(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with trio.fail_after(TIMEOUT):
        async with Store.open(path) as store:
            assert store.last_id == 0
            await store.append_many([msg(i, ts=100.0 + i) for i in range(1, 11)])
            assert store.last_id == 10
        async with Store.open(path) as store:
            assert store.last_id == 10
            assert await store.prune(older_than=1e12) == 10
            assert await store.history("#lobby") == []
        async with Store.open(path) as store:
            assert store.last_id == 10


async def test_prune_deletes_only_older_messages(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            await store.append_many([msg(i, ts=float(i)) for i in range(1, 26)])
            await store.append(pm(26, "a", "b"))  # ts 1_700_000_026
            # Small chunks: pruning walks the table in several transactions.
            assert await store.prune(older_than=21.0, chunk=6) == 20
            assert ids(await store.history("#lobby")) == [21, 22, 23, 24, 25]
            assert ids(await store.private_history("a", "b")) == [26]
            assert await store.prune(older_than=21.0) == 0


# ------------------------------------------------------------------------- durability


CHILD = textwrap.dedent(
    """
    import itertools, sys, time, trio
    from trio_chat.store import Store, StoredMessage

    async def main(path):
        ids = itertools.count(1)
        async with Store.open(path) as store:
            async def writer(n):
                while True:
                    i = next(ids)
                    await store.append(StoredMessage(i, time.time(), "#lobby", f"u{n}", "x"))
                    # Printed only once committed: every id the parent reads is acknowledged.
                    sys.stdout.write(f"{i}\\n")
                    sys.stdout.flush()
            async with trio.open_nursery() as nursery:
                for n in range(8):
                    nursery.start_soon(writer, n)

    trio.run(main, sys.argv[1])
    """
)


async def test_acknowledged_messages_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    wanted = 400
    acked: set[int] = set()
    with trio.fail_after(30):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-c", CHILD, str(path)],
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        assert process.stdout is not None
        buffer = b""
        try:
            while len(acked) < wanted:
                data = await process.stdout.receive_some(65536)
                assert data, f"child exited early with {await process.wait()}"
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                acked.update(int(line) for line in lines)
            # Killed mid-stream: the child is still appending from 8 tasks.
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            assert await process.wait() == -signal.SIGKILL
        # Killed, not closed: the last commits are only in the write-ahead log.
        assert await trio.Path(f"{path}-wal").exists()
        # Acknowledgements printed before the kill still in the pipe count too.
        while data := await process.stdout.receive_some(65536):
            buffer += data
        acked.update(int(line) for line in buffer.split(b"\n") if line)
        await process.stdout.aclose()

        async with Store.open(path) as store:
            stored = set(ids(await store.history("#lobby", limit=10_000)))
            assert acked <= stored, f"lost acknowledged ids: {sorted(acked - stored)[:10]}"
            assert store.last_id >= max(acked)


async def test_cancelled_block_still_flushes_queued_appends(tmp_path: Path) -> None:
    from trio_chat.store.writer import WriteItem

    path = tmp_path / "chat.db"
    acked: list[int] = []
    counter = itertools.count(1)
    gate = threading.Event()  # holds the writer thread inside a batch until set
    writing = trio.Event()
    cancelled = trio.Event()

    def blocker(conn: sqlite3.Connection) -> None:
        trio.from_thread.run_sync(writing.set)
        gate.wait(TIMEOUT)

    async def open_gate_once_everything_waits() -> None:
        await cancelled.wait()
        # The block has unwound as far as it can: the close is waiting for the writer.
        await trio.testing.wait_all_tasks_blocked()
        gate.set()

    # Counted, not timed: the same amount is written however fast the machine is today.
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as outer:
            outer.start_soon(open_gate_once_everything_waits)
            with trio.CancelScope() as cancel:
                async with Store.open(path) as store:

                    async def sender() -> None:
                        while len(acked) < 200:
                            i = next(counter)
                            await store.append(msg(i))
                            acked.append(i)

                    async with trio.open_nursery() as nursery:
                        for _ in range(20):
                            nursery.start_soon(sender)
                    # The writer busy with one batch; these wait on its queue meanwhile.
                    store._writes.submit_nowait(WriteItem(job=blocker))
                    await writing.wait()
                    queued = [next(counter) for _ in range(50)]
                    for i in queued:
                        store.append_rows_nowait([msg(i).row()])
                    cancelled.set()
                    cancel.cancel()
                    await trio.sleep_forever()
            assert cancel.cancelled_caught
        async with Store.open(path) as store:
            stored = {m.id async for m in store.export_room("#lobby")}  # all, however many
        assert set(acked) <= stored
        # Queued when the cancel came: written by the shielded final flush.
        assert set(queued) <= stored
        assert stored == set(acked) | set(queued)
        with pytest.raises(StoreError, match="closed"):
            await store.append(msg(10**9))


# ------------------------------------------------------------------------- migrations


async def test_version_1_database_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    make_v1_database(path)
    with trio.fail_after(TIMEOUT):
        async with Store.open(path) as store:
            lobby = await store.history("#lobby")
            assert [(m.id, m.sender, m.kind) for m in lobby] == [
                (1, "Alice", "say"),
                (2, "bob", "action"),
            ]
            # Private messages kept by nick cannot be given to accounts: version 4 drops them.
            assert await store.private_history("bob", "alice") == []
            assert ids(await store.history("#other")) == [4]
            assert store.last_id == 4
            await store.append(msg(5))
            await store.create_account("alice", "hunter22")  # the table v2 added
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "messages_room" not in indexes and "messages_conv" in indexes
        assert "messages_ts" not in indexes  # v3: pruning walks ids, not times
    finally:
        conn.close()


def database_at(path: Path, version: int) -> sqlite3.Connection:
    """An autocommit connection to a new database at schema ``version`` as it was
    released: the first ``version`` migrations (never edited once released), and the
    version number they leave. For the tests that a store opens it and migrates it on."""
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in schema_module.MIGRATIONS[:version]:
        migration(conn)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


async def test_version_3_private_rows_are_deleted_and_ids_keep_rising(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    conn = database_at(path, 3)
    conn.executemany(
        "INSERT INTO messages (id, ts, room, sender, text, kind, recipient, conv)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (5, 5.0, "#lobby", "alice", "public", "say", None, "r:#lobby"),
            (6, 6.0, None, "alice", "my PIN is 4242", "private", "dave", "p:alice dave"),
            (7, 7.0, None, "alice", "to bob", "private", "bob", "p:alice bob"),
        ],
    )
    conn.executemany(
        "INSERT INTO accounts VALUES (?, 'hash', 1.0, 1.0)", [("alice",), ("bob",), ("dave",)]
    )
    conn.execute("UPDATE meta SET value = 5 WHERE key = 'last_id'")  # behind the newest row
    conn.close()
    with trio.fail_after(TIMEOUT):
        async with Store.open(path) as store:
            assert store.last_id == 7
            assert await store.private_history("alice", "dave") == []
            assert await store.private_history("alice", "bob") == []
            assert [m.text for m in await store.history("#lobby")] == ["public"]
            assert await store.account_exists("dave")  # accounts are kept
            await store.append(pm(8, "alice", "bob", "new"))
            assert [m.text for m in await store.private_history("bob", "alice")] == ["new"]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM messages WHERE kind = 'private'").fetchone() == (
            1,
        )
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        conn.close()


async def test_failed_migration_leaves_the_old_version_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "chat.db"
    make_v1_database(path)
    before = await trio.Path(path).read_bytes()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("simulated failure in migration 3")

    monkeypatch.setattr(schema_module, "MIGRATIONS", (*schema_module.MIGRATIONS, broken))
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with trio.fail_after(TIMEOUT):
        with pytest.raises(StoreError, match="simulated failure"):
            async with Store.open(path):
                pass  # pragma: no cover
    # Versions 2 and the broken 3 ran in one transaction: all of it rolled back.
    assert await trio.Path(path).read_bytes() == before
    monkeypatch.undo()
    with trio.fail_after(TIMEOUT):
        async with Store.open(path) as store:
            assert ids(await store.history("#lobby")) == [1, 2]


# --------------------------------------------------------------------------- refusals


async def expect_refusal(path: Path, match: str, *, busy_timeout: float = 2.0) -> None:
    """Opening ``path`` raises StoreError matching ``match`` and changes no byte of it."""
    before = await trio.Path(path).read_bytes()
    with trio.fail_after(TIMEOUT):
        with pytest.raises(StoreError, match=match) as info:
            async with Store.open(path, busy_timeout=busy_timeout):
                pass  # pragma: no cover
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)
    assert await trio.Path(path).read_bytes() == before


async def test_database_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        f"PRAGMA application_id = 1952671860; PRAGMA user_version = {SCHEMA_VERSION + 1};"
        "CREATE TABLE future (x); INSERT INTO future VALUES ('from the future');"
    )
    conn.close()
    await expect_refusal(
        path, rf"made by a newer trio-chat \(schema {SCHEMA_VERSION + 1} > {SCHEMA_VERSION}\)"
    )
    assert [p.name for p in await trio.Path(tmp_path).iterdir()] == ["chat.db"]


async def test_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database\n" * 200)
    await expect_refusal(path, "is not a trio-chat database")


async def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT);")
    conn.close()
    await expect_refusal(path, "not a trio-chat database")


async def test_corrupt_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    async with Store.open(path) as store:
        await store.append(msg(1))
    data = bytearray(await trio.Path(path).read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)  # page 1 after the header: the schema table
    await trio.Path(path).write_bytes(bytes(data))
    await expect_refusal(path, r"is damaged \(database disk image is malformed\); restore it")


async def test_damaged_data_page_is_refused_at_start_untouched(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    async with Store.open(path) as store:
        await store.append_many([msg(i, text="x" * 300) for i in range(1, 201)])
    data = bytearray(await trio.Path(path).read_bytes())
    pages = len(data) // 4096
    assert pages > 10  # the schema on page 1 stays readable; a page of messages does not
    middle = pages // 2 * 4096
    data[middle : middle + 4096] = b"\xa5" * 4096
    await trio.Path(path).write_bytes(bytes(data))
    await expect_refusal(path, r"is damaged \(.+\); restore it from a backup, or recover")


async def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        with pytest.raises(StoreError, match="cannot open database"):
            async with Store.open(tmp_path / "no" / "such" / "chat.db"):
                pass  # pragma: no cover


@pytest.mark.parametrize("journal", ["wal", "rollback"])
async def test_locked_database_is_refused_within_the_busy_timeout(
    tmp_path: Path, journal: str
) -> None:
    path = tmp_path / "chat.db"
    if journal == "wal":
        async with Store.open(path) as store:
            await store.append(msg(1))
    else:
        make_v1_database(path)  # rollback journal; the lock also blocks the migration
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        started = time.perf_counter()
        await expect_refusal(path, "database is locked", busy_timeout=0.3)
        assert time.perf_counter() - started < 3.0
    finally:
        locker.close()
    with trio.fail_after(TIMEOUT):
        async with Store.open(path) as store:
            assert len(await store.history("#lobby")) >= 1


# -------------------------------------------------------------------- errors at runtime


async def test_disk_full_fails_that_append_only(tmp_path: Path) -> None:
    big = "x" * 500_000
    with trio.fail_after(TIMEOUT):
        # max_size makes SQLite report SQLITE_FULL, as a full disk does.
        async with Store.open(tmp_path / "chat.db", max_size=128 * 1024) as store:
            await store.append(msg(1))
            with pytest.raises(StoreError, match="could not save message 2: database or disk"):
                await store.append(msg(2, text=big))
            await store.append(msg(3))
            assert ids(await store.history("#lobby")) == [1, 3]


async def test_one_bad_message_in_a_batch_does_not_fail_its_neighbours(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    results: dict[int, str] = {}
    with trio.fail_after(TIMEOUT):
        async with Store.open(path, max_size=128 * 1024) as store:

            async def send(record: StoredMessage) -> None:
                try:
                    await store.append(record)
                    results[record.id] = "ok"
                except StoreError:
                    results[record.id] = "failed"

            # Another process holds the write lock, so everything queues behind the first
            # message and then goes to the database as one batch.
            locker = sqlite3.connect(path, isolation_level=None)
            locker.execute("BEGIN IMMEDIATE")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send, msg(1))
                await trio.sleep(0.1)
                for i in range(2, 12):
                    nursery.start_soon(send, msg(i, text="x" * 500_000 if i == 6 else None))
                await trio.sleep(0.2)
                locker.execute("COMMIT")
                locker.close()
            assert results == {i: "failed" if i == 6 else "ok" for i in range(1, 12)}
            assert ids(await store.history("#lobby")) == [1, *range(2, 6), *range(7, 12)]


async def test_reads_do_not_wait_for_a_blocked_writer(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with trio.fail_after(TIMEOUT):
        async with Store.open(path, busy_timeout=5.0) as store:
            await store.append(msg(1))
            locker = sqlite3.connect(path, isolation_level=None)
            locker.execute("BEGIN IMMEDIATE")
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(store.append, msg(2))
                    await trio.sleep(0.1)
                    with trio.fail_after(1.0):
                        assert ids(await store.history("#lobby")) == [1]
                    locker.execute("COMMIT")
            finally:
                locker.close()
            assert ids(await store.history("#lobby")) == [1, 2]


async def test_closing_is_bounded_when_the_database_stays_locked(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    outcome: list[str] = []
    locker: sqlite3.Connection | None = None
    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as outer:
                async with Store.open(path, busy_timeout=1.0, close_timeout=0.3) as store:
                    locker = sqlite3.connect(path, isolation_level=None)
                    locker.execute("BEGIN IMMEDIATE")
                    outer.start_soon(append_expecting_error, store, msg(1), outcome)
                    await trio.sleep(0.1)  # the append now waits for the lock
                    started = time.perf_counter()
                elapsed = time.perf_counter() - started
    finally:
        if locker is not None:
            locker.close()
    # The flush gave up after close_timeout; the batch in flight still ends within SQLite's
    # busy timeout (a busy wait cannot be interrupted), and its caller is told it failed.
    assert outcome == ["StoreError"]
    assert elapsed < 1.0 + 0.3 + 1.0


async def append_expecting_error(store: Store, record: StoredMessage, outcome: list[str]) -> None:
    try:
        await store.append(record)
        outcome.append("ok")
    except StoreError:
        outcome.append("StoreError")


def test_a_row_made_from_an_event_is_the_row_of_its_stored_message() -> None:
    from trio_chat.hub import Pending
    from trio_chat.protocol import Message, Private
    from trio_chat.publisher import stored_form
    from trio_chat.store.records import message_row

    line = Message(id=7, ts=1.5, room="#Lobby", nick="Ann", text="hi", kind="action")
    private = Private(id=8, ts=2.5, nick="Ann2", to="Bob", text="psst")
    accounts = ("ann", "bob")
    expected = {
        line: StoredMessage.from_message(line),
        private: StoredMessage(
            id=8,
            ts=2.5,
            room=None,
            sender="Ann2",
            text="psst",
            kind="private",
            recipient="Bob",
            sender_account="ann",
            recipient_account="bob",
        ),
    }
    for event, stored in expected.items():
        found = None if isinstance(event, Message) else accounts
        assert message_row(event, found) == stored.row()
        assert stored_form(Pending(event, None, accounts=found)) == stored
    assert stored.conversation == "p:ann bob"  # the accounts', whatever the nicks
    with pytest.raises(ValueError, match="between two accounts"):
        message_row(private)  # a guest's: never stored


async def test_batches_queued_without_waiting_commit_in_order_and_fail_alone(
    tmp_path: Path,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            first = store.append_rows_nowait([msg(1).row(), msg(2).row()])
            clash = store.append_rows_nowait([msg(3).row(), msg(2, text="again").row()])
            last = store.append_rows_nowait([msg(4).row()])
            await first.wait()
            with pytest.raises(StoreError, match="UNIQUE"):
                await clash.wait()  # one transaction: neither of its two is stored
            await last.wait()
            assert ids(await store.history("#lobby")) == [1, 2, 4]


def test_a_batch_is_inserted_in_a_few_statements_of_power_of_two_rows() -> None:
    from trio_chat.store.sqlite import ROWS_PER_INSERT, insert_statements

    statements = insert_statements([msg(i).row() for i in range(1, 101)])
    # Inserts only: the words are indexed later, off the commit (index_waiting_lines).
    assert all(sql.startswith("INSERT INTO messages ") for sql, _ in statements)
    assert [len(params) // 13 for _, params in statements] == [ROWS_PER_INSERT, 32, 4]
    assert [sql.count("(?,") for sql, _ in statements] == [64, 32, 4]
    flat = [value for _, params in statements for value in params]
    assert flat[::13] == list(range(1, 101))  # every row once, in order
