"""Listening to what rooms say: the ``message_posted`` hook and ``@on_message`` triggers,
over real sockets, and that neither can delay anyone's messages (measured)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_chat import ChatError, TriggerContext, hookimpl, on_message
from trio_chat.posted import PostedFeed
from trio_chat.protocol import Info, Message
from trio_chat.testing import local_config, open_client, open_test_server
from trio_chat.users import Session


class Notes(list[Any]):
    """A list whose growth a test can wait for (no polling)."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = trio.Event()

    def append(self, item: Any) -> None:
        super().append(item)
        self._changed.set()

    async def wait_for(self, count: int, within: float = 5) -> None:
        with trio.fail_after(within):
            while len(self) < count:
                self._changed = trio.Event()
                await self._changed.wait()


class Heard:
    """A ``message_posted`` listener that notes what it heard, in order."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str, str, bool]] = []
        self._changed = trio.Event()

    @hookimpl
    def message_posted(self, message: Message, session: Session) -> None:
        self.lines.append((message.id, message.nick, message.text, session.bot))
        self._changed.set()

    async def wait_for(self, count: int) -> list[tuple[int, str, str, bool]]:
        with trio.fail_after(5):
            while len(self.lines) < count:
                self._changed = trio.Event()
                await self._changed.wait()
        return self.lines


async def test_message_posted_hears_every_line_once_after_delivery() -> None:
    heard = Heard()
    async with (
        open_test_server(heard) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await alice.expect("join", lambda e: e.nick == "bob")
        await alice.say("hello")
        await alice.command("/me waves")
        await bob.command("/msg alice a private word")  # not a room's line
        await bob.say("hi alice")
        said = [await bob.expect("message") for _ in range(3)]
        bot = await chat.server.add_bot("helper", plugin="tests")
        await bot.join("#lobby")
        bot.say("#lobby", "beep")
        said.append(await bob.expect("message", lambda e: e.nick == "helper"))
        lines = await heard.wait_for(4)
        assert lines == [(m.id, m.nick, m.text, m.nick == "helper") for m in said]
        await alice.expect("private")
        assert not [line for line in lines if "private" in line[2]]


async def test_a_line_a_filter_refused_is_not_posted() -> None:
    class NoSpam:
        @hookimpl
        def filter_message(self, text: str) -> str | None:
            if "spam" in text:
                raise ChatError("message_refused", "no spam")
            return None

    heard = Heard()
    async with open_test_server(NoSpam(), heard) as chat, open_client(chat, "alice") as alice:
        await alice.say("spam spam")
        assert (await alice.expect("error")).code == "message_refused"
        await alice.say("eggs")
        await alice.expect("message")
        assert [text for _, _, text, _ in await heard.wait_for(1)] == ["eggs"]


async def test_a_broken_or_hanging_listener_costs_the_others_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ended = trio.Event()

    class Broken:
        @hookimpl
        def message_posted(self) -> None:
            raise RuntimeError("listener bug")

    class Garbage:
        @hookimpl
        def message_posted(self) -> object:
            return 42

    class Hanging:
        @hookimpl
        async def message_posted(self) -> None:
            try:
                await trio.sleep_forever()
            finally:
                ended.set()

    heard = Heard()
    config = local_config(plugin_timeout=0.5)
    async with (
        open_test_server(Broken(), Garbage(), Hanging(), heard, config=config) as chat,
        open_client(chat, "alice") as alice,
    ):
        await alice.say("one")
        await alice.say("two")
        assert [await alice.expect("message") for _ in range(2)]
        assert [text for _, _, text, _ in await heard.wait_for(2)] == ["one", "two"]
        with trio.fail_after(5):
            await ended.wait()  # cancelled at the plugin timeout
    assert "message_posted raised" in caplog.text and "listener bug" in caplog.text
    assert "returned int, not None or an awaitable" in caplog.text
    assert "message_posted took longer than 0.5s" in caplog.text


# ----------------------------------------------------------------------- triggers


class EchoBot:
    """A trigger bot: ``!echo TEXT`` in a room the bot is in, answered by the bot."""

    def __init__(self) -> None:
        self.ready = trio.Event()

    @hookimpl
    async def server_started(self, server: Any) -> None:
        bot = await server.add_bot("echo", plugin="echo")
        await bot.join("#lobby")
        self.ready.set()

    async def wait_ready(self) -> None:
        with trio.fail_after(5):
            await self.ready.wait()

    @on_message(r"^!echo (.+)", bot="echo")
    def echo(self, ctx: TriggerContext) -> str:
        return ctx.match[1]


async def test_a_trigger_answers_as_its_bot_in_the_rooms_the_bot_is_in() -> None:
    echo = EchoBot()
    async with open_test_server(echo) as chat, open_client(chat, "alice") as alice:
        await echo.wait_ready()
        await alice.say("!echo hello there")
        answer = await alice.expect("message", lambda e: e.nick == "echo")
        assert (answer.room, answer.text) == ("#lobby", "hello there")
        await alice.command("/join #dev")
        await alice.say("!echo anyone?", room="#dev")  # the bot is not in #dev
        await alice.say("not a trigger: !echo", room="#dev")
        await alice.send({"type": "ping", "token": "done"})
        await alice.expect("pong")
        await alice.say("!echo again", room="#lobby")  # answered; nothing before it was
        answer = await alice.expect("message", lambda e: e.nick == "echo")
        assert answer.text == "again"
        assert [e.text for e in alice.history if getattr(e, "nick", "") == "echo"] == [
            "hello there",
            "again",
        ]


async def test_bots_lines_are_not_heard_unless_asked() -> None:
    plain, eager = [], []

    class Plugin:
        @on_message(r"^!ping")
        def plain(self, ctx: TriggerContext) -> None:
            plain.append(ctx.nick)

        @on_message(r"^!ping", from_bots=True)
        def eager(self, ctx: TriggerContext) -> None:
            eager.append(ctx.nick)

    heard = Heard()
    async with open_test_server(Plugin(), heard) as chat, open_client(chat, "alice"):
        other = await chat.server.add_bot("other", plugin="tests")
        await other.join("#lobby")
        other.say("#lobby", "!ping from a bot")
        await heard.wait_for(1)
        await trio.testing.wait_all_tasks_blocked()
        assert (plain, eager) == ([], ["other"])


async def test_a_notice_is_never_answered_by_a_trigger() -> None:
    echo = EchoBot()
    async with open_test_server(echo) as chat, open_client(chat, "alice") as alice:
        await echo.wait_ready()
        await alice.command("/notice !echo not for bots")
        notice = await alice.expect("message", lambda e: e.kind == "notice")
        assert notice.text == "!echo not for bots"
        await alice.say("!echo but this is")  # answered; the notice before it was not
        answer = await alice.expect("message", lambda e: e.nick == "echo")
        assert answer.text == "but this is"
        assert [e.text for e in alice.history if getattr(e, "nick", "") == "echo"] == [
            "but this is"
        ]


async def test_a_trigger_without_a_bot_replies_to_the_sender_alone() -> None:
    @on_message(r"^!time\b", flags=0)
    def time_of_day(ctx: TriggerContext) -> str:
        return f"{ctx.nick}, it is tea time"

    class Plugin:
        trigger = staticmethod(time_of_day)

    async with (
        open_test_server(Plugin()) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await alice.expect("join", lambda e: e.nick == "bob")
        await alice.say("!time please")
        reply = await alice.expect("info", lambda e: "tea" in e.text)
        assert reply.text == "alice, it is tea time"
        await bob.send({"type": "ping", "token": "after"})
        await bob.expect("pong")
        assert not [e for e in bob.history if e.TYPE == "info" and "tea" in e.text]


async def test_a_broken_trigger_is_logged_and_the_next_line_still_triggers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = Notes()

    class Plugin:
        @on_message(r"^!boom")
        async def boom(self, ctx: TriggerContext) -> None:
            calls.append(ctx.text)
            raise ValueError("trigger bug")

        @on_message(r"^!junk")
        def junk(self, ctx: TriggerContext) -> object:
            calls.append(ctx.text)
            return {"not": "text"}

        @on_message(r"^!say")
        def say(self, ctx: TriggerContext) -> None:
            calls.append(ctx.text)
            ctx.say("no bot to say it")

    heard = Heard()
    async with open_test_server(Plugin(), heard) as chat, open_client(chat, "alice") as alice:
        for text in ("!boom 1", "!junk", "!say", "!boom 2"):
            await alice.say(text)
        await heard.wait_for(4)
        await calls.wait_for(4)
        await alice.send({"type": "ping", "token": "still"})
        assert (await alice.expect("pong")).token == "still"
    assert sorted(calls) == ["!boom 1", "!boom 2", "!junk", "!say"]
    assert caplog.text.count("ValueError: trigger bug") == 2
    assert "returned dict, not a string or None" in caplog.text
    assert "this trigger has no bot" in caplog.text


async def test_one_slow_trigger_never_delays_other_users_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """alice sets off a trigger that hangs, again and again; meanwhile bob's lines reach
    carol as fast as with no plugin at all, and another trigger still answers."""
    started, ended = Notes(), Notes()

    class Slow:
        @on_message(r"^!slow", max_running=3)
        async def slow(self, ctx: TriggerContext) -> None:
            started.append(time.monotonic())
            try:
                await trio.sleep_forever()
            finally:
                ended.append(time.monotonic())

    timeout = 3.0
    config = local_config(plugin_timeout=timeout)
    echo = EchoBot()
    async with (
        open_test_server(Slow(), echo, config=config) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
        open_client(chat, "carol") as carol,
    ):
        await echo.wait_ready()
        await carol.expect("join", lambda e: e.nick == "carol")

        async def latencies(lines: int) -> list[float]:
            took = []
            for n in range(lines):
                sent = time.monotonic()
                await bob.say(f"line {n}")
                await carol.expect("message", lambda e, n=n: e.text == f"line {n}")
                took.append(time.monotonic() - sent)
            return took

        before = await latencies(20)
        for n in range(10):
            await alice.say(f"!slow {n}")
        await alice.say("!echo still answering")
        assert (await carol.expect("message", lambda e: e.nick == "echo")).text
        during = await latencies(50)
        assert len(started) == 3 and not ended  # the other seven lines were skipped
        # Delivery does not wait for the trigger: every line arrives in a small fraction of
        # the time the trigger hangs (a delivery that waited would take the whole timeout).
        assert max(during) < timeout / 10, (max(before), max(during))
        assert sorted(during)[len(during) // 2] < 0.05, sorted(during)
        await ended.wait_for(3, within=timeout + 5)
        assert all(end - start < timeout + 1 for start, end in zip(started, ended, strict=True))
        # The runs were ended at the timeout: the trigger runs again.
        await alice.say("!slow again")
        await started.wait_for(4)
    assert "Slow.slow skipped 1 lines: 3 runs still going" in caplog.text


def test_on_message_checks_its_arguments() -> None:
    with pytest.raises(ValueError):
        on_message(r"x", max_running=0)
    with pytest.raises(TypeError):
        on_message(r"x")(42)  # type: ignore[arg-type]
    import re

    with pytest.raises(re.error):
        on_message(r"(unclosed")


# --------------------------------------------------------------- the feed, alone


async def test_the_feed_misses_the_newest_lines_when_listeners_are_far_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    called: list[str] = []

    def call(message: Message, session: Session) -> list[object]:
        called.append(message.text)
        return []

    feed = PostedFeed(call, lambda: True, max_behind=2)
    session: Any = object()
    line = Message(id=1, ts=0.0, room="#lobby", nick="a", text="")
    feed.heard(line, session)  # not running: nothing is kept
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed.run)
        await trio.testing.wait_all_tasks_blocked()
        for n in range(5):  # all at once, as one delivery batch would
            feed.heard(Message(id=n, ts=0.0, room="#lobby", nick="a", text=str(n)), session)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    # The waiting task takes the first line at once; two more wait; the rest are missed.
    assert called == ["0", "1", "2"] and feed.missed == 2
    assert "lines missed: the message_posted listeners are behind (1 times)" in caplog.text


async def test_the_feed_runs_at_most_max_running_awaitables() -> None:
    release = trio.Event()
    done: list[int] = []

    async def work(n: int) -> None:
        await release.wait()
        done.append(n)

    n_calls = iter(range(100))

    def call(message: Message, session: Session) -> list[object]:
        return [work(next(n_calls)), work(next(n_calls))]

    feed = PostedFeed(call, lambda: True, max_running=3)
    session: Any = object()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed.run)
        await trio.testing.wait_all_tasks_blocked()
        for n in range(3):
            feed.heard(Message(id=n, ts=0.0, room="#r", nick="a", text="x"), session)
        await trio.testing.wait_all_tasks_blocked()
        assert feed.running == 3 and feed.skipped == 3
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert feed.running == 0 and sorted(done) == [0, 1, 2]
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- the docs' examples

ROOT = Path(__file__).resolve().parent.parent


def docs_sample(name: str) -> str:
    documented = (ROOT / "docs" / "plugins.md").read_text()
    return documented.split(f"```python\n# {name}\n", 1)[1].split("```", 1)[0]


async def test_the_weather_trigger_of_the_plugin_docs_works(tmp_path: Path) -> None:
    (tmp_path / "weather.py").write_text(docs_sample("weather.py"))
    config = local_config(plugins=[str(tmp_path / "weather.py")])
    joined = trio.Event()

    class Watcher:
        @hookimpl
        def user_joined(self, session: Session, room: str) -> None:
            if session.nick == "weather" and session.bot and room == "#lobby":
                joined.set()

    async with (
        open_test_server(Watcher(), config=config) as chat,
        open_client(chat, "alice") as alice,
    ):
        with trio.fail_after(5):
            await joined.wait()
        await alice.say("!weather Paris")
        await alice.say("!weather Atlantis")
        answers = [await alice.expect("message", lambda e: e.nick == "weather") for _ in "12"]
        assert sorted(a.text for a in answers) == [
            "alice: atlantis: no idea",
            "alice: paris: sunny, 21 °C",
        ]


# ------------------------------------------------------------ containment, every way


class UnrulyListener:
    """A ``message_posted`` listener and a trigger, misbehaving as told."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.calls = Notes()
        self.hung = trio.Event()

    def _misbehave(self, server: Any, message: Message, session: Session) -> object:
        self.calls.append(message.text)
        if self.how == "raise":
            raise RuntimeError("listener kaboom")
        if self.how == "exit":
            sys.exit(6)
        if self.how == "garbage":
            return object()
        if self.how == "flood":  # far past carol's queue: she alone pays
            for n in range(20_000 if session.nick == "carol" else 0):
                server.hub.send_to(session, Info(text=f"flood {n} " + "z" * 100))
            return None
        return self._async(message)

    async def _async(self, message: Message) -> None:
        await trio.lowlevel.checkpoint()
        if self.how == "async-raise":
            raise RuntimeError("listener kaboom")
        if self.how == "async-exit":
            sys.exit(6)
        if self.how == "hang":
            try:
                await trio.sleep_forever()
            finally:
                self.hung.set()

    @hookimpl
    def message_posted(self, server: Any, message: Message, session: Session) -> object:
        return self._misbehave(server, message, session)

    @on_message(r"^!unruly")
    def trigger(self, ctx: TriggerContext) -> object:
        result = self._misbehave(ctx.server, ctx.message, ctx.session)
        return None if self.how == "flood" else result


