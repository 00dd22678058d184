"""Users of other nodes, as this node's hub sees them: members it never delivers to.

With several nodes, a room's members are spread over them. Each node keeps every remote
user as a :class:`~trio_chat.hub.Session` whose mailbox drops what it is offered (its own
node delivers to it), so everything that asks "who is in this room", "is this nick taken",
"send this to nick" works unchanged: ``/who``, ``/rooms``, nick uniqueness (look-alikes
included), private messages, quiet-room sizes, kicks.

These functions change the hub's registry *without* publishing anything: they replay what
another node already published (its joins, leaves, renames) or what it said it holds.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from ..hub import Room, Session
from ..mailbox import Mailbox, Parcel
from ..names import DEFAULT_ROOM, name_key

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["RemoteMailbox", "add_user", "join", "leave", "remove_user", "rename"]

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


def add_user(hub: Hub, nick: str, node: str, account: str | None) -> Session:
    """Register ``nick`` as a user of ``node`` (replacing no one: the caller checked)."""
    session = Session(
        id=next(_remote_ids),
        nick=nick,
        address=f"node {node}",
        transport="remote",
        mailbox=RemoteMailbox(node),
        account=account,
    )
    hub.sessions[session.key] = session
    return session


def join(hub: Hub, session: Session, room_name: str) -> None:
    """``session`` is in ``room_name`` (created here if this node had no member in it)."""
    key = name_key(room_name)
    room = hub.rooms.get(key)
    if room is None:
        room = hub.rooms[key] = Room(room_name)
    room.members[session.id] = session
    session.rooms[room.name] = None


def leave(hub: Hub, session: Session, room_name: str) -> None:
    """``session`` left ``room_name`` (an empty room vanishes, as :meth:`Hub.part` does)."""
    key = name_key(room_name)
    room = hub.rooms.get(key)
    if room is None or not room.remove(session):
        return
    if not room.members and room.name != DEFAULT_ROOM:
        del hub.rooms[key]


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
