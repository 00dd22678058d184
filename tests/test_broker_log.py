"""The shared log's entries, sans-IO: groups of chat lines, the array form of a chat line,
every event kind round-tripping, entries of the object form (what older nodes wrote) still
read."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from trio_chat.broker.log import (
    BadEntry,
    decode_entries,
    decode_entry,
    decode_group,
    decode_line,
    encode_columns,
    encode_entry,
    encode_group,
    encode_line,
    encode_row,
    number_own_line,
    own_columns_prefix,
    own_event_prefix,
    own_event_seq,
    own_group_prefix,
    own_group_seqs,
    own_line_prefix,
)
from trio_chat.broker.redis import GROUP_LINES, MAX_WAITING, RedisBroker
from trio_chat.delivery import Pending
from trio_chat.hub import Hub, ServerBusy
from trio_chat.mailbox import Mailbox
from trio_chat.protocol import (
    Info,
    Joined,
    Left,
    Message,
    NickChanged,
    Private,
    ServerEvent,
    Topic,
    renumbered,
)
from trio_chat.rooms import Room

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


REPLY = Message(
    id=3,
    ts=2.5,
    room="#dev",
    nick="bob",
    text="yes",
    kind="action",
    reply_to=2,
    quote={"nick": "alice", "text": "a question"},
)


def test_a_group_gives_each_line_an_id_up_to_its_own_and_a_running_number() -> None:
    rows = [
        encode_row(LINE, persist=True),
        encode_row(REPLY, author="bob"),
        encode_row(dataclasses.replace(LINE, text="third")),
    ]
    payload = encode_group('node-"a"', 7, rows)
    assert orjson.loads(payload)[:5] == ["g", 'node-"a"', 7, 3, orjson.loads(rows[0])]
    assert b"\n" not in payload  # the append script splits a batch at newlines
    group = decode_group("42-0", payload)
    assert (group.node, group.first_seq, group.room) == ('node-"a"', 7, None)
    lines = list(zip(group.lines, group.persist, group.authors, strict=True))
    assert lines == [
        (dataclasses.replace(LINE, id=40), True, None),
        (dataclasses.replace(REPLY, id=41), False, "bob"),
        (dataclasses.replace(LINE, id=42, text="third"), False, None),
    ]
    entries = decode_entries("42-0", payload)
    assert [(e.kind, e.node, e.seq, e.stream_id) for e in entries] == [
        ("event", 'node-"a"', seq, "42-0") for seq in (7, 8, 9)
    ]
    assert [(e.event, e.room, e.persist, e.author) for e in entries] == [
        (line, line.room, persist, author) for line, persist, author in lines
    ]
    assert decode_entries("5-0", encode_line("n", 1, LINE)) == [
        decode_entry("5-0", encode_line("n", 1, LINE))
    ]


@pytest.mark.parametrize(
    "payload",
    [
        b'["g","n",1,0]',  # no lines
        b'["g","n",1,2,[1,1.5,"#lobby","alice","hi","say"]]',  # a line short of its count
        b'["g","n","1",1,[1,1.5,"#lobby","alice","hi","say"]]',  # the number a string
        b'["g",7,1,1,[1,1.5,"#lobby","alice","hi","say"]]',  # the node a number
        b'["g","n",1,1,[1,1.5,"#lobby",7,"hi","say"]]',  # the nick a number
        b'["g","n",1,1,[1,1.5,"#lobby","alice","hi","shout"]]',  # no such kind
        b'["g","n",1,1,[1,1.5,"#lobby","alice","hi"]]',  # a field short
        b'["g","n",1,1,[1,1.5,"#lobby","alice","hi","say",{},{}]]',  # too long
        b'["g","n",1,1,"a line"]',
        b'["g","n",1,1,[]]',
        b'["g","n",1,2,[1,1.5,"#lobby","alice","hi","say"],{"reply_to":"x"}]',
        b'["g","n",1,1,[1,1.5,"#lobby","alice","hi","say",{"reply_to":"x"}]]',
        b'["g","n",1,1,[1,1.5,"#lobby","alice","hi","say"]',  # not json
        # Rows read a column at a time (see _plain_rows): each wrong in one place.
        b'["g","n",1,2,[1,1.5,"#lobby","alice","hi","say"],"sixsix"]',  # a string of six
        b'["g","n",1,1,{"a":1,"b":1.5,"c":"#lobby","d":"a","e":"hi","f":"say"}]',  # an object
        b'["g","n",1,2,[1,1.5,"#lobby","alice","hi","say"],[1,true,"#lobby","a","hi","say"]]',
        b'["g","n",1,2,[1,1.5,"#lobby","alice","hi","say"],[1,"1.5","#lobby","a","hi","say"]]',
        b'["g","n",1,2,[1,1.5,"#lobby","alice","hi","say"],[1,1.5,null,"a","hi","say"]]',
        b'["g","n",1,2,[1,1.5,"#lobby","alice","hi","say"],[1,1.5,"#lobby",["a"],"hi","say"]]',
        b'["g","n",1,2,[1,1.5,"#lobby","alice","hi","say"],[1,1.5,"#lobby","a",2,"say"]]',
        b'["g","n",1,2,[1,1.5,"#lobby","alice","hi","say"],[1,1.5,"#lobby","a","hi",["say"]]]',
        b'["g","n",1,2,[1,1.5,"#lobby","alice","hi","say"],[1,1.5,"#lobby","a","hi","Say"]]',
    ],
)
def test_a_group_that_is_not_ours_is_refused(payload: bytes) -> None:
    with pytest.raises(BadEntry):
        decode_group("1-0", payload)
    with pytest.raises(BadEntry):
        decode_entries("1-0", payload)


PLAIN_ROWS = {
    "one room, one nick": [LINE, dataclasses.replace(LINE, ts=5, text="b")],
    "rooms": [LINE, dataclasses.replace(LINE, room="#dev"), LINE],
    "nicks": [LINE, dataclasses.replace(LINE, nick="bob", kind="action"), LINE],
    "kinds": [dataclasses.replace(LINE, kind="notice"), dataclasses.replace(LINE, kind="action")],
}


@pytest.mark.parametrize("said", PLAIN_ROWS.values(), ids=PLAIN_ROWS.keys())
@pytest.mark.parametrize("persist", ["all", "none", "some"])
def test_a_group_of_plain_rows_reads_as_each_row_alone(said: list[Message], persist: str) -> None:
    """A group of plain rows (read a column at a time) gives each line what the same row
    in an entry of its own gives (read field by field): its fields, type and hash, and
    whether it is stored; and the room its lines share, if one."""
    stored = [persist == "all" or (persist == "some" and i % 2 == 1) for i in range(len(said))]
    rows = [encode_row(line, persist=p) for line, p in zip(said, stored, strict=True)]
    last_id = 40 + len(said) - 1
    group = decode_group(f"{last_id}-0", encode_group("n", 7, rows))
    alone = [
        decode_line(f"{event_id}-0", encode_line("n", seq, line, persist=p))
        for event_id, seq, line, p in zip(
            range(40, last_id + 1), range(7, 7 + len(said)), said, stored, strict=True
        )
    ]
    assert group.lines == [line for _, _, line, _, _ in alone]
    assert [type(line) for line in group.lines] == [Message] * len(said)
    assert [hash(line) for line in group.lines] == [hash(line) for _, _, line, _, _ in alone]
    assert group.persist == stored == [p for _, _, _, p, _ in alone]
    assert group.authors == [None] * len(said)
    rooms = {line.room for line in said}
    assert group.room == (rooms.pop() if len(rooms) == 1 else None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        group.lines[0].text = "changed"  # type: ignore[misc]


def test_a_node_knows_its_own_groups_by_their_start() -> None:
    node = 'node-"a"'
    prefix = own_group_prefix(node)
    assert own_group_seqs(encode_group(node, 12, [encode_row(LINE)] * 3), prefix) == (12, 3)
    others = (
        encode_group('node-"a"2', 12, [encode_row(LINE)]),
        encode_line(node, 12, LINE),
        encode_entry("hello", node, 14, data={"nick": "alice"}),
        prefix,
        prefix + b"12,",
        prefix + b"x,1,",
    )
    for other in others:
        assert own_group_seqs(other, prefix) is None


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


@pytest.mark.parametrize(
    "old_line",
    [
        # From before the array form: a line as an object.
        b'{"k":"event","n":"old-1","s":1,"e":{"type":"message","ts":1.5,"room":"#lobby",'
        b'"nick":"olga","text":"from an older node","kind":"say"},"r":"#lobby","p":1}',
        # From before groups: a line in an entry of its own.
        b'["l","old-1",1,1,1.5,"#lobby","olga","from an older node","say"]',
    ],
    ids=["object", "single-line"],
)
async def test_a_line_an_older_node_appends_reaches_the_users_of_newer_ones(
    broker_url: str, old_line: bytes
) -> None:
    """A rolling restart: a node from before the array form (or before groups) still
    appends its lines in its own form, through the same script; the newer nodes deliver
    them among their own, in the log's order."""
    import coredis

    from trio_chat.broker.redis import _APPEND, _keys
    from trio_chat.testing import local_config, open_client, open_test_server

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


