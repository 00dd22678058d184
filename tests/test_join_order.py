"""What a joiner gets, and in what order: its ``join``, then the room's ``history``, then
the room's live events, every id once; ``before`` pages for members who saw the lines live;
the reconnect recipe of docs/protocol.md (section 9), also for a gap bigger than a page.

Over real sockets (TCP, WebSocket, two nodes of a broker), with the pure parts (the
room's latest lines, the hub's delivery of a join) tested on their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
import trio
from test_broker import nodes
from test_devices import device
from test_hub import connect, published_hub, received

from trio_chat.hub import Hub
from trio_chat.protocol import (
    EncodedMessages,
    History,
    Joined,
    Message,
    MessageDeleted,
    MessageEdited,
    ServerEvent,
    encode_server_event,
    encode_server_line,
)
from trio_chat.recent import RecentLines
from trio_chat.testing import ChatClient, TestServer, local_config, open_client, open_test_server

ROOM = "#busy"
ON_JOIN = 50  # the default history_on_join
QUOTE = {"nick": "ann", "text": "l3"}

# ------------------------------------------------------------------ the pure parts


def line(n: int, room: str = "#r") -> Message:
    return Message(id=n, ts=float(n), room=room, nick="ann", text=f"l{n}")


def test_recent_lines_put_the_stored_page_under_the_lines_collected_meanwhile() -> None:
    lines = RecentLines(4)
    lines.add(line(10))  # delivered while the store was being read (below 10)
    assert not lines.ready
    lines.prime([line(n).to_dict() for n in (5, 6, 7, 8)])
    assert lines.ready
    assert [m["id"] for m in lines.page()] == [6, 7, 8, 10]  # the last 4, oldest dropped
    both = RecentLines(4)
    both.add(line(8))  # committed before the read, delivered after it began: kept once
    both.add(line(9))
    both.prime([line(n).to_dict() for n in (6, 7, 8)])
    assert [m["id"] for m in both.page()] == [6, 7, 8, 9]
    lines.extend([line(11), line(12)])
    assert [m["id"] for m in lines.page()] == [8, 10, 11, 12]
    assert lines.page()[-1] == line(12).to_dict()  # shaped like the message event


def plain_encodings(event: History) -> tuple[bytes, str]:
    """``event`` as JSON lines and WebSocket text, its messages encoded anew (a plain list)."""
    plain = History(
        room=event.room,
        with_nick=event.with_nick,
        messages=list(event.messages),
        more=event.more,
        ref=event.ref,
    )
    return encode_server_line(plain), encode_server_event(plain)


def test_a_page_of_the_latest_lines_is_encoded_from_each_lines_json_made_once() -> None:
    lines = RecentLines(4)
    lines.prime([line(n).to_dict() for n in (1, 2)])
    reply = Message(id=4, ts=4.0, room="#r", nick="bo", text="re", reply_to=3, quote=QUOTE)
    lines.extend([line(3), reply])
    page = lines.page()
    assert isinstance(page, EncodedMessages) and page.parts == [orjson.dumps(m) for m in page]
    events = [
        History(room="#r", messages=page, more=True),
        History(room='#"messages":[]', messages=page[1:3], ref='a "ref" \\ é'),
        History(with_nick="bo", messages=page[:0]),
        History(room="#r", messages=lines.after(2, 100, 10) or EncodedMessages([], [])),
    ]
    for event in events:
        assert type(event.messages) is EncodedMessages  # a slice keeps its JSON
        assert (encode_server_line(event), encode_server_event(event)) == plain_encodings(event)
    # A change makes the changed lines' JSON again (and the quotes of a deleted line's
    # replies): the page says what a page read from the store would.
    first = lines.page()
    lines.change(MessageEdited(id=5, ts=5.0, room="#r", nick="ann", target=2, text="new"))
    lines.change(MessageDeleted(id=6, ts=6.0, room="#r", nick="ann", target=3))
    changed = lines.page()
    assert [m.get("text") for m in changed] == ["l1", "new", "", "re"]
    assert changed[3]["quote"] == {"nick": QUOTE["nick"], "text": ""}
    event = History(room="#r", messages=changed)
    assert (encode_server_line(event), encode_server_event(event)) == plain_encodings(event)
    assert first[1]["text"] == "l2"  # a page handed out before keeps its lines
    lines.add(line(7))  # the oldest line leaves; the JSON stays beside each line
    event = History(room="#r", messages=lines.page())
    assert [m["id"] for m in event.messages] == [2, 3, 4, 7]
    assert (encode_server_line(event), encode_server_event(event)) == plain_encodings(event)
    lines.extend([line(n) for n in range(8, 14)])  # more than fit: the latest made, once
    event = History(room="#r", messages=lines.page())
    assert [m["id"] for m in event.messages] == [10, 11, 12, 13]
    assert (encode_server_line(event), encode_server_event(event)) == plain_encodings(event)


def test_a_joiner_gets_the_room_from_its_join_on_with_the_history_right_after_it() -> None:
    hub, queue = published_hub()
    hub.recent["#lobby"] = lines = RecentLines(3)
    lines.prime([])
    hub.join_history = lambda session, room: History(room=room, messages=lines.page())
    ann = connect(hub, "ann")
    hub.deliver_many(queue)
    queue.clear()
    received(ann)
    first = hub.say(ann, "#lobby", "one")  # numbered, not delivered yet
    bob = connect(hub, "bob")
    assert bob.id in hub.rooms["#lobby"].members and bob.id not in hub.rooms["#lobby"].here
    second = hub.say(ann, "#lobby", "two")
    hub.deliver_many(queue)
    got = received(bob)
    assert isinstance(got[0], Joined) and got[0].nick == "bob"
    assert isinstance(got[1], History) and got[1].messages == [first.to_dict()]
    assert got[2:] == [second]  # "one" only in the history, "two" only live
    assert bob.history_bound["#lobby"] == got[0].id


def test_a_quiet_room_joiner_gets_its_join_and_history_alone() -> None:
    hub, queue = published_hub()
    hub.quiet_room_size = 1
    hub.recent["#lobby"] = lines = RecentLines(3)
    lines.prime([line(1, "#lobby").to_dict()])
    hub.join_history = lambda session, room: History(room=room, messages=lines.page())
    ann = connect(hub, "ann")
    bob = connect(hub, "bob")
    hub.deliver_many(queue)
    ann_got, bob_got = received(ann), received(bob)
    assert [type(e) for e in bob_got] == [Joined, History]
    assert bob_got[0].nick == "bob"  # type: ignore[union-attr]
    assert all(getattr(e, "nick", None) != "bob" for e in ann_got)


def test_a_room_that_vanishes_drops_its_lines() -> None:
    hub = Hub()
    ann = hub.attach("ann", _mailbox(), address="127.0.0.1:1", transport="test")
    hub.join(ann, "#r")
    hub.recent["#r"] = lines = RecentLines(3)
    lines.prime([])
    hub.say(ann, "#r", "hi")
    assert [m["text"] for m in lines.page()] == ["hi"]
    hub.part(ann, "#r")
    assert "#r" not in hub.recent


def _mailbox() -> Any:
    from trio_chat.mailbox import Mailbox

    return Mailbox(100)


# ------------------------------------------------------------------ over sockets


def in_room(events: Sequence[ServerEvent], room: str) -> list[Any]:
    """The room's frames among ``events``: its events and its history frames."""
    kinds = ("join", "leave", "message", "topic", "history")
    return [e for e in events if e.TYPE in kinds and getattr(e, "room", None) == room]


