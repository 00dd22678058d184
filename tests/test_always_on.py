"""Always-on presence (``always_on``): an account's user whose last connection ends stays in
its rooms, shown away ``offline``, and logging in again brings it back; guests leave as
ever, and so does everyone when the session itself is closed. Over real connections."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import trio
from test_devices import PASSWORD, device

from trio_chat.always_on import AlwaysOn, OfflineMailbox
from trio_chat.hub import Hub
from trio_chat.mailbox import Mailbox
from trio_chat.parcels import Parcel
from trio_chat.protocol import Info, Message
from trio_chat.testing import (
    ChatClient,
    TestServer,
    local_config,
    open_client,
    open_test_server,
    stalled_client,
)

TIMEOUT = 10.0


# ----------------------------------------------------------------- without sockets


def events(mailbox: Mailbox) -> list[Any]:
    return [item.event if isinstance(item, Parcel) else item for item in mailbox.take_nowait(100)]


def test_the_hub_keeps_an_always_on_user_offline_and_takes_it_back() -> None:
    hub = Hub()
    keeper = AlwaysOn(hub)
    alice = hub.attach("alice", Mailbox(100), address="127.0.0.1:1", transport="tcp")
    alice.account, alice.always_on = "alice", True
    bob = hub.attach("bob", Mailbox(100), address="127.0.0.1:2", transport="tcp")
    bob.devices[0].away_notify = True
    for session in (alice, bob):
        hub.join(session, "#lobby")
    room = hub.room("#lobby")
    assert room is not None
    bob.devices[0].mailbox.take_nowait(100)

    hub.detach_device(alice.devices[0], "connection lost")
    assert hub.find("alice") is alice and alice.id in room.members
    assert alice.id not in room.here and alice.away == "offline" and keeper.offline == 1
    told = events(bob.devices[0].mailbox)
    assert [(e.TYPE, e.data) for e in told] == [
        ("info", {"event": "away", "nick": "alice", "away": "offline"})
    ]
    assert isinstance(alice.mailbox, OfflineMailbox)
    assert alice.mailbox.offer(Parcel(Info(text="dropped")))  # taken, kept nowhere

    device = hub.add_device(alice, Mailbox(100), address="127.0.0.1:3", transport="websocket")
    assert alice.devices == [device] and alice.mailbox is device.mailbox and device.rejoined
    assert room.here[alice.id] is alice and alice.away is None and keeper.offline == 0
    hub.say(bob, "#lobby", "welcome back")
    got = events(device.mailbox)
    assert [e.text for e in got if isinstance(e, Message)] == ["welcome back"]

    # A guest leaves with its last connection; closing an offline user's session too.
    hub.detach_device(alice.devices[0], "connection lost")
    alice.close("shutdown", "the server is shutting down")
    assert hub.find("alice") is None and alice.id not in room.members
    hub.detach_device(bob.devices[0], "connection lost")
    assert hub.find("bob") is None


# ----------------------------------------------------------------- real connections


def always_on(**overrides: Any) -> Any:
    return local_config(always_on=True, **overrides)


async def who(client: ChatClient, room: str = "#lobby", ref: str = "w") -> dict[str, Any]:
    await client.send({"type": "command", "name": "who", "args": room, "ref": ref})
    reply = await client.expect("info", lambda e: e.ref == ref)
    return {m["nick"]: m for m in reply.data["members"]}


async def gone_offline(chat: TestServer, watcher: ChatClient, nick: str = "alice") -> None:
    """Wait until ``watcher`` (logged in with ``away_notify``) is told ``nick`` went
    offline; then ``nick`` is there with no connection."""
    await watcher.expect(
        "info",
        lambda e: (
            (e.data or {}).get("event") == "away"
            and e.data["nick"] == nick
            and e.data["away"] == "offline"
        ),
    )
    session = chat.server.hub.find(nick)
    assert session is not None and session.devices == [] and session.away == "offline"


async def test_an_account_stays_offline_and_comes_back_with_its_rooms() -> None:
    async with open_test_server(config=always_on()) as chat, contextlib.AsyncExitStack() as stack:
        bob = await stack.enter_async_context(open_client(chat))
        await bob.login("bob", away_notify=True)
        async with device(chat, register=True) as alice:
            await alice.command("/join #dev")  # creates it: its operator
            await alice.expect("join", lambda e: e.nick == "alice" and e.room == "#dev")
            await bob.command("/join #dev")
            await alice.expect("join", lambda e: e.nick == "bob" and e.room == "#dev")
        # The connection is gone; alice is not.
        away = await bob.expect("info", lambda e: (e.data or {}).get("event") == "away")
        assert away.data == {"event": "away", "nick": "alice", "away": "offline"}
        assert away.text == "alice is away: offline"
        members = await who(bob, "#dev")
        assert members["alice"]["away"] == "offline" and members["alice"]["op"] is True
        await bob.send({"type": "command", "name": "msg", "args": "alice psst", "ref": "m"})
        told = await bob.expect("info", lambda e: e.ref == "m")
        assert told.data == {"nick": "alice", "away": "offline"}
        await bob.say("while you were out", room="#dev")
        await bob.expect("message", lambda e: e.text == "while you were out")
        assert chat.server.always_on is not None and chat.server.always_on.offline == 1
        room = chat.server.hub.room("#dev")
        alice_id = chat.server.hub.find("alice").id
        assert alice_id in room.members and alice_id not in room.here  # costs no fan-out

        async with device(chat, websocket=True) as back:
            welcome = back.history[-1]
            assert (welcome.rooms, welcome.connections, welcome.room) == (
                ["#lobby", "#dev"],
                1,
                "#dev",
            )
            history = await back.expect("history", lambda e: e.room == "#dev")
            assert [m["text"] for m in history.messages][-1] == "while you were out"
            back_again = await bob.expect(
                "info", lambda e: (e.data or {}).get("event") == "away" and e.ref is None
            )
            assert back_again.data["away"] is None
            assert (await who(bob, "#dev", "w2"))["alice"]["away"] is None
            await bob.say("welcome back", room="#dev")
            await back.expect("message", lambda e: e.text == "welcome back")
            await back.say("thanks", room="#dev")
            await bob.expect("message", lambda e: e.text == "thanks")
            alice_seen = [
                (e.TYPE, e.room)
                for e in bob.history
                if e.TYPE in ("leave", "join") and e.nick == "alice"
            ]
            assert alice_seen == [("join", "#lobby")]  # her first login: no leave, no join
        await gone_offline(chat, bob)


async def test_quit_keeps_an_always_on_user_and_guests_leave_as_ever() -> None:
    async with open_test_server(config=always_on()) as chat, contextlib.AsyncExitStack() as stack:
        bob = await stack.enter_async_context(open_client(chat))
        await bob.login("bob", away_notify=True)
        async with device(chat, register=True) as alice:
            await alice.send({"type": "quit", "reason": "bye for now"})
            assert (await alice.expect("bye")).code == "quit"
        await gone_offline(chat, bob)
        async with open_client(chat, "gus") as gus:
            await bob.expect("join", lambda e: e.nick == "gus")
            await gus.send({"type": "quit"})
            await gus.expect("bye")
        leave = await bob.expect("leave")
        assert (leave.nick, leave.reason) == ("gus", "quit")
        assert chat.server.hub.find("gus") is None
        assert "alice" in await who(bob)
        # Nobody takes the nick meanwhile.
        async with open_client(chat) as other:
            await other.send({"type": "hello", "nick": "alice"})
            assert (await other.expect("error")).code == "nick_registered"


async def test_off_by_default_the_user_leaves_with_its_last_connection() -> None:
    async with open_test_server() as chat, open_client(chat, "bob") as bob:
        async with device(chat, register=True):
            await bob.expect("join", lambda e: e.nick == "alice")
        leave = await bob.expect("leave")
        assert leave.nick == "alice"
        assert chat.server.hub.find("alice") is None


async def test_three_devices_then_none_then_a_login_from_a_guest_connection() -> None:
    async with open_test_server(config=always_on()) as chat, contextlib.AsyncExitStack() as stack:
        bob = await stack.enter_async_context(open_client(chat))
        await bob.login("bob", away_notify=True)
        async with contextlib.AsyncExitStack() as devices:
            await devices.enter_async_context(device(chat, register=True))
            await devices.enter_async_context(device(chat, websocket=True))
            sock = devices.enter_context(socket.create_connection(chat.address("tcp")))
            sock.settimeout(TIMEOUT)
            sock.sendall(f"/login alice {PASSWORD}\n".encode())
            seen = b""
            while b"now on 3 connections" not in seen:
                seen += await trio.to_thread.run_sync(sock.recv, 4096)
            assert len(chat.server.hub.find("alice").devices) == 3
        await gone_offline(chat, bob)
        await bob.say("anyone?")
        await bob.expect("message", lambda e: e.text == "anyone?")
        assert "alice" in await who(bob)
        # A guest connection logs in to the account: it becomes alice, back in her rooms.
        async with open_client(chat, "temp") as temp:
            await bob.expect("join", lambda e: e.nick == "temp")
            await temp.send({"type": "command", "name": "login", "args": f"alice {PASSWORD}"})
            welcome = await temp.expect("welcome")
            assert (welcome.nick, welcome.rooms, welcome.connections) == ("alice", ["#lobby"], 1)
            leave = await bob.expect("leave", lambda e: e.nick == "temp")
            assert leave.reason == "logged in as alice"
            await bob.say("hi alice")
            await temp.expect("message", lambda e: e.text == "hi alice")
            assert (await who(bob, ref="w2"))["alice"]["away"] is None
        await gone_offline(chat, bob)


async def test_closing_the_session_itself_makes_an_offline_user_leave() -> None:
    config = always_on()
    async with open_test_server(config=config) as chat, open_client(chat) as bob:
        await bob.login("bob", away_notify=True)
        async with device(chat, register=True):
            pass
        await gone_offline(chat, bob)
        session = chat.server.hub.find("alice")
        chat.server.disconnect(session, "killed", "removed by an administrator")
        leave = await bob.expect("leave", lambda e: e.nick == "alice")
        assert leave.reason == "removed by an administrator"
        assert chat.server.hub.find("alice") is None
        assert chat.server.always_on is not None and chat.server.always_on.offline == 0
        async with device(chat) as alice:  # a fresh login: a new session in #lobby
            assert alice.history[-1].rooms is None
            await bob.expect("join", lambda e: e.nick == "alice")
        await gone_offline(chat, bob)
    # The server stopped: everyone left, the offline user too.
    assert chat.server.hub.sessions == {}


async def test_a_slow_only_connection_is_dropped_and_the_user_stays_offline() -> None:
    # Room for 10,000 events but 64 KiB: the stalled connection soon has too much queued.
    config = always_on(outbox_size=10_000, outbox_bytes=64 * 1024)
    async with open_test_server(config=config) as chat, open_client(chat) as carol:
        await carol.login("carol", away_notify=True)
        async with device(chat, register=True):
            pass
        await gone_offline(chat, carol)
        with stalled_client(chat, "alice", password=PASSWORD) as sock:
            sock.settimeout(5)
            head = await trio.to_thread.run_sync(sock.recv, 4096)
            assert b'"connections":1' in head  # back from offline, on this connection alone
            await carol.expect("info", lambda e: (e.data or {}).get("away", "-") is None)
            session = chat.server.hub.find("alice")
            assert session is not None and len(session.devices) == 1
            with trio.fail_after(20):
                n = 0
                while session.devices:
                    await carol.say(f"{n} " + "y" * 12_000)
                    await carol.expect("message", lambda e, n=n: e.text.startswith(f"{n} "))
                    n += 1
            assert n < 1000
            offline = [
                e
                for e in carol.history
                if e.TYPE == "info" and (e.data or {}).get("away") == "offline"
            ]
            if len(offline) < 2:  # (the loop may have passed it by already)
                await gone_offline(chat, carol)
            assert session.devices == [] and session.away == "offline"
            assert chat.server.hub.find("alice") is session and not session.closed
            assert [e for e in carol.history if e.TYPE == "leave"] == []
            # The stalled connection is told why, after what was queued, and closed.
            sock.setblocking(True)
            rest = b""
            while chunk := await trio.to_thread.run_sync(sock.recv, 1 << 16):
                rest += chunk
            assert b'"code":"slow_consumer"' in rest