# ------------------------------------------------------------------ groups read back


def a_reader(node: str) -> tuple[RedisBroker, list[Pending], list[int]]:
    """A broker of a hub with #lobby, not connected: what it hands on, and the ids it
    told the hub to expect."""
    hub = Hub()
    hub.rooms["#lobby"] = Room("#lobby")
    handed: list[Pending] = []
    expected: list[int] = []
    hub.expect = expected.append  # type: ignore[attr-defined]
    hub.expect_run = lambda first, last: expected.extend(range(first, last + 1))  # type: ignore[attr-defined]
    broker = RedisBroker(
        "redis://unused", hub, handed.append, deliver_many=handed.extend, node=node
    )
    return broker, handed, expected


def test_groups_read_back_hand_their_lines_on_in_order_with_the_log_ids() -> None:
    """This node's group: the lines it holds, numbered in place (their replies after them);
    another node's: each line decoded, with its room; both as one batch."""
    broker, handed, expected = a_reader("a")
    room = broker.hub.rooms["#lobby"]
    said = [dataclasses.replace(LINE, id=0, text=f"mine {i}") for i in range(3)]
    for line in said:
        broker.publish(Pending(line, room, (), True))
    reply = Pending(Info(text="noted"), None, ())
    broker.publish(reply)  # waits for the lines before it
    assert not handed
    (unit,) = broker._outgoing
    theirs = [dataclasses.replace(LINE, text=f"theirs {i}") for i in range(2)]
    entries = [
        (b"3-0", broker._payload(unit)),
        (b"5-0", encode_group("b", 9, [encode_row(line) for line in theirs])),
    ]
    broker._read_entries(entries, own_event_prefix("a"), own_line_prefix("a"))
    assert [p.event.id for p in handed[:3]] == [1, 2, 3]  # type: ignore[union-attr]
    assert [p.event for p in handed[:3]] == said and said[0].id == 1
    assert handed[3] is reply
    assert [p.event for p in handed[4:]] == [
        dataclasses.replace(line, id=n) for n, line in zip((4, 5), theirs, strict=True)
    ]
    assert all(p.room is room for p in handed[4:])
    assert expected == [1, 2, 3, 4, 5] and broker.last_event_id == 5
    assert not broker._mine and broker._position == "5-0"


