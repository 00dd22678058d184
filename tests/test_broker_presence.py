"""What one node gives its users, every node of a broker gives (issue 14), through a real
Redis: typing notices of a user on another node, in their place among the room's lines;
an account's read markers, the same on every node (forward only, a database's copied in,
Redis away); users away (always-on users offline, ``/away``) shown away on every node."""

from __future__ import annotations

import contextlib
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
from test_always_on import who
from test_broker import nodes, snapshots_read
from test_devices import device
from test_irc import open_irc
from test_read_markers import message_ids, settled
from test_typing import client, typings

from trio_chat.broker.log import BadEntry, decode_entries, decode_entry, encode_entry
from trio_chat.broker.markers import RedisMarkers
from trio_chat.irc import numerics as n
from trio_chat.names import name_key
from trio_chat.testing import ChatClient, local_config, open_test_server

if TYPE_CHECKING:
    from conftest import RedisServer

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
    return [
        entry.kind
        for i in items
        for entry in decode_entries(i.identifier.decode(), i.field_values[b"x"])
    ]


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


# ------------------------------------------------------------------ read markers


async def wait_gone(nick: str, *watchers: ChatClient) -> None:
    """Every watcher saw ``nick`` leave: its node, and theirs, let go of it."""
    for watcher in watchers:
        await watcher.expect("leave", lambda e: e.nick == nick)


async def test_markers_read_on_one_node_come_with_a_login_on_another(broker_url: str) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        near = await stack.enter_async_context(client(a, "near"))
        far = await stack.enter_async_context(client(b, "far"))
        async with device(a, register=True) as laptop:
            await far.expect("join", lambda e: e.nick == "alice")
            first, second, third = await message_ids(far, "one", "two", "three")
            await laptop.expect("message", lambda e: e.id == third)
            await laptop.send({"type": "read", "id": second})
            await settled(laptop)
        await wait_gone("alice", near, far)

        async with device(b) as phone:  # alice on node b: node a's marker
            assert phone.history[-1].read == {"#lobby": second}
            assert (await phone.expect("read")).message_id == second
            await phone.send({"type": "read", "id": third})
            await phone.send({"type": "read", "id": first})  # back: nothing
            await settled(phone)
        await wait_gone("alice", near, far)

        # Back on node a, which had read them at the first login: b's move is there.
        async with device(a) as laptop:
            assert laptop.history[-1].read == {"#lobby": third}
            assert (await laptop.expect("read")).message_id == third


async def test_a_marker_moves_forward_only_when_nodes_race(broker_url: str) -> None:
    async with (
        RedisMarkers.open(broker_url, prefix="one") as one,
        RedisMarkers.open(broker_url, prefix="one") as other,
    ):
        await one.advance_read_marker("alice", "#dev", "#Dev", 10)
        await other.advance_read_marker("alice", "#dev", "#Dev", 5)
        assert await one.read_markers("alice") == [("#dev", "#Dev", 10)]

        ids = list(range(11, 211))
        random.shuffle(ids)
        async with trio.open_nursery() as nursery:  # two nodes, in no order at all
            for i, marker in enumerate(ids):
                book = one if i % 2 else other
                nursery.start_soon(book.advance_read_marker, "alice", "#dev", "#Dev", marker)
        assert await other.read_markers("alice") == [("#dev", "#Dev", 210)]

        # A value that is not ours is no marker, and the next move replaces it.
        import coredis

        async with coredis.Redis.from_url(broker_url) as redis:
            await redis.hset(one.key("bob"), {"#lobby": "not json", "#dev": '{"id": "7"}'})
        assert await one.read_markers("bob") == []
        await one.advance_read_marker("bob", "#lobby", "#lobby", 1)
        assert await one.read_markers("bob") == [("#lobby", "#lobby", 1)]
        assert await one.copy_in([("bob", "#lobby", "#lobby", 1), ("bob", "#x", "#X", 4)]) == 1


