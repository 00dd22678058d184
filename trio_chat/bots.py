"""Bot users that plugins own: a nick in rooms and ``/who``, with no connection behind it.

A plugin that answers ``!weather``, posts a webhook's news or greets newcomers wants to
speak as someone. A bot is that someone: a :class:`~trio_chat.users.Session` like any
user's (so rooms, ``/who``, nick uniqueness with look-alikes, kicks, bans, private
messages and a broker's other nodes all work unchanged), marked ``bot``, with no
:class:`~trio_chat.users.Device` and a mailbox that keeps nothing:

* it is never in a room's ``here`` (the receivers a fan-out offers to), so a bot costs
  the fan-out of a busy room nothing and can never be dropped as a slow consumer;
* it counts as no connection (connection limits count sockets, and it has none);
* a private message sent to it is handed on (to the ``bot_messaged`` hook, from a task of
  the server's: never in the middle of delivery); everything else sent to it is dropped;
* it lives as long as the running server: it is removed when the server stops (everyone
  is closed at shutdown, the bot with them), when a moderator disconnects it, or when its
  plugin calls :meth:`Bot.remove`; a plugin adds it again at every start
  (``server_started``).

What a bot says goes through the message filters, as anyone's line does, and through a
token bucket of its own (``rate`` lines a second after a ``burst``), so a plugin that
floods is refused (``ChatError`` code ``flood``) instead of filling every member's queue.

This module knows the server only through :class:`BotHost`, the few calls a bot makes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from .errors import ChatError, FixedCodeError
from .limits import TokenBucket
from .mailbox import Mailbox, Parcel
from .names import name_key, normalize_room
from .protocol import MessageKind, Private, find_control_character
from .rooms import NotInRoom

if TYPE_CHECKING:
    from .hub import Hub
    from .rooms import Room
    from .users import Session

__all__ = ["Bot", "BotHost", "BotMailbox", "BotRemoved", "Bots"]

log = logging.getLogger("trio_chat.bots")

#: Longest line a bot may say, in characters (a client's line is bounded by its frame).
MAX_BOT_TEXT = 4000
#: Lines a second a bot may say on average, and at once after a quiet spell (the
#: defaults of :meth:`ServerAPI.add_bot <trio_chat.api.ServerAPI.add_bot>`).
DEFAULT_BOT_RATE = 5.0
DEFAULT_BOT_BURST = 20


class BotRemoved(FixedCodeError):
    """The bot was removed (by its plugin, a moderator, or the server stopping)."""

    code = "bot_removed"


class BotHost(Protocol):
    """What a bot needs of the server (:class:`~trio_chat.api.ServerAPI` is one)."""

    @property
    def hub(self) -> Hub: ...

    async def join_room(self, session: Session, room: str) -> Room: ...

    def post(self, session: Session, room: str, text: str, kind: MessageKind = "say") -> None: ...


class BotMailbox(Mailbox):
    """A bot's mailbox: takes whatever is sent to the bot and keeps nothing.

    ``delivers_here`` is false, as for a user of another node: the bot never joins a
    room's receivers, and nobody can log in to it. A private message to the bot goes to
    :meth:`Bot._messaged`; the rest is dropped."""

    delivers_here = False

    def __init__(self, bot: Bot) -> None:  # no queue, no wire: nothing is ever kept
        self._bot = bot

    def offer(self, parcel: Parcel) -> bool:
        event = parcel.event
        if type(event) is Private:
            self._bot._messaged(event)
        return True

    def hang_up(self) -> None:
        # Session.close (a moderator, the server stopping, a broker's nick conflict): with
        # no connection to wait for, the bot leaves at once.
        self._bot._closed()


class Bot:
    """A plugin's bot user. Made by :meth:`ServerAPI.add_bot <trio_chat.api.ServerAPI.add_bot>`.

    ``join``/``part`` rooms, ``say``/``act`` in them, ``tell`` someone privately;
    ``remove`` frees the nick. Every call after the bot was removed raises
    :class:`BotRemoved`. Text is one line or several (split at line breaks, each line a
    message), up to :data:`MAX_BOT_TEXT` characters a line, without control characters.
    """

    def __init__(
        self,
        host: BotHost,
        nick: str,
        *,
        plugin: str,
        bucket: TokenBucket,
        clock: Callable[[], float] = time.monotonic,
        on_removed: Callable[[Bot], None] | None = None,
        on_private: Callable[[Bot, Private], None] | None = None,
    ) -> None:
        self._host = host
        self.plugin = plugin
        self._bucket = bucket
        self._clock = clock
        self._on_removed = on_removed
        self._on_private = on_private
        self.session: Session = host.hub.attach_bot(nick, BotMailbox(self))
        self.removed = False

    def __repr__(self) -> str:
        return f"<Bot {self.nick!r} of {self.plugin!r}{' removed' if self.removed else ''}>"

    @property
    def nick(self) -> str:
        return self.session.nick

    @property
    def rooms(self) -> list[str]:
        """The rooms the bot is in, in the order it joined them."""
        return list(self.session.rooms)

    async def join(self, room: str) -> Room:
        """Join ``room`` (created if new, as anyone's join): its members see a ``join``
        with ``"bot": true``. Refused (``ChatError``) for a bad name or a ban."""
        self._check()
        return await self._host.join_room(self.session, normalize_room(room))

    async def part(self, room: str, reason: str = "parted") -> None:
        """Leave ``room``; ``NotInRoom`` (a ``ChatError``) if the bot is not in it."""
        self._check()
        if name_key(room) not in {name_key(r) for r in self.session.rooms}:
            raise NotInRoom(f"{self.nick} is not in {room}")
        self._host.hub.part(self.session, room, reason)

    def say(self, room: str, text: str) -> None:
        """Say ``text`` in ``room`` (the bot must be in it): a ``message`` event like
        anyone's, through the message filters."""
        for line in self._lines(text):
            self._host.post(self.session, room, line, "say")

    def act(self, room: str, text: str) -> None:
        """An action in ``room``, shown as ``* bot text`` (``/me``)."""
        for line in self._lines(text):
            self._host.post(self.session, room, line, "action")

    def tell(self, nick: str, text: str) -> None:
        """A private message to ``nick`` (``NoSuchNick``, a ``ChatError``, if nobody by that
        nick is online)."""
        for line in self._lines(text):
            self._host.hub.private(self.session, nick, line)

    async def remove(self, reason: str = "bot removed") -> None:
        """Leave every room (with ``reason``) and free the nick. Idempotent."""
        self.session.close("bot_removed", reason)  # its mailbox's hang_up: _closed

    # ---------------------------------------------------------------------- internals

    def _check(self) -> None:
        if self.removed:
            raise BotRemoved(f"the bot {self.nick} was removed")

    def _lines(self, text: str) -> list[str]:
        """``text`` as the lines to post, each checked and paid for (all or none)."""
        self._check()
        if not isinstance(text, str):
            raise TypeError(f"a bot says text, not {type(text).__name__}")
        lines = [line.rstrip("\r") for line in text.split("\n")]
        lines = [line for line in lines if line.strip()]
        if not lines:
            raise ChatError("bad_field", "a message needs some text")
        for line in lines:
            if len(line) > MAX_BOT_TEXT:
                raise ChatError("bad_field", f"a line has at most {MAX_BOT_TEXT} characters")
            bad = find_control_character(line)
            if bad is not None:
                raise ChatError(
                    "bad_field", f"the text contains the control character U+{ord(bad):04X}"
                )
        if not self._bucket.take(self._clock(), len(lines)):
            raise ChatError(
                "flood",
                f"the bot {self.nick} is sending too fast "
                f"(at most {self._bucket.rate:g} lines a second after {self._bucket.burst})",
            )
        return lines

    def _messaged(self, event: Private) -> None:
        """A private message was delivered to the bot (or its own, to someone, echoed):
        hand on the ones from others (synchronously: the callback only queues them)."""
        key = self.session.key
        if self._on_private is None or self.removed or name_key(event.to) != key:
            return
        if name_key(event.nick) != key:
            self._on_private(self, event)

    def _closed(self) -> None:
        """Leave the hub (rooms first, each told) and the registry, once."""
        if self.removed:
            return
        self.removed = True
        reason = self.session.close_reason or "bot removed"
        self._host.hub.detach(self.session, reason)
        if self._on_removed is not None:
            self._on_removed(self)


class Bots:
    """The server's bots, by nick (as :func:`~trio_chat.names.name_key` compares them)."""

    def __init__(self, on_private: Callable[[Bot, Private], None] | None = None) -> None:
        self._bots: dict[str, Bot] = {}
        #: Told of each private message to any bot (the server queues it for its hook).
        self.on_private = on_private

    def add(
        self,
        host: BotHost,
        nick: str,
        *,
        plugin: str,
        rate: float = DEFAULT_BOT_RATE,
        burst: int = DEFAULT_BOT_BURST,
    ) -> Bot:
        """Make a bot (the hub refuses a taken or invalid nick) and keep it until it is
        removed."""
        bot = Bot(
            host,
            nick,
            plugin=plugin,
            bucket=TokenBucket(rate, burst),
            on_removed=self._forget,
            on_private=self.on_private,
        )
        self._bots[bot.session.key] = bot
        log.info("bot %s added by plugin %r", bot.nick, plugin)
        return bot

    def _forget(self, bot: Bot) -> None:
        if self._bots.get(bot.session.key) is bot:
            del self._bots[bot.session.key]
        log.info("bot %s of plugin %r removed", bot.nick, bot.plugin)

    def get(self, nick: str) -> Bot | None:
        """The bot called ``nick`` (look-alikes match), or ``None``."""
        return self._bots.get(name_key(nick))

    def of_plugin(self, plugin: str) -> list[Bot]:
        return [bot for bot in self._bots.values() if bot.plugin == plugin]

    def __iter__(self) -> Iterator[Bot]:
        return iter(list(self._bots.values()))

    def __len__(self) -> int:
        return len(self._bots)