def test_another_nodes_group_in_two_rooms_hands_each_line_on_to_its_room() -> None:
    """A group of lines to several rooms (and of a room this node does not know): each
    line goes on with its own room, stored as its row says, said under its account."""
    broker, handed, expected = a_reader("a")
    lobby = broker.hub.rooms["#lobby"]
    dev = broker.hub.rooms["#dev"] = Room("#dev")
    theirs = [
        LINE,
        dataclasses.replace(LINE, room="#dev"),
        dataclasses.replace(LINE, room="#gone"),
        dataclasses.replace(LINE, room="#dev", nick="bob"),
    ]
    rows = [encode_row(line, persist=line.nick == "alice") for line in theirs]
    rows[3] = encode_row(theirs[3], author="bob-account")
    broker._read_entries([(b"23-0", encode_group("b", 1, rows))], b"-", b"-")
    assert [p.event for p in handed] == [
        dataclasses.replace(line, id=n) for n, line in zip(range(20, 24), theirs, strict=True)
    ]
    assert [p.room for p in handed] == [lobby, dev, None, dev]
    assert [(p.persist, p.author, p.extra, p.sender) for p in handed] == [
        (True, None, (), None),
        (True, None, (), None),
        (True, None, (), None),
        (False, "bob-account", (), None),
    ]
    assert expected == [20, 21, 22, 23] and broker.last_event_id == 23


