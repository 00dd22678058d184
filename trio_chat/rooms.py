"""A room and its rules (operators, mutes, bans), apart from the hub that keeps the rooms:
what a room *is* and how a rule change applies to it, without any delivery."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .errors import FixedCodeError
from .names import DEFAULT_ROOM, name_key
from .users import Session, host_of

__all__ = [
    "NotAllowed",
    "NotInRoom",
    "Room",
    "Rule",
    "RuleChange",
    "reason_is_public",
    "users_reason",
]


class NotInRoom(FixedCodeError):
    """The session tried to speak in a room it has not joined."""

    code = "not_in_room"


class NotAllowed(FixedCodeError):
    """A room or server rule forbids it (banned, muted, not an operator)."""

    code = "not_allowed"


#: The rules a room keeps about a user: operator, muted, banned (by nick and host).
Rule = Literal["operator", "muted", "banned"]


@dataclass(frozen=True, slots=True)
class RuleChange:
    """One change to a room's rules, as :attr:`Hub.on_rule` observers hear of it.

    By nick, not by session: that is what another node can look up (a broker shares it).
    """

    room: str
    rule: Rule
    nick: str
    on: bool
    #: For a ban: the host refused with the nick (``"?"``: none).
    host: str = "?"


@dataclass(eq=False)
class Room:
    """A room and its rules. Operators are sessions (by id); bans outlive connections.

    Change the rules through :meth:`Hub.set_rule`, which tells the observers (a broker
    shares them with other nodes); :meth:`apply` alone changes them silently.
    """

    name: str
    #: Everyone in the room, by session id: with a broker, users of other nodes too.
    members: dict[int, Session] = field(default_factory=dict)
    #: The members whose connections are in this process: the ones a fan-out offers
    #: events to (the rest get them from their own node).
    here: dict[int, Session] = field(default_factory=dict)
    topic: str = ""
    operators: set[int] = field(default_factory=set)
    muted: set[int] = field(default_factory=set)
    #: Banned nick keys, each with the host it was last seen from (also refused).
    banned: dict[str, str] = field(default_factory=dict)

    def remove(self, session: Session) -> bool:
        """Take ``session`` out (with its roles here); ``False`` if it was not a member."""
        if self.members.pop(session.id, None) is None:
            return False
        self.here.pop(session.id, None)
        self.operators.discard(session.id)
        self.muted.discard(session.id)
        session.rooms.pop(self.name, None)
        if session.room == self.name:
            session.room = next(iter(session.rooms), DEFAULT_ROOM)
        return True

    def apply(self, change: RuleChange, session: Session | None) -> bool:
        """Make ``change`` here, silently; ``session`` is whoever ``change.nick`` names now
        (operators and mutes are by session, so without one only a ban applies). ``False``
        if nothing changed."""
        if change.rule == "banned":
            key = name_key(change.nick)
            if not change.on:
                return self.banned.pop(key, None) is not None
            if self.banned.get(key) == change.host:
                return False
            self.banned[key] = change.host
            return True
        if session is None:
            return False
        holders = self.operators if change.rule == "operator" else self.muted
        if (session.id in holders) == change.on:
            return False
        if change.on:
            holders.add(session.id)
        else:
            holders.discard(session.id)
        return True

    def is_operator(self, session: Session) -> bool:
        return session.admin or session.id in self.operators

    def is_banned(self, session: Session) -> bool:
        if not self.banned:  # (as a rule: asked at every join, the address not parsed)
            return False
        host = host_of(session.address)
        return session.key in self.banned or (host != "?" and host in self.banned.values())


def users_reason(words: str, mark: str) -> str:
    """A leave reason a user wrote (a part's, a quit's), kept from passing for a kick or
    a ban (which are shown to everyone, and to IRC clients as ``KICK``): those read
    ``mark: kicked by ...``."""
    return f"{mark}: {words}" if reason_is_public(words) else words


def reason_is_public(reason: str | None) -> bool:
    """Kicks and bans are announced even in a quiet room: moderation is done in the open."""
    return reason is not None and reason.startswith(("kicked by ", "banned by "))
