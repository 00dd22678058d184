"""Typing notices: the thinning without sockets, then who gets ``typing`` events over real
connections (JSON lines, WebSocket, text mode), ``/typing off``, mutes and bad frames."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import trio

from trio_chat.testing import ChatClient, TestServer, open_client, open_test_server
from trio_chat.typing_notices import TYPING_EVERY, TypingThrottle

# ----------------------------------------------------------------- the thinning, pure


def test_one_active_notice_passes_per_interval() -> None:
    throttle = TypingThrottle()
    assert throttle.passes(1, "#dev", True, now=100.0)
    assert not throttle.passes(1, "#dev", True, now=101.0)
    assert not throttle.passes(1, "#dev", True, now=100.0 + TYPING_EVERY - 0.01)
    assert throttle.passes(1, "#dev", True, now=100.0 + TYPING_EVERY)
    # Per user and per room.
    assert throttle.passes(2, "#dev", True, now=101.0)
    assert throttle.passes(1, "#lobby", True, now=101.0)


def test_a_stop_passes_only_after_a_start_that_passed() -> None:
    throttle = TypingThrottle()
    assert not throttle.passes(1, "#dev", False, now=1.0)  # nobody was told of a start
    assert throttle.passes(1, "#dev", True, now=2.0)
    assert not throttle.passes(1, "#dev", True, now=2.5)  # thinned
    assert throttle.passes(1, "#dev", False, now=3.0)
    assert not throttle.passes(1, "#dev", False, now=3.5)  # told already
    assert len(throttle) == 0  # nothing kept for someone not typing
    assert throttle.passes(1, "#dev", True, now=3.6)  # a new start passes at once


def test_a_line_said_ends_the_typing_so_the_next_start_passes_at_once() -> None:
    throttle = TypingThrottle()
    assert throttle.passes(1, "#dev", True, now=1.0)
    assert 1 in throttle.typists
    assert throttle.ended(1, "#dev")
    assert 1 not in throttle.typists
    assert not throttle.ended(1, "#dev")
    assert not throttle.passes(1, "#dev", False, now=1.1)  # ended: no stop to tell
    assert throttle.passes(1, "#dev", True, now=1.2)


def test_forgetting_a_user_drops_all_its_rooms() -> None:
    throttle = TypingThrottle(every=10.0)
    assert throttle.passes(1, "#a", True, now=0.0)
    assert throttle.passes(1, "#b", True, now=0.0)
    assert sorted(throttle.shown(1)) == ["#a", "#b"]
    throttle.forget(1)
    assert throttle.shown(1) == [] and len(throttle) == 0
    assert throttle.passes(1, "#a", True, now=1.0)


# ----------------------------------------------------------------- real connections


@contextlib.asynccontextmanager
async def client(chat: TestServer, nick: str, *, websocket: bool = False, **hello: Any) -> Any:
    async with open_client(chat, websocket=websocket) as c:
        await c.login(nick, **hello)
        yield c


def typings(c: ChatClient) -> list[tuple[str, str, bool]]:
    return [(e.room, e.nick, e.active) for e in c.history if e.TYPE == "typing"]


async def handled(client: ChatClient) -> None:
    """Every frame ``client`` sent before has been handled (a frame another connection
    sends next comes after it), and whatever it was answered has arrived."""
    await client.send({"type": "ping", "ref": "handled"})
    await client.expect("pong", lambda e: e.ref == "handled")


async def marker(sender: ChatClient, *receivers: ChatClient, text: str = "marker") -> None:
    """A line everyone waits for: what was sent to them before it has arrived."""
    await sender.say(text)
    for receiver in (sender, *receivers):
        await receiver.expect("message", lambda e: e.text == text)


async def test_typing_reaches_the_members_that_asked_and_no_one_else() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(client(chat, "alice", typing=True))
        bob = await stack.enter_async_context(client(chat, "bob", typing=True))
        carol = await stack.enter_async_context(
            client(chat, "carol", websocket=True, typing=True, batch=True)
        )
        dave = await stack.enter_async_context(client(chat, "dave"))  # did not ask
        with socket.create_connection(chat.address("tcp")) as text_user:  # text mode
            text_user.settimeout(5)
            text_user.sendall(b"tina\n")
            for c in (alice, bob, carol, dave):
                await c.expect("join", lambda e: e.nick == "tina")

            await alice.send({"type": "typing", "active": True})
            for c in (bob, carol):
                event = await c.expect("typing")
                assert (event.room, event.nick, event.active) == ("#lobby", "alice", True)
            await alice.send({"type": "typing", "room": "#lobby", "active": False})
            for c in (bob, carol):
                await c.expect("typing", lambda e: e.active is False)
            await marker(alice, bob, carol, dave)
            assert typings(dave) == [] and typings(alice) == []  # never the typist's own
            assert typings(bob) == [("#lobby", "alice", True), ("#lobby", "alice", False)]

            seen = b""
            while b"<alice> marker" not in seen:
                seen += await trio.to_thread.run_sync(text_user.recv, 4096)
            assert b"typing" not in seen and b"-- \n" not in seen


async def test_typing_is_thinned_and_a_line_said_ends_it() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(client(chat, "alice"))
        bob = await stack.enter_async_context(client(chat, "bob", typing=True))
        for _ in range(5):  # a client sending on every key
            await alice.send({"type": "typing", "active": True})
        await marker(alice, bob, text="first")
        assert typings(bob) == [("#lobby", "alice", True)]
        # The line ended the typing: a new start passes at once, and a stop after it.
        await alice.send({"type": "typing", "active": True})
        await alice.send({"type": "typing", "active": True})
        await alice.send({"type": "typing", "active": False})
        await alice.send({"type": "typing", "active": False})
        await marker(alice, bob, text="second")
        assert typings(bob) == [("#lobby", "alice", True)] * 2 + [("#lobby", "alice", False)]
        kinds = [e.TYPE for e in bob.history if e.TYPE in ("typing", "message")]
        assert kinds == ["typing", "message", "typing", "typing", "message"]


async def test_typing_of_one_account_reaches_another_users_devices_not_its_own() -> None:
    password = {"password": "pw-123456"}
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        laptop = await stack.enter_async_context(
            client(chat, "alice", typing=True, register=True, **password)
        )
        phone = await stack.enter_async_context(
            client(chat, "alice", websocket=True, typing=True, **password)
        )
        bob = await stack.enter_async_context(client(chat, "bob", typing=True))
        await bob.send({"type": "typing", "active": True})
        for device in (laptop, phone):
            await device.expect("typing", lambda e: e.nick == "bob")
        await laptop.send({"type": "typing", "active": True})
        await bob.expect("typing", lambda e: e.nick == "alice")
        await marker(bob, laptop, phone)
        assert typings(laptop) == typings(phone) == [("#lobby", "bob", True)]


async def test_typing_off_stops_sending_and_receiving() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(client(chat, "alice", typing=True))
        bob = await stack.enter_async_context(client(chat, "bob", typing=True))
        await alice.send({"type": "typing", "active": True})
        await bob.expect("typing", lambda e: e.active)
        await alice.send({"type": "command", "name": "typing", "args": "off", "ref": "t"})
        reply = await alice.expect("info", lambda e: e.ref == "t")
        assert reply.data == {"typing": False}
        # Going off ends the typing shown.
        await bob.expect("typing", lambda e: e.nick == "alice" and not e.active)
        await alice.send({"type": "typing", "active": True})  # not sent
        await bob.send({"type": "typing", "active": True})  # alice gets none
        await handled(alice)  # (else bob's marker could pass her typing by)
        await marker(bob, alice)
        assert typings(alice) == []
        assert typings(bob) == [("#lobby", "alice", True), ("#lobby", "alice", False)]
        await alice.send({"type": "command", "name": "typing", "args": "on", "ref": "t2"})
        assert (await alice.expect("info", lambda e: e.ref == "t2")).data == {"typing": True}
        await bob.send({"type": "typing", "active": False})
        await bob.send({"type": "typing", "active": True})
        await alice.expect("typing", lambda e: e.nick == "bob")
        await alice.send({"type": "command", "name": "typing", "args": "maybe", "ref": "t3"})
        assert (await alice.expect("error", lambda e: e.ref == "t3")).code == "bad_arguments"


async def test_typing_outside_a_room_is_refused_and_a_muted_users_is_dropped() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(client(chat, "alice", typing=True))
        bob = await stack.enter_async_context(client(chat, "bob", typing=True))
        await alice.send({"type": "typing", "room": "#nowhere", "active": True, "ref": "r"})
        error = await alice.expect("error", lambda e: e.ref == "r")
        assert (error.code, error.text) == ("not_in_room", "you are not in #nowhere")
        await alice.send({"type": "typing", "ref": "m"})
        assert (await alice.expect("error", lambda e: e.ref == "m")).code == "missing_field"
        await alice.send({"type": "typing", "active": "yes", "ref": "b"})
        assert (await alice.expect("error", lambda e: e.ref == "b")).code == "bad_field"

        await alice.join("#dev")  # alice creates #dev (its operator) before bob comes
        await bob.command("/join #dev")
        await alice.expect("join", lambda e: e.nick == "bob" and e.room == "#dev")
        await alice.send({"type": "command", "name": "mute", "args": "bob", "room": "#dev"})
        await bob.expect("info", lambda e: (e.data or {}).get("event") == "mode")
        await bob.send({"type": "typing", "room": "#dev", "active": True, "ref": "q"})
        await handled(bob)  # (else alice's marker could pass his typing by)
        await marker(alice, bob)  # in #dev, alice's current room
        assert typings(alice) == []
        assert [e for e in bob.history if e.TYPE == "error"] == []  # dropped without a word
