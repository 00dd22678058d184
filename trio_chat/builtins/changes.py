"""Replies, edits, deletes and reactions as commands (an ordinary plugin): what text mode,
IRC's ``/quote`` and any client can type, through the same server methods the ``say``
(with ``reply_to``), ``edit``, ``delete`` and ``react`` frames use
(:mod:`trio_chat.message_changes`). Text mode shows each line's id (``[12:30:05 #42]``)
for naming it here.
"""

from __future__ import annotations

from ..commands import CommandContext, RegisterCommand
from ..hookspecs import hookimpl


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    register("reply", reply, help="Answer message ID of the room", usage="ID TEXT")
    register("edit", edit, help="Replace the text of your message ID", usage="ID TEXT")
    register(
        "delete",
        delete,
        help="Delete your message ID (operators: anyone's)",
        usage="ID",
    )
    register("react", react, help="React to message ID with an emoji", usage="ID EMOJI")
    register("unreact", unreact, help="Take back your reaction to message ID", usage="ID EMOJI")


def _message_id(ctx: CommandContext, word: str) -> int:
    """The ID a command names: a whole number (``#42`` as text mode shows it, or ``42``)."""
    digits = word.removeprefix("#")
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise ctx.usage_error(f"{word!r} is no message id")
    return int(digits)


def _id_and_rest(ctx: CommandContext) -> tuple[int, str]:
    word, _, rest = ctx.args.partition(" ")
    if not word or not rest.strip():
        raise ctx.usage_error()
    return _message_id(ctx, word), rest.strip()


async def reply(ctx: CommandContext) -> None:
    message_id, text = _id_and_rest(ctx)
    await ctx.server.reply(ctx.session, ctx.room, message_id, text)


async def edit(ctx: CommandContext) -> None:
    message_id, text = _id_and_rest(ctx)
    await ctx.server.edit_message(ctx.session, ctx.room, message_id, text)


async def delete(ctx: CommandContext) -> None:
    words = ctx.args.split()
    if len(words) != 1:
        raise ctx.usage_error()
    await ctx.server.delete_message(ctx.session, ctx.room, _message_id(ctx, words[0]))


async def react(ctx: CommandContext) -> None:
    await _react(ctx, on=True)


async def unreact(ctx: CommandContext) -> None:
    await _react(ctx, on=False)


async def _react(ctx: CommandContext, *, on: bool) -> None:
    words = ctx.args.split()
    if len(words) != 2:
        raise ctx.usage_error()
    message_id = _message_id(ctx, words[0])
    if not await ctx.server.react(ctx.session, ctx.room, message_id, words[1], on=on):
        ctx.reply(
            f"you had {'already' if on else 'not'} reacted {words[1]} to message {message_id}"
        )
