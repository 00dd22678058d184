"""A fan-out that takes longer than its budget: the rest of its receivers are owed it, paid
a slice at a time, and a line to another room goes out in between, never ahead of what a
receiver is owed. (Sliced here with a budget of 0: the clock is read after each slice.)"""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio
import trio.testing

from tests.test_hub import Wire, connect, lobby_with, received
from trio_chat.hub import Hub, Pending, Session
from trio_chat.mailbox import Mailbox
from trio_chat.parcels import Bundle, Parcel, Payload, Raw
from trio_chat.protocol import Info, Message
from trio_chat.publisher import Publisher
from trio_chat.testing import ChatClient, open_client, open_test_server
from trio_chat.wire import JSON_LINES, encoded

NICKS = tuple(f"u{i}" for i in range(8))


def sliced(hub: Hub, size: int) -> list[None]:
    """Slice ``hub``'s fan-outs at ``size`` receivers; the list grows at each wake-up of
    the payer."""
    woken: list[None] = []
    hub.fanout_sliced_from = hub.fanout_slice = size
    hub.fanout_budget = 0.0  # sliced after the first slice, whatever the clock says
    hub.wake_payer = lambda: woken.append(None)
    return woken


def lobby_writing_last() -> tuple[Hub, list[Pending], list[Session], list[bytes]]:
    """#lobby of :data:`NICKS`, sliced at 3, whose last member's socket is written to
    directly: what is written to it goes into the list returned (bytes as they are)."""
    writes: list[bytes] = []

    def write_now(parcel: Parcel) -> bytes:
        event = parcel.event
        writes.append(event.data if isinstance(event, Raw) else encoded(parcel, JSON_LINES))
        return b""

    hub, queue, sessions = lobby_with(*NICKS, sockets={NICKS[-1]: write_now})
    writes.clear()
    sliced(hub, 3)
    return hub, queue, sessions, writes


def lines(payloads: list[Payload]) -> list[str]:
    """The texts of the chat lines among ``payloads``, bundles unpacked."""
    texts: list[str] = []
    for payload in payloads:
        events = payload.events if isinstance(payload, Bundle) else (payload,)
        texts += [event.text for event in events if isinstance(event, Message)]
    return texts


def test_the_first_slice_gets_a_line_at_once_and_the_rest_a_slice_per_payment() -> None:
    hub, queue, sessions = lobby_with(*NICKS)
    woken = sliced(hub, 3)
    hub.say(sessions[0], "#lobby", "big")
    hub.deliver_many(queue)

    assert [lines(received(s)) for s in sessions] == [["big"]] * 3 + [[]] * 5
    assert hub.owes and len(woken) == 1
    assert hub.pay_owed() is True
    assert [lines(received(s)) for s in sessions] == [[]] * 3 + [["big"]] * 3 + [[]] * 2
    assert hub.pay_owed() is False and not hub.owes
    assert [lines(received(s)) for s in sessions] == [[]] * 6 + [["big"]] * 2
    assert len(woken) == 1  # woken when it began to owe, not again


def test_a_second_big_line_pays_what_the_first_owes_before_it_goes_out() -> None:
    """A big room that is busy is fanned out one line at a time, as unsliced: owing
    line after line to most of a room at full speed cost more than half its throughput."""
    hub, queue, sessions = lobby_with(*NICKS)
    sliced(hub, 3)
    for text in ("one", "two"):
        hub.say(sessions[0], "#lobby", text)
        hub.deliver_many(queue)
        queue.clear()
    early = [lines(received(s)) for s in sessions]
    assert early == [["one", "two"]] * 3 + [["one"]] * 5
    hub.pay_all_owed()
    assert [e + lines(received(s)) for e, s in zip(early, sessions, strict=True)] == [
        ["one", "two"]
    ] * len(NICKS)


def test_a_fanout_within_its_budget_is_not_sliced() -> None:
    hub, queue, sessions = lobby_with(*NICKS)
    woken = sliced(hub, 3)
    hub.fanout_budget = 60.0
    hub.say(sessions[0], "#lobby", "big")
    hub.deliver_many(queue)
    assert [lines(received(s)) for s in sessions] == [["big"]] * len(NICKS)
    assert not hub.owes and not woken


