"""One user, several connections: an account logged in on a second connection joins its
user, gets every event on each connection, and leaves only with the last one.

First the fan-out mailbox and the hub without sockets, then real servers and clients.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import trio

from trio_chat.hub import Device, Hub, Session, serving
from trio_chat.keepalive import PING_TIMEOUT, Keepalive
from trio_chat.mailbox import Fanout, Mailbox
from trio_chat.parcels import Item, Parcel, Payload
from trio_chat.protocol import Info, Left, ServerPing, Welcome
from trio_chat.testing import (
    ChatClient,
    TestServer,
    local_config,
    open_client,
    open_test_server,
    stalled_client,
)

PASSWORD = "correct-horse"

# ----------------------------------------------------------------- without sockets


def payloads(items: list[Item]) -> list[Payload]:
    return [item.event if isinstance(item, Parcel) else item for item in items]


def test_a_fanout_offers_to_every_mailbox_and_hands_over_the_ones_that_refuse() -> None:
    full, roomy, other = Mailbox(1), Mailbox(10), Mailbox(10)
    assert full.offer(Parcel(Info(text="filler")))
    refused: list[list[Mailbox]] = []
    fanout = Fanout([full, roomy, other], refused.append)
    event = Info(text="hi")
    assert fanout.offer(Parcel(event))  # two of three took it: the user keeps it
    assert refused == [[full]]
    assert payloads(roomy.take_nowait(10)) == [event] == payloads(other.take_nowait(10))
    assert payloads(full.take_nowait(10)) == [Info(text="filler")]


def test_a_fanout_refuses_only_when_every_mailbox_does() -> None:
    a, b = Mailbox(1), Mailbox(1)
    for box in (a, b):
        assert box.offer(Parcel(Info(text="filler")))
    refused: list[list[Mailbox]] = []
    assert not Fanout([a, b], refused.append).offer(Parcel(Info(text="hi")))
    assert refused == []  # the hub drops the whole user instead


def test_a_fanout_hangs_up_every_connection() -> None:
    a, b = Mailbox(1), Mailbox(1)
    calls: list[str] = []
    a.call_on_hang_up(lambda: calls.append("a"))
    b.call_on_hang_up(lambda: calls.append("b"))
    Fanout([a, b], lambda refused: None).hang_up()
    assert calls == ["a", "b"]


def two_devices() -> tuple[Hub, Session, Device, Device, Session]:
    """alice on two connections and bob, both in #lobby, in a hub without a broker."""
    hub = Hub()
    alice = hub.attach("alice", Mailbox(100), address="127.0.0.1:1", transport="tcp")
    second = hub.add_device(alice, Mailbox(100), address="127.0.0.1:2", transport="websocket")
    bob = hub.attach("bob", Mailbox(100), address="127.0.0.1:3", transport="tcp")
    hub.join(alice, "#lobby")
    hub.join(bob, "#lobby")
    for device in (*alice.devices, *bob.devices):
        device.mailbox.take_nowait(100)
    return hub, alice, alice.devices[0], second, bob


def test_a_second_device_swaps_in_a_fanout_and_the_last_one_swaps_it_back() -> None:
    hub = Hub()
    box = Mailbox(10)
    alice = hub.attach("alice", box, address="127.0.0.1:1", transport="tcp")
    assert alice.mailbox is box  # one connection: its own mailbox, as ever
    hub.add_device(alice, Mailbox(10), address="127.0.0.1:2", transport="tcp")
    assert isinstance(alice.mailbox, Fanout)
    hub.detach_device(alice.devices[1], "connection closed")
    assert alice.mailbox is box


