"""The input side, without I/O: what a typed line becomes, and what waits while offline.

A typed line becomes a frame (:func:`parse_typed`: a command, a line to say, or raw JSON
in ``--json`` mode); :class:`Outbox` tags the frames the client must follow the answer of
(account commands: the password is kept, in memory only, to log back in) and keeps what
is typed while disconnected, up to :data:`MAX_QUEUED` lines, to send once back in.
The session (:mod:`.app`) does the reading and the sending.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Container
from typing import Literal

from ..names import InvalidName, name_key, normalize_room
from ..protocol import (
    Command,
    Ping,
    PongReply,
    Quit,
    decode_client_frame,
)
from ..textmode import parse_command_line
from .events import Outgoing
from .message_commands import message_frame

#: Lines typed while disconnected that are kept to send once back.
MAX_QUEUED = 100
#: Refs and tokens of the frames the client sends on its own behalf start with this.
OWN = "tc:"


def parse_typed(line: str, json_mode: bool) -> Outgoing | None:
    """The frame a typed line stands for (``None``: nothing to send). In ``json_mode`` a
    line starting with ``{`` is a frame as it is. A command about a message (``/reply``,
    ``/edit``, ...) becomes its own frame (:mod:`.message_commands`). Raises
    ``RemoteProtocolError``."""
    if json_mode and line.lstrip().startswith("{"):
        return decode_client_frame(line)
    frame = parse_command_line(line)
    if isinstance(frame, Command):
        return message_frame(frame) or frame
    return frame


def is_quit(frame: Outgoing) -> bool:
    """``/quit`` or a ``quit`` frame: the user leaves."""
    return isinstance(frame, Quit) or (isinstance(frame, Command) and frame.name == "quit")


def new_room(frame: Outgoing, rooms: Container[str]) -> str | None:
    """The key of the room a typed ``/join`` goes to, if the user is not in it yet."""
    if not isinstance(frame, Command) or frame.ref is not None or frame.name != "join":
        return None
    words = frame.args.split()
    if not words:
        return None
    try:
        key = name_key(normalize_room(words[0]))
    except InvalidName:
        return None
    return None if key in rooms else key


class Outbox:
    """Typed frames on their way: tagged with our refs, or kept while offline."""

    def __init__(self, size: int = MAX_QUEUED) -> None:
        self.queued: collections.deque[Outgoing] = collections.deque()
        self._size = size
        #: Account commands waiting for their answer, by ref: (nick, password).
        self.pending_accounts: dict[str, tuple[str | None, str]] = {}
        self._refs = 0

    def next_ref(self, kind: str) -> str:
        self._refs += 1
        return f"{OWN}{kind}:{self._refs}"

    def tag(self, frame: Outgoing) -> Outgoing:
        """An account command (``/login``, ``/register``, ``/password``) gets a ref of ours,
        to learn the nick and password it succeeds with; other frames stay as they are."""
        if not isinstance(frame, Command) or frame.ref is not None:
            return frame
        words = frame.args.split()
        if frame.name not in ("login", "register", "password") or not words:
            return frame
        ref = self.next_ref("acct")
        nick = words[0] if frame.name == "login" and len(words) == 2 else None
        self.pending_accounts[ref] = (nick, words[-1])
        return dataclasses.replace(frame, ref=ref)

    def keep(self, frame: Outgoing) -> Literal["kept", "full", "skipped"]:
        """Keep a frame that could not be sent: ``skipped`` for pings (stale once back),
        ``full`` when :data:`MAX_QUEUED` wait already (it is dropped)."""
        if isinstance(frame, Ping | PongReply):
            return "skipped"
        if len(self.queued) >= self._size:
            return "full"
        self.queued.append(frame)
        return "kept"