def test_a_line_to_a_small_room_overtakes_a_big_rooms_fanout_but_no_one_it_owes() -> None:
    hub, queue, sessions = lobby_with(*NICKS)
    served, owed = sessions[0], sessions[-1]
    outsider = connect(hub, "x")  # in #lobby too, joined last: owed too
    hub.part(outsider, "#lobby")
    for session in (served, owed, outsider):
        hub.join(session, "#small")
    hub.deliver_many(queue)
    queue.clear()
    for session in [*sessions, outsider]:
        received(session)
    sliced(hub, 3)

    hub.say(sessions[1], "#lobby", "big")
    hub.deliver_many(queue)
    queue.clear()
    hub.say(outsider, "#small", "small")
    hub.deliver_many(queue)

    assert lines(received(served)) == ["big", "small"]
    assert lines(received(outsider)) == ["small"]  # at once: it is owed nothing
    assert lines(received(owed)) == []  # not before the big line it is owed
    hub.pay_all_owed()
    assert lines(received(owed)) == ["big", "small"]


def test_bytes_for_one_connection_come_after_what_it_is_owed() -> None:
    ping = b'{"type":"ping"}\n'
    hub, queue, sessions, writes = lobby_writing_last()
    line = hub.say(sessions[0], "#lobby", "big")
    hub.deliver_many(queue)
    hub.send_to(sessions[-1], Raw(data=ping))
    assert writes == []
    hub.pay_all_owed()
    assert writes == [encoded(line, JSON_LINES), ping]  # in order, not gathered with it


def test_a_receiver_writing_directly_gets_what_it_is_owed_in_one_write() -> None:
    hub, queue, sessions, writes = lobby_writing_last()
    line = hub.say(sessions[0], "#lobby", "one")
    hub.deliver_many(queue)
    reply = Info(text="a reply, after the line")
    hub.send_to(sessions[-1], reply)
    assert writes == []

    hub.pay_all_owed()
    assert writes == [encoded(line, JSON_LINES) + encoded(reply, JSON_LINES)]


def test_a_receiver_that_refuses_what_it_is_owed_is_dropped_as_too_slow() -> None:
    hub, queue, sessions = lobby_with(*NICKS)
    sliced(hub, 3)
    slow: Session = sessions[-1]
    assert isinstance(slow.mailbox, Mailbox)
    slow.mailbox.max_events = 1
    hub.say(sessions[0], "#lobby", "one")
    hub.deliver_many(queue)
    queue.clear()
    hub.say(sessions[0], "#lobby", "two")  # owed too: two parcels for a mailbox of one
    hub.deliver_many(queue)
    hub.pay_all_owed()
    assert slow.closed and slow.key not in hub.sessions


MEMBERS = 14
LINES_EACH = 15


async def test_over_sockets_every_member_gets_every_line_of_its_rooms_once_in_id_order() -> None:
    """Slices of 3 (the server's are 128): lines to #lobby (everyone) and to #small (four
    of them), said at once from three clients, each read by its rooms' members once, in
    rising id order."""
    async with open_test_server() as chat, AsyncExitStack() as stack:
        everyone = [
            await stack.enter_async_context(open_client(chat, f"user{i}")) for i in range(MEMBERS)
        ]
        small = [*everyone[:2], *everyone[-2:]]
        for client in small:
            await client.join("#small")
        hub = chat.server.hub
        hub.fanout_sliced_from = hub.fanout_slice = 3
        hub.fanout_budget = 0.0
        woken: list[None] = []
        pay = hub.wake_payer

        def wake_payer() -> None:
            woken.append(None)
            pay()

        hub.wake_payer = wake_payer
        senders = [(everyone[3], "#lobby"), (everyone[-1], "#small"), (everyone[0], "#small")]
        expected = {
            index: LINES_EACH * (1 + 2 * (client in small)) for index, client in enumerate(everyone)
        }
        got: dict[int, list[tuple[int, str]]] = {}

        async def send(client: ChatClient, room: str) -> None:
            for n in range(LINES_EACH):
                await client.say(f"{room}:{n}", room=room)

        async def read(index: int) -> None:
            seen: list[tuple[int, str]] = []
            while len(seen) < expected[index]:
                event = await everyone[index].expect("message")
                seen.append((event.id, event.text))
            got[index] = seen

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for index in expected:
                    nursery.start_soon(read, index)
                for client, room in senders:
                    nursery.start_soon(send, client, room)
            await chat.server.settle()
        assert woken and not hub.owes  # it was sliced, and all was paid
        for index, seen in got.items():
            ids = [event_id for event_id, _ in seen]
            assert ids == sorted(set(ids)), index  # each once, in rising id order
            rooms = {text.partition(":")[0] for _, text in seen}
            assert rooms == ({"#lobby", "#small"} if everyone[index] in small else {"#lobby"})


