"""Rules for nicknames and room names (pure functions).

Names are normalised to NFC before anything else, and compared by a *key*: the look-alike
skeleton of :mod:`trio_chat.confusables`, so ``Alice``, ``ALICE``, ``al1ce``, the same name in
full-width letters or with a Cyrillic ``a`` are all one user, and nobody can pose as another
by spelling their name with look-alike characters. Names mixing Latin, Greek and Cyrillic
letters are refused outright.
"""

from __future__ import annotations

import functools
import unicodedata

from .confusables import is_mixed_script, letter_scripts, skeleton
from .errors import FixedCodeError

MAX_NICK_LENGTH = 24
MAX_ROOM_LENGTH = 32
#: Punctuation allowed in nicks besides letters and digits (as in IRC, minus the ambiguous).
NICK_PUNCTUATION = "_-[]\\`^{}|"
ROOM_PUNCTUATION = "_-."
DEFAULT_ROOM = "#lobby"


class InvalidName(FixedCodeError, ValueError):
    """A nick or room name breaks the rules; the text says which one, for the user.

    ``code`` is the protocol error code the user gets (``bad_nick``, ``bad_room``, ...).
    """

    code = "bad_name"


class InvalidNick(InvalidName):
    code = "bad_nick"


class InvalidRoom(InvalidName):
    code = "bad_room"


@functools.lru_cache(maxsize=4096)
def name_key(name: str) -> str:
    """The identity of a name: two names with one key cannot both be in use.

    Case, width, accents and look-alike letters do not count (see :func:`skeleton`).
    Cached: computing a skeleton takes about 2 us, and every line said looks up its room
    by key (a cached key about 0.1 us); the cache is bounded, names are short.
    """
    return skeleton(name)


def normalize_nick(raw: str) -> str:
    """Return the NFC form of a valid nickname or raise :class:`InvalidName` with the reason."""
    nick = unicodedata.normalize("NFC", raw.strip())
    if not nick:
        raise InvalidNick("a nickname cannot be empty")
    if len(nick) > MAX_NICK_LENGTH:
        raise InvalidNick(f"a nickname has at most {MAX_NICK_LENGTH} characters")
    if nick[0].isdigit() or nick[0] == "-":
        raise InvalidNick("a nickname cannot start with a digit or '-'")
    for ch in nick:
        if not (ch.isalnum() or ch in NICK_PUNCTUATION):
            raise InvalidNick(
                f"a nickname may hold letters, digits and {NICK_PUNCTUATION}, not {ch!r}"
            )
    if is_mixed_script(nick):
        scripts = " and ".join(sorted(s.title() for s in letter_scripts(nick)))
        raise InvalidNick(f"a nickname cannot mix {scripts} letters")
    return nick


def normalize_room(raw: str) -> str:
    """Return the NFC form of a valid room name (``#`` added if missing) or raise."""
    room = unicodedata.normalize("NFC", raw.strip())
    if not room.startswith("#"):
        room = "#" + room
    body = room[1:]
    if not body:
        raise InvalidRoom("a room name needs at least one character after '#'")
    if len(room) > MAX_ROOM_LENGTH:
        raise InvalidRoom(f"a room name has at most {MAX_ROOM_LENGTH} characters")
    for ch in body:
        if not (ch.isalnum() or ch in ROOM_PUNCTUATION):
            raise InvalidRoom(
                f"a room name may hold letters, digits and {ROOM_PUNCTUATION}, not {ch!r}"
            )
    return room
