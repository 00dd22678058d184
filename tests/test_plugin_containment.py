"""A plugin that raises, hangs, floods or returns garbage, from any hook, costs only itself.

For each hook (``register_commands``, ``filter_message``, ``user_joined``, ``user_left``,
``server_started``) and for command handlers: the server keeps serving everyone else, the
log names the plugin, and whoever caused the call gets one clear error (no traceback).
What tests/test_plugins.py and tests/test_plugin_calls.py already show (a handler that
raises, hangs or returns a dict; a listener or ``register_commands`` that raises; a filter
returning a number) is not repeated here.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
import trio.lowlevel

from tests.test_chat import open_text_client
from trio_chat import ChatServer, CommandContext, hookimpl, wire
from trio_chat.api import MAX_LINES_PER_COMMAND
from trio_chat.commands import RegisterCommand
from trio_chat.hub import Session
from trio_chat.protocol import Info
from trio_chat.store.health import LogLimiter
from trio_chat.testing import ChatClient, local_config, open_client, open_test_server


@contextmanager
def no_unawaited_coroutines() -> Iterator[None]:
    """Fail if a coroutine made inside the block is left un-awaited and unclosed: Python
    would warn of it later, at some collection far from the plugin that made it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)], caught


async def others_carry_on(speaker: ChatClient, listener: ChatClient, text: str) -> None:
    """``speaker`` says a line and ``listener`` hears it: both connected, the room serving."""
    await speaker.say(text)
    assert (await listener.expect("message", lambda e: e.text == text)).nick == speaker.nick


def nothing_but_chat(client: ChatClient) -> None:
    """``client`` (a bystander) was told nothing of another's plugin trouble."""
    assert not [e for e in client.history if e.TYPE in ("error", "info")], client.history


# ------------------------------------------------------------------ command handlers


class Loud:
    """Handlers that misuse what ``ctx`` offers."""

    @hookimpl
    def register_commands(self, register: RegisterCommand) -> None:
        register("flood", self.flood, help="Says a line in a loop")
        register("aflood", self.aflood, help="Says lines in a loop, async")
        register("long", lambda ctx: ctx.say("x" * 100_000), help="Says an overlong line")
        register("fine", lambda ctx: ctx.say("a fine line"), help="Says one line")

    def flood(self, ctx: CommandContext) -> None:
        for n in range(100_000):
            ctx.say(f"flood {n}")

    async def aflood(self, ctx: CommandContext) -> None:
        for n in range(100_000):
            await trio.lowlevel.checkpoint()
            ctx.action(f"floods {n}")


