"""Users of other nodes, as this node's hub sees them: members it never delivers to.

With several nodes, a room's members are spread over them. Each node keeps every remote
user as a :class:`~trio_chat.hub.Session` whose mailbox drops what it is offered (its own
node delivers to it), so everything that asks "who is in this room", "is this nick taken",
"send this to nick" works unchanged: ``/who``, ``/rooms``, nick uniqueness (look-alikes
included), private messages, quiet-room sizes, kicks, and the rooms' rules (a remote user
may be an operator, muted, banned). A remote user's ``address`` is the one it connected
from on its node, for bans by host; nothing else counts it (connection limits count
connections, not sessions).

These functions change the hub's registry *without* publishing anything: they replay what
another node already published (its joins, leaves, renames, rule changes) or what it said
it holds.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from ..hub import Room, RuleChange, Session
from ..mailbox import Mailbox, Parcel
from ..names import DEFAULT_ROOM, name_key

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = [
    "RemoteMailbox",
    "add_user",
    "apply_rule",
    "bans",
    "join",
    "learn_bans",
    "leave",
    "remove_user",
    "rename",
    "roles",
]

#: Remote users get negative session ids, so they never meet a local one.
_remote_ids = itertools.count(-1, -1)


class RemoteMailbox(Mailbox):
    """The mailbox of a user on another node: takes everything, delivers nothing here."""

    delivers_here = False

    def __init__(self, node: str) -> None:  # no queue, no wire: nothing is ever kept
        self.node = node

    def offer(self, parcel: Parcel) -> bool:
        return True

    def hang_up(self) -> None:
        pass


def node_of(session: Session) -> str | None:
    """The node a remote user is on; ``None`` for this node's own users."""
    mailbox = session.mailbox
    return mailbox.node if isinstance(mailbox, RemoteMailbox) else None


def add_user(hub: Hub, nick: str, node: str, account: str | None, address: str = "?") -> Session:
    """Register ``nick`` as a user of ``node`` (replacing no one: the caller checked),
    connected there from ``address`` (``"?"``: not known)."""
    session = Session(
        id=next(_remote_ids),
        nick=nick,
        address=address,
        transport="remote",
        mailbox=RemoteMailbox(node),
        account=account,
    )
    hub.sessions[session.key] = session
    return session


def join(hub: Hub, session: Session, room_name: str, *, operator: bool = False) -> Room:
    """``session`` is in ``room_name`` (created here if this node had no member in it), and
    its ``operator`` if its node made it one as it joined (it created the room there).

    So a room's creator is its operator on every node. Two users who create one room on
    two nodes at the same moment (each node had no member in it yet) are both operators,
    everywhere: each node made its own user one, and the other nodes do as they say.
    """
    key = name_key(room_name)
    room = hub.rooms.get(key)
    if room is None:
        room = hub.rooms[key] = Room(room_name)
    room.members[session.id] = session
    session.rooms[room.name] = None
    if operator:
        room.operators.add(session.id)
    return room


def leave(hub: Hub, session: Session, room_name: str) -> None:
    """``session`` left ``room_name`` (an empty room vanishes, as :meth:`Hub.part` does)."""
    key = name_key(room_name)
    room = hub.rooms.get(key)
    if room is None or not room.remove(session):
        return
    if not room.members and room.name != DEFAULT_ROOM:
        hub.drop_room(key)


def rename(hub: Hub, session: Session, new_nick: str) -> None:
    if hub.sessions.get(session.key) is session:
        del hub.sessions[session.key]
    session.nick = new_nick
    hub.sessions[session.key] = session


def remove_user(hub: Hub, session: Session) -> None:
    """Forget a remote user, silently (its node announced its leaves)."""
    for room_name in list(session.rooms):
        leave(hub, session, room_name)
    if hub.sessions.get(session.key) is session:
        del hub.sessions[session.key]


def apply_rule(hub: Hub, change: RuleChange) -> None:
    """Another node changed a room's rules: the same here (an operator or a mute goes to
    whoever has that nick here now, on whichever node)."""
    room = hub.room(change.room)
    if room is not None:
        room.apply(change, hub.find(change.nick))


def roles(hub: Hub, session: Session) -> dict[str, list[str]]:
    """The rooms where ``session`` is an operator and is muted (for a snapshot)."""
    found: dict[str, list[str]] = {"op": [], "muted": []}
    for room_name in session.rooms:
        room = hub.room(room_name)
        if room is not None:
            if session.id in room.operators:
                found["op"].append(room.name)
            if session.id in room.muted:
                found["muted"].append(room.name)
    return found


def bans(hub: Hub) -> dict[str, dict[str, str]]:
    """Every room's bans, by room name (for a snapshot)."""
    return {room.name: dict(room.banned) for room in hub.rooms.values() if room.banned}


def learn_bans(hub: Hub, given: dict[str, dict[str, str]]) -> None:
    """Add the bans another node holds to the rooms that exist here (a room with no member
    anywhere is gone, with its bans, on every node)."""
    for room_name, banned in given.items():
        room = hub.room(room_name)
        if room is not None:
            for key, host in banned.items():
                room.banned.setdefault(name_key(str(key)), str(host))