def test_a_group_of_this_node_missing_a_line_hands_on_the_others_with_their_ids() -> None:
    """A line of this node's group it no longer holds (it failed, or was read twice) is
    skipped: the others keep their own ids, and the hub expects only theirs."""
    broker, handed, expected = a_reader("a")
    room = broker.hub.rooms["#lobby"]
    said = [dataclasses.replace(LINE, id=0, text=f"mine {i}") for i in range(3)]
    for line in said:
        broker.publish(Pending(line, room, (), True))
    (unit,) = broker._outgoing
    del broker._mine[2]
    broker._read_entries([(b"12-0", broker._payload(unit))], b"-", b"-")
    assert [p.event for p in handed] == [said[0], said[2]]
    assert (said[0].id, said[2].id) == (10, 12)
    assert expected == [10, 12] and broker.last_event_id == 12


def test_expect_run_expects_each_id_of_a_group() -> None:
    """History stops below the first id of a group on its way, until each is delivered."""
    hub = Hub()
    hub.expect(3)
    hub.expect_run(4, 6)
    assert hub.history_bound() == 3 and hub.last_id == 6
    for event_id in (3, 4, 5):
        hub._release(event_id)
    assert hub.history_bound() == 6
    hub._release(6)
    assert hub.history_bound() == 7


def test_a_group_taken_by_the_writer_takes_no_more_lines() -> None:
    """Once the writer took a group it is sent as it is (again, if need be): the next line
    starts another, as does any other entry, so running numbers stay in order."""
    broker, _, _ = a_reader("a")
    room = broker.hub.rooms["#lobby"]
    broker.publish(Pending(dataclasses.replace(LINE, id=0), room, (), True))
    broker._open_group = None  # what the writer does as it takes a batch
    broker.publish(Pending(dataclasses.replace(LINE, id=0), room, (), True))
    broker._append("hello", data={"nick": "alice"})
    broker.publish(Pending(dataclasses.replace(LINE, id=0), room, (), True))
    broker.publish(Pending(dataclasses.replace(LINE, id=0), room, (), True))
    assert [(seq, flag, len(p)) for seq, flag, p in broker._outgoing if flag == "g"] == [
        (1, "g", 1),
        (2, "g", 1),
        (4, "g", 2),
    ]
    assert [flag for _, flag, _ in broker._outgoing] == ["g", "g", "c", "g"]


async def test_a_node_catching_up_stores_the_lines_of_a_group_it_had_not_stored(
    broker_url: str,
) -> None:
    """A node that stored up to id 2 comes back: of a group holding ids 1 to 4, it takes
    the stored lines above 2 (a group's entry has its last line's id)."""
    import coredis

    from trio_chat.broker.redis import _APPEND, _keys

    keys = _keys("catching-up")
    rows = [
        encode_row(dataclasses.replace(LINE, text=f"line {i}"), persist=i != 4)
        for i in (1, 2, 3, 4)
    ]
    broker, handed, _ = a_reader("c")
    broker._keys = keys
    broker.last_event_id = 2
    async with coredis.Redis.from_url(broker_url) as client:
        script = client.register_script(_APPEND)
        run = [keys["counter"], keys["log"], keys["seqs"]]
        payload = encode_group("b", 1, rows) + b"\n"
        assert await script(keys=run, args=[1000, "b", 1, "g", payload, "4"]) == 4
        broker._position = "4-0"  # as _start finds it
        await broker._catch_up(client)
    assert [(p.event.id, p.event.text) for p in handed] == [(3, "line 3")]  # type: ignore[union-attr]


