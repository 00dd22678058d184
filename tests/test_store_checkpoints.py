"""Checkpoints of a file's store run apart from the commits (``store/sqlite.py``,
``passive_checkpoint``): the writer's commits never copy the write-ahead log into the
database, a connection of the store's own does, in the background, after lines were
committed. Real database files in ``tmp_path``; every wait bounded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from trio_chat.store import Store, StoredMessage
from trio_chat.store.sqlite import passive_checkpoint

TIMEOUT = 10.0
PAGE = 4096


def line(id: int, size: int = 3000) -> StoredMessage:
    return StoredMessage(id=id, ts=float(id), room="#lobby", sender="alice", text="x" * size)


def frames_in_log(path: Path) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        _, frames, _ = passive_checkpoint(conn)
        return frames
    finally:
        conn.close()


async def test_commits_never_checkpoint_when_the_store_does(tmp_path: Path) -> None:
    """3,000 lines of 3 KB: about 2,500 pages, past SQLite's automatic checkpoint (1,000
    pages, made by the commit that passes it). The background checkpoint is set far off,
    so nothing copies the log meanwhile: all of it is still there."""
    path = tmp_path / "chat.db"
    with trio.fail_after(TIMEOUT):
        async with Store.open(path, checkpoint_every=3600.0) as store:
            for start in range(1, 3001, 100):
                await store.append_many([line(i) for i in range(start, start + 100)])
            assert frames_in_log(path) > 2000
            assert await store.checkpoint() == 0  # the store's own: everything copied


async def test_commits_checkpoint_as_ever_when_the_store_does_not(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with trio.fail_after(TIMEOUT):
        async with Store.open(path, checkpoint_every=None) as store:
            for start in range(1, 3001, 100):
                await store.append_many([line(i) for i in range(start, start + 100)])
            assert frames_in_log(path) < 1500  # restarted by the commits' checkpoints


async def test_the_store_checkpoints_after_lines_were_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "chat.db"
    checkpointed = trio.Event()
    results: list[tuple[int, int, int]] = []
    with trio.fail_after(TIMEOUT):
        async with Store.open(path, checkpoint_every=0.01) as store:
            checkpoint_apart = store._checkpoint_apart

            async def spy(conn: sqlite3.Connection) -> tuple[int, int, int]:
                result = await checkpoint_apart(conn)
                results.append(result)
                if result[1] > 0:  # it found lines in the log, and copied them
                    checkpointed.set()
                return result

            monkeypatch.setattr(store, "_checkpoint_apart", spy)
            await store.append_many([line(i) for i in range(1, 201)])
            await checkpointed.wait()
            busy, frames, copied = results[-1]
            assert (busy, copied) == (0, frames)
            assert store.stats.wal_frames == 0 and store.stats.checkpoint_failures == 0
