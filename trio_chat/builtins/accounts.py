"""Accounts and history: /register, /login, /password and /history (an ordinary plugin).

Passwords never appear in a reply, a log line or anyone else's view; a failed login says
"wrong nickname or password" whether or not the nickname is registered.
"""

from __future__ import annotations

from ..commands import CommandContext, RegisterCommand
from ..hookspecs import hookimpl
from ..hub import NickInUse
from ..names import name_key, normalize_nick
from ..persistence import LoginRefused

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


def _refused(ctx: CommandContext, exc: LoginRefused) -> None:
    ctx.fail(exc.text, exc.code)


async def register_(ctx: CommandContext) -> None:
    store = ctx.server.require_store("accounts")
    secret = ctx.args.strip()
    if not secret or " " in secret:
        raise ctx.usage_error()
    if ctx.session.extra.get("account") == ctx.session.key:
        ctx.fail(f"{ctx.nick} is already your registered nickname", "nick_registered")
    try:
        account = await store.register(ctx.nick, secret)
    except LoginRefused as exc:
        _refused(ctx, exc)
        return
    ctx.session.extra["account"] = account
    ctx.reply(f"{ctx.nick} is now registered to you; log in with /login {ctx.nick} PASSWORD")


async def login(ctx: CommandContext) -> None:
    store = ctx.server.require_store("accounts")
    words = ctx.args.split()
    if len(words) != 2:
        raise ctx.usage_error()
    nick = normalize_nick(words[0])
    try:
        account = await store.check_login(nick, words[1], ctx.session.address)
    except LoginRefused as exc:
        _refused(ctx, exc)
        return
    holder = ctx.hub.find(nick)
    if holder is not None and holder is not ctx.session:
        raise NickInUse(f"{nick} is logged in on another connection")
    ctx.session.extra["account"] = account
    ctx.hub.rename(ctx.session, nick)
    ctx.reply(f"logged in as {nick}")


async def password(ctx: CommandContext) -> None:
    store = ctx.server.require_store("accounts")
    words = ctx.args.split()
    if len(words) != 2:
        raise ctx.usage_error()
    account = ctx.session.extra.get("account")
    if account is None:
        ctx.fail("log in (or /register) first", "login_required")
        return
    try:
        changed = await store.change_password(account, words[0], words[1])
    except LoginRefused as exc:
        _refused(ctx, exc)
        return
    except ValueError as exc:  # an empty or overlong new password
        ctx.fail(str(exc), "bad_password")
    if not changed:
        ctx.fail("wrong password; nothing changed", "login_failed")
    ctx.reply("password changed")


async def history(ctx: CommandContext) -> None:
    store = ctx.server.require_store("history")
    arg = ctx.args.strip()
    if arg and not arg.isdigit():
        raise ctx.usage_error()
    count = int(arg) if arg else DEFAULT_PAGE
    room = ctx.hub.room(ctx.room)
    if room is None or ctx.session.id not in room.members:
        ctx.fail(f"you are not in {ctx.room}", "not_in_room")
        return
    # Each /history pages further back from the oldest message this session was shown.
    oldest: dict[str, int] = ctx.session.extra.get("history_oldest", {})
    await store.send_room_page(
        ctx.session, room.name, before=oldest.get(name_key(room.name)), limit=count, ref=ctx.ref
    )
