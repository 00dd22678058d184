"""Several nodes, one chat, through a real Redis: rooms, private messages, /who, nicks,
one order with the same ids, gap-fill from another node, Redis restarted mid-chat."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
import trio

from trio_chat.broker.log import (
    BadEntry,
    decode_entries,
    decode_entry,
    encode_entry,
    encode_group,
    encode_row,
    own_event_prefix,
    own_event_seq,
)
from trio_chat.protocol import Message, Topic
from trio_chat.testing import ChatClient, TestServer, local_config, open_client, open_test_server

if TYPE_CHECKING:
    from conftest import RedisServer

# ------------------------------------------------------------------ the log, sans-IO


def test_an_event_entry_round_trips_with_the_id_the_log_gives() -> None:
    event = Message(id=999, ts=1.5, room="#lobby", nick="alice", text="hi", kind="say")
    payload = encode_entry("event", "node-a", 7, event=event, room="#lobby", persist=True)
    entry = decode_entry("42-0", payload)
    assert entry.kind == "event" and entry.node == "node-a" and entry.seq == 7
    assert entry.event == Message(id=42, ts=1.5, room="#lobby", nick="alice", text="hi")
    assert (entry.room, entry.to, entry.persist, entry.accounts) == ("#lobby", (), True, None)


def test_a_private_entry_keeps_its_receivers_and_accounts() -> None:
    payload = encode_entry(
        "hello", "n", 1, data={"nick": "Bob", "account": "bob"}
    )  # a control entry
    assert decode_entry("5-1", payload).data == {"nick": "Bob", "account": "bob"}


@pytest.mark.parametrize(
    "payload", [b"not json", b"[]", b'{"k":"event","n":"x","s":1}', b'{"k":"boom","n":"x","s":1}']
)
def test_an_entry_that_is_not_ours_is_refused(payload: bytes) -> None:
    with pytest.raises(BadEntry):
        decode_entry("1-0", payload)


def test_a_node_knows_its_own_events_by_their_start() -> None:
    # (A chat line is in the array form: see test_broker_log.py for its own prefix.)
    event = Topic(id=1, ts=1.5, room="#lobby", nick="alice", topic='a "line"\nand more')
    prefix = own_event_prefix('node-"a"')
    own = encode_entry("event", 'node-"a"', 12, event=event, room="#lobby")
    assert own_event_seq(own, prefix) == 12
    hello = encode_entry("hello", 'node-"a"', 13, data={"nick": "alice"})
    longer = encode_entry("event", 'node-"a"2', 12, event=event, room="#lobby")
    for other in (hello, longer, b"not json", prefix, prefix + b"x,"):
        assert own_event_seq(other, prefix) is None


async def test_the_append_script_numbers_a_batch_and_skips_what_it_already_has(
    broker_url: str,
) -> None:
    import coredis

    from trio_chat.broker.redis import _APPEND, _keys

    keys = _keys("t")
    line = Message(id=1, ts=1.5, room="#lobby", nick="alice", text="two\nlines")
    payloads = [
        encode_entry("event", "n", 1, event=line, room="#lobby"),
        encode_entry("hello", "n", 2, data={"nick": "alice"}),
        encode_entry("event", "n", 3, event=line, room="#lobby"),
        encode_entry("bye", "n", 4, data={"nick": "alice"}),
    ]
    client = coredis.Redis.from_url(broker_url)
    async with client:
        script = client.register_script(_APPEND)
        run = [keys["counter"], keys["log"], keys["seqs"]]
        args: list[object] = [1000, "n", 1, "ece", b"\n".join([*payloads[:3], b""])]
        assert await script(keys=run, args=args) == 3
        # The answer was lost: the node sends 2 and 3 again, with 4.
        args = [1000, "n", 2, "cec", b"\n".join([*payloads[1:], b""])]
        assert await script(keys=run, args=args) == 4
        got = await client.xrange(keys["log"])
    assert [item.identifier for item in got] == [b"1-0", b"1-1", b"2-0", b"2-1"]
    assert [item.field_values[b"x"] for item in got] == payloads
    assert decode_entry("2-0", payloads[2]).event == Message(
        id=2, ts=1.5, room="#lobby", nick="alice", text="two\nlines"
    )


async def test_the_append_script_gives_a_group_an_id_per_line_and_skips_it_whole(
    broker_url: str,
) -> None:
    """A group of three lines (running numbers 2 to 4) takes ids 2 to 3 after an event's
    1, its entry the last of them; sent again with what follows, it is not appended twice."""
    import coredis

    from trio_chat.broker.redis import _APPEND, _keys

    keys = _keys("t")
    line = Message(id=1, ts=1.5, room="#lobby", nick="alice", text="hi")
    event = encode_entry("event", "n", 1, event=line, room="#lobby", to=("bob",))
    group = encode_group("n", 2, [encode_row(line)] * 3)
    hello = encode_entry("hello", "n", 5, data={"nick": "alice"})
    second = encode_group("n", 6, [encode_row(line)] * 2)
    client = coredis.Redis.from_url(broker_url)
    async with client:
        script = client.register_script(_APPEND)
        run = [keys["counter"], keys["log"], keys["seqs"]]
        args: list[object] = [1000, "n", 1, "eg", b"\n".join([event, group, b""]), "3"]
        assert await script(keys=run, args=args) == 4
        # The answer was lost: the node sends the group again, with what came since.
        args = [1000, "n", 2, "gcg", b"\n".join([group, hello, second, b""]), "3 2"]
        assert await script(keys=run, args=args) == 7
        got = await client.xrange(keys["log"])
    assert [item.identifier for item in got] == [b"1-0", b"4-0", b"4-1", b"6-0"]
    assert [item.field_values[b"x"] for item in got] == [event, group, hello, second]
    entries = [e for i in got for e in decode_entries(i.identifier.decode(), i.field_values[b"x"])]
    ids = [getattr(e.event, "id", None) for e in entries]
    assert ids == [1, 2, 3, 4, None, 5, 6]
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6, 7]


# ------------------------------------------------------------------ nodes, for real


@contextlib.asynccontextmanager
async def nodes(url: str, count: int, **config: Any) -> AsyncIterator[list[TestServer]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                open_test_server(config=local_config(broker=url, **config))
            )
            for _ in range(count)
        ]


async def snapshots_read(newcomer: ChatClient, *others: ChatClient) -> None:
    """Until the node of ``newcomer`` (started after the others) has read the snapshots of
    the nodes of ``others`` (a user in ``#lobby`` on each). A node serves before those
    come, so until then it may not know the others' users. Each other node answered its
    sync before it read ``newcomer`` arrive (one log, read in order): a line its user says
    on seeing that reaches ``newcomer`` after the snapshot."""
    for other in others:
        await other.expect("join", lambda e: e.nick == newcomer.nick and e.room == "#lobby")
        text = f"{other.nick} saw {newcomer.nick} arrive"
        await other.say(text, room="#lobby")
        await newcomer.expect("message", lambda e, t=text: e.text == t)


async def alice_on_a_bob_on_b(
    stack: contextlib.AsyncExitStack, a: TestServer, b: TestServer
) -> tuple[ChatClient, ChatClient]:
    """alice logged in on node ``a``, bob on ``b``, once alice has seen bob arrive."""
    alice = await stack.enter_async_context(open_client(a, "alice"))
    bob = await stack.enter_async_context(open_client(b, "bob"))
    await alice.expect("join", lambda e: e.nick == "bob")
    return alice, bob


async def test_two_nodes_share_a_room_in_one_order_with_the_same_ids(broker_url: str) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(open_client(a, "alice"))
        bob = await stack.enter_async_context(open_client(b, "bob", websocket=True))
        carol = await stack.enter_async_context(open_client(b, "carol"))
        await alice.expect("join", lambda e: e.nick == "carol")
        await bob.expect("join", lambda e: e.nick == "carol")
        senders = [alice, bob, carol]

        async def say_lines(client: ChatClient, name: str) -> None:
            for i in range(20):
                await client.say(f"{name} {i}")

        async with trio.open_nursery() as nursery:
            for client, name in zip(senders, ["alice", "bob", "carol"], strict=True):
                nursery.start_soon(say_lines, client, name)
        seen = []
        for client in senders:
            got = [await client.expect("message") for _ in range(60)]
            seen.append([(m.id, m.nick, m.text) for m in got])
        assert seen[0] == seen[1] == seen[2]  # one order, the same ids, on both nodes
        ids = [item[0] for item in seen[0]]
        assert ids == sorted(ids) and len(set(ids)) == 60
        for name in ("alice", "bob", "carol"):  # each sender's lines in the order sent
            mine = [text for _, nick, text in seen[0] if nick == name]
            assert mine == [f"{name} {i}" for i in range(20)]


async def test_groups_of_two_nodes_interleave_in_one_order_live_and_in_history(
    broker_url: str,
) -> None:
    """Lines said in bursts on both nodes at once go through the log in groups of each
    node's (its own read back from their start, the other's decoded): every member sees one
    order with the same ids, and each node's history holds exactly those, in that order."""
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(open_client(a, "alice"))
        bob = await stack.enter_async_context(open_client(b, "bob"))
        await alice.expect("join", lambda e: e.nick == "bob")

        async def burst(client: ChatClient, name: str) -> None:
            for i in range(50):
                await client.send({"type": "say", "room": "#lobby", "text": f"{name} {i}"})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(burst, alice, "alice")
            nursery.start_soon(burst, bob, "bob")
        live = []
        for client in (alice, bob):
            got = [await client.expect("message") for _ in range(100)]
            live.append([(m.id, m.nick, m.text) for m in got])
        assert live[0] == live[1]
        ids = [item[0] for item in live[0]]
        assert ids == sorted(ids) and len(set(ids)) == 100
        for name in ("alice", "bob"):
            assert [t for _, n, t in live[0] if n == name] == [f"{name} {i}" for i in range(50)]
        for client in (alice, bob):
            await client.send(  # (the lines seen live: a page back from after the last)
                {
                    "type": "history",
                    "room": "#lobby",
                    "before": ids[-1] + 1,
                    "limit": 100,
                    "ref": "all",
                }
            )
            page = await client.expect("history", lambda e: e.ref == "all")
            assert [(m["id"], m["nick"], m["text"]) for m in page.messages] == live[0]


