"""Logging in: the nickname (and password) dialogue before the first welcome.

Asked in the terminal (or read from piped stdin, where each question is printed first, as
the server's text mode asks it): a nick, or ``/login NICK PASSWORD`` / ``/register NICK
PASSWORD`` as at the text-mode prompt; a registered nick's password when the server says
it is one (an empty answer picks another nick). The server's answers come from the
session's receiver through a channel, so that the dialogue only ever waits for its own.
"""

from __future__ import annotations

import dataclasses
import functools

import trio

from .. import __version__
from ..protocol import Error, Hello, ServerEvent, Welcome
from ..textmode import NICK_PROMPT
from .connection import ServerConnection
from .terminal import InputEnd, Terminal

#: Error codes that refuse a nickname: the user is asked for another one.
NICK_ERRORS = frozenset({"nick_taken", "bad_nick"})
#: Error codes that refuse a password: the user is asked for it again.
PASSWORD_ERRORS = frozenset({"login_failed", "login_throttled", "bad_password"})
#: Error codes that answer a ``hello`` (the others are not for the dialogue).
HELLO_ERRORS = (
    NICK_ERRORS | PASSWORD_ERRORS | {"nick_registered", "account_required", "store_error"}
)
#: What the client calls itself in its ``hello``.
CLIENT_NAME = f"trio-chat/{__version__}"


@dataclasses.dataclass(frozen=True)
class LoggedIn:
    """The server's welcome, and the account's password if we logged in to one."""

    welcome: Welcome
    password: str | None


def hello(
    nick: str, password: str | None, *, register: bool = False, typing: bool = False
) -> Hello:
    """The ``hello`` frame; ``typing``: ask for ``typing`` notices (only a client that
    shows them asks: they are never stored, so nothing is lost by not asking)."""
    return Hello(nick=nick, password=password, register=register, client=CLIENT_NAME, typing=typing)


async def log_in(
    terminal: Terminal,
    connection: ServerConnection,
    answers: trio.MemoryReceiveChannel[ServerEvent],
    nick: str | None,
    *,
    show_questions: bool,
    typing: bool = False,
) -> LoggedIn | InputEnd:
    """Ask for a nick (and password) until the server welcomes us, or the user gives up
    (the end of input, or Ctrl-C). ``show_questions``: print each question as a line too
    (piped input, where there is no prompt to see); ``typing``: see :func:`hello`."""
    password: str | None = None
    register = False
    asking_password = False
    while True:
        if nick is None:
            if show_questions:
                terminal.show(NICK_PROMPT)
            answer = await terminal.read_line(lambda: "Nickname: ")
            if isinstance(answer, InputEnd):
                return answer
            words = answer.split()
            if len(words) == 3 and words[0].lower() in ("/login", "/register"):
                # As at the text-mode prompt: log in to (or create) an account.
                register = words[0].lower() == "/register"
                nick, password = words[1], words[2]
            elif not answer.strip():
                continue
            else:
                nick = answer.strip()
        elif password is None and asking_password:
            if show_questions:
                terminal.show(f"Password for {nick} (empty line: another nick):")
            question = f"Password for {nick} (empty: another nick): "
            answer = await terminal.read_line(functools.partial(str, question), secret=True)
            if isinstance(answer, InputEnd):
                return answer
            if not answer:
                nick = None
                asking_password = False
                continue
            password = answer
        await connection.send(hello(nick, password, register=register, typing=typing))
        reply = await answers.receive()
        if isinstance(reply, Welcome):
            return LoggedIn(reply, password if reply.account else None)
        assert isinstance(reply, Error)
        register = False
        if reply.code == "nick_registered" or (
            reply.code in PASSWORD_ERRORS and password is not None
        ):
            asking_password = True  # the nick is right: ask for its password
        else:
            nick = None
            asking_password = False
        password = None
