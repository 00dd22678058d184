"""Runs of plain ``say`` frames: a TCP reader hands the says of one read to the server
together (``ChatServer.say_run``), the hub numbers them in one pass (``Hub.say_lines``),
delivery tells ``on_said`` once per sender's stretch, and a bundle of lines is encoded as
JSON lines in one loop. None of it may change what anyone sees: each scenario here runs
twice over real sockets, with runs and with every frame handled on its own (as before),
and what every client received must be the same, event for event."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from trio_chat import hookimpl
from trio_chat.delivery import Pending
from trio_chat.hub import Hub, NotSaved, Session
from trio_chat.mailbox import Mailbox
from trio_chat.protocol import (
    Joined,
    Message,
    Private,
    Say,
    chat_line,
    chat_lines,
    decode_client_frame,
    encode_server_line,
    encode_server_lines,
)
from trio_chat.server import ChatServer
from trio_chat.testing import (
    ChatClient,
    TestServer,
    local_config,
    open_client,
    open_test_server,
)
from trio_chat.transports import resident
from trio_chat.wire import JSON_LINES, encoded

END = "the end"

Scenario = Callable[[TestServer, ChatClient, ChatClient], Awaitable[None]]


def _lines(*frames: dict[str, Any] | str) -> bytes:
    return b"".join(
        (frame if isinstance(frame, str) else json.dumps(frame)).encode() + b"\n"
        for frame in frames
    )


def _say(text: str, **fields: Any) -> dict[str, Any]:
    return {"type": "say", "text": text, **fields}


def _seen(client: ChatClient) -> list[dict[str, Any]]:
    """What a client received, without the times (the two runs are at different times)."""
    return [{k: v for k, v in event.to_dict().items() if k != "ts"} for event in client.history]


async def _played(
    scenario: Scenario, *, runs: bool, plugins: tuple[object, ...] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[int]]:
    """What alice (who sends) and bob (who watches) received in ``scenario``, and the sizes
    of the runs the server was handed, with runs of says on or off."""
    sizes: list[int] = []
    with pytest.MonkeyPatch.context() as patch:
        if not runs:
            patch.setattr(resident, "SAY_RUNS", False)
        async with open_test_server(*plugins, config=local_config(db=None)) as chat:
            say_run = chat.server.say_run

            def counted(session: Session, frames: list[Say]) -> None:
                sizes.append(len(frames))
                say_run(session, frames)

            patch.setattr(chat.server, "say_run", counted)
            async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
                await alice.expect("join", lambda e: e.nick == "bob")
                await scenario(chat, alice, bob)
                await alice.send_raw(_lines(_say(END)))
                for client in (alice, bob):
                    await client.expect("message", lambda e: e.text == END)
                return _seen(alice), _seen(bob), sizes


async def _same_either_way(scenario: Scenario, *plugins: object) -> list[dict[str, Any]]:
    """Play ``scenario`` with runs and without; check that both clients saw the same, and
    that runs were made; alice's events."""
    alice, bob, sizes = await _played(scenario, runs=True, plugins=plugins)
    alice_before, bob_before, sizes_before = await _played(scenario, runs=False, plugins=plugins)
    assert alice == alice_before
    assert bob == bob_before
    assert max(sizes) > 1  # runs were handed over (the scenario's burst is one write)
    assert sizes_before == []  # (and none without)
    return alice


#: One write holding plain says and everything that must end a run or pass through it.
BURST = _lines(
    _say("one"),
    _say("two", ref="a"),
    _say("   ", ref="blank"),  # bad_field
    _say("three", room="#nowhere", ref="c"),  # not_in_room
    _say("four", room="#lobby"),
    {"type": "ping", "token": "t", "ref": "d"},
    "not json",
    _say("five", x=1),  # an unknown field: the general decoding
    _say("six\u00a0with a no-break space"),  # not isprintable(), still valid
    _say("seven", ref=7),  # a number for a ref
    _say("eight", reply_to=999_999, ref="e"),  # no_such_message
    {"type": "command", "name": "me", "args": "waves"},
    _say("nine", room=None),
    "",
    _say("ten", ref="x" * 65),  # too long a ref: bad_field
    _say("eleven\u0007", ref="bell"),  # a control character: bad_field
    _say("twelve"),
)


