"""The cookbook of docs/plugins.md: each recipe, exactly as written there, loaded the way the
docs say (``--plugin FILE.py``) and used over real sockets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trio_chat.testing import local_config, open_client, open_test_server

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def recipe(filename: str, folder: Path) -> str:
    """Write the docs' code block that starts with ``# FILENAME`` into ``folder``; its path."""
    text = DOCS.read_text()
    blocks = re.findall(rf"```python\n(# {re.escape(filename)}\n.*?)```", text, re.DOTALL)
    assert len(blocks) == 1, f"docs/plugins.md has {len(blocks)} blocks for {filename}"
    path = folder / filename
    path.write_text(blocks[0])
    return str(path)


async def test_the_greeter_welcomes_the_newcomer_alone(tmp_path: Path) -> None:
    config = local_config(plugins=[recipe("welcome.py", tmp_path)])
    async with open_test_server(config=config) as chat:
        async with open_client(chat, "alice") as alice:
            welcome = await alice.expect("info")
            assert welcome.text == "Welcome to #lobby, alice! 1 person here."
            async with open_client(chat, "bob") as bob:
                welcome = await bob.expect("info")
                assert welcome.text == "Welcome to #lobby, bob! 2 people here."
                await alice.command("/join #dev")
                welcome = await alice.expect("info", lambda e: "#dev" in e.text)
                assert welcome.text == "Welcome to #dev, alice! 1 person here."
                # Bob's next event is alice's line: he was told of nobody's welcome but his.
                await alice.say("hi bob", room="#lobby")
                assert (await bob.expect("message")).text == "hi bob"
                assert [e.text for e in bob.history if e.TYPE == "info"] == [
                    "Welcome to #lobby, bob! 2 people here."
                ]


async def test_the_logger_writes_lines_joins_and_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "logs" / "chat.log"
    log.parent.mkdir()
    monkeypatch.setenv("CHATLOG_FILE", str(log))
    config = local_config(plugins=[recipe("chatlog.py", tmp_path)])
    async with open_test_server(config=config) as chat:
        async with open_client(chat, "alice") as alice:
            async with open_client(chat, "carol") as carol:
                await alice.expect("join", lambda e: e.nick == "carol")
                await carol.say("hi everyone")
                await carol.command("/me waves")
                await alice.expect("message", lambda e: e.kind == "action")
                await carol.command("/quit bye for now")
            await alice.expect("leave", lambda e: e.nick == "carol")
            await alice.command("/join #dev")
            await alice.expect("join", lambda e: e.room == "#dev")
            # The hooks are synchronous and run before anyone could see the event they log:
            # each line is in the file by the time its event arrived.
            lines = log.read_text(encoding="utf-8").splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    assert all(re.match(stamp, line) for line in lines), lines
    assert [line[20:] for line in lines] == [
        "#lobby --> alice joined",
        "#lobby --> carol joined",
        "#lobby <carol> hi everyone",
        "#lobby <carol> waves",
        "#lobby <-- carol left (bye for now)",
        "#dev --> alice joined",
    ]
