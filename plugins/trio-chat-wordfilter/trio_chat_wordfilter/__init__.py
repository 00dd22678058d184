"""Mask rude words, refuse shouting and blocked phrases: a ``filter_message`` plugin.

* A configured word, matched case-insensitively as a whole word, is masked:
  ``darn`` becomes ``d**n`` (``Darnell`` is left alone).
* A message that is all capitals with at least ``shout_letters`` letters, or that contains a
  blocked phrase, is refused: the sender gets an ``error`` with code ``message_refused`` and
  nobody sees the line.

The plugin is a :class:`WordFilter` instance, so a server (or a test) can register one with
its own lists: ``ChatServer(plugins=[WordFilter(words=["darn"])])``. The module itself is a
plugin too (what the ``trio_chat`` entry point and ``--plugin trio_chat_wordfilter`` load): it
delegates to :data:`default_filter`, configured from the environment when first imported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from trio_chat import CommandError, hookimpl

#: Comma-separated words to mask, for the default filter (unset: :data:`DEFAULT_WORDS`).
WORDS_VARIABLE = "TRIO_CHAT_WORDFILTER_WORDS"
#: Comma-separated phrases to refuse, for the default filter (unset: :data:`DEFAULT_BLOCKED`).
BLOCKED_VARIABLE = "TRIO_CHAT_WORDFILTER_BLOCKED"

DEFAULT_WORDS = ("darn", "heck", "frak")
DEFAULT_BLOCKED = ("buy followers", "free crypto")
#: All-capital messages with at least this many letters are refused as shouting.
DEFAULT_SHOUT_LETTERS = 12

REFUSED = "message_refused"


def mask(word: str) -> str:
    """``darn`` -> ``d**n``: keep the first and last character, star the rest (not spaces).

    Two-character words keep only the first (``ok`` -> ``o*``), one-character words none.
    """
    if len(word) <= 1:
        return "*" * len(word)
    if len(word) == 2:
        return word[0] + "*"
    middle = "".join(ch if ch.isspace() else "*" for ch in word[1:-1])
    return word[0] + middle + word[-1]


def _whole_words(phrases: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive pattern matching any phrase as whole words (any run of spaces)."""
    alternatives = {r"\s+".join(re.escape(part) for part in p.split()) for p in phrases}
    alternatives.discard("")
    if not alternatives:
        return None
    # Longest first, so "heck" does not win over "heckin" when both are listed.
    ordered = sorted(alternatives, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(ordered) + r")(?!\w)", re.IGNORECASE)


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


class WordFilter:
    """A message filter with its own word list, blocked phrases and shouting threshold.

    ``shout_letters=None`` allows shouting.
    """

    def __init__(
        self,
        words: Iterable[str] = DEFAULT_WORDS,
        *,
        blocked: Iterable[str] = DEFAULT_BLOCKED,
        shout_letters: int | None = DEFAULT_SHOUT_LETTERS,
    ) -> None:
        self.words = tuple(w.strip() for w in words if w.strip())
        self.blocked = tuple(" ".join(p.split()) for p in blocked if p.strip())
        if shout_letters is not None and shout_letters < 1:
            raise ValueError(f"shout_letters must be at least 1 (or None), not {shout_letters}")
        self.shout_letters = shout_letters
        self._words = _whole_words(self.words)
        self._blocked = _whole_words(self.blocked)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WordFilter:
        """A filter configured by :data:`WORDS_VARIABLE` and :data:`BLOCKED_VARIABLE`.

        An unset variable keeps the default list; a set but empty one turns that check off.
        """
        env = os.environ if environ is None else environ
        words = env.get(WORDS_VARIABLE)
        blocked = env.get(BLOCKED_VARIABLE)
        return cls(
            DEFAULT_WORDS if words is None else _split_list(words),
            blocked=DEFAULT_BLOCKED if blocked is None else _split_list(blocked),
        )

    def is_shouting(self, text: str) -> bool:
        """All capitals (no lower-case letter at all) and at least ``shout_letters`` of them."""
        if self.shout_letters is None:
            return False
        capitals = 0
        for ch in text:
            if ch.islower():
                return False
            capitals += ch.isupper()
        return capitals >= self.shout_letters

    def apply(self, text: str) -> str:
        """The text with words masked; raises :class:`CommandError` to refuse it."""
        if self._blocked is not None:
            found = self._blocked.search(text)
            if found is not None:
                raise CommandError(f"message refused: {found[0]!r} is not allowed here", REFUSED)
        if self.is_shouting(text):
            raise CommandError("message refused: please don't shout (it is all capitals)", REFUSED)
        if self._words is None:
            return text
        return self._words.sub(lambda match: mask(match[0]), text)

    @hookimpl
    def filter_message(self, text: str) -> str | None:
        filtered = self.apply(text)
        return None if filtered == text else filtered

    def __repr__(self) -> str:
        return (
            f"WordFilter(words={list(self.words)!r}, blocked={list(self.blocked)!r}, "
            f"shout_letters={self.shout_letters!r})"
        )


#: The filter the module-level hook uses (and so the entry point and ``--plugin``).
default_filter = WordFilter.from_env()


@hookimpl
def filter_message(text: str) -> str | None:
    """The module as a plugin: :data:`default_filter` decides."""
    return default_filter.filter_message(text)


__all__ = [
    "BLOCKED_VARIABLE",
    "DEFAULT_BLOCKED",
    "DEFAULT_SHOUT_LETTERS",
    "DEFAULT_WORDS",
    "REFUSED",
    "WORDS_VARIABLE",
    "WordFilter",
    "default_filter",
    "filter_message",
    "mask",
]
