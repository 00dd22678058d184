"""The trigger bot over real sockets: its answers, the rooms it hears, its bounds, and a
slow lookup that delays nobody."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import trio
from trio_chat_triggers import BOT_NICK, HELP, MAX_FACTOID_LENGTH, TriggerBot, ago

from trio_chat.testing import ChatClient, local_config, open_client, open_test_server


async def answer(client: ChatClient) -> str:
    """The text of the next line the bot says (in any room ``client`` is in: read every
    answer from one client, in order)."""
    event = await client.expect("message", lambda e: e.nick == BOT_NICK)
    text: str = event.text
    return text


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "just now"),
        (59, "just now"),
        (60, "1 minute ago"),
        (7200, "2 hours ago"),
        (86400 * 3 + 5, "3 days ago"),
    ],
)
def test_ago(seconds: float, said: str) -> None:
    assert ago(seconds) == said


async def test_the_bot_joins_its_rooms_marked_as_a_bot_and_answers_help() -> None:
    triggers = TriggerBot()
    config = local_config(plugin_settings={"triggers": {"rooms": ["#lobby", "#dev"]}})
    async with open_test_server(triggers, config=config) as chat:
        with trio.fail_after(5):
            await triggers.ready.wait()
        async with open_client(chat, "alice") as alice:
            await alice.command("/who")
            who = await alice.expect("info", lambda e: e.data and "members" in e.data)
            assert {m["nick"]: m["bot"] for m in who.data["members"]}[BOT_NICK] is True
            await alice.say("!help")
            assert await answer(alice) == HELP
            await alice.command("/join #dev")
            await alice.say("!help", room="#dev")
            said = await alice.expect("message", lambda e: e.nick == BOT_NICK)
            assert (said.room, said.text) == ("#dev", HELP)


async def test_time_seen_and_factoids() -> None:
    now = [1_800_000_000.0]
    triggers = TriggerBot(clock=lambda: now[0])
    async with open_test_server(triggers) as chat:
        with trio.fail_after(5):
            await triggers.ready.wait()
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            await alice.say("!time")
            assert await answer(alice) == "08:00:00 UTC, Friday 15 January 2027"
            await bob.say("lunch, anyone?")
            # bob's line must come first (noted at this clock) for alice's to find it.
            await alice.expect("message", lambda e: e.text == "lunch, anyone?")
            await alice.say("!seen nobody")
            assert await answer(alice) == "alice: I have not seen nobody"
            now[0] += 600
            await alice.say("!seen BOB")
            assert await answer(alice) == "alice: bob was last seen in #lobby 10 minutes ago"
            await alice.say("!seen alice")
            assert await answer(alice) == "alice: I see you right now"
            await alice.say("!learn tea = Earl Grey, hot")
            assert await answer(alice) == "alice: OK, ?tea is Earl Grey, hot"
            await bob.say("?Tea")
            assert await answer(alice) == "Tea: Earl Grey, hot"
            await bob.say("!learn tea = " + "x" * (MAX_FACTOID_LENGTH + 1))
            assert await answer(alice) == f"bob: at most {MAX_FACTOID_LENGTH} characters, please"
            await bob.say("!forget tea")
            assert await answer(alice) == "bob: forgotten: tea"
            await bob.say("?tea")
            assert await answer(alice) == "bob: I know nothing of tea"


async def test_it_hears_only_its_rooms_and_not_bots() -> None:
    triggers = TriggerBot()
    async with open_test_server(triggers) as chat:
        with trio.fail_after(5):
            await triggers.ready.wait()
        async with open_client(chat, "alice") as alice:
            await alice.command("/join #elsewhere")
            await alice.say("!help", room="#elsewhere")  # the bot is not in #elsewhere
            await alice.say("secret plans", room="#elsewhere")
            other = await chat.server.add_bot("other", plugin="tests")
            await other.join("#lobby")
            other.say("#lobby", "!help")  # a bot's line: not heard
            await alice.say("!seen alice2", room="#lobby")
            assert await answer(alice) == "alice: I have not seen alice2"
            seen_lines = [e for e in alice.history if getattr(e, "nick", "") == BOT_NICK]
            assert [e.text for e in seen_lines] == ["alice: I have not seen alice2"]
            assert "other" not in triggers.seen  # bots are not noted
            await alice.say("!seen alice", room="#lobby")
            await answer(alice)
            # Lines in #elsewhere were not noted either: only #lobby's.
            assert triggers.seen["alice"][2] == "#lobby"


async def test_dns_is_real_io_in_the_background() -> None:
    triggers = TriggerBot()
    async with open_test_server(triggers) as chat:
        with trio.fail_after(5):
            await triggers.ready.wait()
        async with open_client(chat, "alice") as alice:
            await alice.say("!dns localhost")
            text = await answer(alice)
            assert re.fullmatch(r"alice: localhost: .*127\.0\.0\.1.*", text), text
            await alice.say("!dns bad_host!")
            assert await answer(alice) == "alice: bad_host! is not a host name"
            await alice.say("!dns no-such-host.invalid")
            assert await answer(alice) == "alice: no-such-host.invalid: not found"


async def test_a_hanging_lookup_delays_no_one() -> None:
    """DNS that never answers: the trigger waits until the plugin timeout; lines keep
    flowing meanwhile, as fast as before, and the other triggers answer."""

    lookups = []

    async def never(host: str, port: Any) -> Any:
        lookups.append(host)
        await trio.sleep_forever()

    triggers = TriggerBot(resolve=never)
    async with open_test_server(triggers, config=local_config(plugin_timeout=5.0)) as chat:
        with trio.fail_after(5):
            await triggers.ready.wait()
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            await alice.expect("join", lambda e: e.nick == "bob")
            for _ in range(10):
                await alice.say("!dns example.org")
            await alice.say("!help")
            assert await answer(alice) == HELP
            took = []
            for n in range(30):
                sent = time.monotonic()
                await alice.say(f"line {n}")
                await bob.expect("message", lambda e, n=n: e.text == f"line {n}")
                took.append(time.monotonic() - sent)
            assert max(took) < 0.5, took  # the lookups hang for 5 s
            assert lookups == ["example.org"] * 4  # 4 runs at most; 6 lines skipped


async def test_asked_privately_it_answers_privately() -> None:
    triggers = TriggerBot()
    async with open_test_server(triggers) as chat:
        with trio.fail_after(5):
            await triggers.ready.wait()
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            await bob.say("hello")
            # The bot notes lines (message_posted) in a task apart from the one that hands
            # it private messages (bot_messaged): ask once it has noted bob's.
            with trio.fail_after(5):
                while "bob" not in triggers.seen:  # noqa: ASYNC110 (the plugin's state)
                    await trio.sleep(0.01)
            await alice.command(f"/msg {BOT_NICK} seen bob")
            answer = await alice.expect("private", lambda e: e.nick == BOT_NICK)
            assert (answer.to, answer.text) == (
                "alice",
                "alice: bob was last seen in #lobby just now",
            )
            await alice.command(f"/msg {BOT_NICK} !help")
            assert (await alice.expect("private", lambda e: e.nick == BOT_NICK)).text == HELP
            # bob saw none of it.
            await alice.say("done")
            await bob.expect("message", lambda e: e.text == "done")
            assert not [e for e in bob.history if getattr(e, "nick", "") == BOT_NICK]
