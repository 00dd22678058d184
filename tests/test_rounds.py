"""Work at the end of a scheduling round (:mod:`trio_chat.rounds`), and the publisher's
delivery there: what a round published goes out once the round is over, with no step of
the publisher task's, and nothing that delivery wakes waits for trio's next I/O."""

from __future__ import annotations

import contextlib
import contextvars
import os

import pytest
import trio

import trio_chat.rounds as rounds
import trio_chat.transports.tcp as tcp
from tests.test_bunching import fd_of
from trio_chat.hub import Hub
from trio_chat.mailbox import Mailbox
from trio_chat.protocol import Message
from trio_chat.publisher import Publisher
from trio_chat.rounds import round_end
from trio_chat.testing import local_config, open_client, open_test_server

opener: contextvars.ContextVar[str] = contextvars.ContextVar("opener", default="unset")


async def test_work_runs_once_at_the_end_of_a_round_it_is_due_in_in_the_openers_context() -> None:
    calls: list[str] = []
    opener.set("the opener's")
    with round_end(lambda: calls.append(opener.get())) as hook:
        assert hook is not None
        await trio.lowlevel.checkpoint()
        assert calls == []  # not due: not called

        async def mark_due() -> None:
            opener.set("another task's")
            hook.due = True

        async with trio.open_nursery() as nursery:
            nursery.start_soon(mark_due)
        await trio.lowlevel.checkpoint()
        assert calls == ["the opener's"]
        await trio.lowlevel.checkpoint()
        assert calls == ["the opener's"]  # once
    hook.due = True
    await trio.lowlevel.checkpoint()
    assert calls == ["the opener's"]  # not after the block


async def test_a_task_the_work_wakes_runs_at_once_though_trio_meant_to_wait() -> None:
    """The work runs after trio chose how long to wait for I/O: with nothing runnable it
    would sleep until the next deadline, and the task the work woke with it."""
    woken = trio.Event()
    with round_end(woken.set) as hook:
        assert hook is not None
        start = trio.current_time()
        hook.due = True
        with trio.move_on_after(5):  # (the only deadline: trio's wait would be 5 s)
            await woken.wait()
        assert trio.current_time() - start < 1


async def test_without_a_run_queue_it_knows_nothing_is_called(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rounds, "_run_queue", lambda: None)
    with round_end(lambda: pytest.fail("called")) as hook:
        assert hook is None
        await trio.lowlevel.checkpoint()


def lobby() -> tuple[Hub, Publisher, Mailbox]:
    hub = Hub()
    publisher = Publisher(hub, store=None, outbox_size=1024)
    publisher.attach()
    ann = hub.attach("ann", Mailbox(10_000), address="127.0.0.1:1", transport="test")
    hub.join(ann, "#lobby")
    publisher.deliver_waiting()
    ann.mailbox.take_nowait(100)  # the join
    assert isinstance(ann.mailbox, Mailbox)
    return hub, publisher, ann.mailbox


@pytest.mark.parametrize("at_round_end", [True, False])
async def test_a_settle_returns_as_soon_as_the_round_that_published_is_over(
    monkeypatch: pytest.MonkeyPatch, at_round_end: bool
) -> None:
    if not at_round_end:
        monkeypatch.setattr(rounds, "_run_queue", lambda: None)
    hub, publisher, mailbox = lobby()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(publisher.publish_forever)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        hub.say(hub.sessions["ann"], "#lobby", "hello")
        with trio.move_on_after(5):  # (the only deadline)
            await publisher.settle()
        assert trio.current_time() - start < 1
        nursery.cancel_scope.cancel()
    assert [type(parcel.event) for parcel in mailbox.take_nowait(10)] == [Message]


async def test_what_delivery_at_a_rounds_end_raises_the_publisher_task_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub, publisher, _ = lobby()

    def broken(*_: object) -> None:
        raise RuntimeError("delivery broke")

    monkeypatch.setattr(hub, "deliver_many", broken)
    with pytest.raises(ExceptionGroup) as caught:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publisher.publish_forever)
            await trio.testing.wait_all_tasks_blocked()
            hub.say(hub.sessions["ann"], "#lobby", "hello")
            await trio.sleep_forever()
    assert [str(exc) for exc in caught.value.exceptions] == ["delivery broke"]


class Steps(trio.abc.Instrument):
    """Counts the steps of the publisher task."""

    def __init__(self) -> None:
        self.publisher = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("publish_forever"):
            self.publisher += 1


