"""Typed commands about messages, turned into the frames made for them (sans-IO).

``/reply ID TEXT``, ``/edit ID TEXT``, ``/delete ID``, ``/react ID EMOJI``,
``/unreact ID EMOJI`` and ``/search [#room] WORDS`` are server commands too, but the
terminal client sends the JSON frames instead (``say`` with ``reply_to``, ``edit``,
``delete``, ``react``, ``search``; docs/protocol.md): a malformed line is caught here, with
its usage, before anything is sent, the frame is sent to the room of the message it names
(whichever room is current), and a ``search`` is answered by a ``search`` event the client
can draw and page. An ``ID`` may be written ``123`` or ``#123``, as lines show it.
"""

from __future__ import annotations

from ..protocol import MAX_FRAME_INT, Command, RemoteProtocolError
from .events import WireFrame
from .shown import ShownMessages

#: Each command's usage, shown when a line does not fit it.
USAGE = {
    "reply": "/reply ID TEXT",
    "edit": "/edit ID TEXT",
    "delete": "/delete ID",
    "react": "/react ID EMOJI",
    "unreact": "/unreact ID EMOJI",
    "search": "/search [#room] WORDS",
}
#: Commands the client knows of itself (for Tab), whatever the server lists.
MESSAGE_COMMANDS = (*USAGE, "mentions")
#: Results per ``/search`` page.
SEARCH_PAGE = 20


def message_frame(command: Command) -> WireFrame | None:
    """The frame for a typed message command, ``None`` for any other command. A bare
    ``/search`` gives a ``search`` frame without ``query``: the next page of the last
    search (:class:`SearchPaging`). Raises :class:`RemoteProtocolError` (``usage``)."""
    name = command.name
    if name not in USAGE:
        return None
    if name == "search":
        return _search(command.args)
    head, _, rest = command.args.strip().partition(" ")
    rest = rest.strip()
    message_id = _message_id(head, name)
    if name == "delete":
        if rest:
            raise _usage(name)
        return WireFrame("delete", {"id": message_id})
    if not rest:
        raise _usage(name)
    if name == "reply":
        return WireFrame("say", {"text": rest, "reply_to": message_id})
    if name == "edit":
        return WireFrame("edit", {"id": message_id, "text": rest})
    if len(rest.split()) != 1:
        raise _usage(name)
    fields: dict[str, object] = {"id": message_id, "emoji": rest}
    if name == "unreact":
        fields["on"] = False
    return WireFrame("react", fields)


def _message_id(word: str, name: str) -> int:
    digits = word.removeprefix("#")
    if not digits.isascii() or not digits.isdigit() or int(digits) > MAX_FRAME_INT:
        raise _usage(name, f"{word!r} is not a message id (the number after # in a line's time)")
    return int(digits)


def _search(args: str) -> WireFrame:
    words = args.split()
    room = None
    if words and words[0].startswith("#"):
        room = words.pop(0)
    if not words:
        if room is not None:
            raise _usage("search")
        return WireFrame("search", {})
    return WireFrame("search", {"query": " ".join(words), "room": room, "limit": SEARCH_PAGE})


def _usage(name: str, why: str = "") -> RemoteProtocolError:
    prefix = f"{why}; " if why else ""
    return RemoteProtocolError("usage", f"{prefix}usage: {USAGE[name]}")


def in_room_of_message(frame: WireFrame, shown: ShownMessages) -> WireFrame:
    """``frame`` sent to the room of the message it names, when that message was shown
    and no room is given: so ``/react 123 👍`` works from any current room."""
    if frame.kind == "say":
        message_id = frame.fields.get("reply_to")
    elif frame.kind in ("edit", "delete", "react"):
        message_id = frame.fields.get("id")
    else:
        return frame
    if frame.room is not None or not isinstance(message_id, int):
        return frame
    message = shown.get(message_id)
    return frame if message is None else frame.with_fields(room=message.room)


class SearchPaging:
    """The last search, so that a bare ``/search`` asks for the page before it."""

    def __init__(self) -> None:
        self._last: WireFrame | None = None
        self._oldest: int | None = None

    def next_frame(self, frame: WireFrame) -> WireFrame | str:
        """The frame to send for a ``search``: as it is when it has a query (a new
        search), else the previous search's next page; or why there is none."""
        if frame.fields.get("query"):
            self._last, self._oldest = frame, None
            return frame
        if self._last is None:
            return f"usage: {USAGE['search']}"
        if self._oldest is None:
            return "no older results: the last search found them all"
        return self._last.with_fields(before=self._oldest)

    def answered(self, oldest: int | None, more: bool) -> None:
        """The last search's answer: the oldest id found, and whether older ones match."""
        self._oldest = oldest if more else None
