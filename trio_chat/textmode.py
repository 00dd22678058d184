"""The plain-text dialect, so ``nc localhost 12345`` chats like a classic line chat (sans-IO).

In text mode every line the user types is a chat message, or a slash-command when it starts
with ``/`` (``//`` sends a literal leading slash). Every server event is rendered as one
readable line with the time, e.g. ``[12:30:05] <alice> hi``. This module only converts
between lines and frames; :mod:`trio_chat.transports` does the I/O.
"""

from __future__ import annotations

import time
from typing import Any

from .changes import describe
from .protocol import (
    Bye,
    ClientFrame,
    Command,
    Error,
    History,
    Info,
    Joined,
    Left,
    Message,
    MessageDeleted,
    MessageEdited,
    NickChanged,
    Pong,
    Private,
    Reaction,
    ReadMarker,
    RemoteProtocolError,
    Say,
    SearchResults,
    ServerEvent,
    Topic,
    Typing,
    Welcome,
    find_control_character,
)

#: What a text-mode user is asked before anything else.
NICK_PROMPT = "Welcome to trio-chat! What is your nickname?"


def decode_text_line(line: bytes) -> str:
    """Decode one received line as UTF-8, refusing invalid bytes with ``bad_utf8``."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(
            "bad_utf8", f"line is not valid UTF-8 (byte {exc.start}); nothing was sent"
        ) from None


def parse_command_line(text: str) -> ClientFrame | None:
    """Turn a typed line into a frame: ``/name args`` is a command, anything else is said.

    Returns ``None`` for a blank line (nothing to do). ``//text`` says ``/text``.
    """
    if not text.strip():
        return None
    bad = find_control_character(text)
    if bad is not None:
        raise RemoteProtocolError(
            "bad_field", f"the line contains the control character U+{ord(bad):04X}; not sent"
        )
    if text.startswith("//"):
        return Say(text=text[1:])
    if text.startswith("/"):
        name, _, args = text[1:].partition(" ")
        if not name:
            raise RemoteProtocolError("unknown_command", "a lone '/' is not a command; try /help")
        return Command(name=name.lower(), args=args.strip())
    return Say(text=text)


def clock(ts: float) -> str:
    """Local wall-clock time ``HH:MM:SS`` of a server timestamp."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


def stamp(ts: float, message_id: int) -> str:
    """A chat line's time and id, ``[12:30:05 #42]``: the id is what ``/reply``, ``/edit``,
    ``/delete`` and ``/react`` name a message by."""
    return f"[{clock(ts)} #{message_id}]"


def _replying(event: Message) -> str:
    """What a reply shows of the line it answers: ``(re #41 bob: the quoted text) ``."""
    if event.reply_to is None:
        return ""
    quote = event.quote or {}
    said = quote.get("text") or "(deleted)"
    return f"(re #{event.reply_to} {quote.get('nick', '?')}: {said}) "


def _line(event: Message, state: dict[str, Any] | None = None) -> str:
    text = _replying(event) + event.text
    if state is not None:  # a line of history, as it is now (see trio_chat.changes)
        if state.get("deleted"):
            text = "(deleted)"
        elif state.get("edited") is not None:
            text += " (edited)"
        reactions = state.get("reactions")
        if isinstance(reactions, dict) and reactions:
            text += " [" + "; ".join(f"{e} {', '.join(n)}" for e, n in reactions.items()) + "]"
    if event.kind == "action":
        return f"{stamp(event.ts, event.id)} * {event.nick} {text}"
    if event.kind == "notice":
        return f"{stamp(event.ts, event.id)} -{event.nick}- {text}"
    return f"{stamp(event.ts, event.id)} <{event.nick}> {text}"


_HISTORY_ONLY = ("edited", "deleted", "reactions", "changed")


