"""Room commands: /join, /part, /rooms, /who and /topic (an ordinary plugin)."""

from __future__ import annotations

from collections.abc import Awaitable

import trio

from ..commands import CommandContext, RegisterCommand
from ..hookspecs import hookimpl
from ..hub import NotAllowed, Room, Session
from ..names import normalize_room
from ..rooms import users_reason

MAX_TOPIC_LENGTH = 300


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    register("join", join, help="Join a room (created if new) and make it current", usage="#ROOM")
    register(
        "part",
        part,
        help="Leave a room (default: the current one), telling it why",
        usage="[#ROOM [REASON]]",
    )
    register("rooms", rooms, help="List the rooms with their member counts and topics")
    register("who", who, help="List who is in a room (default: the current one)", usage="[#ROOM]")
    register(
        "topic", topic, help="Show the topic, or set it ('-' clears; operators)", usage="[TEXT]"
    )


def target_room(ctx: CommandContext, arg: str | None) -> Room:
    """The room named in ``arg`` (or the current one); fails unless it exists."""
    room_name = normalize_room(arg) if arg else ctx.room
    room = ctx.server.rooms.get(room_name)
    if room is None:
        ctx.fail(f"no such room: {room_name}", "no_such_room")
    return room


def join(ctx: CommandContext) -> Awaitable[None] | None:
    """Join at once when the room's latest lines are in memory (as a rule: see
    :meth:`ServerAPI.join_room_nowait`); only a join that reads them first is awaited
    (within the plugin timeout, as any awaitable a handler returns)."""
    if not ctx.args:
        raise ctx.usage_error()
    wanted = normalize_room(ctx.args.split()[0])
    # The join, then the room's history, then its live events (see ServerAPI.join_room).
    try:
        room = ctx.server.join_room_nowait(ctx.session, wanted)
    except trio.WouldBlock:
        return _join_after_reading(ctx, wanted)
    _joined(ctx, room)
    return None


async def _join_after_reading(ctx: CommandContext, wanted: str) -> None:
    _joined(ctx, await ctx.server.join_room(ctx.session, wanted))


def _joined(ctx: CommandContext, room: Room) -> None:
    text = f"now talking in {room.name}" + (f" (topic: {room.topic})" if room.topic else "")
    ctx.reply(text, {"room": room.name, "topic": room.topic})


#: The longest reason a ``/part`` carries (longer is cut), as ``/away`` and ``/topic``.
PART_REASON_LENGTH = 300


def part_reason(text: str) -> str:
    """The ``leave`` reason of ``/part #room TEXT``: the user's words on one line (at most
    :data:`PART_REASON_LENGTH` characters), or ``"parted"`` without any. Words that read
    as a kick or a ban (which everyone is shown, and IRC turns into ``KICK``) are marked
    as the user's own: ``parted: kicked by ...``."""
    words = " ".join(text.split())[:PART_REASON_LENGTH]
    if not words:
        return "parted"
    return users_reason(words, "parted")


def part(ctx: CommandContext) -> None:
    first, _, rest = ctx.args.strip().partition(" ")
    room_name = normalize_room(first) if first else ctx.room
    room = ctx.server.rooms.get(room_name)
    if room is None or ctx.session.id not in room.members:
        ctx.fail(f"you are not in {room_name}", "not_in_room")
    ctx.hub.part(ctx.session, room.name, part_reason(rest), tell_self=True)
    if ctx.session.rooms:
        ctx.reply(
            f"left {room.name}; now talking in {ctx.session.room}",
            {"room": ctx.session.room, "left": room.name},
        )
    else:
        ctx.reply(
            f"left {room.name}; you are in no room now: /join one",
            {"room": None, "left": room.name},
        )


def rooms(ctx: CommandContext) -> None:
    listing = sorted(ctx.server.rooms.values(), key=lambda r: r.name)
    lines = [f"{r.name} ({len(r.members)})" + (f": {r.topic}" if r.topic else "") for r in listing]
    ctx.reply(
        "Rooms: " + (", ".join(lines) if lines else "none"),
        {"rooms": [{"name": r.name, "members": len(r.members), "topic": r.topic} for r in listing]},
    )


def who(ctx: CommandContext) -> None:
    room = target_room(ctx, ctx.args.split()[0] if ctx.args else None)
    members = sorted(room.members.values(), key=lambda s: s.nick.casefold())

    def label(s: Session) -> str:
        mark = "@" if room.is_operator(s) else ""
        return (
            mark + s.nick + (" (bot)" if s.bot else "") + (f" (away: {s.away})" if s.away else "")
        )

    ctx.reply(
        f"{len(members)} in {room.name}: {', '.join(label(s) for s in members)}",
        {
            "room": room.name,
            "users": [s.nick for s in members],
            "members": [
                {"nick": s.nick, "op": room.is_operator(s), "away": s.away, "bot": s.bot}
                for s in members
            ],
        },
    )


def topic(ctx: CommandContext) -> None:
    room = target_room(ctx, None)
    text = ctx.args.strip()
    if not text:
        shown = room.topic or "(no topic)"
        ctx.reply(f"topic of {room.name}: {shown}", {"room": room.name, "topic": room.topic})
        return
    if not room.is_operator(ctx.session):
        raise NotAllowed(f"only operators of {room.name} can set its topic")
    if len(text) > MAX_TOPIC_LENGTH:
        ctx.fail(f"a topic has at most {MAX_TOPIC_LENGTH} characters", "bad_arguments")
    ctx.hub.set_topic(ctx.session, room, "" if text == "-" else text)
