"""A guest's log-in is admitted at once (``ChatServer.admit_nowait``) when the answer is in
memory, and through the awaited checks when it is not (a password, an auth backend's
``is_account``, accounts kept elsewhere): the same verdicts either way. Over real sockets,
and the pure decisions on their own."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import trio_chat
from trio_chat.errors import LoginRefused
from trio_chat.logins import Logins
from trio_chat.names import name_key
from trio_chat.server import ChatServer
from trio_chat.store import Store, StoreError
from trio_chat.testing import TestServer, local_config, open_client, open_test_server


async def refusal(chat: TestServer, nick: str) -> str:
    async with open_client(chat) as client:
        await client.send({"type": "hello", "nick": nick})
        return (await client.expect("error")).code


def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the awaited checks fail loudly: a guest must not reach them."""

    async def awaited(*args: Any, **kwargs: Any) -> bool:
        raise AssertionError("a guest's nick was checked by a coroutine")

    monkeypatch.setattr(ChatServer, "admit", awaited)
    monkeypatch.setattr(Store, "account_exists", awaited)
    monkeypatch.setattr(Logins, "is_registered", awaited)


async def test_a_guest_is_admitted_from_memory_and_a_registered_nick_still_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with open_test_server() as chat:
        async with open_client(chat, "alice") as alice:
            await alice.command("/register hunter2")
            await alice.expect("info", lambda e: "registered" in e.text)
        with monkeypatch.context() as patch:
            no_waiting(patch)
            assert await refusal(chat, "ALICE") == "nick_registered"
            async with open_client(chat, "bob") as bob:
                await bob.say("in")
                await bob.expect("message", lambda e: e.text == "in")
        # A password's log-in still takes the awaited way.
        async with open_client(chat) as back:
            welcome = await back.login("alice", password="hunter2")
            assert welcome.account is True


async def test_accounts_kept_elsewhere_are_awaited(monkeypatch: pytest.MonkeyPatch) -> None:
    """A book without an answer at once (Redis: the broker's accounts) is asked by its
    coroutine, and its answer counts as before."""

    class FarBook:
        def __init__(self, names: set[str]) -> None:
            self.names = names
            self.asked: list[str] = []

        async def account_exists(self, nick_key: str) -> bool:
            self.asked.append(nick_key)
            await trio.lowlevel.checkpoint()
            return nick_key in self.names

    async with open_test_server() as chat:
        book = FarBook({"carol"})
        chat.server.logins = Logins(book)  # type: ignore[arg-type]
        assert await refusal(chat, "Carol") == "nick_registered"
        async with open_client(chat, "dave"):
            pass
        assert book.asked == ["carol", "dave"]


async def test_a_backend_that_knows_its_users_is_asked() -> None:
    class Backend:
        def __init__(self) -> None:
            self.asked: list[str] = []

        @trio_chat.hookimpl
        async def is_account(self, nick: str) -> bool | None:
            self.asked.append(nick)
            await trio.lowlevel.checkpoint()
            return True if nick == "erin" else None

    backend = Backend()
    async with open_test_server(backend) as chat:
        assert await refusal(chat, "erin") == "nick_registered"
        async with open_client(chat, "frank"):
            pass
    assert backend.asked[:2] == ["erin", "frank"]


async def test_required_accounts_refuse_a_guest_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    no_waiting(monkeypatch)
    async with open_test_server(config=local_config(require_accounts=True)) as chat:
        assert await refusal(chat, "gina") == "account_required"


# ---------------------------------------------------------------------- the decisions alone


def test_admit_nowait_answers_a_guest_and_leaves_the_rest_to_admit() -> None:
    server = ChatServer(local_config(db=None))
    assert server.admit_nowait("alice", None, False, "127.0.0.1:1") is None
    with pytest.raises(trio.WouldBlock):
        server.admit_nowait("alice", "secret", False, "127.0.0.1:1")
    with pytest.raises(trio.WouldBlock):
        server.admit_nowait("alice", "secret", True, "127.0.0.1:1")


def test_admit_nowait_asks_the_book_in_memory() -> None:
    class Book:
        closed = False

        async def account_exists(self, nick_key: str) -> bool:
            raise AssertionError("awaited")

        def account_exists_nowait(self, nick_key: str) -> bool:
            if self.closed:
                raise StoreError("closed")
            return nick_key == name_key("alice")

    server = ChatServer(local_config(db=None))
    book = Book()
    server.logins = Logins(book)  # type: ignore[arg-type]
    assert server.admit_nowait("bob", None, False, "127.0.0.1:1") is None
    with pytest.raises(LoginRefused) as refused:
        server.admit_nowait("Alice", None, False, "127.0.0.1:1")
    assert refused.value.code == "nick_registered"
    book.closed = True
    with pytest.raises(LoginRefused) as unreadable:
        server.admit_nowait("bob", None, False, "127.0.0.1:1")
    assert unreadable.value.code == "store_error"


def test_a_book_without_an_answer_at_once_would_block() -> None:
    class FarBook:
        async def account_exists(self, nick_key: str) -> bool:
            return False

    with pytest.raises(trio.WouldBlock):
        Logins(FarBook()).is_registered_nowait("bob")  # type: ignore[arg-type]
