"""The presence commands: /typing (typing notices off or on) and /read (a read marker).

An ordinary plugin on the public API (``ctx.server.set_typing_notices``,
``ctx.server.mark_read``): the frames ``typing`` and ``read`` do the same for programs;
these are for people, in text mode and any client that passes commands on.
"""

from __future__ import annotations

from ..commands import CommandContext, RegisterCommand
from ..hookspecs import hookimpl


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    register(
        "typing",
        typing_,
        help="Typing notices on or off for you: off, yours are not sent and you get none",
        usage="[on|off]",
    )
    register(
        "read",
        read,
        help="Mark the room read up to message ID (default: all of it), on all your devices",
        usage="[ID]",
    )


def typing_(ctx: CommandContext) -> None:
    word = ctx.args.strip().lower()
    if word not in ("", "on", "off"):
        raise ctx.usage_error()
    if word:
        ctx.server.set_typing_notices(ctx.session, word == "on")
    on = not ctx.session.typing_off
    if on:
        text = "typing notices are on: clients that ask are told when you type, and you of others"
    else:
        text = "typing notices are off: nobody is told when you type, and you get none"
    ctx.reply(text, {"typing": on})


async def read(ctx: CommandContext) -> None:
    word = ctx.args.strip().lstrip("#")
    if word and not word.isdigit():
        raise ctx.usage_error("ID is a message id (a whole number)")
    # No id: everything delivered so far (every id below the hub's bound went out).
    message_id = int(word) if word else ctx.hub.history_bound() - 1
    moved = await ctx.server.mark_read(ctx.session, ctx.room, message_id)
    marker = ctx.server.read_marker(ctx.session, ctx.room)
    room = ctx.hub.room(ctx.room)
    name = room.name if room is not None else ctx.room
    if moved:
        ctx.reply(f"{name} marked read up to {marker}", {"room": name, "read": marker})
    else:
        ctx.reply(f"{name} was read up to {marker} already", {"room": name, "read": marker})
