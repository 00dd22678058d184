"""Server events as IRC lines, the part every IRC receiver shares (pure functions).

A chat line, a join, a part, a nick change, a topic or a private message reads the same
for every IRC receiver that negotiated the same capabilities, so it is encoded once per
fan-out and kept on the parcel (see :mod:`trio_chat.wire`): the :class:`Flavour` (which
tags go on a line) picks the wire format's name. What differs per receiver (numerics,
the names after one's own join, one's own messages left out without ``echo-message``) is
:class:`~trio_chat.irc.session.IrcSession`'s.

Every user appears as ``nick!nick@trio-chat``: one hostmask for all, whatever the
transport, so the bytes do not depend on who receives them.
"""

from __future__ import annotations

import time
from typing import Any

from ..changes import describe
from ..protocol import (
    Joined,
    Left,
    Message,
    MessageDeleted,
    MessageEdited,
    NickChanged,
    Private,
    Reaction,
    ServerEvent,
    Topic,
)
from .message import ctcp_encode, format_message
from .split import split_utf8, text_budget

#: The host part of every user's hostmask.
USER_HOST = "trio-chat"

#: Which tags a receiver gets on the lines it is sent: bit 1 ``time`` (server-time),
#: bit 2 ``msgid`` (message-tags).
Flavour = int
SERVER_TIME = 1
MESSAGE_IDS = 2

#: What a kick's reason starts with in a ``leave`` event (see builtins/moderation.py).
KICK_PREFIX = "kicked by "
#: ... and a ban's.
BAN_PREFIX = "banned by "


def hostmask(nick: str) -> str:
    return f"{nick}!{nick}@{USER_HOST}"


def irc_time(ts: float) -> str:
    """An IRCv3 ``time`` tag value: UTC, milliseconds, ``Z``."""
    whole = int(ts)
    millis = round((ts - whole) * 1000)
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def event_tags(flavour: Flavour, ts: float | None, event_id: int | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    if flavour & SERVER_TIME and ts is not None:
        tags["time"] = irc_time(ts)
    if flavour & MESSAGE_IDS and event_id is not None:
        tags["msgid"] = str(event_id)
    return tags


def chat_lines(
    source_nick: str,
    target: str,
    text: str,
    *,
    action: bool = False,
    tags: dict[str, str] | None = None,
    command: str = "PRIVMSG",
) -> bytes:
    """``PRIVMSG`` lines for one chat line, split to fit (see :mod:`.split`). Each piece
    carries the same tags (the same ``msgid`` too: they are one message of ours)."""
    source = hostmask(source_nick)
    budget = text_budget(source, command, target, wrapper=9 if action else 0)
    out = []
    for piece in split_utf8(text, budget):
        body = ctcp_encode("ACTION", piece) if action else piece
        out.append(format_message(command, target, body, source=source, tags=tags))
    return b"".join(out)


def history_line(
    item: dict[str, Any], flavour: Flavour, me: str, *, batch: str | None = None
) -> bytes:
    """One stored message (as a ``history`` event holds it) replayed as ``PRIVMSG``.
    Without server-time its time goes in front of the text (``[HH:MM:SS]``, UTC), as
    bouncers replay to such clients. ``batch``: the id of the batch it belongs to."""
    nick = str(item.get("nick", "?"))
    text = str(item.get("text", ""))
    ts = item.get("ts")
    kind = item.get("kind", "say")
    if item.get("deleted"):  # as it is now (see trio_chat.changes)
        text = "(deleted)"
    else:
        text = _replying(item.get("reply_to"), item.get("quote")) + text
        if item.get("edited") is not None:
            text += " (edited)"
    if item.get("type") == "private":
        target = me if str(item.get("to")) == me else str(item.get("to"))
    else:
        target = str(item.get("room", "*"))
    if not flavour & SERVER_TIME and isinstance(ts, int | float):
        text = time.strftime("[%H:%M:%S] ", time.gmtime(ts)) + text
    tags = event_tags(flavour, ts if isinstance(ts, int | float) else None, item.get("id"))
    if batch is not None:
        tags["batch"] = batch
    command = "NOTICE" if kind == "notice" else "PRIVMSG"
    return chat_lines(nick, target, text, action=kind == "action", tags=tags, command=command)


def _fitted(reason: str, source: str, command: str, target: str) -> str:
    """A reason on one line that fits one IRC line after ``target``: a longer one (a
    user of another transport may give more) is cut where :func:`split_utf8` would cut
    it, as IRC servers cut a long ``PART`` or ``KICK`` reason."""
    reason = " ".join(reason.split())
    if not reason:
        return reason
    return split_utf8(reason, text_budget(source, command, target))[0]


def _replying(reply_to: object, quote: object) -> str:
    """What a reply shows of the line it answers: ``(re bob: the quoted text) ``."""
    if reply_to is None or not isinstance(quote, dict):
        return ""
    return f"(re {quote.get('nick', '?')}: {quote.get('text') or '(deleted)'}) "


#: The kinds of event :func:`shared_lines` renders.
SHARED_KINDS = frozenset(
    {Message, Private, Joined, Left, NickChanged, Topic, MessageEdited, MessageDeleted, Reaction}
)


def shared_lines(event: ServerEvent, flavour: Flavour) -> bytes | None:
    """The lines of an event that reads the same for every IRC receiver of ``flavour``,
    or ``None`` for one that is rendered per receiver."""
    if isinstance(event, Message):
        tags = event_tags(flavour, event.ts, event.id)
        text = event.text if event.reply_to is None else _replying(1, event.quote) + event.text
        return chat_lines(
            event.nick,
            event.room,
            text,
            action=event.kind == "action",
            tags=tags,
            command="NOTICE" if event.kind == "notice" else "PRIVMSG",
        )
    if isinstance(event, Private):
        return chat_lines(
            event.nick, event.to, event.text, tags=event_tags(flavour, event.ts, event.id)
        )
    if isinstance(event, Joined):
        tags = event_tags(flavour, event.ts, event.id)
        return format_message("JOIN", event.room, source=hostmask(event.nick), tags=tags)
    if isinstance(event, Left):
        tags = event_tags(flavour, event.ts, event.id)
        reason = event.reason or ""
        for prefix in (KICK_PREFIX, BAN_PREFIX):
            if reason.startswith(prefix):
                kicker, _, why = reason[len(prefix) :].partition(": ")
                source = hostmask(kicker)
                why = _fitted(why or reason, source, "KICK", f"{event.room} {event.nick}")
                return format_message("KICK", event.room, event.nick, why, source=source, tags=tags)
        source = hostmask(event.nick)
        reason = _fitted(reason, source, "PART", event.room)
        params = (event.room, reason) if reason else (event.room,)
        return format_message("PART", *params, source=source, tags=tags)
    if isinstance(event, NickChanged):
        tags = event_tags(flavour, event.ts, event.id)
        return format_message("NICK", event.new, source=hostmask(event.old), tags=tags)
    if isinstance(event, Topic):
        tags = event_tags(flavour, event.ts, event.id)
        return format_message(
            "TOPIC", event.room, event.topic, source=hostmask(event.nick), tags=tags
        )
    if isinstance(event, MessageEdited | MessageDeleted | Reaction):
        # IRC has no such thing: a notice to the channel says it in words.
        tags = event_tags(flavour, event.ts, event.id)
        return chat_lines(
            event.nick, event.room, "* " + describe(event), tags=tags, command="NOTICE"
        )
    return None
