"""Tests of the word filter: its rules directly, then what users see over real sockets."""

from __future__ import annotations

import pytest
import trio_chat_wordfilter
from trio_chat_wordfilter import (
    BLOCKED_VARIABLE,
    DEFAULT_BLOCKED,
    DEFAULT_WORDS,
    WORDS_VARIABLE,
    WordFilter,
    mask,
)

from trio_chat import CommandError
from trio_chat.testing import ChatClient, open_client, open_test_server


def make_filter() -> WordFilter:
    return WordFilter(words=["darn", "gosh"], blocked=["buy now"], shout_letters=10)


async def only_marker_follows(sender: ChatClient, *receivers: ChatClient) -> None:
    """Prove nothing was said: a fresh line is the first message everyone sees next.

    The sender's frames are handled in order and every outbox is first in, first out, so a
    line that had slipped through would arrive before this one.
    """
    await sender.say("marker")
    for client in (sender, *receivers):
        message = await client.expect("message")
        assert (message.nick, message.text) == (sender.nick, "marker")


# ----------------------------------------------------------------------- rules, no server


@pytest.mark.parametrize(
    ("word", "masked"),
    [("darn", "d**n"), ("DARN", "D**N"), ("gosh", "g**h"), ("ok", "o*"), ("a", "*")],
)
def test_mask(word: str, masked: str) -> None:
    assert mask(word) == masked


@pytest.mark.parametrize(
    ("text", "filtered"),
    [
        ("well darn it", "well d**n it"),
        ("Darn! DARN. dArN?", "D**n! D**N. d**N?"),
        ("oh gosh, darn", "oh g**h, d**n"),
        ("darn't", "d**n't"),
        # Whole words only: these stay as they are.
        ("Darnell is darning socks", "Darnell is darning socks"),
        ("goshawk", "goshawk"),
        ("darn_it", "darn_it"),
        ("hello there", "hello there"),
    ],
)
def test_apply_masks_whole_words(text: str, filtered: str) -> None:
    assert make_filter().apply(text) == filtered


@pytest.mark.parametrize(
    "text",
    [
        "BUY NOW while it lasts",
        "you should buy   now",
        "STOP SHOUTING AT ME",
        "I AM VERY ANGRY!!!",
    ],
)
def test_apply_refuses(text: str) -> None:
    with pytest.raises(CommandError) as caught:
        make_filter().apply(text)
    assert caught.value.code == "message_refused"


@pytest.mark.parametrize(
    "text",
    [
        "OK",  # capitals, but too few to count as shouting
        "LOL WHAT",
        "I LOVE NASA and its rockets",  # some lower case: not only shouting
        "1234567890 !!!",  # no letters at all
        "\u4f60\u597d\u4e16\u754c\u4f60\u597d\u4e16\u754c\u4f60\u597d\u4e16\u754c",  # uncased
        "they buy nowhere",  # "buy now" but not as whole words
    ],
)
def test_apply_lets_through(text: str) -> None:
    assert make_filter().apply(text) == text
    assert make_filter().filter_message(text) is None


def test_shouting_can_be_allowed() -> None:
    assert WordFilter(shout_letters=None).apply("STOP SHOUTING AT ME") == "STOP SHOUTING AT ME"


def test_from_env_defaults_when_unset() -> None:
    default = WordFilter.from_env({})
    assert (default.words, default.blocked) == (DEFAULT_WORDS, DEFAULT_BLOCKED)


def test_from_env_reads_comma_separated_lists() -> None:
    configured = WordFilter.from_env(
        {WORDS_VARIABLE: " drat, ,Blast ,", BLOCKED_VARIABLE: "spam  eggs"}
    )
    assert configured.words == ("drat", "Blast")
    assert configured.blocked == ("spam eggs",)
    assert configured.apply("blast, DRAT and darn") == "b***t, D**T and darn"


def test_from_env_empty_variable_turns_the_list_off() -> None:
    configured = WordFilter.from_env({WORDS_VARIABLE: "", BLOCKED_VARIABLE: ""})
    assert configured.apply("darn, buy followers") == "darn, buy followers"


# ------------------------------------------------------------------- chat, over real sockets


async def test_masked_text_reaches_the_others() -> None:
    async with (
        open_test_server(make_filter()) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await alice.say("well darn it, GOSH")
        for client in (bob, alice):
            message = await client.expect("message")
            assert (message.nick, message.text) == ("alice", "well d**n it, G**H")


async def test_actions_are_filtered_too() -> None:
    async with (
        open_test_server(make_filter()) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await alice.command("/me says darn")
        message = await bob.expect("message")
        assert (message.kind, message.text) == ("action", "says d**n")


@pytest.mark.parametrize(
    ("text", "why"),
    [("THIS IS ALL SHOUTING", "don't shout"), ("please Buy Now", "'Buy Now' is not allowed")],
)
async def test_refused_message_reaches_nobody(text: str, why: str) -> None:
    async with (
        open_test_server(make_filter()) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await alice.say(text)
        error = await alice.expect("error")
        assert error.code == "message_refused"
        assert why in error.text
        await only_marker_follows(alice, bob)
        assert not [event for event in bob.history if event.TYPE == "error"]


async def test_non_matching_text_is_untouched() -> None:
    text = "Darnell says: I LOVE NASA, and it's 100% fine \u2764"
    async with (
        open_test_server(make_filter()) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await alice.say(text)
        message = await bob.expect("message")
        assert message.text == text


async def test_the_module_is_a_plugin_using_the_default_filter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trio_chat_wordfilter, "default_filter", WordFilter(["drat"]))
    async with (
        open_test_server(trio_chat_wordfilter) as chat,
        open_client(chat, "alice") as alice,
    ):
        await alice.say("drat and darn")
        message = await alice.expect("message")
        assert message.text == "d**t and darn"
