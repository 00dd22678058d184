"""The terminal client and issue 18: replies, edits, deletes, reactions, mentions, search,
typing and read markers.

First the parts without sockets (decoding, typed commands, the lines drawn, the
bookkeeping of typing and read markers), then the real client in a subprocess against a
real server, as tests/test_client.py runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from test_client import (
    ROOT,
    WAIT,
    RawClient,
    StoppableServer,
    client_command,
    raw_client,
    running_client,
)

from trio_chat.client.app import ChatClient
from trio_chat.client.completion import completions
from trio_chat.client.connection import Target, parse_target
from trio_chat.client.events import (
    ChatMessage,
    WireFrame,
    changed_items,
    decode_event,
    encode_frame,
)
from trio_chat.client.login import hello
from trio_chat.client.message_commands import SearchPaging, in_room_of_message
from trio_chat.client.outbox import parse_typed
from trio_chat.client.presence import ReadMarks, TypingNow, TypingSender
from trio_chat.client.render import BELL, MENTION, Renderer, reactions_summary
from trio_chat.client.resume import ChangedMeanwhile, Resume, RoomState
from trio_chat.client.shown import ShownMessages
from trio_chat.client.terminal import InputEnd
from trio_chat.names import name_key
from trio_chat.protocol import (
    Command,
    Hello,
    History,
    Info,
    Joined,
    MessageDeleted,
    MessageEdited,
    Reaction,
    ReadMarker,
    RemoteProtocolError,
    Say,
    SearchResults,
    Typing,
    TypingNotice,
    decode_client_frame,
    encode_client_frame,
)
from trio_chat.server import ChatServer
from trio_chat.testing import TestServer, local_config, open_test_server
from trio_chat.textmode import clock

TS = 1_764_000_000.0
PASSWORD = "s3cret-pass"


def message(event_id: int, text: str = "hi", nick: str = "bob", **extra: object) -> ChatMessage:
    fields = {"id": event_id, "ts": TS, "room": "#dev", "nick": nick, "text": text, **extra}
    event = decode_event(orjson.dumps({"type": "message", **fields}))
    assert isinstance(event, ChatMessage)
    return event


def renderer(nick: str = "alice", colour: bool = False) -> Renderer:
    shown = ShownMessages()
    r = Renderer(colour, shown)
    r.nick, r.room = nick, "#dev"
    return r


def sent(frame: object) -> dict[str, object]:
    assert isinstance(frame, WireFrame | Say | Command | Hello)
    decoded: dict[str, object] = json.loads(encode_frame(frame))
    return decoded


# ------------------------------------------------------------------------ decoding


def test_a_message_keeps_what_issue_18_added() -> None:
    reply = message(7, "sure", reply_to=5, quote={"nick": "alice", "text": "6pm?"})
    assert (reply.reply_to, reply.quote) == (5, {"nick": "alice", "text": "6pm?"})
    plain = message(9)
    assert (plain.reply_to, plain.quote, plain.deleted) == (None,) * 3
    # Nothing added shows in its JSON (--json prints what the server sent).
    assert plain.to_dict() == {
        "type": "message",
        "id": 9,
        "ts": TS,
        "room": "#dev",
        "nick": "bob",
        "text": "hi",
        "kind": "say",
    }


@pytest.mark.parametrize(
    ("obj", "cls"),
    [
        ({"type": "edit", "target": 5, "text": "new"}, MessageEdited),
        ({"type": "delete", "target": 5}, MessageDeleted),
        ({"type": "reaction", "target": 5, "emoji": "👍", "on": False}, Reaction),
    ],
)
def test_changes_are_numbered_room_events(obj: dict[str, object], cls: type) -> None:
    event = decode_event(orjson.dumps({**obj, "id": 9, "ts": TS, "room": "#dev", "nick": "bob"}))
    assert isinstance(event, cls)
    assert event.to_dict()["type"] == obj["type"]


def test_live_only_events_and_search_decode() -> None:
    typing = decode_event(b'{"type":"typing","room":"#dev","nick":"bob","active":true}')
    assert typing == Typing(room="#dev", nick="bob", active=True)
    read = decode_event(b'{"type":"read","room":"#dev","id":12}')
    assert read == ReadMarker(room="#dev", message_id=12)
    found = decode_event(b'{"type":"search","query":"x","messages":[],"more":true,"ref":"r"}')
    assert found == SearchResults(query="x", messages=[], more=True, ref="r")
    # Events from before issue 18 come as they always did.
    joined = decode_event(b'{"type":"join","id":3,"ts":1.0,"room":"#dev","nick":"bob"}')
    assert isinstance(joined, Joined)


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"edit","id":true,"ts":1,"room":"#d","nick":"b","target":5,"text":"x"}',
        b'{"type":"reaction","id":1,"ts":1,"room":"#d","nick":"b","target":"5","emoji":"x"}',
        b'{"type":"message","id":1,"ts":1,"room":"#d","nick":"b","text":"x","quote":"no"}',
        b'{"type":"delete","id":1,"ts":1,"room":"#d","nick":"b"}',
        b'{"type":"search","messages":[]}',
        b"[1]",
    ],
)
def test_a_broken_event_is_an_error_not_a_crash(line: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_event(line)


def test_changed_items_are_those_with_an_id_and_a_change() -> None:
    items = [{"id": 1, "changed": 4}, {"id": 2}, {"id": 3, "changed": True}, "junk", {"changed": 5}]
    assert changed_items(items) == [{"id": 1, "changed": 4}]


# ------------------------------------------------------------------- typed commands


@pytest.mark.parametrize(
    ("line", "frame"),
    [
        ("/reply 12 sure, 6pm", {"type": "say", "text": "sure, 6pm", "reply_to": 12}),
        ("/reply #12 sure", {"type": "say", "text": "sure", "reply_to": 12}),
        ("/edit 12 fixed  typo", {"type": "edit", "id": 12, "text": "fixed  typo"}),
        ("/delete 12", {"type": "delete", "id": 12}),
        ("/react 12 👍", {"type": "react", "id": 12, "emoji": "👍"}),
        ("/unreact 12 👍", {"type": "react", "id": 12, "emoji": "👍", "on": False}),
        ("/search deploy  friday", {"type": "search", "query": "deploy friday", "limit": 20}),
        (
            "/search #dev deploy",
            {"type": "search", "query": "deploy", "room": "#dev", "limit": 20},
        ),
        ("/search", {"type": "search"}),
        ("/mentions 5", {"type": "command", "name": "mentions", "args": "5"}),
        ("/typing off", {"type": "command", "name": "typing", "args": "off"}),
    ],
)
def test_message_commands_become_their_frames(line: str, frame: dict[str, object]) -> None:
    assert sent(parse_typed(line, json_mode=False)) == frame


@pytest.mark.parametrize(
    ("line", "usage"),
    [
        ("/reply 12", "usage: /reply ID TEXT"),
        ("/reply abc hi", "'abc' is not a message id"),
        ("/edit", "usage: /edit ID TEXT"),
        ("/delete 12 now", "usage: /delete ID"),
        ("/delete -3", "not a message id"),
        ("/react 12", "usage: /react ID EMOJI"),
        ("/react 12 two words", "usage: /react ID EMOJI"),
        ("/unreact ² 👍", "not a message id"),
        ("/edit 99999999999999999999 x", "not a message id"),
        ("/search #dev", "usage: /search [#room] WORDS"),
    ],
)
def test_a_malformed_message_command_is_refused_with_its_usage(line: str, usage: str) -> None:
    with pytest.raises(RemoteProtocolError) as refused:
        parse_typed(line, json_mode=False)
    assert usage in refused.value.message


def test_a_frame_goes_to_the_room_of_the_message_it_names() -> None:
    shown = ShownMessages()
    shown.add(message(12))
    frame = parse_typed("/react 12 👍", json_mode=False)
    assert isinstance(frame, WireFrame)
    assert in_room_of_message(frame, shown).room == "#dev"
    # An id never shown, or a room given, stays as it is (the server's current room).
    unknown = parse_typed("/delete 13", json_mode=False)
    assert isinstance(unknown, WireFrame)
    assert in_room_of_message(unknown, shown).room is None
    given = WireFrame("edit", {"id": 12, "text": "x", "room": "#ops"})
    assert in_room_of_message(given, shown).room == "#ops"


def test_a_bare_search_pages_back_through_the_last_one() -> None:
    paging = SearchPaging()
    bare = WireFrame("search", {})
    assert paging.next_frame(bare) == "usage: /search [#room] WORDS"
    first = WireFrame("search", {"query": "deploy", "limit": 20})
    assert paging.next_frame(first) == first
    paging.answered(oldest=40, more=True)
    assert paging.next_frame(bare) == first.with_fields(before=40)
    paging.answered(oldest=10, more=False)
    assert "found them all" in str(paging.next_frame(bare))


def test_a_required_false_is_sent_and_a_default_one_left_out() -> None:
    stop = json.loads(encode_client_frame(TypingNotice(room="#dev", active=False)))
    assert stop == {"type": "typing", "room": "#dev", "active": False}
    assert decode_client_frame(encode_client_frame(TypingNotice(active=False))) == TypingNotice(
        active=False
    )
    assert "register" not in json.loads(encode_client_frame(Hello(nick="a")))


def test_hello_asks_for_typing_notices_only_when_told() -> None:
    assert "typing" not in sent(hello("alice", None))
    frame = hello("alice", "pw", typing=True)
    assert sent(frame)["typing"] is True and sent(frame)["password"] == "pw"
    assert "pw" not in repr(frame)  # like Hello: never in a repr or a log


# -------------------------------------------------------------------------- drawing


def test_a_message_line_carries_its_id_in_its_time() -> None:
    line = renderer().line(message(41, "hello"))
    assert line == f"[{clock(TS)} #41] <bob> hello"


def test_a_reply_comes_after_a_line_quoting_what_it_answers() -> None:
    reply = message(42, "sure", reply_to=41, quote={"nick": "carol", "text": "6pm…"})
    quote, line = renderer().line(reply).split("\n")
    assert quote == "  ↳ #41 <carol> 6pm…"
    assert line.endswith("#42] <bob> sure")
    # A quote the server could not give (the message is gone) still names the id.
    assert renderer().line(message(43, "ok", reply_to=40)).startswith("  ↳ #40\n")
    gone = message(44, "ok", reply_to=39, quote={"nick": "carol", "text": ""})
    assert renderer().line(gone).startswith("  ↳ #39 <carol> (deleted)\n")


def test_an_edit_a_delete_and_reactions_are_lines_of_their_own() -> None:
    r = renderer()
    r.shown.add(message(41, "see you at six o'clock tonight, in the usual place as ever"))
    edit = MessageEdited(id=50, ts=TS, room="#dev", nick="bob", target=41, text="at seven")
    assert r.line(edit) == f"[{clock(TS)}] <bob> at seven (edited #41)"
    r.shown.remember(edit)
    on = Reaction(id=51, ts=TS, room="#dev", nick="carol", target=41, emoji="👍", on=True)
    assert r.line(on) == f"[{clock(TS)}] -!- carol reacted 👍 to #41 (bob: at seven)"
    off = Reaction(id=52, ts=TS, room="#dev", nick="carol", target=41, emoji="👍", on=False)
    assert r.line(off).endswith("-!- carol took back 👍 from #41 (bob: at seven)")
    # An operator deleting bob's message: whose it was is said.
    delete = MessageDeleted(id=53, ts=TS, room="#ops", nick="carol", target=41)
    assert r.line(delete) == f"[{clock(TS)}] #ops -!- carol deleted bob's message #41"
    r.shown.remember(delete)
    assert r.shown.get(41) is not None and r.shown.get(41).text == ""  # type: ignore[union-attr]
    own = MessageDeleted(id=54, ts=TS, room="#dev", nick="bob", target=41)
    assert r.line(own).endswith("-!- bob deleted message #41")
    # A reaction to a message never shown (or gone) is just its id.
    assert r.line(on).endswith("reacted 👍 to #41")


def test_a_long_reacted_to_message_is_cut() -> None:
    r = renderer()
    r.shown.add(message(41, "x" * 100))
    line = r.line(Reaction(id=51, ts=TS, room="#dev", nick="carol", target=41, emoji="🎉", on=True))
    assert line.endswith(f"(bob: {'x' * 39}…)")


def test_history_shows_messages_as_they_are_now() -> None:
    items = [
        message(1, "first").to_dict(),
        {**message(2, "fixed").to_dict(), "edited": TS + 5, "changed": 9},
        {**message(3, "").to_dict(), "deleted": True, "changed": 10},
        {**message(4, "yes").to_dict(), "reactions": {"👍": ["a", "b"], "🎉": ["c"]}},
        {**message(5, "ok").to_dict(), "reply_to": 1, "quote": {"nick": "bob", "text": "first"}},
    ]
    lines = renderer().line(History(room="#dev", messages=items)).split("\n")
    t = clock(TS)
    assert lines == [
        "-- history of #dev:",
        f"   [{t} #1] <bob> first",
        f"   [{t} #2] <bob> fixed (edited)",
        f"   [{t} #3] <bob> (deleted)",
        f"   [{t} #4] <bob> yes (👍 2, 🎉 1)",
        "     ↳ #1 <bob> first",
        f"   [{t} #5] <bob> ok",
    ]


def test_search_results_name_their_room_and_day() -> None:
    found = SearchResults(
        query="deploy",
        messages=[  # newest first, as the server sends them
            {**message(9, "deploy done").to_dict(), "room": "#dev"},
            {**message(7, "deploy at 6").to_dict(), "room": "#ops"},
        ],
        more=True,
    )
    header, first, second, footer = renderer().line(found).split("\n")
    assert header == '-- 2 messages found for "deploy":'
    day = time.strftime("%Y-%m-%d %H:%M", time.localtime(TS))
    assert first == f"   [{day} #7] #ops <bob> deploy at 6"
    assert second == f"   [{day} #9] #dev <bob> deploy done"
    assert "/search" in footer
    assert renderer().line(SearchResults(query="x", messages=[])) == '-- no messages found for "x"'


def test_mentions_answer_lists_the_lines_like_search() -> None:
    items = [  # newest first, as the server sends them
        {**message(9, "alice: done?").to_dict(), "room": "#ops", "unread": True},
        {**message(4, "ask alice").to_dict(), "room": "#dev"},
    ]
    answer = Info(text="2 lines name you", data={"mentions": items})
    day = time.strftime("%Y-%m-%d %H:%M", time.localtime(TS))
    assert renderer().line(answer).split("\n") == [
        "-- 2 lines naming you (* not read yet):",
        f"   [{day} #4] #dev <bob> ask alice",
        f" * [{day} #9] #ops <bob> alice: done?",
    ]
    items[0]["unread"] = False
    assert renderer().line(answer).split("\n")[0] == "-- 2 lines naming you:"
    none = Info(text="nobody named you", data={"mentions": []})
    assert renderer().line(none) == "-- nobody named you"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("al: look", True),
        ("@Al, look", True),
        ("(AL) and bob", True),
        ("al's idea", True),
        ("hey a1", True),  # a look-alike spelling names al, as nicks are compared
        ("hi all", False),
        ("@Al_ is someone else", False),
        ("2al xal al-x", False),
    ],
)
def test_a_line_naming_the_user_is_highlighted(text: str, named: bool) -> None:
    """The client flags the lines naming its user itself, by the server's rule for
    ``/mentions`` (the server does not mark live lines)."""
    r = renderer("al", colour=True)
    line = message(5, text)
    assert r.is_alert(line) is named
    assert r.line(line).endswith(BELL) is named
    assert not r.is_alert(message(8, "al: me", nick="al"))  # never your own


def test_what_others_send_cannot_drive_the_terminal() -> None:
    r = renderer()
    quote = {"nick": "x\x1b[2J", "text": "a\nb"}
    reply = r.line(message(42, "ok", reply_to=41, quote=quote))
    emoji = r.line(Reaction(id=1, ts=TS, room="#dev", nick="c", target=4, emoji="\x1b]0;", on=True))
    for line in (reply, emoji, reactions_summary({"\x07": ["a"]})):
        assert "\x1b" not in line and "\x07" not in line
    assert reply.count("\n") == 1  # the quote's newline is shown, not obeyed


def test_typing_and_read_markers_draw_no_line() -> None:
    r = renderer()
    assert r.line(Typing(room="#dev", nick="bob", active=True)) == ""
    assert r.line(ReadMarker(room="#dev", message_id=5)) == ""


# ---------------------------------------------------------------------- bookkeeping


def test_the_status_line_says_who_is_typing_until_they_stop() -> None:
    typing = TypingNow(shown_for=6.0)
    assert typing.status("#dev", 0.0) == ""
    typing.notice("#dev", "bob", True, now=0.0)
    typing.notice("#DEV", "carol", True, now=1.0)
    typing.notice("#ops", "dan", True, now=1.0)
    assert typing.status("#dev", 2.0) == "bob and carol are typing…"
    assert typing.next_change() == 6.0
    assert typing.status("#dev", 6.5) == "carol is typing…"  # bob's notice ran out
    typing.stopped("carol", "#dev")  # carol spoke
    assert typing.status("#dev", 6.5) == "" and typing.status("#ops", 6.5) == "dan is typing…"
    for nick in ("a", "b", "c", "d", "e"):
        typing.notice("#ops", nick, True, now=7.0)
    assert typing.status("#ops", 7.0) == "a, b, c and 2 more are typing…"  # dan ran out
    typing.notice("#ops", "b", False, now=7.0)  # stopped
    typing.stopped("a")  # left
    assert typing.status("#ops", 7.0) == "c, d and e are typing…"


def test_read_markers_go_up_only_and_once() -> None:
    reads = ReadMarks()
    assert reads.take() == []
    assert reads.shown("#dev", 5) and reads.shown("#dev", 7) and reads.shown("#ops", 3)
    reads.shown("#dev", 6)  # an older line shown later moves nothing back
    assert reads.take() == [("#dev", 7), ("#ops", 3)]
    assert reads.take() == []
    assert not reads.shown("#dev", 7)  # sent already
    reads.known("#dev", 20)  # another connection read further
    assert not reads.shown("#dev", 15)
    assert reads.shown("#dev", 21)
    reads.known("#dev", 25)
    assert reads.take() == []


def test_tab_offers_the_latest_ids_of_the_current_room() -> None:
    @dataclass
    class Known:
        nick: str | None = "alice"
        room: str | None = "#dev"
        rooms: dict[str, RoomState] = field(default_factory=dict)
        commands: list[str] = field(default_factory=list)
        shown: ShownMessages = field(default_factory=ShownMessages)

    known = Known()
    for event_id, nick in ((11, "bob"), (12, "alice"), (13, "bob"), (14, "alice")):
        known.shown.add(message(event_id, nick=nick))
    known.shown.add(ChatMessage(id=15, ts=TS, room="#ops", nick="bob", text="elsewhere"))
    assert completions(known, "/reply ") == (7, ["14 ", "13 ", "12 ", "11 "])
    assert completions(known, "/react #1") == (7, ["14 ", "13 ", "12 ", "11 "])
    assert completions(known, "/edit ") == (6, ["14 ", "12 "])  # your own only
    assert completions(known, "/reply 14 b") == (10, [])


def test_a_resync_holds_changes_and_shows_each_once_in_order() -> None:
    resume = Resume()
    dev = name_key("#dev")
    resume.start({dev: RoomState("#dev", last_id=10)}, "#dev", now=0.0)
    reaction = Reaction(id=12, ts=TS, room="#dev", nick="c", target=4, emoji="👍", on=True)
    edit = MessageEdited(id=11, ts=TS, room="#dev", nick="b", target=3, text="x")
    for event in (reaction, edit, reaction):
        assert resume.holding(event)
        resume.held.append(event)
    shown, ended = resume.flush("alice")
    assert ended and shown == [edit, reaction]


# ----------------------------------------------------------- against a real server


class ScriptedTerminal:
    """The user's side for a client run in-process: typed lines from the test, shown
    lines and the status line kept for it to read (a terminal *with* a status line, so
    the client asks for typing notices)."""

    interactive = False
    has_status = True

    def __init__(self) -> None:
        self._typed_in, self._typed_out = trio.open_memory_channel[str](10)
        self.lines: list[str] = []
        self.statuses: list[str] = [""]
        self._changed = trio.Event()

    async def read_line(self, prompt: Callable[[], str], *, secret: bool = False) -> str | InputEnd:
        try:
            return await self._typed_out.receive()
        except trio.EndOfChannel:
            return InputEnd.EOF

    def show(self, text: str) -> None:
        self.lines += text.split("\n")
        self._changed.set()

    def set_status(self, text: str) -> None:
        self.statuses.append(text)
        self._changed.set()

    async def type(self, line: str) -> None:
        await self._typed_in.send(line)

    async def wait_for(self, check: Callable[[], bool]) -> None:
        with trio.fail_after(WAIT):
            while not check():
                await self._changed.wait()
                self._changed = trio.Event()

    async def expect(self, text: str) -> str:
        """The first line shown (so far or later) that holds ``text``."""
        await self.wait_for(lambda: any(text in line for line in self.lines))
        return next(line for line in self.lines if text in line)

    async def expect_status(self, text: str) -> None:
        await self.wait_for(lambda: self.statuses[-1] == text)


@asynccontextmanager
async def client_in_process(
    chat: TestServer,
    nick: str,
    password: str | None = None,
    *,
    colour: bool = False,
    websocket: bool = False,
) -> AsyncIterator[tuple[ChatClient, ScriptedTerminal]]:
    """The client logged in as ``nick`` (typing ``password`` when asked for one), over TCP
    or WebSocket."""
    target = parse_target(chat.ws_url, 0) if websocket else Target("tcp", *chat.address("tcp"))
    terminal = ScriptedTerminal()
    client = ChatClient(target, terminal, nick, reconnect=False, colour=colour)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        if password is not None:
            await terminal.expect(f"Password for {nick}")
            await terminal.type(password)
        await terminal.expect(f"-- Hello {nick}")
        yield client, terminal
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("websocket", [False, True], ids=["tcp", "websocket"])
async def test_who_is_typing_shows_in_the_status_line_until_they_speak(websocket: bool) -> None:
    async with (
        open_test_server() as chat,
        client_in_process(chat, "alice", websocket=websocket) as (client, alice),
        raw_client({"tcp": chat.addresses[0]}, "bob") as bob,
    ):
        # Notices that never run out: the status line must clear for the right reason.
        client.typing = TypingNow(shown_for=3600.0)
        await alice.expect("bob joined #lobby")
        # The client asked for typing notices in its hello: the server sends them only then.
        await bob.send(type="typing", active=True)
        await alice.expect_status("bob is typing…")
        await bob.send(type="say", text="here I am")
        await alice.expect("<bob> here I am")
        await alice.expect_status("")  # who speaks has stopped typing
        await bob.send(type="typing", active=True)
        await alice.expect_status("bob is typing…")
        await bob.send(type="typing", active=False)
        await alice.expect_status("")
        assert not any("typing" in line for line in alice.lines)  # never a line of its own


async def test_read_markers_follow_what_the_client_shows(tmp_path: Path) -> None:
    config = local_config(ws_port=None, db=str(tmp_path / "chat.db"))
    async with (
        open_test_server(config=config) as chat,
        raw_client({"tcp": chat.addresses[0]}, "bob") as bob,
    ):
        host, port = chat.address("tcp")
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream(host, port)
        async with stream:
            phone = RawClient(stream)  # alice's other connection
            await phone.send(type="hello", nick="alice", password=PASSWORD, register=True)
            await phone.expect("welcome", nick="alice")
            async with client_in_process(chat, "alice", PASSWORD) as (client, alice):
                assert client.account
                await bob.send(type="say", text="one", ref="1")
                first = await bob.expect("message", text="one")
                await alice.expect("<bob> one")
                # The terminal showed it: the phone learns alice read #lobby up to there.
                await phone.expect("read", room="#lobby", id=first["id"])
                for text in ("two", "three", "four"):
                    await bob.send(type="say", text=text)
                last = await bob.expect("message", text="four")
                await alice.expect("<bob> four")
                marker = await phone.expect("read", room="#lobby", id=last["id"])
                assert marker == {"type": "read", "room": "#lobby", "id": last["id"]}


# -------------------------------------------- the real client against a scripted server


class ScriptedServer:
    """A JSON-lines server played by the test: it answers what every session needs
    (``ping``, ``hello``, commands, ``history``) and keeps every other frame the client
    sends, and the test sends the events it wants drawn. So the client is checked
    against the protocol's text, frame by frame, over a real socket."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.connections = 0
        self._stream: trio.SocketStream | None = None
        self._changed = trio.Event()
        self._hang_up = trio.Event()
        self._send_lock = trio.Lock()
        #: Per ``changed_after`` value: the history page answering it.
        self.changes: dict[int, list[dict[str, Any]]] = {}

    async def serve(self, task_status: trio.TaskStatus[int]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(self._handle, listeners, task_status=_with(task_status, port))

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        self._stream, self._hang_up = stream, trio.Event()
        async with trio.open_nursery() as nursery:

            async def hang_up() -> None:
                await self._hang_up.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(hang_up)
            buffer = b""
            while data := await stream.receive_some(65536):
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in filter(None, (li.strip() for li in lines)):
                    await self._answer(json.loads(line))
            nursery.cancel_scope.cancel()
        await stream.aclose()

    async def _answer(self, frame: dict[str, Any]) -> None:
        kind, ref = frame["type"], frame.get("ref")
        if kind == "ping":
            await self.send(type="pong", token=frame.get("token"))
        elif kind == "hello":
            await self.send(
                type="welcome", nick=frame["nick"], room="#lobby", server="s", version="1"
            )
            await self.send(type="join", id=1, ts=TS, room="#lobby", nick=frame["nick"])
        elif kind == "command" and frame["name"] in ("help", "who"):
            await self.send(type="info", text="ok", ref=ref)
        elif kind == "history" and "after" in frame:
            await self.send(type="history", room=frame["room"], messages=[], ref=ref)
        elif kind == "quit":
            await self.send(type="bye", code="quit", text="bye")
            self.hang_up()
        elif kind == "history" and "changed_after" in frame:
            page = self.changes.get(frame["changed_after"], [])
            await self.send(type="history", room=frame["room"], messages=page, ref=ref)
        self.frames.append(frame)
        self._changed.set()

    async def send(self, **event: Any) -> None:
        assert self._stream is not None
        async with self._send_lock:  # the test and the answers both send
            await self._stream.send_all(json.dumps(event).encode() + b"\n")

    async def say(self, event_id: int, text: str, nick: str = "bob", **extra: Any) -> None:
        await self.send(
            type="message", id=event_id, ts=TS, room="#lobby", nick=nick, text=text, **extra
        )

    async def expect(self, kind: str, **fields: Any) -> dict[str, Any]:
        """The first frame of ``kind`` with these fields the client sent (so far or later)."""

        def found() -> dict[str, Any] | None:
            for frame in self.frames:
                if frame["type"] == kind and all(frame.get(k) == v for k, v in fields.items()):
                    return frame
            return None

        with trio.fail_after(WAIT):
            while (frame := found()) is None:
                await self._changed.wait()
                self._changed = trio.Event()
        return frame

    def hang_up(self) -> None:
        self._hang_up.set()


def _with(task_status: trio.TaskStatus[int], port: int) -> trio.TaskStatus[Any]:
    """serve_listeners reports its listeners; the test wants the port."""

    class Status:
        def started(self, value: object = None) -> None:
            task_status.started(port)

    return Status()  # type: ignore[return-value]


@pytest.fixture
async def scripted(nursery: trio.Nursery) -> tuple[ScriptedServer, str]:
    server = ScriptedServer()
    port = await nursery.start(server.serve)
    return server, str(port)


async def test_message_commands_and_events_over_the_wire(
    scripted: tuple[ScriptedServer, str],
) -> None:
    server, port = scripted
    async with running_client("127.0.0.1", "--port", port, "--nick", "alice") as alice:
        await alice.expect("-- Hello alice")
        await server.say(5, "dinner at six?")
        assert (await alice.expect("dinner at six?")).endswith(" #5] <bob> dinner at six?")

        await alice.send_line("/reply 5 sure")
        await server.expect("say", text="sure", reply_to=5, room="#lobby")
        await server.say(6, "sure", "alice", reply_to=5, quote={"nick": "bob", "text": "dinner…"})
        assert await alice.expect("↳ #5") == "  ↳ #5 <bob> dinner…"
        assert (await alice.expect("<alice> sure")).endswith(" #6] <alice> sure")

        await alice.send_line("/edit #6 sure, at seven")
        await server.expect("edit", id=6, text="sure, at seven", room="#lobby")
        await server.send(
            type="edit", id=7, ts=TS, room="#lobby", nick="alice", target=6, text="sure, at seven"
        )
        await alice.expect("<alice> sure, at seven (edited #6)")

        await alice.send_line("/react 5 👍")
        await server.expect("react", id=5, emoji="👍", room="#lobby")
        await alice.send_line("/unreact 5 👍")
        await server.expect("react", id=5, emoji="👍", on=False)
        reaction = {"type": "reaction", "ts": TS, "room": "#lobby", "nick": "carol", "target": 5}
        await server.send(**reaction, id=8, emoji="🎉", on=True)
        await alice.expect("-!- carol reacted 🎉 to #5 (bob: dinner at six?)")
        await server.send(**reaction, id=9, emoji="🎉", on=False)
        await alice.expect("-!- carol took back 🎉 from #5")

        await alice.send_line("/delete 6")
        await server.expect("delete", id=6, room="#lobby")
        await server.send(type="delete", id=10, ts=TS, room="#lobby", nick="alice", target=6)
        await alice.expect("-!- alice deleted message #6")

        await alice.send_line("/edit 6")  # a malformed line: its usage, and nothing sent
        await alice.expect("!! usage: /edit ID TEXT")

        await alice.send_line("/search #lobby dinner")
        asked = await server.expect("search", query="dinner", room="#lobby")
        found = [
            {"type": "message", "id": 5, "ts": TS, "room": "#lobby", "nick": "bob", "text": "x"}
        ]
        await server.send(
            type="search", query="dinner", messages=found, more=True, ref=asked.get("ref")
        )
        await alice.expect('-- 1 message found for "dinner":')
        await alice.expect("#5] #lobby <bob> x")
        await alice.send_line("/search")  # the next page
        await server.expect("search", query="dinner", room="#lobby", before=5)

        await alice.send_line("/mentions 5")
        await server.expect("command", name="mentions", args="5")
        # Typing and read markers draw nothing; a piped client asked for no typing.
        hello = await server.expect("hello", nick="alice")
        assert "typing" not in hello
        await server.send(type="typing", room="#lobby", nick="bob", active=True)
        await server.send(type="read", room="#lobby", id=5)
        await server.say(11, "last")
        await alice.expect("<bob> last")
        status, stderr = await alice.finish()
    assert (status, stderr) == (0, "")
    assert not any("typing" in line or "read" in line for line in alice.output)
    # A guest sends no read markers (they are kept for accounts).
    assert not [f for f in server.frames if f["type"] == "read"]


async def test_after_a_reconnect_what_changed_meanwhile_is_shown(
    scripted: tuple[ScriptedServer, str],
) -> None:
    server, port = scripted
    async with running_client("127.0.0.1", "--port", port, "--nick", "alice") as alice:
        await alice.expect("-- Hello alice")
        for event_id, text in ((3, "first"), (4, "second"), (5, "third")):
            await server.say(event_id, text)
        await alice.expect("<bob> third")
        # While the client is away: #3 is edited, #4 deleted, #5 gets a reaction.
        base = {"type": "message", "ts": TS, "room": "#lobby", "nick": "bob"}
        server.changes[5] = [
            {**base, "id": 3, "text": "first!", "edited": TS, "changed": 12},
            {**base, "id": 4, "text": "", "deleted": True, "changed": 13},
            {**base, "id": 5, "text": "third", "reactions": {"👍": ["carol"]}, "changed": 14},
        ]
        server.hang_up()
        await server.expect("history", room="#lobby", after=5)
        # Once back (the gap filled), the client asks what changed since the last id shown.
        await alice.expect("-- back in #lobby")
        await server.expect("history", room="#lobby", changed_after=5)
        await alice.expect("-- changed in #lobby while you were away:")
        assert (await alice.expect("#3] <bob>")).endswith("<bob> first! (edited)")
        assert (await alice.expect("#4] <bob>")).endswith("<bob> (deleted)")
        assert (await alice.expect("#5] <bob> third (")).endswith("<bob> third (👍 1)")
        status, stderr = await alice.finish()
    assert (status, stderr) == (0, "")
    assert server.connections == 2


def test_typing_at_the_prompt_is_told_thinned_and_ended() -> None:
    sender = TypingSender(every=3.0)
    assert sender.changed("h", "#dev", now=0.0) == ("#dev", True)
    assert sender.changed("he", "#dev", now=1.0) is None  # thinned
    assert sender.changed("hel", "#dev", now=3.5) == ("#dev", True)
    assert sender.changed("", "#dev", now=4.0) == ("#dev", False)  # cleared
    assert sender.changed("", "#dev", now=4.5) is None
    assert sender.changed("/join #ops", "#dev", now=5.0) is None  # a command is not chat
    assert sender.changed("//not a command", "#dev", now=5.0) == ("#dev", True)
    sender.said()  # sent: the server ends the typing itself
    assert sender.changed("", "#dev", now=5.5) is None
    assert sender.changed("x", None, now=6.0) is None  # in no room


tmux = shutil.which("tmux")


@pytest.mark.skipif(tmux is None and not os.environ.get("CI"), reason="tmux is not installed")
async def test_typing_both_ways_at_a_real_terminal(tmp_path: Path) -> None:
    """The client in tmux: what is typed at its prompt reaches bob as typing notices, and
    bob's typing shows in a status line under the prompt until he speaks."""
    assert tmux is not None, "tmux is needed (CI installs it)"
    socket_path = str(tmp_path / "tmux.sock")

    async def tmux_run(*args: str) -> str:
        with trio.fail_after(WAIT):
            result = await trio.run_process(
                [tmux, "-S", socket_path, *args], capture_stdout=True, capture_stderr=True
            )
        return str(result.stdout.decode())

    async def screen_until(check: Callable[[list[str]], bool]) -> list[str]:
        with trio.fail_after(WAIT):
            while True:
                screen = await tmux_run("capture-pane", "-p", "-t", "chat")
                lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
                if check(lines):
                    return lines
                await trio.sleep(0.05)  # (tmux cannot tell us when the screen changes)

    async with open_test_server() as chat:
        host, port = chat.address("tcp")
        command = " ".join(client_command(host, "--port", str(port), "--nick", "tina"))
        env = {**os.environ, "TERM": "xterm-256color"}
        new_session = ["-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "20"]
        with trio.fail_after(WAIT):
            await trio.run_process(
                [tmux, "-S", socket_path, *new_session, "-s", "chat", "-c", str(ROOT), command],
                env=env,
            )
        try:
            with trio.fail_after(WAIT):
                stream = await trio.open_tcp_stream(host, port)
            async with stream:
                bob = RawClient(stream)
                await bob.send(type="hello", nick="bob", typing=True)
                await bob.expect("welcome", nick="bob")
                await screen_until(lambda lines: bool(lines) and lines[-1] == "tina #lobby>")
                await tmux_run("send-keys", "-t", "chat", "-l", "hel")
                await bob.expect("typing", room="#lobby", nick="tina", active=True)
                await tmux_run("send-keys", "-t", "chat", "C-u")  # the line cleared
                await bob.expect("typing", room="#lobby", nick="tina", active=False)

                await bob.send(type="typing", active=True)
                lines = await screen_until(lambda lines: "bob is typing…" in lines[-1])
                assert lines[-2] == "tina #lobby>", lines  # under the prompt
                await bob.send(type="say", text="done typing")
                await screen_until(
                    lambda lines: (
                        lines[-1] == "tina #lobby>"
                        and lines[-2].endswith("<bob> done typing")
                        and not any("typing…" in line for line in lines)
                    )
                )
                await tmux_run("send-keys", "-t", "chat", "-l", "/quit")
                await tmux_run("send-keys", "-t", "chat", "Enter")
                await bob.expect("leave", nick="tina")
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(WAIT):
                await trio.run_process(
                    [tmux, "-S", socket_path, "kill-server"], check=False, capture_stderr=True
                )


# ------------------------------------------------------ against the whole server (issue 18)


def id_of(line: str) -> int:
    """The message id in a line's time stamp, ``[12:30:05 #42] ...``."""
    found = re.search(r" #(\d+)\]", line)
    assert found, line
    return int(found.group(1))


@asynccontextmanager
async def account(
    chat: TestServer, nick: str, *, register: bool = False
) -> AsyncIterator[RawClient]:
    """A raw JSON-lines connection logged in to ``nick``'s account (``register``: a new
    one)."""
    host, port = chat.address("tcp")
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream(host, port)
    async with stream:
        client = RawClient(stream)
        await client.send(type="hello", nick=nick, password=PASSWORD, register=register)
        await client.expect("welcome", nick=nick)
        yield client


@pytest.mark.parametrize("websocket", [False, True], ids=["tcp", "websocket"])
async def test_reply_edit_react_delete_with_the_server(tmp_path: Path, websocket: bool) -> None:
    config = local_config(db=str(tmp_path / "chat.db"))
    async with open_test_server(config=config) as chat:
        host, port = chat.address("tcp")
        where = [chat.ws_url] if websocket else [host, "--port", str(port)]
        async with (
            raw_client({"tcp": f"tcp://{host}:{port}"}, "bob") as bob,
            running_client(*where, "--nick", "alice") as alice,
        ):
            await alice.expect("-- Hello alice")
            await bob.expect("join", nick="alice")
            await bob.send(type="say", text="dinner at six?")
            asked = id_of(await alice.expect("<bob> dinner at six?"))

            await alice.send_line(f"/reply {asked} sure")
            reply = await bob.expect("message", nick="alice", reply_to=asked)
            assert reply["quote"] == {"nick": "bob", "text": "dinner at six?"}
            assert await alice.expect(f"↳ #{asked}") == f"  ↳ #{asked} <bob> dinner at six?"
            answer = id_of(await alice.expect("<alice> sure"))
            assert answer == reply["id"]

            await alice.send_line(f"/edit {answer} sure, at seven")
            await bob.expect("edit", target=answer, text="sure, at seven")
            await alice.expect(f"<alice> sure, at seven (edited #{answer})")
            await alice.send_line(f"/edit {asked} not mine")  # bob's line: refused
            await alice.expect("!! ")

            await bob.send(type="react", id=answer, emoji="👍")
            await alice.expect(f"-!- bob reacted 👍 to #{answer} (alice: sure, at seven)")
            await alice.send_line(f"/react #{asked} 🎉")
            await bob.expect("reaction", target=asked, emoji="🎉", on=True)
            await alice.send_line(f"/unreact {asked} 🎉")
            await bob.expect("reaction", target=asked, emoji="🎉", on=False)
            await alice.send_line(f"/react {asked} 🎉")
            await bob.expect("reaction", target=asked, emoji="🎉", on=True)

            await alice.send_line(f"/delete {answer}")
            await bob.expect("delete", target=answer, nick="alice")
            await alice.expect(f"-!- alice deleted message #{answer}")

            # History shows the room as it is now.
            await alice.send_line("/history")
            await alice.expect("-- history of #lobby:")
            assert (await alice.expect(f" #{asked}] <bob>")).endswith("<bob> dinner at six? (🎉 1)")
            assert (await alice.expect(f" #{answer}] <alice>")).endswith("<alice> (deleted)")
            status, stderr = await alice.finish()
    assert (status, stderr) == (0, "")


async def test_search_and_mentions_with_the_server(tmp_path: Path) -> None:
    config = local_config(ws_port=None, db=str(tmp_path / "chat.db"))
    async with (
        open_test_server(config=config) as chat,
        client_in_process(chat, "alice", colour=True) as (_, terminal),
        raw_client({"tcp": chat.addresses[0]}, "bob") as bob,
    ):
        await bob.send(type="say", text="deploy friday at six")
        await bob.send(type="say", text="lunch anyone?")
        await bob.send(type="say", text="@alice: deploy done?")
        # The server names alice in the line: highlighted, and the bell rings.
        mention = await terminal.expect("deploy done?")
        assert MENTION in mention and mention.endswith(BELL)
        assert BELL not in await terminal.expect("lunch anyone?")

        await terminal.type("/search deploy")
        await terminal.expect('-- 2 messages found for "deploy":')
        found = [line for line in terminal.lines if "deploy" in line and "#lobby" in line]
        assert len(found) == 2 and "friday" in found[0] and "done?" in found[1]

        await terminal.type("/mentions")
        await terminal.expect("-- 1 line naming you:")
        named = terminal.lines[-1]
        assert "#lobby" in named and "@alice: deploy done?" in named


async def test_what_changed_while_away_is_shown_after_a_reconnect(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """bob edits, deletes and reacts while alice's client is away (the server down): once
    back, the client shows those older messages as they are now."""
    config = local_config(ws_port=None, db=str(tmp_path / "chat.db"))
    first = await StoppableServer.start(nursery, config)
    port = first.port
    async with running_client("127.0.0.1", "--port", str(port), "--nick", "alice") as alice:
        await alice.expect("-- Hello alice")
        async with account(TestServer(first.server, [first.address]), "bob", register=True) as bob:
            ids = []
            for text in ("first", "second", "third"):
                await bob.send(type="say", text=text)
                ids.append(id_of(await alice.expect(f"<bob> {text}")))
        await first.stop()
        await alice.expect("-- reconnecting")
        # Meanwhile, on another port alice's client does not know of:
        async with open_test_server(config=config) as elsewhere, account(elsewhere, "bob") as bob:
            await bob.send(type="edit", id=ids[0], room="#lobby", text="first!")
            await bob.expect("edit", target=ids[0])
            await bob.send(type="delete", id=ids[1], room="#lobby")
            await bob.expect("delete", target=ids[1])
            await bob.send(type="react", id=ids[2], room="#lobby", emoji="👍")
            await bob.expect("reaction", target=ids[2])
        again = ChatServer(replace(config, port=port))
        await nursery.start(again.serve)
        await alice.expect("-- back in #lobby")
        await alice.expect("-- changed in #lobby while you were away:")
        assert (await alice.expect(f" #{ids[0]}] <bob>")).endswith("<bob> first! (edited)")
        assert (await alice.expect(f" #{ids[1]}] <bob>")).endswith("<bob> (deleted)")
        assert (await alice.expect(f" #{ids[2]}] <bob>")).endswith("<bob> third (👍 1)")
        status, stderr = await alice.finish()
        again.shutdown()
    assert (status, stderr) == (0, "")


def test_what_changed_meanwhile_is_paged_and_only_older_messages_are_news() -> None:
    changed = ChangedMeanwhile()
    changed.due = {"dev": 10, "ops": 7}
    assert changed.ask_due() == [("dev", 10), ("ops", 7)] and not changed.due
    first = [{"id": 4, "changed": 11}, {"id": 12, "changed": 13}, {"id": 9, "changed": 15}]
    # #12 came with the gap, as it is now: not news. The next page starts after change 15.
    assert changed.page("dev", first, more=True) == ([first[0], first[2]], 15)
    assert changed.page("dev", [{"id": 2, "changed": 16}], more=False) == (
        [{"id": 2, "changed": 16}],
        None,
    )
    assert changed.page("dev", [{"id": 3, "changed": 17}], more=False) == ([], None)  # done
    # An older server ignores changed_after: its latest messages, none changed, no next page.
    assert changed.page("ops", [{"id": 5}, {"id": 6}], more=True) == ([], None)
    changed.due = {"dev": 10}
    changed.ask_due()
    changed.forget("dev")  # refused
    assert changed.page("dev", first, more=True) == ([], None)
