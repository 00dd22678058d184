"""The WebSocket transport at the frame level: a client made of raw bytes and wsproto.

The friendly clients (trio-websocket, browsers) never send frames in odd shapes; these tests
do: frames pipelined with the handshake, fragments, pings, oversized and unmasked frames,
a bad handshake, and a close.
"""

from __future__ import annotations

import contextlib
import json
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from trio_chat.limits import FRAGMENT_COST, FRAME_COST, PONG_COST, Overhead
from trio_chat.parcels import Bundle, Raw
from trio_chat.protocol import Message, RemoteProtocolError, Say
from trio_chat.testing import DEFAULT_TIMEOUT, TestServer, open_client
from trio_chat.transports.websocket import WS_MAX_FRAGMENTS, WebSocketLink, _batched
from trio_chat.wire import (
    WEBSOCKET_BATCH_FRAMES,
    WEBSOCKET_FRAMES,
    WEBSOCKET_KEEPALIVE_PING,
    batch_text,
    encoded,
)


class RawWebSocket:
    """A WebSocket client that shows every event wsproto parses from the server."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Event] = []

    async def next_event(self) -> Event | None:
        """The next event from the server; ``None`` once the socket closed."""
        with trio.fail_after(DEFAULT_TIMEOUT):
            while not self.pending:
                data = await self.stream.receive_some(65536)
                if not data:
                    return None
                self.ws.receive_data(data)
                self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    async def close_frame(self) -> CloseConnection:
        """Skip to the server's close frame (failing if the socket just closed)."""
        while not isinstance(event := await self.next_event(), CloseConnection):
            assert event is not None, "closed without a close frame"
        return event

    async def next_frame(self) -> dict[str, Any]:
        event = await self.next_event()
        assert isinstance(event, TextMessage), event
        frame: dict[str, Any] = json.loads(event.data)
        return frame

    async def frame_of_type(self, kind: str) -> dict[str, Any]:
        while (frame := await self.next_frame())["type"] != kind:
            pass
        return frame

    async def login(self, nick: str) -> None:
        await self.stream.send_all(self.text(hello(nick)))
        await self.frame_of_type("join")

    def text(self, obj: dict[str, Any]) -> bytes:
        return self.ws.send(TextMessage(data=json.dumps(obj)))


@asynccontextmanager
async def raw_websocket(chat: TestServer) -> AsyncIterator[RawWebSocket]:
    """Connect and upgrade."""
    host, port = chat.address("ws")
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        client = RawWebSocket(stream)
        request = client.ws.send(Request(host=f"{host}:{port}", target="/"))
        await stream.send_all(request)
        accepted = await client.next_event()
        assert isinstance(accepted, AcceptConnection)
        yield client


def masked_text_frame(payload: bytes) -> bytes:
    """A client text frame written by hand (wsproto refuses to frame invalid UTF-8, and
    frames nothing before the handshake is answered)."""
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + mask + masked


def hello(nick: str) -> dict[str, str]:
    return {"type": "hello", "nick": nick}


async def test_frames_sent_with_the_handshake_and_in_fragments_are_all_read(
    chat_server: TestServer,
) -> None:
    async with open_client(chat_server, "bob") as bob:
        host, port = chat_server.address("ws")
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            client = RawWebSocket(stream)
            # wsproto frames nothing before the 101, so the handshake goes alone; then
            # everything else in one write.
            await stream.send_all(client.ws.send(Request(host=f"{host}:{port}", target="/")))
            assert isinstance(await client.next_event(), AcceptConnection)
            say = json.dumps({"type": "say", "text": "in three pieces"})
            burst = (
                client.text(hello("wes"))
                + client.text({"type": "say", "text": "first"})
                + client.ws.send(TextMessage(data=say[:10], message_finished=False))
                + client.ws.send(TextMessage(data=say[10:20], message_finished=False))
                + client.ws.send(TextMessage(data=say[20:], message_finished=True))
            )
            await stream.send_all(burst)
            assert (await client.frame_of_type("welcome"))["nick"] == "wes"
            for text in ("first", "in three pieces"):
                assert (await bob.expect("message", lambda e: e.nick == "wes")).text == text


async def test_frames_in_the_same_packet_as_the_handshake_are_read(
    chat_server: TestServer,
) -> None:
    host, port = chat_server.address("ws")
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        client = RawWebSocket(stream)
        request = client.ws.send(Request(host=f"{host}:{port}", target="/"))
        await stream.send_all(request + masked_text_frame(json.dumps(hello("eager")).encode()))
        assert isinstance(await client.next_event(), AcceptConnection)
        assert (await client.frame_of_type("welcome"))["nick"] == "eager"


async def test_a_ping_frame_is_answered_with_its_payload(chat_server: TestServer) -> None:
    async with raw_websocket(chat_server) as client:
        await client.login("pinger")
        await client.stream.send_all(client.ws.send(Ping(payload=b"are you there")))
        while not isinstance(event := await client.next_event(), Pong):
            assert isinstance(event, TextMessage)
        assert event.payload == b"are you there"


