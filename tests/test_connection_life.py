"""A connection's life without cancel scopes where nothing waits: the log-in's one
deadline (kept where each wait happens), the goodbye written at once, the close of a plain
socket at once; and each still bounded when something does wait. Over real sockets."""

from __future__ import annotations

import json
import socket
from typing import Any

import trio
import trio.testing
from test_abuse import open_raw_websocket
from wsproto.events import TextMessage

import trio_chat
from trio_chat.protocol import Bye, Error
from trio_chat.testing import is_prompt, local_config, open_test_server
from trio_chat.transports.link import GOODBYE_TIMEOUT, close_link, say_goodbye
from trio_chat.transports.streams import kept_stream
from trio_chat.transports.tcp import TcpLink


def plain_link(sock: trio.socket.SocketType) -> TcpLink:
    """A JSON-lines link over one end of a socket pair, kept as a logged-in one is."""
    return TcpLink(
        kept_stream(trio.SocketStream(sock)), "peer", plain_text=False, max_line_bytes=4096
    )


async def read_until_end(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_a_goodbye_the_socket_takes_is_written_at_once_even_by_a_cancelled_task() -> None:
    ours, theirs = trio.socket.socketpair()
    link = plain_link(ours)
    with trio.CancelScope() as cancelled:
        cancelled.cancel()
        await say_goodbye(
            link, Bye(code="quit", text="bye now"), [Error(code="x", text="last words")]
        )
    with theirs, trio.fail_after(5):
        await link.aclose()
        lines = (await read_until_end(trio.SocketStream(theirs))).splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["error", "bye"]
    assert json.loads(lines[1])["text"] == "bye now"


async def test_a_goodbye_the_socket_takes_in_part_is_finished_in_order() -> None:
    ours, theirs = trio.socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    link = plain_link(ours)
    pending = [Error(code="x", text=f"{n:05d}" + "x" * 200) for n in range(2000)]  # ~0.5 MB
    received: list[bytes] = []

    async def reader() -> None:
        received.append(await read_until_end(trio.SocketStream(theirs)))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)  # reads as the goodbye is written, not before
            await say_goodbye(link, Bye(code="quit", text="bye"), pending)
            await link.aclose()
    lines = received[0].splitlines()
    assert len(lines) == 2001
    assert [json.loads(line)["text"][:5] for line in lines[:-1]] == [
        f"{n:05d}" for n in range(2000)
    ]
    assert json.loads(lines[-1])["type"] == "bye"


async def test_a_goodbye_to_a_peer_that_reads_nothing_gives_up_after_its_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = trio.socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    link = plain_link(ours)
    pending = [Error(code="x", text="x" * 1000) for _ in range(1000)]  # far more than the buffers
    started = trio.current_time()
    with theirs:
        await say_goodbye(link, Bye(code="slow", text="too slow"), pending)
        assert trio.current_time() - started >= GOODBYE_TIMEOUT
        await link.aclose()


async def test_a_plain_socket_is_closed_at_once_even_by_a_cancelled_task() -> None:
    ours, theirs = trio.socket.socketpair()
    link = plain_link(ours)
    released: list[bool] = []
    async with open_test_server() as chat:
        with trio.CancelScope() as cancelled:
            cancelled.cancel()
            await close_link(chat.server, link, lambda: released.append(True))
        with theirs, trio.fail_after(5):
            assert await trio.SocketStream(theirs).receive_some(10) == b""  # closed
    assert released == [True]


async def test_a_stream_that_says_goodbye_first_is_closed_with_its_aclose() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    link = TcpLink(ours, "peer", plain_text=False, max_line_bytes=4096)
    assert not link.close_nowait()  # not a plain socket: nothing was closed
    async with open_test_server() as chat:
        await close_link(chat.server, link, lambda: None)
    with trio.fail_after(5):
        assert await theirs.receive_some(10) == b""  # its aclose ran


async def test_frames_held_back_before_the_hello_wait_no_longer_than_the_deadline() -> None:
    config = local_config(handshake_timeout=0.5, flood_rate=0.25, flood_burst=1, flood_max_lag=10.0)
    async with open_test_server(config=config) as chat:
        host, port = chat.address("tcp")
        async with await trio.open_tcp_stream(host, port) as stream:
            started = trio.current_time()
            # The second ping waits 4 s for its turn, the third 8: the log-in's deadline
            # comes first (the margin is wide so that a loaded machine cannot blur them).
            await stream.send_all(b'{"type":"ping","token":"a"}\n' * 3)
            with trio.fail_after(5):
                reply = await read_until_end(stream)
            took = trio.current_time() - started
    events = [json.loads(line) for line in reply.splitlines() if not is_prompt(line)]
    assert [e["type"] for e in events] == ["pong", "bye"]
    assert events[-1]["code"] == "timeout"
    assert 0.4 < took < 3.0


class HangingPasswords:
    """Checks passwords forever (its own time limit is far away)."""

    def __init__(self) -> None:
        self.asked = trio.Event()

    @trio_chat.hookimpl
    async def authenticate(self, nick: str) -> Any:
        self.asked.set()
        await trio.sleep_forever()