# ------------------------------------------------------------------ groups by column


def columns_of(lines: list[Message], persist: list[bool], authors: list[str | None]) -> bytes:
    return encode_columns('node-"a"', 7, lines, persist, authors)


def test_a_group_by_column_gives_shared_fields_once_and_round_trips() -> None:
    said = [dataclasses.replace(LINE, id=0, ts=1.5 + i, text=f"line {i}") for i in range(3)]
    payload = columns_of(said, [True] * 3, [None] * 3)
    assert b"\n" not in payload  # the append script splits a batch at newlines
    assert orjson.loads(payload) == [
        "c", 'node-"a"', 7, 3, 1, "#lobby", "alice", "say", None,
        [1.5, 2.5, 3.5], ["line 0", "line 1", "line 2"],
    ]  # fmt: skip
    group = decode_group("42-0", payload)
    assert (group.node, group.first_seq, group.room) == ('node-"a"', 7, "#lobby")
    assert group.lines == [
        dataclasses.replace(line, id=n) for n, line in zip((40, 41, 42), said, strict=True)
    ]
    assert [type(line) for line in group.lines] == [Message] * 3
    assert [hash(line) for line in group.lines] == [
        hash(dataclasses.replace(line, id=n)) for n, line in zip((40, 41, 42), said, strict=True)
    ]
    assert group.persist == [True] * 3 and group.authors == [None] * 3
    entries = decode_entries("42-0", payload)
    assert [(e.kind, e.node, e.seq, e.event, e.persist) for e in entries] == [
        ("event", 'node-"a"', seq, line, True)
        for seq, line in zip((7, 8, 9), group.lines, strict=True)
    ]


COLUMN_GROUPS = {
    "one of each": ([LINE], [False], [None]),
    "rooms, nicks, kinds and stored apart": (
        [
            LINE,
            dataclasses.replace(LINE, room="#dev", kind="action"),
            dataclasses.replace(LINE, nick="bob", kind="notice"),
        ],
        [True, False, True],
        [None, None, None],
    ),
    "a reply and an author": (
        [LINE, REPLY, dataclasses.replace(LINE, text="third")],
        [True, True, False],
        [None, "bob", "carol"],
    ),
    "one author": ([LINE, REPLY], [True, True], ["bob", "bob"]),
}


@pytest.mark.parametrize("said", COLUMN_GROUPS.values(), ids=COLUMN_GROUPS.keys())
def test_a_group_by_column_reads_as_the_same_rows_by_row(
    said: tuple[list[Message], list[bool], list[str | None]],
) -> None:
    """Whatever its lines share or not, a group by column gives what the group of their
    rows (of nodes of before) gives: each line, whether it is stored, its author, the room
    its lines share."""
    lines, persist, authors = said
    last = f"{40 + len(lines) - 1}-0"
    rows = [
        encode_row(line, persist=p, author=a)
        for line, p, a in zip(lines, persist, authors, strict=True)
    ]
    by_row = decode_group(last, encode_group("n", 7, rows))
    by_column = decode_group(last, encode_columns("n", 7, lines, persist, authors))
    assert by_column == by_row
    assert by_column.lines == [
        dataclasses.replace(line, id=n) for n, line in zip(range(40, 50), lines, strict=False)
    ]


