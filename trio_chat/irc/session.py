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
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..names import InvalidName, name_key, normalize_nick, normalize_room
from ..protocol import (
    Bye,
    ClientFrame,
    Command,
    Error,
    Hello,
    History,
    HistoryRequest,
    Info,
    Joined,
    Message,
    NickChanged,
    Pong,
    PongReply,
    Private,
    Quit,
    Say,
    ServerEvent,
    ServerPing,
    Welcome,
)
from . import numerics as n
from .message import IrcMessage, IrcParseError, ctcp_decode, format_message
from .render import (
    MESSAGE_IDS,
    SERVER_TIME,
    SHARED_KINDS,
    Flavour,
    history_line,
    hostmask,
    shared_lines,
)
from .view import ChannelInfo, IrcView

#: Capabilities offered (``sasl`` only where accounts exist).
CAPABILITIES = (
    "batch",
    "draft/chathistory",
    "echo-message",
    "message-tags",
    "multi-prefix",
    "server-time",
    "sasl",
)
#: Capabilities offered only where the server keeps a database (accounts, history).
NEEDS_STORE = ("sasl", "draft/chathistory")
#: Most messages one ``CHATHISTORY`` answer holds (the hub's page limit).
CHATHISTORY_LIMIT = 500
#: The SASL mechanisms offered.
SASL_MECHANISMS = ("PLAIN",)
#: Longest SASL answer (base64, in 400-byte chunks) taken, in bytes.
MAX_SASL_BYTES = 2048
#: Commands whose answers the session waits for, kept per connection at most.
MAX_PENDING = 64
#: Channel modes: list modes, then those with an argument... (ISUPPORT ``CHANMODES``).
CHANMODES = "bq,,,nt"

