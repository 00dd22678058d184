"""Every hook goes through pluggy's caller: wrappers work, historic hooks reach late plugins,
and one plugin's exception neither stops the others nor the server."""

from __future__ import annotations

import logging
from collections.abc import Generator

import pluggy
import pytest
import trio
import trio.lowlevel

from trio_chat import ChatServer, CommandContext, hookimpl
from trio_chat.commands import RegisterCommand
from trio_chat.hub import Session
from trio_chat.protocol import Info
from trio_chat.testing import local_config, open_client, open_test_server


class CheckingWrapper:
    """A ``wrapper=True`` filter: sees the text and what the filters inside made of it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[str]]] = []

    @hookimpl(wrapper=True)
    def filter_message(self, text: str) -> Generator[None, list[str], list[str]]:
        texts = yield
        self.seen.append((text, list(texts)))
        final = texts[-1] if texts else text
        return [*texts, final + " [checked]"]


class Masker:
    @hookimpl
    def filter_message(self, text: str) -> str | None:
        return text.replace("DARN", "D**N") if "DARN" in text else None


class Upper:
    @hookimpl
    def filter_message(self, text: str) -> str | None:
        return text.upper() if text.startswith("!") else None


async def test_a_wrapper_filter_sees_and_changes_the_text() -> None:
    wrapper = CheckingWrapper()
    async with open_test_server(Masker(), Upper(), wrapper) as chat:
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            await alice.say("!well darn")
            assert (await bob.expect("message")).text == "!WELL D**N [checked]"
            await alice.say("plain")
            assert (await bob.expect("message")).text == "plain [checked]"
            await alice.expect("message", lambda e: e.text == "plain [checked]")  # all before
            assert not [e for e in alice.history if e.TYPE == "error"]
    # Filters chain (last registered first: Upper, then Masker, which sees Upper's text).
    assert wrapper.seen == [("!well darn", ["!WELL DARN", "!WELL D**N"]), ("plain", [])]


class Broken:
    @hookimpl
    def user_joined(self, session: Session, room: str) -> None:
        raise RuntimeError("joined kaboom")

    @hookimpl
    def server_started(self, addresses: list[str]) -> None:
        raise RuntimeError("started kaboom")

    @hookimpl
    def register_commands(self, register: RegisterCommand) -> None:
        register("fine", lambda ctx: "fine", help="Registered before the failure")
        raise RuntimeError("register kaboom")


class Listener:
    def __init__(self) -> None:
        self.joined: list[str] = []
        self.started: list[str] = []

    @hookimpl(trylast=True)  # runs after Broken raised (pluggy would have stopped there)
    def user_joined(self, session: Session, room: str) -> None:
        self.joined.append(session.nick)

    @hookimpl(trylast=True)
    def server_started(self, addresses: list[str]) -> None:
        self.started.extend(addresses)


async def test_a_raising_implementation_is_logged_and_the_others_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = Listener()
    with caplog.at_level(logging.ERROR, logger="trio_chat"):
        async with open_test_server(Broken(), listener) as chat:
            # server_started raised in Broken: the server serves all the same.
            assert listener.started == chat.addresses
            async with open_client(chat, "alice") as alice:
                await alice.command("/fine")
                assert (await alice.expect("info")).text == "fine"
                await alice.say("hello")
                assert (await alice.expect("message")).text == "hello"
            assert listener.joined == ["alice"]
    logged = caplog.text
    for what in ("joined kaboom", "started kaboom", "register kaboom"):
        assert what in logged
    assert "Broken" in logged  # the log names the plugin


async def test_an_event_hook_is_called_only_when_a_plugin_implements_it() -> None:
    """An event nobody listens to costs no call through pluggy (every join and leave of
    every user would pay one); one listener, added while the server runs, hears it."""
    called: list[str] = []
    async with open_test_server() as chat:
        hooks = chat.server.pm.hook
        hookexec = hooks.user_joined._hookexec

        def counting(name: str, *args: object) -> object:
            called.append(name)
            return hookexec(name, *args)

        for name in ("user_joined", "user_left"):
            caller = getattr(hooks, name)
            assert not caller.get_hookimpls()
            caller._hookexec = counting
        async with open_client(chat, "alice"):
            pass
        listener = Listener()
        chat.server.pm.register(listener)
        async with open_client(chat, "bob"):
            pass
        assert listener.joined == ["bob"]
    assert called == ["user_joined"]


class BrokenWrapper:
    @hookimpl(wrapper=True)
    def user_joined(self) -> Generator[None, list[object], list[object]]:
        yield
        raise RuntimeError("wrapper kaboom")


async def test_a_raising_wrapper_of_an_event_hook_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = Listener()
    with caplog.at_level(logging.ERROR, logger="trio_chat"):
        async with open_test_server(BrokenWrapper(), listener) as chat:
            async with open_client(chat, "alice") as alice:
                await alice.say("still here")
                assert (await alice.expect("message")).text == "still here"
    assert listener.joined == ["alice"]
    assert "wrapper kaboom" in caplog.text


class SlowGreeter:
    def __init__(self) -> None:
        self.given_up = trio.Event()

    @hookimpl
    async def user_joined(self, server: ChatServer, session: Session, room: str) -> None:
        await trio.lowlevel.checkpoint()
        server.hub.send_to(session, Info(text=f"hi {session.nick}"))

    @hookimpl
    async def user_left(self, session: Session) -> None:
        try:
            await trio.sleep_forever()
        finally:
            # Cancelled by the plugin timeout; the log line follows before any checkpoint.
            self.given_up.set()


async def test_async_implementations_run_in_the_background_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    greeter = SlowGreeter()
    with caplog.at_level(logging.ERROR, logger="trio_chat"):
        async with open_test_server(greeter, config=local_config(plugin_timeout=0.2)) as chat:
            async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
                assert (await bob.expect("info")).text == "hi bob"
                await alice.command("/join #other")
                await alice.command("/part #other")
                await alice.expect("info", lambda e: e.text.startswith("left #other"))
                with trio.fail_after(5):
                    await greeter.given_up.wait()
    assert "SlowGreeter" in caplog.text and "user_left took longer than 0.2s" in caplog.text


def test_register_commands_is_historic_for_plugins_added_later() -> None:
    class Late:
        @hookimpl
        def register_commands(self, register: RegisterCommand) -> None:
            register("late", self.late, help="Added after the server was built")

        def late(self, ctx: CommandContext) -> str:
            return "late"

    server = ChatServer(local_config())
    assert server.pm.hook.register_commands.is_historic()
    name = server.add_plugin(Late())
    spec = server.commands.get("late")
    assert spec is not None and spec.plugin == name
    server.remove_plugin(name)
    assert server.commands.get("late") is None
    # Every built-in command still belongs to the built-in that registered it.
    assert server.commands.get("who").plugin == "trio_chat.builtins.rooms"  # type: ignore[union-attr]


class Garbage:
    @hookimpl
    def filter_message(self, text: str) -> object:
        return 42 if "garbage" in text else None


async def test_a_filter_returning_garbage_refuses_the_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_test_server(Garbage(), Masker()) as chat:
        async with open_client(chat, "alice") as alice:
            with caplog.at_level(logging.ERROR, logger="trio_chat"):
                await alice.say("garbage in")
                error = await alice.expect("error")
            assert (error.code, error.text) == (
                "plugin_error",
                "message refused by a filter (internal error)",
            )
            await alice.say("fine")
            assert (await alice.expect("message")).text == "fine"
    assert "Garbage" in caplog.text and "not a string" in caplog.text


def test_register_commands_takes_no_wrapper_being_historic() -> None:
    class Wrapping:
        @hookimpl(wrapper=True)
        def register_commands(self) -> Generator[None, None, None]:
            return (yield)

    server = ChatServer(local_config())
    with pytest.raises(pluggy.PluginValidationError, match="historic"):
        server.add_plugin(Wrapping())
