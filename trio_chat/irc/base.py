"""What every part of an IRC session shares: its settings (names, limits, ISUPPORT), the
state of one client (nick, capabilities, commands in flight) and the helpers that word
its lines. The commands live in :mod:`.chatting` (those the hub acts on) and
:mod:`.queries` (those answered from the view); :class:`~.session.IrcSession` puts them
together with registration.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field

from ..protocol import ClientFrame
from . import numerics as n
from .message import format_message
from .render import MESSAGE_IDS, SERVER_TIME, Flavour
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


def clean(text: str) -> str:
    """``text`` without the characters no IRC line may hold (NUL; CR and LF cannot come
    in one line, but the hub's texts are checked here too)."""
    if "\0" in text or "\r" in text or "\n" in text:
        return text.replace("\0", "?").replace("\r", " ").replace("\n", " ")
    return text


def word(text: str) -> str:
    """``text`` as a parameter before the last one: one word, not empty, not starting with
    ``:`` (what a client sent as a trailing parameter may be none of these)."""
    text = clean(text).replace(" ", "_").lstrip(":")
    return text or "*"


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
        "MODES=4",
        "MSGREFTYPES=msgid",
        f"NETWORK={server_source(settings.network)}",
        f"NICKLEN={settings.nicklen}",
        "PREFIX=(o)@",
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
class Asked:
    """What an IRC command handed to the hub was, to word the hub's answer."""

    command: str
    target: str = ""
    detail: str = ""
    #: NOTICE: RFC 1459 forbids automatic replies, errors included.
    silent: bool = False


class SessionBase:
    """One IRC client's state and the helpers every command uses."""

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
        self._asked: OrderedDict[str, Asked] = OrderedDict()
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
        """A numeric to this client; every parameter but the last is made a :func:`word`
        (they often echo what the client sent, which may be anything)."""
        words = [word(p) for p in params[:-1]]
        last = [clean(params[-1])] if params else []
        return format_message(code, word(self.me), *words, *last, source=self.server)

    def notice(self, text: str) -> bytes:
        return b"".join(
            format_message("NOTICE", word(self.me), clean(line) or " ", source=self.server)
            for line in text.splitlines() or [""]
        )

    def _ask(self, asked: Asked) -> str:
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

    def _topic_lines(self, info: ChannelInfo) -> list[bytes]:
        if not info.topic:
            return [self.numeric(n.RPL_NOTOPIC, info.name, "No topic is set")]
        return [self.numeric(n.RPL_TOPIC, info.name, info.topic)]

    def _in(self, info: ChannelInfo) -> bool:
        mine = (self.nick or "").casefold()
        return any(m.nick.casefold() == mine for m in info.members)
