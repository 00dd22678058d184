"""The example plugins as users get them: installed with pip, found by entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest
import trio

from trio_chat.testing import local_config, open_client, open_test_server

EXAMPLES = {"roll", "wordfilter", "greeter", "remind", "triggers", "webhook"}


def installed_examples() -> set[str]:
    found = {ep.name for ep in entry_points(group="trio_chat")} & EXAMPLES
    if found != EXAMPLES and os.environ.get("CI") == "true":
        pytest.fail(f"CI installs every example plugin; missing: {sorted(EXAMPLES - found)}")
    if found != EXAMPLES:
        pytest.skip("pip install ./plugins/trio-chat-* to run this test")
    return found


async def test_pip_installed_plugins_work_over_the_wire() -> None:
    installed_examples()
    async with open_test_server(config=local_config(entry_points=True)) as chat:
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            greeting = await bob.expect("info", lambda e: "bob" in e.text)  # the greeter
            assert "Welcome" in greeting.text or "welcome" in greeting.text
            await alice.command("/roll 2d6")
            roll = await bob.expect("message", lambda e: e.kind == "action")
            assert roll.nick == "alice" and "2d6" in roll.text
            await alice.say("well darn")  # the word filter
            assert (await bob.expect("message", lambda e: e.kind == "say")).text == "well d**n"
            await alice.command("/remind 1h stretch")  # the reminders, with their storage
            reply = await alice.expect("info", lambda e: e.text.startswith("I will remind"))
            assert reply.text == "I will remind you in 1h: stretch"
            triggers = chat.server.pm.get_plugin("triggers")  # the trigger bot
            with trio.fail_after(5):
                await triggers.ready.wait()  # its bot is in #lobby
            await alice.say("!help")
            answer = await bob.expect("message", lambda e: e.nick == "robot")
            assert answer.text.startswith("!time")


def test_trio_chat_plugins_lists_them_with_versions() -> None:
    installed_examples()
    result = subprocess.run(
        [sys.executable, "-m", "trio_chat.cli", "plugins"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert lines["roll"].startswith("roll 0.1.0: /roll")
    assert lines["greeter"].startswith("greeter 0.1.0: /greeting")
    assert lines["wordfilter"].startswith("wordfilter 0.1.0")
    assert lines["remind"].startswith("remind 0.1.0: /remind")
    assert lines["triggers"].startswith("triggers 0.1.0")
    assert lines["webhook"].startswith("webhook 0.1.0")
