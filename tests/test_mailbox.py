"""A receiver's mailbox: bounded in events and bytes, in order, taken in bulk, closed
cleanly, and written straight to the socket while nothing waits."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from trio_chat.mailbox import Mailbox, Parcel
from trio_chat.parcels import Bundle, Item, Payload, Raw
from trio_chat.protocol import Info
from trio_chat.wire import JSON_LINES, encoded


def events(n: int) -> list[Info]:
    return [Info(text=str(i)) for i in range(n)]


def payloads(items: Sequence[Item]) -> list[Payload]:
    """What queued items carry (a mailbox queues the hub's parcels as they are)."""
    return [item.event if isinstance(item, Parcel) else item for item in items]


def test_bounded_in_order_and_taken_in_bulk() -> None:
    box = Mailbox(3)
    a, b, c, d = events(4)
    for event in (a, b, c):
        assert box.offer(Parcel(event))
    assert not box.offer(Parcel(d))
    assert payloads(box.take_nowait(2)) == [a, b]
    assert payloads(box.take_nowait(10)) == [c]
    assert box.take_nowait(10) == []


async def test_take_waits_for_the_first_event_then_returns_all_waiting() -> None:
    box = Mailbox(10)
    got: list[list[Payload]] = []

    async def writer() -> None:
        got.append(payloads(await box.take(10)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        first, second = events(2)
        assert box.offer(Parcel(first))
        assert box.offer(Parcel(second))  # arrives before the writer runs: same batch
    assert got == [[first, second]]


async def test_close_lets_the_writer_finish_what_is_queued() -> None:
    box = Mailbox(10)
    (event,) = events(1)
    assert box.offer(Parcel(event))
    box.close()
    assert not box.offer(Parcel(event))
    assert payloads(await box.take(10)) == [event]
    assert await box.take(10) == []  # closed and empty: the writer stops


async def test_close_wakes_a_waiting_writer() -> None:
    box = Mailbox(10)
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
    box = Mailbox(4)
    three = Bundle(events=tuple(events(3)))
    rest_of_two = Raw(data=b"...", events=2)  # the unwritten end of a two-event bundle
    (one,) = events(1)
    assert box.offer(Parcel(three))
    assert len(box) == 3
    assert not box.offer(Parcel(rest_of_two))  # 3 + 2 > 4
    assert box.offer(Parcel(one))
    assert len(box) == 4
    assert payloads(box.take_nowait(1)) == [three]
    assert len(box) == 1
    assert payloads(box.take_nowait(5)) == [one]
    assert box.offer(Parcel(rest_of_two))
    assert len(box) == 2


def test_an_empty_mailbox_takes_one_bundle_bigger_than_its_bound() -> None:
    box = Mailbox(2)
    assert box.offer(Parcel(Bundle(events=tuple(events(10)))))  # refusing it would drop a client
    assert len(box) == 10  # that is fully caught up
    assert not box.offer(Parcel(Info(text="one more")))


def test_a_parked_connection_is_resumed_once_at_the_next_queued_event_or_close() -> None:
    box = Mailbox(10)
    calls: list[str] = []
    assert box.park(lambda: calls.append("woken"))
    assert box.writer_waiting  # the callback stands in for a waiting writer
    (event,) = events(1)
    assert box.offer(Parcel(event))
    assert box.offer(Parcel(event))
    assert calls == ["woken"]  # once: whoever resumes takes over
    assert not box.writer_waiting
    assert not box.park(lambda: calls.append("no"))  # something is queued: serve on
    box.take_nowait(10)
    assert box.park(lambda: calls.append("closed"))
    box.close()
    assert calls == ["woken", "closed"]
    assert not box.park(lambda: calls.append("no"))  # closed: nothing to park for


def test_a_hang_up_reaches_the_reader_or_the_parked_connection() -> None:
    box = Mailbox(10)
    calls: list[str] = []
    box.call_on_hang_up(lambda: calls.append("reader"))
    box.hang_up()
    box.call_on_hang_up(None)
    box.hang_up()  # nobody listens
    assert box.park(lambda: calls.append("resumed"))
    box.unpark()  # resumed for another reason: neither hook is left behind
    (event,) = events(1)
    assert box.offer(Parcel(event))
    box.hang_up()
    assert box.park(lambda: calls.append("resumed")) is False  # one event queued
    box.take_nowait(10)
    assert box.park(lambda: calls.append("resumed"))
    box.hang_up()
    assert calls == ["reader", "resumed"]


async def test_a_writer_cancelled_while_waiting_leaves_no_stale_wakeup() -> None:
    box = Mailbox(10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(box.take, 10)
        await trio.testing.wait_all_tasks_blocked()
        assert box.writer_waiting
        nursery.cancel_scope.cancel()
    assert not box.writer_waiting


class Wire:
    """A socket as a mailbox sees it: takes ``room`` more bytes, then nothing."""

    def __init__(self, room: int | None = None, broken: bool = False) -> None:
        self.room = room
        self.broken = broken
        self.written = b""

    def measure(self, item: Item) -> int:
        return len(encoded(item, JSON_LINES))

    def write(self, parcel: Parcel) -> bytes:
        if self.broken:
            raise BrokenPipeError
        data = encoded(parcel, JSON_LINES)
        cut = len(data) if self.room is None else min(self.room, len(data))
        if self.room is not None:
            self.room -= cut
        self.written += data[:cut]
        return data[cut:]

    @property
    def write_now(self) -> Callable[[Parcel], bytes]:
        return self.write


def test_with_nothing_unsent_an_event_goes_straight_to_the_socket() -> None:
    wire = Wire()
    box = Mailbox(10, wire=wire)
    (event,) = events(1)
    assert box.offer(Parcel(event))
    assert wire.written == encoded(event, JSON_LINES)
    assert len(box) == 0 and box.unsent_bytes == 0


def test_what_the_socket_leaves_is_queued_and_what_follows_waits_behind_it() -> None:
    a, b = events(2)
    wire = Wire(room=3)
    box = Mailbox(10, wire=wire)
    assert box.offer(Parcel(a))
    assert box.offer(Parcel(b))  # something is unsent: queued, never written past the rest of a
    rest = encoded(a, JSON_LINES)[3:]
    assert payloads(box.take_nowait(10)) == [Raw(data=rest, events=1), b]
    assert box.unsent_bytes == len(rest) + len(encoded(b, JSON_LINES))
    wire.room = None
    (c,) = events(1)
    assert box.offer(Parcel(c))  # being written: still queued
    assert wire.written == encoded(a, JSON_LINES)[:3]
    box.sent(box.unsent_bytes)  # the writer wrote it all
    assert box.offer(Parcel(c))
    assert wire.written == encoded(a, JSON_LINES)[:3] + encoded(c, JSON_LINES)


def test_a_backlog_is_bounded_in_bytes_but_a_lone_big_event_fits() -> None:
    big, small = Info(text="x" * 100), Info(text="y")
    box = Mailbox(10, max_bytes=50, wire=Wire(room=0))
    assert box.offer(Parcel(big))  # however big: the receiver is caught up
    assert not box.offer(Parcel(small))
    assert box.take_nowait(10) == [Raw(data=encoded(big, JSON_LINES), events=1)]


def test_a_broken_socket_is_not_written_to_again() -> None:
    wire = Wire(broken=True)
    box = Mailbox(10, wire=wire)
    a, b = events(2)
    assert box.offer(Parcel(a))  # queued: the writer will find the socket broken and end it
    wire.broken = False
    box.take_nowait(10)
    box.sent(box.unsent_bytes)
    assert box.offer(Parcel(b))
    assert wire.written == b"" and payloads(box.take_nowait(10)) == [b]


def test_a_closed_mailbox_refuses_even_a_direct_write() -> None:
    wire = Wire()
    box = Mailbox(10, wire=wire)
    box.close()
    assert not box.offer(Parcel(Info(text="late")))
    assert wire.written == b""
