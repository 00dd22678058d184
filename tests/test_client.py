"""The terminal client (``trio-chat connect``), run for real as a subprocess.

An in-process server listens on port 0; the client runs as ``python -m trio_chat.cli
connect`` with piped stdin/stdout (its non-interactive mode), and a second, raw client
speaks JSON lines to check what the first one sends. One test drives the interactive prompt
inside tmux. Every wait is under ``trio.fail_after``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_chat.client.app import event_lines
from trio_chat.client.connection import BadTarget, Target, describe_os_error, parse_target
from trio_chat.client.terminal import InputEnd, PromptTerminal, printable
from trio_chat.config import ServerConfig
from trio_chat.protocol import Info, Message
from trio_chat.server import ChatServer
from trio_chat.textmode import NICK_PROMPT

ROOT = Path(__file__).resolve().parent.parent
WAIT = 10.0  # seconds any single wait may take before the test fails


# ------------------------------------------------------------------------------- helpers


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[tuple[ChatServer, dict[str, str]]]:
    """A server on free ports; yields it with its addresses keyed by scheme (tcp, ws)."""
    chat = ChatServer(ServerConfig(port=0, ws_port=0, entry_points=False))
    addresses: list[str] = await nursery.start(chat.serve)
    yield chat, {address.split("://")[0]: address for address in addresses}


def tcp_port(addresses: dict[str, str]) -> str:
    return addresses["tcp"].rsplit(":", 1)[1]


class RawClient:
    """A JSON-lines client written by hand, to watch what the real client does."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = b""

    async def send(self, **frame: Any) -> None:
        await self.stream.send_all(json.dumps(frame).encode() + b"\n")

    async def expect(self, event_type: str, /, **fields: Any) -> dict[str, Any]:
        """Skip events until one of ``event_type`` with these field values arrives."""
        with trio.fail_after(WAIT):
            while True:
                while b"\n" in self._buffer:
                    line, self._buffer = self._buffer.split(b"\n", 1)
                    event = json.loads(line)
                    if event["type"] == event_type and all(
                        event.get(k) == v for k, v in fields.items()
                    ):
                        return dict(event)
                data = await self.stream.receive_some(65536)
                assert data, f"server closed while waiting for {event_type} {fields}"
                self._buffer += data


@asynccontextmanager
async def raw_client(addresses: dict[str, str], nick: str) -> AsyncIterator[RawClient]:
    host, port = addresses["tcp"].removeprefix("tcp://").rsplit(":", 1)
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        client = RawClient(stream)
        await client.send(type="hello", nick=nick)
        await client.expect("welcome", nick=nick)
        yield client


