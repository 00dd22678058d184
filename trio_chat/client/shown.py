"""What the terminal client remembers of the messages it has shown, to name them later.

Message ids are how a user points at a message (``/reply 123 ...``, ``/react 123 👍``), and
each event about a message (an edit, a delete, a reaction) names it only by id. Keeping
the last :data:`SHOWN_MESSAGES` messages' room, author and text, by id, lets the client
send such a frame to the right room whichever room is current, say whose message was
deleted, quote a few words of what was reacted to, and offer recent ids on Tab. Bounded,
and no I/O.
"""

from __future__ import annotations

import collections
import dataclasses

from ..names import name_key
from ..protocol import History, Info, Message, RemoteProtocolError, SearchResults, ServerEvent
from .events import MessageDeleted, MessageEdited, event_from_dict

#: Messages remembered, the newest kept.
SHOWN_MESSAGES = 5_000


@dataclasses.dataclass
class ShownMessage:
    """One message as last shown: its room, author and current text ("" once deleted)."""

    room: str
    nick: str
    text: str


class ShownMessages:
    """The last ``size`` messages shown, by id."""

    def __init__(self, size: int = SHOWN_MESSAGES) -> None:
        self._messages: collections.OrderedDict[int, ShownMessage] = collections.OrderedDict()
        self._size = size

    def add(self, message: Message) -> None:
        deleted = getattr(message, "deleted", None)
        self._messages[message.id] = ShownMessage(
            message.room, message.nick, "" if deleted else message.text
        )
        self._messages.move_to_end(message.id)
        while len(self._messages) > self._size:
            self._messages.popitem(last=False)

    def get(self, message_id: int) -> ShownMessage | None:
        return self._messages.get(message_id)

    def edited(self, message_id: int, text: str) -> None:
        shown = self._messages.get(message_id)
        if shown is not None:
            shown.text = text

    def deleted(self, message_id: int) -> None:
        """Its text is gone from the server: forget it here too (the id stays known)."""
        self.edited(message_id, "")

    def recent_ids(self, room: str, nick: str | None = None, count: int = 20) -> list[int]:
        """The newest ids shown in ``room`` (of ``nick``'s messages only, if given),
        newest first, skipping deleted ones."""
        key = name_key(room)
        found: list[int] = []
        # A copy first: Tab completion calls this from the prompt's thread.
        for message_id, shown in reversed(list(self._messages.items())):
            if name_key(shown.room) != key or not shown.text:
                continue
            if nick is not None and shown.nick != nick:
                continue
            found.append(message_id)
            if len(found) >= count:
                break
        return found

    def remember(self, event: ServerEvent) -> None:
        """Keep up with an event just shown: its messages, or a change to one."""
        if isinstance(event, Message):
            self.add(event)
        elif isinstance(event, MessageEdited):
            self.edited(event.target, event.text)
        elif isinstance(event, MessageDeleted):
            self.deleted(event.target)
        elif isinstance(event, History | SearchResults | Info):
            items = event.messages if not isinstance(event, Info) else _mentions(event)
            for item in items:
                if not isinstance(item, dict) or item.get("type", "message") != "message":
                    continue
                try:
                    message = event_from_dict({**item, "type": "message"})
                except RemoteProtocolError:
                    continue
                if isinstance(message, Message):
                    self.add(message)


def _mentions(event: Info) -> list[object]:
    """The lines of ``/mentions``' answer (``data.mentions``), if it is one."""
    found = event.data.get("mentions") if isinstance(event.data, dict) else None
    return found if isinstance(found, list) else []