@pytest.mark.parametrize("at_round_end", [True, False])
async def test_a_lone_line_is_delivered_with_no_step_of_the_publisher_task(
    monkeypatch: pytest.MonkeyPatch, at_round_end: bool
) -> None:
    """Without a store: each line goes out at the end of its reader's round (or, where
    the round's end is not known, in the publisher task's step in the next)."""
    if not at_round_end:
        monkeypatch.setattr(rounds, "_run_queue", lambda: None)
    async with (
        open_test_server(config=local_config(db=None)) as chat,
        open_client(chat, "ann") as ann,
        open_client(chat, "bob") as bob,
    ):
        await ann.expect("join", lambda e: e.nick == "bob")
        steps = Steps()
        trio.lowlevel.add_instrument(steps)
        try:
            for text in ("one", "two", "three"):
                await ann.say(text)
                with trio.fail_after(5):
                    await bob.expect("message", lambda e, text=text: e.text == text)
        finally:
            trio.lowlevel.remove_instrument(steps)
    if at_round_end:
        assert steps.publisher == 0
    else:
        assert steps.publisher >= 3


@pytest.mark.parametrize("at_round_end", [True, False])
async def test_lines_of_several_readers_in_one_round_reach_each_member_in_one_write(
    monkeypatch: pytest.MonkeyPatch, at_round_end: bool
) -> None:
    """Without a store, as with one (tests/test_bunching.py): what the readers of one
    round said goes out at that round's end together, one write to each member."""
    if not at_round_end:
        monkeypatch.setattr(rounds, "_run_queue", lambda: None)
    writes: list[bytes] = []
    write_nowait = tcp.write_nowait

    def counted(fd: int, data: bytes) -> bytes:
        writes.append(data)
        return write_nowait(fd, data)

    monkeypatch.setattr(tcp, "write_nowait", counted)
    nicks = ("ann", "bob", "cy")
    texts = [f"together from {nick}" for nick in nicks]
    async with (
        open_test_server(config=local_config(db=None)) as chat,
        contextlib.AsyncExitStack() as stack,
    ):
        senders = [await stack.enter_async_context(open_client(chat, n)) for n in nicks]
        last = await stack.enter_async_context(open_client(chat, "dee"))
        for client in senders:
            await client.expect("join", lambda e: e.nick == "dee")
        writes.clear()
        for client, text in zip(senders, texts, strict=True):  # all in before the server runs
            frame = b'{"type":"say","text":"%s"}\n' % text.encode()
            assert os.write(fd_of(client), frame) == len(frame)
        for client in (*senders, last):
            for _ in texts:
                with trio.fail_after(5):
                    await client.expect("message")
    carrying = [data for data in writes if any(t.encode() in data for t in texts)]
    assert all(all(t.encode() in data for t in texts) for data in carrying), carrying
    assert len(carrying) == len(nicks) + 1


class Delivered(trio.abc.Instrument):
    """At each round's end (after the publisher's, which was added first): how many
    items the mailbox got so far."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.seen: list[int] = []

    def before_io_wait(self, timeout: float) -> None:
        self.seen.append(len(self.mailbox))


async def test_a_lone_line_goes_out_at_the_end_of_its_own_round() -> None:
    hub, publisher, mailbox = lobby()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(publisher.publish_forever)
        await trio.testing.wait_all_tasks_blocked()
        rounds_seen = Delivered(mailbox)
        trio.lowlevel.add_instrument(rounds_seen)
        hub.say(hub.sessions["ann"], "#lobby", "alone")
        await trio.testing.wait_all_tasks_blocked()  # (nothing ready: the round ends)
        trio.lowlevel.remove_instrument(rounds_seen)
        nursery.cancel_scope.cancel()
    assert rounds_seen.seen[0] == 1


async def test_under_load_a_rounds_lines_wait_one_round_for_the_next_rounds() -> None:
    """Tasks ready for the next round (a reader with more to say): the lines said in one
    round go out with those said in the next, one bundle, not one fan-out each."""
    hub, publisher, mailbox = lobby()
    ann = hub.sessions["ann"]

    async def saying() -> None:
        hub.say(ann, "#lobby", "one")
        await trio.lowlevel.checkpoint()  # (ready again for the next round)
        hub.say(ann, "#lobby", "two")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(publisher.publish_forever)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(saying)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    items = mailbox.take_nowait(10)
    assert len(items) == 1
    assert [line.text for line in items[0].event.events] == ["one", "two"]  # type: ignore[union-attr]