class ClientProcess:
    """The real client in a subprocess, driven through its stdin and stdout."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output: list[str] = []  # every stdout line so far
        self._buffer = b""

    async def send_line(self, text: str) -> None:
        assert self.process.stdin is not None
        with trio.fail_after(WAIT):
            await self.process.stdin.send_all(text.encode() + b"\n")

    async def expect(self, text: str) -> str:
        """Read stdout until a line containing ``text``; return that line."""
        assert self.process.stdout is not None
        with trio.fail_after(WAIT):
            while True:
                while b"\n" in self._buffer:
                    raw, self._buffer = self._buffer.split(b"\n", 1)
                    line = raw.decode()
                    self.output.append(line)
                    if text in line:
                        return line
                data = await self.process.stdout.receive_some(65536)
                if not data:
                    raise AssertionError(f"client ended before printing {text!r}: {self.output}")
                self._buffer += data

    async def finish(self, close_stdin: bool = True) -> tuple[int, str]:
        """Wait for the client to exit (closing its stdin first); return (status, stderr)."""
        assert self.process.stdin and self.process.stdout and self.process.stderr
        with trio.fail_after(WAIT):
            if close_stdin:
                await self.process.stdin.aclose()
            while data := await self.process.stdout.receive_some(65536):
                self._buffer += data
            self.output += self._buffer.decode().splitlines()
            self._buffer = b""
            stderr = b""
            while data := await self.process.stderr.receive_some(65536):
                stderr += data
            status = await self.process.wait()
        return status, stderr.decode()


def client_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trio_chat.cli", "connect", *args]


@asynccontextmanager
async def running_client(*args: str) -> AsyncIterator[ClientProcess]:
    process = await trio.lowlevel.open_process(
        client_command(*args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        yield ClientProcess(process)
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(WAIT):
            await process.wait()
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    await pipe.aclose()


def assert_one_error_line(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr
    assert stderr.splitlines() == [expected]


# -------------------------------------------------------------------------- end to end


async def test_tcp_client_sends_and_shows_messages(
    server: tuple[ChatServer, dict[str, str]],
) -> None:
    _, addresses = server
    async with (
        raw_client(addresses, "bob") as bob,
        running_client("127.0.0.1", "--port", tcp_port(addresses), "--nick", "alice") as alice,
    ):
        await alice.expect("-- Hello alice, you are in #lobby")
        await bob.expect("join", nick="alice")
        await alice.send_line("hi bob, from the terminal")
        await bob.expect("message", nick="alice", text="hi bob, from the terminal")
        await bob.send(type="say", text="hi alice")
        line = await alice.expect("<bob> hi alice")
        assert line.startswith("[")  # rendered with the time: "[12:30:05] <bob> hi alice"
        await alice.send_line("/quit see you")
        await alice.expect("-- Disconnected: see you")
        await bob.expect("leave", nick="alice", reason="see you")
        status, stderr = await alice.finish(close_stdin=False)
    assert (status, stderr) == (0, "")


async def test_websocket_client_sends_and_shows_messages(
    server: tuple[ChatServer, dict[str, str]],
) -> None:
    _, addresses = server
    async with (
        raw_client(addresses, "bob") as bob,
        running_client(addresses["ws"] + "/", "--nick", "wendy") as wendy,
    ):
        await wendy.expect("-- Hello wendy")
        await bob.expect("join", nick="wendy")
        await wendy.send_line("over the websocket")
        await bob.expect("message", nick="wendy", text="over the websocket")
        await bob.send(type="say", text="back to you")
        await wendy.expect("<bob> back to you")
        await wendy.send_line("/me waves")
        await bob.expect("message", nick="wendy", text="waves", kind="action")
        # End of stdin is a clean quit.
        status, stderr = await wendy.finish()
        await bob.expect("leave", nick="wendy")
    assert (status, stderr) == (0, "")
    assert any("-- Disconnected" in line for line in wendy.output)


async def test_asks_for_the_nickname_when_not_given(
    server: tuple[ChatServer, dict[str, str]],
) -> None:
    _, addresses = server
    async with running_client("127.0.0.1", "--port", tcp_port(addresses)) as carol:
        await carol.expect(NICK_PROMPT)
        await carol.send_line("carol")
        await carol.expect("-- Hello carol")
        await carol.send_line("/who")
        await carol.expect("-- 1 in #lobby: carol")
        status, stderr = await carol.finish()
    assert (status, stderr) == (0, "")


async def test_a_taken_nickname_asks_again(server: tuple[ChatServer, dict[str, str]]) -> None:
    _, addresses = server
    async with (
        raw_client(addresses, "dave") as dave,
        running_client("127.0.0.1", "--port", tcp_port(addresses), "--nick", "Dave") as other,
    ):
        await other.expect("!! ")  # the server's reason, e.g. the nickname is in use
        await other.expect(NICK_PROMPT)
        await other.send_line("bad nick!")
        await other.expect("!! ")
        await other.expect(NICK_PROMPT)
        await other.send_line("dave2")
        await other.expect("-- Hello dave2")
        await dave.expect("join", nick="dave2")
        status, _ = await other.finish()
    assert status == 0


async def test_connection_refused_is_one_line() -> None:
    with socket.socket() as sock:  # a port that was just free: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with trio.fail_after(WAIT):
        result = await trio.run_process(
            client_command("127.0.0.1", "--port", str(port), "--nick", "x"),
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
    assert result.returncode == 1
    assert_one_error_line(
        result.stderr.decode(), f"trio-chat: cannot connect to 127.0.0.1:{port}: connection refused"
    )


@pytest.mark.parametrize(
    ("host", "message"),
    [
        (
            "http://example.org/",
            "trio-chat: bad URL 'http://example.org/': use ws://HOST:PORT/ (or wss://)",
        ),
        ("ws://:80/", "trio-chat: bad URL 'ws://:80/': no host name"),
    ],
)
async def test_bad_url_is_one_line(host: str, message: str) -> None:
    with trio.fail_after(WAIT):
        result = await trio.run_process(
            client_command(host, "--nick", "x"),
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
    assert result.returncode == 2
    assert_one_error_line(result.stderr.decode(), message)


async def test_server_going_away_is_one_line(nursery: trio.Nursery) -> None:
    chat = ChatServer(ServerConfig(port=0, ws_port=None, entry_points=False))
    server_scope = trio.CancelScope()

    async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
        with server_scope:
            await chat.serve(task_status=task_status)

    (address,) = await nursery.start(serve)
    async with running_client(
        "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--nick", "erin"
    ) as erin:
        await erin.expect("-- Hello erin")
        server_scope.cancel()  # every socket closes, without a goodbye
        status, stderr = await erin.finish(close_stdin=False)
    assert status == 1
    assert_one_error_line(stderr, "trio-chat: connection to server lost")


async def test_server_shutdown_bye_is_shown(server: tuple[ChatServer, dict[str, str]]) -> None:
    chat, addresses = server
    async with running_client(addresses["ws"], "--nick", "fred") as fred:
        await fred.expect("-- Hello fred")
        chat.shutdown()
        await fred.expect("-- Disconnected: the server is shutting down")
        status, stderr = await fred.finish(close_stdin=False)
    assert (status, stderr) == (1, "")


async def test_sigint_exits_quietly(server: tuple[ChatServer, dict[str, str]]) -> None:
    _, addresses = server
    async with running_client("127.0.0.1", "--port", tcp_port(addresses), "--nick", "gina") as gina:
        await gina.expect("-- Hello gina")
        gina.process.send_signal(signal.SIGINT)
        status, stderr = await gina.finish(close_stdin=False)
    assert (status, stderr) == (130, "")


# ------------------------------------------------------------------- the interactive prompt


async def test_prompt_terminal_reads_lines_and_ends_when_cancelled() -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    with create_pipe_input() as keys:
        terminal = PromptTerminal(PromptSession(input=keys, output=DummyOutput()))
        with trio.fail_after(WAIT):
            keys.send_text("hello\r")
            assert await terminal.read_line(lambda: "> ") == "hello"
            keys.send_text("\x03")  # Ctrl-C
            assert await terminal.read_line(lambda: "> ") is InputEnd.INTERRUPT
            keys.send_text("\x04")  # Ctrl-D on an empty line
            assert await terminal.read_line(lambda: "> ") is InputEnd.EOF
            # Cancelled while the user has not typed anything: the prompt thread is told to
            # exit and read_line returns promptly (it never abandons the thread).
            with trio.move_on_after(0.2) as scope:
                await terminal.read_line(lambda: "> ")
            assert scope.cancelled_caught
            # Once stopped, it stays stopped.
            assert await terminal.read_line(lambda: "> ") is InputEnd.EOF


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.005, 0.02])
async def test_prompt_terminal_cancelled_while_starting(delay: float) -> None:
    """A stop that comes before the prompt's loop runs is not lost (pre_run sees it)."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    with create_pipe_input() as keys:
        for _ in range(5):
            terminal = PromptTerminal(PromptSession(input=keys, output=DummyOutput()))
            with trio.fail_after(WAIT), trio.move_on_after(delay):
                await terminal.read_line(lambda: "> ")


