"""What one node gives its users, every node of a broker gives (issue 14), through a real
Redis: typing notices of a user on another node, in their place among the room's lines."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from test_broker import nodes
from test_typing import client, typings

from trio_chat.broker.log import BadEntry, decode_entry, encode_entry
from trio_chat.testing import ChatClient

# ------------------------------------------------------------------ sans-IO


def test_a_typing_entry_round_trips() -> None:
    data = {"room": "#dev", "nick": "alice", "active": True}
    entry = decode_entry("12-3", encode_entry("typing", "node-a", 4, data=data))
    assert (entry.kind, entry.node, entry.seq, entry.data) == ("typing", "node-a", 4, data)


def test_a_kind_this_node_does_not_know_is_still_refused() -> None:
    with pytest.raises(BadEntry):
        decode_entry("1-1", b'{"k":"typed","n":"x","s":1}')


async def log_kinds(url: str) -> list[str]:
    """The kind of every entry of the shared log (read straight from Redis)."""
    import coredis

    async with coredis.Redis.from_url(url) as redis:
        items = await redis.xrange("trio-chat:log")
    return [decode_entry(i.identifier.decode(), i.field_values[b"x"]).kind for i in items]


# ------------------------------------------------------------------ typing


async def marker(sender: ChatClient, *receivers: ChatClient, text: str = "marker") -> None:
    """A line in #lobby everyone waits for: what its sender's node sent before it has
    reached everyone (one node's entries are in the log in the order it appended them)."""
    await sender.say(text, room="#lobby")
    for receiver in (sender, *receivers):
        await receiver.expect("message", lambda e: e.text == text)


async def test_typing_reaches_the_other_nodes_members_that_asked_in_the_logs_order(
    broker_url: str,
) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:

        async def enter(node: Any, nick: str, **hello: Any) -> ChatClient:
            return await stack.enter_async_context(client(node, nick, **hello))

        alice = await enter(a, "alice", typing=True)
        near = await enter(a, "near", typing=True)
        far = await enter(b, "far", typing=True)
        ws = await enter(b, "ws", websocket=True, typing=True)
        deaf = await enter(b, "deaf")  # did not ask
        off = await enter(b, "off", typing=True)
        await off.send({"type": "command", "name": "typing", "args": "off", "ref": "o"})
        await off.expect("info", lambda e: e.ref == "o")
        everyone = (alice, near, far, ws, deaf, off)
        await marker(off, *everyone[:-1], text="all here")

        # Thinned at alice's node: of three starts, one crosses; then the stop.
        for _ in range(3):
            await alice.send({"type": "typing", "active": True})
        await alice.send({"type": "typing", "active": False})
        await marker(alice, *everyone[1:], text="first")
        shown = [("#lobby", "alice", True), ("#lobby", "alice", False)]
        for c in (near, far, ws):
            assert typings(c) == shown
        for c in (alice, deaf, off):  # never the typist's own; not those who did not ask
            assert typings(c) == []

        # A start, then a line at once: the line ends it, and comes after it on node b.
        await alice.send({"type": "typing", "active": True})
        await marker(alice, *everyone[1:], text="second")
        for c in (near, far, ws):
            kinds = [(e.TYPE, getattr(e, "text", None)) for e in c.history]
            at = kinds.index(("message", "second"))
            assert kinds[at - 1] == ("typing", None), kinds[at - 3 :]
            assert typings(c) == [*shown, ("#lobby", "alice", True)]

        # A receiver on b types back: alice (on a) gets it; b's users too.
        await far.send({"type": "typing", "active": True})
        assert (await alice.expect("typing")).nick == "far"
        assert (await ws.expect("typing")).nick == "far"
        # Going off at alice's node ends her typing shown on b too.
        await alice.send({"type": "typing", "active": True})
        await far.expect("typing", lambda e: e.nick == "alice" and e.active)
        await alice.send({"type": "command", "name": "typing", "args": "off"})
        await far.expect("typing", lambda e: e.nick == "alice" and not e.active)


async def test_a_muted_typist_is_dropped_and_a_room_of_one_node_costs_the_log_nothing(
    broker_url: str,
) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(client(a, "alice", typing=True))
        bob = await stack.enter_async_context(client(a, "bob", typing=True))
        far = await stack.enter_async_context(client(b, "far", typing=True))
        await marker(far, alice, bob)

        # #solo has members on node a only: typing there is not written to the log.
        await alice.join("#solo")
        await bob.join("#solo")
        await alice.send({"type": "typing", "room": "#solo", "active": True})
        assert (await bob.expect("typing")).room == "#solo"
        await marker(alice, bob, far)  # in #lobby: node a appended all it had before it
        assert "typing" not in await log_kinds(broker_url)

        # far creates #dev (its operator) and mutes alice there: her typing is dropped.
        await far.join("#dev")
        await alice.join("#dev")
        await far.expect("join", lambda e: e.nick == "alice" and e.room == "#dev")
        await far.send({"type": "command", "name": "mute", "args": "alice", "room": "#dev"})
        await alice.expect("info", lambda e: e.text == "far muted you in #dev")
        await alice.send({"type": "typing", "room": "#dev", "active": True})
        await alice.send({"type": "typing", "room": "#lobby", "active": True})
        await far.expect("typing", lambda e: e.room == "#lobby")
        await marker(alice, bob, far, text="after")
        assert typings(far) == [("#lobby", "alice", True)]
        assert [e for e in alice.history if e.TYPE == "error"] == []
