"""A WebSocket connection holds wsproto's frame parser only while it has something to
parse (:mod:`trio_chat.transports.wsframes`): where a client's frames end, followed
without a parser, and a link giving its parser back between messages, keeping it in the
middle of one."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Ping, TextMessage

from trio_chat.limits import FRAGMENT_COST, FRAME_COST, Overhead
from trio_chat.protocol import Say
from trio_chat.testing import DEFAULT_TIMEOUT
from trio_chat.transports import wsframes
from trio_chat.transports.websocket import WebSocketLink
from trio_chat.transports.wsframes import FrameBoundary


def client_frames(*events: TextMessage | Ping) -> list[bytes]:
    """What a client library sends for ``events`` (masked, as clients must)."""
    client = Connection(ConnectionType.CLIENT)
    return [bytes(client.send(event)) for event in events]


def say(text: str) -> str:
    return json.dumps({"type": "say", "text": text})


def fed(*chunks: bytes) -> FrameBoundary:
    frames = FrameBoundary()
    for chunk in chunks:
        frames.feed(chunk)
    return frames


def test_whole_frames_end_at_rest_and_every_cut_inside_them_does_not() -> None:
    # Payloads of the three length encodings: 7 bits, 16 bits (126), 64 bits (127).
    frames = client_frames(
        TextMessage(data="short"), TextMessage(data="m" * 300), TextMessage(data="l" * 70_000)
    )
    data = b"".join(frames)
    assert fed(data).at_rest
    ends = {sum(len(f) for f in frames[: i + 1]) for i in range(len(frames))}
    for cut in [*range(1, 20), *range(len(frames[0]), len(frames[0]) + 20), len(data) - 1]:
        assert fed(data[:cut]).at_rest is (cut in ends), cut
        assert fed(data[:cut], data[cut:]).at_rest, cut


def test_a_message_in_fragments_is_open_until_its_last_even_with_a_ping_between() -> None:
    first, ping, middle, last = client_frames(
        TextMessage(data="a", message_finished=False),
        Ping(payload=b"p"),
        TextMessage(data="b", message_finished=False),
        TextMessage(data="c", message_finished=True),
    )
    frames = FrameBoundary()
    for chunk in (first, ping, middle):
        frames.feed(chunk)
        assert not frames.at_rest
    frames.feed(last)
    assert frames.at_rest
    one_byte_at_a_time = FrameBoundary()
    everything = first + ping + middle + last
    for i in range(len(everything)):
        one_byte_at_a_time.feed(everything[i : i + 1])
    assert one_byte_at_a_time.at_rest


def test_an_empty_frame_is_whole_at_its_header() -> None:
    (empty,) = client_frames(TextMessage(data=""))
    assert fed(empty).at_rest
    assert not fed(empty[:1]).at_rest


def test_only_an_open_parser_is_kept_for_the_next_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wsframes, "_spare", [])
    closed = Connection(ConnectionType.SERVER)
    closed.send(CloseConnection(code=1000))
    wsframes.give_back(closed)
    assert wsframes.lend() is not closed
    lent = wsframes.lend()
    wsframes.give_back(lent)
    assert wsframes.lend() is lent
    for _ in range(wsframes.SPARE_PARSERS + 1):
        wsframes.give_back(Connection(ConnectionType.SERVER))
    assert len(wsframes._spare) == wsframes.SPARE_PARSERS


class Link:
    """A server-side link on an in-memory stream."""

    def __init__(self) -> None:
        self.peer, server_side = trio.testing.memory_stream_pair()
        self.link = WebSocketLink(server_side, "test", 16_384)
        self.client = Connection(ConnectionType.CLIENT)

    async def send(self, event: TextMessage | Ping) -> None:
        await self.peer.send_all(self.client.send(event))


async def test_a_link_holds_a_parser_only_while_a_message_is_on_its_way() -> None:
    under = Link()
    assert under.link.ws is None  # nothing came behind the handshake
    with trio.fail_after(DEFAULT_TIMEOUT):
        await under.send(TextMessage(data=say("whole")))
        assert await under.link.receive() == Say(text="whole")
        assert not under.link.input_waiting()
        assert under.link.ws is None  # handled to its end: given back
        await under.send(TextMessage(data=say("in two")[:5], message_finished=False))
        assert await under.link.receive() == Overhead(FRAGMENT_COST)
        assert not under.link.input_waiting()
        assert under.link.ws is not None  # half a message: its parser stays
        await under.send(TextMessage(data=say("in two")[5:], message_finished=True))
        assert await under.link.receive() == Say(text="in two")
        assert not under.link.input_waiting()
        assert under.link.ws is None
        # Half a frame: the parser keeps the first half.
        (frame,) = client_frames(TextMessage(data=say("halves")))
        await under.peer.send_all(frame[:7])
        await under.link.fill()
        assert under.link.ws is not None
        await under.peer.send_all(frame[7:])
        assert await under.link.receive() == Say(text="halves")
        assert not under.link.input_waiting()
        assert under.link.ws is None


async def test_a_ping_is_answered_by_a_link_at_rest() -> None:
    under = Link()
    with trio.fail_after(DEFAULT_TIMEOUT):
        await under.send(Ping(payload=b"are you there"))
        assert await under.link.receive() == Overhead(FRAME_COST)
        under.client.receive_data(await under.peer.receive_some())
    assert [e.payload for e in under.client.events()] == [b"are you there"]  # type: ignore[attr-defined]
    assert not under.link.input_waiting()
    assert under.link.ws is None
