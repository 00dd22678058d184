"""Tests of the reminder plugin: durations directly; /remind, delivery and restarts over real
sockets, on a clock the test moves (so no test waits for wall time to pass)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from trio_chat_remind import MAX_PER_OWNER, MAX_TEXT, Reminders, describe, parse_duration

from trio_chat.testing import ChatClient, TestServer, local_config, open_client, open_test_server

PASSWORD = "correct horse"


class Clock:
    """Wall-clock seconds that only move when the test says."""

    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def is_reminder(event: Any) -> bool:
    return bool(event.TYPE == "info" and (event.data or {}).get("event") == "reminder")


def reminders_in(client: ChatClient) -> list[str]:
    return [event.text for event in client.history if is_reminder(event)]  # type: ignore[attr-defined]


async def sync(client: ChatClient) -> None:
    """Everything queued for ``client`` before now has arrived (outboxes are in order)."""
    await client.command("/rooms")
    await client.expect("info", lambda e: "#lobby" in e.text)


@asynccontextmanager
async def open_account(
    chat: TestServer, nick: str, *, register: bool = False
) -> AsyncIterator[ChatClient]:
    async with open_client(chat) as client:
        await client.login(nick, password=PASSWORD, register=register)
        yield client


async def remind(client: ChatClient, args: str) -> str:
    await client.command(f"/remind {args}")
    reply = await client.expect("info", lambda e: e.text.startswith("I will remind you"))
    text: str = reply.text
    return text


# ------------------------------------------------------------------------ no server


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10m", 600), ("1h30m", 5400), ("2d", 172800), ("45S", 45), ("1w", 604800), ("1h1h", 7200)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "m", "soon", "1.5h", "-5m", "0s", "366d", "10m x"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_describe() -> None:
    assert [describe(s) for s in (0, 59, 600, 3725, 90061)] == [
        "0s",
        "59s",
        "10m",
        "1h2m5s",
        "1d1h1m1s",
    ]


def test_only_a_user_connected_to_this_process_receives() -> None:
    """With several processes the hub lists the others' users too: never theirs."""
    plugin = Reminders()

    def user(account: str, here: bool) -> Any:
        mailbox = SimpleNamespace(delivers_here=here)
        return SimpleNamespace(account=account, closed=False, mailbox=mailbox, id=1)

    elsewhere, here = user("alice", here=False), user("alice", here=True)
    server: Any = SimpleNamespace(hub=SimpleNamespace(sessions={"a": elsewhere}))
    assert plugin.recipient(server, {"account": "alice"}) is None
    server.hub.sessions["b"] = here
    assert plugin.recipient(server, {"account": "alice"}) is here


# ------------------------------------------------------------------- over the wire


async def test_a_reminder_is_told_to_its_owner_alone_when_due() -> None:
    clock = Clock()
    plugin = Reminders(check_every=0.02, clock=clock)
    async with (
        open_test_server(plugin) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        assert await remind(alice, "10m take the pizza out") == (
            "I will remind you in 10m: take the pizza out"
        )
        await sync(alice)
        assert reminders_in(alice) == []  # not yet: the clock has not moved
        clock.now += 600
        event = await alice.expect("info", is_reminder)
        assert event.text == "reminder, set 10m ago in #lobby: take the pizza out"
        assert event.data == {"event": "reminder", "text": "take the pizza out", "room": "#lobby"}
        await sync(bob)
        assert reminders_in(bob) == []
        assert await chat.server.storage("remind").items() == []


async def test_bad_reminders_are_refused_with_a_reason() -> None:
    plugin = Reminders(check_every=3600, clock=Clock())
    async with open_test_server(plugin) as chat, open_client(chat, "alice") as alice:
        for args, text in [
            ("", "usage: /remind DURATION TEXT"),
            ("10m", "usage: /remind DURATION TEXT"),
            ("soon pizza", "'soon' is not a duration: write it like 10m, 1h30m, 2d or 45s"),
            ("400d pizza", "a reminder is due in 1 second to 365 days, not 400d"),
            (
                "1m " + "x" * (MAX_TEXT + 1),
                f"a reminder has at most {MAX_TEXT} characters, not 401",
            ),
        ]:
            await alice.command(f"/remind {args}")
            error = await alice.expect("error")
            assert (error.code, error.text) == ("bad_arguments", text)
        for n in range(MAX_PER_OWNER):
            await remind(alice, f"1h number {n}")
        await alice.command("/remind 1h one too many")
        error = await alice.expect("error")
        assert (error.code, error.text) == (
            "command_failed",
            f"you have {MAX_PER_OWNER} reminders waiting already",
        )


async def test_an_accounts_reminder_fires_after_a_restart_once_its_owner_is_back(
    tmp_path: Path,
) -> None:
    clock = Clock()
    config = local_config(db=str(tmp_path / "chat.db"))
    async with open_test_server(Reminders(check_every=0.02, clock=clock), config=config) as chat:
        async with open_account(chat, "alice", register=True) as alice:
            await remind(alice, "1h call mum")
    clock.now += 7200  # due while the server is down, and while alice is away
    plugin = Reminders(check_every=0.02, clock=clock)  # a new process: nothing in memory
    async with open_test_server(plugin, config=config) as chat:
        await plugin.deliver_due(chat.server)  # due, but alice is not here: it waits
        assert len(await chat.server.storage("remind").items()) == 1
        async with open_account(chat, "alice") as alice:
            event = await alice.expect("info", is_reminder)
            assert event.text == "reminder, set 2h ago in #lobby: call mum"
        assert await chat.server.storage("remind").items() == []


async def test_a_guests_reminder_ends_with_the_guests_session(tmp_path: Path) -> None:
    clock = Clock()
    config = local_config(db=str(tmp_path / "chat.db"))
    plugin = Reminders(check_every=3600, clock=clock)  # passes run when the test says
    async with open_test_server(plugin, config=config) as chat:
        async with open_client(chat, "bob") as bob:
            await remind(bob, "1m gone before it is due")
            await remind(bob, "2h kept across the restart, for nobody")
        clock.now += 120
        async with open_client(chat, "bob") as bob:  # the same nick, another session
            await plugin.deliver_due(chat.server)
            await sync(bob)
            assert reminders_in(bob) == []
        assert len(await chat.server.storage("remind").items()) == 1  # the later one
    clock.now += 7200
    plugin = Reminders(check_every=3600, clock=clock)
    async with open_test_server(plugin, config=config) as chat:
        async with open_client(chat, "bob") as bob:
            # Session ids are counted anew in each run: even the same id is not the same guest.
            session = chat.server.hub.find("bob")
            assert session is not None
            guest = {"guest": "bob", "session": session.id}
            assert plugin.recipient(chat.server, {**guest, "run": plugin.run_id}) is session
            assert plugin.recipient(chat.server, {**guest, "run": "an earlier run"}) is None
            await plugin.deliver_due(chat.server)
            await sync(bob)
            assert reminders_in(bob) == []
        assert await chat.server.storage("remind").items() == []


async def test_without_a_database_reminders_work_in_memory() -> None:
    clock = Clock()
    plugin = Reminders(check_every=0.02, clock=clock)
    async with (
        open_test_server(plugin, config=local_config(db=None)) as chat,
        open_client(chat, "alice") as alice,
    ):
        await remind(alice, "5s stretch")
        clock.now += 5
        assert (await alice.expect("info", is_reminder)).text.endswith(": stretch")