def check_joiner_view(frames: list[Any], nick: str, said: list[int], page: int) -> list[int]:
    """``frames`` (a joiner's, for one room) are its ``join``, the room's ``history`` (if
    any: the last ``page`` lines before the join), then live events; the lines in both
    are exactly those ``said`` (by an earlier member's view) from the first one shown on,
    each once, ids rising. Returns the live lines' ids."""
    assert frames[0].TYPE == "join" and frames[0].nick == nick, frames[:3]
    joined = frames[0].id
    rest = frames[1:]
    shown: list[int] = []
    if rest and rest[0].TYPE == "history":
        shown = [m["id"] for m in rest[0].messages]
        rest = rest[1:]
    assert all(f.TYPE != "history" for f in rest)  # one history frame, right after the join
    assert all(i < joined for i in shown)
    assert shown == [i for i in said if i < joined][-page:]
    ids = [f.id for f in rest]
    assert all(i > joined for i in ids)
    live = [f.id for f in rest if f.TYPE == "message"]
    lines = shown + live
    assert lines == sorted(set(lines))  # rising, none twice
    start = lines[0] if lines else joined
    assert lines == [i for i in said if i >= start]  # no hole up to the last line said
    return live


async def drain(client: ChatClient) -> None:
    """Read (and keep, in ``client.history``) whatever comes, so that nobody is too slow."""
    while True:
        await client.receive()


