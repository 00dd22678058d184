"""Plugins' key-value storage: the table and its migration, the two backends, the API's
refusals, and a plugin's data surviving a server restart over real sockets."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from test_store import database_at

from trio_chat import CommandContext, hookimpl
from trio_chat.commands import RegisterCommand
from trio_chat.names import name_key
from trio_chat.plugin_storage import (
    MAX_VALUE_BYTES,
    MemoryPluginData,
    PluginData,
    PluginStorage,
    StorageError,
)
from trio_chat.server import ChatServer
from trio_chat.store import SCHEMA_VERSION, Store
from trio_chat.store.plugin_data import prefix_upper_bound
from trio_chat.testing import local_config, open_client, open_test_server

TIMEOUT = 10.0


# ------------------------------------------------------------------ the table, migrated


def test_prefix_upper_bound_is_the_least_string_above_every_key_with_the_prefix() -> None:
    assert prefix_upper_bound("") is None
    assert prefix_upper_bound("due:") == "due;"
    assert prefix_upper_bound("a\U0010ffff") == "b"
    assert prefix_upper_bound("\U0010ffff\U0010ffff") is None
    assert prefix_upper_bound("\ud7ff") == "\ue000"  # surrogates cannot be stored


async def test_version_4_database_gains_plugin_data_and_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    conn = database_at(path, 4)
    conn.execute(
        "INSERT INTO messages (id, ts, room, sender, text, kind, conv)"
        " VALUES (3, 3.0, '#lobby', 'alice', 'kept', 'say', 'r:#lobby')"
    )
    conn.execute("INSERT INTO accounts VALUES (?, 'hash', 1.0, 1.0)", (name_key("alice"),))
    conn.close()
    with trio.fail_after(TIMEOUT):
        async with Store.open(path) as store:
            assert [m.text for m in await store.history("#lobby")] == ["kept"]
            assert await store.account_exists("alice")
            assert store.last_id == 3
            await store.plugin_put("remind", "k", '{"a":1}')
        async with Store.open(path) as store:
            assert await store.plugin_get("remind", "k") == '{"a":1}'
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("SELECT namespace, key FROM plugin_data").fetchall() == [
            ("remind", "k")
        ]
    finally:
        conn.close()


# ------------------------------------------------------------------- both backends


@asynccontextmanager
async def open_backend(kind: str, tmp_path: Path) -> AsyncIterator[PluginData]:
    if kind == "memory":
        yield MemoryPluginData()
        return
    async with Store.open(tmp_path / "chat.db") as store:
        yield store


BACKENDS = pytest.mark.parametrize("kind", ["sqlite", "memory"])


@BACKENDS
async def test_values_round_trip_as_fresh_copies(kind: str, tmp_path: Path) -> None:
    async with open_backend(kind, tmp_path) as data:
        storage = PluginStorage("notes", lambda: data)
        assert await storage.get("missing") is None
        assert await storage.get("missing", default=0) == 0
        value = {"text": "ünïcode ✓", "n": 3, "tags": ["a", "b"], "ok": True, "none": None}
        await storage.set("k", value)
        got = await storage.get("k")
        assert got == value
        got["tags"].append("changed")  # a copy: what is stored does not change
        assert await storage.get("k") == value
        await storage.set("k", 1.5)  # replaced
        assert await storage.get("k") == 1.5
        assert await storage.delete("k") is True
        assert await storage.delete("k") is False
        assert await storage.get("k") is None


@BACKENDS
async def test_namespaces_never_meet(kind: str, tmp_path: Path) -> None:
    async with open_backend(kind, tmp_path) as data:
        one, two = PluginStorage("one", lambda: data), PluginStorage("two", lambda: data)
        await one.set("k", "one's")
        await two.set("k", "two's")
        await two.set("k2", "more")
        assert await one.get("k") == "one's"
        assert await one.items() == [("k", "one's")]
        assert await two.delete("k")
        assert await one.get("k") == "one's"


@BACKENDS
async def test_items_walk_a_prefix_in_key_order_up_to_a_limit(kind: str, tmp_path: Path) -> None:
    async with open_backend(kind, tmp_path) as data:
        storage = PluginStorage("remind", lambda: data)
        for key in ["due:0002", "due:0001", "due;", "du", "due:0003", "other", "due:\U0010ffff"]:
            await storage.set(key, key.upper())
        assert await storage.keys("due:") == ["due:0001", "due:0002", "due:0003", "due:\U0010ffff"]
        assert await storage.items("due:", limit=2) == [
            ("due:0001", "DUE:0001"),
            ("due:0002", "DUE:0002"),
        ]
        assert await storage.keys() == sorted(
            ["due:0002", "due:0001", "due;", "du", "due:0003", "other", "due:\U0010ffff"]
        )
        assert await storage.keys("nothing") == []
        assert await storage.keys("due:", after="due:0002") == ["due:0003", "due:\U0010ffff"]
        assert await storage.keys("due:", after="due:0001", limit=1) == ["due:0002"]
        assert await storage.keys(after="due;") == ["other"]
        assert await storage.keys("due:", after="zzz") == []


@BACKENDS
async def test_what_is_not_json_or_too_big_is_refused_before_anything_is_stored(
    kind: str, tmp_path: Path
) -> None:
    async with open_backend(kind, tmp_path) as data:
        storage = PluginStorage("bad", lambda: data)
        with pytest.raises(TypeError, match="must be JSON"):
            await storage.set("k", {1, 2})
        with pytest.raises(ValueError, match="must be JSON"):
            await storage.set("k", float("nan"))
        deep: Any = []
        for _ in range(100_000):
            deep = [deep]
        with pytest.raises(ValueError, match="nested too deeply"):
            await storage.set("k", deep)
        with pytest.raises(ValueError, match=f"at most {MAX_VALUE_BYTES} bytes"):
            await storage.set("k", "x" * MAX_VALUE_BYTES)
        with pytest.raises(ValueError, match="lone surrogates"):
            await storage.set("k", "\ud800")
        with pytest.raises(TypeError, match="key is a str, not int"):
            await storage.set(1, "v")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="at most 256 characters"):
            await storage.get("k" * 257)
        with pytest.raises(ValueError, match="lone surrogates"):
            await storage.get("\udc80")
        with pytest.raises(ValueError, match="limit is between"):
            await storage.items(limit=0)
        assert await storage.items() == []
        await storage.set("k" * 256, "x" * (MAX_VALUE_BYTES - 2))  # the limits themselves
        assert len(await storage.get("k" * 256)) == MAX_VALUE_BYTES - 2
    with pytest.raises(ValueError, match="cannot be empty"):
        PluginStorage("", lambda: None)


async def test_a_failing_database_is_a_store_error_for_the_user(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "chat.db") as store:
        pass
    storage = PluginStorage("notes", lambda: store)  # closed: every call fails
    for call in (storage.get("k"), storage.set("k", 1), storage.delete("k"), storage.items()):
        with pytest.raises(StorageError) as info:
            await call
        assert (info.value.code, info.value.text) == (
            "store_error",
            "plugin storage is unavailable right now",
        )


async def test_storage_is_refused_outside_a_running_server_with_a_database() -> None:
    server = ChatServer(local_config(), builtins=False)
    with pytest.raises(StorageError, match="only while the server runs"):
        await server.storage("notes").get("k")


async def test_without_a_database_storage_lives_as_long_as_the_server_object() -> None:
    server = ChatServer(local_config(db=None), builtins=False)
    await server.storage("notes").set("k", [1])  # before serving, too
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        assert await server.storage("notes").get("k") == [1]
        server.shutdown()
    assert await server.storage("notes").items() == [("k", [1])]


# -------------------------------------------------------------- a plugin, over the wire


class Counter:
    """``/count``: how many times anyone counted here, kept in the plugin's storage."""

    @hookimpl
    def register_commands(self, register: RegisterCommand) -> None:
        register("count", self.count, help="Count one more")

    async def count(self, ctx: CommandContext) -> str:
        storage = ctx.server.storage("counter")
        total = await storage.get("total", 0) + 1
        await storage.set("total", total)
        return f"counted {total}"


