"""Plugins: added at run time, used over the wire, and contained when they misbehave."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel

from trio_chat import ChatServer, CommandContext, CommandError, hookimpl
from trio_chat.commands import RegisterCommand
from trio_chat.hookspecs import PROJECT_NAME
from trio_chat.hub import Session
from trio_chat.plugins import PluginLoadError
from trio_chat.protocol import Info
from trio_chat.testing import local_config, open_client, open_test_server


class Shout:
    """A ten-line command plugin, as in the README."""

    @hookimpl
    def register_commands(self, register: RegisterCommand) -> None:
        register("shout", self.shout, help="Say something loudly", usage="TEXT")

    def shout(self, ctx: CommandContext) -> None:
        ctx.say(ctx.args.upper() + "!")


class Misbehaving:
    @hookimpl
    def register_commands(self, register: RegisterCommand) -> None:
        register("boom", self.boom, help="Raises")
        register("hang", self.hang, help="Never returns")
        register("garbage", self.garbage, help="Returns a non-string")
        register("refuse", self.refuse, help="Refuses politely")
        register("echo", self.echo, help="Async reply")

    def boom(self, ctx: CommandContext) -> None:
        raise RuntimeError("kaboom")

    async def hang(self, ctx: CommandContext) -> None:
        await trio.sleep_forever()

    def garbage(self, ctx: CommandContext) -> Any:
        return {"not": "a string"}

    def refuse(self, ctx: CommandContext) -> None:
        ctx.fail("not today", "nope")

    async def echo(self, ctx: CommandContext) -> str:
        await trio.lowlevel.checkpoint()
        return f"echo: {ctx.args}"


async def test_plugin_added_at_runtime_adds_a_working_command() -> None:
    async with open_test_server() as chat:
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            await alice.command("/shout hello")
            assert (await alice.expect("error")).code == "unknown_command"
            name = chat.server.add_plugin(Shout(), "shout-plugin")
            await alice.command("/shout hello")
            event = await bob.expect("message")
            assert (event.nick, event.text) == ("alice", "HELLO!")
            await alice.command("/help")
            info = await alice.expect("info")
            assert "/shout TEXT" in info.text and "Say something loudly" in info.text
            chat.server.remove_plugin(name)
            await alice.command("/shout again")
            assert (await alice.expect("error")).code == "unknown_command"


async def test_misbehaving_plugins_are_contained(caplog: pytest.LogCaptureFixture) -> None:
    config = local_config(plugin_timeout=0.3)
    async with open_test_server(Misbehaving(), config=config) as chat:
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            with caplog.at_level(logging.ERROR, logger="trio_chat"):
                await alice.command("/boom")
                error = await alice.expect("error")
                assert (error.code, error.text) == ("plugin_error", "/boom failed (internal error)")
                assert "kaboom" not in error.text  # no traceback for the user
                await alice.command("/hang")
                assert (await alice.expect("error")).code == "command_timeout"
                await alice.command("/garbage")
                assert (await alice.expect("error")).code == "plugin_error"
            logged = caplog.text
            assert "Misbehaving" in logged and "kaboom" in logged and "/hang" in logged
            await alice.command("/refuse")
            error = await alice.expect("error")
            assert (error.code, error.text) == ("nope", "not today")
            await alice.command("/echo hi")
            assert (await alice.expect("info")).text == "echo: hi"
            # The connection and the server carry on; bob saw none of it.
            await alice.say("still fine")
            assert (await bob.expect("message")).text == "still fine"
            assert not [e for e in bob.history if e.TYPE in ("error", "info")]


def test_duplicate_command_names_are_refused(caplog: pytest.LogCaptureFixture) -> None:
    class Other:
        @hookimpl
        def register_commands(self, register: RegisterCommand) -> None:
            register("who", lambda ctx: "mine", help="Shadows /who")

    with caplog.at_level(logging.ERROR, logger="trio_chat"):
        server = ChatServer(local_config(), plugins=[Other()])
    assert server.commands.get("who").plugin == "trio_chat.builtins.rooms"  # type: ignore[union-attr]
    assert "already registered" in caplog.text


class Filters:
    @hookimpl
    def filter_message(self, session: Session, room: str, text: str) -> str | None:
        if "secret" in text:
            raise CommandError("no secrets here", "message_refused")
        return text.replace("darn", "d**n")


class Greeter:
    def __init__(self) -> None:
        self.left: list[tuple[str, str, str | None]] = []

    @hookimpl
    async def user_joined(self, server: ChatServer, session: Session, room: str) -> None:
        await trio.lowlevel.checkpoint()
        server.hub.send_to(session, Info(text=f"welcome to {room}, {session.nick}"))

    @hookimpl
    def user_left(self, session: Session, room: str, reason: str | None) -> None:
        self.left.append((session.nick, room, reason))


async def test_message_filters_and_event_listeners() -> None:
    greeter = Greeter()
    async with open_test_server(Filters(), greeter) as chat:
        async with open_client(chat, "alice") as alice:
            assert (await alice.expect("info")).text == "welcome to #lobby, alice"
            async with open_client(chat, "bob") as bob:
                await bob.expect("info", lambda e: e.text.startswith("welcome"))
                await alice.say("well darn")
                assert (await bob.expect("message")).text == "well d**n"
                await alice.say("my secret")
                assert (await alice.expect("error")).code == "message_refused"
                await alice.command("/me has a secret")
                assert (await alice.expect("error")).code == "message_refused"
                await alice.say("ok")
                assert (await bob.expect("message")).text == "ok"
                assert [e.text for e in bob.history if e.TYPE == "message"] == ["well d**n", "ok"]
                assert [e.text for e in alice.history if e.TYPE == "info"] == [
                    "welcome to #lobby, alice"
                ]
            await alice.expect("leave")
        assert greeter.left[0] == ("bob", "#lobby", "connection lost")


def test_plugin_loaded_from_a_file(tmp_path: Path) -> None:
    source = tmp_path / "hello_plugin.py"
    source.write_text(
        textwrap.dedent(
            f"""
            import pluggy
            hookimpl = pluggy.HookimplMarker({PROJECT_NAME!r})

            @hookimpl
            def register_commands(register):
                register("hello", lambda ctx: "hello " + ctx.nick, help="Greets you")
            """
        )
    )
    server = ChatServer(local_config(plugins=[str(source)]))
    spec = server.commands.get("hello")
    assert spec is not None and spec.plugin == "trio_chat_plugin_hello_plugin"


def test_missing_plugin_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PluginLoadError, match="not found"):
        ChatServer(local_config(plugins=[str(tmp_path / "nope.py")]))
    with pytest.raises(PluginLoadError, match="cannot import plugin 'no_such_module_x'"):
        ChatServer(local_config(plugins=["no_such_module_x"]))
