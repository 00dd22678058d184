"""The public plugin API: what built-ins and plugins use, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from trio_chat import ChatServer, CommandContext, hookimpl
from trio_chat.api import RoomsView
from trio_chat.commands import RegisterCommand
from trio_chat.hub import Room
from trio_chat.names import name_key
from trio_chat.testing import local_config, open_client, open_test_server

ROOT = Path(__file__).resolve().parent.parent

#: What a plugin (built-in or not) and the plugin docs must never do: reach into the store
#: or the history and login services, or into another object's private fields (``self._x`` is a
#: plugin's own; ``trio_chat._plugin_docs`` is a module name in the docs).
FORBIDDEN = {
    "the store": re.compile(r"\bstore\.|^\s*(?:from|import)\s+\S*\bstore\b", re.MULTILINE),
    "the history or login service": re.compile(
        r"persistence|history_service|HistoryService|\.logins\b|\bLogins\b"
    ),
    "a private field": re.compile(r"(?<!\bself)(?<!\btrio_chat)\._[A-Za-z]"),
}


def _public_api_users() -> list[Path]:
    files = sorted((ROOT / "trio_chat" / "builtins").glob("*.py"))
    files += sorted(p for p in (ROOT / "plugins").rglob("*") if p.suffix in (".py", ".md"))
    return [*files, ROOT / "docs" / "plugins.md"]


def test_builtins_plugins_and_docs_use_only_the_public_api() -> None:
    files = _public_api_users()
    assert len(files) > 10  # the built-ins, the three example plugins and the docs
    found = [
        f"{path.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 1}: {what}"
        for path in files
        for text in [path.read_text()]
        for what, pattern in FORBIDDEN.items()
        for match in pattern.finditer(text)
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        "store = ctx.server.persistence",
        "await ctx.server.history_service.send_room_page(ctx.session, ctx.room)",
        "await ctx.server.logins.check_login(nick, password, address)",
        "await store.store.history(ctx.room)",
        "from trio_chat.store import Store",
        "ctx.server._nursery.start_soon(f)",
    ],
)
def test_the_guard_catches_what_it_is_for(line: str) -> None:
    assert any(pattern.search(line) for pattern in FORBIDDEN.values())


class Probe:
    """A plugin that reports what the public API shows it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    @hookimpl
    def register_commands(self, register: RegisterCommand) -> None:
        register("probe", self.probe, help="Report what the API shows")

    async def probe(self, ctx: CommandContext) -> None:
        ctx.state["calls"] = ctx.state.get("calls", 0) + 1
        messages = await ctx.history(limit=10)
        self.seen.append(
            {
                "account": ctx.account,
                "calls": ctx.state["calls"],
                "history": [m.text for m in messages],
                "rooms": sorted(ctx.server.rooms),
                "lobby": ctx.server.rooms["#LOBBY"].name,
                "commands": "probe" in [s.name for s in ctx.server.command_list()],
            }
        )
        ctx.reply("probed")


async def test_account_state_history_and_rooms_through_the_context() -> None:
    probe = Probe()
    async with open_test_server(probe) as chat:
        name = chat.server.pm.get_name(probe)
        async with open_client(chat, "alice") as alice:
            await alice.say("one")
            await alice.expect("message")
            await alice.command("/register hunter22")
            await alice.expect("info", lambda e: "registered" in e.text)
            await alice.command("/probe")
            await alice.expect("info", lambda e: e.text == "probed")
            await alice.command("/probe")
            await alice.expect("info", lambda e: e.text == "probed")
            session = chat.server.hub.find("alice")
            assert session is not None and session.extra == {name: {"calls": 2}}
    first, second = probe.seen
    assert first == {
        "account": name_key("alice"),  # an account key, as the store keeps it
        "calls": 1,
        "history": ["one"],
        "rooms": ["#lobby"],
        "lobby": "#lobby",
        "commands": True,
    }
    assert second["calls"] == 2


async def test_history_without_a_database_is_refused_for_the_caller() -> None:
    probe = Probe()
    async with open_test_server(probe, config=local_config(db=None)) as chat:
        async with open_client(chat, "alice") as alice:
            await alice.command("/probe")
            error = await alice.expect("error")
            assert (error.code, error.text) == (
                "no_store",
                "this server keeps no history (it runs without a database)",
            )
    assert probe.seen == []


def test_the_rooms_view_is_read_only_and_by_name() -> None:
    server = ChatServer(local_config())
    rooms = server.rooms
    assert isinstance(rooms, RoomsView) and len(rooms) == 0 and "#lobby" not in rooms
    server.hub.rooms["#x"] = Room("#X")
    assert "#x" in rooms and list(rooms) == ["#X"] and rooms["#x"].name == "#X"
    assert not hasattr(rooms, "__setitem__") and not hasattr(rooms, "pop")
