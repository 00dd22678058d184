"""One IRC client's conversation with the chat, without any I/O: IRC messages in, the
hub's client frames and IRC lines out; the hub's events in, IRC lines out.

:class:`IrcSession` is a state machine in the manner of h11's ``Connection``:

* :meth:`IrcSession.receive` takes one parsed :class:`~.message.IrcMessage` and returns
  a :class:`Step`: lines to answer with at once (``replies``), frames for the hub
  (``frames``: the same :class:`~trio_chat.protocol.Say`, :class:`~trio_chat.protocol.Command`
  and :class:`~trio_chat.protocol.Hello` every other transport sends), an account to
  check for SASL, or a reason to close.
* Registration (``NICK``, ``USER``, ``PASS``; ``CAP LS 302``/``REQ``/``END`` holding it
  open; SASL ``PLAIN`` through ``AUTHENTICATE``) ends in one ``Hello`` frame; the hub's
  ``welcome`` is then rendered as 001-005, LUSERS and the MOTD.
* Each command handed to the hub carries a ``ref`` (``irc1``, ``irc2``, ...), and the
  session remembers what IRC asked: the hub's answer with that ``ref`` (an ``info`` or
  an ``error``) becomes the numeric an IRC client expects (a refused ``NICK`` is a 433
  or 432, a ``PRIVMSG`` to a channel one is not in a 404...).
* :meth:`IrcSession.render` turns the events meant for this connection alone into lines;
  those every IRC receiver shares are :func:`~.render.shared_lines`'.

Nothing here touches the hub: what ``NAMES``, ``WHO`` and friends show comes from an
:class:`~.view.IrcView`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable

from ..names import InvalidName, name_key, normalize_nick
from ..protocol import (
    Bye,
    Command,
    Error,
    Hello,
    History,
    Info,
    Joined,
    Message,
    NickChanged,
    Pong,
    PongReply,
    Private,
    Quit,
    SearchResults,
    ServerEvent,
    ServerPing,
    Welcome,
)
from ..textmode import render_search
from . import numerics as n
from .base import (
    MAX_SASL_BYTES,
    SASL_MECHANISMS,
    Asked,
    IrcSettings,
    SessionBase,
    Step,
    clean,
    isupport_tokens,
    server_source,
    strip_formatting,
)
from .chatting import Chatting
from .message import IrcMessage, IrcParseError, format_message
from .queries import Queries
from .render import (
    SHARED_KINDS,
    history_line,
    hostmask,
    shared_lines,
)

__all__ = [
    "IrcSession",
    "IrcSettings",
    "Step",
    "isupport_tokens",
    "server_source",
    "strip_formatting",
]


class IrcSession(Chatting, Queries, SessionBase):
    """One IRC client's state: registration, capabilities, and the commands in flight."""

    # ------------------------------------------------------------------ receiving

    def parse_error(self, exc: IrcParseError) -> bytes:
        """The answer to a line that could not be read (the connection stays)."""
        if exc.reason in ("too_long", "tags_too_long"):
            return self.numeric(n.ERR_INPUTTOOLONG, "Input line was too long")
        if exc.reason == "bad_utf8":
            return format_message("FAIL", exc.command, "INVALID_UTF8", exc.text, source=self.server)
        return self.numeric(n.ERR_UNKNOWNCOMMAND, "*", exc.text)

    def receive(self, msg: IrcMessage) -> Step:
        """Act on one message from the client."""
        step = Step()
        command = msg.command
        handler = _EARLY.get(command)
        if handler is not None:
            handler(self, msg, step)
        elif not self.registered:
            if command in _REGISTERED or command.isalpha():
                step.replies.append(self.numeric(n.ERR_NOTREGISTERED, "You have not registered"))
        else:
            handler = _REGISTERED.get(command)
            if handler is not None:
                handler(self, msg, step)
            else:
                self._plugin_command(msg, step)
        if not self.registered and not self._logging_in:
            self._maybe_register(step)
        return step

    def _maybe_register(self, step: Step) -> None:
        if self.nick is None or self.user is None or self._cap_holding or self._sasl_checking:
            return
        login = self._sasl_login
        nick: str = self.nick
        password = self.password
        if login is not None:
            nick, password = login
        self._logging_in = True
        step.frames.append(
            Hello(
                nick=nick,
                password=password,
                client="irc",
                away_notify=self.away_notify,
                ref="irc-login",
            )
        )

    # -- registration and capabilities

    def _cap(self, msg: IrcMessage, step: Step) -> None:
        sub = msg.param(0).upper()
        if sub == "LS":
            if not self.registered:
                self._cap_holding = True
            version = msg.param(1)
            self.cap_version = max(self.cap_version, int(version) if version.isdigit() else 0)
            step.replies.append(
                format_message(
                    "CAP", self.me, "LS", " ".join(self._offered_caps()), source=self.server
                )
            )
        elif sub == "LIST":
            step.replies.append(
                format_message(
                    "CAP", self.me, "LIST", " ".join(sorted(self.caps)), source=self.server
                )
            )
        elif sub == "REQ":
            if not self.registered:
                self._cap_holding = True
            wanted = msg.param(1).split()
            offered = {c.partition("=")[0] for c in self._offered_caps()}
            names = [w.removeprefix("-") for w in wanted]
            if not wanted or any(name not in offered for name in names):
                step.replies.append(
                    format_message("CAP", self.me, "NAK", clean(msg.param(1)), source=self.server)
                )
                return
            for word in wanted:
                if word.startswith("-"):
                    self.caps.discard(word[1:])
                else:
                    self.caps.add(word)
            step.replies.append(
                format_message("CAP", self.me, "ACK", clean(msg.param(1)), source=self.server)
            )
        elif sub == "END":
            self._cap_holding = False
        else:
            step.replies.append(
                self.numeric("410", sub or "*", "Invalid CAP command")  # ERR_INVALIDCAPCMD
            )

    def _authenticate(self, msg: IrcMessage, step: Step) -> None:
        if self.registered or self._sasl_login is not None:
            step.replies.append(self.numeric(n.ERR_SASLALREADY, "You have already authenticated"))
            return
        if "sasl" not in self.caps:
            step.replies.append(self.numeric(n.ERR_SASLFAIL, "SASL authentication failed"))
            return
        arg = msg.param(0)
        if arg == "*":
            self._sasl_buffer = None
            step.replies.append(self.numeric(n.ERR_SASLABORTED, "SASL authentication aborted"))
            return
        if self._sasl_buffer is None:
            if arg.upper() not in SASL_MECHANISMS:
                step.replies.append(
                    self.numeric(
                        n.RPL_SASLMECHS, ",".join(SASL_MECHANISMS), "are available SASL mechanisms"
                    )
                )
                step.replies.append(self.numeric(n.ERR_SASLFAIL, "SASL authentication failed"))
                return
            self._sasl_buffer = ""
            step.replies.append(format_message("AUTHENTICATE", "+"))
            return
        if arg != "+":
            self._sasl_buffer += arg
        if len(self._sasl_buffer) > MAX_SASL_BYTES:
            self._sasl_buffer = None
            step.replies.append(self.numeric(n.ERR_SASLTOOLONG, "SASL message too long"))
            return
        if len(arg) == 400:
            return  # more chunks follow
        data, self._sasl_buffer = self._sasl_buffer, None
        try:
            fields = base64.b64decode(data, validate=True).decode("utf-8").split("\0")
        except (binascii.Error, UnicodeDecodeError):
            fields = []
        if len(fields) != 3 or not fields[1] or not fields[2]:
            step.replies.append(self.numeric(n.ERR_SASLFAIL, "SASL authentication failed"))
            return
        authzid, account, password = fields
        if authzid and authzid != account:
            # RFC 4616: acting as someone else would need a right nobody has here.
            step.replies.append(self.numeric(n.ERR_SASLFAIL, "SASL authentication failed"))
            return
        self._sasl_checking = True
        step.check_account = (account, password)

    def sasl_result(self, account: str, password: str, error: str | None) -> Step:
        """The account SASL asked about was checked: ``error`` says why it was refused
        (``None``: the password is right)."""
        step = Step()
        self._sasl_checking = False
        if error is None:
            self._sasl_login = (account, password)
            mask = hostmask(self.nick or account)
            step.replies.append(
                self.numeric(n.RPL_LOGGEDIN, mask, account, f"You are now logged in as {account}")
            )
            step.replies.append(self.numeric(n.RPL_SASLSUCCESS, "SASL authentication successful"))
        else:
            step.replies.append(
                self.numeric(n.ERR_SASLFAIL, f"SASL authentication failed: {error}")
            )
        if not self.registered and not self._logging_in:
            self._maybe_register(step)
        return step

    def _pass(self, msg: IrcMessage, step: Step) -> None:
        if self.registered:
            step.replies.append(self.numeric(n.ERR_ALREADYREGISTERED, "You may not reregister"))
        elif not msg.params:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "PASS", "Not enough parameters"))
        else:
            self.password = msg.params[0]

    def _user(self, msg: IrcMessage, step: Step) -> None:
        if self.registered or self._logging_in:
            step.replies.append(self.numeric(n.ERR_ALREADYREGISTERED, "You may not reregister"))
        elif len(msg.params) < 4 or not msg.params[0] or not msg.params[3]:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters"))
        else:
            self.user = msg.params[0]
            self.realname = msg.params[3]

    def _nick(self, msg: IrcMessage, step: Step) -> None:
        wanted = msg.param(0)
        if not wanted:
            step.replies.append(self.numeric(n.ERR_NONICKNAMEGIVEN, "No nickname given"))
            return
        try:
            nick = normalize_nick(wanted)
        except InvalidName as exc:
            step.replies.append(
                self.numeric(n.ERR_ERRONEUSNICKNAME, wanted, f"Erroneous nickname: {exc}")
            )
            return
        if self.registered:
            step.frames.append(Command(name="nick", args=nick, ref=self._ask(Asked("NICK", nick))))
            return
        if self._logging_in:
            return  # the one in flight is answered first; a refusal asks again
        # Taken, and no password that could make it this user's own (one more connection
        # of an account's user: the hub decides that).
        holder = self.view.user(nick)
        if holder is not None and self.password is None and self._sasl_login is None:
            step.replies.append(
                self.numeric(n.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
            )
            return
        self.nick = nick

    def _ping(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "PING", "Not enough parameters"))
            return
        step.replies.append(
            format_message("PONG", self.server, clean(msg.params[0]), source=self.server)
        )

    def _pong(self, msg: IrcMessage, step: Step) -> None:
        if self.registered:
            step.frames.append(PongReply(token=msg.param(0) or None))

    def _quit(self, msg: IrcMessage, step: Step) -> None:
        if self.registered:
            step.frames.append(Quit(reason=msg.param(0) or None))
        else:
            step.replies.append(format_message("ERROR", "Closing link: quit"))
            step.close = "quit"

    # ------------------------------------------------------------------ events out

    def is_personal(self, event: ServerEvent) -> bool:
        """Whether ``event`` reads differently for this receiver than for the other IRC
        users of its flavour (then :meth:`render` it; else the shared lines, encoded
        once per fan-out, are right): its own lines without ``echo-message`` (left out),
        its own join (followed by the topic and names), its own nick change (noted), and,
        with ``away-notify``, every join (followed by ``AWAY`` if the joiner is away)."""
        if isinstance(event, Message | Private):
            return event.nick == self.nick and "echo-message" not in self.caps
        if isinstance(event, Joined):
            return event.nick == self.nick or "away-notify" in self.caps
        if isinstance(event, NickChanged):
            return event.old == self.nick
        return type(event) not in SHARED_KINDS

    def render(self, event: ServerEvent) -> bytes:
        """The lines of an event for this connection (any event)."""
        if isinstance(event, Message | Private):
            if event.nick == self.nick:
                target = event.room if isinstance(event, Message) else event.to
                mine = name_key(target) in self._unechoed
                if mine:
                    self._sent_from_here(target, -1)
                if mine and "echo-message" not in self.caps:
                    return b""
            return shared_lines(event, self.flavour) or b""
        if isinstance(event, Joined):
            line = shared_lines(event, self.flavour) or b""
            if event.nick != self.nick:
                return line + self._away_after_join(event.nick)
            info = self.view.channel(event.room)
            if info is None:
                return line
            return (
                line
                + b"".join(self._topic_lines(info) if info.topic else [])
                + b"".join(self.names_lines(info))
            )
        if isinstance(event, NickChanged):
            line = shared_lines(event, self.flavour) or b""
            if event.old == self.nick:
                self.nick = event.new
            return line
        shared = shared_lines(event, self.flavour)
        if shared is not None:
            return shared
        if isinstance(event, Info):
            return self._info(event)
        if isinstance(event, Error):
            return self._error(event)
        if isinstance(event, Welcome):
            return self._welcome(event)
        if isinstance(event, History):
            asked = self._asked.pop(event.ref, None) if event.ref else None
            if asked is not None and asked.command == "CHATHISTORY":
                return self._history_batch(event, asked.target, event.ref or "h")
            flavour = self.flavour
            return b"".join(history_line(item, flavour, self.nick or "") for item in event.messages)
        if isinstance(event, Pong):
            return format_message(
                "PONG", self.server, event.token or self.server, source=self.server
            )
        if isinstance(event, ServerPing):
            return format_message("PING", event.token or self.server)
        if isinstance(event, Bye):
            return format_message("ERROR", f"Closing link: {event.text}")
        if isinstance(event, SearchResults):  # /quote SEARCH words: as text mode reads it
            return self.notice(render_search(event))
        return b""

    def _away_after_join(self, nick: str) -> bytes:
        """With ``away-notify``, a joiner who is away is followed by its ``AWAY`` (the IRCv3
        specification: the client learns the state of everyone it shares a channel with)."""
        if "away-notify" not in self.caps:
            return b""
        user = self.view.user(nick)
        if user is None or not user.away:
            return b""
        return format_message("AWAY", user.away, source=hostmask(nick))

    def _welcome(self, event: Welcome) -> bytes:
        self.registered = True
        self._logging_in = False
        self.nick = event.nick
        me = event.nick
        s = self.settings
        lines = [
            self.numeric(
                n.RPL_WELCOME,
                f"Welcome to the {server_source(s.network)} IRC Network {hostmask(me)}",
            ),
            self.numeric(
                n.RPL_YOURHOST, f"Your host is {self.server}, running version {s.version}"
            ),
            self.numeric(n.RPL_CREATED, f"This server was created {s.created}"),
            self.numeric(n.RPL_MYINFO, self.server, s.version, "iw", "bnoqt", "bqo"),
        ]
        tokens = isupport_tokens(s)
        for start in range(0, len(tokens), 12):
            lines.append(
                self.numeric(
                    n.RPL_ISUPPORT, *tokens[start : start + 12], "are supported by this server"
                )
            )
        lines += self.lusers_lines()
        lines += self.motd_lines()
        for room in event.rooms or ():  # one more connection of a user: its rooms
            info = self.view.channel(room)
            lines.append(format_message("JOIN", room, source=hostmask(me)))
            if info is not None:
                lines += self._topic_lines(info) if info.topic else []
                lines += self.names_lines(info)
        return b"".join(lines)


