"""Mentions: the rule of what names a user (:mod:`trio_chat.mentions`, which the terminal
client highlights by) and ``/mentions`` (the stored lines naming you), over real sockets
and across two nodes of a broker."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from test_broker import nodes

from trio_chat.mentions import MentionFinder, nick_candidates
from trio_chat.names import name_key
from trio_chat.testing import ChatClient, local_config, open_client, open_test_server

# ----------------------------------------------------------------------- the finder


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("alice: look", {"alice"}),
        ("@alice look", {"alice"}),
        ("thanks, alice.", {"alice"}),
        ("(alice) and Bob!", {"alice", "bob"}),
        ("ALICE, al1ce, @Alice: once each", {"alice"}),
        ("alice's idea", {"alice"}),
        ("alice/bob", {"alice", "bob"}),
        ("zoe and carol_?", {"Zoë", "carol_"}),
        ("carol said hi", set()),  # carol_ is not carol
        ("alicealice 2alice xalice --alice", set()),
        ("alice" + "x" * 40, set()),  # a long word names nobody
        ("nobody here", set()),
        ("", set()),
    ],
)
def test_the_users_a_line_names(text: str, named: set[str]) -> None:
    finder = MentionFinder()
    for nick in ("alice", "bob", "carol_", "Zoë"):
        for _ in range(2):  # the second time from the cache: the same answer
            assert finder.names_any(text, {name_key(nick)}) is (nick in named)


def test_the_word_cache_is_bounded() -> None:
    finder = MentionFinder(cache_size=3)
    for n in range(10):
        assert not finder.names_any(f"word{n}", {name_key("alice")})
    assert len(finder._keys) <= 3
    assert finder.names_any("hey @ALICE:", {name_key("alice")})
    assert nick_candidates("x" * 25) == () and nick_candidates("--alice") == ()
    assert nick_candidates("alice/bob") == (name_key("alice"), name_key("bob"))


# --------------------------------------------------------------------- over sockets


async def mentions_of(client: ChatClient, args: str = "") -> Any:
    ref = f"m{len(client.history)}"
    await client.send({"type": "command", "name": "mentions", "args": args, "ref": ref})
    while True:
        event = await client.receive()
        if getattr(event, "ref", None) == ref:
            return event


async def test_mentions_lists_lines_naming_you_even_those_said_while_you_were_away() -> None:
    async with (
        open_test_server() as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "carol") as carol,
    ):
        await alice.join("#dev")
        async with open_client(chat, "bob") as bob:
            await bob.join("#dev")
            await alice.say("bob: first", room="#dev")
            await bob.say("I am bob, naming myself")
            await bob.expect("message", lambda e: e.text == "I am bob, naming myself")
        await carol.expect("leave", lambda e: e.nick == "bob")  # his nick is free again
        # bob is gone: these name him all the same.
        await alice.say("@BOB are you there?", room="#dev")
        # carol's line must come after alice's: wait for alice's to be numbered.
        await alice.expect("message", lambda e: e.text == "@BOB are you there?")
        await carol.say("bobby is not bob's name")
        await carol.command("/join #elsewhere")
        await carol.say("bob: in a room he is not in", room="#elsewhere")
        await carol.expect("message", lambda e: e.room == "#elsewhere")
        async with open_client(chat, "bob") as bob:
            await bob.join("#dev")
            reply = await mentions_of(bob)
            assert reply.TYPE == "info"
            found = reply.data["mentions"]
            assert [m["text"] for m in found] == [
                "bobby is not bob's name",
                "@BOB are you there?",
                "bob: first",
            ]  # newest first; not his own line, nor #elsewhere's
            assert [m["room"] for m in found] == ["#lobby", "#dev", "#dev"]
            lines = reply.text.splitlines()
            assert lines[0] == "3 lines naming bob:"
            assert lines[1].endswith("#dev <alice> bob: first")  # oldest first
            assert lines[3].endswith("#lobby <carol> bobby is not bob's name")
            one = await mentions_of(bob, "1")
            assert [m["text"] for m in one.data["mentions"]] == ["bobby is not bob's name"]
            for bad in ("x", "-1", "0"):
                refused = await mentions_of(bob, bad)
                assert (refused.TYPE, refused.code) == ("error", "bad_arguments")
        async with open_client(chat, "dave") as dave:
            none = await mentions_of(dave)
            assert (none.text, none.data) == ("no lines of your rooms name dave", {"mentions": []})


async def test_mentions_of_your_account_when_you_go_by_another_nick() -> None:
    async with (
        open_test_server() as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await alice.command("/register sesame")
        await alice.expect("info", lambda e: "registered" in e.text)
        await bob.say("alice: the account one")
        await alice.command("/nick alicia")
        await alice.expect("nick")
        await bob.say("alicia: the nick one")
        await alice.expect("message", lambda e: e.text == "alicia: the nick one")
        found = (await mentions_of(alice)).data["mentions"]
        assert [m["text"] for m in found] == ["alicia: the nick one", "alice: the account one"]


async def test_mentions_without_a_database_is_no_store() -> None:
    async with (
        open_test_server(config=local_config(db=None)) as chat,
        open_client(chat, "alice") as alice,
    ):
        reply = await mentions_of(alice)
        assert (reply.TYPE, reply.code) == ("error", "no_store")


async def test_mentions_cross_two_nodes(broker_url: str) -> None:
    async with nodes(broker_url, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(open_client(a, "alice"))
        bob = await stack.enter_async_context(open_client(b, "bob"))
        await alice.expect("join", lambda e: e.nick == "bob")
        await alice.say("@bob: from the other node")
        await bob.expect("message", lambda e: e.text == "@bob: from the other node")
        await bob.say("alice, back to you")
        await alice.expect("message", lambda e: e.text == "alice, back to you")
        # Each node stored the lines: /mentions answers on either.
        found = (await mentions_of(bob)).data["mentions"]
        assert [m["text"] for m in found] == ["@bob: from the other node"]
        found = (await mentions_of(alice)).data["mentions"]
        assert [m["text"] for m in found] == ["alice, back to you"]


async def test_mentions_newer_than_your_read_marker_are_unread() -> None:
    async with (
        open_test_server() as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await bob.say("alice: read this")
        seen = await alice.expect("message", lambda e: e.text == "alice: read this")
        await alice.send({"type": "read", "id": seen.id})
        await bob.say("alice: and this one is new")
        await alice.expect("message", lambda e: e.text == "alice: and this one is new")
        reply = await mentions_of(alice)
        assert [(m["text"], m.get("unread")) for m in reply.data["mentions"]] == [
            ("alice: and this one is new", True),
            ("alice: read this", None),
        ]
        lines = reply.text.splitlines()
        assert lines[0] == "2 lines naming alice (* not read yet):"
        assert lines[1].startswith("  [") and lines[1].endswith("<bob> alice: read this")
        assert lines[2].startswith("* [") and lines[2].endswith("<bob> alice: and this one is new")
