"""Message triggers: ``@on_message(r"^!weather (\\w+)")`` runs a handler for matching lines.

A trigger is an ordinary ``message_posted`` implementation (pluggy's ``specname``), made
by the decorator: it is registered, listed and unregistered with its plugin like any
hook, runs after the line went out (never delaying it), and each matching line starts
the handler in the background, bounded by the plugin timeout. What the decorator adds:

* the pattern (``re.search`` on the text; ``^`` anchors it to the start);
* ``bot="NAME"``: the trigger hears only the rooms that bot is in, and the handler's
  ``ctx.say`` (and a returned string) speak as that bot in the room of the line;
  without it, a returned string is an ``info`` to the sender alone (``ctx.reply``);
* ``private=True`` (with ``bot=``): the private messages sent to that bot instead (a
  ``bot_messaged`` implementation), answered privately;
* lines said by bots are not heard (``from_bots=True`` to hear them): two bots answering
  each other would never stop;
* at most ``max_running`` runs of one trigger at once: a line that matches while that
  many are still running is skipped (logged), so a trigger that hangs holds a few tasks
  for the plugin timeout, not one per line.

The handler gets a :class:`TriggerContext` and may be a plain function or ``async def``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import CommandError
from .hookspecs import hookimpl
from .names import name_key
from .posted import LOG_EVERY
from .protocol import Info, Message, Private

if TYPE_CHECKING:
    from .api import ServerAPI
    from .bots import Bot
    from .users import Session

__all__ = ["DEFAULT_MAX_RUNNING", "TriggerContext", "on_message"]

log = logging.getLogger("trio_chat.plugins")

#: Runs of one trigger at once, by default (``on_message(..., max_running=N)``).
DEFAULT_MAX_RUNNING = 4

#: A trigger's function: ``handler(ctx)``, or ``handler(self, ctx)`` for a method.
TriggerHandler = Callable[..., "str | Awaitable[str | None] | None"]


class TriggerContext:
    """What a trigger's handler gets: the line, the match, and ways to answer.

    ``ctx.match`` is the :class:`re.Match` (``ctx.match[1]``: the first group);
    ``ctx.text``, ``ctx.nick``, ``ctx.room`` are the line's; ``ctx.message`` is the
    ``message`` event itself (a ``private`` one for a private trigger: then ``ctx.room``
    is ``None``) and ``ctx.session`` its sender; ``ctx.server`` the server.
    """

    def __init__(
        self,
        server: ServerAPI,
        message: Message | Private,
        session: Session,
        match: re.Match[str],
        bot: Bot | None,
    ) -> None:
        self.server = server
        self.message = message
        self.session = session
        self.match = match
        #: The bot named by ``on_message(..., bot=NAME)``, or ``None``.
        self.bot = bot

    @property
    def text(self) -> str:
        return self.message.text

    @property
    def nick(self) -> str:
        """Who said the line (as it was when they said it)."""
        return self.message.nick

    @property
    def room(self) -> str | None:
        """The line's room; ``None`` for a private message to the bot."""
        message = self.message
        return message.room if type(message) is Message else None

    @property
    def private(self) -> bool:
        """Whether the line is a private message to the bot (``private=True`` triggers)."""
        return type(self.message) is Private

    def say(self, text: str) -> None:
        """Say ``text`` in the line's room as the trigger's bot; for a private message,
        tell the sender privately."""
        room = self.room
        if room is None:
            self._bot().tell(self.nick, text)
        else:
            self._bot().say(room, text)

    def act(self, text: str) -> None:
        """An action (``* bot text``) in the line's room as the trigger's bot (for a
        private message: told to the sender, as :meth:`say`)."""
        room = self.room
        if room is None:
            self._bot().tell(self.nick, text)
        else:
            self._bot().act(room, text)

    def reply(self, text: str) -> None:
        """Tell the sender alone (an ``info`` event, as a command's reply), if still here."""
        if not self.session.closed:
            self.server.hub.send_to(self.session, Info(text=text))

    def fail(self, text: str) -> NoReturn:
        """Stop here: ``text`` goes to the log (the sender is not told)."""
        raise CommandError(text, "command_failed")

    def _bot(self) -> Bot:
        if self.bot is None:
            raise RuntimeError("this trigger has no bot: declare on_message(..., bot=NAME)")
        return self.bot