async def chatter(client: ChatClient, name: str, stop: trio.Event) -> None:
    """Say lines in ROOM as fast as the socket takes them until ``stop``; then one last."""
    n = 0
    while not stop.is_set():
        await client.say(f"{name} {n}", room=ROOM)
        n += 1
    await client.say(f"end {name}", room=ROOM)


async def wait_for(client: ChatClient, count: int, predicate: Any) -> None:
    """Until ``count`` events matching ``predicate`` are in ``client.history``."""
    while sum(1 for e in client.history if predicate(e)) < count:
        await client.receive()


def is_end(event: ServerEvent) -> bool:
    return isinstance(event, Message) and event.room == ROOM and event.text.startswith("end ")


async def join_while_three_talk(
    joiner_at: TestServer, talkers_at: TestServer, *, websocket: bool
) -> None:
    """A joiner (on ``joiner_at``) joins ROOM while three users (on ``talkers_at``) say
    lines there as fast as they can; an earlier member (with them) sees everything."""
    async with contextlib.AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(open_client(talkers_at, "watcher"))
        talkers = [
            await stack.enter_async_context(open_client(talkers_at, name))
            for name in ("ann", "bea", "cid")
        ]
        for client in (watcher, *talkers):
            await client.command(f"/join {ROOM}")
            await client.expect("join", lambda e, n=client.nick: e.nick == n and e.room == ROOM)
        joiner = await stack.enter_async_context(open_client(joiner_at, websocket=websocket))
        await joiner.login("joiner")
        stop = trio.Event()
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for client in talkers:
                    nursery.start_soon(drain, client)
                    nursery.start_soon(chatter, client, client.nick, stop)
                # Enough lines for a full history page, then the join, mid-stream.
                await wait_for(watcher, ON_JOIN + 20, lambda e: isinstance(e, Message))
                nursery.start_soon(drain, watcher)
                await joiner.command(f"/join {ROOM}")
                await joiner.expect("join", lambda e: e.nick == "joiner")
                await wait_for(  # some lines live too
                    joiner, 30, lambda e: isinstance(e, Message) and e.room == ROOM
                )
                stop.set()
                await wait_for(joiner, 3, is_end)
                nursery.cancel_scope.cancel()
            await wait_for(watcher, 3, is_end)
        said = [e.id for e in watcher.history if isinstance(e, Message) and e.room == ROOM]
        frames = in_room(joiner.history, ROOM)
        live = check_joiner_view(frames, "joiner", said, ON_JOIN)
        assert len(live) >= 30 and isinstance(frames[1], History)
        assert len(frames[1].messages) == ON_JOIN  # a full page: it joined mid-stream