async def test_runs_said_in_one_write_go_through_the_log_as_runs_in_one_order(
    broker_url: str,
) -> None:
    """Lines a client sends in one write reach the hub as a run (``Hub.say_lines``), which
    a broker takes at once (``log_run``) and the log numbers: both nodes' members see
    every line once, in one order with the same ids, each sender's in the order sent, and
    each node's history holds exactly those."""
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(open_client(a, "alice"))
        bob = await stack.enter_async_context(open_client(b, "bob"))
        await alice.expect("join", lambda e: e.nick == "bob")
        runs = []
        for node in (a, b):
            taken = node.server.hub.log_run
            assert taken is not None

            def counted(run: list[Any], taken: Any = taken) -> None:
                runs.append(len(run))
                taken(run)

            node.server.hub.log_run = counted

        def write(name: str, first: int) -> bytes:
            return b"".join(
                b'{"type":"say","room":"#lobby","text":"%s %d"}\n' % (name.encode(), i)
                for i in range(first, first + 20)
            )

        for first in (0, 20, 40):
            await alice.send_raw(write("alice", first))
            await bob.send_raw(write("bob", first))
        live = []
        for client in (alice, bob):
            got = [await client.expect("message") for _ in range(120)]
            live.append([(m.id, m.nick, m.text) for m in got])
        assert live[0] == live[1]
        ids = [item[0] for item in live[0]]
        assert ids == sorted(ids) and len(set(ids)) == 120
        for name in ("alice", "bob"):
            assert [t for _, n, t in live[0] if n == name] == [f"{name} {i}" for i in range(60)]
        assert sum(runs) == 120 and max(runs) > 1  # (the reader may split a write's lines)
        for client in (alice, bob):
            await client.send(
                {"type": "history", "room": "#lobby", "before": ids[-1] + 1, "limit": 200}
            )
            page = await client.expect("history")
            assert [(m["id"], m["nick"], m["text"]) for m in page.messages] == live[0]