_Handler = Callable[[IrcSession, IrcMessage, Step], None]

#: Commands taken before registration too.
_EARLY: dict[str, _Handler] = {
    "CAP": IrcSession._cap,
    "AUTHENTICATE": IrcSession._authenticate,
    "PASS": IrcSession._pass,
    "NICK": IrcSession._nick,
    "USER": IrcSession._user,
    "PING": IrcSession._ping,
    "PONG": IrcSession._pong,
    "QUIT": IrcSession._quit,
}

#: Commands of a registered client.
_REGISTERED: dict[str, _Handler] = {
    "PRIVMSG": IrcSession._privmsg,
    "NOTICE": IrcSession._privmsg,
    "JOIN": IrcSession._join,
    "PART": IrcSession._part,
    "TOPIC": IrcSession._topic,
    "AWAY": IrcSession._away,
    "KICK": IrcSession._kick,
    "OPER": IrcSession._oper,
    "NAMES": IrcSession._names,
    "WHO": IrcSession._who,
    "WHOIS": IrcSession._whois,
    "ISON": IrcSession._ison,
    "USERHOST": IrcSession._userhost,
    "LIST": IrcSession._list,
    "MOTD": IrcSession._motd,
    "LUSERS": IrcSession._lusers,
    "MODE": IrcSession._mode,
    "CHATHISTORY": IrcSession._chathistory,
}


def registered_commands() -> Iterable[str]:
    """The IRC commands the session knows itself (for the docs)."""
    return sorted({*_EARLY, *_REGISTERED})