@pytest.mark.parametrize("websocket", [False, True], ids=["tcp", "websocket"])
async def test_a_joiner_gets_join_then_history_then_live_while_three_talk(
    websocket: bool,
) -> None:
    async with open_test_server() as chat:
        await join_while_three_talk(chat, chat, websocket=websocket)


async def test_the_same_with_the_talkers_on_another_node(broker_url: str) -> None:
    async with nodes(broker_url, 2) as (a, b):
        await join_while_three_talk(a, b, websocket=False)


async def test_a_member_who_saw_the_lines_live_pages_back_from_any_id() -> None:
    async with open_test_server() as chat, open_client(chat, "alice") as alice:
        async with open_client(chat, "bob") as bob:
            for client in (alice, bob):
                await client.command("/join #r")
                await client.expect("join", lambda e, n=client.nick: (e.nick, e.room) == (n, "#r"))
            for n in range(30):
                await bob.say(f"l{n}", room="#r")
            seen = [await alice.expect("message") for _ in range(30)]
        # /history, with nothing shown yet, starts from the latest lines (seen live), then
        # goes back each time.
        await alice.command("/history 5")
        page = await alice.expect("history")
        assert [m["id"] for m in page.messages] == [m.id for m in seen[25:]]
        await alice.command("/history 5")
        page = await alice.expect("history")
        assert [m["id"] for m in page.messages] == [m.id for m in seen[20:25]]
        # Nothing of #r was stored before alice joined: she saw all 30 live, and still
        # pages back from any id.
        await alice.send({"type": "history", "room": "#r", "before": seen[25].id, "limit": 10})
        page = await alice.expect("history")
        assert [m["id"] for m in page.messages] == [m.id for m in seen[15:25]]
        assert page.more is True


async def fill_gap(client: ChatClient, room: str, last_seen: int) -> list[int]:
    """The recipe of docs/protocol.md: ``history`` ``after`` the last id seen, paging on
    while ``more`` is true."""
    got: list[int] = []
    after = last_seen
    while True:
        await client.send({"type": "history", "room": room, "after": after, "ref": "gap"})
        page = await client.expect("history", lambda e: e.ref == "gap")
        got += [m["id"] for m in page.messages]
        if not page.more:
            return got
        after = got[-1]


async def test_the_reconnect_recipe_yields_exactly_a_gap_bigger_than_a_page() -> None:
    async with open_test_server() as chat, open_client(chat, "bob") as bob:
        await bob.command("/join #dev")
        await bob.expect("join", lambda e: e.nick == "bob" and e.room == "#dev")
        last: dict[str, int] = {}
        async with open_client(chat, "alice") as alice:
            await alice.command("/join #dev")
            await alice.expect("join", lambda e: e.nick == "alice" and e.room == "#dev")
            for room in ("#lobby", "#dev"):
                await bob.say(f"before, in {room}", room=room)
                last[room] = (await alice.expect("message", lambda e, r=room: e.room == r)).id
        # alice is away: 120 lines in #dev (more than a page), 7 in #lobby.
        said: dict[str, list[int]] = {"#lobby": [], "#dev": []}
        for n in range(127):
            await bob.say(f"gap {n}", room="#dev" if n < 120 else "#lobby")
        for _ in range(127):
            event = await bob.expect("message", lambda e: e.text.startswith("gap "))
            said[event.room].append(event.id)
        async with open_client(chat, "alice") as alice:  # back
            await alice.expect("join", lambda e: e.nick == "alice" and e.room == "#lobby")
            await alice.command("/join #dev")
            await alice.expect("join", lambda e: e.nick == "alice" and e.room == "#dev")
            # Lines said while it fills the gap come live, never in the gap.
            await bob.say("after", room="#dev")
            for room in ("#lobby", "#dev"):
                assert await fill_gap(alice, room, last[room]) == said[room]
            await wait_for(alice, 1, lambda e: isinstance(e, Message) and e.text == "after")
            live = next(e for e in alice.history if isinstance(e, Message))
            assert live.text == "after" and live.id > said["#dev"][-1]
            # Every line once: the join-time history overlaps the gap (clients de-duplicate
            # by id), live events do not.
            lives = [e.id for e in alice.history if isinstance(e, Message)]
            assert lives == [live.id]