async def test_a_password_check_is_cut_off_at_the_log_ins_deadline() -> None:
    backend = HangingPasswords()
    config = local_config(handshake_timeout=0.5, plugin_timeout=30.0)
    async with open_test_server(backend, config=config) as chat:
        host, port = chat.address("tcp")
        async with await trio.open_tcp_stream(host, port) as stream:
            started = trio.current_time()
            await stream.send_all(b'{"type":"hello","nick":"alice","password":"x"}\n')
            with trio.fail_after(5):
                reply = await read_until_end(stream)
            took = trio.current_time() - started
    assert backend.asked.is_set()
    events = [json.loads(line) for line in reply.splitlines() if not is_prompt(line)]
    assert [(e["type"], e.get("code")) for e in events] == [("bye", "timeout")]
    assert 0.4 < took < 2.0


async def test_a_hello_a_moment_late_is_waited_for_in_the_parking_lot() -> None:
    """...parked at the doorstep (transports/doorstep.py): no task waits for it."""
    async with open_test_server(config=local_config(sniff_delay=5.0)) as chat:
        host, port = chat.address("tcp")
        lot = chat.server.parking
        async with await trio.open_tcp_stream(host, port) as stream:
            with trio.fail_after(5):  # accepted, and waiting for its first bytes
                while not len(lot):  # noqa: ASYNC110 (the lot has no event for it)
                    await trio.sleep(0.01)
            assert lot.waiting == 0
            started = trio.current_time()
            await stream.send_all(b'{"type":"hello","nick":"late"}\n')
            with trio.fail_after(5):
                data = b""
                while b"\n" not in data:
                    data += await stream.receive_some(65536)
            assert trio.current_time() - started < 1.0  # not at the sniff delay's end
    assert json.loads(data.split(b"\n")[0])["type"] == "welcome"


async def test_a_websocket_client_that_never_says_hello_is_dropped_at_the_deadline() -> None:
    async with open_test_server(config=local_config(handshake_timeout=0.5)) as chat:
        host, port = chat.address("ws")
        stream, ws = await open_raw_websocket(host, port)
        async with stream:
            started = trio.current_time()
            texts: list[str] = []
            with trio.fail_after(5):
                while data := await stream.receive_some(65536):
                    ws.receive_data(data)
                    texts += [e.data for e in ws.events() if isinstance(e, TextMessage)]
            took = trio.current_time() - started
    assert [json.loads(text)["code"] for text in texts] == ["timeout"]
    assert 0.4 < took < 2.0


async def test_a_quiet_end_waits_for_nothing_and_one_with_lines_in_flight_settles() -> None:
    """A connection that ends while nothing is in flight says goodbye without waiting for
    the publisher (``settled_now``: no settle, no scope); one whose last line is still on
    its way (being committed) settles first, so its echo comes before its ``bye``. Both
    leave #lobby, as the others see."""
    async with open_test_server() as chat:
        server = chat.server
        settles: list[bool] = []
        settle = server.settle

        async def counted_settle() -> None:
            settles.append(server.settled_now())
            await settle()

        server.settle = counted_settle  # type: ignore[method-assign]
        host, port = chat.address("tcp")

        async def log_in(nick: str) -> trio.SocketStream:
            stream = await trio.open_tcp_stream(host, port)
            await stream.send_all(b'{"type":"hello","nick":"%s"}\n' % nick.encode())
            seen = b""
            while b'"type":"join"' not in seen:
                seen += await stream.receive_some(65536)
            return stream

        async def read_events(stream: trio.SocketStream, until: str) -> list[dict[str, Any]]:
            data = b""
            while True:
                events = [json.loads(line) for line in data.splitlines() if line.strip()]
                if any(e["type"] == until for e in events) and data.endswith(b"\n"):
                    return events
                chunk = await stream.receive_some(65536)
                assert chunk, f"closed before {until}: {events}"
                data += chunk

        with trio.fail_after(10):
            watcher = await log_in("watcher")
            quiet = await log_in("quiet")
            await read_events(watcher, "join")  # quiet's join: nothing left in flight
            await trio.testing.wait_all_tasks_blocked()
            assert server.settled_now()
            await quiet.send_all(b'{"type":"quit"}\n')
            events = await read_events(quiet, "bye")
            assert [e["type"] for e in events] == ["bye"]
            parts = await read_events(watcher, "leave")
            assert [e["nick"] for e in parts if e["type"] == "leave"] == ["quiet"]
            assert settles == []  # the quiet end did not settle
            talker = await log_in("talker")
            await read_events(watcher, "join")
            await trio.testing.wait_all_tasks_blocked()
            await talker.send_all(b'{"type":"say","text":"last words"}\n{"type":"quit"}\n')
            events = await read_events(talker, "bye")
            assert [e["type"] for e in events] == ["message", "bye"]
            assert events[0]["text"] == "last words"
            assert settles == [False]  # its line was in flight: it settled
            await watcher.aclose()
            await quiet.aclose()
            await talker.aclose()