@pytest.mark.parametrize("command", ["flood", "aflood"])
async def test_a_command_flooding_the_room_is_cut_off(
    command: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        open_test_server(Loud()) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        with caplog.at_level(logging.ERROR, logger="trio_chat"):
            await alice.command(f"/{command}")
            error = await alice.expect("error")
        assert (error.code, error.text) == ("plugin_error", f"/{command} failed (internal error)")
        # Bob got the lines said before the cut, and stays connected (100,000 would have
        # overrun his queue and dropped him as a slow receiver).
        await others_carry_on(alice, bob, "after the flood")
        flood = [e for e in bob.history if e.TYPE == "message" and e.text != "after the flood"]
        assert len(flood) == MAX_LINES_PER_COMMAND
        await others_carry_on(bob, alice, "bob is fine")
        nothing_but_chat(bob)
        # The same command runs again, with a budget of its own.
        await alice.command("/fine")
        assert (await bob.expect("message", lambda e: e.text == "a fine line")).nick == "alice"
    assert "Loud" in caplog.text
    assert f"more than {MAX_LINES_PER_COMMAND} lines in one run" in caplog.text


async def test_a_command_speaking_an_overlong_line_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        open_test_server(Loud()) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        with caplog.at_level(logging.ERROR, logger="trio_chat"):
            await alice.command("/long")
            assert (await alice.expect("error")).code == "plugin_error"
        await others_carry_on(alice, bob, "short and sweet")
        assert [e.text for e in bob.history if e.TYPE == "message"] == ["short and sweet"]
    assert "Loud" in caplog.text and "a line over 16384 bytes" in caplog.text


class Sloppy:
    """Handlers that hand ``ctx`` the wrong types."""

    def __init__(self, call: Callable[[CommandContext], object]) -> None:
        self.call = call

    @hookimpl
    def register_commands(self, register: RegisterCommand) -> None:
        register("sloppy", self.call, help="Misuses ctx")


def said_then_unencodable(ctx: CommandContext) -> None:
    # The line said first is still being stored when the reply is sent, so the reply waits
    # behind it, to be encoded later in the delivery every connection shares: where an
    # unencodable reply once took the whole server down.
    ctx.say("first")
    ctx.reply("unencodable", data={"when": object()})


@pytest.mark.parametrize(
    ("misuse", "logged"),
    [
        (lambda ctx: ctx.say(42), "ctx.say takes a str, not int"),
        (lambda ctx: ctx.action(None), "ctx.action takes a str, not NoneType"),
        (lambda ctx: ctx.reply(b"bytes"), "ctx.reply takes a str, not bytes"),
        (lambda ctx: ctx.reply("x", data=["a", "list"]), "data is a dict or None, not list"),
        (lambda ctx: ctx.reply("x", data={"o": object()}), "data cannot be sent as JSON"),
        (lambda ctx: ctx.reply("x", data={"n": 2**80}), "data cannot be sent as JSON"),
        (said_then_unencodable, "data cannot be sent as JSON"),
    ],
)
async def test_wrong_types_given_to_ctx_are_an_error_for_the_caller(
    misuse: Callable[[CommandContext], object], logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        open_test_server(Sloppy(misuse)) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        with caplog.at_level(logging.ERROR, logger="trio_chat"):
            await alice.command("/sloppy")
            error = await alice.expect("error")
        assert (error.code, error.text) == ("plugin_error", "/sloppy failed (internal error)")
        await others_carry_on(alice, bob, "still here")
        await others_carry_on(bob, alice, "me too")
        nothing_but_chat(bob)
    assert "Sloppy" in caplog.text and logged in caplog.text


class Garbage:
    """Handlers that return what no handler should, or fail in ways beyond ``raise``."""

    @hookimpl
    def register_commands(self, register: RegisterCommand) -> None:
        register("number", lambda ctx: 42, help="Returns a number")
        register("bytes", lambda ctx: b"bytes", help="Returns bytes")
        register("anumber", self.anumber, help="Returns a number, async")
        register("nested", self.nested, help="Returns a coroutine from a coroutine")
        register("asyncio", self.asyncio_only, help="Awaits asyncio under trio")
        register("exit", lambda ctx: sys.exit(3), help="Exits the process")
        register("aexit", self.aexit, help="Exits the process, async")

    async def anumber(self, ctx: CommandContext) -> Any:
        await trio.lowlevel.checkpoint()
        return 42

    async def nested(self, ctx: CommandContext) -> Any:
        return self.anumber(ctx)

    async def asyncio_only(self, ctx: CommandContext) -> None:
        await asyncio.sleep(0)

    async def aexit(self, ctx: CommandContext) -> None:
        await trio.lowlevel.checkpoint()
        raise SystemExit(4)


@pytest.mark.parametrize(
    ("command", "logged"),
    [
        ("number", "/number returned int, not a string or None"),
        ("bytes", "/bytes returned bytes, not a string or None"),
        ("anumber", "/anumber returned int"),
        ("nested", "/nested returned coroutine"),
        ("asyncio", "/asyncio raised"),
        ("exit", "/exit raised"),
        ("aexit", "/aexit raised"),
    ],
)
async def test_a_handler_returning_garbage_or_exiting_is_contained(
    command: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    with no_unawaited_coroutines():
        async with (
            open_test_server(Garbage()) as chat,
            open_client(chat, "alice") as alice,
            open_client(chat, "bob") as bob,
        ):
            with caplog.at_level(logging.ERROR, logger="trio_chat"):
                await alice.command(f"/{command}")
                error = await alice.expect("error")
            assert (error.code, error.text) == (
                "plugin_error",
                f"/{command} failed (internal error)",
            )
            await others_carry_on(bob, alice, "the server is up")
            nothing_but_chat(bob)
    assert "Garbage" in caplog.text and logged in caplog.text


# -------------------------------------------------------------------- register_commands


class BadRegistrations:
    """Each call of ``register`` is wrong in its own way; the last one is right."""

    @hookimpl
    def register_commands(self, register: Callable[..., None]) -> None:
        for args, kwargs in [
            ((42, self.ok), {"help": "a number for a name"}),
            (("Bad Name!", self.ok), {"help": "spaces"}),
            (("nothandler", "not callable"), {"help": "a string for a handler"}),
            (("nohelp", self.ok), {"help": None}),
            (("missinghelp", self.ok), {}),
            (("who", self.ok), {"help": "a built-in's name"}),
        ]:
            try:
                register(*args, **kwargs)
            except (TypeError, ValueError, AttributeError) as exc:
                self.refused.append(type(exc).__name__)
        register("ok", self.ok, help="The one right registration")

    def __init__(self) -> None:
        self.refused: list[str] = []

    def ok(self, ctx: CommandContext) -> str:
        return "ok"


class AsyncRegistration:
    @hookimpl
    async def register_commands(self, register: RegisterCommand) -> None:
        register("never", lambda ctx: "never", help="Never registered")


class ReturnsGarbage:
    @hookimpl
    def register_commands(self, register: RegisterCommand) -> object:
        register("garbage-ok", lambda ctx: "fine", help="Registered; the return is ignored")
        return {"not": "None"}


async def test_register_commands_misuse_is_refused_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = BadRegistrations()
    with no_unawaited_coroutines(), caplog.at_level(logging.ERROR, logger="trio_chat"):
        async with (
            open_test_server(bad, AsyncRegistration(), ReturnsGarbage()) as chat,
            open_client(chat, "alice") as alice,
        ):
            # Every wrong call raised to the plugin (which may catch it), none registered.
            assert bad.refused == [
                "AttributeError",  # 42.lower()
                "ValueError",  # an invalid command name
                "ValueError",  # a handler that is not callable
                "AttributeError",  # None.strip()
                "TypeError",  # help missing
                "ValueError",  # /who is taken
            ]
            assert chat.server.command("never") is None
            assert chat.server.command("who").plugin == "trio_chat.builtins.rooms"  # type: ignore[union-attr]
            for command, answer in [("/ok", "ok"), ("/garbage-ok", "fine")]:
                await alice.command(command)
                assert (await alice.expect("info")).text == answer
            await alice.command("/never")
            assert (await alice.expect("error")).code == "unknown_command"
    assert "AsyncRegistration" in caplog.text
    assert "register_commands must not be async" in caplog.text


# ------------------------------------------------------------------------ filter_message


class BrokenFilter:
    @hookimpl
    def filter_message(self, text: str) -> object:
        if text.startswith("raise"):
            raise KeyError("filter kaboom")
        if text.startswith("exit"):
            sys.exit(5)
        if text.startswith("bytes"):
            return text.encode()
        if text.startswith("list"):
            return [text]
        return None


class AsyncFilter:
    @hookimpl
    async def filter_message(self, text: str) -> str:
        return text.upper()


@pytest.mark.parametrize(
    ("line", "logged"),
    [
        ("raise it", "BrokenFilter.*filter_message raised"),
        ("exit now", "BrokenFilter.*filter_message raised"),
        ("bytes please", "BrokenFilter.*filter_message returned bytes"),
        ("list please", "BrokenFilter.*filter_message returned list"),
    ],
)
async def test_a_broken_filter_refuses_the_line_and_names_itself(
    line: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        open_test_server(BrokenFilter()) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        with caplog.at_level(logging.ERROR, logger="trio_chat"):
            await alice.say(line)
            error = await alice.expect("error")
        assert (error.code, error.text) == (
            "plugin_error",
            "message refused by a filter (internal error)",
        )
        await others_carry_on(alice, bob, "a plain line")
        await others_carry_on(bob, alice, "and another")
        assert next(e.text for e in bob.history if e.TYPE == "message") == "a plain line"
        nothing_but_chat(bob)
    assert any(re.search(logged, record.getMessage()) for record in caplog.records), caplog.text


async def test_an_async_filter_is_refused_and_never_left_unawaited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with no_unawaited_coroutines():
        async with (
            open_test_server(AsyncFilter()) as chat,
            open_client(chat, "alice") as alice,
            open_client(chat, "bob") as bob,
        ):
            with caplog.at_level(logging.ERROR, logger="trio_chat"):
                await alice.say("hello")
                assert (await alice.expect("error")).code == "plugin_error"
            nothing_but_chat(bob)
    assert "AsyncFilter" in caplog.text and "filter_message must be synchronous" in caplog.text


# ------------------------------------------- user_joined, user_left and server_started


class UnrulyListener:
    """Event listeners that raise (sync and async), exit, hang, return garbage or flood."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.hung = trio.Event()

    async def _misbehave(self, server: ChatServer, session: Session | None) -> object:
        if self.how == "async-raise":
            await trio.lowlevel.checkpoint()
            raise RuntimeError("listener kaboom")
        if self.how == "async-exit":
            await trio.lowlevel.checkpoint()
            sys.exit(6)
        if self.how == "hang":
            try:
                await trio.sleep_forever()
            finally:
                self.hung.set()
        return None

    def _call(self, server: ChatServer, session: Session | None) -> object:
        if self.how == "raise":
            raise RuntimeError("listener kaboom")
        if self.how == "exit":
            sys.exit(6)
        if self.how == "garbage":
            return object()
        if self.how == "flood" and session is not None and session.nick == "newcomer":
            for n in range(20_000):  # far past the newcomer's queue: it alone pays
                server.hub.send_to(session, Info(text=f"flood {n} " + "z" * 100))
            return None
        return self._misbehave(server, session)

    @hookimpl
    def user_joined(self, server: ChatServer, session: Session) -> object:
        return self._call(server, session)

    @hookimpl
    def user_left(self, server: ChatServer, session: Session) -> object:
        return self._call(server, session)

    @hookimpl
    def server_started(self, server: ChatServer) -> object:
        return self._call(server, None)


@pytest.mark.parametrize(
    ("how", "logged"),
    [
        ("raise", "listener kaboom"),
        ("async-raise", "listener kaboom"),
        ("exit", "SystemExit: 6"),
        ("async-exit", "SystemExit: 6"),
        ("hang", "took longer than 0.3s"),
        ("garbage", ""),
        ("flood", ""),
    ],
)
async def test_an_unruly_event_listener_costs_the_others_nothing(
    how: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    listener = UnrulyListener(how)
    config = local_config(plugin_timeout=0.3)
    with no_unawaited_coroutines(), caplog.at_level(logging.ERROR, logger="trio_chat"):
        async with (
            open_test_server(listener, config=config) as chat,
            open_client(chat, "alice") as alice,
            open_client(chat, "bob") as bob,
        ):
            # server_started, then alice's and bob's joins, ran the listener: all still here.
            async with open_client(chat, "newcomer") as newcomer:
                await alice.expect("join", lambda e: e.nick == "newcomer")
                del newcomer
            # Whether the newcomer left or was dropped for its flood, the room is told.
            await alice.expect("leave", lambda e: e.nick == "newcomer")
            await alice.command("/join #other")
            await alice.command("/part #other")
            await others_carry_on(alice, bob, "we carry on")
            await others_carry_on(bob, alice, "we do")
            nothing_but_chat(bob)
            if how == "hang":
                with trio.fail_after(5):
                    await listener.hung.wait()
    assert ("UnrulyListener" in caplog.text) == bool(logged)
    assert logged in caplog.text


# ------------------------------------------------------------------ the hub, reached directly


class Leaky:
    """Commands that hand the hub (``ctx.hub``, public) events JSON has no form for."""

    @hookimpl
    def register_commands(self, register: RegisterCommand) -> None:
        register("leak", self.leak, help="Sends the caller an event that cannot be encoded")
        register("leakroom", self.leak_room, help="Tells the room an event that cannot be sent")

    def leak(self, ctx: CommandContext) -> None:
        ctx.hub.send_to(ctx.session, Info(text="x", data={"when": object()}))
        ctx.reply("after the leak")

    def leak_room(self, ctx: CommandContext) -> None:
        room = ctx.hub.room(ctx.room)
        assert room is not None
        ctx.hub.tell_room(room, Info(text="leaked", data={"big": 2**80}))


async def test_an_unencodable_event_given_to_the_hub_is_an_error_for_its_receivers(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encoding happens as each connection is written to, far from the plugin: before,
    the exception ended the fan-out and the server. Now each receiver of the event gets
    ``plugin_error`` in its place (JSON lines and WebSocket; text mode shows only the
    text, which could be sent), and what follows is delivered as always."""
    monkeypatch.setattr(wire, "_unsendable_log", LogLimiter(window=60.0))  # logs once a minute
    async with (
        open_test_server(Leaky()) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "wes", websocket=True) as wes,
    ):
        text = await open_text_client(chat)
        async with text.stream:
            await text.read_until("nickname?")
            await text.send_line("carol")
            await text.read_until("carol joined #lobby")
            with caplog.at_level(logging.ERROR, logger="trio_chat.wire"):
                await alice.command("/leak")
                error = await alice.expect("error")
                assert error.code == "plugin_error" and "plugin" in error.text
                assert (await alice.expect("info")).text == "after the leak"
                await wes.command("/leakroom")
                for client in (alice, wes):
                    error = await client.expect("error")
                    assert error.code == "plugin_error" and error.ref is None
                await text.read_until("-- leaked")
            await others_carry_on(alice, wes, "still here")
            await text.read_until("<alice> still here")
            await text.send_line("and me")
            assert (await wes.expect("message")).text == "and me"
    assert "could not encode a Info event" in caplog.text