@pytest.mark.parametrize("history_on_join", [0, 5])
async def test_join_history_size_and_none_without_a_database(history_on_join: int) -> None:
    config = local_config(history_on_join=history_on_join)
    async with open_test_server(config=config) as chat, open_client(chat, "alice") as alice:
        for n in range(8):
            await alice.say(f"l{n}")
        for _ in range(8):
            await alice.expect("message")
        async with open_client(chat, "bob") as bob:
            await bob.command("/join #lobby")  # already in: nothing more
            await bob.say("mark")
            await bob.expect("message", lambda e: e.text == "mark")
            histories = [e for e in bob.history if isinstance(e, History)]
            if history_on_join == 0:
                assert histories == []
            else:
                (history,) = histories
                assert [m["text"] for m in history.messages] == [f"l{n}" for n in range(3, 8)]
                assert history.more is True
                assert [e.TYPE for e in in_room(bob.history, "#lobby")][:2] == ["join", "history"]


async def test_no_history_frame_without_a_database() -> None:
    async with open_test_server(config=local_config(db=None)) as chat:
        async with open_client(chat, "alice") as alice:
            await alice.say("hi")
            await alice.expect("message")
            await alice.command("/join #r")
            await alice.expect("join", lambda e: e.room == "#r")
            await alice.say("mark", room="#r")
            await alice.expect("message", lambda e: e.text == "mark")
            assert not [e for e in alice.history if isinstance(e, History)]
        async with open_client(chat, "bob") as bob:
            await bob.say("mark")
            await bob.expect("message", lambda e: e.text == "mark")
            assert not [e for e in bob.history if isinstance(e, History)]


async def test_a_second_connection_gets_each_rooms_history_before_anything_live() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        laptop = await stack.enter_async_context(device(chat, register=True))
        await laptop.say("in the lobby")
        await laptop.command(f"/join {ROOM}")
        await laptop.expect("join", lambda e: e.nick == "alice" and e.room == ROOM)
        talkers = [
            await stack.enter_async_context(open_client(chat, name)) for name in ("ann", "bea")
        ]
        for client in talkers:
            await client.command(f"/join {ROOM}")
            await client.expect("join", lambda e, n=client.nick: e.nick == n and e.room == ROOM)
        stop = trio.Event()
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for client in talkers:
                    nursery.start_soon(drain, client)
                    nursery.start_soon(chatter, client, client.nick, stop)
                await wait_for(laptop, ON_JOIN + 20, lambda e: isinstance(e, Message))
                nursery.start_soon(drain, laptop)
                async with device(chat, websocket=True) as phone:
                    await wait_for(phone, 30, lambda e: isinstance(e, Message) and e.room == ROOM)
                    stop.set()
                    await wait_for(phone, 2, is_end)
                nursery.cancel_scope.cancel()
            await wait_for(laptop, 2, is_end)
        kinds = [e.TYPE for e in phone.history]
        assert kinds[:3] == ["welcome", "history", "history"]
        lobby, busy = phone.history[1:3]
        assert (lobby.room, [m["text"] for m in lobby.messages]) == ("#lobby", ["in the lobby"])
        said = [e.id for e in laptop.history if isinstance(e, Message) and e.room == ROOM]
        live = [e.id for e in phone.history[3:] if isinstance(e, Message) and e.room == ROOM]
        shown = [m["id"] for m in busy.messages]
        assert len(shown) == ON_JOIN and len(live) >= 30
        assert shown + live == [i for i in said if i >= shown[0]]  # each once, no hole
