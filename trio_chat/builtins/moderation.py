"""Moderation: /op, /deop, /kick, /ban, /unban, /mute, /unmute and /oper (an ordinary plugin).

Every rule is checked on the server: the commands are registered ``allowed="operators"``,
so a non-operator gets ``not_allowed`` before a handler runs, and nothing happens. Whoever
creates a room is its first operator; server administrators (``--admin`` nicks who proved
themselves with ``/oper PASSWORD``) are operators everywhere.

Rules change through ``ctx.server`` (``set_operator``, ``ban``, ...), which goes through
:meth:`Hub.set_rule <trio_chat.hub.Hub.set_rule>`: with several nodes, the broker shares
each change, so a ban given here holds on every node. Administrator status is this
connection's alone: its commands run on its own node, where it is known.
"""

from __future__ import annotations

import hmac

from ..commands import CommandContext, RegisterCommand
from ..hookspecs import hookimpl
from ..hub import NoSuchNick, NotAllowed, Room, Session, host_of
from ..names import name_key
from .rooms import target_room


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    # allowed="operators": /help says so, and the server refuses others before the handler
    # runs (see _operator_room).
    ops = "operators"
    register("op", op, help="Make NICK an operator of the current room", usage="NICK", allowed=ops)
    register("deop", deop, help="Take operator status from NICK", usage="NICK", allowed=ops)
    register(
        "kick", kick, help="Remove NICK from the current room", usage="NICK [REASON]", allowed=ops
    )
    register("ban", ban, help="Kick NICK and keep them out until /unban", usage="NICK", allowed=ops)
    register("unban", unban, help="Let a banned NICK join again", usage="NICK", allowed=ops)
    register("mute", mute, help="Stop NICK speaking in the current room", usage="NICK", allowed=ops)
    register("unmute", unmute, help="Let a muted NICK speak again", usage="NICK", allowed=ops)
    register("oper", oper, help="Become a server administrator", usage="PASSWORD")


def _operator_room(ctx: CommandContext) -> Room:
    """The room the command is for, where the caller is an operator: the server checked
    that before the handler ran (the commands are registered ``allowed="operators"``)."""
    return target_room(ctx, None)


def _nick_argument(ctx: CommandContext) -> str:
    """The NICK the command names first, or a usage error."""
    if not ctx.args:
        raise ctx.usage_error()
    return ctx.args.split()[0]


def _member(ctx: CommandContext, room: Room) -> Session:
    nick = _nick_argument(ctx)
    target = ctx.hub.find(nick)
    if target is None or target.id not in room.members:
        raise NoSuchNick(f"{nick} is not in {room.name}")
    return target


def op(ctx: CommandContext) -> None:
    room = _operator_room(ctx)
    target = _member(ctx, room)
    ctx.server.set_operator(room, target, True, by=ctx.nick)
    ctx.reply(f"{target.nick} is now an operator of {room.name}")
    ctx.hub.send_to_info(target, f"{ctx.nick} made you an operator of {room.name}")


def deop(ctx: CommandContext) -> None:
    room = _operator_room(ctx)
    target = _member(ctx, room)
    ctx.server.set_operator(room, target, False, by=ctx.nick)
    ctx.reply(f"{target.nick} is no longer an operator of {room.name}")


def kick(ctx: CommandContext) -> None:
    room = _operator_room(ctx)
    target = _member(ctx, room)
    reason = ctx.args.partition(" ")[2].strip()
    why = f"kicked by {ctx.nick}" + (f": {reason}" if reason else "")
    ctx.hub.part(target, room.name, why, tell_self=True)


def ban(ctx: CommandContext) -> None:
    room = _operator_room(ctx)
    nick = _nick_argument(ctx)
    target = ctx.hub.find(nick)
    host = host_of(target.address) if target is not None else "?"
    ctx.server.ban(room, nick, host, by=ctx.nick)
    if target is not None and target.id in room.members:
        ctx.hub.part(target, room.name, f"banned by {ctx.nick}", tell_self=True)
    ctx.reply(f"{nick} is banned from {room.name}")


def unban(ctx: CommandContext) -> None:
    room = _operator_room(ctx)
    nick = _nick_argument(ctx)
    if not ctx.server.unban(room, nick, by=ctx.nick):
        ctx.fail(f"{nick} is not banned from {room.name}", "not_banned")
    ctx.reply(f"{nick} may join {room.name} again")


def mute(ctx: CommandContext) -> None:
    room = _operator_room(ctx)
    target = _member(ctx, room)
    ctx.server.set_muted(room, target, True, by=ctx.nick)
    ctx.reply(f"{target.nick} is muted in {room.name}")
    ctx.hub.send_to_info(target, f"{ctx.nick} muted you in {room.name}")


def unmute(ctx: CommandContext) -> None:
    room = _operator_room(ctx)
    target = _member(ctx, room)
    ctx.server.set_muted(room, target, False, by=ctx.nick)
    ctx.reply(f"{target.nick} may speak in {room.name} again")
    ctx.hub.send_to_info(target, f"{ctx.nick} unmuted you in {room.name}")


def oper(ctx: CommandContext) -> None:
    config = ctx.server.config
    password = ctx.args.strip()
    if not password:
        raise ctx.usage_error()
    allowed = name_key(ctx.nick) in {name_key(n) for n in config.admins}
    expected = config.admin_password or ""
    # Compare even when not allowed, so the reply time says nothing about the admin list.
    good = hmac.compare_digest(password.encode(), expected.encode()) and bool(expected)
    if not (allowed and good):
        raise NotAllowed("not allowed: wrong password or not an administrator")
    ctx.session.admin = True
    ctx.reply("you are now a server administrator")