def test_every_device_gets_room_events_and_a_welcome_comes_first() -> None:
    hub = Hub()
    alice = hub.attach("alice", Mailbox(100), address="127.0.0.1:1", transport="tcp")
    hub.join(alice, "#lobby")
    welcome = Welcome(nick="alice", room="#lobby", server="s", version="v", connections=2)
    second = hub.add_device(
        alice, Mailbox(100), address="127.0.0.1:2", transport="tcp", first=welcome
    )
    message = hub.say(alice, "#lobby", "hi")
    assert payloads(second.mailbox.take_nowait(10)) == [welcome, message]
    assert payloads(alice.devices[0].mailbox.take_nowait(10))[-1] == message


def test_a_reply_goes_to_the_connection_being_served_else_to_all() -> None:
    hub, alice, first, second, _bob = two_devices()
    token = serving.set(second)
    try:
        hub.send_to(alice, Info(text="to the asker"))
    finally:
        serving.reset(token)
    hub.send_to(alice, Info(text="to everyone"))
    assert payloads(first.mailbox.take_nowait(10)) == [Info(text="to everyone")]
    assert payloads(second.mailbox.take_nowait(10)) == [
        Info(text="to the asker"),
        Info(text="to everyone"),
    ]


def test_the_user_leaves_with_its_last_device_only() -> None:
    hub, alice, first, second, bob = two_devices()
    hub.detach_device(second, "connection lost")
    hub.detach_device(second, "connection lost")  # twice is harmless
    assert hub.find("alice") is alice and bob.mailbox.take_nowait(10) == []
    hub.detach_device(first, "quit")
    (leave,) = payloads(bob.mailbox.take_nowait(10))
    assert isinstance(leave, Left) and (leave.nick, leave.reason) == ("alice", "quit")
    assert hub.find("alice") is None


def test_a_slow_device_is_dropped_alone() -> None:
    hub = Hub()
    alice = hub.attach("alice", Mailbox(100), address="127.0.0.1:1", transport="tcp")
    slow = hub.add_device(alice, Mailbox(1), address="127.0.0.1:2", transport="tcp")
    bob = hub.attach("bob", Mailbox(100), address="127.0.0.1:3", transport="tcp")
    hub.join(alice, "#lobby")  # fills the slow one's only place
    hub.join(bob, "#lobby")
    message = hub.say(bob, "#lobby", "hi")
    assert (slow.close_code, slow.closed, alice.closed) == ("slow_consumer", True, False)
    assert alice.devices == [alice.devices[0]] and alice.mailbox is alice.devices[0].mailbox
    assert payloads(alice.mailbox.take_nowait(10))[-1] == message
    assert not any(isinstance(e, Left) for e in payloads(bob.mailbox.take_nowait(10)))
    assert hub.metrics.queue_drops_total._value.get() == 1


def test_closing_the_only_device_closes_the_session() -> None:
    hub = Hub()
    alice = hub.attach("alice", Mailbox(10), address="127.0.0.1:1", transport="tcp")
    alice.devices[0].close("ping_timeout", "ping timeout")
    assert (alice.closed, alice.close_code) == (True, "ping_timeout")
    assert alice.devices[0].ending == ("ping_timeout", "ping timeout")


def test_the_keepalive_closes_a_silent_device_alone() -> None:
    _hub, alice, first, second, _bob = two_devices()
    heard = {first: 0.0, second: 0.0}
    sent: list[Device | Session] = []
    keepalive = Keepalive(lambda to, event: sent.append(to), idle=60, answer_within=30)
    for connection in (first, second):
        keepalive.watch(
            connection,
            SimpleNamespace(heard=lambda c=connection: heard[c]),
            lambda: ServerPing(token="t"),
        )
    keepalive.sweep(60.0)
    assert sent == [first, second]  # each pinged on its own connection
    heard[first] = 70.0
    keepalive.sweep(90.0)
    assert (first.closed, second.closed, alice.closed) == (False, True, False)
    assert second.ending == ("ping_timeout", PING_TIMEOUT)


# ------------------------------------------------------------------ real connections


@contextlib.asynccontextmanager
async def device(
    chat: TestServer, nick: str = "alice", *, websocket: bool = False, register: bool = False
) -> AsyncIterator[ChatClient]:
    """A connection logged in to ``nick``'s account (registered first with ``register``)."""
    async with open_client(chat, websocket=websocket) as client:
        await client.login(nick, password=PASSWORD, **({"register": True} if register else {}))
        yield client