async def test_a_burst_of_every_kind_of_frame_is_answered_as_frame_by_frame() -> None:
    async def burst(chat: TestServer, alice: ChatClient, bob: ChatClient) -> None:
        await alice.send_raw(BURST)

    alice = await _same_either_way(burst)
    said = [e["text"] for e in alice if e["type"] == "message"]
    assert said[:4] == ["one", "two", "four", "five"]
    assert said[-3:] == ["nine", "twelve", END]
    errors = [(e["code"], e.get("ref")) for e in alice if e["type"] == "error"]
    assert errors == [
        ("bad_field", "blank"),
        ("not_in_room", "c"),
        ("bad_json", None),
        ("no_such_message", "e"),
        ("bad_field", None),  # (a ref too long is no ref)
        ("bad_field", "bell"),
    ]
    ids = [e["id"] for e in alice if "id" in e]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_lines_in_several_rooms_and_a_muted_sender_as_frame_by_frame() -> None:
    async def rooms(chat: TestServer, alice: ChatClient, bob: ChatClient) -> None:
        for client in (alice, bob):
            await client.join("#other")
        await alice.expect("join", lambda e: e.nick == "bob" and e.room == "#other")
        await alice.send_raw(
            _lines(*[_say(f"to other {i}", room="#other") for i in range(5)], _say("lobby"))
        )
        await bob.expect("message", lambda e: e.text == "lobby")
        # bob made #other's creator? No: alice joined first and is its operator.
        await alice.command("/mute bob #other")
        await alice.expect("info", lambda e: "muted" in e.text)
        await bob.send_raw(
            _lines(*[_say(f"muted {i}", room="#other", ref=str(i)) for i in range(3)])
        )
        for i in range(3):
            await bob.expect("error", lambda e, i=i: e.ref == str(i))

    await _same_either_way(rooms)


async def test_message_filters_see_each_line_of_a_run() -> None:
    class Shouting:
        def __init__(self) -> None:
            self.seen: list[str] = []

        @hookimpl
        def filter_message(self, text: str) -> str | None:
            self.seen.append(text)
            if text == END:
                return None
            return "" if text == "drop me" else text.upper()

    async def burst(chat: TestServer, alice: ChatClient, bob: ChatClient) -> None:
        await alice.send_raw(_lines(_say("a"), _say("drop me"), _say("b"), _say("c")))

    first, second = Shouting(), Shouting()
    alice, _, _ = await _played(burst, runs=True, plugins=(first,))
    alice_before, _, _ = await _played(burst, runs=False, plugins=(second,))
    assert alice == alice_before
    assert first.seen == second.seen == ["a", "drop me", "b", "c", END]
    assert [e["text"] for e in alice if e["type"] == "message"] == ["A", "B", "C", END]


async def test_the_ids_running_out_in_the_middle_of_a_run_refuse_the_rest_in_order() -> None:
    async def burst(chat: TestServer, alice: ChatClient, bob: ChatClient) -> None:
        hub = chat.server.hub
        saved = hub.message_id_limit
        hub.message_id_limit = hub.last_id + 3  # three more lines, then not_saved
        await alice.send_raw(_lines(*[_say(str(i), ref=str(i)) for i in range(6)]))
        await alice.expect("error", lambda e: e.ref == "5")
        hub.message_id_limit = saved

    alice = await _same_either_way(burst)
    assert [e["text"] for e in alice if e["type"] == "message"][:3] == ["0", "1", "2"]
    refused = [(e["code"], e["ref"]) for e in alice if e["type"] == "error"]
    assert refused == [("not_saved", "3"), ("not_saved", "4"), ("not_saved", "5")]