async def test_a_message_over_one_mebibyte_closes_with_1009_and_costs_nobody_else(
    chat_server: TestServer,
) -> None:
    async with open_client(chat_server, "bob") as bob, raw_websocket(chat_server) as client:
        await client.login("huge")
        big = client.ws.send(TextMessage(data="x" * (1024 * 1024 + 10)))
        with contextlib.suppress(trio.BrokenResourceError):  # it may close before reading all
            await client.stream.send_all(big)
        assert (await client.close_frame()).code == 1009
        assert (await bob.expect("leave", lambda e: e.nick == "huge")).nick == "huge"
        await bob.say("still fine")
        assert (await bob.expect("message")).text == "still fine"


async def test_an_unmasked_client_frame_is_a_protocol_error(chat_server: TestServer) -> None:
    async with raw_websocket(chat_server) as client:
        payload = json.dumps(hello("nomask")).encode()
        await client.stream.send_all(bytes((0x81, len(payload))) + payload)
        event = await client.next_event()
        assert isinstance(event, CloseConnection)
        assert event.code == 1002


async def test_a_close_frame_is_answered_and_the_others_see_the_user_leave(
    chat_server: TestServer,
) -> None:
    async with open_client(chat_server, "bob") as bob, raw_websocket(chat_server) as client:
        await client.login("leaver")
        await client.stream.send_all(client.ws.send(CloseConnection(code=1000, reason="bye")))
        assert (await client.close_frame()).code == 1000  # answered
        assert (await bob.expect("leave", lambda e: e.nick == "leaver")).nick == "leaver"


async def test_an_upgrade_without_a_websocket_key_gets_http_400(chat_server: TestServer) -> None:
    host, port = chat_server.address("ws")
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        reply = b""
        with trio.fail_after(DEFAULT_TIMEOUT):
            while chunk := await stream.receive_some(4096):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_a_batching_websocket_client_gets_runs_as_batches_and_raw_bytes_in_place() -> None:
    one, two, three = (
        Message(id=i, ts=0.0, room="#lobby", nick="ann", text=str(i)) for i in (1, 2, 3)
    )
    ping = Raw(data=WEBSOCKET_KEEPALIVE_PING)
    frames = _batched([Bundle(events=(one, two)), ping, three])
    assert frames[0] == encoded(Bundle(events=(one, two)), WEBSOCKET_BATCH_FRAMES)
    assert batch_text([one, two]).encode() in frames[0]
    assert frames[1:] == [WEBSOCKET_KEEPALIVE_PING, encoded(three, WEBSOCKET_FRAMES)]


def test_an_event_that_cannot_be_encoded_is_replaced_in_its_bundle_alone() -> None:
    """A plugin's event with a value JSON has no form for (in a bundle with good lines):
    every JSON format sends the good events, and an ``error`` in place of the bad one."""
    from trio_chat.protocol import Info
    from trio_chat.wire import JSON_LINES, TEXT_LINES, UNSENDABLE, encode_server_event

    one, two = (Message(id=i, ts=0.0, room="#lobby", nick="ann", text=str(i)) for i in (1, 2))
    bad = Info(text="x", data={"n": 2**80})
    bundle = Bundle(events=(one, bad, two))
    as_batch = encoded(bundle, WEBSOCKET_BATCH_FRAMES)
    assert batch_text([one, UNSENDABLE, two]).encode() in as_batch
    lines = encoded(bundle, JSON_LINES).decode().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["message", "error", "message"]
    assert encode_server_event(UNSENDABLE) == lines[1]
    assert encoded(bad, WEBSOCKET_FRAMES).endswith(encode_server_event(UNSENDABLE).encode())
    assert encoded(bad, TEXT_LINES) == b"-- x\n"  # text mode shows no data: nothing failed


async def test_a_text_message_that_is_not_utf8_closes_with_1007(chat_server: TestServer) -> None:
    async with open_client(chat_server, "bob") as bob, raw_websocket(chat_server) as client:
        await client.login("badtext")
        await client.stream.send_all(masked_text_frame(b'{"type":"say","text":"\xff\xfe"}'))
        assert (await client.close_frame()).code == 1007
        assert (await bob.expect("leave", lambda e: e.nick == "badtext")).nick == "badtext"


# ------------------------------------------------------------- fragments, without a socket


class LinkUnderTest:
    """A server-side :class:`WebSocketLink` on an in-memory stream, and a wsproto client
    that writes frames to it (frames as a client library would frame them)."""

    def __init__(self, max_frame_bytes: int = 16 * 1024) -> None:
        self.peer, server_side = trio.testing.memory_stream_pair()
        self.link = WebSocketLink(server_side, "test", max_frame_bytes)
        self.client = Connection(ConnectionType.CLIENT)

    def fragments(self, text: str, size: int) -> list[bytes]:
        """``text`` as one message in frames of ``size`` characters."""
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        return [
            self.client.send(TextMessage(data=piece, message_finished=n == len(pieces) - 1))
            for n, piece in enumerate(pieces)
        ]

    async def close_code(self) -> int | None:
        """The code of the close frame the link sent, if it sent one."""
        self.client.receive_data(await self.peer.receive_some())
        for event in self.client.events():
            if isinstance(event, CloseConnection):
                return event.code
        return None


