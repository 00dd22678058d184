"""How the terminal client shows events: one line each, with colour on a terminal.

:class:`Renderer` turns a server event into the line to print, knowing who the user is and
which room is current: a line from another room starts with that room's name, every nick
has a colour of its own (the same in every session: a hash of the nick), the user's own
lines are marked, and a line that names the user (a mention) or a private message to them
is highlighted and rings the bell. Without colour (output piped, ``NO_COLOR`` set, a dumb
terminal) the same lines come out without a single escape code or bell.

Server text is passed through :func:`~.terminal.printable` first, so nothing a user sends
can drive the terminal; the escape codes added here are the only ones printed.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Mapping

from ..protocol import (
    Bye,
    Error,
    History,
    Info,
    Joined,
    Left,
    Message,
    NickChanged,
    Private,
    ServerEvent,
    Topic,
)
from ..textmode import clock, render_text
from .terminal import printable

RESET = "\x1b[0m"
BOLD = "1"
DIM = "2"
REVERSE = "7"
RED = "31"
BELL = "\a"
#: Colours nicks and rooms are drawn from: readable on dark and light backgrounds alike.
PALETTE = ("31", "32", "33", "34", "35", "36", "91", "92", "93", "94", "95", "96")
#: A mention: black on yellow.
MENTION = "30;43"
#: A private message to you: black on magenta.
PRIVATE = "30;45"


def colour_wanted(is_tty: bool, environ: Mapping[str, str] | None = None) -> bool:
    """Colour only for a terminal, and never with ``NO_COLOR`` set (no-color.org) or on a
    ``dumb`` terminal."""
    env = os.environ if environ is None else environ
    return is_tty and not env.get("NO_COLOR") and env.get("TERM") != "dumb"


def name_colour(name: str) -> str:
    """The SGR colour of a nick or room: stable across sessions and machines."""
    return PALETTE[zlib.crc32(name.casefold().encode()) % len(PALETTE)]


def mentions(text: str, nick: str | None) -> bool:
    """Whether ``text`` names ``nick`` as a word (any case): ``alice:``, ``hi Alice!``."""
    if not nick:
        return False
    return re.search(rf"(?<![\w-]){re.escape(nick)}(?![\w-])", text, re.IGNORECASE) is not None


def event_lines(event: ServerEvent) -> str:
    """What to print for a server event: ``render_text``, made safe for a terminal."""
    text = render_text(event)
    if isinstance(event, Info | History):
        # render_text puts one line of the reply (or of the history) per line; anything else
        # is one line, and a newline inside it came from another user: show it, not obey it.
        return "\n".join(printable(line) for line in text.split("\n"))
    return printable(text)


class Renderer:
    """Lines for events, for one user; ``colour`` adds escape codes and the bell."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour
        #: Who the user is (own lines, mentions) and where plain lines go (room prefix).
        self.nick: str | None = None
        self.room: str | None = None

    def _sgr(self, codes: str, text: str) -> str:
        return f"\x1b[{codes}m{text}{RESET}" if self.colour else text

    def _nick(self, nick: str) -> str:
        shown = printable(nick)
        if nick == self.nick:
            return self._sgr(f"{BOLD};{REVERSE}", shown)
        return self._sgr(name_colour(nick), shown)

    def _room(self, room: str) -> str:
        return self._sgr(f"{BOLD};{name_colour(room)}", printable(room))

    def _time(self, ts: float) -> str:
        return self._sgr(DIM, f"[{clock(ts)}]")

    def _where(self, room: str) -> str:
        """The room's name and a space, unless it is the current room."""
        return "" if room == self.room else self._room(room) + " "

    def is_alert(self, event: ServerEvent) -> bool:
        """A message naming the user, or a private message to them, from someone else."""
        if isinstance(event, Message):
            return event.nick != self.nick and mentions(event.text, self.nick)
        if isinstance(event, Private):
            return event.nick != self.nick
        return False

    def line(self, event: ServerEvent) -> str:
        """What to print for ``event`` (several lines only for replies and history)."""
        if isinstance(event, Message):
            return self._message(event)
        if isinstance(event, Private):
            text = printable(event.text)
            if self.is_alert(event):
                text = self._sgr(PRIVATE, text)
            arrow = f"*{self._nick(event.nick)} -> {self._nick(event.to)}*"
            return f"{self._time(event.ts)} {arrow} {text}{self._bell(event)}"
        if isinstance(event, Joined | Left | Topic | NickChanged):
            # "-!- bob joined #dev": the room is named already.
            body = printable(render_text(event)).split("] ", 1)[1]
            return f"{self._time(event.ts)} {self._sgr(DIM, body)}"
        if isinstance(event, History):
            return self.history(event)
        if isinstance(event, Error):
            return self._sgr(f"{BOLD};{RED}", printable(render_text(event)))
        if isinstance(event, Info | Bye):
            text = render_text(event)
            return "\n".join(printable(line) for line in text.split("\n"))
        return printable(render_text(event))

    def _message(self, event: Message) -> str:
        where = self._where(event.room)
        text = printable(event.text)
        if self.is_alert(event):
            text = self._sgr(MENTION, text)
        body = _line_body(event.kind, self._nick(event.nick), text)
        return f"{self._time(event.ts)} {where}{body}{self._bell(event)}"

    def _bell(self, event: ServerEvent) -> str:
        return BELL if self.colour and self.is_alert(event) else ""

    def history(self, event: History) -> str:
        """A history block: a header, then one indented line per message."""
        where = event.room or f"your talk with {event.with_nick}"
        if not event.messages:
            return f"-- no earlier messages in {printable(where)}"
        lines = [f"-- history of {printable(where)}:"]
        for item in event.messages:
            past = Private if item.get("type") == "private" else Message
            try:
                shown = past(**{k: v for k, v in item.items() if k != "type"})
            except TypeError:
                continue
            # Past lines ring no bell and keep their room implicit (the header names it).
            if isinstance(shown, Message):
                text = printable(shown.text)
                nick = self._nick(shown.nick)
                body = _line_body(shown.kind, nick, text)
                lines.append(f"   {self._time(shown.ts)} {body}")
            else:
                lines.append(f"   {printable(render_text(shown))}")
        if event.more:
            lines.append("-- (older messages: /history)")
        return "\n".join(lines)

    def notice(self, text: str) -> str:
        """A line of the client's own (reconnecting, ...)."""
        return self._sgr(DIM, f"-- {printable(text)}")

    def problem(self, text: str) -> str:
        """A line of the client's own about something that went wrong."""
        return self._sgr(f"{BOLD};{RED}", f"!! {printable(text)}")


def _line_body(kind: str, nick: str, text: str) -> str:
    """A chat line after its time and room: ``* nick text`` for an action, ``-nick- text``
    for a notice, ``<nick> text`` for the rest."""
    if kind == "action":
        return f"* {nick} {text}"
    if kind == "notice":
        return f"-{nick}- {text}"
    return f"<{nick}> {text}"
