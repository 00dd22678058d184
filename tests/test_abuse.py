"""Limits over real sockets: floods, connection caps, slow and silent clients, garbage."""

from __future__ import annotations

import os
import socket
from contextlib import AsyncExitStack

import trio
import trio.lowlevel

from trio_chat.testing import (
    ChatClient,
    TcpChatClient,
    TestServer,
    local_config,
    open_client,
    open_test_server,
)


async def test_flood_is_refused_then_disconnected_and_others_see_no_delay() -> None:
    config = local_config(flood_rate=5.0, flood_burst=10)
    async with open_test_server(config=config) as chat:
        async with open_client(chat, "calm") as calm, open_client(chat, "flood") as flood:
            for n in range(15):  # 10 fit the burst, 5 do not
                await flood.say(f"f{n}")
            refused = [await flood.expect("error") for _ in range(5)]
            assert {e.code for e in refused} == {"slow_down"}
            assert "at most 5 messages per second" in refused[0].text
            # calm's own line goes through at once, in the middle of the flood.
            with trio.fail_after(1):
                await calm.say("still here")
                await calm.expect("message", lambda e: e.text == "still here")
            seen = [e.text for e in calm.history if e.TYPE == "message" and e.nick == "flood"]
            assert seen == [f"f{n}" for n in range(10)]
            try:
                for n in range(40):  # keeps at it: dropped
                    await flood.say(f"more {n}")
                    await trio.sleep(0.001)
            except trio.BrokenResourceError:
                pass  # the server hung up, as it should
            event = await calm.expect("leave", lambda e: e.nick == "flood")
            assert event.reason.startswith("disconnected for flooding")


async def test_connections_per_host_are_capped_on_both_ports() -> None:
    config = local_config(max_connections_per_host=3, limit_loopback=True)
    async with open_test_server(config=config) as chat, AsyncExitStack() as stack:
        for n in range(3):
            await stack.enter_async_context(open_client(chat, f"u{n}"))
        host, port = chat.address("tcp")
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            reply = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(1024):
                    reply += chunk
        assert reply == b"!! connection refused: too many connections from 127.0.0.1 (limit 3)\n"
        ws_host, ws_port = chat.address("ws")
        stream = await trio.open_tcp_stream(ws_host, ws_port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(1024):
                    reply += chunk
        assert reply.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        await stack.aclose()  # the three leave; room for new ones again once they are gone
        with trio.fail_after(5):
            while chat.server.connections.count():  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.01)
        async with open_client(chat, "later") as later:
            assert later.nick == "later"


async def test_silent_and_dribbling_clients_are_dropped_after_the_handshake_timeout() -> None:
    config = local_config(handshake_timeout=0.5)
    async with open_test_server(config=config) as chat:
        host, port = chat.address("tcp")
        silent = await trio.open_tcp_stream(host, port)
        dribbler = await trio.open_tcp_stream(host, port)
        async with silent, dribbler:
            start = trio.current_time()

            async def dribble() -> None:
                try:
                    for byte in b'{"type":"hello","nick":"slowpoke"':
                        await dribbler.send_all(bytes([byte]))
                        await trio.sleep(0.05)
                except trio.BrokenResourceError:
                    pass  # hung up on, as it should be

            async def read_all(stream: trio.SocketStream) -> bytes:
                data = b""
                while chunk := await stream.receive_some(4096):
                    data += chunk
                return data

            with trio.fail_after(5):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(dribble)
                    silent_reply = await read_all(silent)
                    dribbler_reply = await read_all(dribbler)
                    nursery.cancel_scope.cancel()
            assert trio.current_time() - start < 3
        assert b"-- Disconnected: no nickname given in time" in silent_reply  # a text client
        assert b'"code":"timeout"' in dribbler_reply  # a JSON client


def rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def test_abuse_while_well_behaved_clients_chat() -> None:
    """20 clients chat while others send garbage, flood, send huge lines, never finish their
    handshake or stop reading. Every well-behaved client gets every message, in order."""
    config = local_config(
        flood_rate=50.0,
        flood_burst=50,
        handshake_timeout=2.0,
        outbox_size=256,
        max_connections_per_host=10_000,
    )
    good_count, each = 20, 10
    figures = {"garbage_frames": 0, "flood_frames": 0, "long_lines": 0, "half_open": 0}
    async with open_test_server(config=config) as chat:
        host, port = chat.address("tcp")
        rss_before = rss_kib()
        async with AsyncExitStack() as stack:
            good: list[ChatClient] = []
            for n in range(good_count):
                websocket = n % 4 == 0
                good.append(
                    await stack.enter_async_context(
                        open_client(chat, f"good{n}", websocket=websocket)
                    )
                )
            stalled_socks = []
            for n in range(5):  # log in, then never read again
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect((host, port))
                sock.sendall(b'{"type":"hello","nick":"stalled%d"}\n' % n)
                stalled_socks.append(sock)
            half_open = [await trio.open_tcp_stream(host, port) for _ in range(10)]
            figures["half_open"] = len(half_open)

            async def garbage(n: int) -> None:
                async with await trio.open_tcp_stream(host, port) as stream:
                    await stream.send_all(b'{"type":"hello","nick":"junk%d"}\n' % n)
                    try:
                        for i in range(200):
                            await stream.send_all(
                                [b"{nope\n", b"\xff\xfe\xfd\n", b'{"type":"zap"}\n', b"[]\n"][i % 4]
                            )
                            figures["garbage_frames"] += 1
                            await trio.lowlevel.checkpoint()
                    except trio.BrokenResourceError:
                        pass  # garbage counts as flooding too

            async def flooder(n: int) -> None:
                async with await trio.open_tcp_stream(host, port) as stream:
                    await stream.send_all(b'{"type":"hello","nick":"flood%d"}\n' % n)
                    try:
                        for i in range(2000):
                            await stream.send_all(b'{"type":"say","text":"spam %d"}\n' % i)
                            figures["flood_frames"] += 1
                    except trio.BrokenResourceError:
                        pass  # dropped for flooding, as it should be

            async def long_lines(n: int) -> None:
                async with await trio.open_tcp_stream(host, port) as stream:
                    await stream.send_all(b'{"type":"hello","nick":"long%d"}\n' % n)
                    try:
                        for _ in range(20):
                            await stream.send_all(b"x" * 100_000 + b"\n")
                            figures["long_lines"] += 1
                    except trio.BrokenResourceError:
                        pass

            async def chatter(index: int, client: ChatClient) -> list[str]:
                for i in range(each):
                    await client.say(f"{index}:{i}")
                    await trio.sleep(0.01)
                return []

            received: dict[int, list[str]] = {}

            async def listen(index: int, client: ChatClient) -> None:
                got: list[str] = []
                while len(got) < good_count * each:
                    event = await client.receive()
                    if event.TYPE == "message" and event.nick.startswith("good"):  # type: ignore[attr-defined]
                        got.append(event.text)  # type: ignore[attr-defined]
                received[index] = got

            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    for n in range(3):
                        nursery.start_soon(garbage, n)
                        nursery.start_soon(flooder, n)
                        nursery.start_soon(long_lines, n)
                    for index, client in enumerate(good):
                        client.timeout = 30
                        nursery.start_soon(listen, index, client)
                    async with trio.open_nursery() as talkers:
                        for index, client in enumerate(good):
                            talkers.start_soon(chatter, index, client)
            for stream in half_open:
                await stream.aclose()
            for sock in stalled_socks:
                sock.close()
        rss_growth_mib = (rss_kib() - rss_before) / 1024

    reference = received[0]
    expected = {f"{i}:{n}" for i in range(good_count) for n in range(each)}
    assert set(reference) == expected and len(reference) == len(expected)  # no loss
    for index in range(good_count):
        assert received[index] == reference  # one order for everyone
    for i in range(good_count):  # each sender's lines in the order sent
        assert [t for t in reference if t.startswith(f"{i}:")] == [f"{i}:{n}" for n in range(each)]
    assert rss_growth_mib < 100
    print(
        f"\nabuse: {good_count} good clients, {len(expected)} messages each delivered to all, "
        f"lost 0; garbage frames {figures['garbage_frames']}, flood frames sent "
        f"{figures['flood_frames']}, over-long lines {figures['long_lines']}, half-open "
        f"{figures['half_open']}, stalled 5; server RSS growth {rss_growth_mib:.1f} MiB"
    )


