"""What an IRC session may look up about the chat (channels, users, counts) without
changing it: the answers to ``NAMES``, ``WHO``, ``WHOIS``, ``LIST``, ``ISON``, ``LUSERS``
and ``TOPIC`` come from here, straight away, without a round trip through the hub's
commands.

:class:`IrcView` is a small interface the transport implements over the hub, and tests
with plain values; the session never sees the hub itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member of a channel, as ``NAMES`` and ``WHO`` show it."""

    nick: str
    op: bool = False
    muted: bool = False
    away: str | None = None
    #: What an IRC user gave in ``USER`` (empty for users of other transports).
    username: str = ""
    realname: str = ""


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """A room as IRC sees a channel."""

    name: str
    topic: str = ""
    members: tuple[MemberInfo, ...] = ()
    banned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A connected user, as ``WHOIS`` shows it."""

    nick: str
    channels: tuple[str, ...] = ()
    ops_in: tuple[str, ...] = ()
    away: str | None = None
    account: bool = False
    admin: bool = False
    transport: str = ""
    #: What an IRC user gave in ``USER`` (empty for users of other transports).
    username: str = ""
    realname: str = ""


class IrcView(Protocol):
    """Read-only questions about the chat, answered at once."""

    def channel(self, name: str) -> ChannelInfo | None:
        """The room ``name`` (any spelling the hub takes for it), or ``None``."""
        ...

    def channels(self) -> list[ChannelInfo]:
        """Every room, for ``LIST``."""
        ...

    def user(self, nick: str) -> UserInfo | None:
        """The user called ``nick`` (any spelling the hub takes for it), or ``None``."""
        ...

    def user_count(self) -> int:
        """Users connected (for ``LUSERS``)."""
        ...

    @property
    def keeps_accounts(self) -> bool:
        """Whether accounts exist here (then ``sasl`` is offered)."""
        ...
