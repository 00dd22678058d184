"""The core commands: /help, /nick, /who, /me, /quit, /join, /part and /rooms.

An ordinary plugin: everything here goes through :func:`register_commands`, the same hook a
third-party plugin uses, and through the public :class:`~trio_chat.commands.CommandContext`.
"""

from __future__ import annotations

from ..commands import CommandContext, RegisterCommand
from ..hookspecs import hookimpl
from ..names import normalize_room


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    register(
        "help", help_, help="List every command, or show one: /help [command]", usage="[COMMAND]"
    )
    register("nick", nick, help="Change your nickname", usage="NEW_NICK")
    register("who", who, help="List who is in a room (default: the current one)", usage="[#ROOM]")
    register("me", me, help="Describe an action: /me waves", usage="ACTION")
    register("quit", quit_, help="Leave the chat", usage="[REASON]")
    register("join", join, help="Join a room (created if new) and make it current", usage="#ROOM")
    register("part", part, help="Leave a room (default: the current one)", usage="[#ROOM]")
    register("rooms", rooms, help="List the rooms with their member counts")


def help_(ctx: CommandContext) -> None:
    registry = ctx.server.commands
    wanted = ctx.args.strip().lstrip("/").lower()
    if wanted:
        spec = registry.get(wanted)
        if spec is None:
            ctx.fail(f"no such command: /{wanted}", "unknown_command")
            return
        ctx.reply(f"{spec.synopsis} - {spec.help}")
        return
    specs = list(registry)
    width = max(len(s.synopsis) for s in specs)
    lines = ["Commands:"] + [f"  {s.synopsis:<{width}}  {s.help}" for s in specs]
    ctx.reply(
        "\n".join(lines),
        {"commands": [{"name": s.name, "usage": s.usage, "help": s.help} for s in specs]},
    )


def nick(ctx: CommandContext) -> None:
    if not ctx.args:
        raise ctx.usage_error()
    ctx.hub.rename(ctx.session, ctx.args)


def who(ctx: CommandContext) -> None:
    room_name = normalize_room(ctx.args) if ctx.args else ctx.room
    room = ctx.hub.room(room_name)
    if room is None:
        ctx.fail(f"no such room: {room_name}", "no_such_room")
        return
    nicks = sorted((s.nick for s in room.members.values()), key=str.casefold)
    ctx.reply(
        f"{len(nicks)} in {room.name}: {', '.join(nicks)}",
        {"room": room.name, "users": nicks},
    )


def me(ctx: CommandContext) -> None:
    if not ctx.args:
        raise ctx.usage_error()
    ctx.action(ctx.args)


def quit_(ctx: CommandContext) -> None:
    reason = ctx.args or "quit"
    ctx.server.disconnect(ctx.session, "quit", reason)


def join(ctx: CommandContext) -> None:
    if not ctx.args:
        raise ctx.usage_error()
    room = ctx.hub.join(ctx.session, normalize_room(ctx.args.split()[0]))
    ctx.reply(f"now talking in {room.name}", {"room": room.name})


def part(ctx: CommandContext) -> None:
    room_name = normalize_room(ctx.args.split()[0]) if ctx.args else ctx.room
    room = ctx.hub.room(room_name)
    if room is None or ctx.session.id not in room.members:
        ctx.fail(f"you are not in {room_name}", "not_in_room")
        return
    ctx.hub.part(ctx.session, room.name, "parted")
    ctx.reply(f"left {room.name}; now talking in {ctx.session.room}", {"room": ctx.session.room})


def rooms(ctx: CommandContext) -> None:
    listing = sorted(ctx.hub.rooms.values(), key=lambda r: r.name)
    lines = [f"{r.name} ({len(r.members)})" + (f": {r.topic}" if r.topic else "") for r in listing]
    ctx.reply(
        "Rooms: " + (", ".join(lines) if lines else "none"),
        {"rooms": [{"name": r.name, "members": len(r.members), "topic": r.topic} for r in listing]},
    )