async def test_a_flooder_still_gets_every_reply_it_was_owed_before_its_bye() -> None:
    config = local_config(flood_rate=5.0, flood_burst=10)
    async with open_test_server(config=config) as chat, open_client(chat, "pinger") as pinger:
        await pinger.send_raw(b"".join(b'{"type":"ping","token":"%d"}\n' % n for n in range(31)))
        events = []
        with trio.fail_after(5):
            while not events or events[-1].TYPE != "bye":
                events.append(await pinger.receive())
        kinds = [e.TYPE for e in events if e.TYPE != "join"]
        assert kinds == ["pong"] * 10 + ["error"] * 20 + ["bye"]
        assert events[-1].code == "flooding"


async def test_garbage_before_logging_in_is_flood_limited_too() -> None:
    config = local_config(flood_rate=5.0, flood_burst=10)
    async with open_test_server(config=config) as chat:
        host, port = chat.address("tcp")
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(b"{nope\n" * 100)
            received = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(65536):
                    received += chunk
        assert received.count(b'"code":"bad_json"') == 10
        assert b'"code":"slow_down"' in received
        assert received.rstrip().endswith(
            b'"code":"flooding","text":"disconnected for '
            b"flooding (more than 20 refused messages in 10 "
            b'seconds)"}'
        )


async def _register(chat: TestServer, nick: str, password: str) -> None:
    async with open_client(chat, nick) as owner:
        await owner.command(f"/register {password}")
        await owner.expect("info")


async def _hello_from(
    chat: TestServer, source: str, nick: str, password: str
) -> tuple[str, str] | None:
    """Log in as ``nick`` from the loopback address ``source``: ``None`` if welcomed, else
    the error's (code, text)."""
    host, port = chat.address("tcp")
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, port, local_address=source)
        async with stream:
            client = TcpChatClient(stream)
            await client.send({"type": "hello", "nick": nick, "password": password})
            reply = await client.receive()
    return None if reply.TYPE == "welcome" else (reply.code, reply.text)


async def test_parallel_password_guesses_are_throttled_and_cost_others_nothing() -> None:
    async with open_test_server() as chat:
        await _register(chat, "alice", "the-real-one")
        async with open_client(chat, "calm") as calm:
            replies: list[tuple[str, str] | None] = []

            async def guess(n: int) -> None:
                replies.append(await _hello_from(chat, "127.0.0.2", "alice", f"guess{n}"))

            async with trio.open_nursery() as nursery:
                for n in range(20):
                    nursery.start_soon(guess, n)
                # A member chatting meanwhile hears itself at once.
                with trio.fail_after(2):
                    await calm.say("still here")
                    await calm.expect("message", lambda e: e.text == "still here")
        codes = [reply[0] for reply in replies if reply is not None]
        assert len(codes) == 20
        # Counted before the password check: while one guess is checked, the rest wait.
        # (Not exactly one: a guess handled a second or more after the first may be
        # checked too on a loaded machine; before the fix all twenty were.)
        assert 1 <= codes.count("login_failed") <= 3
        assert codes.count("login_throttled") >= 17


async def test_failed_guesses_from_one_address_do_not_lock_the_owner_out() -> None:
    async with open_test_server() as chat:
        await _register(chat, "alice", "the-real-one")
        for n in range(5):
            refusal = await _hello_from(chat, "127.0.0.2", "alice", f"guess{n}")
            assert refusal is not None and refusal[0] in ("login_failed", "login_throttled")
        refusal = await _hello_from(chat, "127.0.0.2", "alice", "the-real-one")
        assert refusal is not None and refusal[0] == "login_throttled"
        # The owner, from another address, gets in at once.
        assert await _hello_from(chat, "127.0.0.1", "alice", "the-real-one") is None
