"""Accounts and history: /register, /login, /password and /history (an ordinary plugin).

Passwords never appear in a reply, a log line or anyone else's view; a failed login says
"wrong nickname or password" whether or not the nickname is registered.
"""

from __future__ import annotations

from ..commands import CommandContext, RegisterCommand
from ..hookspecs import hookimpl
from ..protocol import Info

DEFAULT_PAGE = 20


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    register("register", register_, help="Register your current nickname", usage="PASSWORD")
    register("login", login, help="Log in to a registered nickname", usage="NICK PASSWORD")
    register("password", password, help="Change your password", usage="OLD NEW")
    register(
        "history",
        history,
        help=f"Show older messages of the current room (default {DEFAULT_PAGE})",
        usage="[N]",
    )


async def register_(ctx: CommandContext) -> None:
    ctx.server.require_store("accounts")
    secret = ctx.args.strip()
    if not secret or " " in secret:
        raise ctx.usage_error()
    await ctx.server.register_account(ctx.session, secret)
    ctx.reply(f"{ctx.nick} is now registered to you; log in with /login {ctx.nick} PASSWORD")


async def login(ctx: CommandContext) -> None:
    # No database check here: an auth backend may log in users without one.
    words = ctx.args.split()
    if len(words) != 2:
        raise ctx.usage_error()
    # This connection, wherever the login takes it (it may join the account's user,
    # connected elsewhere: ctx.session is then the user it was).
    connection = ctx.hub.connection_of(ctx.session)
    nick = await ctx.server.log_in(ctx.session, words[0], words[1])
    ctx.hub.send_to(connection, Info(text=f"logged in as {nick}", ref=ctx.ref))


async def password(ctx: CommandContext) -> None:
    ctx.server.require_store("accounts")
    words = ctx.args.split()
    if len(words) != 2:
        raise ctx.usage_error()
    await ctx.server.change_password(ctx.session, words[0], words[1])
    ctx.reply("password changed")


async def history(ctx: CommandContext) -> None:
    ctx.server.require_store("history")
    arg = ctx.args.strip()
    if arg and not arg.isdigit():
        raise ctx.usage_error()
    count = int(arg) if arg else DEFAULT_PAGE
    room = ctx.server.rooms.get(ctx.room)
    if room is None or ctx.session.id not in room.members:
        ctx.fail(f"you are not in {ctx.room}", "not_in_room")
    # Each /history pages further back from the oldest message this session was shown.
    await ctx.server.show_older_history(ctx.session, room.name, limit=count, ref=ctx.ref)
