"""The terminal client (``trio-chat connect``), run for real as a subprocess.

An in-process server listens on port 0; the client runs as ``python -m trio_chat.cli
connect`` with piped stdin/stdout (its non-interactive mode), and a second, raw client
speaks JSON lines to check what the first one sends. One test drives the interactive prompt
inside tmux. TLS tests use certificates from a trustme CA. Every wait is under
``trio.fail_after``.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from trio_chat.client import connection as client_connection
from trio_chat.client.app import ChatClient
from trio_chat.client.completion import completions
from trio_chat.client.connection import (
    BadTarget,
    ConnectError,
    Target,
    describe_os_error,
    open_connection,
    parse_target,
)
from trio_chat.client.main import INSECURE_WARNING, run_client
from trio_chat.client.render import (
    PALETTE,
    Renderer,
    colour_wanted,
    event_lines,
    name_colour,
)
from trio_chat.client.resume import RoomState, backoff_delay
from trio_chat.client.terminal import InputEnd, PipeTerminal, PromptTerminal, printable
from trio_chat.client.tls import client_ssl_context
from trio_chat.config import ServerConfig
from trio_chat.names import name_key
from trio_chat.protocol import Info, Message
from trio_chat.server import ChatServer
from trio_chat.testing import is_prompt, local_config, open_client, open_test_server
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

    def __init__(self, stream: trio.abc.Stream) -> None:
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
                    if is_prompt(line):
                        continue  # our hello came after the sniff delay
                    event = json.loads(line)
                    if event["type"] == event_type and all(
                        event.get(k) == v for k, v in fields.items()
                    ):
                        return dict(event)
                data = await self.stream.receive_some(65536)
                assert data, f"server closed while waiting for {event_type} {fields}"
                self._buffer += data


@asynccontextmanager
async def raw_client(
    addresses: dict[str, str], nick: str, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[RawClient]:
    """Logged in on the TCP port, or on the TLS port when given an ``ssl_context``."""
    scheme = "tcp" if ssl_context is None else "tls"
    host, port = addresses[scheme].removeprefix(f"{scheme}://").rsplit(":", 1)
    stream: trio.abc.Stream
    with trio.fail_after(WAIT):
        if ssl_context is None:
            stream = await trio.open_tcp_stream(host, int(port))
        else:
            stream = await trio.open_ssl_over_tcp_stream(host, int(port), ssl_context=ssl_context)
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
                    stderr = b""
                    assert self.process.stderr is not None
                    with trio.move_on_after(1):
                        while more := await self.process.stderr.receive_some(65536):
                            stderr += more
                    raise AssertionError(
                        f"client ended before printing {text!r}: {self.output}, "
                        f"stderr {stderr.decode(errors='replace')!r}"
                    )
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


async def run_client_once(*args: str) -> tuple[int, str, str]:
    """Run the client with empty stdin (it quits once logged in); (status, stdout, stderr)."""
    with trio.fail_after(WAIT):
        result = await trio.run_process(
            client_command(*args),
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


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
    status, _, stderr = await run_client_once("127.0.0.1", "--port", str(port), "--nick", "x")
    assert status == 1
    assert_one_error_line(
        stderr, f"trio-chat: cannot connect to 127.0.0.1:{port}: connection refused"
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
    status, _, stderr = await run_client_once(host, "--nick", "x")
    assert status == 2
    assert_one_error_line(stderr, message)


async def test_server_going_away_is_one_line(nursery: trio.Nursery) -> None:
    chat = ChatServer(ServerConfig(port=0, ws_port=None, entry_points=False))
    server_scope = trio.CancelScope()

    async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
        with server_scope:
            await chat.serve(task_status=task_status)

    (address,) = await nursery.start(serve)
    async with running_client(
        "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--nick", "erin", "--no-reconnect"
    ) as erin:
        await erin.expect("-- Hello erin")
        server_scope.cancel()  # every socket closes, without a goodbye
        status, stderr = await erin.finish(close_stdin=False)
    assert status == 1
    assert_one_error_line(stderr, "trio-chat: connection to server lost")


async def test_server_shutdown_bye_is_shown(server: tuple[ChatServer, dict[str, str]]) -> None:
    chat, addresses = server
    async with running_client(addresses["ws"], "--nick", "fred", "--no-reconnect") as fred:
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
            await screen_until(lambda lines: bool(lines) and lines[-1] == "tina #lobby>")
            await bob.expect("join", nick="tina")
            await tmux_run("send-keys", "-t", "chat", "-l", "half typed")
            await screen_until(lambda lines: lines[-1] == "tina #lobby> half typed")

            await bob.send(type="say", text="a message while you type")
            # The message goes above the prompt, and the typed text stays on the prompt line
            # (prompt_toolkit hides the prompt for a moment to print: wait for the redraw).
            lines = await screen_until(
                lambda lines: (
                    any("<bob> a message while you type" in li for li in lines)
                    and lines[-1] == "tina #lobby> half typed"
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
    status, _, stderr = await run_client_once("127.0.0.1", "--port", str(port), "--nick", "x")
    assert status == 1
    assert_one_error_line(
        stderr,
        f"trio-chat: 127.0.0.1:{port} is not a trio-chat server: it answers HTTP "
        f"(the WebSocket port? use ws://127.0.0.1:{port}/)",
    )


# ---------------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def start_tls_server(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path, **cert_options: Any
) -> dict[str, str]:
    """A server with a certificate from ``ca``; its addresses keyed by scheme (tls, wss)."""
    cert = ca.issue_cert("127.0.0.1", "localhost", **cert_options)
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    chat = ChatServer(local_config(tls_cert=str(cert_path), tls_key=str(key_path)))
    with trio.fail_after(WAIT):
        addresses: list[str] = await nursery.start(chat.serve)
    return {address.split("://")[0]: address for address in addresses}


@pytest.fixture
async def tls_server(nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    return await start_tls_server(nursery, ca, tmp_path)


def port_of(address: str) -> str:
    return address.rstrip("/").rsplit(":", 1)[1]


async def test_tls_client_chats_with_a_private_ca(
    tls_server: dict[str, str], ca: trustme.CA, ca_file: str
) -> None:
    port = port_of(tls_server["tls"])
    async with (
        raw_client(tls_server, "bob", trusting(ca)) as bob,
        running_client(
            "127.0.0.1", "--port", port, "--tls", "--ca", ca_file, "--nick", "alice"
        ) as alice,
    ):
        await alice.expect("-- Hello alice")
        await bob.expect("join", nick="alice")
        await alice.send_line("over TLS")
        await bob.expect("message", nick="alice", text="over TLS")
        await bob.send(type="say", text="encrypted too")
        await alice.expect("<bob> encrypted too")
        status, stderr = await alice.finish()
        await bob.expect("leave", nick="alice")
    assert (status, stderr) == (0, "")


async def test_wss_client_chats_with_a_private_ca(
    tls_server: dict[str, str], ca: trustme.CA, ca_file: str
) -> None:
    async with (
        raw_client(tls_server, "bob", trusting(ca)) as bob,
        running_client(tls_server["wss"] + "/", "--ca", ca_file, "--nick", "wes") as wes,
    ):
        await wes.expect("-- Hello wes")
        await wes.send_line("over wss")
        await bob.expect("message", nick="wes", text="over wss")
        await bob.send(type="say", text="back over TLS")
        await wes.expect("<bob> back over TLS")
        status, stderr = await wes.finish()
    assert (status, stderr) == (0, "")


async def test_untrusted_certificate_is_one_line(tls_server: dict[str, str]) -> None:
    port = port_of(tls_server["tls"])
    status, stdout, stderr = await run_client_once(f"tls://127.0.0.1:{port}", "--nick", "x")
    assert (status, stdout) == (1, "")
    assert_one_error_line(
        stderr,
        f"trio-chat: cannot connect to 127.0.0.1:{port}: certificate verify failed: "
        "unable to get local issuer certificate (use --ca FILE for a private CA)",
    )


async def test_insecure_connects_and_warns(tls_server: dict[str, str]) -> None:
    port = port_of(tls_server["tls"])
    status, stdout, stderr = await run_client_once(
        "localhost", "--port", port, "--tls", "--insecure", "--nick", "ivan"
    )
    assert status == 0
    assert "-- Hello ivan" in stdout
    assert_one_error_line(stderr, f"trio-chat: {INSECURE_WARNING}")
    assert INSECURE_WARNING == "warning: --insecure: the server's certificate is not checked"


async def test_expired_certificate_is_one_line(
    nursery: trio.Nursery, ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    addresses = await start_tls_server(
        nursery, ca, tmp_path, not_before=past, not_after=past + datetime.timedelta(days=1)
    )
    port = port_of(addresses["tls"])
    status, _, stderr = await run_client_once(
        "localhost", "--port", port, "--tls", "--ca", ca_file, "--nick", "x"
    )
    assert status == 1
    assert_one_error_line(
        stderr,
        f"trio-chat: cannot connect to localhost:{port}: "
        "certificate verify failed: certificate has expired",
    )


async def test_tls_and_plain_mixed_up_are_one_line(
    server: tuple[ChatServer, dict[str, str]], tls_server: dict[str, str]
) -> None:
    _, plain = server
    port = tcp_port(plain)
    status, _, stderr = await run_client_once("127.0.0.1", "--port", port, "--tls", "--nick", "x")
    assert status == 1
    assert_one_error_line(
        stderr,
        f"trio-chat: cannot connect to 127.0.0.1:{port}: TLS handshake failed (is it a TLS port?)",
    )
    # The other way round, the TLS port says what it wants and the client passes it on.
    port = port_of(tls_server["tls"])
    status, _, stderr = await run_client_once("127.0.0.1", "--port", port, "--nick", "x")
    assert status == 1
    assert_one_error_line(stderr, f"trio-chat: 127.0.0.1:{port} speaks TLS: connect with --tls")


async def test_wss_certificate_failure_is_explained(
    tls_server: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # trio-websocket only times out on a failed TLS handshake; the client then looks for
    # the reason itself. A short timeout keeps the test fast.
    monkeypatch.setattr(client_connection, "CONNECT_TIMEOUT", 1.0)
    target = parse_target(tls_server["wss"] + "/", 1)
    with trio.fail_after(WAIT), pytest.raises(ConnectError) as info:
        async with open_connection(target, client_ssl_context()):
            pass
    assert str(info.value) == (
        f"cannot connect to {target.display}: certificate verify failed: "
        "unable to get local issuer certificate (use --ca FILE for a private CA)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("localhost", {"tls": True, "ca_file": "/nope/ca.pem"}),
            "trio-chat: cannot read CA file '/nope/ca.pem': no such file or directory",
        ),
        (
            ("localhost", {"ca_file": "ca.pem"}),
            "trio-chat: --ca is for TLS: add --tls (or use tls:// or wss://)",
        ),
        (
            ("ws://localhost/", {"insecure": True}),
            "trio-chat: --insecure is for TLS: add --tls (or use tls:// or wss://)",
        ),
        (
            ("ws://localhost/", {"tls": True}),
            "trio-chat: --tls with 'ws://localhost/': use wss:// for WebSocket over TLS",
        ),
    ],
)
def test_bad_tls_options_are_one_line(
    args: tuple[str, dict[str, Any]], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    host, options = args
    # These fail before anything connects (and before trio.run), so run in-process.
    assert run_client(host, 12345, None, **options) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert_one_error_line(err, message)


def test_ca_file_without_a_certificate_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert run_client("localhost", 12345, None, tls=True, ca_file=str(junk)) == 2
    assert_one_error_line(
        capsys.readouterr().err,
        f"trio-chat: cannot load CA file {str(junk)!r}: no certificate or crl found",
    )


def test_parse_target_with_tls() -> None:
    assert parse_target("localhost", 12345, tls=True) == Target("tls", "localhost", 12345)
    assert parse_target("tls://chat.example:7000", 1) == Target("tls", "chat.example", 7000)
    assert parse_target("tls://chat.example", 12345).port == 12345
    assert parse_target("tls://[::1]:7000/", 1).display == "[::1]:7000"
    assert parse_target("wss://chat.example/", 1, tls=True).secure
    assert not parse_target("ws://chat.example/", 1).secure
    for bad in ["tls://chat.example/path", "tls://chat.example?x=1"]:
        with pytest.raises(BadTarget):
            parse_target(bad, 1)


# ------------------------------------------------------------ rooms, --json, wrong ports


async def test_piped_lines_name_other_rooms_and_carry_no_escape_codes(
    server: tuple[ChatServer, dict[str, str]],
) -> None:
    _, addresses = server
    async with (
        raw_client(addresses, "bob") as bob,
        running_client("127.0.0.1", "--port", tcp_port(addresses), "--nick", "alice") as alice,
    ):
        await alice.expect("-- Hello alice")
        await alice.send_line("/join #dev")
        await alice.expect("now talking in #dev")
        await bob.send(type="command", name="join", args="#dev")
        await bob.send(type="say", room="#lobby", text="alice: in the lobby")
        await bob.send(type="say", room="#dev", text="in dev")
        assert (await alice.expect("in the lobby")).endswith("] #lobby <bob> alice: in the lobby")
        assert (await alice.expect("in dev")).endswith("] <bob> in dev")
        await alice.send_line("mine")
        await bob.expect("message", nick="alice", text="mine")
        await alice.expect("<alice> mine")
        status, stderr = await alice.finish()
    assert (status, stderr) == (0, "")
    assert sum("mine" in line for line in alice.output) == 1
    assert not any("\x1b" in line or "\a" in line for line in alice.output), alice.output


async def test_json_prints_the_servers_events_one_per_line(
    server: tuple[ChatServer, dict[str, str]],
) -> None:
    _, addresses = server
    async with (
        raw_client(addresses, "bob") as bob,
        running_client(
            "127.0.0.1", "--port", tcp_port(addresses), "--nick", "jay", "--json"
        ) as jay,
    ):
        welcome = json.loads(await jay.expect('"type":"welcome"'))
        assert welcome["nick"] == "jay"
        await bob.send(type="say", text="for the script")
        message = json.loads(await jay.expect("for the script"))
        assert {k: message[k] for k in ("type", "nick", "room")} == {
            "type": "message",
            "nick": "bob",
            "room": "#lobby",
        }
        # A typed line starting with { is sent as a frame, as it is.
        await jay.send_line('{"type":"command","name":"who","ref":"w1"}')
        reply = json.loads(await jay.expect('"ref":"w1"'))
        assert reply["type"] == "info" and "bob" in reply["data"]["users"]
        await jay.send_line("plain lines still work")
        await bob.expect("message", nick="jay", text="plain lines still work")
        status, stderr = await jay.finish()
    assert (status, stderr) == (0, "")
    events = [json.loads(line) for line in jay.output]  # every line is one JSON object
    assert events[-1]["type"] == "bye"
    assert not any(e["type"] == "pong" for e in events)  # the client's own pings stay out


def test_json_needs_a_nick(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_client("localhost", 1, None, json_mode=True) == 2
    assert capsys.readouterr().err == "trio-chat: --json needs --nick\n"


async def test_the_websocket_port_over_tcp_is_not_a_chat_server(
    server: tuple[ChatServer, dict[str, str]],
) -> None:
    _, addresses = server
    port = addresses["ws"].rsplit(":", 1)[1]
    with trio.fail_after(WAIT):
        status, _, stderr = await run_client_once("127.0.0.1", "--port", port, "--nick", "x")
    assert status == 1
    assert_one_error_line(
        stderr,
        f"trio-chat: 127.0.0.1:{port} is not a trio-chat server: it answers HTTP "
        f"(the WebSocket port? use ws://127.0.0.1:{port}/)",
    )


async def test_a_full_server_is_one_line() -> None:
    config = local_config(ws_port=None, max_connections_per_host=1, limit_loopback=True)
    async with open_test_server(config=config) as chat:
        host, port = chat.address("tcp")
        async with open_client(chat, "first"):
            status, _, stderr = await run_client_once(host, "--port", str(port), "--nick", "x")
    assert status == 1
    assert_one_error_line(
        stderr,
        f"trio-chat: 127.0.0.1:{port}: connection refused: too many connections from "
        "127.0.0.1 (limit 1)",
    )


class StoppableServer:
    """A server a test stops, waiting until it has (its port free for a restart)."""

    def __init__(self, server: ChatServer, address: str, done: trio.Event) -> None:
        self.server = server
        self.address = address
        self.port = int(address.rsplit(":", 1)[1])
        self._done = done

    @classmethod
    async def start(cls, nursery: trio.Nursery, config: ServerConfig) -> StoppableServer:
        server, done = ChatServer(config), trio.Event()

        async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await server.serve(task_status=task_status)
            finally:
                done.set()

        (address,) = await nursery.start(serve)
        return cls(server, address, done)

    async def stop(self) -> None:
        self.server.shutdown()
        with trio.fail_after(WAIT):
            await self._done.wait()


async def test_an_account_logs_back_in_after_a_reconnect(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = local_config(ws_port=None, db=str(tmp_path / "chat.db"))
    first = await StoppableServer.start(nursery, config)
    port = str(first.port)
    async with running_client("127.0.0.1", "--port", port, "--nick", "ann") as ann:
        await ann.expect("-- Hello ann")
        await ann.send_line("/register s3cret-pass")
        await ann.expect("is now registered to you")
        await first.stop()
        second = ChatServer(replace(config, port=int(port)))
        await nursery.start(second.serve)
        await ann.expect("-- back in #lobby")
        # Logged in to the account again: only then may the password be changed.
        await ann.send_line("/password s3cret-pass n3w-pass")
        await ann.expect("-- password changed")
        status, stderr = await ann.finish()
        second.shutdown()
    assert (status, stderr) == (0, "")


# ---------------------------------------------------------- rendering and completion


def test_colours_marks_and_mentions() -> None:
    plain = Renderer(colour=False)
    plain.nick, plain.room = "alice", "#dev"
    mention = Message(id=1, ts=0.0, room="#lobby", nick="bob", text="hi Alice!")
    assert plain.line(mention).endswith("] #lobby <bob> hi Alice!")
    for kind, shown in (("action", "* bob waves"), ("notice", "-bob- waves")):
        line = plain.line(Message(id=3, ts=0.0, room="#dev", nick="bob", text="waves", kind=kind))
        assert line.endswith(f"] {shown}")
    assert "\x1b" not in plain.line(mention) and "\a" not in plain.line(mention)

    tty = Renderer(colour=True)
    tty.nick, tty.room = "alice", "#dev"
    line = tty.line(mention)
    assert line.endswith("\a")  # a mention rings the bell
    assert f"\x1b[{name_colour('bob')}mbob" in line
    assert "\x1b[30;43mhi Alice!" in line  # highlighted
    own = tty.line(Message(id=2, ts=0.0, room="#dev", nick="alice", text="hi bob"))
    assert "\x1b[1;7malice" in own and "\a" not in own and "#dev" not in own
    # The same nick has the same colour in every session; others may differ.
    assert name_colour("bob") == name_colour("Bob") == PALETTE[zlib.crc32(b"bob") % 12]
    assert len({name_colour(n) for n in ("ann", "bob", "carl", "dora", "eve", "fay")}) > 1
    assert not plain.is_alert(replace(mention, text="alicex and malice"))
    assert plain.is_alert(replace(mention, text="@alice: look"))


def test_colour_only_on_a_terminal_without_no_color() -> None:
    assert colour_wanted(True, {"TERM": "xterm"})
    assert not colour_wanted(False, {"TERM": "xterm"})
    assert not colour_wanted(True, {"TERM": "xterm", "NO_COLOR": "1"})
    assert not colour_wanted(True, {"TERM": "dumb"})


def test_tab_completion() -> None:
    client = ChatClient(
        Target("tcp", "localhost", 1), PipeTerminal(trio.testing.MemoryReceiveStream()), "alice"
    )
    client.room = "#dev"
    client.rooms = {
        "lobby": RoomState("#lobby", members={"alice", "bert"}),
        name_key("#dev"): RoomState("#dev", members={"alice", "bob", "Bobby"}),
    }
    assert completions(client, "/jo") == (0, ["/join "])
    assert completions(client, "bo") == (0, ["Bobby: ", "bob: "])
    assert completions(client, "hi b") == (3, ["Bobby ", "bob ", "bert "])
    assert completions(client, "/join #d") == (6, ["#dev "])
    assert completions(client, "al") == (0, [])  # not yourself


def test_reconnect_delays_double_with_jitter() -> None:
    rand = random.Random(1)
    delays = [backoff_delay(attempt, rand) for attempt in range(10)]
    for attempt, delay in enumerate(delays):
        step = min(60.0, 2.0**attempt)
        assert step / 2 <= delay <= step
    assert delays[-1] <= 60.0
