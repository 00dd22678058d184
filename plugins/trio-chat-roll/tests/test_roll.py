"""Tests of /roll: the dice functions directly, the command over real sockets."""

from __future__ import annotations

import random
import re

import pytest
import trio_chat_roll
from trio_chat_roll import BadDice, Dice, Roll, parse_dice, roll_dice

from trio_chat.testing import open_client, open_test_server

# "rolls 2d6: 3 + 5 = 8" (no modifier): the faces, then the total.
ROLLED = re.compile(r"rolls (\d+)d(\d+): ([\d + ]+?)(?: = (\d+))?")


def faces_of(text: str, count: int, sides: int) -> list[int]:
    match = ROLLED.fullmatch(text)
    assert match is not None, text
    assert (int(match[1]), int(match[2])) == (count, sides)
    faces = [int(face) for face in match[3].split(" + ")]
    assert len(faces) == count
    assert all(1 <= face <= sides for face in faces), faces
    if count > 1:
        assert int(match[4]) == sum(faces)
    return faces


# ----------------------------------------------------------------------- dice, no server


@pytest.mark.parametrize(
    ("spec", "dice"),
    [
        ("", Dice(1, 6)),
        ("   ", Dice(1, 6)),
        ("2d6", Dice(2, 6)),
        ("d20", Dice(1, 20)),
        ("3D8+2", Dice(3, 8, 2)),
        ("1d20-1", Dice(1, 20, -1)),
        (" 2d6 + 1 ", Dice(2, 6, 1)),
        ("007d010", Dice(7, 10)),
        ("100d1000+1000", Dice(100, 1000, 1000)),
        ("1d2-1000", Dice(1, 2, -1000)),
    ],
)
def test_parse_dice(spec: str, dice: Dice) -> None:
    assert parse_dice(spec) == dice


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("101d6", "number of dice must be 1 to 100, not 101"),
        ("0d6", "number of dice must be 1 to 100, not 0"),
        ("1d1001", "number of sides must be 2 to 1000, not 1001"),
        ("1d1", "number of sides must be 2 to 1000, not 1"),
        ("1d6+1001", "modifier must be 0 to 1000, not 1001"),
        ("9" * 5000 + "d6", "number of dice must be 1 to 100"),
        ("abc", "not a dice spec"),
        ("2d", "not a dice spec"),
        ("2d6+", "not a dice spec"),
        ("2d6 please", "not a dice spec"),
        ("-1d6", "not a dice spec"),
        ("\u0663d6", "not a dice spec"),  # ARABIC-INDIC DIGIT THREE: digits are ASCII only
    ],
)
def test_parse_dice_refuses(spec: str, reason: str) -> None:
    with pytest.raises(BadDice, match=re.escape(reason)):
        parse_dice(spec)


def test_roll_dice_is_deterministic_for_a_seed() -> None:
    dice = Dice(50, 20, 3)
    first = roll_dice(dice, random.Random(1234))
    assert first == roll_dice(dice, random.Random(1234))
    assert len(first.faces) == 50
    assert all(1 <= face <= 20 for face in first.faces)
    assert first.total == sum(first.faces) + 3


def test_roll_dice_covers_every_face() -> None:
    source = random.Random(7)
    seen = {face for _ in range(200) for face in roll_dice(Dice(1, 6), source).faces}
    assert seen == {1, 2, 3, 4, 5, 6}


@pytest.mark.parametrize(
    ("roll", "text"),
    [
        (Roll(Dice(1, 6), (4,)), "1d6: 4"),
        (Roll(Dice(2, 6), (3, 5)), "2d6: 3 + 5 = 8"),
        (Roll(Dice(1, 20, 2), (14,)), "1d20+2: 14 + 2 = 16"),
        (Roll(Dice(2, 4, -3), (1, 1)), "2d4-3: 1 + 1 - 3 = -1"),
    ],
)
def test_roll_text(roll: Roll, text: str) -> None:
    assert str(roll) == text


# ------------------------------------------------------------------ the command, over TCP


async def test_roll_is_an_action_the_whole_room_sees() -> None:
    async with (
        open_test_server(trio_chat_roll) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await alice.command("/roll 2d6")
        seen_by_bob = await bob.expect("message")
        seen_by_alice = await alice.expect("message")
        assert seen_by_bob == seen_by_alice
        assert (seen_by_bob.nick, seen_by_bob.kind, seen_by_bob.room) == (
            "alice",
            "action",
            "#lobby",
        )
        faces_of(seen_by_bob.text, 2, 6)


async def test_roll_defaults_to_one_six_sided_die() -> None:
    async with open_test_server(trio_chat_roll) as chat, open_client(chat, "alice") as alice:
        for _ in range(20):
            await alice.command("/roll")
            message = await alice.expect("message")
            faces_of(message.text, 1, 6)


@pytest.mark.parametrize("spec", ["101d6", "1d1001", "two dice", "1d6+5000"])
async def test_bad_dice_spec_is_an_error_for_the_caller_only(spec: str) -> None:
    async with (
        open_test_server(trio_chat_roll) as chat,
        open_client(chat, "alice") as alice,
        open_client(chat, "bob") as bob,
    ):
        await alice.command(f"/roll {spec}")
        error = await alice.expect("error")
        assert error.code == "bad_arguments"
        assert "usage: /roll [NdM[+K]]" in error.text
        # Alice's next line is queued behind anything the failed roll could have sent, so it
        # being the first message either of them sees proves the roll reached nobody.
        await alice.say("after the roll")
        for client in (alice, bob):
            message = await client.expect("message")
            assert message.text == "after the roll"
        assert not [event for event in bob.history if event.TYPE == "error"]


async def test_roll_is_deterministic_with_a_seeded_rng(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = "rolls " + str(roll_dice(Dice(3, 6, 1), random.Random(2024)))
    async with open_test_server(trio_chat_roll) as chat, open_client(chat, "alice") as alice:
        for _ in range(2):
            monkeypatch.setattr(trio_chat_roll, "rng", random.Random(2024))
            await alice.command("/roll 3d6+1")
            message = await alice.expect("message")
            assert message.text == expected


async def test_roll_is_listed_in_help() -> None:
    async with open_test_server(trio_chat_roll) as chat, open_client(chat, "alice") as alice:
        await alice.command("/help roll")
        info = await alice.expect("info")
        assert info.text.startswith("/roll [NdM[+K]] - Roll dice")
