"""Slash-commands: the registry plugins fill, and the context a handler runs with."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import trio

from .errors import ChatError
from .errors import CommandError as CommandError
from .plugins import calling_plugin
from .protocol import Error, Info, error_reply

if TYPE_CHECKING:
    from .hub import Hub, Session
    from .server import ChatServer
    from .store import StoredMessage

log = logging.getLogger("trio_chat.commands")

COMMAND_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

Handler = Callable[["CommandContext"], "str | Awaitable[str | None] | None"]


class RegisterCommand(Protocol):
    """The ``register`` callable handed to the ``register_commands`` hook."""

    def __call__(self, name: str, handler: Handler, *, help: str, usage: str = "") -> None: ...


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    handler: Handler
    help: str
    usage: str
    plugin: str

    @property
    def synopsis(self) -> str:
        return f"/{self.name} {self.usage}".rstrip()


class CommandRegistry:
    """All commands by name; refuses duplicates and bad names, remembering who added what."""

    def __init__(self) -> None:
        self._commands: dict[str, CommandSpec] = {}

    def register(self, name: str, handler: Handler, *, help: str, usage: str = "") -> None:
        """The ``register`` callable of the ``register_commands`` hook: the command belongs
        to the plugin whose hook implementation is calling (see
        :func:`~trio_chat.plugins.calling_plugin`)."""
        owner = calling_plugin() or "(unknown plugin)"
        self.add(CommandSpec(name.lower(), handler, help.strip(), usage.strip(), owner))

    def add(self, spec: CommandSpec) -> None:
        if not COMMAND_NAME.match(spec.name):
            raise ValueError(f"plugin {spec.plugin!r}: invalid command name {spec.name!r}")
        if not callable(spec.handler):
            raise ValueError(f"plugin {spec.plugin!r}: handler of /{spec.name} is not callable")
        taken = self._commands.get(spec.name)
        if taken is not None:
            raise ValueError(
                f"plugin {spec.plugin!r}: /{spec.name} is already registered by {taken.plugin!r}"
            )
        self._commands[spec.name] = spec

    def remove_plugin(self, plugin: str) -> None:
        for name in [n for n, s in self._commands.items() if s.plugin == plugin]:
            del self._commands[name]

    def get(self, name: str) -> CommandSpec | None:
        return self._commands.get(name.lower())

    def __iter__(self) -> Any:
        return iter(sorted(self._commands.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._commands)


class CommandContext:
    """What a command handler gets: who called, with what, and ways to answer.

    ``reply`` answers the caller alone; ``say``/``action`` speak in the room as the caller
    (through message filters, like any chat line); ``fail`` refuses with an error.
    """

    def __init__(
        self,
        server: ChatServer,
        session: Session,
        spec: CommandSpec,
        args: str,
        room: str,
        ref: str | None,
    ) -> None:
        self.server = server
        self.session = session
        self.spec = spec
        self.name = spec.name
        self.args = args
        self.room = room
        self.ref = ref

    @property
    def nick(self) -> str:
        return self.session.nick

    @property
    def hub(self) -> Hub:
        return self.server.hub

    @property
    def account(self) -> str | None:
        """The key of the account the caller is logged in to; ``None`` for a guest."""
        return self.session.account

    @property
    def state(self) -> dict[str, Any]:
        """This plugin's own dict on the caller's session: kept for the connection's life,
        seen by no other plugin (it is ``session.extra[plugin name]``)."""
        state: dict[str, Any] = self.session.extra.setdefault(self.spec.plugin, {})
        return state

    async def history(
        self,
        room: str | None = None,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> list[StoredMessage]:
        """Stored messages of ``room`` (default: :attr:`room`), oldest first; see
        :meth:`ChatServer.history <trio_chat.api.ServerAPI.history>`."""
        return await self.server.history(
            self.room if room is None else room, before=before, after=after, limit=limit
        )

    def reply(self, text: str, data: dict[str, Any] | None = None) -> None:
        """Send ``text`` (and optional structured ``data``) to the caller only."""
        self.server.hub.send_to(self.session, Info(text=text, data=data, ref=self.ref))

    def say(self, text: str) -> None:
        """Say ``text`` in the room as the caller."""
        self.server.post(self.session, self.room, text, "say")

    def action(self, text: str) -> None:
        """Emote ``text`` in the room as the caller (shown as ``* nick text``)."""
        self.server.post(self.session, self.room, text, "action")

    def fail(self, text: str, code: str = "command_failed") -> NoReturn:
        """Refuse: raises :class:`CommandError`, so nothing after this call runs."""
        raise CommandError(text, code)

    def usage_error(self) -> CommandError:
        return CommandError(f"usage: {self.spec.synopsis}", "bad_arguments")


async def run_command(ctx: CommandContext) -> None:
    """Run one handler, awaiting it if async; turn every failure into an error for the caller.

    A plugin can raise, hang or return garbage: the caller gets one error line, the log
    names the plugin, and the server and connection carry on.
    """
    spec = ctx.spec
    hub = ctx.server.hub
    timeout = ctx.server.config.plugin_timeout
    try:
        result: Any = spec.handler(ctx)
        if inspect.isawaitable(result):
            with trio.move_on_after(timeout) as scope:
                result = await result
            if scope.cancelled_caught:
                log.error("plugin %r: /%s took longer than %ss", spec.plugin, spec.name, timeout)
                hub.send_to(
                    ctx.session,
                    Error(code="command_timeout", text=f"/{spec.name} took too long", ref=ctx.ref),
                )
                return
        if result is None:
            return
        if not isinstance(result, str):
            log.error(
                "plugin %r: /%s returned %s, not a string or None",
                spec.plugin,
                spec.name,
                type(result).__name__,
            )
            _internal_error(ctx)
            return
        ctx.reply(result)
    except ChatError as exc:
        hub.send_to(ctx.session, error_reply(exc, ctx.ref))
    except Exception:
        log.exception("plugin %r: /%s raised", spec.plugin, spec.name)
        _internal_error(ctx)


def _internal_error(ctx: CommandContext) -> None:
    error = Error(code="plugin_error", text=f"/{ctx.name} failed (internal error)", ref=ctx.ref)
    ctx.server.hub.send_to(ctx.session, error)
