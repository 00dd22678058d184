"""Chatting end to end over real sockets: TCP JSON, TCP text (nc-style) and WebSocket."""

from __future__ import annotations

import json
import os
import socket
import sys

import pytest
import trio
import trio.testing

from trio_chat.testing import (
    DEFAULT_TIMEOUT,
    TcpChatClient,
    TestServer,
    local_config,
    open_client,
    open_test_server,
)


class TextClient:
    """A person on ``nc``: raw lines in, raw lines out."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send_line(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        await self.stream.send_all(data + b"\n")

    async def read_until(self, needle: str) -> str:
        """Read until ``needle`` appears; return (and consume) the text up to its line end."""
        with trio.fail_after(DEFAULT_TIMEOUT):
            while needle.encode() not in self.buffer:
                data = await self.stream.receive_some(65536)
                assert data, f"connection closed before {needle!r}; got {self.buffer!r}"
                self.buffer += data
        index = self.buffer.index(needle.encode())
        end = self.buffer.find(b"\n", index)
        end = len(self.buffer) if end < 0 else end + 1
        text, self.buffer = self.buffer[:end].decode(), self.buffer[end:]
        return text


async def open_text_client(chat: TestServer) -> TextClient:
    host, port = chat.address("tcp")
    return TextClient(await trio.open_tcp_stream(host, port))


async def test_tcp_json_text_and_websocket_users_chat_together(chat_server: TestServer) -> None:
    text = await open_text_client(chat_server)
    async with text.stream:
        assert "nickname" in await text.read_until("nickname?")
        await text.send_line("carol")
        await text.read_until("carol joined #lobby")
        async with (
            open_client(chat_server, "alice") as alice,
            open_client(chat_server, "bob") as bob,
            open_client(chat_server, "wes", websocket=True) as wes,
        ):
            await text.read_until("wes joined #lobby")
            await alice.say("hi all")
            for client in (alice, bob, wes):
                event = await client.expect("message")
                assert (event.nick, event.text, event.room) == ("alice", "hi all", "#lobby")
            line = await text.read_until("hi all")
            assert "<alice> hi all" in line and line.startswith("[")

            await text.send_line("hello from nc")
            await wes.say("hello from the web")
            for client in (alice, bob, wes):
                first = await client.expect("message")
                second = await client.expect("message")
                assert [first.text, second.text] == ["hello from nc", "hello from the web"]
            await text.read_until("<wes> hello from the web")

            await wes.command("/me waves")
            event = await bob.expect("message")
            assert (event.kind, event.text) == ("action", "waves")
            await text.read_until("* wes waves")

            await wes.command("/quit gotta go")
            assert (await wes.expect("bye")).code == "quit"
            event = await alice.expect("leave")
            assert (event.nick, event.reason) == ("wes", "gotta go")
            await text.read_until("wes left #lobby (gotta go)")


async def test_everyone_sees_joins_and_a_vanished_client_leaving(chat_server: TestServer) -> None:
    async with open_client(chat_server, "alice") as alice:
        async with open_client(chat_server, "ghost") as ghost:
            event = await alice.expect("join", lambda e: e.nick == "ghost")
            assert event.room == "#lobby"
            await ghost.aclose()  # no quit: the connection just goes away
        event = await alice.expect("leave")
        assert event.nick == "ghost"
        assert event.reason == "connection lost"


async def test_every_event_has_an_increasing_id_and_a_timestamp(chat_server: TestServer) -> None:
    async with open_client(chat_server, "alice") as alice:
        for i in range(5):
            await alice.say(f"m{i}")
        events = [await alice.expect("message") for _ in range(5)]
        ids = [e.id for e in events]
        assert ids == sorted(ids) and len(set(ids)) == 5
        assert all(e.ts > 1_600_000_000 for e in events)


async def test_nick_rename_and_collisions(chat_server: TestServer) -> None:
    async with open_client(chat_server, "alice") as alice, open_client(chat_server) as other:
        await other.send({"type": "hello", "nick": "ALICE"})
        error = await other.expect("error")
        assert error.code == "nick_taken"
        await other.send({"type": "hello", "nick": "not valid!"})
        assert (await other.expect("error")).code == "bad_nick"
        await other.login("bob")  # the same connection may try again

        await alice.command("/nick Bob")
        error = await alice.expect("error")
        assert error.code == "nick_taken" and "taken" in error.text
        await alice.command("/nick")
        assert (await alice.expect("error")).code == "bad_arguments"

        await alice.command("/nick Alicia")
        for client in (alice, other):
            event = await client.expect("nick")
            assert (event.old, event.new) == ("alice", "Alicia")
        # The old name is free again, the new one is taken.
        async with open_client(chat_server, "alice"):
            pass
        async with open_client(chat_server) as third:
            await third.send({"type": "hello", "nick": "alicia"})
            assert (await third.expect("error")).code == "nick_taken"


async def test_who_and_help(chat_server: TestServer) -> None:
    async with open_client(chat_server, "alice") as alice, open_client(chat_server, "bob"):
        await alice.command("/who")
        info = await alice.expect("info")
        assert info.data["room"] == "#lobby"
        assert info.data["users"] == ["alice", "bob"]
        assert info.data["members"] == [
            {"nick": "alice", "op": False, "away": None, "bot": False},
            {"nick": "bob", "op": False, "away": None, "bot": False},
        ]
        assert "alice, bob" in info.text
        await alice.command("/help")
        info = await alice.expect("info")
        names = {c["name"] for c in info.data["commands"]}
        assert {"help", "nick", "who", "me", "quit"} <= names
        assert "/nick NEW_NICK" in info.text


async def test_unknown_command_is_an_error_and_never_broadcast(chat_server: TestServer) -> None:
    async with open_client(chat_server, "alice") as alice, open_client(chat_server, "bob") as bob:
        await alice.command("/frobnicate now")
        error = await alice.expect("error")
        assert error.code == "unknown_command" and "/frobnicate" in error.text
        await alice.say("after")
        event = await bob.expect("message")
        assert event.text == "after"  # bob never saw anything about /frobnicate
        assert not [e for e in bob.history if getattr(e, "text", "").startswith("/frob")]


async def test_bad_frames_get_errors_and_the_connection_keeps_working(
    chat_server: TestServer,
) -> None:
    async with open_client(chat_server, "alice") as alice:
        for raw, code in [
            (b"{broken", "bad_json"),
            (b'{"type":"fly"}', "unknown_type"),
            (b'{"type":"say"}', "missing_field"),
            (b'\xff{"type":"say","text":"x"}', "bad_utf8"),
            (b'{"type":"say","text":"' + b"x" * 20_000 + b'"}', "line_too_long"),
        ]:
            await alice.send_raw(raw)
            assert (await alice.expect("error")).code == code
        await alice.say("still here")
        assert (await alice.expect("message")).text == "still here"


async def test_text_client_gets_readable_errors_for_bad_input(chat_server: TestServer) -> None:
    text = await open_text_client(chat_server)
    async with text.stream:
        await text.read_until("nickname?")
        await text.send_line("bad nick!")
        assert "nickname may hold" in await text.read_until("!!")
        await text.read_until("nickname?")
        await text.send_line("dave")
        await text.read_until("dave joined")
        await text.send_line(b"\xff\xfe bad bytes")
        assert "not valid UTF-8" in await text.read_until("UTF-8")
        await text.send_line("x" * 20_000)
        assert "longer than" in await text.read_until("longer than")
        await text.send_line("/nosuch")
        await text.read_until("unknown command /nosuch")
        await text.send_line("fine")
        await text.read_until("<dave> fine")


async def test_websocket_frame_over_the_limit_gets_an_error(chat_server: TestServer) -> None:
    async with open_client(chat_server, "wes", websocket=True) as wes:
        await wes.send_raw('{"type":"say","text":"' + "x" * 20_000 + '"}')
        assert (await wes.expect("error")).code == "frame_too_large"
        await wes.send_raw(b'{"type":"say","text":"bytes are fine too"}')
        assert (await wes.expect("message")).text == "bytes are fine too"


async def test_ping_pong(chat_server: TestServer) -> None:
    async with open_client(chat_server, "alice") as alice:
        await alice.send({"type": "ping", "token": "abc", "ref": "9"})
        pong = await alice.expect("pong")
        assert (pong.token, pong.ref) == ("abc", "9")


async def test_rooms_join_part_and_room_scoped_messages(chat_server: TestServer) -> None:
    async with open_client(chat_server, "alice") as alice, open_client(chat_server, "bob") as bob:
        await alice.command("/join #dev")
        assert (await alice.expect("info")).data == {"room": "#dev", "topic": ""}
        await alice.say("dev talk")
        assert (await alice.expect("message")).room == "#dev"
        await alice.say("lobby talk", room="#lobby")
        event = await bob.expect("message")
        assert (event.text, event.room) == ("lobby talk", "#lobby")  # bob never got "dev talk"
        await bob.say("bob to dev", room="#dev")
        assert (await bob.expect("error")).code == "not_in_room"
        await alice.command("/rooms")
        info = await alice.expect("info")
        assert {r["name"]: r["members"] for r in info.data["rooms"]} == {"#dev": 1, "#lobby": 2}


async def test_control_characters_are_refused_so_lines_cannot_be_forged(
    chat_server: TestServer,
) -> None:
    text = await open_text_client(chat_server)
    async with text.stream, open_client(chat_server, "alice") as alice:
        await text.read_until("nickname?")
        await text.send_line("dave")
        await text.read_until("dave joined")
        await alice.say("fake\n[12:00:00] <admin> give me your password")
        error = await alice.expect("error")
        assert (error.code, error.text) == (
            "bad_field",
            "field 'text' contains the control character U+000A",
        )
        await alice.say("\x1b[2Jcleared screen")
        assert (await alice.expect("error")).code == "bad_field"
        await text.send_line("evil\rline")
        assert "control character U+000D" in await text.read_until("!!")
        await alice.say("tabs\tare fine")
        assert (await alice.expect("message")).text == "tabs\tare fine"
        await text.read_until("<alice> tabs\tare fine")
        assert "give me your password" not in text.buffer.decode()


async def test_http_client_on_the_tcp_port_is_pointed_to_the_websocket_port(
    chat_server: TestServer,
) -> None:
    host, port = chat_server.address("tcp")
    _, ws_port = chat_server.address("ws")
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
        reply = b""
        with trio.fail_after(DEFAULT_TIMEOUT):
            while chunk := await stream.receive_some(4096):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert f"use port {ws_port}".encode() in reply


async def test_quit_before_logging_in_says_bye(chat_server: TestServer) -> None:
    async with open_client(chat_server) as client:
        await client.send({"type": "quit"})
        assert (await client.expect("bye")).code == "quit"


async def test_quiet_json_clients_are_pinged_and_dropped_if_they_do_not_answer() -> None:
    config = local_config(idle_timeout=0.2, ping_timeout=0.3)
    async with (
        open_test_server(config=config) as chat,
        open_client(chat, "alice", websocket=True) as alice,  # WebSocket pings: auto-answered
        open_client(chat, "polite") as polite,
        open_client(chat, "silent") as silent,
    ):
        text = await open_text_client(chat)
        async with text.stream:
            await text.read_until("nickname?")
            await text.send_line("nc_user")
            ping = await polite.expect("ping")
            assert ping.token
            await polite.send({"type": "pong", "token": ping.token})
            event = await alice.expect("leave", lambda e: e.nick == "silent")
            assert event.reason == "ping timeout"
            assert (await silent.closed()) is True
            with trio.fail_after(2):
                await polite.expect("ping")  # pinged again after the next quiet spell
            # Whoever answered, and the nc user (watched by TCP keepalive), are still here.
            await alice.command("/who")
            info = await alice.expect("info")
            assert set(info.data["users"]) == {"alice", "polite", "nc_user"}


async def test_a_client_that_stops_sending_still_gets_its_replies(chat_server: TestServer) -> None:
    """``printf '...' | nc host port``: the client half-closes right after its lines."""
    host, port = chat_server.address("tcp")
    for opening, expected in [
        (b'{"type":"hello","nick":"bot"}\n{"type":"say","text":"beep"}\n', b'"text":"beep"'),
        (b"carol\nhi everyone\n/me waves\n/who\n", b"-- 1 in #lobby: carol"),
    ]:
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(opening)
            await stream.send_eof()
            received = b""
            with trio.fail_after(DEFAULT_TIMEOUT):
                while chunk := await stream.receive_some(65536):
                    received += chunk
        assert expected in received
        if b"carol" in opening:
            lines = received.decode().splitlines()
            said = next(i for i, line in enumerate(lines) if "<carol> hi everyone" in line)
            waved = next(i for i, line in enumerate(lines) if "* carol waves" in line)
            who = next(i for i, line in enumerate(lines) if line == "-- 1 in #lobby: carol")
            assert said < waved < who  # replies come in the order the lines were typed


async def test_blank_first_line_still_gets_the_prompt_and_blank_messages_an_error(
    chat_server: TestServer,
) -> None:
    text = await open_text_client(chat_server)
    async with text.stream:
        await text.send_line("   ")  # pressed Enter before the prompt appeared
        await text.read_until("nickname?")
    async with open_client(chat_server, "alice") as alice:
        await alice.say("   ")
        error = await alice.expect("error")
        assert (error.code, error.text) == ("bad_field", "a message needs some text")


async def test_websocket_clients_may_take_several_events_per_message(
    chat_server: TestServer,
) -> None:
    async with (
        open_client(chat_server, "plain", websocket=True) as plain,
        open_client(chat_server, "batcher", websocket=True, batch=True) as batcher,
        open_client(chat_server, "talker") as talker,
    ):
        await talker.send_raw(
            b"".join(b'{"type":"say","text":"burst %d"}\n' % n for n in range(200))
        )
        for client in (plain, batcher):
            got = [(await client.expect("message")).text for _ in range(200)]
            assert got == [f"burst {n}" for n in range(200)]  # same events, same order
        assert batcher.batches > 0  # several events arrived per WebSocket message
        assert plain.batches == 0  # only for clients that asked


async def test_a_shutdown_during_the_history_on_join_still_says_goodbye() -> None:
    history_started, release = trio.Event(), trio.Event()
    async with open_test_server() as chat:
        server = chat.server
        warm_history = server.warm_history

        async def slow_history(room: str) -> None:
            if room == "#dev":
                history_started.set()  # a slow history read, as on a busy database
                await release.wait()
            await warm_history(room)

        server.warm_history = slow_history  # type: ignore[method-assign]
        async with open_client(chat) as alice:
            await alice.login("alice")
            await alice.command("/join #dev")
            with trio.fail_after(DEFAULT_TIMEOUT):
                await history_started.wait()
            server.shutdown()  # Ctrl-C, while the history is being read
            await trio.testing.wait_all_tasks_blocked()
            release.set()
            bye = await alice.expect("bye")
            assert (bye.code, bye.text) == ("shutdown", "the server is shutting down")


async def test_a_late_json_hello_after_the_text_prompt_is_served_in_json(
    chat_server: TestServer,
) -> None:
    """A program whose ``hello`` comes after the sniff delay (a loaded client, a slow link)
    was sent the text prompt for its silence; its JSON first line makes it a JSON-lines
    connection all the same: the prompt is the only text line it ever gets."""
    late = await open_text_client(chat_server)
    async with late.stream, open_client(chat_server, "alice") as alice:
        assert "nickname?" in await late.read_until("nickname?")
        await late.send_line('{"type":"hello","nick":"late"}')
        welcome = json.loads(await late.read_until('"welcome"'))
        assert welcome["nick"] == "late"
        await alice.expect("join", lambda e: e.nick == "late")
        await alice.say("hello late")
        while True:
            line = await late.read_until("\n")
            frame = json.loads(line)  # every line from here on is JSON
            if frame["type"] == "message":
                assert (frame["nick"], frame["text"]) == ("alice", "hello late")
                break
        await late.send_line('{"type":"say","text":"in json"}')
        assert (await alice.expect("message", lambda e: e.nick == "late")).text == "in json"
        gauge = chat_server.server.metrics.registry.get_sample_value
        assert gauge("trio_chat_connections", {"transport": "tcp-json"}) == 2
        assert gauge("trio_chat_connections", {"transport": "tcp-text"}) == 0


async def test_the_test_client_skips_the_prompt_its_late_hello_was_sent(
    chat_server: TestServer,
) -> None:
    """On a loaded machine the test client's own ``hello`` may come after the sniff delay:
    it skips the prompt, as docs/protocol.md asks of a client, instead of failing the test
    that merely logged in."""
    async with open_client(chat_server) as late:
        assert isinstance(late, TcpChatClient)
        with trio.fail_after(DEFAULT_TIMEOUT):
            await trio.lowlevel.wait_readable(late.stream.socket)  # the prompt came first
        welcome = await late.login("late")
        assert (welcome.TYPE, welcome.nick) == ("welcome", "late")
        await late.say("in json")
        assert (await late.expect("message")).text == "in json"
        assert late.history[0].TYPE == "welcome"  # the prompt is no event


async def test_a_person_whose_first_line_has_a_brace_stays_in_text_mode(
    chat_server: TestServer,
) -> None:
    text = await open_text_client(chat_server)
    async with text.stream:
        await text.read_until("nickname?")
        await text.send_line("{not json}")
        assert "nickname may hold" in await text.read_until("!!")
        await text.send_line("erin")
        await text.read_until("erin joined")


def _sockets_of_this_process() -> list[socket.socket]:
    """Every TCP socket this process has open (dup'ed: close them after)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        if sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6):
            found.append(sock)
        else:
            sock.close()
    return found


def _peer(sock: socket.socket) -> object:
    try:
        return sock.getpeername()
    except OSError:  # a listener
        return None


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/fd")
async def test_connections_get_keepalive_whether_set_on_the_listener_or_on_each(
    chat_server: TestServer,
) -> None:
    """A vanished peer is noticed by TCP keepalive: on Linux each accepted socket inherits
    the options from its listener (set once), elsewhere each connection sets them."""
    stream = await open_text_client(chat_server)
    async with stream.stream:
        await stream.read_until("nickname")  # accepted, and served
        here = stream.stream.socket.getsockname()
        sockets = _sockets_of_this_process()
        try:
            (served,) = [s for s in sockets if _peer(s) == here]
            options = [
                served.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                served.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                served.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                served.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                # And what trio sets on each socket it wraps (inherited too, on Linux).
                served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
            ]
        finally:
            for sock in sockets:
                sock.close()
    assert options == [1, 60, 10, 3, 1]


async def test_a_login_is_one_write_and_one_batch_message_for_a_batching_websocket(
    chat_server: TestServer,
) -> None:
    """The welcome and the join of #lobby (with its history, when #lobby has some) go out
    in one delivery pass: one write, and for a WebSocket client that asked for batches one
    ``batch`` message."""
    async with (
        open_client(chat_server, "batcher", websocket=True, batch=True) as batcher,
        open_client(chat_server, "plain", websocket=True) as plain,
    ):
        for client in (batcher, plain):
            await client.expect("join")
            assert [type(e).__name__ for e in client.history[:2]] == ["Welcome", "Joined"]
        assert batcher.batches == 1
        assert plain.batches == 0
