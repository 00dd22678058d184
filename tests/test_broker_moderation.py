"""Operators, mutes and bans across nodes, through a real Redis: given on one node, they hold
on every node, and a node that starts later learns them."""

from __future__ import annotations

import contextlib

import pytest
from test_broker import alice_on_a_bob_on_b, nodes
from test_rooms import roster

from trio_chat.broker.log import BadEntry, decode_entry, encode_entry
from trio_chat.broker.redis import RedisBroker
from trio_chat.hub import Hub, RuleChange
from trio_chat.mailbox import Mailbox
from trio_chat.testing import ChatClient, local_config, open_client, open_test_server

# ------------------------------------------------------------------ sans-IO


def test_a_rule_entry_round_trips() -> None:
    change = RuleChange("#dev", "banned", "Bob", True, "10.0.0.7")
    entry = decode_entry("12-3", encode_entry("rule", "node-a", 4, rule=change))
    assert (entry.kind, entry.node, entry.seq, entry.rule) == ("rule", "node-a", 4, change)
    lifted = RuleChange("#dev", "operator", "bob", False)
    assert decode_entry("12-4", encode_entry("rule", "n", 5, rule=lifted)).rule == lifted


@pytest.mark.parametrize(
    "data",
    [
        {"room": "#dev", "rule": "banned", "nick": "bob", "on": True},  # no host
        {"room": "#dev", "rule": "owner", "nick": "bob", "on": True, "host": "?"},
        {"room": "#dev", "rule": "muted", "nick": "bob", "on": "yes", "host": "?"},
        {"room": 7, "rule": "muted", "nick": "bob", "on": True, "host": "?"},
    ],
)
def test_a_rule_entry_that_is_not_ours_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(BadEntry):
        decode_entry("1-1", encode_entry("rule", "n", 1, data=data))


def test_the_hub_tells_its_observers_of_each_rule_that_changed() -> None:
    hub = Hub()
    alice = hub.attach("alice", Mailbox(100), address="10.0.0.1:5000", transport="test")
    bob = hub.attach("bob", Mailbox(100), address="10.0.0.7:6000", transport="test")
    room = hub.join(alice, "#dev")
    hub.join(bob, "#dev")
    heard: list[RuleChange] = []
    hub.on_rule.append(heard.append)
    assert hub.set_rule(room, "muted", bob, True)
    assert not hub.set_rule(room, "muted", bob, True)  # no change, nobody told
    assert hub.set_rule(room, "banned", "Bob", True, host="10.0.0.7")
    assert not hub.set_rule(room, "operator", "nobody", True)  # nobody by that nick
    assert hub.set_rule(room, "banned", "bob", False)
    assert not hub.set_rule(room, "banned", "bob", False)
    assert heard == [
        RuleChange("#dev", "muted", "bob", True),
        RuleChange("#dev", "banned", "Bob", True, "10.0.0.7"),
        RuleChange("#dev", "banned", "bob", False),
    ]
    assert bob.id in room.muted and not room.banned


def test_rules_read_while_a_node_starts_win_over_an_older_snapshot() -> None:
    """Node C starts; A lifts a ban and takes bob's operator status before B, which answers
    C's sync, has read that: B's snapshot is older than A's changes, which C read first."""
    hub = Hub()
    broker = RedisBroker("redis://unused", hub, lambda pending: None, node="c")
    broker._awaiting = {"b"}  # as _start finds it: B is alive
    entries = [
        encode_entry("rule", "a", 1, rule=RuleChange("#club", "banned", "mallory", False)),
        encode_entry("rule", "a", 2, rule=RuleChange("#club", "operator", "bob", False)),
        encode_entry(
            "snapshot",
            "b",
            1,
            data={
                "for": "c",
                "users": [
                    {"nick": "bob", "address": "10.0.0.7:5", "rooms": ["#club"], "op": ["#club"]}
                ],
                "bans": {"#club": {"mallory": "10.0.0.9"}},
            },
        ),
    ]
    for n, payload in enumerate(entries, 1):
        broker._handle(decode_entry(f"5-{n}", payload))
    room = hub.rooms["#club"]
    bob = hub.find("bob")
    assert bob is not None and bob.address == "10.0.0.7:5"
    assert bob.id in room.members and not room.is_operator(bob)
    assert room.banned == {}


