"""A WebSocket reader takes a read's frames in one pass, as a TCP reader takes its lines:
whole messages in one masked frame are unframed without wsproto
(:func:`~trio_chat.transports.wsframes.whole_messages`), a read's messages are decoded
together with its plain says as one run (:meth:`WebSocketLink.receive_ready`), and a frame
that needs an answer (a ping, a close, a fragment, a frame wsproto refuses) is left for
:meth:`WebSocketLink.receive` in its place (``LINK_TURN``). None of it may change what
anyone sees: wsproto's events, the link's frames, and every event each client receives
over real sockets are compared with the frame-by-frame way."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing
from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.events import Message as WsMessage

from tests.test_websocket import raw_websocket
from trio_chat.limits import Overhead
from trio_chat.parcels import Bundle
from trio_chat.protocol import (
    Error,
    Joined,
    Message,
    RemoteProtocolError,
    SayLines,
    encode_server_event,
)
from trio_chat.testing import DEFAULT_TIMEOUT, local_config, open_client, open_test_server
from trio_chat.transports import resident, wsframes
from trio_chat.transports.link import LINK_TURN
from trio_chat.transports.websocket import WebSocketLink
from trio_chat.wire import (
    WEBSOCKET_BATCH_FRAMES,
    WEBSOCKET_FRAMES,
    batch_text,
    encoded,
    websocket_text_frame,
)

MASK = b"\x5a\x11\xc3\x07"


def hand_frame(first: int, payload: bytes, *, masked: bool = True, length: bytes = b"") -> bytes:
    """A client frame written by hand: ``first`` (FIN, reserved bits, opcode), ``payload``
    (masked unless told), its length in 7 bits or as ``length`` says (126 or 127 and the
    bytes after)."""
    head = bytes((first, (0x80 if masked else 0) | len(payload))) if not length else b""
    if length:
        head = bytes((first, (0x80 if masked else 0) | length[0])) + length[1:]
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def client_frames(*events: Event) -> list[bytes]:
    """What a client library sends for ``events`` (masked, as clients must)."""
    client = Connection(ConnectionType.CLIENT)
    return [bytes(client.send(event)) for event in events]


def say(text: str, **fields: Any) -> str:
    return json.dumps({"type": "say", "text": text, **fields})


#: Frames of every kind, one after another: those whole_messages takes, and every kind it
#: must leave to wsproto (which may refuse them: each is then the last of a run).
LIBRARY_FRAMES = client_frames(
    TextMessage(data=say("one")),
    TextMessage(data=say("two: ünïcödé, 漢字 and 🙂")),
    TextMessage(data="m" * 300),  # a 16-bit length
    BytesMessage(data=say("binary").encode()),
    TextMessage(data=""),
    Ping(payload=b"p"),
    TextMessage(data=say("after the ping")),
    Pong(payload=b"q"),
    TextMessage(data="a", message_finished=False),  # a fragmented message
    TextMessage(data="b", message_finished=True),
    TextMessage(data="l" * 70_000),  # a 64-bit length
    TextMessage(data=say("last")),
)
#: Frames wsproto refuses (it closes), each of which whole_messages must not take.
REFUSED_FRAMES = [
    hand_frame(0x81, b'{"type":"say"}', masked=False),  # a client's frame unmasked: 1002
    hand_frame(0xC1, b"x"),  # a reserved bit: 1002
    hand_frame(0x81, b"\xff\xfe"),  # text that is not UTF-8: 1007
    hand_frame(0x81, b"short", length=b"\x7e\x00\x05"),  # 16 bits for 5 bytes: 1002
    hand_frame(0x83, b"x"),  # an unknown opcode: 1002
]


def described(events: list[Event]) -> list[tuple[Any, ...]]:
    """Events as comparable tuples (wsproto's messages keep their data as given)."""
    out: list[tuple[Any, ...]] = []
    for event in events:
        if isinstance(event, WsMessage):
            out.append(
                (type(event).__name__, event.data, event.frame_finished, event.message_finished)
            )
        elif isinstance(event, CloseConnection):
            out.append(("close", event.code))
        else:
            out.append((type(event).__name__, getattr(event, "payload", None)))
    return out


def wsproto_events(data: bytes) -> list[Event]:
    server = Connection(ConnectionType.SERVER)
    server.receive_data(data)
    return list(server.events())


def taken_then_wsproto(data: bytes) -> list[Event]:
    """What whole_messages takes of ``data``, as the events wsproto would have made, then
    what wsproto makes of the rest."""
    messages, taken = wsframes.whole_messages(data)
    events: list[Event] = [
        TextMessage(data=m) if isinstance(m, str) else BytesMessage(data=m) for m in messages
    ]
    if taken < len(data):
        events += wsproto_events(data[taken:])
    return events


@pytest.mark.parametrize("refused", [b"", *REFUSED_FRAMES])
def test_whole_messages_then_wsproto_make_what_wsproto_makes_at_every_cut(refused: bytes) -> None:
    frames = LIBRARY_FRAMES[:4] + ([refused] if refused else []) + LIBRARY_FRAMES[4:]
    data = b"".join(frames)
    ends = {0}
    for frame in frames:
        ends.add(max(ends) + len(frame))
    cuts = [*range(0, 40), *range(len(frames[0]) - 3, len(data), 7), len(data)]
    for cut in cuts:
        part = data[:cut]
        assert described(taken_then_wsproto(part)) == described(wsproto_events(part)), cut
        _, taken = wsframes.whole_messages(part)
        assert taken in ends, cut  # it stops only where a frame starts


def test_whole_messages_takes_the_usual_frames_and_stops_at_the_first_other() -> None:
    data = b"".join(LIBRARY_FRAMES)
    messages, taken = wsframes.whole_messages(data)
    # Up to the ping: the says, the 16-bit one, the binary one, the empty one.
    assert messages == [
        say("one"),
        say("two: ünïcödé, 漢字 and 🙂"),
        "m" * 300,
        say("binary").encode(),
        "",
    ]
    assert taken == sum(len(frame) for frame in LIBRARY_FRAMES[:5])
    for refused in REFUSED_FRAMES:
        assert wsframes.whole_messages(refused) == ([], 0)
        assert wsframes.whole_messages(LIBRARY_FRAMES[0] + refused)[1] == len(LIBRARY_FRAMES[0])


# ----------------------------------------------------------------- the link, in runs


def comparable(item: Any) -> list[Any]:
    """A link's item as comparable values (a run of says as each say in it)."""
    if isinstance(item, SayLines):
        return list(item.frames())
    if isinstance(item, RemoteProtocolError):
        return [("error", item.code, str(item), item.ref)]
    if isinstance(item, Overhead):
        return [("overhead", item.cost)]
    return [item]


async def frames_one_by_one(link: WebSocketLink) -> list[Any]:
    items: list[Any] = []
    while link.input_waiting():
        item = await link.receive()
        items += comparable(item)
        if item is None:
            break
    return items


async def frames_in_runs(link: WebSocketLink) -> tuple[list[Any], int]:
    """The link's frames taken as the reader takes them in runs; and the longest run."""
    items: list[Any] = []
    longest = 0
    while link.input_waiting():
        ready = link.receive_ready()
        assert ready, "input waits, yet nothing is ready"
        for index, item in enumerate(ready):
            if item is LINK_TURN:
                assert index == len(ready) - 1  # always the last
                item = await link.receive()
            if isinstance(item, SayLines):
                longest = max(longest, len(item))
            items += comparable(item)
            if item is None:
                return items, longest
    return items, longest


def link_fed(data: bytes, max_frame_bytes: int = 1000) -> tuple[WebSocketLink, trio.abc.Stream]:
    """A link on a memory stream (what it writes goes to the returned end), fed ``data``
    as one read."""
    ours, theirs = trio.testing.memory_stream_pair()
    link = WebSocketLink(ours, "test", max_frame_bytes)
    link.feed(data)
    return link, theirs


async def written(stream: trio.abc.Stream) -> list[tuple[Any, ...]]:
    """What a link wrote to its peer, as the peer's events."""
    client = Connection(ConnectionType.CLIENT)
    with trio.move_on_after(0.05):
        while data := await stream.receive_some():
            client.receive_data(data)
    return described(list(client.events()))


#: A read of every kind of message and frame: plain says among the rest.
MIXED = [
    TextMessage(data=say("one")),
    TextMessage(data=say("two", ref="a")),
    TextMessage(data=say("   ", ref="blank")),
    TextMessage(data=say("three", room="#elsewhere")),
    TextMessage(data="not json"),
    TextMessage(data="   "),  # a blank message: bad_json, not a blank line
    TextMessage(data=""),
    BytesMessage(data=say("binary").encode()),
    BytesMessage(data=b"\xff"),  # bad_utf8
    TextMessage(data=say("é" * 200)),  # 400 bytes in UTF-8, 200 characters
    TextMessage(data=say("x" * 1200)),  # over the limit: frame_too_large
    TextMessage(data=say("é" * 400)),  # 600 characters, over the limit in UTF-8
    Ping(payload=b"ping"),
    TextMessage(data=say("four")),
    TextMessage(data=say("five", reply_to=3)),
    Pong(payload=b"pong"),
    TextMessage(data=json.dumps({"type": "ping", "token": "t"})),
    TextMessage(data=say("six")),
    TextMessage(data='{"type":"say",', message_finished=False),
    Ping(payload=b"between"),
    TextMessage(data='"text":"in pieces"}', message_finished=True),
    TextMessage(data=say("seven")),
    TextMessage(data=say("eight")),
]


@pytest.mark.parametrize("close", [False, True])
async def test_a_read_in_runs_gives_each_frame_and_answer_it_gives_one_by_one(close: bool) -> None:
    events: list[Event] = list(MIXED)
    data = b"".join(client_frames(*events, *([CloseConnection(code=1000)] if close else [])))
    if close:  # and a frame after it (framed apart: a client says nothing after its close)
        data += b"".join(client_frames(TextMessage(data=say("after the close"))))
    with trio.fail_after(DEFAULT_TIMEOUT):
        alone, alone_peer = link_fed(data)
        expected = await frames_one_by_one(alone)
        in_runs, runs_peer = link_fed(data)
        got, longest = await frames_in_runs(in_runs)
        assert got == expected
        assert longest >= 2  # the plain says came as runs
        assert (None in got) is close
        assert await written(runs_peer) == await written(alone_peer)  # pongs, the close


async def test_frames_after_a_read_that_ended_inside_one_are_taken_in_order() -> None:
    frames = client_frames(*(TextMessage(data=say(f"line {n}")) for n in range(6)))
    data = b"".join(frames)
    cut = len(frames[0]) + len(frames[1]) + 3  # in the third frame's header
    with trio.fail_after(DEFAULT_TIMEOUT):
        link, _ = link_fed(data[:cut])
        first, _ = await frames_in_runs(link)
        assert link.ws is not None  # the half frame is wsproto's to finish
        link.feed(data[cut:])
        rest, _ = await frames_in_runs(link)
        assert [say.text for say in first + rest] == [f"line {n}" for n in range(6)]
        assert link.ws is None  # given back, at rest again
        link.feed(b"".join(frames[:2]))
        again, _ = await frames_in_runs(link)
        assert [say.text for say in again] == ["line 0", "line 1"]


async def test_nothing_is_read_after_the_link_closes_even_what_was_taken_already() -> None:
    data = b"".join(client_frames(*(TextMessage(data=say(f"line {n}")) for n in range(3))))
    with trio.fail_after(DEFAULT_TIMEOUT):
        for in_runs in (False, True):
            link, peer = link_fed(data)
            assert link.input_waiting()
            await link.aclose()
            if in_runs:
                assert link.receive_ready() == [None]
            else:
                assert await link.receive() is None
            assert await written(peer) == [("close", 1000)]


# ------------------------------------------------------------ over real sockets


#: One write of a WebSocket client: plain says, and every kind of frame that ends a run
#: or passes through one, a ping answered in the middle.
BURST = [
    TextMessage(data=say("one")),
    TextMessage(data=say("two", ref="a")),
    TextMessage(data=say("   ", ref="blank")),  # bad_field
    TextMessage(data=say("three", room="#nowhere", ref="c")),  # not_in_room
    TextMessage(data=say("four", room="#lobby")),
    Ping(payload=b"are you there"),
    TextMessage(data=json.dumps({"type": "ping", "token": "t", "ref": "d"})),
    TextMessage(data="not json"),
    TextMessage(data=""),
    BytesMessage(data=say("five, in binary").encode()),
    TextMessage(data=say("six", reply_to=999_999, ref="e")),  # no_such_message
    TextMessage(data=json.dumps({"type": "command", "name": "me", "args": "waves"})),
    TextMessage(data=say("x" * 20_000, ref="big")),  # frame_too_large
    TextMessage(data=say("seven, in", ref="f"), message_finished=False),
    TextMessage(data="", message_finished=True),
    TextMessage(data=say("eight")),
    TextMessage(data=say("nine")),
    TextMessage(data=say("the end")),
]


def seen(events: list[Any]) -> list[Any]:
    """Events without their times (two runs are at different times)."""
    out = []
    for event in events:
        if isinstance(event, dict):
            out.append({k: v for k, v in event.items() if k != "ts"})
        else:
            out.append(event)
    return out


async def played(*, runs: bool) -> tuple[list[Any], list[dict[str, Any]], list[int]]:
    """What alice (who sends the burst in one write, over a raw WebSocket) and bob (a
    trio-websocket client) received, and the sizes of the runs handed to the server."""
    sizes: list[int] = []
    with pytest.MonkeyPatch.context() as patch:
        if not runs:
            patch.setattr(resident, "SAY_RUNS", False)
        async with open_test_server(config=local_config(db=None)) as chat:
            say_run = chat.server.say_run

            def counted(session: Any, frames: Any) -> None:
                sizes.append(len(frames))
                say_run(session, frames)

            patch.setattr(chat.server, "say_run", counted)
            async with (
                open_client(chat, "bob", websocket=True) as bob,
                raw_websocket(chat) as alice,
            ):
                await alice.login("alice")
                await bob.expect("join", lambda e: e.nick == "alice")
                burst = b"".join(alice.ws.send(event) for event in BURST)
                await alice.stream.send_all(burst)
                alice_saw: list[Any] = []
                with trio.fail_after(DEFAULT_TIMEOUT):
                    while True:
                        event = await alice.next_event()
                        assert event is not None
                        if isinstance(event, TextMessage):
                            frame = json.loads(event.data)
                            alice_saw.append(frame)
                            if frame.get("text") == "the end":
                                break
                        else:
                            alice_saw += described([event])
                await bob.expect("message", lambda e: e.text == "the end")
                bob_saw = [e.to_dict() for e in bob.history]
                return seen(alice_saw), seen(bob_saw), sizes


async def test_a_burst_over_websocket_is_answered_as_frame_by_frame() -> None:
    alice, bob, sizes = await played(runs=True)
    alice_before, bob_before, sizes_before = await played(runs=False)
    assert alice == alice_before
    assert bob == bob_before
    assert max(sizes) > 1  # runs were handed over (the burst is one write)
    assert sizes_before == []
    assert ("Pong", b"are you there") in alice
    texts = [e.get("text") for e in bob if e.get("type") == "message"]
    assert texts == [
        "one",
        "two",
        "four",
        "five, in binary",
        "waves",  # the /me
        "seven, in",
        "eight",
        "nine",
        "the end",
    ]
    errors = [e["code"] for e in alice if isinstance(e, dict) and e.get("type") == "error"]
    assert errors == [
        "bad_field",
        "not_in_room",
        "bad_json",
        "bad_json",
        "no_such_message",
        "frame_too_large",
    ]


async def test_a_websocket_reader_says_a_read_of_plain_lines_as_one_run() -> None:
    sizes: list[int] = []
    async with open_test_server(config=local_config(db=None)) as chat:
        server = chat.server
        say_run = server.say_run

        def counted(session: Any, frames: Any) -> None:
            sizes.append(len(frames))
            say_run(session, frames)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(server, "say_run", counted)
            async with (
                open_client(chat, "bob", websocket=True) as bob,
                raw_websocket(chat) as alice,
            ):
                await alice.login("alice")
                lines = [TextMessage(data=say(f"line {n}")) for n in range(20)]
                await alice.stream.send_all(b"".join(alice.ws.send(e) for e in lines))
                for n in range(20):
                    event = await bob.expect("message", lambda e: e.nick == "alice")
                    assert event.text == f"line {n}"
    assert sum(sizes) == 20
    assert max(sizes) > 1


# ----------------------------------------------------------- a bundle's batch frame


def test_a_bundle_batch_frame_and_an_event_frame_are_the_bytes_of_each_event_alone() -> None:
    events = (
        Message(id=1, ts=1.5, room="#lobby", nick="ann", text="plain"),
        Message(id=2, ts=2.0, room="#lobby", nick="ann", text='new\nline, "quotes", ü 🙂'),
        Message(id=3, ts=2.5, room="#lobby", nick="bo", text="a reply", reply_to=1),
        Message(
            id=4,
            ts=3.0,
            room="#lobby",
            nick="bo",
            text="quoting",
            reply_to=2,
            quote={"nick": "ann", "text": "new\nline"},
        ),
        Message(id=5, ts=3.5, room="#lobby", nick="cy", text="waves", kind="action"),
        Joined(id=6, ts=4.0, room="#lobby", nick="dee"),
        Error(code="bad_json", text="frame is not valid JSON", ref="r\n1"),
    )
    for event in events:  # and each alone, batching or not
        for fmt in (WEBSOCKET_FRAMES, WEBSOCKET_BATCH_FRAMES):
            assert encoded(event, fmt) == websocket_text_frame(encode_server_event(event).encode())
    for size in range(len(events) + 1):
        bundle = Bundle(events=events[:size])
        alone = websocket_text_frame(batch_text([bundle]).encode())
        assert encoded(bundle, WEBSOCKET_BATCH_FRAMES) == alone, size
    many = Bundle(events=events * 100)  # a frame of a 16-bit length
    assert encoded(many, WEBSOCKET_BATCH_FRAMES) == websocket_text_frame(
        batch_text([many]).encode()
    )
    frame = encoded(Bundle(events=events), WEBSOCKET_BATCH_FRAMES)
    assert frame[1] == 126  # (a 16-bit length follows)
    batch = json.loads(frame[4:])
    assert [event["type"] for event in batch["events"]] == ["message"] * 5 + ["join", "error"]
