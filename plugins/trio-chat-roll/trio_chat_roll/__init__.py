"""``/roll [NdM[+K]]``: roll dice and show the result to the room, as an action by the caller.

An example trio-chat plugin: one command on the ``register_commands`` hook. The dice logic is
plain functions (:func:`parse_dice`, :func:`roll_dice`) that tests call without a server, and
the random source is the module-level :data:`rng`, so a test can swap in a seeded one.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from trio_chat import CommandContext, CommandError, hookimpl
from trio_chat.commands import RegisterCommand

MAX_DICE = 100
MAX_SIDES = 1000
MAX_MODIFIER = 1000
DEFAULT_DICE = "1d6"
USAGE = "[NdM[+K]]"

#: Where /roll gets its randomness. Looked up on every roll, so tests may replace it with a
#: seeded ``random.Random`` (``monkeypatch.setattr(trio_chat_roll, "rng", Random(42))``).
rng = random.Random()

_DICE_SPEC = re.compile(r"([0-9]*)d([0-9]+)(?:([+-])([0-9]+))?", re.IGNORECASE)


class BadDice(ValueError):
    """A dice spec that cannot be rolled; the message says why, for the user."""


@dataclass(frozen=True, slots=True)
class Dice:
    """``count`` dice of ``sides`` sides, plus ``modifier`` (which may be negative)."""

    count: int
    sides: int
    modifier: int = 0

    def __str__(self) -> str:
        bonus = f"{self.modifier:+d}" if self.modifier else ""
        return f"{self.count}d{self.sides}{bonus}"


@dataclass(frozen=True, slots=True)
class Roll:
    """What the dice showed."""

    dice: Dice
    faces: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.faces) + self.dice.modifier

    def __str__(self) -> str:
        """``2d6+1: 3 + 5 + 1 = 9``; a lone die without modifier is just ``1d6: 4``."""
        shown = " + ".join(str(face) for face in self.faces)
        modifier = self.dice.modifier
        if modifier:
            shown += f" {'+' if modifier > 0 else '-'} {abs(modifier)}"
        if len(self.faces) == 1 and not modifier:
            return f"{self.dice}: {shown}"
        return f"{self.dice}: {shown} = {self.total}"


def _bounded(digits: str, low: int, high: int, what: str) -> int:
    # Compare lengths before int(): a spec of thousands of digits is refused, not converted.
    significant = digits.lstrip("0") or "0"
    value = int(significant) if len(significant) <= len(str(high)) else high + 1
    if not low <= value <= high:
        raise BadDice(f"{what} must be {low} to {high}, not {significant}")
    return value


def parse_dice(spec: str) -> Dice:
    """Parse ``NdM``, ``NdM+K`` or ``NdM-K`` (``N`` defaults to 1; blank means ``1d6``).

    Raises :class:`BadDice` for anything else, or for more than :data:`MAX_DICE` dice, more
    than :data:`MAX_SIDES` sides or a modifier beyond :data:`MAX_MODIFIER`.
    """
    compact = "".join(spec.split()) or DEFAULT_DICE
    match = _DICE_SPEC.fullmatch(compact)
    if match is None:
        raise BadDice(f"{spec.strip()!r} is not a dice spec like 2d6 or 1d20+3")
    count_digits, side_digits, sign, modifier_digits = match.groups()
    count = _bounded(count_digits or "1", 1, MAX_DICE, "the number of dice")
    sides = _bounded(side_digits, 2, MAX_SIDES, "the number of sides")
    modifier = 0
    if modifier_digits is not None:
        modifier = _bounded(modifier_digits, 0, MAX_MODIFIER, "the modifier")
        if sign == "-":
            modifier = -modifier
    return Dice(count, sides, modifier)


def roll_dice(dice: Dice, source: random.Random) -> Roll:
    """Roll ``dice`` with ``source``: the same seed gives the same roll."""
    return Roll(dice, tuple(source.randint(1, dice.sides) for _ in range(dice.count)))


def roll_command(ctx: CommandContext) -> None:
    try:
        dice = parse_dice(ctx.args)
    except BadDice as exc:
        raise CommandError(
            f"{exc}; usage: {ctx.spec.synopsis} (e.g. /roll 2d6+1)", "bad_arguments"
        ) from None
    ctx.action(f"rolls {roll_dice(dice, rng)}")


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    register(
        "roll",
        roll_command,
        help=f"Roll dice for the room: /roll 2d6+1 (default {DEFAULT_DICE})",
        usage=USAGE,
    )


__all__ = [
    "MAX_DICE",
    "MAX_MODIFIER",
    "MAX_SIDES",
    "BadDice",
    "Dice",
    "Roll",
    "parse_dice",
    "register_commands",
    "rng",
    "roll_command",
    "roll_dice",
]