@pytest.mark.parametrize(
    "payload",
    [
        b'["c","n",1,0,1,"#a","al","say",null,[],[]]',  # no lines
        b'["c","n",1,2,1,"#a","al","say",null,[1.5],["hi"]]',  # a line short of its count
        b'["c","n","1",1,1,"#a","al","say",null,[1.5],["hi"]]',  # the number a string
        b'["c",7,1,1,1,"#a","al","say",null,[1.5],["hi"]]',  # the node a number
        b'["c","n",1,1,1,"#a",7,"say",null,[1.5],["hi"]]',  # the nick a number
        b'["c","n",1,2,1,"#a",["al"],"say",null,[1.5,2],["hi","ho"]]',  # a nick short
        b'["c","n",1,2,1,["#a",null],"al","say",null,[1.5,2],["hi","ho"]]',  # a room null
        b'["c","n",1,1,1,"#a","al","shout",null,[1.5],["hi"]]',  # no such kind
        b'["c","n",1,2,1,"#a","al",["say","Say"],null,[1.5,2],["hi","ho"]]',
        b'["c","n",1,1,1,"#a","al","say",null,["1.5"],["hi"]]',  # a time a string
        b'["c","n",1,1,1,"#a","al","say",null,[true],["hi"]]',
        b'["c","n",1,1,1,"#a","al","say",null,[1.5],[2]]',  # a text a number
        b'["c","n",1,1,1,"#a","al","say",null,[1.5],"hi"]',  # texts a string
        b'["c","n",1,1,"1","#a","al","say",null,[1.5],["hi"]]',  # stored a string
        b'["c","n",1,2,[1],"#a","al","say",null,[1.5,2],["hi","ho"]]',  # stored short
        b'["c","n",1,1,1,"#a","al","say",null,[1.5],["hi"],[{"reply_to":"x"}]]',
        b'["c","n",1,2,1,"#a","al","say",null,[1.5,2],["hi","ho"],[null]]',  # more short
        b'["c","n",1,1,1,"#a","al","say",null,[1.5],["hi"],null,null]',  # too long
        b'["c","n",1,1,1,"#a","al","say",null,[1.5]]',  # a column short
        b'["c","n",1,1,1,"#a","al","say",null,[1.5],["hi"]',  # not json
        b'["c","n",1,1,1,"#a","al","say",7,[1.5],["hi"]]',  # the author a number
        b'["c","n",1,2,1,"#a","al","say",["acc"],[1.5,2],["hi","ho"]]',  # an author short
        b'["c","n",1,2,1,"#a","al","say",["acc",7],[1.5,2],["hi","ho"]]',  # one a number
    ],
)
def test_a_group_by_column_that_is_not_ours_is_refused(payload: bytes) -> None:
    with pytest.raises(BadEntry):
        decode_group("1-0", payload)
    with pytest.raises(BadEntry):
        decode_entries("1-0", payload)


def test_the_group_by_column_the_refused_ones_differ_from_is_read() -> None:
    """Each group refused above is this one, or this one with two lines, wrong in one
    place; an author given once is every line's, a list one per line."""
    group = decode_group("1-0", b'["c","n",1,1,1,"#a","al","say",null,[1.5],["hi"]]')
    assert group.lines == [Message(id=1, ts=1.5, room="#a", nick="al", text="hi")]
    assert (group.persist, group.authors) == ([True], [None])
    two = b'["c","n",1,2,[1,0],"#a","al","say",%s,[1.5,2],["hi","ho"]]'
    assert decode_group("2-0", two % b'"acc"').authors == ["acc", "acc"]
    group = decode_group("2-0", two % b'["acc",null]')
    assert (group.authors, group.persist) == (["acc", None], [True, False])
    payload = encode_columns("n", 1, [LINE, LINE], [True, True], ["acc", "acc"])
    assert orjson.loads(payload)[8] == "acc"


def test_a_node_knows_its_own_groups_by_column_by_their_start() -> None:
    node = 'node-"a"'
    prefix = own_columns_prefix(node)
    payload = encode_columns(node, 12, [LINE] * 3, [True] * 3, [None] * 3)
    assert own_group_seqs(payload, prefix) == (12, 3)
    others = (
        encode_columns('node-"a"2', 12, [LINE], [True], [None]),
        encode_group(node, 12, [encode_row(LINE)]),
        encode_line(node, 12, LINE),
    )
    for other in others:
        assert own_group_seqs(other, prefix) is None


