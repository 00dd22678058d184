"""Replies, edits, deletes and reactions on the server: finding the message meant, checking
who may change it, and handing the change to the hub (the rules are :mod:`.changes`').

The message named must be a line of that room (not a join, a leave or a private message)
and not deleted: it is looked up in this node's memory first (:attr:`Hub.messages
<trio_chat.hub.Hub.messages>`, the authors of each room's latest lines, with or without a
database), else in the store. A change is then numbered and goes the way of a chat line
(:meth:`Hub.change <trio_chat.hub.Hub.change>`): the broker's order, the commit, every
member, each node's memory and store.

Who may: edit, the author only (the account it was said under, or the very guest session
that said it); delete, the author or an operator of the room (a server administrator is
one everywhere); react, any member. Someone muted in the room may not edit or react, but
may delete their own lines. A banned user is no member, so may do none of it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .changes import MAX_REACTIONS, Authored, NoSuchMessage, check_emoji, cut_quote
from .errors import ChatError
from .hub import NotAllowed, NotInRoom
from .names import name_key
from .protocol import MessageDeleted, MessageEdited, Reaction
from .store import StoreError

if TYPE_CHECKING:
    from .hub import Hub, Room, Session
    from .store import Store

__all__ = ["MessageChanges"]

log = logging.getLogger("trio_chat.changes")


class MessageChanges:
    """The server's replies and changes of messages (one per server)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        #: The database while serving with one: where messages older than this node's
        #: memory are looked up.
        self.store: Store | None = None

    def _room(self, session: Session, room_name: str) -> Room:
        room = self.hub.room(room_name)
        if room is None or session.id not in room.members:
            raise NotInRoom(f"you are not in {room_name}")
        return room

    async def find(self, session: Session, room_name: str, message_id: int) -> Authored:
        """Message ``message_id`` of ``room_name`` (a room ``session`` is in), as this
        node knows it; :class:`NoSuchMessage` if there is none or it was deleted."""
        room = self._room(session, room_name)
        index = self.hub.messages
        entry = index.get(room.name, message_id)
        if entry is None and self.store is not None and not index.covers(room.name, message_id):
            try:
                stored = await self.store.room_message(room.name, message_id)
            except StoreError as exc:
                log.error("looking up message %d of %s failed: %s", message_id, room.name, exc)
                raise ChatError("store_error", "messages cannot be read right now") from None
            if stored is not None:
                entry = Authored(
                    stored.id,
                    stored.sender,
                    stored.sender_account,
                    None,
                    cut_quote(stored.text),
                    stored.deleted,
                    stored.reactions or {},
                )
        if entry is None or entry.deleted:
            raise NoSuchMessage(f"there is no message {message_id} in {room.name}")
        return entry

    async def quote(self, session: Session, room_name: str, message_id: int) -> dict[str, str]:
        """The ``quote`` of a reply to ``message_id`` (its author and cut text)."""
        entry = await self.find(session, room_name, message_id)
        return {"nick": entry.nick, "text": entry.quote}

    async def edit(self, session: Session, room_name: str, message_id: int, text: str) -> None:
        """Replace the text of ``session``'s own message (``text`` checked by the caller:
        not blank, through the message filters)."""
        entry = await self.find(session, room_name, message_id)
        room = self._room(session, room_name)  # (still a member after the read)
        if not entry.written_by(session.account, session.id):
            raise NotAllowed("you can only edit your own messages")
        if session.id in room.muted:
            raise NotAllowed(f"you are muted in {room.name}")
        nick = session.nick
        self.hub.change(
            session,
            room,
            lambda id_, ts: MessageEdited(
                id=id_, ts=ts, room=room.name, nick=nick, target=message_id, text=text
            ),
        )

    async def delete(self, session: Session, room_name: str, message_id: int) -> None:
        """Delete a message: ``session``'s own, or any as an operator of the room."""
        entry = await self.find(session, room_name, message_id)
        room = self._room(session, room_name)
        if not entry.written_by(session.account, session.id) and not room.is_operator(session):
            raise NotAllowed(
                f"you can only delete your own messages (or be an operator of {room.name})"
            )
        nick = session.nick
        self.hub.change(
            session,
            room,
            lambda id_, ts: MessageDeleted(
                id=id_, ts=ts, room=room.name, nick=nick, target=message_id
            ),
        )
        # Deleted from now on for what this node is asked (a change asked for before the
        # delete is delivered would otherwise pass): nothing can undo a numbered delete.
        entry.deleted = True

    async def react(
        self, session: Session, room_name: str, message_id: int, emoji: str, on: bool
    ) -> bool:
        """Add (``on``) or take back ``session``'s reaction ``emoji``; ``False`` when that
        changes nothing (already so: nothing is sent)."""
        check_emoji(emoji)
        entry = await self.find(session, room_name, message_id)
        room = self._room(session, room_name)
        if session.id in room.muted:
            raise NotAllowed(f"you are muted in {room.name}")
        nicks = entry.reactions.get(emoji, [])
        mine = any(name_key(n) == name_key(session.nick) for n in nicks)
        if mine == on:
            return False
        if on and emoji not in entry.reactions and len(entry.reactions) >= MAX_REACTIONS:
            raise NotAllowed(
                f"message {message_id} has {MAX_REACTIONS} different reactions already"
            )
        nick = session.nick
        self.hub.change(
            session,
            room,
            lambda id_, ts: Reaction(
                id=id_, ts=ts, room=room.name, nick=nick, target=message_id, emoji=emoji, on=on
            ),
        )
        return True