async def count(chat: Any, nick: str) -> str:
    async with open_client(chat, nick) as client:
        await client.command("/count")
        reply = await client.expect("info", lambda e: e.text.startswith("counted"))
        text: str = reply.text
        return text


async def test_a_plugins_data_survives_a_restart(tmp_path: Path) -> None:
    config = local_config(db=str(tmp_path / "chat.db"))
    async with open_test_server(Counter(), config=config) as chat:
        assert await count(chat, "alice") == "counted 1"
        assert await count(chat, "bob") == "counted 2"
    async with open_test_server(Counter(), config=config) as chat:
        assert await count(chat, "carol") == "counted 3"


async def test_without_a_database_a_plugin_counts_in_memory() -> None:
    async with open_test_server(Counter(), config=local_config(db=None)) as chat:
        assert await count(chat, "alice") == "counted 1"
        assert await count(chat, "bob") == "counted 2"


async def test_a_storage_failure_in_a_command_tells_the_caller_store_error(
    tmp_path: Path,
) -> None:
    async with open_test_server(Counter(), config=local_config(db=str(tmp_path / "c.db"))) as chat:
        async with Store.open(tmp_path / "closed.db") as closed:
            pass
        chat.server.plugin_data = closed  # the database gives way under the plugin
        async with open_client(chat, "alice") as alice:
            await alice.command("/count")
            error = await alice.expect("error")
            assert (error.code, error.text) == (
                "store_error",
                "plugin storage is unavailable right now",
            )
            await alice.say("still here")  # the connection carries on
            await alice.expect("message", lambda e: e.text == "still here")


# ------------------------------------------------------------------ the docs' example

ROOT = Path(__file__).resolve().parent.parent


def docs_example(name: str) -> str:
    """The code of the ``# NAME`` example of docs/plugins.md, as printed there."""
    documented = (ROOT / "docs" / "plugins.md").read_text()
    return documented.split(f"```python\n# {name}\n", 1)[1].split("```", 1)[0]


async def test_the_karma_example_of_the_docs_keeps_points_across_a_restart(
    tmp_path: Path,
) -> None:
    (tmp_path / "karma.py").write_text(docs_example("karma.py"))
    config = local_config(db=str(tmp_path / "chat.db"), plugins=[str(tmp_path / "karma.py")])
    for expected in ("bob now has 1 karma", "bob now has 2 karma"):
        async with open_test_server(config=config) as chat, open_client(chat, "alice") as alice:
            await alice.command("/karma bob")
            assert (await alice.expect("message")).text == expected
    async with open_test_server(config=config) as chat, open_client(chat, "alice") as alice:
        await alice.command("/karma")
        assert (await alice.expect("error")).text == "usage: /karma NICK"