async def test_who_private_messages_and_nicks_span_the_nodes(broker_url: str) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        alice, bob = await alice_on_a_bob_on_b(stack, a, b)
        await bob.command("/who")
        who = await bob.expect("info", lambda e: e.data and "users" in e.data)
        assert who.data["users"] == ["alice", "bob"]
        await bob.command("/msg alice psst")
        private = await alice.expect("private")
        assert (private.nick, private.to, private.text) == ("bob", "alice", "psst")
        echo = await bob.expect("private")
        assert echo.id == private.id
        # The nick (and a look-alike of it) is taken on the other node too.
        for nick in ("Alice", "a1ice"):
            async with open_client(b) as thief:
                await thief.send({"type": "hello", "nick": nick})
                refused = await thief.expect("error")
                assert refused.code == "nick_taken"
        # A rename is seen across nodes, and frees the old nick there.
        await alice.command("/nick alicia")
        changed = await bob.expect("nick")
        assert (changed.old, changed.new) == ("alice", "alicia")
        async with open_client(b, "alice") as newcomer:
            await newcomer.command("/msg alicia hello again")
            assert (await alice.expect("private")).text == "hello again"


async def test_a_node_delivers_only_to_its_own_users(broker_url: str) -> None:
    """Each node's fan-out passes over the users of other nodes (their node delivers), so
    a line in a room of one user here and one there is one delivery on each node."""
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        alice, bob = await alice_on_a_bob_on_b(stack, a, b)
        for client in (alice, bob):  # a reply comes after the events before it (own join)
            await client.command("/who")
            await client.expect("info", lambda e: e.data and "users" in e.data)
        counters = [node.server.metrics.messages_out_total for node in (a, b)]
        before = [counter.value for counter in counters]
        await alice.say("one line")
        assert (await alice.expect("message")).text == "one line"
        assert (await bob.expect("message")).text == "one line"
        assert [c.value - was for c, was in zip(counters, before, strict=True)] == [1, 1]
        lobby = a.server.hub.rooms["#lobby"]
        assert set(lobby.members) > set(lobby.here) == {a.server.hub.find("alice").id}  # type: ignore[union-attr]