async def test_message_posted_gets_every_line_of_a_run_in_order() -> None:
    heard: list[tuple[str, str]] = []
    got_all = trio.Event()

    class Listener:
        @hookimpl
        def message_posted(self, message: Message, session: Session) -> None:
            heard.append((session.nick, message.text))
            if message.text == "9":
                got_all.set()

    async with open_test_server(Listener(), config=local_config(db=None)) as chat:
        async with open_client(chat, "alice") as alice:
            await alice.send_raw(_lines(*[_say(str(i)) for i in range(10)]))
            with trio.fail_after(10):
                await got_all.wait()
    assert heard == [("alice", str(i)) for i in range(10)]


async def test_a_run_of_lines_ends_the_senders_typing_notice() -> None:
    async with open_test_server(config=local_config(db=None)) as chat:
        async with open_client(chat, "alice") as alice:
            await alice.send({"type": "typing", "active": True})
            await alice.send({"type": "ping", "token": "after typing"})
            await alice.expect("pong")  # (so the typing frame before it was handled)
            throttle = chat.server.typing_notices.throttle
            assert throttle.typists
            await alice.send_raw(_lines(_say("x"), _say("y"), _say("z")))
            await alice.expect("message", lambda e: e.text == "z")
            assert not throttle.typists


# ---------------------------------------------------------------- the pure parts


