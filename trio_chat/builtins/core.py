"""The core commands: /help, /nick, /me, /msg, /away and /quit.

An ordinary plugin: everything here goes through :func:`register_commands`, the same hook a
third-party plugin uses, and through the public :class:`~trio_chat.commands.CommandContext`.
"""

from __future__ import annotations

from ..commands import CommandContext, CommandSpec, RegisterCommand
from ..hookspecs import hookimpl
from ..names import name_key, normalize_nick
from ..rooms import users_reason


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    register(
        "help", help_, help="List every command, or show one: /help [command]", usage="[COMMAND]"
    )
    register("nick", nick, help="Change your nickname", usage="NEW_NICK")
    register("me", me, help="Describe an action: /me waves", usage="ACTION")
    register(
        "notice",
        notice,
        help="Say a notice in the room: a line bots never answer (IRC's NOTICE)",
        usage="TEXT",
    )
    register("quit", quit_, help="Leave the chat", usage="[REASON]")
    register("msg", msg, help="Send a private message only NICK sees", usage="NICK TEXT")
    register("away", away, help="Mark yourself away (no reason: back again)", usage="[REASON]")


def help_(ctx: CommandContext) -> None:
    wanted = ctx.args.strip().lstrip("/").lower()
    if wanted:
        spec = ctx.server.command(wanted)
        if spec is None:
            ctx.fail(f"no such command: /{wanted}", "unknown_command")
            return
        ctx.reply(f"{spec.synopsis} - {_help_line(spec)}")
        return
    specs = ctx.server.command_list()
    width = max(len(s.synopsis) for s in specs)
    lines = ["Commands:"] + [f"  {s.synopsis:<{width}}  {_help_line(s)}" for s in specs]
    ctx.reply(
        "\n".join(lines),
        {
            "commands": [
                {
                    "name": s.name,
                    "usage": s.usage,
                    "help": s.help,
                    "allowed": s.allowed,
                    "rate": None if s.rate is None else [s.rate.count, s.rate.seconds],
                }
                for s in specs
            ]
        },
    )


def _help_line(spec: CommandSpec) -> str:
    """The help text, and who may run the command and how often if it says (``/kick`` -
    ``Remove NICK from the room (operators only)``)."""
    return f"{spec.help} ({spec.rules})" if spec.rules else spec.help


async def nick(ctx: CommandContext) -> None:
    if not ctx.args:
        raise ctx.usage_error()
    new = normalize_nick(ctx.args)
    if name_key(new) != ctx.account and await ctx.server.is_registered(new):
        ctx.fail(f"the nickname {new} is registered; /login {new} PASSWORD", "nick_registered")
    ctx.hub.rename(ctx.session, new)


def me(ctx: CommandContext) -> None:
    if not ctx.args:
        raise ctx.usage_error()
    ctx.action(ctx.args)


def notice(ctx: CommandContext) -> None:
    if not ctx.args:
        raise ctx.usage_error()
    ctx.notice(ctx.args)


def quit_(ctx: CommandContext) -> None:
    reason = users_reason(ctx.args, "quit") if ctx.args else "quit"
    ctx.server.end_connection(ctx.session, "quit", reason)


def msg(ctx: CommandContext) -> None:
    target, _, text = ctx.args.partition(" ")
    if not target or not text.strip():
        raise ctx.usage_error()
    event = ctx.hub.private(ctx.session, target, text.strip())
    recipient = ctx.hub.find(event.to)
    if recipient is not None and recipient.away is not None and recipient is not ctx.session:
        ctx.reply(
            f"{recipient.nick} is away: {recipient.away}",
            {"nick": recipient.nick, "away": recipient.away},
        )


def away(ctx: CommandContext) -> None:
    reason = ctx.args.strip()
    was = ctx.session.away
    ctx.session.away = reason or None
    if ctx.session.away != was:
        ctx.hub.tell_away(ctx.session)
    if reason:
        ctx.reply(f"you are marked as away: {reason}", {"away": reason})
    else:
        ctx.reply("you are back", {"away": None})
