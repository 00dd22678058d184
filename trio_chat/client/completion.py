"""Tab completion for the prompt: commands, rooms, nicks and message ids the client knows
of.

Kept apart from the session so that it is plain logic over what the client knows
(:class:`Known`), testable without a server or a terminal. It runs in the prompt's thread,
while the session changes what it reads: it only reads, and copies before it iterates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ..names import name_key
from .message_commands import MESSAGE_COMMANDS
from .resume import RoomState
from .shown import ShownMessages

#: Commands known before the server lists its own (``/help``), for Tab completion.
_CHAT_COMMANDS = ("help", "join", "part", "who", "rooms", "msg", "me", "nick", "topic", "quit")
BASE_COMMANDS = (*_CHAT_COMMANDS, *MESSAGE_COMMANDS)
#: Commands whose first word is a message id: Tab offers the current room's latest ids
#: (``/edit``, the user's own only).
ID_COMMANDS = ("reply", "edit", "delete", "react", "unreact")


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

    @property
    def shown(self) -> ShownMessages: ...


def known_commands(server_commands: list[str]) -> list[str]:
    """The commands Tab offers: the server's (``/help``), and the client's own."""
    return sorted({*server_commands, *MESSAGE_COMMANDS})


def completions(client: Known, text: str) -> tuple[int, list[str]]:
    """Tab completion of ``text`` (what is before the cursor): a command after a leading
    ``/``, a room after ``#``, a message id after ``/reply`` and the like (the newest
    first), a nick otherwise (``nick: `` at the start of a line).

    Returns where the completed word starts and what it may become: nicks of the current
    room first, then those of the user's other rooms; never the user's own.
    """
    start = max(text.rfind(" "), text.rfind("\t")) + 1
    word = text[start:]
    if start == 0 and word.startswith("/") and not word.startswith("//"):
        prefix = word[1:].lower()
        return start, [f"/{c} " for c in list(client.commands) if c.startswith(prefix)]
    head = text.split(" ")
    if len(head) == 2 and head[0][1:].lower() in ID_COMMANDS and head[0][:1] == "/":
        # The prompt's thread reads what the session writes: recent_ids copies first.
        mine = client.nick if head[0][1:].lower() == "edit" else None
        found = [str(i) for i in client.shown.recent_ids(client.room, mine)] if client.room else []
        return start, [f"{i} " for i in found if i.startswith(word.removeprefix("#"))]
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
