"""Finding lines again: ``search`` (the words of a query) and ``/mentions`` (the lines
naming you), over the stored lines of the rooms a user is in now.

Both read the store through its read path (a worker thread, batched with the other reads;
:meth:`Store.search <trio_chat.store.Store.search>`), so a search never stalls anyone's
messages, and both stop below :meth:`Hub.history_bound
<trio_chat.delivery.Delivery.history_bound>`: only lines already delivered are found, as
with history. Private messages are never searched (they are not in the index).

Why the rooms one is in *now*: a room's history is open to its members (``history``
pages back through all of it), and to no one else, so a search is exactly as wide as
that: a room left, or banned from, is not searched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import ChatError
from .history import wire_form
from .hub import Hub, NotInRoom, Session
from .mentions import MentionFinder
from .names import name_key
from .store import Store, StoredMessage
from .store.search import SearchTooBroad, match_all, match_any
from .textmode import render_found

#: Matches one ``search`` returns when it names no ``limit``, and the most it may ask.
SEARCH_PAGE = 20
MAX_SEARCH_PAGE = 100
#: Most words one query may hold (each must be in a line for it to match).
MAX_SEARCH_WORDS = 16
#: ``/mentions`` lists this many lines by default, and at most ``MAX_MENTIONS``.
MENTIONS_PAGE = 20
MAX_MENTIONS = 100
#: How many lines of the index that hold your nick's words ``/mentions`` checks at most,
#: and how many of each room's latest lines it reads for a name the index cannot look
#: up (a nick of no letters or digits; an account's name when you go by another nick).
MENTION_CANDIDATES = 2000
MENTION_SCAN = 500


def search_words(query: str) -> list[str]:
    """The words of a query, each to be found in a line, as the user typed them; raises
    ``bad_arguments`` for a query with no letter or digit in it (``"``, ``*``, ``--``),
    which could find nothing, or with more than :data:`MAX_SEARCH_WORDS` words."""
    words = [word for word in query.split() if any(ch.isalnum() for ch in word)]
    if not words:
        raise ChatError("bad_arguments", "search for words: letters or digits")
    if len(words) > MAX_SEARCH_WORDS:
        raise ChatError(
            "bad_arguments", f"a search has at most {MAX_SEARCH_WORDS} words, not {len(words)}"
        )
    return words


def page_size(limit: int | None, default: int, most: int) -> int:
    """``limit`` held to 1..``most``; ``None`` or 0 give ``default``."""
    return default if not limit else max(1, min(limit, most))


def rooms_to_search(hub: Hub, session: Session, room: str | None) -> list[str]:
    """The rooms a search of ``session`` covers: ``room`` (which it must be in:
    ``not_in_room`` otherwise), or every room it is in."""
    if room is None:
        return list(session.rooms)
    found = hub.room(room)
    if found is None or session.id not in found.members:
        raise NotInRoom(f"you are not in {room}")
    return [found.name]


async def find_lines(
    store: Store,
    hub: Hub,
    session: Session,
    query: str,
    *,
    room: str | None = None,
    before: int | None = None,
    limit: int | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """The lines of ``session``'s rooms (or of ``room``) holding every word of
    ``query``, newest first, below ``before``; and whether older ones match too.
    Raises ``bad_arguments``, ``not_in_room``, or :class:`StoreError`."""
    words = search_words(query)
    rooms = rooms_to_search(hub, session, room)
    size = page_size(limit, SEARCH_PAGE, MAX_SEARCH_PAGE)
    bound = hub.history_bound()
    below = bound if before is None else min(before, bound)
    if not rooms:
        return [], False
    try:
        found = await store.search(rooms, match_all(words), before=below, limit=size + 1)
    except SearchTooBroad:
        raise ChatError(
            "bad_arguments",
            "that search reads too much: add a word, or name one of your rooms",
        ) from None
    return [wire_form(message) for message in found[:size]], len(found) > size


async def find_mentions(
    store: Store, hub: Hub, session: Session, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """The latest lines of ``session``'s rooms naming its nick, or its account's (as a
    word, ``@nick``, ``nick:``, compared as nicks are), newest first: whoever said them,
    and whether or not the user was in the room then (a line said while you were away
    names you all the same). Its own lines are left out."""
    rooms = list(session.rooms)
    if not rooms:
        return []
    me = name_key(session.nick)
    keys = {me} if session.account is None else {me, session.account}
    finder = MentionFinder()

    def names_me(message: StoredMessage) -> bool:
        return name_key(message.sender) not in keys and finder.names_any(message.text, keys)

    # The index finds the lines holding the words the nick is written with (case and
    # accents aside); the finder then checks each as the hub would. A name the index
    # cannot look up (no letters or digits; an account known only by its key, when you
    # go by another nick) is looked for in each room's latest lines instead.
    spelled = any(ch.isalnum() for ch in session.nick)
    found = await store.lines_naming(
        rooms,
        match=match_any([session.nick]) if spelled else None,
        keep=names_me,
        before=hub.history_bound(),
        limit=page_size(limit, MENTIONS_PAGE, MAX_MENTIONS),
        candidates=MENTION_CANDIDATES,
        scan_latest=0 if spelled and keys == {me} else MENTION_SCAN,
    )
    return [wire_form(message) for message in found]


def mentions_text(lines: Sequence[dict[str, Any]], nick: str) -> str:
    """``/mentions`` for people: a heading, then one line per mention with its room,
    oldest first (as history reads)."""
    if not lines:
        return f"no lines of your rooms name {nick}"
    count = f"{len(lines)} line{'s' if len(lines) > 1 else ''}"
    shown = [
        f"{count} naming {nick} (* not read yet):"
        if any(line.get("unread") for line in lines)
        else f"{count} naming {nick}:"
    ]
    for line in reversed(lines):
        shown.append(f"{'*' if line.get('unread') else ' '} {render_found(line)}")
    return "\n".join(shown)