def welcome_of(client: ChatClient) -> Any:
    return next(e for e in client.history if e.TYPE == "welcome")


def texts(client: ChatClient, kind: str = "message") -> list[str]:
    return [e.text for e in client.history if e.TYPE == kind]


async def test_two_connections_of_one_account_get_every_room_line() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        tcp = await stack.enter_async_context(device(chat, register=True))
        assert welcome_of(tcp).connections is None and welcome_of(tcp).rooms is None
        carol = await stack.enter_async_context(open_client(chat, "carol"))
        await carol.command("/join #dev")
        await carol.expect("join", lambda e: e.nick == "carol" and e.room == "#dev")
        await tcp.command("/join #dev")
        await carol.expect("join", lambda e: e.nick == "alice" and e.room == "#dev")
        ws = await stack.enter_async_context(device(chat, websocket=True))
        second = welcome_of(ws)
        assert (second.nick, second.account, second.connections) == ("alice", True, 2)
        assert (second.room, second.rooms) == ("#dev", ["#lobby", "#dev"])

        await carol.say("from carol", room="#dev")
        for client in (tcp, ws):
            await client.expect("message", lambda e: e.text == "from carol")
        await tcp.say("from the laptop")
        await ws.say("from the phone", room="#lobby")
        for client in (tcp, ws):
            for _ in range(2):
                await client.expect("message")
            assert sorted(texts(client))[1:] == ["from the laptop", "from the phone"]
        await carol.expect("message", lambda e: e.text == "from the laptop")

        # One user: nobody saw alice join again.
        def joins(client: ChatClient) -> list[str]:
            return [e.room for e in client.history if e.TYPE == "join" and e.nick == "alice"]

        assert (joins(tcp), joins(ws), joins(carol)) == (["#lobby", "#dev"], [], ["#dev"])


async def test_who_lists_the_user_once_and_the_reply_goes_to_the_asker_alone() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        tcp = await stack.enter_async_context(device(chat, register=True))
        ws = await stack.enter_async_context(device(chat, websocket=True))
        carol = await stack.enter_async_context(open_client(chat, "carol"))
        await ws.send({"type": "command", "name": "who", "ref": "w1"})
        await ws.send({"type": "ping", "token": "t", "ref": "p1"})
        reply = await ws.expect("info", lambda e: e.ref == "w1")
        assert reply.data["users"] == ["alice", "carol"]
        await ws.expect("pong", lambda e: e.ref == "p1")
        await carol.say("marker")
        await tcp.expect("message", lambda e: e.text == "marker")
        assert [e for e in tcp.history if getattr(e, "ref", None) in ("w1", "p1")] == []


async def test_closing_one_connection_leaves_nothing_and_the_last_one_leaves() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        tcp = await stack.enter_async_context(device(chat, register=True))
        ws = await stack.enter_async_context(device(chat, websocket=True))
        carol = await stack.enter_async_context(open_client(chat, "carol"))
        await ws.send({"type": "quit", "reason": "phone off"})
        bye = await ws.expect("bye")
        assert bye.code == "quit"
        await carol.say("still there?")
        await tcp.expect("message", lambda e: e.text == "still there?")
        await tcp.say("yes")
        await carol.expect("message", lambda e: e.text == "yes")
        assert [e for e in carol.history if e.TYPE == "leave"] == []
        session = chat.server.hub.find("alice")
        assert session is not None and len(session.devices) == 1
        await tcp.aclose()
        leave = await carol.expect("leave")
        assert leave.nick == "alice"