async def test_what_is_owed_when_the_server_stops_comes_before_the_goodbye() -> None:
    async with open_test_server() as chat, AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(open_client(chat, f"user{i}")) for i in range(6)]
        hub = chat.server.hub
        hub.fanout_sliced_from = hub.fanout_slice = 2
        hub.fanout_budget = 0.0
        hub.wake_payer = lambda: None  # nothing pays: what is owed stays owed
        await clients[0].say("last words")
        await clients[0].expect("message")  # the first slice's: the rest is owed now
        assert hub.owes
        chat.server.shutdown()
        for client in clients[1:]:
            await client.expect("bye")
            heard = [e.text for e in client.history if isinstance(e, Message)]
            assert heard == ["last words"], client.nick


async def test_a_settle_waits_for_what_was_owed_before_it_not_for_what_came_after() -> None:
    hub, _, sessions = lobby_with(*NICKS)
    publisher = Publisher(hub, store=None, outbox_size=100)
    publisher.attach()
    sliced(hub, 3)  # and nothing pays but this test
    hub.say(sessions[0], "#lobby", "one")
    publisher.deliver_waiting()
    settled: list[None] = []

    async def settle() -> None:
        await publisher.settle()
        settled.append(None)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(settle)
        await trio.testing.wait_all_tasks_blocked()
        assert not settled  # "one" is owed
        hub.say(sessions[0], "#lobby", "two")  # pays "one" first, then owes "two"
        publisher.deliver_waiting()
        await trio.testing.wait_all_tasks_blocked()
        assert settled and hub.owes


def two_connections(hub: Hub, session: Session) -> tuple[Mailbox, Mailbox]:
    """Give ``session`` a second connection; both connections' mailboxes."""
    first = session.mailbox
    assert isinstance(first, Mailbox)
    second = Mailbox(100, wire=Wire())
    hub.add_device(session, second, address="127.0.0.1:2", transport="test")
    return first, second


def taken(mailbox: Mailbox) -> list[str]:
    """The texts of what ``mailbox`` holds: chat lines and info replies, in order."""
    payloads = [i.event if isinstance(i, Parcel) else i for i in mailbox.take_nowait(100)]
    texts: list[str] = []
    for payload in payloads:
        events = payload.events if isinstance(payload, Bundle) else (payload,)
        texts += [e.text for e in events if isinstance(e, Message | Info)]
    return texts


def test_a_reply_to_one_connection_waits_behind_what_its_user_is_owed() -> None:
    """A user connected twice is one receiver of the room's lines (its connections' mailboxes
    behind one) but a reply goes to the connection that asked: it must not overtake the
    line the user is still owed on that connection."""
    hub, queue, sessions = lobby_with(*NICKS)
    owed = sessions[-1]
    phone, laptop = two_connections(hub, owed)
    sliced(hub, 3)
    hub.say(sessions[0], "#lobby", "big")
    hub.deliver_many(queue)
    assert hub.owes and taken(phone) == taken(laptop) == []

    hub.tell((owed.devices[1],), Info(text="reply"))
    assert taken(laptop) == []  # not before "big"
    hub.pay_all_owed()
    assert taken(laptop) == ["big", "reply"]
    assert taken(phone) == ["big"]