def render_found(item: dict[str, Any]) -> str:
    """A line found by a search (a ``message`` object), with its room:
    ``[12:30:05] #dev <alice> text``."""
    kind, nick, text = item.get("kind"), item.get("nick", "?"), item.get("text", "")
    if kind == "action":
        said = f"* {nick} {text}"
    elif kind == "notice":
        said = f"-{nick}- {text}"
    else:
        said = f"<{nick}> {text}"
    ts = item.get("ts")
    when = f"[{clock(ts)}] " if isinstance(ts, int | float) else ""
    return f"{when}{item.get('room', '?')} {said}"


def render_search(event: SearchResults) -> str:
    """A ``search`` reply: a heading, then the lines found, oldest first (as history
    reads), and how to see older ones."""
    found = event.messages
    if not found:
        return f"-- no lines hold {event.query!r}"
    count = f"{len(found)} line{'s' if len(found) > 1 else ''}"
    lines = [f"-- {count} holding {event.query!r}:"]
    lines += [f"   {render_found(item)}" for item in reversed(found)]
    if event.more:
        lines.append("-- (older ones: the same /search again)")
    return "\n".join(lines)


def render_text(event: ServerEvent) -> str:
    """One human-readable line (without newline) for a server event; ``""`` for one that
    a person need not see (nothing is sent for it)."""
    if isinstance(event, Message):
        return _line(event)
    if isinstance(event, MessageEdited | MessageDeleted | Reaction):
        return f"[{clock(event.ts)}] * {describe(event)}"
    if isinstance(event, Joined):
        bot = " (bot)" if event.bot else ""
        return f"[{clock(event.ts)}] -!- {event.nick}{bot} joined {event.room}"
    if isinstance(event, Left):
        why = f" ({event.reason})" if event.reason else ""
        return f"[{clock(event.ts)}] -!- {event.nick} left {event.room}{why}"
    if isinstance(event, NickChanged):
        return f"[{clock(event.ts)}] -!- {event.old} is now known as {event.new}"
    if isinstance(event, Private):
        return f"[{clock(event.ts)}] *{event.nick} -> {event.to}* {event.text}"
    if isinstance(event, Topic):
        if not event.topic:
            return f"[{clock(event.ts)}] -!- {event.nick} cleared the topic of {event.room}"
        return f"[{clock(event.ts)}] -!- {event.nick} set the topic of {event.room}: {event.topic}"
    if isinstance(event, History):
        where = event.room or f"your talk with {event.with_nick}"
        if not event.messages:
            return f"-- no earlier messages in {where}"
        lines = [f"-- history of {where}:"]
        for item in event.messages:
            fields = {k: v for k, v in item.items() if k != "type" and k not in _HISTORY_ONLY}
            try:
                if item.get("type") == "private":
                    shown = render_text(Private(**fields))
                else:
                    shown = _line(Message(**fields), item)
            except TypeError:
                continue
            lines.append(f"   {shown}")
        if event.more:
            lines.append("-- (older messages: /history)")
        return "\n".join(lines)
    if isinstance(event, SearchResults):
        return render_search(event)
    if isinstance(event, Info):
        return "\n".join(f"-- {line}" for line in event.text.splitlines() or [""])
    if isinstance(event, Error):
        return f"!! {event.text}"
    if isinstance(event, Welcome):
        if event.connections is not None:  # joined the user, connected elsewhere too
            rooms = ", ".join(event.rooms or [event.room])
            return (
                f"-- Hello {event.nick}, you are in {rooms} on {event.server}, now on "
                f"{event.connections} connections. Type /help for commands."
            )
        return (
            f"-- Hello {event.nick}, you are in {event.room} on {event.server}. "
            "Type /help for commands."
        )
    if isinstance(event, Pong):
        return f"-- pong {event.token or ''}".rstrip()
    if isinstance(event, Bye):
        return f"-- Disconnected: {event.text}"
    if isinstance(event, Typing | ReadMarker):
        # Nothing to show: a read marker moved on another connection of the user, or (never
        # asked for in text mode) someone typing. The wire sends no line for "".
        return ""
    return f"-- {event.TYPE}"
