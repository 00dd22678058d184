"""The publisher without a store: what waits goes out in order, a room's lines as one bundle."""

from __future__ import annotations

import trio
import trio.testing

from trio_chat.hub import Hub, Pending, Session
from trio_chat.mailbox import Mailbox
from trio_chat.parcels import Bundle, Item, Parcel
from trio_chat.protocol import Info, Message
from trio_chat.publisher import Publisher


def lobby(publisher_outbox: int = 1024) -> tuple[Hub, Publisher, Session]:
    hub = Hub()
    publisher = Publisher(hub, store=None, outbox_size=publisher_outbox)
    publisher.attach()
    ann = hub.attach("ann", Mailbox(10_000), address="127.0.0.1:1", transport="test")
    hub.join(ann, "#lobby")
    publisher.deliver_waiting()
    ann.mailbox.take_nowait(100)  # the join
    return hub, publisher, ann


def lines_of(items: list[Item]) -> list[str]:
    out: list[str] = []
    for item in items:
        payload = item.event if isinstance(item, Parcel) else item
        for event in payload.events if isinstance(payload, Bundle) else (payload,):
            assert isinstance(event, Message)
            out.append(event.text)
    return out


def test_lines_said_before_the_publisher_runs_go_out_as_one_bundle() -> None:
    hub, publisher, ann = lobby()
    for text in ("one", "two", "three"):
        hub.say(ann, "#lobby", text)
    assert len(ann.mailbox) == 0  # readers do not deliver: they wait for the publisher
    publisher.deliver_waiting()
    items = ann.mailbox.take_nowait(100)
    assert len(items) == 1 and lines_of(items) == ["one", "two", "three"]


async def test_the_publisher_task_delivers_in_order() -> None:
    hub, publisher, ann = lobby(publisher_outbox=8)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(publisher.publish_forever)
        for text in ("a", "b", "c", "d", "e"):
            hub.say(ann, "#lobby", text)
        with trio.fail_after(5):
            await publisher.settle()
        nursery.cancel_scope.cancel()
    assert lines_of(ann.mailbox.take_nowait(100)) == ["a", "b", "c", "d", "e"]


class Holding:
    """A broker that holds what the hub publishes until the test hands it on, as a
    RedisBroker holds its lines until it reads them back from the log."""

    def __init__(self) -> None:
        self.held: list[Pending] = []

    def publish(self, pending: Pending) -> None:
        self.held.append(pending)

    def take(self) -> list[Pending]:
        batch, self.held = self.held, []
        return batch


def held_lobby(outbox: int = 1024) -> tuple[Hub, Publisher, Session, Holding]:
    hub, publisher, ann = lobby(outbox)
    broker = Holding()
    publisher.attach(broker)
    return hub, publisher, ann, broker


def test_a_brokers_batch_is_delivered_at_once_as_one_bundle() -> None:
    hub, publisher, ann, broker = held_lobby()
    for text in ("one", "two", "three"):
        hub.say(ann, "#lobby", text)
    assert len(ann.mailbox) == 0
    publisher.accept_many(broker.take())
    items = ann.mailbox.take_nowait(100)
    assert len(items) == 1 and lines_of(items) == ["one", "two", "three"]


async def test_a_batch_bigger_than_a_slice_waits_for_the_publisher_task_and_keeps_order() -> None:
    hub, publisher, ann, broker = held_lobby(outbox=8)  # a slice of 2
    for n in range(3):
        hub.say(ann, "#lobby", str(n))
    publisher.accept_many(broker.take())
    assert len(ann.mailbox) == 0  # bigger than a slice: left to the task
    hub.say(ann, "#lobby", "3")
    publisher.accept_many(broker.take())  # small, but behind the waiting batch
    assert len(ann.mailbox) == 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(publisher.publish_forever)
        with trio.fail_after(5):
            await publisher.settle()
        nursery.cancel_scope.cancel()
    assert lines_of(ann.mailbox.take_nowait(100)) == ["0", "1", "2", "3"]


async def test_settle_waits_for_what_was_queued_before_it_not_for_a_quiet_moment() -> None:
    """A connection that ends waits for its own last lines and replies to reach the
    mailboxes (``settle``), not for the whole server to fall quiet: while a crowd comes
    and goes something is always queued, and every ending connection used to wait (up to
    its goodbye's timeout) and wake at every batch delivered meanwhile."""
    hub, publisher, ann = lobby()
    hub.say(ann, "#lobby", "mine")
    hub.send_to(ann, Info(text="my reply"), in_order=True)
    settled = trio.Event()

    async def settle() -> None:
        await publisher.settle()
        settled.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(settle)
        await trio.testing.wait_all_tasks_blocked()
        assert not settled.is_set()  # neither is delivered yet
        publisher.deliver_waiting()
        hub.say(ann, "#lobby", "someone else's, after the settle began")
        await trio.testing.wait_all_tasks_blocked()
        assert settled.is_set()
    items = ann.mailbox.take_nowait(100)
    assert [type(item.event if isinstance(item, Parcel) else item) for item in items] == [
        Message,
        Info,
    ]
    publisher.deliver_waiting()  # the later line was left for later
    assert lines_of(ann.mailbox.take_nowait(100)) == ["someone else's, after the settle began"]


async def test_settled_now_says_whether_a_settle_would_wait() -> None:
    """What a connection's goodbye asks before it would settle: false while a numbered
    event or a reply waiting its turn is undelivered, true once they are."""
    hub, publisher, ann = lobby()
    assert publisher.settled_now()
    hub.say(ann, "#lobby", "mine")
    assert not publisher.settled_now()  # numbered, not yet delivered
    async with trio.open_nursery() as nursery:
        nursery.start_soon(publisher.publish_forever)
        with trio.fail_after(5):
            await publisher.settle()
        assert publisher.settled_now()
        hub.send_to(ann, Info(text="a reply"), in_order=True)
        assert not publisher.settled_now()  # a reply waiting its turn (in order)
        with trio.fail_after(5):
            await publisher.settle()
        assert publisher.settled_now()
        nursery.cancel_scope.cancel()
    assert len(ann.mailbox.take_nowait(100)) == 2  # the line and the reply
