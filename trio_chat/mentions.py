"""Mentions: which nicks a chat line names (pure, no I/O).

A line names ``alice`` when one of its words is her nick: ``alice``, ``@alice``,
``alice:``, ``alice,``, ``(alice)``, ``alice's``; compared as nicks are
(:func:`~trio_chat.names.name_key`: ``ALICE`` and ``al1ce`` name her too). The hub asks
this of every line said in a room (:meth:`MentionFinder.members_named`), so it is built to
cost next to nothing per line:

* a line is split on whitespace (C speed) and each word looked up in a dict of the words
  seen before, which holds the name keys each word could be. Chat reuses its words, so
  after a moment nearly every word is a hit, and the look-alike skeleton (about 2 us) is
  worked out once per new word, not once per line. The dict is bounded (cleared when
  full), and kept apart from ``name_key``'s own cache, which rooms and nicks need;
* a word that cannot be a nick (a number) has no keys at all, and one longer than
  :data:`LONGEST_WORD` is skipped at once (not even remembered: a link names nobody);
* a key counts only if it is a user's now (``Hub.sessions``) and that user is in the room
  (``Room.members``): two dict look-ups, no list of the room's members is ever walked.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from .names import MAX_NICK_LENGTH, NICK_PUNCTUATION, name_key
from .users import Session

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
    """Finds the nicks a line names, remembering what each word it met could be.

    Per word it keeps the one key it may be (the usual case), ``""`` for none, or a
    tuple of several (``alice/bob``), so the loop over a line's words does one dict
    look-up and one truth test for a word that names nobody."""

    def __init__(self, cache_size: int = WORD_CACHE_SIZE) -> None:
        self._keys: dict[str, str | tuple[str, ...]] = {}
        self._cache_size = cache_size

    def keys_of(self, word: str) -> tuple[str, ...]:
        """:func:`nick_candidates` of ``word``, cached."""
        keys = self._keys.get(word)
        if keys is None:
            keys = self._learn(word)
        if isinstance(keys, str):
            return (keys,) if keys else ()
        return keys

    def _learn(self, word: str) -> str | tuple[str, ...]:
        if len(self._keys) >= self._cache_size:
            self._keys.clear()
        candidates = nick_candidates(word)
        keys = candidates if len(candidates) > 1 else candidates[0] if candidates else ""
        self._keys[word] = keys
        return keys

    def members_named(
        self, text: str, sessions: Mapping[str, Session], members: Collection[int]
    ) -> list[str] | None:
        """The nicks of the users named in ``text`` who are among ``members`` (session
        ids), each once, in the order first named; ``None`` when there are none (the
        usual case, and what a ``message`` leaves out).

        ``sessions`` holds every user by name key (``Hub.sessions``)."""
        cached = self._keys.get
        user = sessions.get
        found: list[str] | None = None
        for word in text.split():
            key = cached(word)
            if key is None:
                if len(word) > LONGEST_WORD:
                    continue
                key = self._learn(word)
            if not key:
                continue
            if type(key) is str:
                session = user(key)
                if session is None or session.id not in members:
                    continue
                named = [session]
            else:
                named = [s for k in key if (s := user(k)) is not None and s.id in members]
            for session in named:
                if found is None:
                    found = [session.nick]
                elif session.nick not in found:
                    found.append(session.nick)
        return found

    def names_any(self, text: str, keys: Collection[str]) -> bool:
        """Whether ``text`` names any of the name ``keys`` (a user's nick and account),
        whoever holds them now: how ``/mentions`` checks a stored line."""
        return any(key in keys for word in text.split() for key in self.keys_of(word))