@pytest.mark.parametrize(
    ("how", "logged"),
    [
        ("raise", "listener kaboom"),
        ("async-raise", "listener kaboom"),
        ("exit", "SystemExit: 6"),
        ("async-exit", "SystemExit: 6"),
        ("hang", "took longer than 0.3s"),
        ("garbage", "not None or an awaitable"),
        ("flood", ""),
    ],
)
async def test_an_unruly_listener_or_trigger_costs_the_others_nothing(
    how: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    unruly = UnrulyListener(how)
    config = local_config(plugin_timeout=0.3)
    async with (
        open_test_server(unruly, config=config) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        async with open_client(chat, "carol") as carol:
            await alice.expect("join", lambda e: e.nick == "carol")
            await carol.say("!unruly")  # the listener, and the trigger, both misbehave
            await unruly.calls.wait_for(2)
        if how == "flood":  # carol was dropped as too slow, or left: the room is told
            await alice.expect("leave", lambda e: e.nick == "carol")
        for n in range(3):
            await alice.say(f"we carry on {n}")
            assert (await bob.expect("message", lambda e, n=n: e.text.endswith(str(n)))).text
        await unruly.calls.wait_for(2 + 3)
        assert not [e for e in bob.history if e.TYPE in ("error", "info")]
        if how == "hang":
            with trio.fail_after(5):
                await unruly.hung.wait()  # cancelled at the timeout, which is logged
    assert logged in caplog.text


# ------------------------------------------------------------ private messages to bots


async def test_bot_messaged_hears_private_messages_to_bots_only() -> None:
    heard = Notes()

    class Listener:
        @hookimpl
        def bot_messaged(self, bot: Any, message: Any, session: Session) -> None:
            heard.append((bot.nick, message.nick, message.to, message.text, session.nick))

    async with (
        open_test_server(Listener()) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob"),
    ):
        helper = await chat.server.add_bot("helper", plugin="tests")
        await alice.command("/msg bob not for a bot")
        await alice.command("/msg Helper hello bot")
        helper.tell("alice", "hello alice")  # the bot's own: not heard
        await alice.command("/msg helper again")
        await heard.wait_for(2)
        assert heard == [
            ("helper", "alice", "helper", "hello bot", "alice"),
            ("helper", "alice", "helper", "again", "alice"),
        ]


async def test_a_private_trigger_answers_privately_and_only_its_bot() -> None:
    echo = EchoBot()

    class Private:
        @on_message(r"^!?echo (.+)", bot="echo", private=True)
        def echo_privately(self, ctx: TriggerContext) -> str:
            assert ctx.private and ctx.room is None
            return f"you said {ctx.match[1]}"

    async with (
        open_test_server(echo, Private()) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await echo.wait_ready()
        other = await chat.server.add_bot("other", plugin="tests")
        await alice.command("/msg other echo not this bot")
        await alice.command("/msg echo echo psst")
        answer = await alice.expect("private", lambda e: e.nick == "echo")
        assert (answer.to, answer.text) == ("alice", "you said psst")
        # In #lobby the room trigger answers, not the private one.
        await alice.say("!echo aloud")
        said = await bob.expect("message", lambda e: e.nick == "echo")
        assert said.text == "aloud"
        assert not [e for e in bob.history if e.TYPE == "private"]
        assert [e.text for e in alice.history if e.TYPE == "private" and e.nick != "alice"] == [
            "you said psst"
        ]
        del other


def test_a_private_trigger_needs_its_bot() -> None:
    with pytest.raises(ValueError, match="names its bot"):
        on_message(r"x", private=True)