async def test_markers_a_node_had_before_the_broker_come_with_it(
    broker_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "alone.db"
    async with (
        open_test_server(config=local_config(db=str(db))) as alone,  # no broker yet
        device(alone, register=True) as alice,
        client(alone, "bob") as bob,
    ):
        (said,) = await message_ids(bob, "before the broker")
        await alice.expect("message", lambda e: e.id == said)
        await alice.send({"type": "read", "id": said})
        await settled(alice)
    async with nodes(broker_url, 1) as (b,), contextlib.AsyncExitStack() as stack:
        with caplog.at_level(logging.INFO, logger="trio_chat.broker"):
            await stack.enter_async_context(
                open_test_server(config=local_config(broker=broker_url, db=str(db)))
            )
        assert "1 of this node's 1 read markers copied" in caplog.text
        async with device(b) as phone:  # logged in on the node that never had them
            assert phone.history[-1].read == {"#lobby": said}


async def test_while_redis_is_away_a_marker_holds_here_and_says_it_was_not_saved(
    redis_server: RedisServer,
) -> None:
    async with nodes(redis_server.url, 1) as (a,), contextlib.AsyncExitStack() as stack:
        laptop = await stack.enter_async_context(device(a, register=True))
        phone = await stack.enter_async_context(device(a, websocket=True))
        bob = await stack.enter_async_context(client(a, "bob"))
        first, second = await message_ids(bob, "one", "two")
        await laptop.expect("message", lambda e: e.id == second)
        await trio.to_thread.run_sync(redis_server.stop)
        await laptop.send({"type": "read", "id": first, "ref": "r"})
        error = await laptop.expect("error", lambda e: e.ref == "r")
        assert (error.code, error.text) == (
            "store_error",
            "your read marker could not be saved; try again later",
        )
        assert (await phone.expect("read")).message_id == first  # told all the same
        await trio.to_thread.run_sync(redis_server.start)
        await laptop.send({"type": "read", "id": second})
        await settled(laptop)
        async with RedisMarkers.open(redis_server.url) as book:
            assert await book.read_markers(name_key("alice")) == [("#lobby", "#lobby", second)]


# ------------------------------------------------------------------ away, always-on


def is_away_notice(nick: str, away: str | None) -> Any:
    """Matches the ``away`` notice of ``nick`` with ``away``."""

    def matches(e: Any) -> bool:
        data = e.data or {}
        return data.get("event") == "away" and data["nick"] == nick and data["away"] == away

    return matches


async def test_an_always_on_user_is_shown_away_on_every_node(broker_url: str) -> None:
    async with (
        nodes(broker_url, 2, always_on=True, irc_port=0) as (a, b),
        contextlib.AsyncExitStack() as stack,
    ):
        near = await stack.enter_async_context(client(a, "near", away_notify=True))
        far = await stack.enter_async_context(client(b, "far", away_notify=True))
        deaf = await stack.enter_async_context(client(b, "deaf"))  # did not ask
        ivy = await stack.enter_async_context(open_irc(b, "ivy", "CAP REQ :away-notify", "CAP END"))
        async with device(a, register=True) as alice:
            await alice.join("#dev")
            await far.join("#dev")
            await alice.expect("join", lambda e: e.nick == "far" and e.room == "#dev")
        # alice's last connection ended on node a: she stays, away, on both nodes.
        for watcher in (near, far):
            away = await watcher.expect("info", is_away_notice("alice", "offline"))
            assert away.text == "alice is away: offline"
        seen = await ivy.expect("AWAY")
        assert (seen.source, seen.params) == ("alice!alice@trio-chat", ("offline",))
        await ivy.send("WHOIS alice")
        whois = await ivy.expect(n.RPL_AWAY)
        assert whois.params[1:] == ("alice", "offline")
        for watcher, ref in ((far, "w1"), (deaf, "w2")):
            members = await who(watcher, "#lobby", ref)
            assert members["alice"]["away"] == "offline"
        assert (await who(far, "#dev", "w3"))["alice"] == {
            "nick": "alice",
            "op": True,
            "away": "offline",
            "bot": False,
        }
        await far.send({"type": "command", "name": "msg", "args": "alice psst", "ref": "m"})
        told = await far.expect("info", lambda e: e.ref == "m")
        assert (told.text, told.data) == (
            "alice is away: offline",
            {"nick": "alice", "away": "offline"},
        )

        # A node that starts now learns it from the others' snapshots.
        c = await stack.enter_async_context(
            open_test_server(config=local_config(broker=broker_url, always_on=True))
        )
        late = await stack.enter_async_context(client(c, "late"))
        await snapshots_read(late, near, far)
        assert (await who(late, "#lobby", "w4"))["alice"]["away"] == "offline"

        # Back on node a: back everywhere.
        async with device(a) as again:
            for watcher in (near, far):
                back = await watcher.expect("info", is_away_notice("alice", None))
                assert back.text == "alice is back"
            assert (await who(far, "#dev", "w5"))["alice"]["away"] is None
            back = await ivy.expect("AWAY")
            assert (back.source, back.params) == ("alice!alice@trio-chat", ())
            # /away of a user of node b: node a's users see it, in /who too.
            await far.command("/away lunch")
            await near.expect("info", is_away_notice("far", "lunch"))
            assert (await who(again, "#dev", "w6"))["far"]["away"] == "lunch"
            # Node c reads b's entries in b's order: far's next line comes after the change
            # (and deaf, on b, is sent it after any notice of the change).
            await marker(far, late, deaf, text="gone for lunch")
            assert (await who(late, "#lobby", "w7"))["far"]["away"] == "lunch"
        assert [e for e in deaf.history if (getattr(e, "data", None) or {}).get("event")] == []
