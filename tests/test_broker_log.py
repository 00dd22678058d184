"""The shared log's entries, sans-IO: the array form of a chat line, every event kind
round-tripping, entries of the object form (what older nodes wrote) still read."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from trio_chat.broker.log import (
    BadEntry,
    decode_entry,
    decode_line,
    encode_entry,
    encode_line,
    number_own_line,
    own_event_prefix,
    own_event_seq,
    own_line_prefix,
)
from trio_chat.protocol import (
    Joined,
    Left,
    Message,
    NickChanged,
    Private,
    ServerEvent,
    Topic,
    renumbered,
)

LINE = Message(id=3, ts=1700000000.123456, room="#lobby", nick="alice", text='a "line"\n\u00e9')


def test_a_chat_line_to_its_room_is_written_in_the_array_form() -> None:
    payload = encode_entry("event", "node-a", 7, event=LINE, room="#lobby", persist=True)
    assert payload == encode_line("node-a", 7, LINE, persist=True)
    assert orjson.loads(payload) == [
        "l", "node-a", 7, 1, 1700000000.123456, "#lobby", "alice", 'a "line"\n\u00e9', "say"
    ]  # fmt: skip
    assert b"\n" not in payload  # the append script splits a batch at newlines


@pytest.mark.parametrize("kind", ["say", "action"])
@pytest.mark.parametrize("persist", [True, False])
def test_a_chat_line_round_trips_with_the_id_the_log_gives(kind: str, persist: bool) -> None:
    event = Message(id=999, ts=1.5, room="#lobby", nick="alice", text="hi", kind=kind)  # type: ignore[arg-type]
    payload = encode_entry("event", "node-a", 7, event=event, room="#lobby", persist=persist)
    node, seq, line, persisted, author = decode_line("42-0", payload)
    assert author is None
    assert (node, seq, persisted) == ("node-a", 7, persist)
    assert line == Message(id=42, ts=1.5, room="#lobby", nick="alice", text="hi", kind=kind)  # type: ignore[arg-type]
    entry = decode_entry("42-0", payload)
    assert (entry.kind, entry.node, entry.seq, entry.stream_id) == ("event", "node-a", 7, "42-0")
    assert entry.event == line
    assert (entry.room, entry.to, entry.persist, entry.accounts) == ("#lobby", (), persist, None)


EVENTS: list[tuple[ServerEvent, dict[str, object]]] = [
    (LINE, {"room": "#lobby", "persist": True}),
    # A chat line with more receivers than the room's, or to another room: the object form.
    (LINE, {"room": "#lobby", "to": ("alice",)}),
    (LINE, {"room": "#other"}),
    (Joined(id=1, ts=2.0, room="#lobby", nick="bob"), {"room": "#lobby", "data": {"op": True}}),
    (Left(id=1, ts=2.0, room="#lobby", nick="bob", reason="bye"), {"room": "#lobby"}),
    (Left(id=1, ts=2.0, room="#lobby", nick="bob"), {"room": "#lobby", "to": ("bob",)}),
    (NickChanged(id=1, ts=2.0, old="bob", new="rob"), {"to": ("rob", "alice")}),
    (
        Private(id=1, ts=2.0, nick="bob", to="alice", text="psst"),
        {"to": ("alice", "bob"), "persist": True, "accounts": ("bob", "alice")},
    ),
    (Topic(id=1, ts=2.0, room="#lobby", nick="bob", topic="news"), {"room": "#lobby"}),
]


@pytest.mark.parametrize(("event", "fields"), EVENTS)
def test_every_event_kind_round_trips(event: ServerEvent, fields: dict[str, object]) -> None:
    payload = encode_entry("event", "node-b", 12, event=event, **fields)  # type: ignore[arg-type]
    entry = decode_entry("77-0", payload)
    assert entry.event == dataclasses.replace(event, id=77)  # type: ignore[call-arg]
    assert (entry.node, entry.seq) == ("node-b", 12)
    assert entry.room == fields.get("room")
    assert entry.to == tuple(fields.get("to", ()))  # type: ignore[arg-type]
    assert entry.persist == fields.get("persist", False)
    assert entry.accounts == fields.get("accounts")
    assert entry.data == fields.get("data", {})


def test_an_entry_of_the_object_form_an_older_node_wrote_is_still_read() -> None:
    # Exactly what a node before the array form appended for a chat line.
    payload = (
        b'{"k":"event","n":"old-1","s":4,"e":{"type":"message","ts":1.5,"room":"#lobby",'
        b'"nick":"alice","text":"hi","kind":"action"},"r":"#lobby","p":1}'
    )
    entry = decode_entry("9-0", payload)
    assert entry.event == Message(
        id=9, ts=1.5, room="#lobby", nick="alice", text="hi", kind="action"
    )
    assert (entry.node, entry.seq, entry.room, entry.persist) == ("old-1", 4, "#lobby", True)


def test_a_field_a_newer_node_adds_to_a_chat_line_is_ignored() -> None:
    payload = b'["l","new-1",4,1,1.5,"#lobby","alice","hi","say",{"colour":"red"}]'
    assert decode_line("9-0", payload)[2] == Message(
        id=9, ts=1.5, room="#lobby", nick="alice", text="hi"
    )


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",
        b"[1,2,3]",
        b'["l","n",1,1,1.5,"#lobby","alice","hi"]',  # a field short
        b'["x","n",1,1,1.5,"#lobby","alice","hi","say"]',  # not a line
        b'["l","n","1",1,1.5,"#lobby","alice","hi","say"]',  # the number a string
        b'["l","n",1,1,1.5,"#lobby",7,"hi","say"]',  # the nick a number
        b'["l","n",1,1,"late","#lobby","alice","hi","say"]',  # the time a string
        b'["l","n",1,1,1.5,"#lobby","alice","hi","shout"]',  # no such kind
        b'["l","n",1,1,1.5,"#lobby","alice","hi",["say"]]',
        b'["l","n",1,1,1.5,"#lobby","alice","hi","say",{},{}]',  # too long
        b"[not json",
    ],
)
def test_a_line_that_is_not_ours_is_refused(payload: bytes) -> None:
    with pytest.raises(BadEntry):
        decode_line("1-0", payload)
    with pytest.raises(BadEntry):
        decode_entry("1-0", payload)


def test_a_node_knows_its_own_lines_by_their_start() -> None:
    node = 'node-"a"'
    line_prefix, event_prefix = own_line_prefix(node), own_event_prefix(node)
    own = encode_entry("event", node, 12, event=LINE, room="#lobby")
    assert own_event_seq(own, line_prefix) == 12
    assert own_event_seq(own, event_prefix) is None
    others = (
        encode_entry("event", 'node-"a"2', 12, event=LINE, room="#lobby"),
        encode_entry("event", node, 13, event=LINE, room="#lobby", to=("bob",)),
        encode_entry("hello", node, 14, data={"nick": "alice"}),
        line_prefix,
        line_prefix + b"x,",
    )
    for other in others:
        assert own_event_seq(other, line_prefix) is None


@pytest.mark.parametrize("event", [LINE, *(event for event, _ in EVENTS[3:])])
def test_an_own_event_read_back_is_renumbered_as_replace_would(event: ServerEvent) -> None:
    again = renumbered(event, 1234)
    assert again == dataclasses.replace(event, id=1234)  # type: ignore[call-arg]
    assert type(again) is type(event) and event.id != 1234  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["say", "action"])
def test_an_own_line_read_back_is_numbered_as_replace_would(kind: str) -> None:
    said = dataclasses.replace(LINE, kind=kind, reply_to=2)  # type: ignore[arg-type]
    line = dataclasses.replace(said)
    number_own_line(line, 1234)
    assert line == dataclasses.replace(said, id=1234) and said.id != 1234
    assert type(line) is Message
    assert hash(line) == hash(dataclasses.replace(said, id=1234))
    with pytest.raises(dataclasses.FrozenInstanceError):
        line.id = 5  # type: ignore[misc]


# ------------------------------------------------------------------ over a real Redis


async def test_a_line_an_older_node_appends_reaches_the_users_of_newer_ones(
    broker_url: str,
) -> None:
    """A rolling restart: a node from before the array form still appends its lines as
    objects (through the same script); the newer nodes deliver them among their own."""
    import coredis

    from trio_chat.broker.redis import _APPEND, _keys
    from trio_chat.testing import local_config, open_client, open_test_server

    old_line = (
        b'{"k":"event","n":"old-1","s":1,"e":{"type":"message","ts":1.5,"room":"#lobby",'
        b'"nick":"olga","text":"from an older node","kind":"say"},"r":"#lobby","p":1}'
    )
    keys = _keys("trio-chat")
    async with (
        open_test_server(config=local_config(broker=broker_url)) as a,
        open_test_server(config=local_config(broker=broker_url)) as b,
        open_client(a, "alice") as alice,
        open_client(b, "bob") as bob,
        coredis.Redis.from_url(broker_url) as redis,
    ):
        await alice.expect("join", lambda e: e.nick == "bob")
        await alice.say("before")
        for client in (alice, bob):
            await client.expect("message", lambda e: e.text == "before")
        script = redis.register_script(_APPEND)
        run = [keys["counter"], keys["log"], keys["seqs"]]
        assert await script(keys=run, args=[1000, "old-1", 1, "e", old_line + b"\n"]) == 1
        await bob.say("after")
        for client in (alice, bob):
            got = [await client.expect("message") for _ in range(2)]
            assert [(m.nick, m.text) for m in got] == [
                ("olga", "from an older node"),
                ("bob", "after"),
            ]
            assert got[0].id < got[1].id
