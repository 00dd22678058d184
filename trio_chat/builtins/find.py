"""Finding lines again: /search and /mentions (an ordinary plugin).

Both go through the public API (``ctx.server.search``, ``ctx.server.mentions``), as a
third-party plugin's commands would; what they find is in :mod:`trio_chat.search`.
"""

from __future__ import annotations

from typing import Any

from ..commands import CommandContext, RegisterCommand
from ..hookspecs import hookimpl
from ..names import normalize_room
from ..search import MAX_MENTIONS, MENTIONS_PAGE, SEARCH_PAGE, mentions_text


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    register(
        "search",
        search,
        help=(
            f"Find the latest {SEARCH_PAGE} lines of your rooms (or of #ROOM) holding every "
            "word; the same search again shows older ones"
        ),
        usage="[#ROOM] WORDS",
    )
    register(
        "mentions",
        mentions,
        help=f"List the latest lines of your rooms naming you (default {MENTIONS_PAGE})",
        usage="[N]",
    )


async def search(ctx: CommandContext) -> None:
    ctx.server.require_store("search")
    room, _, words = ctx.args.strip().partition(" ")
    if room.startswith("#"):
        room = normalize_room(room)
    else:
        room, words = "", ctx.args.strip()
    if not words.strip():
        raise ctx.usage_error()
    # The same search again pages back from the oldest line it showed (as /history does);
    # any other search starts from the newest.
    asked = (room, " ".join(words.split()))
    last: dict[str, Any] | None = ctx.state.get("last_search")
    before = last["before"] if last is not None and last["asked"] == asked else None
    reply = await ctx.server.search(
        ctx.session, words, room=room or None, before=before, ref=ctx.ref
    )
    if reply.more and reply.messages:
        ctx.state["last_search"] = {"asked": asked, "before": reply.messages[-1]["id"]}
    else:
        ctx.state.pop("last_search", None)
    ctx.hub.send_to(ctx.session, reply)


async def mentions(ctx: CommandContext) -> None:
    ctx.server.require_store("mentions")
    arg = ctx.args.strip()
    if arg and not arg.isdecimal():
        raise ctx.usage_error()
    count = min(int(arg), MAX_MENTIONS) if arg else MENTIONS_PAGE
    if count < 1:
        raise ctx.usage_error(f"N is 1 to {MAX_MENTIONS}")
    lines = await ctx.server.mentions(ctx.session, limit=count)
    ctx.reply(mentions_text(lines, ctx.nick), {"mentions": lines})
