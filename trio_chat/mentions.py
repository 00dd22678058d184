"""Mentions: whether a chat line names a user (pure, no I/O).

A line names ``alice`` when one of its words is her nick: ``alice``, ``@alice``,
``alice:``, ``alice,``, ``(alice)``, ``alice's``; compared as nicks are
(:func:`~trio_chat.names.name_key`: ``ALICE`` and ``al1ce`` name her too).

The server does not work this out for the lines it delivers: a client knows who it is
and flags what names it (the terminal client with this module, the browser page with
its own copy of the rule), as IRC clients highlight their nick. Asked of every line said,
the scan cost the hub more than a tenth of its fan-out in small rooms, to tell each
receiver what it could tell itself. The server asks it where only it can answer:
``/mentions``, over stored lines (:func:`trio_chat.search.find_mentions`).

It is built to cost little per line all the same: a line is split on whitespace (C
speed) and each word looked up in a dict of the words seen before, holding the name keys
each word could be, so the look-alike skeleton (about 2 us) is worked out once per new
word. The dict is bounded (cleared when full) and kept apart from ``name_key``'s own
cache, which rooms and nicks need. A word longer than :data:`LONGEST_WORD` (a link)
names nobody and is not remembered.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from .names import MAX_NICK_LENGTH, NICK_PUNCTUATION, name_key

#: Runs of the characters a nick is made of (letters, digits, ``_-[]\`^{}|``): the parts
#: of a whitespace-separated word that may be a nick (``@alice:`` holds ``alice``).
_NICKISH = re.compile("[\\w" + re.escape(NICK_PUNCTUATION) + "]+")
#: Words remembered before the cache starts again (each about 100 bytes).
WORD_CACHE_SIZE = 50_000
#: A longer word names nobody (a link, a hash, a row of ``x``): the longest nick with a
#: few marks around it (``(@alice):``) is far shorter. Such a word is neither looked at
#: nor remembered, so a line of one long new word costs almost nothing.
LONGEST_WORD = MAX_NICK_LENGTH + 8

#: ``name_key`` without its cache: the keys of arbitrary words would push the rooms' and
#: nicks' keys out of it. The words' keys are cached here instead.
_word_key = name_key.__wrapped__


def nick_candidates(word: str) -> tuple[str, ...]:
    """The name keys that ``word`` (no whitespace in it) may stand for: one per run of
    nick characters in it that could be a nick (not too long, not starting with a digit
    or ``-``), each once."""
    if len(word) > LONGEST_WORD:
        return ()
    keys: list[str] = []
    for run in _NICKISH.findall(word):
        if len(run) > MAX_NICK_LENGTH or run[0].isdigit() or run[0] == "-":
            continue
        key = _word_key(run)
        if key and key not in keys:
            keys.append(key)
    return tuple(keys)


class MentionFinder:
    """Tells whether lines name users, remembering what each word it met could be."""

    def __init__(self, cache_size: int = WORD_CACHE_SIZE) -> None:
        self._keys: dict[str, tuple[str, ...]] = {}
        self._cache_size = cache_size

    def keys_of(self, word: str) -> tuple[str, ...]:
        """:func:`nick_candidates` of ``word``, cached (a long word is not)."""
        keys = self._keys.get(word)
        if keys is None:
            if len(word) > LONGEST_WORD:
                return ()
            if len(self._keys) >= self._cache_size:
                self._keys.clear()
            keys = self._keys[word] = nick_candidates(word)
        return keys

    def names_any(self, text: str, keys: Collection[str]) -> bool:
        """Whether ``text`` names any of the name ``keys`` (:func:`name_key` of a user's
        nick, and of its account's)."""
        return any(key in keys for word in text.split() for key in self.keys_of(word))