async def test_joins_leaves_rooms_and_topics_cross_nodes(broker_url: str) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        alice, bob = await alice_on_a_bob_on_b(stack, a, b)
        await alice.command("/join #dev")
        await alice.command("/topic shipping friday")
        await alice.expect("topic")
        await bob.command("/join #dev")
        await alice.expect("join", lambda e: e.nick == "bob" and e.room == "#dev")
        await bob.command("/rooms")
        rooms = await bob.expect("info", lambda e: e.data and "rooms" in e.data)
        listed = {r["name"]: r for r in rooms.data["rooms"]}
        assert listed["#dev"]["members"] == 2 and listed["#dev"]["topic"] == "shipping friday"
        await bob.say("in dev", room="#dev")
        assert (await alice.expect("message")).text == "in dev"
        await bob.command("/part #dev")
        left = await alice.expect("leave", lambda e: e.room == "#dev")
        assert left.nick == "bob"


async def test_gap_fill_after_reconnecting_to_another_node(broker_url: str) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        bob = await stack.enter_async_context(open_client(b, "bob"))  # one user on each node
        carol = await stack.enter_async_context(open_client(a, "carol"))
        await bob.expect("join", lambda e: e.nick == "carol")
        async with open_client(a, "alice") as alice:
            await alice.say("before")
            last_seen = (await alice.expect("message")).id
        # Seeing alice leave on B means B has freed her nick (the bye comes first).
        await bob.expect("leave", lambda e: e.nick == "alice")
        await carol.expect("leave", lambda e: e.nick == "alice")  # this leave, not the next
        for i in range(5):
            await bob.say(f"missed {i}")
        await bob.expect("message", lambda m: m.text == "missed 4")
        gap = {"type": "history", "room": "#lobby", "after": last_seen, "ref": "gap"}
        async with open_client(b, "alice") as alice:  # back, on the other node
            await alice.send(gap)
            page = await alice.expect("history", lambda e: e.ref == "gap")
            assert [m["text"] for m in page.messages] == [f"missed {i}" for i in range(5)]
            assert all(m["id"] > last_seen for m in page.messages)
        await carol.expect("leave", lambda e: e.nick == "alice")
        async with open_client(a, "alice") as alice:  # and node A answers the same
            await alice.send(gap)
            again = await alice.expect("history", lambda e: e.ref == "gap")
            assert again.messages == page.messages


async def test_redis_restarted_mid_chat_loses_and_repeats_nothing(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_chat.broker.connection import RedisConnection

    commands: list[object] = []
    call, call_encoded = RedisConnection.call, RedisConnection.call_encoded

    async def spy(self: RedisConnection, *args: object) -> object:
        commands.append(args[0])
        return await call(self, *args)

    async def spy_encoded(self: RedisConnection, request: bytes) -> object:
        commands.append(request.split(b"\r\n")[2])  # *N, $len, the command's name
        return await call_encoded(self, request)

    monkeypatch.setattr(RedisConnection, "call", spy)
    monkeypatch.setattr(RedisConnection, "call_encoded", spy_encoded)
    async with nodes(redis_server.url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        alice, bob = await alice_on_a_bob_on_b(stack, a, b)
        await alice.say("one")
        first = await bob.expect("message")
        await trio.to_thread.run_sync(redis_server.stop)
        commands.clear()
        await alice.say("two")  # waits for Redis, is not lost
        paused = await alice.expect("info", lambda e: "paused" in e.text)
        assert "cross-node delivery paused" in paused.text
        await trio.to_thread.run_sync(redis_server.start)
        await alice.expect("info", lambda e: "resumed" in e.text)
        await alice.say("three")
        got = [await bob.expect("message") for _ in range(2)]
        assert [m.text for m in got] == ["two", "three"]
        assert first.id < got[0].id < got[1].id
    # The restarted Redis had forgotten the append script: it was sent again (EVAL).
    assert commands.count(b"EVALSHA") >= 1 and commands.count(b"EVAL") >= 1
