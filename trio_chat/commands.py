"""Slash-commands: running a handler, and the names plugins import from here.

The registry, the command's spec and the context a handler gets belong to the plugin API
(:mod:`trio_chat.api`, beside :class:`~trio_chat.api.ServerAPI` which they refer to and
which refers to them); they are importable from here as they always were.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Protocol

import trio

from .api import COMMAND_NAME as COMMAND_NAME
from .api import CommandContext as CommandContext
from .api import CommandRegistry as CommandRegistry
from .api import CommandSpec as CommandSpec
from .api import Handler as Handler
from .command_rules import rate_refusal
from .errors import ChatError
from .errors import CommandError as CommandError
from .hub import NotAllowed, host_of
from .protocol import Error, error_reply

log = logging.getLogger("trio_chat.commands")


class RegisterCommand(Protocol):
    """The ``register`` callable handed to the ``register_commands`` hook."""

    def __call__(
        self,
        name: str,
        handler: Handler,
        *,
        help: str,
        usage: str = "",
        allowed: str = "everyone",
        rate: tuple[int, float] | None = None,
    ) -> None: ...


async def run_command(ctx: CommandContext) -> None:
    """Run one handler, awaiting it if async; turn every failure into an error for the caller.

    A plugin can raise, hang or return garbage: the caller gets one error line, the log
    names the plugin, and the server and connection carry on.
    """
    spec = ctx.spec
    hub = ctx.server.hub
    timeout = ctx.server.config.plugin_timeout
    try:
        check_rules(ctx)
    except ChatError as exc:
        hub.send_to(ctx.session, error_reply(exc, ctx.ref))
        return
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
            if inspect.iscoroutine(result):
                result.close()  # never to be awaited: no "never awaited" warning later
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
    except (Exception, SystemExit):
        # SystemExit too: a plugin's sys.exit() must not end the server for everyone.
        log.exception("plugin %r: /%s raised", spec.plugin, spec.name)
        _internal_error(ctx)


def check_rules(ctx: CommandContext) -> None:
    """Refuse the call if the command's rules forbid it (``not_allowed``, ``rate_limited``):
    who may run it first, so a refused call uses up none of the caller's rate."""
    spec, session = ctx.spec, ctx.session
    if spec.allowed == "admins" and not session.admin:
        raise NotAllowed(f"not allowed: /{spec.name} is for server administrators")
    if spec.allowed == "operators":
        room = ctx.server.rooms.get(ctx.room)
        if room is None or not room.is_operator(session):
            raise NotAllowed(f"not allowed: you are not an operator of {ctx.room}")
    if spec.rate is not None:
        # Per account; a guest's budget is its address's, so a new nick does not renew it.
        user = session.account or f"guest@{host_of(session.address)}"
        wait = spec.rate.take(user, trio.current_time())
        if wait is not None:
            raise ChatError("rate_limited", rate_refusal(spec.name, spec.rate, wait))


def _internal_error(ctx: CommandContext) -> None:
    error = Error(code="plugin_error", text=f"/{ctx.name} failed (internal error)", ref=ctx.ref)
    ctx.server.hub.send_to(ctx.session, error)
