"""How the terminal client shows events: one line each, with colour on a terminal.

:class:`Renderer` turns a server event into the line to print, knowing who the user is and
which room is current: a line from another room starts with that room's name, every nick
has a colour of its own (the same in every session: a hash of the nick), the user's own
lines are marked, and a line that names the user (a mention) or a private message to them
is highlighted and rings the bell. Without colour (output piped, ``NO_COLOR`` set, a dumb
terminal) the same lines come out without a single escape code or bell.

Server text is passed through :func:`~.terminal.printable` first, so nothing a user sends
can drive the terminal; the escape codes added here are the only ones printed.

**Messages by id.** A room message's time carries its id, ``[12:30:05 #123] <bob> hi``, so
that it can be named (``/reply 123 ...``): inside the time stamp, so the id never reads as
part of the text or as a room. A reply comes after a line quoting what it answers
(``  ↳ #122 <alice> what about…``); an edit is shown as a line of its own,
``<bob> new text (edited #123)``, since lines already printed cannot change; a delete as
``-!- bob deleted message #123``; a reaction as ``-!- alice reacted 👍 to #123 (bob: hi)``.
History and search show messages as they are now: ``(edited)``, ``(deleted)`` and their
reactions, ``(👍 2, 🎉 1)``.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Mapping
from typing import Any

from ..errors import ChatError
from ..mentions import MentionFinder
from ..names import name_key
from ..protocol import (
    Bye,
    Error,
    History,
    Info,
    Joined,
    Left,
    Message,
    MessageDeleted,
    MessageEdited,
    NickChanged,
    Private,
    Reaction,
    ReadMarker,
    SearchResults,
    ServerEvent,
    Topic,
    Typing,
)
from ..textmode import clock, render_text
from .events import ChatMessage, event_from_dict
from .shown import ShownMessages
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
#: How much of a message a reaction's line quotes.
SNIPPET = 40


def colour_wanted(is_tty: bool, environ: Mapping[str, str] | None = None) -> bool:
    """Colour only for a terminal, and never with ``NO_COLOR`` set (no-color.org) or on a
    ``dumb`` terminal."""
    env = os.environ if environ is None else environ
    return is_tty and not env.get("NO_COLOR") and env.get("TERM") != "dumb"


def name_colour(name: str) -> str:
    """The SGR colour of a nick or room: stable across sessions and machines."""
    return PALETTE[zlib.crc32(name.casefold().encode()) % len(PALETTE)]


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

    def __init__(self, colour: bool, shown: ShownMessages | None = None) -> None:
        self.colour = colour
        #: Who the user is (own lines, mentions) and where plain lines go (room prefix).
        self.nick: str | None = None
        self.room: str | None = None
        #: The messages shown before (read only: the session keeps it up to date), for the
        #: authors and words of the messages that edits, deletes and reactions name.
        self.shown = shown if shown is not None else ShownMessages()
        #: What the words of the lines shown could name (bounded).
        self._mentions = MentionFinder(cache_size=5_000)

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

    def _stamp(self, ts: float, message_id: int) -> str:
        """A message's time with its id, by which it is named: ``[12:30:05 #123]``."""
        return self._sgr(DIM, f"[{clock(ts)} #{message_id}]")

    def _where(self, room: str) -> str:
        """The room's name and a space, unless it is the current room."""
        return "" if room == self.room else self._room(room) + " "

    def is_alert(self, event: ServerEvent) -> bool:
        """A message naming the user, or a private message to them, from someone else.

        A line names the user as the server's ``/mentions`` has it (see
        :mod:`trio_chat.mentions`: ``alice:``, ``@Alice``, ``al1ce``); the server does not
        say, the client knows who it is."""
        if isinstance(event, Message):
            if event.nick == self.nick or not self.nick:
                return False
            return self._mentions.names_any(event.text, (name_key(self.nick),))
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
        if isinstance(event, MessageEdited | MessageDeleted | Reaction):
            return self.change(event)
        if isinstance(event, SearchResults):
            return self.search(event)
        if isinstance(event, Typing | ReadMarker):
            return ""  # the status line shows typing; a read marker draws nothing
        if isinstance(event, Error):
            return self._sgr(f"{BOLD};{RED}", printable(render_text(event)))
        if isinstance(event, Info) and isinstance(event.data, dict):
            found = event.data.get("mentions")
            if isinstance(found, list):
                return self.mentions(event, found)
        if isinstance(event, Info | Bye):
            text = render_text(event)
            return "\n".join(printable(line) for line in text.split("\n"))
        return printable(render_text(event))

    def _message(self, event: Message) -> str:
        where = self._where(event.room)
        text = self._text(event)
        if self.is_alert(event):
            text = self._sgr(MENTION, text)
        body = _line_body(event.kind, self._nick(event.nick), text)
        line = f"{self._stamp(event.ts, event.id)} {where}{body}{self._bell(event)}"
        quote = self._quote(event, "  ")
        return f"{quote}\n{line}" if quote else line

    def _text(self, event: Message) -> str:
        """A message's text as it is now: ``(deleted)``, or the text with ``(edited)`` and
        its reactions after it."""
        if isinstance(event, ChatMessage) and event.deleted:
            return self._sgr(DIM, "(deleted)")
        text = printable(event.text)
        if isinstance(event, ChatMessage):
            if event.edited is not None:
                text += " " + self._sgr(DIM, "(edited)")
            if event.reactions:
                text += " " + self._sgr(DIM, reactions_summary(event.reactions))
        return text

    def _quote(self, event: Message, indent: str) -> str:
        """The line above a reply: what it answers, ``↳ #122 <alice> what about…``."""
        reply_to = getattr(event, "reply_to", None)
        if not isinstance(reply_to, int):
            return ""
        quote = getattr(event, "quote", None)
        quote = quote if isinstance(quote, dict) else {}
        nick, text = quote.get("nick"), quote.get("text")
        who = f" <{printable(nick)}>" if isinstance(nick, str) else ""
        said = ""
        if isinstance(text, str):
            said = f" {printable(text)}" if text else " (deleted)"  # its text is gone
        return indent + self._sgr(DIM, f"↳ #{reply_to}{who}{said}")

    def change(self, event: MessageEdited | MessageDeleted | Reaction) -> str:
        """A line for an edit, a delete or a reaction (lines shown before stay as they
        were: this one says what changed)."""
        where = self._where(event.room)
        before = self.shown.get(event.target)
        if isinstance(event, MessageEdited):
            mark = self._sgr(DIM, f"(edited #{event.target})")
            body = f"<{self._nick(event.nick)}> {printable(event.text)} {mark}"
            return f"{self._time(event.ts)} {where}{body}"
        if isinstance(event, MessageDeleted):
            whose = ""
            if before is not None and before.nick != event.nick:
                whose = f"{printable(before.nick)}'s "
            body = f"-!- {printable(event.nick)} deleted {whose}message #{event.target}"
            return f"{self._time(event.ts)} {where}{self._sgr(DIM, body)}"
        emoji = printable(event.emoji)
        if event.on:
            did = f"reacted {emoji} to #{event.target}"
        else:
            did = f"took back {emoji} from #{event.target}"
        context = ""
        if before is not None and before.text:
            context = f" ({printable(before.nick)}: {printable(snippet(before.text))})"
        body = f"-!- {printable(event.nick)} {did}{context}"
        return f"{self._time(event.ts)} {where}{self._sgr(DIM, body)}"

    def search(self, event: SearchResults) -> str:
        """The answer to ``/search``: one line per message found, with its date, room
        and id, oldest first (at the bottom, next to the prompt: the newest)."""
        query = printable(event.query)
        if not event.messages:
            return f'-- no messages found for "{query}"'
        found = len(event.messages)
        header = f'-- {found} message{"s" if found != 1 else ""} found for "{query}":'
        lines = [header, *self._found_lines(event.messages)]
        if event.more:
            lines.append("-- (older ones: /search again with nothing after it)")
        return "\n".join(lines)

    def mentions(self, event: Info, items: list[Any]) -> str:
        """``/mentions``' answer (``data.mentions``): like search results."""
        if not items:
            return "\n".join(printable(line) for line in render_text(event).split("\n"))
        count = len(items)
        unread = any(isinstance(i, dict) and i.get("unread") is True for i in items)
        marked = " (* not read yet)" if unread else ""
        header = f"-- {count} line{'s' if count != 1 else ''} naming you{marked}:"
        return "\n".join([header, *self._found_lines(items)])

    def _found_lines(self, items: list[Any]) -> list[str]:
        """Messages found (by search, or naming the user), oldest first (the server sends
        the newest first), each with its date, room and id; ``*`` marks one not read yet
        (``"unread": true``, in ``/mentions``' answer)."""
        unread = {i.get("id") for i in items if isinstance(i, dict) and i.get("unread") is True}
        found = [m for m in map(_past_message, items) if isinstance(m, Message)]
        lines = []
        for shown in sorted(found, key=lambda m: m.id):
            stamp = self._sgr(DIM, f"[{day_and_time(shown.ts)} #{shown.id}]")
            body = _line_body(shown.kind, self._nick(shown.nick), self._text(shown))
            mark = self._sgr(BOLD, " * ") if shown.id in unread else "   "
            lines.append(f"{mark}{stamp} {self._room(shown.room)} {body}")
        return lines

    def _bell(self, event: ServerEvent) -> str:
        return BELL if self.colour and self.is_alert(event) else ""

    def history(self, event: History) -> str:
        """A history block: a header, then one indented line per message."""
        where = event.room or f"your talk with {event.with_nick}"
        if not event.messages:
            return f"-- no earlier messages in {printable(where)}"
        lines = [f"-- history of {printable(where)}:", *self._past_lines(event.messages)]
        if event.more:
            lines.append("-- (older messages: /history)")
        return "\n".join(lines)

    def _past_lines(self, messages: list[dict[str, Any]]) -> list[str]:
        """History's messages, one indented line each (and a reply's quote above it)."""
        lines = []
        for item in messages:
            shown = _past_message(item)
            # Past lines ring no bell and keep their room implicit (the header names it).
            if isinstance(shown, Message):
                quote = self._quote(shown, "     ")
                if quote:
                    lines.append(quote)
                body = _line_body(shown.kind, self._nick(shown.nick), self._text(shown))
                lines.append(f"   {self._stamp(shown.ts, shown.id)} {body}")
            elif shown is not None:
                lines.append(f"   {printable(render_text(shown))}")
        return lines

    def changed_while_away(self, event: History) -> str:
        """Messages shown before a reconnect that were edited, deleted or reacted to
        while the client was away, as they are now."""
        where = printable(event.room or "")
        return "\n".join(
            [f"-- changed in {where} while you were away:", *self._past_lines(event.messages)]
        )

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


def _past_message(item: dict[str, Any]) -> ServerEvent | None:
    """A history or search item as an event (``None`` if it is not one)."""
    if not isinstance(item, dict):
        return None
    try:
        if item.get("type") == "private":
            return Private(**{k: v for k, v in item.items() if k != "type"})
        return event_from_dict({**item, "type": "message"})
    except (TypeError, ChatError):
        return None


def reactions_summary(reactions: dict[str, list[str]]) -> str:
    """``(👍 2, 🎉 1)``: each emoji with how many reacted with it."""
    parts = [
        f"{printable(str(emoji))} {len(nicks) if isinstance(nicks, list) else 0}"
        for emoji, nicks in reactions.items()
    ]
    return "(" + ", ".join(parts) + ")"


def snippet(text: str, size: int = SNIPPET) -> str:
    """The start of ``text``, cut at ``size`` characters with "…"."""
    return text if len(text) <= size else text[: size - 1] + "…"


def day_and_time(ts: float) -> str:
    """Local date and time ``2026-12-02 12:30`` of a server timestamp (search results
    span days)."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))
