"""Command rules declared at ``register(...)``: who may run a command (everyone, room
operators, administrators) and how often (a sliding window per user); ``/help`` showing
them; usage errors that read alike. The window with plain numbers, the rest over sockets."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from doc_samples import load_sample

import trio_chat
from trio_chat.command_rules import UsageWindow
from trio_chat.commands import CommandContext
from trio_chat.testing import ChatClient, local_config, open_client, open_test_server

# ------------------------------------------------------------------ the window, no server


def test_a_window_allows_count_uses_in_any_span_of_its_seconds() -> None:
    window = UsageWindow(3, 60)
    assert [window.take("alice", t) for t in (0.0, 10.0, 20.0)] == [None, None, None]
    assert window.take("alice", 30.0) == pytest.approx(30.0)  # the use at 0 frees at 60
    assert window.take("bob", 30.0) is None  # each user has a window of their own
    assert window.take("alice", 59.9) == pytest.approx(0.1)
    assert window.take("alice", 60.0) is None
    assert window.take("alice", 61.0) == pytest.approx(9.0)  # the use at 10 frees at 70


def test_refused_uses_are_not_counted() -> None:
    window = UsageWindow(1, 10)
    assert window.take("alice", 0.0) is None
    for t in range(1, 10):
        assert window.take("alice", float(t)) is not None
    assert window.take("alice", 10.0) is None


def test_users_idle_for_a_window_are_forgotten() -> None:
    window = UsageWindow(1, 10)
    for n in range(1024):
        window.take(f"user{n}", 0.0)
    assert len(window) == 1024
    window.take("late", 10.0)  # everyone before is past the window
    assert len(window) == 1


@pytest.mark.parametrize(("count", "seconds"), [(0, 10), (1, 0), (1, -1), (2000, 1), (1.5, 1)])
def test_a_window_refuses_nonsense(count: Any, seconds: Any) -> None:
    with pytest.raises(ValueError, match="rate"):
        UsageWindow(count, seconds)


# ------------------------------------------------------------------- a server with rules


class Guarded:
    """Commands with each kind of rule."""

    @trio_chat.hookimpl
    def register_commands(self, register: Any) -> None:
        register("open", self.ok, help="Anyone")
        register("opsonly", self.ok, help="Operators", allowed="operators")
        register("adminsonly", self.ok, help="Admins", allowed="admins")
        register("twice", self.ok, help="Twice a minute", rate=(2, 60))
        register("picky", self.picky, help="Wants a number", usage="N")

    def ok(self, ctx: CommandContext) -> str:
        return f"ran /{ctx.name}"

    def picky(self, ctx: CommandContext) -> str:
        if not ctx.args:
            raise ctx.usage_error()
        if not ctx.args.isdigit():
            raise ctx.usage_error(f"not a number: {ctx.args}")
        return "ok"


async def ran(client: ChatClient, line: str) -> str:
    """Run ``line``: the text of its reply (``ran /NAME``), or ``code: text`` of its error."""
    await client.command(line)
    while True:
        event = await client.receive()
        if event.TYPE == "error":
            return f"{event.code}: {event.text}"  # type: ignore[attr-defined]
        if event.TYPE == "info" and event.text.startswith("ran /"):  # type: ignore[attr-defined]
            return str(event.text)  # type: ignore[attr-defined]


async def test_everyone_runs_an_open_command_and_only_operators_an_operators_one() -> None:
    async with open_test_server(Guarded()) as chat:
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            await alice.command("/join #dev")  # its creator: its operator
            await alice.expect("info", lambda e: (e.data or {}).get("room") == "#dev")
            await bob.command("/join #dev")
            await bob.expect("info", lambda e: (e.data or {}).get("room") == "#dev")
            assert await ran(bob, "/open") == "ran /open"
            assert await ran(alice, "/opsonly") == "ran /opsonly"
            assert (
                await ran(bob, "/opsonly")
                == "not_allowed: not allowed: you are not an operator of #dev"
            )
            # #lobby has no operators: there alice is not one either.
            await alice.send({"type": "command", "name": "opsonly", "args": "", "room": "#lobby"})
            error = await alice.expect("error")
            assert (error.code, error.text) == (
                "not_allowed",
                "not allowed: you are not an operator of #lobby",
            )
            await alice.command("/op bob")
            await bob.expect("info", lambda e: "made you an operator" in e.text)
            assert await ran(bob, "/opsonly") == "ran /opsonly"


async def test_only_administrators_run_an_admins_command_and_they_are_operators_too() -> None:
    config = local_config(admins=["alice"], admin_password="hunter2")
    async with open_test_server(Guarded(), config=config) as chat:
        async with open_client(chat, "alice") as alice:
            refused = "not_allowed: not allowed: /adminsonly is for server administrators"
            assert await ran(alice, "/adminsonly") == refused
            assert (
                await ran(alice, "/opsonly")
                == "not_allowed: not allowed: you are not an operator of #lobby"
            )
            await alice.command("/oper hunter2")
            await alice.expect("info", lambda e: "administrator" in e.text)
            assert await ran(alice, "/adminsonly") == "ran /adminsonly"
            assert await ran(alice, "/opsonly") == "ran /opsonly"


async def test_a_rate_limited_command_refuses_the_use_past_its_rate() -> None:
    async with open_test_server(Guarded()) as chat:
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            assert await ran(alice, "/twice") == "ran /twice"
            assert await ran(alice, "/twice") == "ran /twice"
            assert await ran(alice, "/twice") == (
                "rate_limited: /twice is limited to at most 2 per 60 s; try again in 60 s"
            )
            # A guest's budget is its address's: bob, a guest from the same host, shares it
            # (a new nickname does not renew it).
            assert (await ran(bob, "/twice")).startswith("rate_limited: ")
            assert await ran(alice, "/open") == "ran /open"  # other commands are not limited


async def test_an_accounts_budget_is_its_own() -> None:
    async with open_test_server(Guarded()) as chat:
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            await bob.command("/register sekrit")
            await bob.expect("info", lambda e: "registered" in e.text)
            for _ in range(2):
                assert await ran(alice, "/twice") == "ran /twice"
            assert (await ran(alice, "/twice")).startswith("rate_limited: ")
            assert await ran(bob, "/twice") == "ran /twice"


async def test_help_shows_who_may_run_a_command_and_how_often() -> None:
    async with open_test_server(Guarded()) as chat, open_client(chat, "alice") as alice:
        await alice.command("/help opsonly")
        assert (await alice.expect("info")).text == "/opsonly - Operators (operators only)"
        await alice.command("/help twice")
        assert (await alice.expect("info")).text == "/twice - Twice a minute (at most 2 per 60 s)"
        await alice.command("/help")
        listing = await alice.expect("info")
        lines = [line.split(None, 1) for line in listing.text.splitlines()[1:]]
        assert ["/adminsonly", "Admins (administrators only)"] in lines
        assert ["/open", "Anyone"] in lines
        commands = {c["name"]: c for c in listing.data["commands"]}
        assert commands["twice"] == {
            "name": "twice",
            "usage": "",
            "help": "Twice a minute",
            "allowed": "everyone",
            "rate": [2, 60.0],
        }
        assert (commands["opsonly"]["allowed"], commands["opsonly"]["rate"]) == ("operators", None)


async def test_usage_errors_read_alike() -> None:
    async with open_test_server(Guarded()) as chat, open_client(chat, "alice") as alice:
        await alice.command("/picky")
        error = await alice.expect("error")
        assert (error.code, error.text) == ("bad_arguments", "usage: /picky N")
        await alice.command("/picky x")
        error = await alice.expect("error")
        assert (error.code, error.text) == ("bad_arguments", "not a number: x; usage: /picky N")


class BadRules:
    @trio_chat.hookimpl
    def register_commands(self, register: Any) -> None:
        register("root", lambda ctx: "x", help="x", allowed="root")


async def test_bad_rules_are_refused_at_registration_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, "trio_chat.plugins"):
        async with open_test_server(BadRules()) as chat:
            assert chat.server.command("root") is None
    (record,) = [r for r in caplog.records if "register_commands raised" in r.getMessage()]
    assert record.exc_info is not None
    assert "allowed='root' is not one of everyone, operators, admins" in str(record.exc_info[1])


async def test_the_rules_example_of_the_docs(tmp_path: Path) -> None:
    rules = load_sample("rules.py", tmp_path)
    async with open_test_server(rules) as chat:
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            await alice.command("/join #dev")
            await alice.expect("info", lambda e: (e.data or {}).get("room") == "#dev")
            await bob.command("/join #dev")
            await bob.expect("info", lambda e: (e.data or {}).get("room") == "#dev")
            await alice.command("/topic hot")
            await bob.expect("topic", lambda e: e.topic == "hot")
            await bob.command("/untopic")
            assert (await bob.expect("error")).code == "not_allowed"
            await alice.command("/untopic")
            await bob.expect("topic", lambda e: e.topic == "")
            await alice.command("/untopic")
            error = await alice.expect("error")
            assert error.code == "rate_limited" and error.text.startswith(
                "/untopic is limited to at most 1 per 60 s; try again in "
            )
            await alice.command("/help untopic")
            assert (await alice.expect("info")).text == (
                "/untopic - Clear the topic (operators only; at most 1 per 60 s)"
            )
            await bob.command("/weather Paris")
            assert (await bob.expect("info")).text == "Paris: sunny"
            await bob.command("/weather 42")
            error = await bob.expect("error")
            assert (error.code, error.text) == (
                "bad_arguments",
                "not a city: 42; usage: /weather CITY",
            )
