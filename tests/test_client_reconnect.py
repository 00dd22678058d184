"""The terminal client through a server restart, and the interactive prompt under tmux.

The server runs in-process with a database file and is restarted on the same port. While it
is down the client process is stopped (SIGSTOP), so that what a raw client says on the new
server is said *meanwhile* for certain, and the client must find it by filling the gap, not
by hearing it live. Every wait is bounded: output is read until a line appears, the tmux
screen is polled until it shows what is expected.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from test_client import ROOT, WAIT, client_command, raw_client, running_client

from trio_chat.server import ChatServer
from trio_chat.testing import local_config

#: Messages said in #dev while the client is away: more than one history page (500).
GAP_DEV = 505
GAP_LOBBY = 5


class RestartableServer:
    """An in-process server with a database file, stopped and started on one port."""

    def __init__(self, nursery: trio.Nursery, db: Path) -> None:
        self.nursery = nursery
        self.db = db
        self.port = 0
        self._chat: ChatServer | None = None
        self._stopped = trio.Event()

    async def start(self) -> dict[str, str]:
        chat = ChatServer(local_config(port=self.port, ws_port=None, db=str(self.db)))
        stopped = trio.Event()

        async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await chat.serve(task_status=task_status)
            finally:
                stopped.set()

        with trio.fail_after(WAIT):
            (address,) = await self.nursery.start(serve)
        self._chat, self._stopped = chat, stopped
        self.port = int(address.rsplit(":", 1)[1])
        return {"tcp": address}

    async def stop(self) -> None:
        """Stop as ``trio-chat serve`` does on SIGTERM: everyone gets ``bye`` (shutdown).
        (A cancelled server closes every socket too: tests/test_server_cancelled.py.)"""
        assert self._chat is not None
        self._chat.shutdown()
        with trio.fail_after(WAIT):
            await self._stopped.wait()


@asynccontextmanager
async def stopped(process: trio.Process) -> AsyncIterator[None]:
    """The client process frozen (it notices nothing) for the block."""
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


async def say_meanwhile(addresses: dict[str, str]) -> list[tuple[str, str]]:
    """carol says GAP_DEV lines in #dev and GAP_LOBBY in #lobby, interleaved; returns
    (room, text) in the order said."""
    said: list[tuple[str, str]] = []
    async with raw_client(addresses, "carol") as carol:
        await carol.send(type="command", name="join", args="#dev", ref="j")
        await carol.expect("info", ref="j")
        for i in range(GAP_DEV):
            said.append(("#dev", f"gap dev {i}"))
            if i % 101 == 0 and len([s for s in said if s[0] == "#lobby"]) < GAP_LOBBY:
                said.append(("#lobby", f"gap lobby {i}"))
        for room, text in said:
            await carol.send(type="say", room=room, text=text)
        last_room, last_text = said[-1]
        await carol.expect("message", room=last_room, text=last_text)
        await carol.send(type="quit")
    return said


async def test_restart_fills_the_gap_of_every_room_once_in_order(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = RestartableServer(nursery, tmp_path / "chat.db")
    addresses = await server.start()
    async with running_client("127.0.0.1", "--port", str(server.port), "--nick", "alice") as alice:
        await alice.expect("-- Hello alice")
        await alice.send_line("/join #dev")
        await alice.expect("now talking in #dev")
        async with raw_client(addresses, "bob") as bob:
            await bob.send(type="command", name="join", args="#dev")
            await bob.send(type="say", room="#dev", text="before, in dev")
            await bob.send(type="say", room="#lobby", text="before, in lobby")
            # #dev is current: no prefix; #lobby is not.
            assert (await alice.expect("before, in dev")).endswith("] <bob> before, in dev")
            line = await alice.expect("before, in lobby")
            assert line.endswith("] #lobby <bob> before, in lobby")
            async with stopped(alice.process):
                await server.stop()
                await server.start()
                said = await say_meanwhile(addresses)
        await alice.expect("-- reconnecting in")
        back = await alice.expect("-- back in")
        assert back == f"-- back in #lobby, #dev; {len(said)} new messages"
        async with raw_client(addresses, "dave") as dave:
            await dave.send(type="command", name="join", args="#dev")
            await dave.send(type="say", room="#dev", text="live again")
            await alice.expect("<dave> live again")
        # The prompt's room is #dev again: a plain line goes there.
        await alice.send_line("/who")
        await alice.expect("in #dev:")
        status, stderr = await alice.finish()
    assert (status, stderr) == (0, "")
    shown = [line for line in alice.output if " gap " in line]
    expected = [
        f"<carol> {text}" if room == "#dev" else f"#lobby <carol> {text}" for room, text in said
    ]
    assert [line.split("] ", 1)[1] for line in shown] == expected
    assert sum("before, in dev" in line for line in alice.output) == 1


async def test_no_reconnect_when_the_user_quits_while_away(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = RestartableServer(nursery, tmp_path / "chat.db")
    await server.start()
    async with running_client("127.0.0.1", "--port", str(server.port), "--nick", "ivy") as ivy:
        await ivy.expect("-- Hello ivy")
        await server.stop()
        await ivy.expect("-- reconnecting in")
        await ivy.send_line("said while away")
        await ivy.expect("not connected: it will be sent once reconnected")
        await server.start()
        async with raw_client({"tcp": f"tcp://127.0.0.1:{server.port}"}, "jon") as jon:
            await ivy.expect("-- back in #lobby")
            await jon.expect("message", nick="ivy", text="said while away")
        status, stderr = await ivy.finish()
    assert (status, stderr) == (0, "")


# ------------------------------------------------------------------------------- tmux

tmux = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(tmux is None, reason="tmux is not installed")
ESC = "\x1b["


class Tmux:
    """The client in a tmux pane of its own server (socket in a temporary folder)."""

    def __init__(self, socket_path: str) -> None:
        assert tmux is not None
        self.tmux = tmux
        self.socket_path = socket_path

    async def run(self, *args: str) -> str:
        with trio.fail_after(WAIT):
            result = await trio.run_process(
                [self.tmux, "-S", self.socket_path, *args],
                capture_stdout=True,
                capture_stderr=True,
            )
        return str(result.stdout.decode())

    async def keys(self, *keys: str, literal: bool = False) -> None:
        await self.run("send-keys", "-t", "chat", *(["-l"] if literal else []), *keys)

    async def screen(self, colours: bool = False) -> list[str]:
        text = await self.run("capture-pane", "-p", *(["-e"] if colours else []), "-t", "chat")
        return [line.rstrip() for line in text.splitlines() if line.strip()]

    async def until(self, check: Callable[[list[str]], bool], colours: bool = False) -> list[str]:
        lines: list[str] = []
        try:
            with trio.fail_after(WAIT):
                while True:
                    lines = await self.screen(colours)
                    if check(lines):
                        return lines
                    await trio.sleep(0.05)
        except trio.TooSlowError:
            raise AssertionError(f"the screen never matched: {lines}") from None

    async def pid(self) -> int:
        return int((await self.run("list-panes", "-t", "chat", "-F", "#{pane_pid}")).strip())


@asynccontextmanager
async def client_in_tmux(
    tmp_path: Path, port: int, nick: str | None, **env: str
) -> AsyncIterator[Tmux]:
    """``trio-chat connect`` in a 120x30 tmux pane, as a person would run it."""
    assert tmux is not None
    pane = Tmux(str(tmp_path / "tmux.sock"))
    nick_args = ("--nick", nick) if nick is not None else ()
    command = " ".join(client_command("127.0.0.1", "--port", str(port), *nick_args))
    # A fresh tmux server per test, started with this environment, passes it on.
    environment = {**os.environ, "TERM": "xterm-256color", **env}
    if "NO_COLOR" not in env:
        environment.pop("NO_COLOR", None)
    with trio.fail_after(WAIT):
        await trio.run_process(
            [
                tmux,
                "-S",
                pane.socket_path,
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
            env=environment,
        )
    try:
        yield pane
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(WAIT):
            await trio.run_process(
                [tmux, "-S", pane.socket_path, "kill-server"], check=False, capture_stderr=True
            )


def strip_escapes(line: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", line)


@needs_tmux
async def test_terminal_through_a_restart_with_colours_and_completion(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = RestartableServer(nursery, tmp_path / "chat.db")
    addresses = await server.start()
    async with client_in_tmux(tmp_path, server.port, "tina") as pane:
        prompt = "tina #lobby>"
        await pane.until(lambda lines: bool(lines) and lines[-1] == prompt)
        async with raw_client(addresses, "bob") as bob:
            await pane.keys("/jo", literal=True)
            await pane.keys("Tab")
            await pane.until(lambda lines: lines[-1] == "tina #lobby> /join")
            await pane.keys("#dev", literal=True)
            await pane.keys("Enter")
            prompt = "tina #dev>"
            await pane.until(lambda lines: lines[-1] == prompt)
            await bob.send(type="command", name="join", args="#dev")
            await pane.until(lambda lines: any("bob joined #dev" in li for li in lines))

            # Tab completes a nick; at the start of the line it adds ": ".
            await pane.keys("bo", literal=True)
            await pane.keys("Tab")
            await pane.until(lambda lines: lines[-1] == "tina #dev> bob:")
            await pane.keys("my own line", literal=True)
            await pane.keys("Enter")
            await bob.expect("message", nick="tina", text="bob: my own line")
            # Shown once: the typed line gives way to the server's echo.
            lines = await pane.until(lambda lines: any("my own line" in li for li in lines))
            lines = await pane.until(lambda lines: lines[-1] == prompt)
            assert sum("my own line" in li for li in lines) == 1, lines
            assert next(li for li in lines if "my own line" in li).endswith(
                "] <tina> bob: my own line"
            )

            await bob.send(type="say", room="#lobby", text="tina, in the lobby")
            await bob.send(type="say", room="#dev", text="plain in dev")
            lines = await pane.until(lambda lines: any("plain in dev" in li for li in lines))
            assert any(li.endswith("] #lobby <bob> tina, in the lobby") for li in lines), lines
            assert any(li.endswith("] <bob> plain in dev") for li in lines), lines
            coloured = await pane.screen(colours=True)
            mention = next(li for li in coloured if "tina, in the lobby" in li)
            assert "\x1b[30m\x1b[43m" in mention or "\x1b[30;43m" in mention, mention
            nick_codes = re.findall(r"<(\x1b\[[0-9;]*m)bob", "\n".join(coloured))
            assert nick_codes and len(set(nick_codes)) == 1, coloured  # one colour for bob

            # Half a line typed, then the server goes away and comes back.
            await pane.keys("half typed", literal=True)
            await pane.until(lambda lines: lines[-1] == "tina #dev> half typed")
            await server.stop()
        await pane.until(lambda lines: any("reconnecting in" in li for li in lines))
        assert (await pane.screen())[-1] == "tina #dev (offline)> half typed"
        await server.start()
        async with raw_client(addresses, "carol") as carol:
            await carol.send(type="command", name="join", args="#dev")
            await carol.send(type="say", room="#dev", text="said in dev while tina was away")
            await carol.send(type="say", room="#lobby", text="said in lobby while tina was away")
            lines = await pane.until(
                lambda lines: (
                    any("-- back in" in li for li in lines)
                    and any("in lobby while" in li for li in lines)
                    and lines[-1] == "tina #dev> half typed"
                )
            )
            assert sum("while tina was away" in li for li in lines) == 2, lines
            assert sum("half typed" in li for li in lines) == 1, lines
            await pane.keys(" and finished", literal=True)
            await pane.keys("Enter")
            await carol.expect("message", nick="tina", text="half typed and finished", room="#dev")
            await pane.keys("/quit", literal=True)
            await pane.keys("Enter")
            await carol.expect("leave", nick="tina")


@needs_tmux
async def test_no_colour_with_no_color(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = RestartableServer(nursery, tmp_path / "chat.db")
    addresses = await server.start()
    async with (
        client_in_tmux(tmp_path, server.port, "nora", NO_COLOR="1") as pane,
        raw_client(addresses, "bob") as bob,
    ):
        await bob.expect("join", nick="nora")
        await bob.send(type="say", text="nora: no colours here")
        await pane.until(lambda lines: any("no colours here" in li for li in lines))
        coloured = await pane.screen(colours=True)
        assert not any(ESC in li for li in coloured if "no colours here" in li), coloured


@needs_tmux
async def test_the_nickname_prompt_once(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = RestartableServer(nursery, tmp_path / "chat.db")
    await server.start()
    async with client_in_tmux(tmp_path, server.port, None) as pane:
        lines = await pane.until(lambda lines: lines == ["Nickname:"])
        await pane.keys("nina", literal=True)
        await pane.keys("Enter")
        lines = await pane.until(lambda lines: bool(lines) and lines[-1] == "nina #lobby>")
        assert not any("Nickname" in line for line in lines), lines
        assert lines[0].startswith("-- Hello nina"), lines