def on_message(
    pattern: str | re.Pattern[str],
    *,
    flags: int = 0,
    bot: str | None = None,
    private: bool = False,
    from_bots: bool = False,
    max_running: int = DEFAULT_MAX_RUNNING,
) -> Callable[[TriggerHandler], Callable[..., Any]]:
    """Decorate a function of a plugin to run it for every chat line that matches
    ``pattern`` (``re.search``, with ``flags``). See the module's doc, and the plugin
    docs' "Triggers". Works on module-level functions and on methods of a plugin class.

    ``private=True`` (with ``bot``): the trigger hears the private messages sent to that
    bot instead of the rooms' lines (a ``bot_messaged`` implementation); its answers go
    back to the sender privately."""
    compiled = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
    if max_running < 1:
        raise ValueError("max_running is at least 1")
    bot_nick = bot
    if private and bot_nick is None:
        raise ValueError("a private trigger names its bot: on_message(..., bot=NICK, private=True)")

    def decorate(handler: TriggerHandler) -> Callable[..., Any]:
        if not callable(handler):
            raise TypeError("on_message decorates a function")
        name = getattr(handler, "__qualname__", repr(handler))
        running = skipped = 0
        last_logged = -LOG_EVERY

        def heard(
            call: TriggerHandler,
            server: ServerAPI,
            message: Message | Private,
            session: Session,
            messaged: Bot | None = None,
        ) -> Awaitable[None] | None:
            nonlocal running
            if session.bot and not from_bots:
                return None
            if type(message) is Message and message.kind == "notice":
                return None  # a notice is never answered (IRC's rule: no loops of bots)
            speaker = None
            if messaged is not None:  # a private trigger: only its own bot's messages
                if name_key(messaged.nick) != name_key(bot_nick or ""):
                    return None
                speaker = messaged
            elif bot_nick is not None:
                speaker = server.bot(bot_nick)
                if speaker is None or speaker.session is session:
                    return None
                if type(message) is not Message or message.room not in speaker.session.rooms:
                    return None
            match = compiled.search(message.text)
            if match is None:
                return None
            if running >= max_running:
                nonlocal skipped, last_logged
                skipped += 1
                now = time.monotonic()
                if now - last_logged >= LOG_EVERY:  # a flood of lines, not of log lines
                    last_logged = now
                    log.error(
                        "trigger %s skipped %d lines: %d runs still going",
                        name,
                        skipped,
                        max_running,
                    )
                    skipped = 0
                return None
            running += 1
            ctx = TriggerContext(server, message, session, match, speaker)
            return run(call, ctx)

        async def run(call: TriggerHandler, ctx: TriggerContext) -> None:
            nonlocal running
            try:
                result = call(ctx)
                if inspect.isawaitable(result):
                    result = await result
                if result is None:
                    return
                if not isinstance(result, str):
                    log.error(
                        "trigger %s returned %s, not a string or None",
                        name,
                        type(result).__name__,
                    )
                elif ctx.bot is not None:
                    ctx.say(result)
                else:
                    ctx.reply(result)
            except (Exception, SystemExit):  # a trigger's sys.exit() ends no server
                log.exception("trigger %s (%s) raised", name, compiled.pattern)
            finally:
                running -= 1

        parameters = list(inspect.signature(handler).parameters)
        trigger: Callable[..., Any]
        if private and parameters[:1] == ["self"]:

            def private_method(
                self: object, server: ServerAPI, bot: Bot, message: Private, session: Session
            ) -> Awaitable[None] | None:
                method: Callable[..., Any] = handler
                return heard(functools.partial(method, self), server, message, session, bot)

            trigger = private_method
        elif private:

            def private_function(
                server: ServerAPI, bot: Bot, message: Private, session: Session
            ) -> Awaitable[None] | None:
                return heard(handler, server, message, session, bot)

            trigger = private_function
        elif parameters[:1] == ["self"]:  # a method: bound to the plugin object when called

            def trigger_method(
                self: object, server: ServerAPI, message: Message, session: Session
            ) -> Awaitable[None] | None:
                method: Callable[..., Any] = handler
                return heard(functools.partial(method, self), server, message, session)

            trigger = trigger_method
        else:

            def trigger_function(
                server: ServerAPI, message: Message, session: Session
            ) -> Awaitable[None] | None:
                return heard(handler, server, message, session)

            trigger = trigger_function
        trigger = functools.wraps(handler)(trigger)
        # Keep pluggy's view of the arguments: functools.wraps set __wrapped__ to the
        # handler, whose one argument (ctx) is not the hook's.
        del trigger.__wrapped__
        trigger.handler = handler  # type: ignore[attr-defined]
        trigger.pattern = compiled  # type: ignore[attr-defined]
        return hookimpl(specname="bot_messaged" if private else "message_posted")(trigger)

    return decorate