async def test_each_fragment_is_reported_and_the_message_joined_at_the_end() -> None:
    under = LinkUnderTest()
    text = json.dumps({"type": "say", "text": "in many small pieces"})
    frames = under.fragments(text, 3)
    await under.peer.send_all(b"".join(frames))
    with trio.fail_after(DEFAULT_TIMEOUT):
        items = [await under.link.receive() for _ in frames]
    assert items[:-1] == [Overhead(FRAGMENT_COST)] * (len(frames) - 1)
    assert items[-1] == Say(text="in many small pieces")
    assert under.link.buffered_bytes == 0
    assert not under.link.input_waiting()  # all handled: the reader may wait (or park)


async def test_pings_and_pongs_are_reported_so_they_cost_budget() -> None:
    under = LinkUnderTest()
    await under.peer.send_all(
        under.client.send(Ping(payload=b"p")) + under.client.send(Pong(payload=b"q"))
    )
    with trio.fail_after(DEFAULT_TIMEOUT):
        assert await under.link.receive() == Overhead(FRAME_COST)
        assert await under.link.receive() == Overhead(PONG_COST)
        under.client.receive_data(await under.peer.receive_some())
    assert [type(e) for e in under.client.events()] == [Pong]  # the ping was answered


async def test_endless_empty_fragments_are_cut_off_with_1008_in_bounded_memory() -> None:
    under = LinkUnderTest()
    start = under.client.send(TextMessage(data='{"type":"say","text":"', message_finished=False))
    empty = under.client.send(TextMessage(data="", message_finished=False))
    await under.peer.send_all(start + empty * (2 * WS_MAX_FRAGMENTS))
    reported = 0
    with trio.fail_after(DEFAULT_TIMEOUT):
        while (item := await under.link.receive()) is not None:
            assert item == Overhead(FRAGMENT_COST)
            reported += 1
        assert await under.close_code() == 1008
    assert reported == WS_MAX_FRAGMENTS - 1  # the one over the cap closes instead
    assert under.link.buffered_bytes == 0


async def test_a_mebibyte_in_two_byte_fragments_never_costs_megabytes() -> None:
    """Issue 12, item 2: 2-byte fragments up to the 1 MiB cap cost ~37 MB each (a list of
    tiny str objects). Now the cap on fragments ends it long before, and what is held is
    one buffer of the message's bytes."""
    under = LinkUnderTest()
    text = json.dumps({"type": "say", "text": "x" * (1024 * 1024)})
    frames = under.fragments(text, 2)
    chunks = [b"".join(frames[i : i + 8192]) for i in range(0, len(frames), 8192)]
    del frames
    tracemalloc.start()
    try:
        with trio.fail_after(30):
            for chunk in chunks:  # what one read brings, then all the link makes of it
                await under.peer.send_all(chunk)
                item = await under.link.receive()
                while item is not None and under.link.input_waiting():
                    item = await under.link.receive()
                if item is None:  # closed
                    break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, f"peak {peak / 1e6:.1f} MB while reading 2-byte fragments"
    with trio.fail_after(DEFAULT_TIMEOUT):
        assert await under.close_code() == 1008


async def test_a_large_message_in_fragments_keeps_at_most_the_frame_limit() -> None:
    under = LinkUnderTest(max_frame_bytes=16 * 1024)
    text = json.dumps({"type": "say", "text": "y" * (900 * 1024)})  # under the 1 MiB cap
    frames = under.fragments(text, 8 * 1024)  # 113 frames, under the fragment cap
    held = 0
    tracemalloc.start()
    try:
        with trio.fail_after(DEFAULT_TIMEOUT):
            for frame in frames:
                await under.peer.send_all(frame)
                item = await under.link.receive()
                held = max(held, under.link.buffered_bytes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(item, RemoteProtocolError) and item.code == "frame_too_large"
    assert str(len(text)) in item.message
    assert held <= 16 * 1024
    assert peak < 300 * 1024, f"peak {peak / 1e6:.2f} MB for a refused 900 KiB message"


async def test_endless_empty_continuation_frames_close_with_1008_and_cost_nobody_else(
    chat_server: TestServer,
) -> None:
    async with open_client(chat_server, "bob") as bob, raw_websocket(chat_server) as client:
        await client.login("frag")
        start = client.ws.send(TextMessage(data='{"type":"say","text":"', message_finished=False))
        empty = client.ws.send(TextMessage(data="", message_finished=False))
        await client.stream.send_all(start + empty * (WS_MAX_FRAGMENTS + 10))
        close = await client.close_frame()
        assert (close.code, close.reason) == (1008, "message in more than 128 fragments")
        assert (await bob.expect("leave", lambda e: e.nick == "frag")).nick == "frag"
        await bob.say("still fine")
        assert (await bob.expect("message")).text == "still fine"
