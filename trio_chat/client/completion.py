"""Tab completion for the prompt: commands, rooms and nicks the client knows of.

Kept apart from the session so that it is plain logic over what the client knows
(:class:`Known`), testable without a server or a terminal. It runs in the prompt's thread,
while the session changes what it reads: it only reads, and copies before it iterates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ..names import name_key
from .resume import RoomState

#: Commands known before the server lists its own (``/help``), for Tab completion.
BASE_COMMANDS = ("help", "join", "part", "who", "rooms", "msg", "me", "nick", "topic", "quit")


class Known(Protocol):
    """What completion reads of the client."""

    @property
    def nick(self) -> str | None: ...

    @property
    def room(self) -> str | None: ...

    @property
    def rooms(self) -> Mapping[str, RoomState]: ...

    @property
    def commands(self) -> list[str]: ...


def completions(client: Known, text: str) -> tuple[int, list[str]]:
    """Tab completion of ``text`` (what is before the cursor): a command after a leading
    ``/``, a room after ``#``, a nick otherwise (``nick: `` at the start of a line).

    Returns where the completed word starts and what it may become: nicks of the current
    room first, then those of the user's other rooms; never the user's own.
    """
    start = max(text.rfind(" "), text.rfind("\t")) + 1
    word = text[start:]
    if start == 0 and word.startswith("/") and not word.startswith("//"):
        prefix = word[1:].lower()
        return start, [f"/{c} " for c in list(client.commands) if c.startswith(prefix)]
    if word.startswith("#"):
        rooms = [state.name for state in list(client.rooms.values())]
        return start, [r + " " for r in rooms if r.casefold().startswith(word.casefold())]
    if not word:
        return start, []
    current: RoomState | None = None
    if client.room:
        current = client.rooms.get(name_key(client.room))
    nicks: list[str] = sorted(current.members) if current else []
    for state in list(client.rooms.values()):
        nicks += sorted(set(state.members) - set(nicks))
    suffix = ": " if start == 0 else " "
    found = [n for n in nicks if n.casefold().startswith(word.casefold()) and n != client.nick]
    return start, [n + suffix for n in dict.fromkeys(found)]