# ------------------------------------------------------------------ nodes, for real


async def seen(speaker: ChatClient, text: str, room: str, *listeners: ChatClient) -> None:
    """``speaker`` says ``text`` in ``room`` and every listener sees it. The log has one
    order, so each listener's node has by then applied whatever the speaker's node did
    before (a rule given there, a join): a barrier, not a sleep."""
    await speaker.say(text, room=room)
    for listener in (speaker, *listeners):
        await listener.expect("message", lambda m: m.text == text)


async def refused(client: ChatClient, room: str) -> str:
    await client.command(f"/join {room}")
    error = await client.expect("error")
    assert error.code == "not_allowed"
    return str(error.text)


async def test_the_creator_is_operator_everywhere_and_a_ban_holds_on_every_node(
    broker_url: str,
) -> None:
    async with nodes(broker_url, 2) as (a, b), open_client(a, "alice") as alice:
        async with open_client(b, "bob") as bob:
            await alice.expect("join", lambda e: e.nick == "bob")
            await alice.join("#club")  # alice creates it on A: its operator
            await seen(alice, "made #club", "#lobby", bob)  # B has seen her join #club
            await bob.join("#club")  # so B does not make bob its operator
            await alice.expect("join", lambda e: e.nick == "bob" and e.room == "#club")
            for client in (alice, bob):  # the same on both nodes
                members = await roster(client, "#club")
                assert (members["alice"]["op"], members["bob"]["op"]) == (True, False)
            await bob.command("/kick alice")
            assert (await bob.expect("error")).code == "not_allowed"

            await alice.command("/ban bob")  # bob is on B
            left = await bob.expect("leave", lambda e: e.room == "#club")
            assert (left.nick, left.reason) == ("bob", "banned by alice")
            assert await refused(bob, "#club") == "you are banned from #club"
            # A knew bob's host, though he is on B: whoever comes from it is refused too.
            async with open_client(a, "mallory") as mallory:
                await refused(mallory, "#club")

            await alice.command("/unban bob")  # and B lets him in again
            await seen(alice, "bob may come back", "#lobby", bob)
            await bob.join("#club")
            await alice.expect("join", lambda e: e.nick == "bob" and e.room == "#club")

            await alice.command("/ban bob")
            await bob.expect("leave", lambda e: e.room == "#club")
        # bob comes back on A (seeing him leave, A has freed his nick: the bye comes first)
        await alice.expect("leave", lambda e: e.nick == "bob" and e.room == "#lobby")
        async with open_client(a, "bob") as bob:
            assert await refused(bob, "#club") == "you are banned from #club"


async def test_a_mute_and_an_operator_given_on_one_node_hold_on_the_other(
    broker_url: str,
) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        alice, bob = await alice_on_a_bob_on_b(stack, a, b)
        carol = await stack.enter_async_context(open_client(a, "carol"))
        await alice.join("#club")
        await seen(alice, "made #club", "#lobby", bob, carol)
        for client in (bob, carol):
            await client.join("#club")
            await alice.expect("join", lambda e, c=client: e.nick == c.nick and e.room == "#club")

        await alice.command("/mute bob")
        await alice.expect("info", lambda e: "is muted" in e.text)
        told = await bob.expect("info", lambda e: "muted you" in e.text)  # by his own node
        assert told.text == "alice muted you in #club"
        await seen(alice, "hush", "#club", bob)
        await bob.say("can I talk?", room="#club")
        error = await bob.expect("error")
        assert (error.code, error.text) == ("not_allowed", "you are muted in #club")
        await alice.command("/unmute bob")
        await seen(alice, "go on", "#club", bob)
        await seen(bob, "thanks", "#club", alice, carol)

        await alice.command("/op bob")
        # The room is told (on another node, as text alone), and bob himself.
        told = await bob.expect("info", lambda e: "operator" in e.text)
        assert told.text == "alice made bob an operator of #club"
        told = await bob.expect("info", lambda e: "operator" in e.text)
        assert told.text == "alice made you an operator of #club"
        await seen(alice, "bob helps now", "#club", bob)
        assert (await roster(bob, "#club"))["bob"]["op"] is True
        await bob.command("/kick carol spamming")  # bob on B, carol on A
        for client in (alice, bob, carol):
            event = await client.expect("leave", lambda e: e.nick == "carol")
            assert event.reason == "kicked by bob: spamming"