tmux = shutil.which("tmux")


@pytest.mark.skipif(tmux is None, reason="tmux is not installed")
async def test_message_arriving_keeps_the_half_typed_line(
    server: tuple[ChatServer, dict[str, str]],
    tmp_path: Path,
) -> None:
    assert tmux is not None
    _, addresses = server
    socket_path = str(tmp_path / "tmux.sock")

    async def tmux_run(*args: str) -> str:
        with trio.fail_after(WAIT):
            result = await trio.run_process(
                [tmux, "-S", socket_path, *args], capture_stdout=True, capture_stderr=True
            )
        return str(result.stdout.decode())

    async def screen_until(check: Callable[[list[str]], bool]) -> list[str]:
        lines: list[str] = []
        with trio.fail_after(WAIT):
            while True:
                screen = await tmux_run("capture-pane", "-p", "-t", "chat")
                lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
                if check(lines):
                    return lines
                await trio.sleep(0.05)

    command = " ".join(client_command("127.0.0.1", "--port", tcp_port(addresses), "--nick", "tina"))
    env = {**os.environ, "TERM": "xterm-256color"}
    with trio.fail_after(WAIT):
        await trio.run_process(
            [
                tmux,
                "-S",
                socket_path,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "30",
                "-s",
                "chat",
                "-c",
                str(ROOT),
                command,
            ],
            env=env,
        )
    try:
        async with raw_client(addresses, "bob") as bob:
            await screen_until(lambda lines: bool(lines) and lines[-1] == "tina>")
            await bob.expect("join", nick="tina")
            await tmux_run("send-keys", "-t", "chat", "-l", "half typed")
            await screen_until(lambda lines: lines[-1] == "tina> half typed")

            await bob.send(type="say", text="a message while you type")
            # The message goes above the prompt, and the typed text stays on the prompt line
            # (prompt_toolkit hides the prompt for a moment to print: wait for the redraw).
            lines = await screen_until(
                lambda lines: (
                    any("<bob> a message while you type" in li for li in lines)
                    and lines[-1] == "tina> half typed"
                )
            )
            assert lines[-2].endswith("<bob> a message while you type"), lines
            assert sum("half typed" in line for line in lines) == 1, lines

            await tmux_run("send-keys", "-t", "chat", " and finished", "Enter")
            await bob.expect("message", nick="tina", text="half typed and finished")
            await tmux_run("send-keys", "-t", "chat", "-l", "/quit")
            await tmux_run("send-keys", "-t", "chat", "Enter")
            await bob.expect("leave", nick="tina")
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(WAIT):
            await trio.run_process(
                [tmux, "-S", socket_path, "kill-server"], check=False, capture_stderr=True
            )


