"""Auth backends (the ``authenticate`` and ``is_account`` hooks): logins checked by a plugin
before, or instead of, the built-in accounts; broken backends let nobody in. Over real
sockets, with the file-of-users example of docs/plugins.md as it is written there."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import trio
from doc_samples import load_sample

import trio_chat
from trio_chat.testing import TestServer, local_config, open_client, open_test_server


async def refusal(chat: TestServer, nick: str, **hello: Any) -> tuple[str, str]:
    """The code and text of the error a ``hello`` as ``nick`` gets."""
    async with open_client(chat) as client:
        await client.send({"type": "hello", "nick": nick, **hello})
        error = await client.expect("error")
        return error.code, error.text


class Backend:
    """Knows alice (password "wonderland"); says nothing of anyone else."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    @trio_chat.hookimpl
    def authenticate(self, nick: str, password: str, address: str) -> bool | None:
        self.asked.append((nick, address))
        if nick.casefold() != "alice":
            return None
        return password == "wonderland"

    @trio_chat.hookimpl
    def is_account(self, nick: str) -> bool | None:
        return True if nick.casefold() == "alice" else None


async def test_a_backend_lets_its_user_in_without_a_database() -> None:
    backend = Backend()
    async with open_test_server(backend, config=local_config(db=None)) as chat:
        async with open_client(chat) as alice:
            welcome = await alice.login("alice", password="wonderland")
            assert (welcome.nick, welcome.account) == ("alice", True)
        assert backend.asked[0][0] == "alice" and backend.asked[0][1].startswith("127.0.0.1:")
        assert await refusal(chat, "alice", password="guess") == (
            "login_failed",
            "wrong nickname or password",
        )
        # Not the backend's: the built-in accounts decide, and there are none.
        code, _ = await refusal(chat, "bob", password="x")
        assert code == "no_store"


async def test_a_backends_users_nick_is_kept_from_guests() -> None:
    async with open_test_server(Backend()) as chat:
        assert await refusal(chat, "Alice") == (
            "nick_registered",
            "the nickname Alice is registered; log in with its password",
        )
        assert (await refusal(chat, "alice", password="x", register=True))[0] == "nick_registered"
        async with open_client(chat, "bob") as bob:
            await bob.command("/nick alice")
            assert (await bob.expect("error")).code == "nick_registered"
            # /login to the backend's user works (and takes the nick).
            await bob.command("/login alice wonderland")
            assert (await bob.expect("info", lambda e: "logged in" in e.text)).text == (
                "logged in as alice"
            )


async def test_nicks_the_backend_does_not_know_go_to_the_built_in_accounts() -> None:
    async with open_test_server(Backend()) as chat:
        async with open_client(chat) as bob:
            await bob.login("bob", password="builtin", register=True)
        async with open_client(chat) as bob:
            assert (await bob.login("bob", password="builtin")).account is True
        assert (await refusal(chat, "bob"))[0] == "nick_registered"


async def test_wrong_passwords_are_throttled() -> None:
    async with open_test_server(Backend()) as chat:
        assert (await refusal(chat, "alice", password="one"))[0] == "login_failed"
        code, text = await refusal(chat, "alice", password="two")
        assert code == "login_throttled" and "try again in" in text


class Broken:
    def __init__(self, how: str) -> None:
        self.how = how
        self.started = trio.Event()

    @trio_chat.hookimpl
    async def authenticate(self, nick: str) -> Any:
        self.started.set()
        if self.how == "hang":
            await trio.sleep_forever()
        if self.how == "raise":
            raise RuntimeError("ldap is down")
        return "yes"  # garbage: not True, False or None


class Welcoming:
    """Would let anyone in: a broken backend before it must not hand over to it."""

    @trio_chat.hookimpl(trylast=True)
    def authenticate(self) -> bool:
        return True


@pytest.mark.parametrize("how", ["raise", "garbage"])
async def test_a_broken_backend_lets_nobody_in(how: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "trio_chat.auth"):
        async with open_test_server(Welcoming(), Broken(how)) as chat:
            assert await refusal(chat, "mallory", password="x") == (
                "store_error",
                "the server cannot check accounts right now; try again later",
            )
    (record,) = [r for r in caplog.records if r.name == "trio_chat.auth"]
    assert "Broken" in record.getMessage()


async def test_a_hanging_backend_is_cut_off_and_holds_up_nobody_else() -> None:
    broken = Broken("hang")
    async with open_test_server(broken, config=local_config(plugin_timeout=1.0)) as chat:
        async with open_client(chat, "bob") as bob, trio.open_nursery() as nursery:
            refused: list[tuple[str, str]] = []

            async def log_in() -> None:
                refused.append(await refusal(chat, "mallory", password="x"))

            nursery.start_soon(log_in)
            await broken.started.wait()
            started = trio.current_time()
            async with open_client(chat, "carol") as carol:
                await carol.say("hello")
                await bob.expect("message", lambda e: e.text == "hello")
            assert trio.current_time() - started < 0.5
            assert not refused
        assert refused == [
            ("store_error", "the server cannot check accounts right now; try again later")
        ]


class Second:
    @trio_chat.hookimpl(tryfirst=True)
    async def authenticate(self, nick: str) -> bool | None:
        await trio.lowlevel.checkpoint()
        return None  # an async None passes to the next backend


async def test_an_async_backend_passing_with_none_hands_over_to_the_next() -> None:
    async with open_test_server(Second(), Backend()) as chat:
        async with open_client(chat) as alice:
            assert (await alice.login("alice", password="wonderland")).account is True


async def test_the_file_of_users_example(tmp_path: Path) -> None:
    userfile = load_sample("userfile.py", tmp_path)
    users = tmp_path / "users.txt"
    users.write_text(userfile.make_line("Alice", "wonderland") + "\n")
    config = local_config(plugin_settings={"userfile": {"path": str(users)}})
    async with open_test_server(userfile, config=config) as chat:
        async with open_client(chat) as alice:
            assert (await alice.login("alice", password="wonderland")).account is True
        assert (await refusal(chat, "carol", password="wonderland"))[0] == "login_failed"
        assert (await refusal(chat, "alice", password="wrong"))[0] == "login_failed"
        assert (await refusal(chat, "ALICE"))[0] == "nick_registered"