@pytest.mark.parametrize(
    "frame",
    [
        _say("hi"),
        _say("hi", room="#lobby"),
        _say("hi", room="#lobby", ref="r"),
        _say("hi", ref="r"),
        _say("hi", room=None, ref=None),
        _say("hi", ref=3),
        _say("hi", ref=True),
        _say("hi", ref="x" * 64),
        _say("hi", ref="x" * 65),
        _say("hi", room=5),
        _say("hi", room="#a\u0000"),
        _say("a\u00a0b"),
        _say("a\nb"),
        _say("a\ud800b"),
        _say(""),
        _say("hi", reply_to=3),
        _say("hi", extra=[1]),
        {"type": "say"},
        {"type": "say", "text": None},
        {"type": "say", "text": 5},
        {"type": "say", "text": "hi", "type2": "x"},
    ],
)
def test_the_plain_say_decodes_as_the_general_rules_decode_it(
    frame: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:

    for line in (
        json.dumps(frame).encode(),
        json.dumps(frame, ensure_ascii=False).encode("utf-8", "surrogatepass"),
    ):
        _decodes_alike(line, monkeypatch)


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"say","text":"a\x7fb"}',  # a raw DEL: valid JSON, not valid text
        b'{"type":"say","text":"a\xc2\x85b"}',  # a raw C1 control (NEL)
        b'{"type":"say","text":"caf\xc3\xa9","room":"#caf\xc3\xa9"}',
        b'{"type":"say","text":"a\\tb"}',  # an escaped TAB: allowed
        b'{"type":"say","text":"a\\u0001b"}',
        b'{"type":"say","text":"plain","ref":"r\x7f"}',
    ],
)
def test_raw_lines_decode_as_the_general_rules_decode_them(
    line: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    _decodes_alike(line, monkeypatch)


def _decodes_alike(line: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from trio_chat import protocol

    def decoded() -> object:
        try:
            return decode_client_frame(line)
        except protocol.RemoteProtocolError as exc:
            return (exc.code, exc.text, exc.ref)

    fast = decoded()
    with monkeypatch.context() as patch:
        patch.setattr(protocol, "_plain_say", lambda obj: None)
        assert fast == decoded(), line


def test_lines_encoded_together_are_the_bytes_of_each_alone() -> None:
    events = [
        chat_line(1, 1.5, "#lobby", "alice", "plain", "say"),
        chat_line(2, 2.0, "#lobby", "alice", 'ünïcödé \u2028 and "quotes" \\', "say"),
        chat_line(3, 3.25, "#lobby", "bob", "an answer", "say", 1, {"nick": "a", "text": "x"}),
        chat_line(4, 4.0, "#lobby", "bob", "waves", "action"),
        Joined(id=5, ts=5.0, room="#lobby", nick="carol"),
        Private(id=6, ts=6.0, nick="a", to="b", text="psst"),
        chat_line(7, 7.0, "#lobby", "x", "\u0000 escaped", "notice"),
    ]
    assert encode_server_lines(events) == b"".join(encode_server_line(e) for e in events)
    from trio_chat.parcels import Bundle, Parcel

    parcel = Parcel(Bundle(tuple(events)))
    assert encoded(parcel, JSON_LINES) == b"".join(encode_server_line(e) for e in events)


def test_chat_lines_are_the_lines_chat_line_makes() -> None:
    times = iter([1.0, 2.0, 3.0])
    made = chat_lines(10, lambda: next(times), "#lobby", "alice", ["a", "b", "c"])
    assert made == [
        chat_line(10 + i, 1.0 + i, "#lobby", "alice", text, "say") for i, text in enumerate("abc")
    ]


class _Collected:
    def __init__(self) -> None:
        self.runs: list[list[Pending]] = []

    def __call__(self, run: list[Pending]) -> None:
        self.runs.append(run)


def _lobby(*nicks: str) -> tuple[Hub, list[Session]]:
    hub = Hub()
    sessions = []
    for nick in nicks:
        session = hub.attach(nick, Mailbox(100), address="test", transport="test")
        hub.join(session, "#lobby")
        sessions.append(session)
    return hub, sessions


def test_say_lines_numbers_a_run_as_say_would_each_line() -> None:
    hub, (alice,) = _lobby("alice")
    collected = hub.publish_run = _Collected()
    hub.broker = None  # (say_lines needs only publish_run)
    before = hub.last_id
    assert hub.say_lines(alice, "#LOBBY", ["one", "two", "three"])
    (run,) = collected.runs
    assert [p.event.id for p in run] == [before + 1, before + 2, before + 3]  # type: ignore[union-attr]
    assert [p.event.text for p in run] == ["one", "two", "three"]  # type: ignore[union-attr]
    assert all(p.room is hub.room("#lobby") and p.persist and p.sender is alice for p in run)
    assert all(type(p.event) is Message and p.event.nick == "alice" for p in run)
    assert hub.last_id == before + 3
    assert list(hub._undelivered) == [before + 1, before + 2, before + 3]


def test_say_lines_refuses_a_run_whole_where_say_would_refuse_a_line() -> None:
    hub, (alice, bob) = _lobby("alice", "bob")
    collected = hub.publish_run = _Collected()
    before = hub.last_id
    assert not hub.say_lines(alice, "#nowhere", ["x"])
    hub.room("#lobby").muted.add(bob.id)  # type: ignore[union-attr]
    assert not hub.say_lines(bob, "#lobby", ["x"])
    # The ids: room for two more lines, not three.
    hub.message_id_limit = before + 2
    assert not hub.say_lines(alice, "#lobby", ["a", "b", "c"])
    assert hub.say_lines(alice, "#lobby", ["a", "b"])
    with pytest.raises(NotSaved):
        hub._check_message_id()  # as say would find it now
    hub.message_id_limit = float("inf")
    # What may wait for the store: room for one more line, not two.
    hub.max_undelivered = len(hub._undelivered) + 1
    assert not hub.say_lines(alice, "#lobby", ["a", "b"])
    assert hub.say_lines(alice, "#lobby", ["a"])
    assert [len(run) for run in collected.runs] == [2, 1]
    hub.publish_run = None  # a broker that takes events one at a time
    hub.max_undelivered = 10_000
    assert not hub.say_lines(alice, "#lobby", ["a"])
    assert hub.last_id == before + 3


def test_a_server_without_the_local_broker_takes_no_runs() -> None:
    server = ChatServer(local_config(db=None))
    assert server.hub.publish_run is None  # until the publisher attaches, at serve
