"""The per-session outbox: bounded, in order, taken in bulk, closed cleanly."""

from __future__ import annotations

import pytest
import trio

from trio_chat.outbox import Outbox
from trio_chat.protocol import Bundle, Info, Raw


def events(n: int) -> list[Info]:
    return [Info(text=str(i)) for i in range(n)]


def test_bounded_in_order_and_taken_in_bulk() -> None:
    box = Outbox(3)
    a, b, c, d = events(4)
    for event in (a, b, c):
        box.put_nowait(event)
    with pytest.raises(trio.WouldBlock):
        box.put_nowait(d)
    assert box.take_nowait(2) == [a, b]
    assert box.take_nowait(10) == [c]
    assert box.take_nowait(10) == []


async def test_take_waits_for_the_first_event_then_returns_all_waiting() -> None:
    box = Outbox(10)
    got: list[list[Info]] = []

    async def writer() -> None:
        got.append(await box.take(10))  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        first, second = events(2)
        box.put_nowait(first)
        box.put_nowait(second)  # arrives before the writer runs: same batch
    assert got == [[first, second]]


async def test_close_lets_the_writer_finish_what_is_queued() -> None:
    box = Outbox(10)
    (event,) = events(1)
    box.put_nowait(event)
    box.close()
    with pytest.raises(trio.ClosedResourceError):
        box.put_nowait(event)
    assert await box.take(10) == [event]
    assert await box.take(10) == []  # closed and empty: the writer stops


async def test_close_wakes_a_waiting_writer() -> None:
    box = Outbox(10)
    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            result: list[object] = []

            async def writer() -> None:
                result.append(await box.take(10))

            nursery.start_soon(writer)
            await trio.testing.wait_all_tasks_blocked()
            box.close()
    assert result == [[]]


def test_a_bundle_counts_as_the_events_in_it() -> None:
    box = Outbox(4)
    three = Bundle(events=tuple(events(3)))
    rest_of_two = Raw(data=b"...", events=2)  # the unwritten end of a two-event bundle
    (one,) = events(1)
    box.put_nowait(three)
    assert len(box) == 3
    with pytest.raises(trio.WouldBlock):
        box.put_nowait(rest_of_two)  # 3 + 2 > 4
    box.put_nowait(one)
    assert len(box) == 4
    assert box.take_nowait(1) == [three]
    assert len(box) == 1
    assert box.take_nowait(5) == [one]
    box.put_nowait(rest_of_two)
    assert len(box) == 2


def test_an_empty_outbox_takes_one_bundle_bigger_than_its_bound() -> None:
    box = Outbox(2)
    box.put_nowait(Bundle(events=tuple(events(10))))  # refusing it would drop a client
    assert len(box) == 10  # that is fully caught up
    with pytest.raises(trio.WouldBlock):
        box.put_nowait(Info(text="one more"))


def test_a_parked_connection_is_called_once_at_the_next_put_or_close() -> None:
    box = Outbox(10)
    calls: list[str] = []
    box.call_on_put(lambda: calls.append("woken"))
    assert box.writer_waiting  # the callback stands in for a waiting writer
    (event,) = events(1)
    box.put_nowait(event)
    box.put_nowait(event)
    assert calls == ["woken"]  # once: whoever resumes takes over
    assert not box.writer_waiting
    box.take_nowait(10)
    box.call_on_put(lambda: calls.append("closed"))
    box.close()
    assert calls == ["woken", "closed"]


async def test_a_writer_cancelled_while_waiting_leaves_no_stale_wakeup() -> None:
    box = Outbox(10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(box.take, 10)
        await trio.testing.wait_all_tasks_blocked()
        assert box.writer_waiting
        nursery.cancel_scope.cancel()
    assert not box.writer_waiting