async def test_each_connection_parks_and_is_pinged_and_closed_on_its_own() -> None:
    config = local_config(park_after=0.05, idle_timeout=0.3, ping_timeout=0.5)
    async with open_test_server(config=config) as chat, contextlib.AsyncExitStack() as stack:
        answers = await stack.enter_async_context(device(chat, register=True))
        silent = await stack.enter_async_context(device(chat))
        with trio.fail_after(5):
            while len(chat.server.parking) != 2:  # noqa: ASYNC110 (the server's state)
                await trio.sleep(0.01)

        async def keep_answering() -> None:
            while True:
                ping = await answers.expect("ping")
                await answers.send({"type": "pong", "token": ping.token})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_answering)
            await silent.expect("ping")  # and never answers
            assert (await silent.expect("bye")).code == "ping_timeout"
            nursery.cancel_scope.cancel()
        session = chat.server.hub.find("alice")
        assert session is not None and len(session.devices) == 1 and not session.closed
        await answers.say("still here")
        await answers.expect("message", lambda e: e.text == "still here")
        assert [e for e in answers.history if e.TYPE == "leave"] == []


async def test_a_private_message_reaches_every_connection() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        tcp = await stack.enter_async_context(device(chat, register=True))
        ws = await stack.enter_async_context(device(chat, websocket=True))
        carol = await stack.enter_async_context(open_client(chat, "carol"))
        await carol.command("/msg alice psst")
        for client in (tcp, ws, carol):
            event = await client.expect("private")
            assert (event.nick, event.to, event.text) == ("carol", "alice", "psst")
        await ws.command("/msg carol back")
        for client in (tcp, ws, carol):
            await client.expect("private", lambda e: e.text == "back")


async def test_login_from_a_guest_connection_joins_the_connected_user() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        laptop = await stack.enter_async_context(device(chat, register=True))
        await laptop.command("/join #dev")
        carol = await stack.enter_async_context(open_client(chat, "carol"))
        phone = await stack.enter_async_context(open_client(chat, "phone"))
        await carol.expect("join", lambda e: e.nick == "phone")
        await phone.send({"type": "command", "name": "login", "args": f"alice {PASSWORD}"})
        welcome = await phone.expect("welcome")
        assert (welcome.nick, welcome.rooms, welcome.connections) == (
            "alice",
            ["#lobby", "#dev"],
            2,
        )
        assert (await phone.expect("info")).text == "logged in as alice"
        leave = await carol.expect("leave")
        assert (leave.nick, leave.reason) == ("phone", "logged in as alice")
        await carol.say("hello both")
        for client in (laptop, phone):
            await client.expect("message", lambda e: e.text == "hello both")
        await phone.send({"type": "command", "name": "who", "args": "#lobby", "ref": "w"})
        assert (await phone.expect("info", lambda e: e.ref == "w")).data["users"] == [
            "alice",
            "carol",
        ]
        await phone.say("from the phone", room="#dev")
        await laptop.expect("message", lambda e: e.text == "from the phone")


async def test_login_moves_one_connection_of_a_user_with_two() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(device(chat, register=True))
        bob_laptop = await stack.enter_async_context(device(chat, "bob", register=True))
        bob_phone = await stack.enter_async_context(device(chat, "bob", websocket=True))
        await bob_phone.send({"type": "command", "name": "login", "args": f"alice {PASSWORD}"})
        assert (await bob_phone.expect("welcome")).nick == "alice"
        assert (await bob_phone.expect("info")).text == "logged in as alice"
        await bob_laptop.say("bob stays")
        await bob_phone.expect("message", lambda e: e.text == "bob stays")
        await bob_laptop.expect("message", lambda e: e.text == "bob stays")  # all before it
        # The reply went to the connection that logged in, not to bob's other one.
        assert [e for e in bob_laptop.history if e.TYPE in ("info", "leave")] == []
        bob = chat.server.hub.find("bob")
        assert bob is not None and len(bob.devices) == 1


async def test_a_guest_nick_cannot_be_shared() -> None:
    async with open_test_server() as chat, open_client(chat, "gus"), open_client(chat) as other:
        await other.send({"type": "hello", "nick": "gus"})
        error = await other.expect("error")
        assert error.code == "nick_taken"


