"""Plugins' bot users, over real sockets: what clients see of a bot (its join marked
``"bot": true``, its lines, its private messages, ``/who``), the nick it holds, and its end
(removed by its plugin, by its plugin's removal, by the server stopping)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import trio
from test_broker import snapshots_read

from trio_chat import Bot, ChatError, hookimpl
from trio_chat.bots import BotRemoved
from trio_chat.names import name_key
from trio_chat.protocol import Joined, decode_server_event, encode_server_line
from trio_chat.testing import local_config, open_client, open_test_server
from trio_chat.textmode import render_text

ROOT = Path(__file__).resolve().parent.parent


async def test_clients_see_the_bot_join_speak_act_and_tell() -> None:
    async with open_test_server() as chat:
        async with (
            open_client(chat, "alice") as alice,
            open_client(chat, "bob", websocket=True) as bob,
        ):
            bot = await chat.server.add_bot("weather", plugin="tests")
            assert isinstance(bot, Bot) and bot.nick == "weather"
            await bot.join("#lobby")
            for client in (alice, bob):
                joined = await client.expect("join", lambda e: e.nick == "weather")
                assert joined.bot is True and joined.room == "#lobby"
            bot.say("#lobby", "sunny, 21 °C")
            bot.act("#lobby", "looks at the sky")
            for client in (alice, bob):
                said = await client.expect("message", lambda e: e.nick == "weather")
                assert (said.text, said.kind, said.room) == ("sunny, 21 °C", "say", "#lobby")
                acted = await client.expect("message", lambda e: e.nick == "weather")
                assert (acted.text, acted.kind) == ("looks at the sky", "action")
            bot.tell("alice", "psst, rain tomorrow")
            private = await alice.expect("private")
            assert (private.nick, private.to, private.text) == (
                "weather",
                "alice",
                "psst, rain tomorrow",
            )
            # bob sees nothing of it: his next event is the answer to his own ping.
            await bob.send({"type": "ping", "token": "after"})
            assert (await bob.expect("pong")).token == "after"
            assert not [e for e in bob.history if e.TYPE == "private"]


def test_the_bot_mark_is_on_a_bots_join_only() -> None:
    person = Joined(id=1, ts=0.0, room="#lobby", nick="alice")
    bot = Joined(id=2, ts=0.0, room="#lobby", nick="helper", bot=True)
    assert b'"bot"' not in encode_server_line(person)
    assert b'"bot":true' in encode_server_line(bot)
    assert decode_server_event(encode_server_line(bot)) == bot
    assert render_text(bot).endswith("-!- helper (bot) joined #lobby")
    assert render_text(person).endswith("-!- alice joined #lobby")


async def test_who_lists_the_bot_as_a_bot() -> None:
    async with open_test_server() as chat, open_client(chat, "alice") as alice:
        bot = await chat.server.add_bot("helper", plugin="tests")
        await bot.join("#lobby")
        await alice.command("/who")
        info = await alice.expect("info", lambda e: e.data and "members" in e.data)
        assert "helper (bot)" in info.text
        members = {m["nick"]: m for m in info.data["members"]}
        assert members["helper"]["bot"] is True
        assert members["alice"]["bot"] is False


async def test_the_bot_holds_its_nick_look_alikes_included() -> None:
    async with open_test_server() as chat:
        await chat.server.add_bot("helper", plugin="tests")
        for taken in ("helper", "HELPER", "he1per"):
            async with open_client(chat) as client:
                with pytest.raises(ValueError, match="taken"):
                    await client.login(taken)
        async with open_client(chat, "alice") as alice:
            await alice.command("/nick Helper")
            assert (await alice.expect("error")).code == "nick_taken"
            with pytest.raises(ChatError) as refused:
                await chat.server.add_bot("alice", plugin="tests")
            assert refused.value.code == "nick_taken"
        with pytest.raises(ChatError) as refused:
            await chat.server.add_bot("not a nick!", plugin="tests")
        assert refused.value.code.startswith("bad_")


async def test_a_registered_nick_cannot_be_a_bot() -> None:
    async with open_test_server() as chat:
        async with open_client(chat, "alice") as alice:
            await alice.command("/register secret-password")
            await alice.expect("info", lambda e: "regist" in e.text)
        with pytest.raises(ChatError) as refused:
            await chat.server.add_bot("alice", plugin="tests")
        assert refused.value.code == "nick_taken"


async def test_removing_the_bot_leaves_its_rooms_and_frees_the_nick() -> None:
    async with open_test_server() as chat, open_client(chat, "alice") as alice:
        bot = await chat.server.add_bot("helper", plugin="tests")
        await bot.join("#lobby")
        await alice.expect("join", lambda e: e.nick == "helper")
        await bot.remove("going home")
        left = await alice.expect("leave", lambda e: e.nick == "helper")
        assert left.reason == "going home"
        assert bot.removed and chat.server.bot("helper") is None
        with pytest.raises(BotRemoved):
            bot.say("#lobby", "still here?")
        async with open_client(chat, "helper") as human:
            assert human.nick == "helper"
        await bot.remove()  # idempotent


async def test_part_and_errors_are_chat_errors_for_the_plugin() -> None:
    async with open_test_server() as chat, open_client(chat, "alice") as alice:
        bot = await chat.server.add_bot("helper", plugin="tests")
        await bot.join("#dev")
        assert bot.rooms == ["#dev"]
        with pytest.raises(ChatError) as refused:
            bot.say("#lobby", "not a member here")
        assert refused.value.code == "not_in_room"
        with pytest.raises(ChatError) as refused:
            bot.say("#dev", "bell \x07")
        assert refused.value.code == "bad_field"
        with pytest.raises(ChatError):
            bot.say("#dev", "   ")
        with pytest.raises(TypeError):
            bot.say("#dev", 42)  # type: ignore[arg-type]
        with pytest.raises(ChatError) as refused:
            bot.tell("nobody", "hello?")
        assert refused.value.code == "no_such_nick"
        await bot.part("#dev")
        assert bot.rooms == []
        with pytest.raises(ChatError) as refused:
            await bot.part("#dev")
        assert refused.value.code == "not_in_room"
        # Several lines at once are several messages, in order.
        await bot.join("#lobby")
        bot.say("#lobby", "one\ntwo\r\n\nthree")
        texts = [
            (await alice.expect("message", lambda e: e.nick == "helper")).text for _ in range(3)
        ]
        assert texts == ["one", "two", "three"]


async def test_a_flooding_bot_is_refused_past_its_burst() -> None:
    async with open_test_server() as chat, open_client(chat, "alice") as alice:
        bot = await chat.server.add_bot("chatty", plugin="tests", rate=0.001, burst=3)
        await bot.join("#lobby")
        for n in range(3):
            bot.say("#lobby", f"line {n}")
        with pytest.raises(ChatError) as refused:
            bot.say("#lobby", "one too many")
        assert refused.value.code == "flood"
        # alice got the three lines and is still connected and served.
        for n in range(3):
            said = await alice.expect("message", lambda e: e.nick == "chatty")
            assert said.text == f"line {n}"
        await alice.send({"type": "ping", "token": "t"})
        await alice.expect("pong")


async def test_a_bot_is_no_connection_and_no_receiver() -> None:
    config = local_config(max_connections=1)
    async with open_test_server(config=config) as chat:
        bot = await chat.server.add_bot("helper", plugin="tests")
        await bot.join("#lobby")
        # The one connection the server allows is still free for a person.
        async with open_client(chat, "alice") as alice:
            bot.say("#lobby", "hello alice")
            assert (await alice.expect("message", lambda e: e.nick == "helper")).text
            room = chat.server.rooms["#lobby"]
            assert bot.session.id in room.members
            assert bot.session.id not in room.here  # the fan-out never offers to it
            assert bot.session.devices == []


async def test_bots_go_with_their_plugin_and_with_the_server() -> None:
    class Greeter:
        def __init__(self) -> None:
            self.bot: Bot | None = None
            self.ready = trio.Event()

        @hookimpl
        async def server_started(self, server: Any) -> None:
            self.bot = await server.add_bot("greeter", plugin="greeter")
            await self.bot.join("#lobby")
            self.ready.set()

    first = Greeter()
    async with open_test_server(first) as chat:
        with trio.fail_after(5):
            await first.ready.wait()
        assert first.bot is not None and chat.server.bot("GREETER") is first.bot
        async with open_client(chat, "alice") as alice:
            await alice.command("/who")
            info = await alice.expect("info", lambda e: e.data and "members" in e.data)
            assert "greeter" in info.data["users"]
    # Stopped: the bot left with everyone else.
    assert first.bot.removed
    assert len(chat.server.bots) == 0
    assert name_key("greeter") not in chat.server.hub.sessions


async def test_removing_its_plugin_removes_the_bot() -> None:
    class Plugin:
        @hookimpl
        def server_started(self) -> None:
            pass

    async with open_test_server() as chat, open_client(chat, "alice") as alice:
        chat.server.add_plugin(Plugin(), "owner")
        bot = await chat.server.add_bot("owned", plugin="owner")
        await bot.join("#lobby")
        await alice.expect("join", lambda e: e.nick == "owned")
        chat.server.remove_plugin("owner")
        left = await alice.expect("leave", lambda e: e.nick == "owned")
        assert left.reason == "its plugin was removed"
        assert bot.removed


async def test_a_bot_is_a_bot_on_every_node(broker_url: str) -> None:
    """With a broker, a bot of one node is a user of the others, marked as a bot, and its
    nick is taken there too."""
    async with contextlib.AsyncExitStack() as stack:
        a, b = [
            await stack.enter_async_context(
                open_test_server(config=local_config(broker=broker_url))
            )
            for _ in range(2)
        ]
        bob = await stack.enter_async_context(open_client(b, "bob"))
        bot = await a.server.add_bot("helper", plugin="tests")
        await bot.join("#lobby")
        joined = await bob.expect("join", lambda e: e.nick == "helper")
        assert joined.bot is True
        bot.say("#lobby", "hello from node a")
        assert (await bob.expect("message", lambda e: e.nick == "helper")).text
        await bob.command("/who")
        info = await bob.expect("info", lambda e: e.data and "members" in e.data)
        assert {m["nick"]: m["bot"] for m in info.data["members"]} == {
            "bob": False,
            "helper": True,
        }
        async with open_client(b) as thief:
            await thief.send({"type": "hello", "nick": "Helper"})
            assert (await thief.expect("error")).code == "nick_taken"
        # A node started later learns of it from a's snapshot, as a bot too.
        watcher = await stack.enter_async_context(open_client(a, "watcher"))
        c = await stack.enter_async_context(
            open_test_server(config=local_config(broker=broker_url))
        )
        async with open_client(c, "carol") as carol:
            await snapshots_read(carol, watcher)
            await carol.command("/who")
            info = await carol.expect("info", lambda e: e.data and "members" in e.data)
            assert {m["nick"]: m["bot"] for m in info.data["members"]}["helper"] is True
        bot.tell("bob", "psst")
        assert (await bob.expect("private")).text == "psst"
        await bot.remove()
        await bob.expect("leave", lambda e: e.nick == "helper")


async def test_the_bot_example_of_the_plugin_docs_works(tmp_path: Path) -> None:
    documented = (ROOT / "docs" / "plugins.md").read_text()
    sample = documented.split("```python\n# helperbot.py\n", 1)[1].split("```", 1)[0]
    (tmp_path / "helperbot.py").write_text(sample)
    config = local_config(plugins=[str(tmp_path / "helperbot.py")])
    async with open_test_server(config=config) as chat, open_client(chat, "alice") as alice:
        # The bot greets #lobby as the server starts: before alice came (then she gets
        # it in the history that comes with her join) or just after.
        def greeting(event: Any) -> bool:
            lines = event.messages if event.TYPE == "history" else [event.to_dict()]
            return any(
                line.get("nick") == "helper" and line["text"].startswith("helper here")
                for line in lines
            )

        with trio.fail_after(5):
            while not (
                (event := await alice.receive()).TYPE in ("history", "message") and greeting(event)
            ):
                pass
        await alice.command("/join #dev")
        await alice.expect("join", lambda e: e.room == "#dev" and e.nick == "alice")
        await alice.send({"type": "command", "name": "announce", "args": "release at 5"})
        joined = await alice.expect("join", lambda e: e.nick == "helper")
        assert (joined.room, joined.bot) == ("#dev", True)
        said = await alice.expect("message", lambda e: e.nick == "helper")
        assert (said.room, said.text) == ("#dev", "release at 5")
        await alice.command("/announce")
        assert (await alice.expect("error")).code == "bad_arguments"


async def test_operators_kick_and_ban_a_bot_like_anyone() -> None:
    async with open_test_server() as chat, open_client(chat, "alice") as alice:
        await alice.command("/join #dev")  # alice made #dev: its operator
        await alice.expect("join", lambda e: e.nick == "alice" and e.room == "#dev")
        bot = await chat.server.add_bot("helper", plugin="tests")
        await bot.join("#dev")
        await alice.expect("join", lambda e: e.nick == "helper")
        await alice.send({"type": "command", "name": "kick", "args": "helper off", "room": "#dev"})
        kicked = await alice.expect("leave", lambda e: e.nick == "helper")
        assert kicked.room == "#dev" and bot.rooms == []
        await bot.join("#dev")  # a kick is no ban
        await alice.expect("join", lambda e: e.nick == "helper")
        await alice.send({"type": "command", "name": "ban", "args": "helper", "room": "#dev"})
        await alice.expect("leave", lambda e: e.nick == "helper")
        with pytest.raises(ChatError) as refused:
            await bot.join("#dev")
        assert refused.value.code == "not_allowed"
        assert not bot.removed  # still a user, in no room
        async with open_client(chat, "bob") as bob:  # bans of a bot keep no one else out
            await bob.command("/join #dev")
            await bob.expect("join", lambda e: e.nick == "bob" and e.room == "#dev")