# IRC formatting codes (bold, colour, italics, reverse, reset, ...): the hub's text holds
# no control characters, so they are taken out of what an IRC user says.
_FORMATTING = re.compile(
    r"\x03(\d{1,2}(,\d{1,2})?)?|\x04([0-9a-fA-F]{6}(,[0-9a-fA-F]{6})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)


def strip_formatting(text: str) -> str:
    """``text`` without IRC's formatting codes (colours included)."""
    return _FORMATTING.sub("", text)


@dataclass(frozen=True, slots=True)
class IrcSettings:
    """What the session says about the server: names, limits (ISUPPORT), MOTD."""

    server_name: str = "trio-chat"
    network: str = "trio-chat"
    version: str = "trio-chat"
    created: str = "today"
    motd: tuple[str, ...] = ()
    nicklen: int = 24
    channellen: int = 32
    topiclen: int = 300


def server_source(name: str) -> str:
    """A server name usable as a message source (one word, no ``!`` or ``@``)."""
    word = re.sub(r"[^A-Za-z0-9.\-_]", "-", name).strip("-")
    return word or "trio-chat"


def isupport_tokens(settings: IrcSettings) -> list[str]:
    """The ISUPPORT (005) tokens: our real limits and rules."""
    return [
        "AWAYLEN=300",
        "CASEMAPPING=ascii",
        f"CHATHISTORY={CHATHISTORY_LIMIT}",
        "CHANLIMIT=#:",
        f"CHANMODES={CHANMODES}",
        f"CHANNELLEN={settings.channellen}",
        "CHANTYPES=#",
        "ELIST=",
        "MODES=4",
        "MSGREFTYPES=msgid",
        f"NETWORK={server_source(settings.network)}",
        f"NICKLEN={settings.nicklen}",
        "PREFIX=(o)@",
        "STATUSMSG=",
        "TARGMAX=JOIN:,PART:,PRIVMSG:4,NOTICE:4,NAMES:1,WHOIS:1",
        f"TOPICLEN={settings.topiclen}",
        "UTF8ONLY",
    ]


@dataclass(slots=True)
class Step:
    """What one received message leads to."""

    #: Lines for this client, now (before anything the frames bring).
    replies: list[bytes] = field(default_factory=list)
    #: Frames for the hub, in order.
    frames: list[ClientFrame] = field(default_factory=list)
    #: SASL: check this ``(account, password)`` and call :meth:`IrcSession.sasl_result`.
    check_account: tuple[str, str] | None = None
    #: Close the connection after the replies, with this reason.
    close: str | None = None


@dataclass(frozen=True, slots=True)
class _Asked:
    """What an IRC command handed to the hub was, to word the hub's answer."""

    command: str
    target: str = ""
    detail: str = ""
    #: NOTICE: RFC 1459 forbids automatic replies, errors included.
    silent: bool = False


class IrcSession:
    """One IRC client's state: registration, capabilities, and the commands in flight."""

    def __init__(self, view: IrcView, settings: IrcSettings) -> None:
        self.view = view
        self.settings = settings
        self.server = server_source(settings.server_name)
        #: The nick: asked for (before registration) or held.
        self.nick: str | None = None
        self.user: str | None = None
        self.realname = ""
        self.password: str | None = None
        self.caps: set[str] = set()
        self.cap_version = 0
        self._cap_holding = False
        self._sasl_buffer: str | None = None  # base64 received so far (between chunks)
        self._sasl_login: tuple[str, str] | None = None
        self._sasl_checking = False
        #: A ``hello`` is with the hub; its welcome or error is awaited.
        self._logging_in = False
        self.registered = False
        #: The registration was refused for good (a wrong password): read nothing more.
        self.closing = False
        self._refs = 0
        self._asked: OrderedDict[str, _Asked] = OrderedDict()
        #: Per target key: lines sent from here not yet echoed (see _sent_from_here).
        self._unechoed: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers

    @property
    def me(self) -> str:
        """How numerics address this client: its nick, ``*`` before it has one."""
        return self.nick if self.registered and self.nick else (self.nick or "*")

    @property
    def flavour(self) -> Flavour:
        """Which tags this client's lines carry (the shared wire format's key)."""
        return (SERVER_TIME if "server-time" in self.caps else 0) | (
            MESSAGE_IDS if "message-tags" in self.caps else 0
        )

    def numeric(self, code: str, *params: str) -> bytes:
        return format_message(code, self.me, *params, source=self.server)

    def notice(self, text: str) -> bytes:
        return b"".join(
            format_message("NOTICE", self.me, line or " ", source=self.server)
            for line in text.splitlines() or [""]
        )

    def _ask(self, asked: _Asked) -> str:
        self._refs += 1
        ref = f"irc{self._refs}"
        self._asked[ref] = asked
        while len(self._asked) > MAX_PENDING:
            self._asked.popitem(last=False)
        return ref

    def _offered_caps(self) -> list[str]:
        caps = [c for c in CAPABILITIES if c not in NEEDS_STORE or self.view.keeps_accounts]
        if self.cap_version >= 302:
            caps = [f"sasl={','.join(SASL_MECHANISMS)}" if c == "sasl" else c for c in caps]
        return caps

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
        step.frames.append(Hello(nick=nick, password=password, client="irc", ref="irc-login"))

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
                    format_message("CAP", self.me, "NAK", msg.param(1), source=self.server)
                )
                return
            for word in wanted:
                if word.startswith("-"):
                    self.caps.discard(word[1:])
                else:
                    self.caps.add(word)
            step.replies.append(
                format_message("CAP", self.me, "ACK", msg.param(1), source=self.server)
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
            step.frames.append(Command(name="nick", args=nick, ref=self._ask(_Asked("NICK", nick))))
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
        step.replies.append(format_message("PONG", self.server, msg.params[0], source=self.server))

    def _pong(self, msg: IrcMessage, step: Step) -> None:
        if self.registered:
            step.frames.append(PongReply(token=msg.param(0) or None))

    def _quit(self, msg: IrcMessage, step: Step) -> None:
        if self.registered:
            step.frames.append(Quit(reason=msg.param(0) or None))
        else:
            step.replies.append(format_message("ERROR", "Closing link: quit"))
            step.close = "quit"

    # -- chatting

    def _privmsg(self, msg: IrcMessage, step: Step) -> None:
        silent = msg.command == "NOTICE"
        if not msg.params or not msg.params[0]:
            if not silent:
                step.replies.append(
                    self.numeric(n.ERR_NORECIPIENT, f"No recipient given ({msg.command})")
                )
            return
        if len(msg.params) < 2 or not msg.params[1]:
            if not silent:
                step.replies.append(self.numeric(n.ERR_NOTEXTTOSEND, "No text to send"))
            return
        raw = msg.params[1]
        ctcp = ctcp_decode(raw)
        for target in msg.params[0].split(",")[:4]:
            if not target:
                continue
            asked = _Asked(msg.command, target, silent=silent)
            if ctcp is not None:
                kind, args = ctcp
                if kind != "ACTION":
                    if not silent:
                        step.replies.append(self.notice(f"CTCP {kind} is not relayed here"))
                    continue
                text = strip_formatting(args).strip()
                if not text:
                    continue
                if target.startswith("#"):
                    step.frames.append(
                        Command(name="me", args=text, room=target, ref=self._ask(asked))
                    )
                else:
                    line = f"* {self.nick} {text}"
                    step.frames.append(
                        Command(name="msg", args=f"{target} {line}", ref=self._ask(asked))
                    )
                self._sent_from_here(target, 1)
                continue
            text = strip_formatting(raw)
            if not text.strip():
                continue
            if target.startswith("#"):
                step.frames.append(Say(text=text, room=target, ref=self._ask(asked)))
            else:
                step.frames.append(
                    Command(name="msg", args=f"{target} {text}", ref=self._ask(asked))
                )
            self._sent_from_here(target, 1)

    def _sent_from_here(self, target: str, change: int) -> None:
        """Count the lines this connection sent to ``target`` whose echo is on its way.

        The hub sends a user's lines back to all of its connections: the one that sent a
        line leaves its echo out (unless it asked for ``echo-message``), while the user's
        other connections (a phone beside this laptop) show it, as a bouncer does. Lines
        are counted, not matched by text, which a plugin's filter may have changed."""
        key = name_key(target)
        count = self._unechoed.get(key, 0) + change
        if count > 0:
            self._unechoed[key] = count
        else:
            self._unechoed.pop(key, None)

    def _join(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "JOIN", "Not enough parameters"))
            return
        if msg.params[0] == "0":
            user = self.view.user(self.nick or "")
            for channel in user.channels if user else ():
                step.frames.append(
                    Command(name="part", args=channel, ref=self._ask(_Asked("PART", channel)))
                )
            return
        for channel in msg.params[0].split(","):
            if not channel:
                continue
            problem = _channel_problem(channel)
            if problem is not None:
                step.replies.append(self.numeric(n.ERR_NOSUCHCHANNEL, channel, problem))
                continue
            step.frames.append(
                Command(name="join", args=channel, ref=self._ask(_Asked("JOIN", channel)))
            )

    def _part(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "PART", "Not enough parameters"))
            return
        for channel in msg.params[0].split(","):
            if not channel:
                continue
            info = self.view.channel(channel) if channel.startswith("#") else None
            if info is None:
                step.replies.append(self.numeric(n.ERR_NOSUCHCHANNEL, channel, "No such channel"))
                continue
            step.frames.append(
                Command(name="part", args=info.name, ref=self._ask(_Asked("PART", info.name)))
            )

    def _topic(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(
                self.numeric(n.ERR_NEEDMOREPARAMS, "TOPIC", "Not enough parameters")
            )
            return
        channel = msg.params[0]
        info = self.view.channel(channel) if channel.startswith("#") else None
        if info is None:
            step.replies.append(self.numeric(n.ERR_NOSUCHCHANNEL, channel, "No such channel"))
            return
        if len(msg.params) < 2:
            step.replies.extend(self._topic_lines(info))
            return
        if not self._in(info):
            step.replies.append(
                self.numeric(n.ERR_NOTONCHANNEL, info.name, "You're not on that channel")
            )
            return
        text = strip_formatting(msg.params[1]).strip() or "-"
        step.frames.append(
            Command(
                name="topic", args=text, room=info.name, ref=self._ask(_Asked("TOPIC", info.name))
            )
        )

    def _topic_lines(self, info: ChannelInfo) -> list[bytes]:
        if not info.topic:
            return [self.numeric(n.RPL_NOTOPIC, info.name, "No topic is set")]
        return [self.numeric(n.RPL_TOPIC, info.name, info.topic)]

    def _in(self, info: ChannelInfo) -> bool:
        mine = (self.nick or "").casefold()
        return any(m.nick.casefold() == mine for m in info.members)

    def _away(self, msg: IrcMessage, step: Step) -> None:
        reason = strip_formatting(msg.param(0)).strip()
        step.frames.append(
            Command(name="away", args=reason, ref=self._ask(_Asked("AWAY", detail=reason)))
        )

    def _kick(self, msg: IrcMessage, step: Step) -> None:
        if len(msg.params) < 2:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "KICK", "Not enough parameters"))
            return
        channel, nick = msg.params[0], msg.params[1].split(",")[0]
        reason = strip_formatting(msg.param(2)).strip()
        info = self.view.channel(channel) if channel.startswith("#") else None
        if info is None:
            step.replies.append(self.numeric(n.ERR_NOSUCHCHANNEL, channel, "No such channel"))
            return
        args = f"{nick} {reason}".strip()
        step.frames.append(
            Command(
                name="kick",
                args=args,
                room=info.name,
                ref=self._ask(_Asked("KICK", info.name, nick)),
            )
        )

    def _oper(self, msg: IrcMessage, step: Step) -> None:
        if len(msg.params) < 2:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "OPER", "Not enough parameters"))
            return
        step.frames.append(Command(name="oper", args=msg.params[1], ref=self._ask(_Asked("OPER"))))

    # -- questions answered from the view

    def _names(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(self.numeric(n.RPL_ENDOFNAMES, "*", "End of /NAMES list"))
            return
        for channel in msg.params[0].split(","):
            info = self.view.channel(channel) if channel.startswith("#") else None
            if info is None:
                step.replies.append(self.numeric(n.RPL_ENDOFNAMES, channel, "End of /NAMES list"))
            else:
                step.replies.extend(self.names_lines(info))

    def names_lines(self, info: ChannelInfo) -> list[bytes]:
        """353 lines (as many as the names need) and the 366 for a channel."""
        names = [("@" if m.op else "") + m.nick for m in info.members]
        lines = []
        head = f":{self.server} {n.RPL_NAMREPLY} {self.me} = {info.name} :"
        budget = 510 - len(head.encode())
        chunk: list[str] = []
        size = 0
        for name in names:
            cost = len(name.encode()) + 1
            if chunk and size + cost > budget:
                lines.append(self.numeric(n.RPL_NAMREPLY, "=", info.name, " ".join(chunk)))
                chunk, size = [], 0
            chunk.append(name)
            size += cost
        if chunk:
            lines.append(self.numeric(n.RPL_NAMREPLY, "=", info.name, " ".join(chunk)))
        lines.append(self.numeric(n.RPL_ENDOFNAMES, info.name, "End of /NAMES list"))
        return lines

    def _who(self, msg: IrcMessage, step: Step) -> None:
        mask = msg.param(0, "*")
        if mask.startswith("#"):
            info = self.view.channel(mask)
            for member in info.members if info else ():
                step.replies.append(
                    self._who_line(info.name if info else mask, member.nick, member.op, member.away)
                )
        else:
            user = self.view.user(mask)
            if user is not None:
                channel = user.channels[0] if user.channels else "*"
                step.replies.append(
                    self._who_line(channel, user.nick, channel in user.ops_in, user.away)
                )
        step.replies.append(self.numeric(n.RPL_ENDOFWHO, mask, "End of WHO list"))

    def _who_line(self, channel: str, nick: str, op: bool, away: str | None) -> bytes:
        flags = ("G" if away else "H") + ("@" if op else "")
        return self.numeric(
            n.RPL_WHOREPLY, channel, nick, "trio-chat", self.server, nick, flags, f"0 {nick}"
        )

    def _whois(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(self.numeric(n.ERR_NONICKNAMEGIVEN, "No nickname given"))
            return
        nick = msg.params[-1].split(",")[0]
        user = self.view.user(nick)
        if user is None:
            step.replies.append(self.numeric(n.ERR_NOSUCHNICK, nick, "No such nick/channel"))
            step.replies.append(self.numeric(n.RPL_ENDOFWHOIS, nick, "End of /WHOIS list"))
            return
        realname = self.realname if user.nick == self.nick and self.realname else user.nick
        step.replies.append(
            self.numeric(n.RPL_WHOISUSER, user.nick, user.nick, "trio-chat", "*", realname)
        )
        if user.channels:
            shown = " ".join(("@" if c in user.ops_in else "") + c for c in user.channels)
            step.replies.append(self.numeric(n.RPL_WHOISCHANNELS, user.nick, shown))
        step.replies.append(
            self.numeric(
                n.RPL_WHOISSERVER,
                user.nick,
                self.server,
                f"connected over {user.transport or 'chat'}",
            )
        )
        if user.admin:
            step.replies.append(
                self.numeric(n.RPL_WHOISOPERATOR, user.nick, "is a server administrator")
            )
        if user.away:
            step.replies.append(self.numeric(n.RPL_AWAY, user.nick, user.away))
        if user.account:
            step.replies.append(
                self.numeric(n.RPL_WHOISACCOUNT, user.nick, user.nick, "is logged in as")
            )
        step.replies.append(self.numeric(n.RPL_ENDOFWHOIS, user.nick, "End of /WHOIS list"))

    def _ison(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "ISON", "Not enough parameters"))
            return
        present = []
        for word in " ".join(msg.params).split():
            user = self.view.user(word)
            if user is not None:
                present.append(user.nick)
        step.replies.append(self.numeric(n.RPL_ISON, " ".join(present)))

    def _userhost(self, msg: IrcMessage, step: Step) -> None:
        found = []
        for word in msg.params[:5]:
            user = self.view.user(word)
            if user is not None:
                found.append(f"{user.nick}={'-' if user.away else '+'}{user.nick}@trio-chat")
        step.replies.append(self.numeric(n.RPL_USERHOST, " ".join(found)))

    def _list(self, msg: IrcMessage, step: Step) -> None:
        wanted = {c.casefold() for c in msg.param(0).split(",") if c}
        step.replies.append(self.numeric(n.RPL_LISTSTART, "Channel", "Users  Name"))
        for info in sorted(self.view.channels(), key=lambda c: c.name.casefold()):
            if wanted and info.name.casefold() not in wanted:
                continue
            step.replies.append(
                self.numeric(n.RPL_LIST, info.name, str(len(info.members)), info.topic)
            )
        step.replies.append(self.numeric(n.RPL_LISTEND, "End of /LIST"))

    def _motd(self, msg: IrcMessage, step: Step) -> None:
        step.replies.extend(self.motd_lines())

    def motd_lines(self) -> list[bytes]:
        if not self.settings.motd:
            return [self.numeric(n.ERR_NOMOTD, "MOTD File is missing")]
        lines = [self.numeric(n.RPL_MOTDSTART, f"- {self.server} Message of the day - ")]
        lines += [self.numeric(n.RPL_MOTD, f"- {line}") for line in self.settings.motd]
        lines.append(self.numeric(n.RPL_ENDOFMOTD, "End of /MOTD command."))
        return lines

    def _lusers(self, msg: IrcMessage, step: Step) -> None:
        step.replies.extend(self.lusers_lines())

    def lusers_lines(self) -> list[bytes]:
        users = self.view.user_count()
        channels = len(self.view.channels())
        return [
            self.numeric(
                n.RPL_LUSERCLIENT, f"There are {users} users and 0 invisible on 1 servers"
            ),
            self.numeric(n.RPL_LUSERCHANNELS, str(channels), "channels formed"),
            self.numeric(n.RPL_LUSERME, f"I have {users} clients and 0 servers"),
            self.numeric(
                n.RPL_LOCALUSERS,
                str(users),
                str(users),
                f"Current local users {users}, max {users}",
            ),
            self.numeric(
                n.RPL_GLOBALUSERS,
                str(users),
                str(users),
                f"Current global users {users}, max {users}",
            ),
        ]

    def _mode(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters"))
            return
        target = msg.params[0]
        if not target.startswith("#"):
            self._user_mode(target, msg, step)
            return
        info = self.view.channel(target)
        if info is None:
            step.replies.append(self.numeric(n.ERR_NOSUCHCHANNEL, target, "No such channel"))
            return
        if len(msg.params) < 2:
            step.replies.append(self.numeric(n.RPL_CHANNELMODEIS, info.name, "+nt"))
            return
        changes = msg.params[1]
        args = list(msg.params[2:])
        sign = "+"
        for letter in changes:
            if letter in "+-":
                sign = letter
                continue
            if letter in "bq" and not args:
                if letter == "b":
                    for nick in info.banned:
                        step.replies.append(self.numeric(n.RPL_BANLIST, info.name, f"{nick}!*@*"))
                    step.replies.append(
                        self.numeric(n.RPL_ENDOFBANLIST, info.name, "End of channel ban list")
                    )
                else:
                    step.replies.append(
                        self.numeric("729", info.name, "q", "End of channel quiet list")
                    )
                continue
            if letter in "nt":
                continue  # always on; nothing to change
            command = _MODE_COMMANDS.get((sign, letter))
            if command is None:
                step.replies.append(
                    self.numeric(n.ERR_UNKNOWNMODE, letter, "is an unknown mode char to me")
                )
                continue
            if not args:
                step.replies.append(
                    self.numeric(n.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
                )
                return
            nick = args.pop(0).partition("!")[0]
            asked = _Asked("MODE", info.name, f"{sign}{letter} {nick}")
            step.frames.append(
                Command(name=command, args=nick, room=info.name, ref=self._ask(asked))
            )

    def _user_mode(self, target: str, msg: IrcMessage, step: Step) -> None:
        if target.casefold() != (self.nick or "").casefold():
            step.replies.append(
                self.numeric(n.ERR_USERSDONTMATCH, "Can't change mode for other users")
            )
            return
        changes = msg.param(1)
        if not changes:
            step.replies.append(self.numeric(n.RPL_UMODEIS, "+"))
            return
        if any(ch not in "+-iw" for ch in changes):
            step.replies.append(self.numeric(n.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag"))

    def _chathistory(self, msg: IrcMessage, step: Step) -> None:
        """``CHATHISTORY LATEST|BEFORE|AFTER <target> <*|msgid=ID> <limit>`` (IRCv3
        draft/chathistory), from the hub's history: message ids are our ``msgid``s."""
        sub, target, where, count = (msg.param(i) for i in range(4))
        sub = sub.upper()

        def fail(code: str, text: str, *context: str) -> None:
            step.replies.append(
                format_message("FAIL", "CHATHISTORY", code, *context, text, source=self.server)
            )

        if not self.view.keeps_accounts:
            fail("INVALID_PARAMS", "this server keeps no history", sub or "*")
            return
        if sub not in ("LATEST", "BEFORE", "AFTER"):
            fail("INVALID_PARAMS", "LATEST, BEFORE and AFTER are supported", sub or "*")
            return
        if not target or not count.isdigit() or int(count) < 1:
            fail("INVALID_PARAMS", "usage: CHATHISTORY " + sub + " <target> <ref> <limit>", sub)
            return
        before = after = None
        if where != "*" or sub != "LATEST":
            kind, _, value = where.partition("=")
            if kind != "msgid" or not value.isdigit():
                fail("INVALID_MSGREFTYPE", "only msgid= references are supported", sub, where)
                return
            if sub == "BEFORE":
                before = int(value)
            else:
                after = int(value)
        limit = min(int(count), CHATHISTORY_LIMIT)
        ref = self._ask(_Asked("CHATHISTORY", target))
        if target.startswith("#"):
            step.frames.append(
                HistoryRequest(room=target, before=before, after=after, limit=limit, ref=ref)
            )
        else:
            step.frames.append(
                HistoryRequest(with_nick=target, before=before, after=after, limit=limit, ref=ref)
            )

    def _history_batch(self, event: History, target: str, ref: str) -> bytes:
        """A ``CHATHISTORY`` answer: the page as a ``chathistory`` batch (with ``batch``)."""
        flavour = self.flavour
        batch = ref if "batch" in self.caps else None
        lines = [
            history_line(item, flavour, self.nick or "", batch=batch) for item in event.messages
        ]
        if batch is None:
            return b"".join(lines)
        start = format_message("BATCH", f"+{batch}", "chathistory", target, source=self.server)
        end = format_message("BATCH", f"-{batch}", source=self.server)
        return start + b"".join(lines) + end

    def _plugin_command(self, msg: IrcMessage, step: Step) -> None:
        """Any other command is the slash-command of that name, if there is one
        (``/quote roll 2d6`` runs ``/roll 2d6``); replies come as NOTICEs."""
        name = msg.command.lower()
        if not name.isalpha():
            step.replies.append(self.numeric(n.ERR_UNKNOWNCOMMAND, msg.command, "Unknown command"))
            return
        args = " ".join(msg.params)
        ref = self._ask(_Asked(msg.command))
        step.frames.append(Command(name=name, args=args, ref=ref))

    # ------------------------------------------------------------------ events out

    def is_personal(self, event: ServerEvent) -> bool:
        """Whether ``event`` reads differently for this receiver than for the other IRC
        users of its flavour (then :meth:`render` it; else the shared lines, encoded
        once per fan-out, are right): its own lines without ``echo-message`` (left out),
        its own join (followed by the topic and names), its own nick change (noted)."""
        if isinstance(event, Message | Private):
            return event.nick == self.nick and "echo-message" not in self.caps
        if isinstance(event, Joined):
            return event.nick == self.nick
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
                return line
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
        return b""

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

    def _info(self, event: Info) -> bytes:
        asked = self._asked.pop(event.ref, None) if event.ref else None
        if asked is None:
            return self.notice(event.text)
        data = event.data or {}
        command = asked.command
        if command in ("JOIN", "PART", "TOPIC", "KICK", "NICK"):
            return b""  # the JOIN/PART/TOPIC/KICK/NICK line itself says it
        if command == "AWAY":
            if data.get("away"):
                return self.numeric(n.RPL_NOWAWAY, "You have been marked as being away")
            return self.numeric(n.RPL_UNAWAY, "You are no longer marked as being away")
        if command == "MODE":
            return format_message(
                "MODE", asked.target, *asked.detail.split(" "), source=hostmask(self.nick or "*")
            )
        if command == "OPER":
            return self.numeric(n.RPL_YOUREOPER, "You are now an IRC operator")
        if command in ("PRIVMSG", "NOTICE"):
            return b"" if asked.silent else self.notice(event.text)  # e.g. "X is away"
        return self.notice(event.text)

    def _error(self, event: Error) -> bytes:
        asked = self._asked.pop(event.ref, None) if event.ref else None
        code, text = event.code, event.text
        if event.ref == "irc-login":
            return self._login_refused(code, text)
        if asked is None:
            return self.notice(text)
        command, target = asked.command, asked.target
        if command in ("PRIVMSG", "NOTICE"):
            self._sent_from_here(target, -1)  # refused: no echo comes
        if asked.silent:
            return b""
        if command in ("PRIVMSG", "NOTICE"):
            if code == "no_such_nick":
                return self.numeric(n.ERR_NOSUCHNICK, target, "No such nick/channel")
            if code in ("not_in_room", "not_allowed", "no_such_room"):
                return self.numeric(
                    n.ERR_CANNOTSENDTOCHAN, target, f"Cannot send to channel ({text})"
                )
            return self.notice(text)
        if command == "NICK":
            if code in ("nick_taken", "nick_registered"):
                return self.numeric(
                    n.ERR_NICKNAMEINUSE, target, f"Nickname is already in use ({text})"
                )
            if code in ("bad_nick", "bad_name"):
                return self.numeric(n.ERR_ERRONEUSNICKNAME, target, f"Erroneous nickname: {text}")
        if command == "JOIN":
            if code == "not_allowed":
                return self.numeric(
                    n.ERR_BANNEDFROMCHAN, target, f"Cannot join channel (+b): {text}"
                )
            if code in ("bad_room", "bad_name"):
                return self.numeric(n.ERR_NOSUCHCHANNEL, target, text)
        if command == "PART" and code == "not_in_room":
            return self.numeric(n.ERR_NOTONCHANNEL, target, "You're not on that channel")
        if command in ("TOPIC", "KICK", "MODE"):
            if code == "not_allowed":
                return self.numeric(n.ERR_CHANOPRIVSNEEDED, target, "You're not channel operator")
            if code == "no_such_nick":
                who = asked.detail.split(" ")[-1]
                return self.numeric(
                    n.ERR_USERNOTINCHANNEL, who, target, "They aren't on that channel"
                )
        if command == "CHATHISTORY":
            return format_message(
                "FAIL", "CHATHISTORY", "MESSAGE_ERROR", target, text, source=self.server
            )
        if command == "OPER" and code == "not_allowed":
            return self.numeric(n.ERR_PASSWDMISMATCH, "Password incorrect")
        if code == "unknown_command":
            return self.numeric(n.ERR_UNKNOWNCOMMAND, command, "Unknown command")
        return self.notice(text)

    def _login_refused(self, code: str, text: str) -> bytes:
        """The hub refused the registration's ``hello``: ask for another nick, or, for a
        wrong password, say so (the client then has to reconnect, as on any IRC server)."""
        self._logging_in = False
        wanted = self.nick or "*"
        if code in ("nick_taken", "nick_registered", "too_many_connections"):
            self.nick = None
            self._sasl_login = None
            return self.numeric(n.ERR_NICKNAMEINUSE, wanted, f"Nickname is already in use ({text})")
        if code in ("bad_nick", "bad_name"):
            self.nick = None
            return self.numeric(n.ERR_ERRONEUSNICKNAME, wanted, f"Erroneous nickname: {text}")
        # A wrong password ends the connection (modern.ircdocs.horse: ERR_PASSWDMISMATCH,
        # then ERROR and close): no other nick would make it right.
        self.closing = True
        return self.numeric(n.ERR_PASSWDMISMATCH, f"Password incorrect: {text}") + (
            format_message("ERROR", f"Closing link: {text}")
        )


def _channel_problem(channel: str) -> str | None:
    """Why ``channel`` is not a channel name the hub takes, or ``None``."""
    if not channel.startswith("#"):
        return "No such channel (channel names start with #)"
    try:
        normalize_room(channel)
    except InvalidName as exc:
        return f"No such channel: {exc}"
    return None


_MODE_COMMANDS = {
    ("+", "o"): "op",
    ("-", "o"): "deop",
    ("+", "b"): "ban",
    ("-", "b"): "unban",
    ("+", "q"): "mute",
    ("-", "q"): "unmute",
}

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
