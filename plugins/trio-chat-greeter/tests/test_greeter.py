"""Tests of the greeter: templates directly, greetings and /greeting over real sockets."""

from __future__ import annotations

from typing import Any

import pytest
import trio_chat_greeter
from trio_chat_greeter import DEFAULT_GREETING, MAX_GREETING_LENGTH, Greeter, render

from trio_chat.testing import ChatClient, open_client, open_test_server


def is_greeting(event: Any) -> bool:
    return event.TYPE == "info" and (event.data or {}).get("event") == "greeting"


async def greeting(client: ChatClient) -> str:
    """The text of the next greeting ``client`` receives."""
    event = await client.expect("info", is_greeting)
    text: str = event.text
    return text


def greetings_in(client: ChatClient) -> list[str]:
    """Every greeting ``client`` has received so far."""
    return [event.text for event in client.history if is_greeting(event)]  # type: ignore[attr-defined]


async def sync(sender: ChatClient, *receivers: ChatClient) -> None:
    """Wait until everyone saw a fresh line from ``sender``, so all before it has arrived.

    Everything the server queued for a client earlier (a misdirected greeting included)
    reaches it before this line: outboxes are first in, first out.
    """
    await sender.say("sync")
    for client in (sender, *receivers):
        await client.expect("message", lambda e: e.text == "sync")


# ---------------------------------------------------------------------- templates, no server


@pytest.mark.parametrize(
    ("template", "count", "text"),
    [
        (DEFAULT_GREETING, 1, "Welcome to #lobby, alice! 1 person here."),
        (DEFAULT_GREETING, 3, "Welcome to #lobby, alice! 3 people here."),
        ("{nick} makes {count}", 2, "alice makes 2"),
        ("{unknown} {0} {nick.__class__} {{nick}}", 1, "{unknown} {0} {nick.__class__} {alice}"),
    ],
)
def test_render(template: str, count: int, text: str) -> None:
    assert render(template, nick="alice", room="#lobby", count=count) == text


def test_greetings_are_per_room_and_case_insensitive() -> None:
    greeter = Greeter()
    greeter.set_greeting("#Games", "Play nice, {nick}.")
    assert greeter.greeting_for("#games") == "Play nice, {nick}."
    assert greeter.greeting_for("#lobby") == DEFAULT_GREETING


# ------------------------------------------------------------------- chat, over real sockets


async def test_the_joining_user_is_greeted() -> None:
    async with open_test_server(Greeter()) as chat:
        async with open_client(chat, "alice") as alice:
            assert await greeting(alice) == "Welcome to #lobby, alice! 1 person here."
            async with open_client(chat, "bob") as bob:
                assert await greeting(bob) == "Welcome to #lobby, bob! 2 people here."
                async with open_client(chat, "carol") as carol:
                    assert await greeting(carol) == "Welcome to #lobby, carol! 3 people here."


async def test_others_are_not_greeted_for_a_newcomer() -> None:
    async with (
        open_test_server(Greeter()) as chat,
        open_client(chat, "alice") as alice,
    ):
        await greeting(alice)
        async with open_client(chat, "bob") as bob:
            await greeting(bob)
            await alice.expect("join", lambda e: e.nick == "bob")
            await sync(bob, alice)
            assert greetings_in(alice) == ["Welcome to #lobby, alice! 1 person here."]
            assert greetings_in(bob) == ["Welcome to #lobby, bob! 2 people here."]


async def test_joining_another_room_greets_for_that_room() -> None:
    async with open_test_server(Greeter()) as chat, open_client(chat, "alice") as alice:
        await greeting(alice)
        await alice.command("/join #games")
        assert await greeting(alice) == "Welcome to #games, alice! 1 person here."


async def test_greeting_set_is_what_the_next_newcomer_sees() -> None:
    async with (
        open_test_server(Greeter()) as chat,
        open_client(chat, "alice") as alice,
    ):
        await greeting(alice)
        await alice.command("/greeting Hi {nick}, you make {count}. Be kind!")
        reply = await alice.expect("info", lambda e: e.text.startswith("greeting for"))
        assert reply.text == (
            "greeting for #lobby set; newcomers will read: Hi alice, you make 1. Be kind!"
        )
        assert reply.data == {"room": "#lobby", "template": "Hi {nick}, you make {count}. Be kind!"}
        async with open_client(chat, "bob") as bob:
            assert await greeting(bob) == "Hi bob, you make 2. Be kind!"


async def test_greeting_without_text_shows_the_current_one() -> None:
    async with open_test_server(Greeter()) as chat, open_client(chat, "alice") as alice:
        await alice.command("/greeting")
        reply = await alice.expect("info", lambda e: e.text.startswith("greeting for"))
        assert reply.text == f"greeting for #lobby: {DEFAULT_GREETING}"
        await alice.command("/greeting   Hello, {nick}.  ")
        await alice.expect("info", lambda e: e.text.startswith("greeting for #lobby set"))
        await alice.command("/greeting")
        reply = await alice.expect("info", lambda e: e.text.startswith("greeting for"))
        assert reply.text == "greeting for #lobby: Hello, {nick}."


async def test_greeting_only_changes_the_room_it_is_set_in() -> None:
    async with open_test_server(Greeter()) as chat, open_client(chat, "alice") as alice:
        await alice.command("/join #games")
        await greeting(alice)
        await alice.command("/greeting Game on, {nick}!")
        await alice.expect("info", lambda e: e.text.startswith("greeting for #games set"))
        async with open_client(chat, "bob") as bob:
            assert await greeting(bob) == "Welcome to #lobby, bob! 2 people here."
            await bob.command("/join #games")
            assert await greeting(bob) == "Game on, bob!"


async def test_greeting_refuses_too_long_and_other_rooms() -> None:
    async with open_test_server(Greeter()) as chat, open_client(chat, "alice") as alice:
        await alice.command("/greeting " + "x" * (MAX_GREETING_LENGTH + 1))
        error = await alice.expect("error")
        assert error.code == "bad_arguments"
        # A command frame may name any room: setting the greeting of one you are not in fails.
        await alice.send({"type": "command", "name": "greeting", "args": "mine", "room": "#else"})
        error = await alice.expect("error")
        assert (error.code, error.text) == ("not_in_room", "you are not in #else")


async def test_the_module_is_a_plugin_using_the_default_greeter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trio_chat_greeter, "default_greeter", Greeter("Hello {nick}"))
    async with open_test_server(trio_chat_greeter) as chat, open_client(chat, "alice") as alice:
        assert await greeting(alice) == "Hello alice"
        await alice.command("/greeting Hey {nick}")
        await alice.expect("info", lambda e: e.text.startswith("greeting for #lobby set"))
        assert trio_chat_greeter.default_greeter.greeting_for("#lobby") == "Hey {nick}"