def test_a_connection_joining_a_user_that_is_owed_a_line_is_not_given_it_again() -> None:
    """The user's other connection gets what it is owed first; the new one starts after."""
    hub, queue, sessions = lobby_with(*NICKS)
    owed = sessions[-1]
    sliced(hub, 3)
    hub.say(sessions[0], "#lobby", "big")
    hub.deliver_many(queue)
    queue.clear()
    assert hub.owes
    phone, laptop = two_connections(hub, owed)
    assert taken(phone) == ["big"]  # paid as the user's connections changed
    hub.say(sessions[0], "#lobby", "next")
    hub.deliver_many(queue)
    hub.pay_all_owed()
    assert taken(phone) == ["next"] and taken(laptop) == ["next"]


def test_a_user_owed_a_line_whose_connection_ends_gets_it_on_the_one_left() -> None:
    hub, queue, sessions = lobby_with(*NICKS)
    owed = sessions[-1]
    for session in (sessions[0], owed):
        hub.join(session, "#small")
    phone, laptop = two_connections(hub, owed)
    hub.deliver_many(queue)
    queue.clear()
    taken(phone), taken(laptop)
    sliced(hub, 3)
    hub.say(sessions[0], "#lobby", "big")
    hub.deliver_many(queue)
    queue.clear()
    hub.say(sessions[0], "#small", "first")  # to both connections, after "big"
    hub.deliver_many(queue)
    queue.clear()
    hub.detach_device(owed.devices[0], "phone gone")
    hub.say(sessions[0], "#small", "second")  # to the one connection left, after those
    hub.deliver_many(queue)
    assert taken(laptop) == []
    hub.pay_all_owed()
    assert taken(laptop) == ["big", "first", "second"]


def test_a_reply_to_one_connection_keeps_its_place_in_a_gathered_pass() -> None:
    """A pass holding a join gathers what each receiver writing directly gets into one
    write at its end; a connection of a user connected twice is written to through its
    user's mailboxes at once, so a reply to it alone must not wait for the end."""
    hub, queue, sessions = lobby_with(*NICKS[:3])
    writes: list[str] = []

    def write_now(parcel: Parcel) -> bytes:
        event = parcel.event
        events = event.events if isinstance(event, Bundle) else (event,)
        writes.extend(f"{e.TYPE}:{getattr(e, 'text', '')}" for e in events)
        return b""

    owed = sessions[-1]
    phone = owed.mailbox
    assert isinstance(phone, Mailbox)
    laptop = Mailbox(100, wire=Wire(write_now=write_now))
    hub.add_device(owed, laptop, address="127.0.0.1:2", transport="test")
    connect(hub, "newcomer")  # a join: the pass gathers
    hub.tell((owed.devices[1],), Info(text="reply"))
    hub.say(sessions[0], "#lobby", "line")
    hub.deliver_many(queue)
    assert writes == ["join:", "info:reply", "message:line"]


async def test_over_sockets_a_second_connection_gets_an_owed_line_once() -> None:
    """alice (joined last) is owed a line when her phone logs in: her laptop gets it then,
    and her phone finds it in the history its welcome brings, not a second time live."""
    async with open_test_server() as chat, AsyncExitStack() as stack:
        others = [await stack.enter_async_context(open_client(chat, f"user{i}")) for i in range(5)]
        laptop = await stack.enter_async_context(open_client(chat))
        await laptop.login("alice", password="correct-horse", register=True)
        hub = chat.server.hub
        hub.fanout_sliced_from = hub.fanout_slice = 2
        hub.fanout_budget = 0.0
        hub.wake_payer = lambda: None  # nothing pays but this test
        await others[0].say("big")
        await others[0].expect("message", lambda e: e.text == "big")
        assert hub.owes
        phone = await stack.enter_async_context(open_client(chat))
        await phone.login("alice", password="correct-horse")
        hub.pay_all_owed()
        await laptop.expect("message", lambda e: e.text == "big")
        await others[0].say("after")
        await others[0].expect("message", lambda e: e.text == "after")
        hub.pay_all_owed()
        await phone.expect("message", lambda e: e.text == "after")
        heard = [e.text for e in phone.history if isinstance(e, Message)]
        stored = [m["text"] for e in phone.history if e.TYPE == "history" for m in e.messages]
        assert (stored.count("big"), heard) == (1, ["after"])
