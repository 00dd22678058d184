"""A trigger bot: the bot ``robot`` answers ``!`` lines in the rooms it is in.

* ``!time``: the time, in UTC.
* ``!seen NICK``: when NICK last said something in a room the bot is in, and where.
* ``!learn KEY = TEXT`` teaches the bot a factoid, ``?KEY`` has it said again, ``!forget
  KEY`` drops it (kept while the server runs).
* ``!dns HOST``: the host's addresses. The lookup is real I/O (a thread of trio's): slow
  DNS delays nobody's messages, only this answer, and never past the plugin timeout.
* ``!help``: the list above.

Each but ``!learn`` and ``!forget`` may also be sent privately (``/msg robot seen bob``, the
``!`` optional), and is answered privately.

It shows the three parts of the bot API together: a bot user (``server.add_bot`` in
``server_started``), triggers (``@on_message(..., bot="robot")``: each runs in the
background after the line went out, and hears only the rooms the bot is in) and a
``message_posted`` listener (for ``!seen``, which needs every line, not only the matching
ones).

Settings, in the server's config file: ``[plugin.triggers]`` ``rooms = ["#lobby", "#dev"]``,
the rooms the bot joins (``["#lobby"]`` by default).

The plugin is a :class:`TriggerBot` (the entry point loads :data:`plugin`, one made at
import), because what it remembers lives on the object.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from trio_chat import Bot, TriggerContext, hookimpl, on_message

if TYPE_CHECKING:
    from trio_chat.api import ServerAPI
    from trio_chat.protocol import Message
    from trio_chat.users import Session

log = logging.getLogger("trio_chat_triggers")

#: The bot's nick, and the plugin's name (its settings table is ``[plugin.triggers]``).
BOT_NICK = "robot"
PLUGIN_NAME = "triggers"
DEFAULT_ROOMS = ("#lobby",)

#: Bounds on what the bot remembers: it is a chat's memory, not a database.
MAX_FACTOIDS = 1000
MAX_FACTOID_LENGTH = 300
MAX_SEEN = 10_000

HELP = "!time | !seen NICK | !learn KEY = TEXT | ?KEY | !forget KEY | !dns HOST | !help"

_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def ago(seconds: float) -> str:
    """``seconds`` as people say it: ``just now``, ``5 minutes ago``, ``2 days ago``."""
    seconds = max(0.0, seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


class TriggerBot:
    """The bot, its triggers and its memory (``seen``, ``factoids``)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        resolve: Callable[..., Awaitable[list[Any]]] = trio.socket.getaddrinfo,
    ) -> None:
        self.clock = clock
        #: ``getaddrinfo`` as trio has it (tests give a slower one).
        self.resolve = resolve
        self.bot: Bot | None = None
        #: Factoids by lower-cased key.
        self.factoids: dict[str, str] = {}
        #: By lower-cased nick: (when, nick, room) of their latest line; oldest first.
        self.seen: dict[str, tuple[float, str, str]] = {}
        #: Set once the bot is in its rooms (tests wait for it).
        self.ready = trio.Event()

    # ----------------------------------------------------------------- the bot user

    @hookimpl
    async def server_started(self, server: ServerAPI) -> None:
        rooms = server.plugin_settings(PLUGIN_NAME).get("rooms", list(DEFAULT_ROOMS))
        if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
            log.error("[plugin.%s] rooms must be a list of room names", PLUGIN_NAME)
            rooms = list(DEFAULT_ROOMS)
        self.bot = await server.add_bot(BOT_NICK, plugin=PLUGIN_NAME)
        for room in rooms:
            await self.bot.join(room)
        self.ready.set()

    # ------------------------------------------------------------------ listening

    @hookimpl
    def message_posted(self, message: Message, session: Session) -> None:
        """Note who spoke last where: only in the bot's rooms (what it hears)."""
        bot = self.bot
        if session.bot or bot is None or bot.removed or message.room not in bot.rooms:
            return
        key = message.nick.casefold()
        self.seen.pop(key, None)
        if len(self.seen) >= MAX_SEEN:
            del self.seen[next(iter(self.seen))]  # the one silent the longest
        self.seen[key] = (self.clock(), message.nick, message.room)

    # ------------------------------------------------------------------- triggers

    # Each answer is a plain method; the triggers below put it under a pattern in the
    # bot's rooms and, for most, under another for private messages to the bot
    # (``/msg robot seen bob``, the ``!`` optional), answered privately.

    def _help(self, ctx: TriggerContext) -> str:
        return HELP

    def _time(self, ctx: TriggerContext) -> str:
        return time.strftime("%H:%M:%S UTC, %A %d %B %Y", time.gmtime(self.clock()))

    def _seen(self, ctx: TriggerContext) -> str:
        wanted = ctx.match[1]
        if wanted.casefold() == ctx.nick.casefold():
            return f"{ctx.nick}: I see you right now"
        found = self.seen.get(wanted.casefold())
        if found is None:
            return f"{ctx.nick}: I have not seen {wanted}"
        when, nick, room = found
        return f"{ctx.nick}: {nick} was last seen in {room} {ago(self.clock() - when)}"

    def _learn(self, ctx: TriggerContext) -> str:
        key, text = ctx.match[1], ctx.match[2].strip()
        if len(text) > MAX_FACTOID_LENGTH:
            return f"{ctx.nick}: at most {MAX_FACTOID_LENGTH} characters, please"
        if key.casefold() not in self.factoids and len(self.factoids) >= MAX_FACTOIDS:
            return f"{ctx.nick}: I know {MAX_FACTOIDS} things already; !forget one first"
        self.factoids[key.casefold()] = text
        return f"{ctx.nick}: OK, ?{key} is {text}"

    def _recall(self, ctx: TriggerContext) -> str:
        key = ctx.match[1]
        text = self.factoids.get(key.casefold())
        return f"{key}: {text}" if text is not None else f"{ctx.nick}: I know nothing of {key}"

    def _forget(self, ctx: TriggerContext) -> str:
        key = ctx.match[1]
        if self.factoids.pop(key.casefold(), None) is None:
            return f"{ctx.nick}: I knew nothing of {key}"
        return f"{ctx.nick}: forgotten: {key}"

    async def _dns(self, ctx: TriggerContext) -> str:
        host = ctx.match[1]
        if not _HOST.match(host):
            return f"{ctx.nick}: {host} is not a host name"
        try:
            found = await self.resolve(host, None)
        except (socket.gaierror, UnicodeError):
            return f"{ctx.nick}: {host}: not found"
        addresses = sorted({str(entry[4][0]) for entry in found})
        return f"{ctx.nick}: {host}: {', '.join(addresses)}"

    show_help = on_message(r"^!help\b", bot=BOT_NICK)(_help)
    tell_time = on_message(r"^!time\b", bot=BOT_NICK)(_time)
    seen_nick = on_message(r"^!seen\s+(\S+)", bot=BOT_NICK)(_seen)
    learn = on_message(r"^!learn\s+([\w-]{1,32})\s*=\s*(.+)$", bot=BOT_NICK)(_learn)
    recall = on_message(r"^\?([\w-]{1,32})$", bot=BOT_NICK)(_recall)
    forget = on_message(r"^!forget\s+([\w-]{1,32})\s*$", bot=BOT_NICK)(_forget)
    dns = on_message(r"^!dns\s+(\S+)", bot=BOT_NICK)(_dns)

    help_privately = on_message(r"^!?help\b", bot=BOT_NICK, private=True)(_help)
    time_privately = on_message(r"^!?time\b", bot=BOT_NICK, private=True)(_time)
    seen_privately = on_message(r"^!?seen\s+(\S+)", bot=BOT_NICK, private=True)(_seen)
    recall_privately = on_message(r"^\?([\w-]{1,32})$", bot=BOT_NICK, private=True)(_recall)
    dns_privately = on_message(r"^!?dns\s+(\S+)", bot=BOT_NICK, private=True)(_dns)


#: The bot the entry point (``trio_chat_triggers:plugin``) and ``--plugin`` load.
plugin = TriggerBot()

__all__ = ["BOT_NICK", "HELP", "PLUGIN_NAME", "TriggerBot", "ago", "plugin"]