async def test_connections_per_account_are_capped() -> None:
    config = local_config(max_connections_per_account=2)
    async with open_test_server(config=config) as chat, contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(device(chat, register=True))
        await stack.enter_async_context(device(chat, websocket=True))
        third = await stack.enter_async_context(open_client(chat))
        await third.send({"type": "hello", "nick": "alice", "password": PASSWORD})
        error = await third.expect("error")
        assert error.code == "too_many_connections"
        assert error.text == "alice is logged in on 2 connections already (limit 2)"
        await third.login("dora")  # the connection is still there for another hello


async def test_a_slow_second_connection_is_dropped_alone() -> None:
    # Room for 10,000 events but 64 KiB: the stalled connection soon has too much queued.
    config = local_config(outbox_size=10_000, outbox_bytes=64 * 1024)
    async with open_test_server(config=config) as chat, contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(device(chat, register=True))
        carol = await stack.enter_async_context(open_client(chat, "carol"))
        with stalled_client(chat, "alice", password=PASSWORD) as sock:
            sock.settimeout(5)
            head = await trio.to_thread.run_sync(sock.recv, 4096)
            assert b'"connections":2' in head  # the welcome: it is connected
            session = chat.server.hub.find("alice")
            assert session is not None
            stalled = session.devices[1]
            with trio.fail_after(20):
                n = 0
                while stalled in session.devices:
                    await carol.say(f"{n} " + "y" * 12_000)
                    await alice.expect("message", lambda e, n=n: e.text.startswith(f"{n} "))
                    n += 1
            assert stalled.close_code == "slow_consumer" and n < 1000
            await carol.say("after")
            await alice.expect("message", lambda e: e.text == "after")
            assert [e for e in carol.history if e.TYPE == "leave"] == []
            assert chat.server.hub.find("alice") is session and not session.closed
            # The stalled one is told why, after what was queued, and closed.
            sock.setblocking(True)
            rest = b""
            while chunk := await trio.to_thread.run_sync(sock.recv, 1 << 16):
                rest += chunk
            assert b'"code":"slow_consumer"' in rest


async def test_a_login_to_a_user_of_another_node_is_refused(broker_url: str) -> None:
    config = local_config(broker=broker_url)
    async with (
        open_test_server(config=config) as a,
        open_test_server(config=config) as b,
        contextlib.AsyncExitStack() as stack,
    ):
        bob = await stack.enter_async_context(open_client(b, "bob"))
        laptop = await stack.enter_async_context(device(a, register=True))
        await bob.expect("join", lambda e: e.nick == "alice")
        other = await stack.enter_async_context(open_client(b))
        await other.send({"type": "hello", "nick": "alice", "password": PASSWORD})
        error = await other.expect("error")
        assert error.code == "nick_taken"
        assert error.text == "alice is logged in on another server of this chat"
        # On alice's own node the same login joins her, and works through the shared log.
        phone = await stack.enter_async_context(device(a, websocket=True))
        await phone.send({"type": "command", "name": "who", "ref": "w"})
        reply = await phone.expect("info", lambda e: e.ref == "w")
        assert reply.data["users"] == ["alice", "bob"]
        await bob.say("to both of you")
        for client in (laptop, phone):
            await client.expect("message", lambda e: e.text == "to both of you")
        assert [e for e in laptop.history if getattr(e, "ref", None) == "w"] == []


async def test_text_mode_welcome_names_the_rooms_and_the_connections() -> None:
    async with open_test_server() as chat, device(chat, register=True):
        with socket.create_connection(chat.address("tcp")) as sock:
            sock.settimeout(5)
            sock.sendall(f"/login alice {PASSWORD}\n".encode())
            seen = b""
            while b"connections" not in seen:
                seen += await trio.to_thread.run_sync(sock.recv, 4096)
            assert b"-- Hello alice, you are in #lobby on trio-chat, now on 2 connections." in seen
