"""The store's writing thread (:mod:`trio_chat.store.lane`): work taken without a
scheduling round, in order, handed back always, stopped after what was queued.

The lane is driven by real threads; every wait is bounded (``trio.fail_after`` in the loop
thread, ``threading.Event.wait(timeout)`` where the loop thread must not yield).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_chat.store import Store, StoredMessage
from trio_chat.store.lane import Lane
from trio_chat.store.writer import WriteItem

TIMEOUT = 10.0


class Recorder:
    """A lane's work and its hand-back, recorded; ``fail_on`` raises in the work."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.worked: list[list[int]] = []
        self.finished: list[list[int]] = []
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()
        self.all_finished = trio.Event()
        self.expected = 0

    def work(self, batch: list[int]) -> None:
        assert self.gate.wait(TIMEOUT)
        self.worked.append(list(batch))
        if self.fail_on in batch:
            raise RuntimeError("work failed")

    def done(self, batch: list[int]) -> None:
        self.finished.append(list(batch))
        if sum(map(len, self.finished)) >= self.expected:
            self.all_finished.set()


async def test_items_are_worked_in_order_and_handed_back_in_batches() -> None:
    rec = Recorder()
    lane: Lane[int] = Lane(rec.work, rec.done, batch_max=3)
    rec.gate.clear()  # the thread holds its first batch until everything is queued
    rec.expected = 8
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lane.run)
            lane.put(0)
            await trio.testing.wait_all_tasks_blocked()
            for i in range(1, 8):
                lane.put(i)
            rec.gate.set()
            await rec.all_finished.wait()
            lane.stop()
    assert [i for batch in rec.worked for i in batch] == list(range(8))
    assert rec.finished == rec.worked
    assert max(map(len, rec.worked)) == 3  # batch_max


async def test_a_failing_batch_is_still_handed_back_and_the_lane_goes_on() -> None:
    rec = Recorder(fail_on=1)
    lane: Lane[int] = Lane(rec.work, rec.done, batch_max=1)
    with trio.fail_after(TIMEOUT):
        for i in range(3):
            lane.put(i)
        with pytest.raises(RuntimeError, match="work failed"):
            await lane.run()  # the thread's error, raised by the task that runs it
    # The failing batch came back (its callers are told); what it left is still queued.
    assert rec.finished == [[0], [1]]
    assert lane.take_left() == [2]


async def test_stop_ends_after_what_was_queued_and_abort_after_the_current_batch() -> None:
    rec = Recorder()
    lane: Lane[int] = Lane(rec.work, rec.done, batch_max=1)
    with trio.fail_after(TIMEOUT):
        for i in range(3):
            lane.put(i)
        lane.stop()
        lane.put(99)  # after the stop: never taken
        await lane.run()
    assert rec.worked == [[0], [1], [2]]
    assert lane.take_left() == [99]

    rec = Recorder()
    lane = Lane(rec.work, rec.done, batch_max=1)
    rec.gate.clear()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lane.run)
            for i in range(3):
                lane.put(i)
            await trio.testing.wait_all_tasks_blocked()  # the thread is in batch [0]
            lane.abort()
            rec.gate.set()
    assert rec.worked == [[0]]
    assert lane.take_left() == [1, 2]


async def test_a_write_starts_while_the_loop_thread_is_busy(tmp_path: Path) -> None:
    """The writing thread takes a commit the moment it is queued, without the loop thread
    yielding first (with a ``trio.to_thread`` job per batch, the writer task had to be
    scheduled before its thread started: behind the whole fan-out step in front of it)."""
    started = threading.Event()

    def job(conn: sqlite3.Connection) -> None:
        started.set()

    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            await trio.testing.wait_all_tasks_blocked()  # the writer waits for work
            commit = store._writes.submit_nowait(WriteItem(job=job, transaction=False))
            # No checkpoint between the queueing and this wait: the loop thread stays in
            # this step, as it does in a long fan-out.
            assert started.wait(TIMEOUT)
            await commit.wait()
            record = StoredMessage(id=1, ts=1.0, room="#lobby", sender="alice", text="hi")
            await store.append(record)
            assert [m.text for m in await store.history("#lobby")] == ["hi"]
