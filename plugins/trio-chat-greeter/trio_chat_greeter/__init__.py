"""Greet whoever joins a room, privately, with that room's greeting; ``/greeting`` sets it.

An example of an ``async def`` hook: :meth:`Greeter.user_joined` is awaited by the server in
the background (bounded by its plugin timeout), so the join itself never waits for it.

A greeting is a template: ``{nick}``, ``{room}``, ``{count}`` (members, the newcomer
included) and ``{people}`` ("1 person", "3 people") are filled in; nothing else is
interpreted, so a user-supplied greeting cannot reach into Python objects the way
``str.format`` could.

The plugin is a :class:`Greeter` instance holding the greetings per room (for as long as the
server runs). The module itself is a plugin too (what the ``trio_chat`` entry point and
``--plugin trio_chat_greeter`` load): it delegates to :data:`default_greeter`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import trio

from trio_chat import CommandContext, CommandError, hookimpl
from trio_chat.commands import RegisterCommand
from trio_chat.names import name_key
from trio_chat.protocol import Info

if TYPE_CHECKING:
    from trio_chat import ChatServer
    from trio_chat.hub import Session

DEFAULT_GREETING = "Welcome to {room}, {nick}! {people} here."
MAX_GREETING_LENGTH = 300

_PLACEHOLDER = re.compile(r"\{(nick|room|count|people)\}")


def render(template: str, *, nick: str, room: str, count: int) -> str:
    """Fill in a greeting template: ``{nick}``, ``{room}``, ``{count}``, ``{people}``."""
    values = {
        "nick": nick,
        "room": room,
        "count": str(count),
        "people": f"{count} {'person' if count == 1 else 'people'}",
    }
    return _PLACEHOLDER.sub(lambda match: values[match[1]], template)


class Greeter:
    """Greets newcomers; ``greetings`` maps a room's key (see ``name_key``) to its template."""

    def __init__(self, default: str = DEFAULT_GREETING) -> None:
        self.default = default
        self.greetings: dict[str, str] = {}

    def greeting_for(self, room: str) -> str:
        return self.greetings.get(name_key(room), self.default)

    def set_greeting(self, room: str, template: str) -> None:
        self.greetings[name_key(room)] = template

    @hookimpl
    def register_commands(self, register: RegisterCommand) -> None:
        register(
            "greeting",
            self.greeting_command,
            help="Show or set the greeting newcomers to this room get "
            "({nick}, {room}, {people} are filled in)",
            usage="[TEXT]",
        )

    def greeting_command(self, ctx: CommandContext) -> None:
        # ctx.room is whatever room the command frame named: only its members may touch it.
        room = ctx.server.rooms.get(ctx.room)
        if room is None or ctx.session.id not in room.members:
            raise CommandError(f"you are not in {ctx.room}", "not_in_room")
        template = ctx.args.strip()
        if not template:
            current = self.greeting_for(room.name)
            ctx.reply(
                f"greeting for {room.name}: {current}", {"room": room.name, "template": current}
            )
            return
        if len(template) > MAX_GREETING_LENGTH:
            raise CommandError(
                f"a greeting has at most {MAX_GREETING_LENGTH} characters, not {len(template)}",
                "bad_arguments",
            )
        self.set_greeting(room.name, template)
        example = render(template, nick=ctx.nick, room=room.name, count=len(room.members))
        ctx.reply(
            f"greeting for {room.name} set; newcomers will read: {example}",
            {"room": room.name, "template": template},
        )

    @hookimpl
    async def user_joined(self, server: ChatServer, session: Session, room: str) -> None:
        # Nothing here needs to wait; the checkpoint stands in for real async work (a database,
        # an HTTP call) and shows why the checks below come after it.
        await trio.lowlevel.checkpoint()
        # By now the newcomer may have left again, or disconnected: greet only a member.
        current = server.rooms.get(room)
        if session.closed or current is None or session.id not in current.members:
            return
        text = render(
            self.greeting_for(current.name),
            nick=session.nick,
            room=current.name,
            count=len(current.members),
        )
        server.hub.send_to(
            session, Info(text=text, data={"event": "greeting", "room": current.name})
        )


#: The greeter the module-level hooks use (and so the entry point and ``--plugin``).
default_greeter = Greeter()


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    """The module as a plugin: :data:`default_greeter` provides ``/greeting``."""
    default_greeter.register_commands(register)


@hookimpl
async def user_joined(server: ChatServer, session: Session, room: str) -> None:
    """The module as a plugin: :data:`default_greeter` greets."""
    await default_greeter.user_joined(server, session, room)


__all__ = [
    "DEFAULT_GREETING",
    "MAX_GREETING_LENGTH",
    "Greeter",
    "default_greeter",
    "register_commands",
    "render",
    "user_joined",
]
