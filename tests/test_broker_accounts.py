"""Accounts shared by every node through Redis (issue 14): registered on one node, a login
on any; one winner for a name registered on two at once; a password changed on one is
changed on all; private history between accounts on two nodes; Redis down is a refusal."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
from test_broker import nodes

from trio_chat.broker.accounts import RedisAccounts, move_in, without_credentials
from trio_chat.logins import CANNOT_CHECK_ACCOUNTS, CANNOT_SAVE_ACCOUNTS
from trio_chat.store import AccountExists, Store, StoreError
from trio_chat.testing import ChatClient, TestServer, local_config, open_client, open_test_server

if TYPE_CHECKING:
    from conftest import RedisServer


async def answer(client: ChatClient) -> Any:
    """The ``welcome`` or the ``error`` that answers a ``hello``."""
    while True:
        event = await client.receive()
        if event.TYPE in ("welcome", "error"):
            return event


class Visits:
    """Log in (or register) with a password, see the answer, leave.

    After a ``welcome`` it waits until a watcher on every node has seen the visitor leave,
    so that the nick is free everywhere for the next visit (a node frees a nick before it
    shows the leave): waiting on events, not on time.
    """

    def __init__(self, watchers: list[ChatClient]) -> None:
        self.watchers = watchers

    async def hello(self, chat: TestServer, nick: str, password: str, **hello: Any) -> Any:
        """How ``chat`` answered the ``hello``: the ``welcome`` or the ``error``."""
        async with open_client(chat) as client:
            await client.send({"type": "hello", "nick": nick, "password": password, **hello})
            reply = await answer(client)
        if reply.TYPE == "welcome":
            for watcher in self.watchers:
                await watcher.expect("leave", lambda e: e.nick == reply.nick)
        return reply


async def visits(stack: contextlib.AsyncExitStack, chats: list[TestServer]) -> Visits:
    """A watching guest on each of ``chats`` (``watcher0``, ``watcher1``, ...)."""
    return Visits(
        [
            await stack.enter_async_context(open_client(chat, f"watcher{i}"))
            for i, chat in enumerate(chats)
        ]
    )


async def logged_in(
    stack: contextlib.AsyncExitStack, chat: TestServer, nick: str, password: str, **hello: Any
) -> ChatClient:
    client = await stack.enter_async_context(open_client(chat))
    welcome = await client.login(nick, password=password, **hello)
    assert welcome.account is True
    return client


# ------------------------------------------------------------------ nodes, for real


async def test_registered_on_one_node_logs_in_on_another(broker_url: str) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        visit = (await visits(stack, [a, b])).hello
        registered = await visit(a, "alice", "pw-alice", register=True)
        assert registered.TYPE == "welcome" and registered.account is True
        right = await visit(b, "Alice", "pw-alice")
        assert right.TYPE == "welcome" and right.nick == "Alice" and right.account is True
        wrong = await visit(b, "alice", "not her password")
        assert (wrong.TYPE, wrong.code) == ("error", "login_failed")
        assert wrong.text == "wrong nickname or password"
        # Registering it again, on either node, is refused.
        for chat in (a, b):
            again = await visit(chat, "ALICE", "pw-other", register=True)
            assert (again.TYPE, again.code) == ("error", "nick_registered")


async def test_a_guest_is_refused_a_nick_registered_on_another_node(broker_url: str) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(open_client(b, "watcher"))
        async with open_client(a, "bob") as bob:
            await bob.command("/register pw-bob")
            await bob.expect("info", lambda e: "registered" in e.text)
        await watcher.expect("leave", lambda e: e.nick == "bob")  # bob is free on B
        async with open_client(b) as guest:
            await guest.send({"type": "hello", "nick": "bob"})
            refused = await answer(guest)
            assert (refused.TYPE, refused.code) == ("error", "nick_registered")
            await guest.login("guest")
            await guest.command("/nick BOB")
            assert (await guest.expect("error")).code == "nick_registered"


async def test_one_name_registered_on_two_nodes_at_once_has_one_owner(broker_url: str) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        visit = (await visits(stack, [a, b])).hello
        answers: dict[str, Any] = {}

        async def register(chat: TestServer, name: str) -> None:
            answers[name] = await visit(chat, "carol", f"pw-{name}", register=True)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(register, a, "a")
            nursery.start_soon(register, b, "b")
        won = [name for name, event in answers.items() if event.TYPE == "welcome"]
        lost = [event for event in answers.values() if event.TYPE == "error"]
        assert len(won) == 1 and len(lost) == 1
        assert lost[0].code == "nick_registered"
        (winner,) = won
        loser = "b" if winner == "a" else "a"
        for chat in (a, b):  # the winner's password, on both nodes; never the loser's
            assert (await visit(chat, "carol", f"pw-{winner}")).TYPE == "welcome"
            assert (await visit(chat, "carol", f"pw-{loser}")).code == "login_failed"


async def test_a_password_changed_on_one_node_is_changed_on_all(broker_url: str) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        visiting = await visits(stack, [a, b])
        assert (await visiting.hello(a, "dave", "old-pw", register=True)).TYPE == "welcome"
        async with open_client(b) as dave:
            await dave.login("dave", password="old-pw")
            await dave.command("/password old-pw new-pw")
            await dave.expect("info", lambda e: e.text == "password changed")
        for watcher in visiting.watchers:  # dave is free on both nodes
            await watcher.expect("leave", lambda e: e.nick == "dave")
        assert (await visiting.hello(a, "dave", "new-pw")).TYPE == "welcome"
        # (After the right one: a failure makes this address wait before the next try.)
        old = await visiting.hello(a, "dave", "old-pw")
        assert (old.TYPE, old.code) == ("error", "login_failed")


async def test_private_talk_between_accounts_on_two_nodes_is_in_both_histories(
    broker_url: str,
) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        alice = await logged_in(stack, a, "alice", "pw-a", register=True)
        bob = await stack.enter_async_context(open_client(b, "bob"))  # a guest at first:
        await bob.command("/register pw-b")  # node A must hear of the account later
        await bob.expect("info", lambda e: "registered" in e.text)
        # A node hears of a login a moment after the user does; anything the user says
        # afterwards comes after it. So each waits for a word from the other: from then on
        # both nodes know both accounts.
        await bob.say("registered now")
        await alice.expect("message", lambda e: e.text == "registered now")
        await alice.say("me too")
        await bob.expect("message", lambda e: e.text == "me too")
        await alice.command("/msg bob from a to b")
        await bob.expect("private", lambda e: e.text == "from a to b")
        await bob.command("/msg alice from b to a")
        await alice.expect("private", lambda e: e.text == "from b to a")
        expected = [("alice", "bob", "from a to b"), ("bob", "alice", "from b to a")]
        pages = []
        for client, other in ((alice, "bob"), (bob, "alice")):  # node A's file, node B's
            await client.send({"type": "history", "with": other, "ref": "pm"})
            page = await client.expect("history", lambda e: e.ref == "pm")
            assert [(m["nick"], m["to"], m["text"]) for m in page.messages] == expected
            pages.append(page.messages)
        assert pages[0] == pages[1]  # the same ids on both


async def test_a_login_after_arriving_is_known_on_the_other_node(broker_url: str) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        visit = (await visits(stack, [a, b])).hello
        assert (await visit(b, "rose", "pw-r", register=True)).TYPE == "welcome"
        alice = await logged_in(stack, a, "alice", "pw-a", register=True)
        visitor = await stack.enter_async_context(open_client(b, "visitor"))
        await alice.expect("join", lambda e: e.nick == "visitor")
        await visitor.command("/login rose pw-r")
        await alice.expect("nick", lambda e: e.new == "rose")  # the account came before
        await alice.command("/msg rose kept")
        await visitor.expect("private", lambda e: e.text == "kept")
        await alice.send({"type": "history", "with": "rose", "ref": "pm"})
        page = await alice.expect("history", lambda e: e.ref == "pm")
        assert [m["text"] for m in page.messages] == ["kept"]


async def test_redis_down_refuses_account_work_and_comes_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with nodes(redis_server.url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        visit = (await visits(stack, [a, b])).hello
        assert (await visit(a, "erin", "pw-e", register=True)).TYPE == "welcome"
        await trio.to_thread.run_sync(redis_server.stop)
        with caplog.at_level(logging.ERROR, logger="trio_chat.store"):
            login = await visit(b, "erin", "pw-e")
            assert (login.code, login.text) == ("store_error", CANNOT_CHECK_ACCOUNTS)
            new = await visit(b, "frank", "pw-f", register=True)
            assert (new.code, new.text) == ("store_error", CANNOT_SAVE_ACCOUNTS)
            async with open_client(b) as guest:  # not let in unchecked
                await guest.send({"type": "hello", "nick": "erin"})
                assert (await answer(guest)).code == "store_error"
        lines = [r.getMessage() for r in caplog.records if r.name == "trio_chat.store"]
        assert len(lines) == 1 and "Redis" in lines[0]  # one line for the run of failures
        assert not any(r.exc_info for r in caplog.records)
        await trio.to_thread.run_sync(redis_server.start)
        back = await visit(b, "erin", "pw-e")  # not throttled by the refused try
        assert back.TYPE == "welcome", back


async def test_accounts_a_node_had_before_the_broker_come_with_it(
    broker_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "alone.db"
    async with open_test_server(config=local_config(db=str(db))) as alone:  # no broker yet
        for nick, password in (("gina", "pw-gina"), ("hank", "old-hank")):
            async with open_client(alone) as client:
                welcome = await client.login(nick, password=password, register=True)
                assert welcome.account is True
    async with nodes(broker_url, 1) as (b,), contextlib.AsyncExitStack() as stack:
        # Meanwhile someone else registered hank through the broker: theirs stays.
        assert (await Visits([]).hello(b, "hank", "new-hank", register=True)).TYPE == "welcome"
        with caplog.at_level(logging.INFO, logger="trio_chat.broker"):
            a = await stack.enter_async_context(
                open_test_server(config=local_config(broker=broker_url, db=str(db)))
            )
        assert "1 of this node's 2 accounts copied" in caplog.text
        visit = (await visits(stack, [a, b])).hello
        for chat in (a, b):
            assert (await visit(chat, "gina", "pw-gina")).TYPE == "welcome"
            assert (await visit(chat, "hank", "new-hank")).TYPE == "welcome"
        assert (await visit(b, "hank", "old-hank")).code == "login_failed"


# ------------------------------------------------------------- RedisAccounts alone


async def test_redis_accounts_create_verify_and_change(broker_url: str) -> None:
    async with RedisAccounts.open(broker_url, prefix="unit") as book:
        assert not await book.account_exists("ivy")
        await book.create_account("Ivy", "pw-1")
        assert await book.account_exists("IVY")
        with pytest.raises(AccountExists):
            await book.create_account("ivy", "pw-2")
        assert await book.verify_password("ivy", "pw-1")
        assert not await book.verify_password("ivy", "pw-2")
        assert not await book.verify_password("nobody", "pw-1")
        with pytest.raises(ValueError, match="empty"):
            await book.create_account("jack", "")
        assert not await book.account_exists("jack")
        assert not await book.change_password("ivy", "wrong", "pw-3")
        with pytest.raises(ValueError, match="at most"):
            await book.change_password("ivy", "pw-1", "x" * 1025)
        assert await book.change_password("ivy", "pw-1", "pw-3")
        assert await book.verify_password("ivy", "pw-3")
        assert not await book.verify_password("ivy", "pw-1")


async def test_of_two_changes_with_the_same_old_password_one_wins(broker_url: str) -> None:
    async with (
        RedisAccounts.open(broker_url, prefix="unit") as one,
        RedisAccounts.open(broker_url, prefix="unit") as two,  # as on two nodes
    ):
        await one.create_account("kim", "old")
        results: dict[str, bool] = {}

        async def change(book: RedisAccounts, new: str) -> None:
            results[new] = await book.change_password("kim", "old", new)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(change, one, "new-1")
            nursery.start_soon(change, two, "new-2")
        assert sorted(results.values()) == [False, True]
        (winner,) = [new for new, won in results.items() if won]
        assert await two.verify_password("kim", winner)
        assert not await one.verify_password("kim", "old")


async def test_a_value_that_is_not_ours_never_matches(broker_url: str) -> None:
    async with RedisAccounts.open(broker_url, prefix="unit") as book:
        await book._client.hset(book.key, {"lee": b"not json"})
        assert await book.account_exists("lee")
        assert not await book.verify_password("lee", "not json")
        assert not await book.change_password("lee", "anything", "new")


async def test_copy_in_adds_only_names_not_there(broker_url: str, tmp_path: Path) -> None:
    async with Store.open(tmp_path / "node.db") as store:
        await store.create_account("max", "pw-max-here")
        await store.create_account("nia", "pw-nia")
        async with RedisAccounts.open(broker_url, prefix="unit") as book:
            await book.create_account("max", "pw-max-shared")
            assert await move_in(store, book) == 1
            assert await move_in(store, book) == 0  # again at the next start: nothing new
            assert await book.verify_password("nia", "pw-nia")
            assert await book.verify_password("max", "pw-max-shared")
            assert not await book.verify_password("max", "pw-max-here")


async def test_redis_down_is_a_store_error_naming_redis_not_a_crash(
    redis_server: RedisServer,
) -> None:
    async with RedisAccounts.open(redis_server.url, prefix="unit") as book:
        await book.create_account("olga", "pw")
        await trio.to_thread.run_sync(redis_server.stop)
        for call in (
            book.account_exists("olga"),
            book.verify_password("olga", "pw"),
            book.create_account("pia", "pw"),
            book.change_password("olga", "pw", "new"),
        ):
            with pytest.raises(StoreError, match=r"cannot (read|write) the accounts in Redis"):
                await call
        await trio.to_thread.run_sync(redis_server.start)
        assert await book.verify_password("olga", "pw")  # the same client, reconnected


async def test_a_redis_that_does_not_answer_is_refused_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import trio_chat.broker.accounts as accounts

    monkeypatch.setattr(accounts, "TIMEOUT", 0.2)
    with trio.socket.socket() as silent:  # accepts connections, never answers
        await silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        async with RedisAccounts.open(f"redis://127.0.0.1:{port}/0") as book:
            with pytest.raises(StoreError, match="TooSlowError"):
                await book.account_exists("quinn")


def test_log_lines_never_show_a_redis_password() -> None:
    assert without_credentials("redis://:s3cret@db.example:6380/2") == "redis://db.example:6380/2"
    assert without_credentials("rediss://user:pw@host/0") == "rediss://host/0"
    assert without_credentials("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