# ------------------------------------------------------------------------- pure helpers


def test_parse_target() -> None:
    assert parse_target("localhost", 12345) == Target("tcp", "localhost", 12345)
    assert parse_target("ws://chat.example:8080/", 1) == Target("ws", "chat.example", 8080, "/")
    assert parse_target("ws://[::1]:9/chat?x=1", 1) == Target("ws", "::1", 9, "/chat?x=1")
    assert parse_target("wss://chat.example", 1).port == 443
    assert parse_target("ws://[::1]:9/", 1).display == "ws://[::1]:9/"
    for bad in ["", "http://example.org", "ws://host:99999/", "ws:///", "a b"]:
        with pytest.raises(BadTarget):
            parse_target(bad, 1)


def test_describe_os_error() -> None:
    assert describe_os_error(socket.gaierror(-2, "Name or service not known")) == "unknown host"
    refused = OSError("all attempts to connect to localhost:1 failed")
    refused.__cause__ = ExceptionGroup("all failed", [ConnectionRefusedError(111, "refused")])
    assert describe_os_error(refused) == "connection refused"


def test_server_text_cannot_drive_the_terminal() -> None:
    assert printable("plain text, café ✓") == "plain text, café ✓"
    assert printable("\x1b[2Jwiped") == "^[[2Jwiped"
    assert printable("a\u202eb") == "a<U+202E>b"
    fake = Message(
        id=1,
        ts=0.0,
        room="#lobby",
        nick="mallory",
        text="hi\n[00:00:00] <admin> give me your password",
    )
    assert "\n" not in event_lines(fake)
    info = Info(text="Commands:\n  /help\x1b[31m")
    assert event_lines(info) == "-- Commands:\n--   /help^[[31m"


async def test_a_port_without_a_chat_server_is_one_line(nursery: trio.Nursery) -> None:
    async def not_a_chat_server(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(65536)  # like an HTTP server: read, answer, close
            await stream.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n<html>no</html>\n")

    listeners = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), not_a_chat_server, 0)
    listener = listeners[0]
    port = listener.socket.getsockname()[1]
    with trio.fail_after(WAIT):
        result = await trio.run_process(
            client_command("127.0.0.1", "--port", str(port), "--nick", "x"),
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
    assert result.returncode == 1
    assert_one_error_line(
        result.stderr.decode(),
        f"trio-chat: 127.0.0.1:{port} does not speak the trio-chat protocol",
    )