def test_a_run_published_at_once_fills_the_open_group_then_groups_of_its_own() -> None:
    """``publish_run`` takes lines as :meth:`publish` takes each: the same running numbers,
    groups of at most GROUP_LINES lines, the open group filled first."""
    broker, _, _ = a_reader("a")
    room = broker.hub.rooms["#lobby"]
    lines = [dataclasses.replace(LINE, id=0, text=f"{i}") for i in range(GROUP_LINES + 8)]
    broker.publish(Pending(lines[0], room, (), True))
    run = [Pending(line, room, (), True) for line in lines[1:]]
    broker.publish_run(run)
    assert [(seq, flag, len(p)) for seq, flag, p in broker._outgoing] == [
        (1, "g", GROUP_LINES),
        (GROUP_LINES + 1, "g", 8),
    ]
    assert list(broker._mine) == list(range(1, GROUP_LINES + 9))
    assert [broker._mine[seq] for seq in range(2, GROUP_LINES + 9)] == run
    broker.publish(Pending(lines[0], room, (), True))  # the next line joins the last group
    assert [len(p) for _, _, p in broker._outgoing] == [GROUP_LINES, 9]


def test_a_run_that_would_not_fit_is_refused_whole() -> None:
    broker, _, _ = a_reader("a")
    room = broker.hub.rooms["#lobby"]
    line = dataclasses.replace(LINE, id=0)
    broker.publish_run([Pending(line, room, (), True) for _ in range(MAX_WAITING - 2)])
    with pytest.raises(ServerBusy):
        broker.publish_run([Pending(line, room, (), True) for _ in range(3)])
    assert len(broker._mine) == MAX_WAITING - 2 and broker._seq == MAX_WAITING - 2
    broker.publish_run([Pending(line, room, (), True) for _ in range(2)])
    assert len(broker._mine) == MAX_WAITING


def test_a_group_of_this_node_by_column_is_read_back_from_its_start() -> None:
    """What the writer appends for a run (by column) is this node's own when read back:
    its lines numbered in place, in order, none decoded again."""
    broker, handed, expected = a_reader("a")
    room = broker.hub.rooms["#lobby"]
    run = [Pending(dataclasses.replace(LINE, id=0, text=f"{i}"), room, (), True) for i in range(4)]
    broker.publish_run(run)
    (unit,) = broker._outgoing
    payload = broker._payload(unit)
    assert payload.startswith(own_columns_prefix("a"))
    broker._read_entries([(b"9-0", payload)], b"-", b"-")
    assert handed == run and [p.event.id for p in handed] == [6, 7, 8, 9]  # type: ignore[union-attr]
    assert expected == [6, 7, 8, 9] and not broker._mine


def test_say_lines_with_a_broker_leaves_the_numbering_to_the_log() -> None:
    """With a broker whose log numbers the lines, a run goes to it at once, its ids only
    provisional (history waits for none of them); a run it refuses leaves no trace, and
    the caller says each line the usual way."""
    broker, _, _ = a_reader("a")
    hub = broker.hub
    broker.attach()
    session = hub.attach("alice", Mailbox(100), address="127.0.0.1:1", transport="test")
    hub.join(session, "#lobby")
    broker._outgoing.clear()
    broker._open_group = None
    before = hub.last_id
    assert hub.say_lines(session, "#lobby", ["one", "two", "three"])
    (unit,) = broker._outgoing
    assert [p.event.text for p in unit[2]] == ["one", "two", "three"]  # type: ignore[union-attr]
    assert all(p.sender is session and p.persist for p in unit[2])  # type: ignore[union-attr]
    assert not hub._undelivered and hub.last_id == before + 3
    broker._mine.update(dict.fromkeys(range(-MAX_WAITING, 0), unit[2][0]))  # type: ignore[arg-type]
    assert not hub.say_lines(session, "#lobby", ["four"])
    assert hub.last_id == before + 3 and len(unit[2]) == 3
    broker.detach()
    assert hub.log_run is None
