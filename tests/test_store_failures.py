"""When the database fails (a full disk): what users are told, what the log and /metrics say.

Failures are injected at the SQLite call on the server's real database (an authorizer that
refuses a statement, as SQLite refuses writes on a full disk), never by mocking the store.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from trio_chat.metrics import Metrics
from trio_chat.store import Store, StoredMessage, StoreError
from trio_chat.store.health import LogLimiter
from trio_chat.testing import TestServer, open_client, open_test_server

TIMEOUT = 10.0


@contextmanager
def refusing(conn: sqlite3.Connection, action: int, target: str) -> Iterator[None]:
    """While in the block, SQLite refuses ``action`` on ``target`` (a table, or a pragma)
    on ``conn`` with SQLITE_AUTH: a write the database cannot take, like a full disk's."""

    def authorizer(code: int, arg1: str | None, *_: object) -> int:
        return sqlite3.SQLITE_DENY if (code, arg1) == (action, target) else sqlite3.SQLITE_OK

    conn.set_authorizer(authorizer)
    try:
        yield
    finally:
        conn.set_authorizer(None)


def writer(chat: TestServer) -> sqlite3.Connection:
    assert chat.server.history_service is not None
    return chat.server.history_service.store._writer


def error_lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == logger and r.levelno >= logging.ERROR
    ]


# ---------------------------------------------------------------------- log limiting


def test_first_failure_is_logged_then_one_line_per_window_with_the_count() -> None:
    limiter = LogLimiter(window=10.0)
    assert not limiter.failing
    assert limiter.hit(100.0) == 0  # the first: logged, nothing left out
    assert [limiter.hit(100.0 + t) for t in (0.1, 1.0, 9.9)] == [None, None, None]
    assert limiter.failing
    left_out = limiter.hit(110.0)  # a window later: logged, with how many were not
    assert left_out == 3
    assert limiter.more_text(left_out) == " (and 3 more like it in the last 10 s)"
    assert limiter.more_text(0) == ""
    assert limiter.hit(110.5) is None
    assert limiter.recovered() == 1  # the tail not yet reported
    assert not limiter.failing
    assert limiter.hit(111.0) == 0  # after recovering, the next failure is news again


# ------------------------------------------------------------------------- accounts


async def test_register_on_a_failing_disk_says_so_in_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        async with open_test_server() as chat:
            with refusing(writer(chat), sqlite3.SQLITE_INSERT, "accounts"):
                async with open_client(chat, "alice") as alice:
                    await alice.command("/register pw-1")
                    error = await alice.expect("error")
                    assert (error.code, error.text) == (
                        "store_error",
                        "the server cannot save accounts right now",
                    )
                async with open_client(chat) as bob:
                    await bob.send(
                        {"type": "hello", "nick": "bob", "password": "pw-2", "register": True}
                    )
                    error = await bob.expect("error")
                    assert (error.code, error.text) == (
                        "store_error",
                        "the server cannot save accounts right now",
                    )
                    await bob.login("bob")  # still a usable connection, as a guest
            async with open_client(chat, "carol") as carol:  # and once the disk is fine
                await carol.command("/register pw-3")
                assert "registered" in (await carol.expect("info")).text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().split(":")[0] for r in errors] == ["could not save an account"]
    assert not any(r.exc_info for r in caplog.records)  # no traceback
    assert "pw-1" not in caplog.text and "pw-2" not in caplog.text


# ------------------------------------------------------------------------- messages


async def test_refused_messages_log_one_line_per_run_and_metrics_show_the_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        async with open_test_server() as chat:
            metrics = chat.server.metrics
            assert "\ntrio_chat_store_healthy 1.0\n" in metrics.render()
            async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
                with refusing(writer(chat), sqlite3.SQLITE_INSERT, "messages"):
                    for n in range(30):
                        await alice.say(f"lost {n}")
                        assert (await alice.expect("error")).code == "not_saved"
                    assert metrics.value("trio_chat_store_healthy") == 0
                    assert metrics.value("trio_chat_messages_not_saved_total") == 30
                    assert metrics.value("trio_chat_store_write_failures_total") >= 30
                await alice.say("saved again")
                assert (await bob.expect("message")).text == "saved again"
                assert metrics.value("trio_chat_store_healthy") == 1
    lines = error_lines(caplog, "trio_chat.publisher")
    assert len(lines) == 1, lines  # not 30
    assert "not saved" in lines[0] and "not authorized" in lines[0]
    assert any(
        r.getMessage() == "messages are saved again (29 more failures not logged)"
        for r in caplog.records
    )


def test_a_server_without_a_database_shows_no_store_samples() -> None:
    text = Metrics().render()
    assert "# TYPE trio_chat_store_healthy gauge" in text
    assert "\ntrio_chat_store_healthy " not in text


# ----------------------------------------------------------------------- checkpoints


def msg(id: int) -> StoredMessage:
    return StoredMessage(id=id, ts=float(id), room="#lobby", sender="alice", text="x" * 200)


async def test_a_failing_checkpoint_is_logged_once_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(TIMEOUT), caplog.at_level(logging.INFO):
        async with Store.open(tmp_path / "chat.db", checkpoint_every=None) as store:
            await store.append(msg(1))
            assert await store.checkpoint() == 0
            limiter = LogLimiter()
            assert store._checkpointer is not None  # (a file's store checkpoints apart)
            with refusing(store._checkpointer, sqlite3.SQLITE_PRAGMA, "wal_checkpoint"):
                with pytest.raises(StoreError, match="not authorized"):
                    await store.checkpoint()
                for _ in range(3):
                    await store._checkpoint_and_report(limiter)
            assert store.stats.checkpoint_failures == 4
            assert store.stats.healthy  # a checkpoint is not a write of anyone's data
            await store._checkpoint_and_report(limiter)
    lines = error_lines(caplog, "trio_chat.store")
    assert len(lines) == 1 and "WAL checkpoint failed" in lines[0]
    assert any("checkpoint of" in r.getMessage() and "works again" in r.getMessage()
               for r in caplog.records)  # fmt: skip


async def test_a_checkpoint_held_back_by_a_reader_shows_the_frames_left(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with trio.fail_after(TIMEOUT):
        async with Store.open(path, checkpoint_every=None) as store:
            await store.append(msg(1))
            await store.checkpoint()
            reader = sqlite3.connect(path, isolation_level=None)
            try:
                reader.execute("BEGIN")
                reader.execute("SELECT count(*) FROM messages").fetchone()  # holds a snapshot
                for i in range(2, 50):
                    await store.append(msg(i))
                left = await store.checkpoint()
                assert left > 0 and store.stats.wal_frames == left
            finally:
                reader.close()
            assert await store.checkpoint() == 0