async def test_a_node_that_starts_later_learns_operators_mutes_and_bans(
    broker_url: str,
) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        alice, bob = await alice_on_a_bob_on_b(stack, a, b)
        carol = await stack.enter_async_context(open_client(b, "carol"))
        mallory = await stack.enter_async_context(open_client(b, "mallory"))
        await alice.join("#club")
        await seen(alice, "made #club", "#lobby", bob, carol, mallory)
        for client in (bob, carol, mallory):
            await client.join("#club")
            await alice.expect("join", lambda e, c=client: e.nick == c.nick and e.room == "#club")
        await alice.command("/op bob")
        await alice.command("/mute carol")
        await alice.command("/ban mallory")  # on B, from the loopback host, as everyone here
        await mallory.expect("leave", lambda e: e.room == "#club")

        config = local_config(broker=broker_url)
        async with open_test_server(config=config) as c, open_client(c, "dave") as dave:
            # Whoever sees dave arrive answered C's sync before: what they say next
            # reaches C after their snapshot.
            for client, text in ((alice, "hi dave"), (bob, "welcome dave")):
                await client.expect("join", lambda e: e.nick == "dave")
                await client.say(text, room="#lobby")
                await dave.expect("message", lambda m, t=text: m.text == t)
            members = await roster(dave, "#club")
            assert {nick: m["op"] for nick, m in members.items()} == {
                "alice": True,
                "bob": True,
                "carol": False,
            }
            room = c.server.hub.rooms["#club"]
            assert [s.nick for s in room.members.values() if s.id in room.muted] == ["carol"]
            # mallory's ban, with the host B knew her from (dave's: loopback).
            assert await refused(dave, "#club") == "you are banned from #club"
            # C knows carol's host from B's snapshot: a ban given on C refuses it too.
            await dave.join("#side")
            await seen(dave, "made #side", "#lobby", carol)
            await carol.join("#side")
            await dave.expect("join", lambda e: e.nick == "carol" and e.room == "#side")
            await dave.command("/ban carol")
            await carol.expect("leave", lambda e: e.room == "#side")
            async with open_client(c, "eve") as eve:
                assert await refused(eve, "#side") == "you are banned from #side"


async def test_two_users_who_create_a_room_at_once_on_two_nodes_are_both_its_operators(
    broker_url: str,
) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        alice, bob = await alice_on_a_bob_on_b(stack, a, b)
        hub_a, hub_b = a.server.hub, b.server.hub
        # In one step, so that neither node reads the other's join first: each creates it.
        alice_there, bob_there = hub_a.find("alice"), hub_b.find("bob")
        assert alice_there is not None and bob_there is not None
        hub_a.join(alice_there, "#new")
        hub_b.join(bob_there, "#new")
        mine = [
            await client.expect("join", lambda e, n=nick: e.nick == n and e.room == "#new")
            for client, nick in ((alice, "alice"), (bob, "bob"))
        ]
        # A joiner gets the room's events from its own join on: the first of the two sees
        # the other's join (and each node has read both from the log by then).
        joins = zip(mine, (alice, bob), ("alice", "bob"), strict=True)
        (_, first, _), (_, _, later) = sorted(joins, key=lambda j: j[0].id)
        await first.expect("join", lambda e: e.nick == later and e.room == "#new")
        for client in (alice, bob):
            members = await roster(client, "#new")
            assert (members["alice"]["op"], members["bob"]["op"]) == (True, True)
