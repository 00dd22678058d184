"""The last lines of a room, in memory: the history a joiner gets right after its ``join``.

A joiner's history must reach it after its ``join`` and before any later event of the
room, with nothing both in it and live. Reading the store takes an ``await``, during
which the room's lines go on, so the page is kept here instead: the hub feeds each line
it delivers to its room's :class:`RecentLines` and, as it delivers a ``join``, offers the
joiner the page at once (see :attr:`trio_chat.hub.Hub.join_history`). The history service
fills a room's lines from the store once, before the first join that needs them.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

from .protocol import Message


class RecentLines:
    """The last ``size`` stored lines of one room, oldest first.

    Fed with every line the hub delivers to the room (:meth:`add`) from the moment it
    exists; :meth:`prime` puts the lines read from the store before that under them.
    Until primed, it is not :attr:`ready` (it only collects).
    """

    __slots__ = ("lines", "ready")

    def __init__(self, size: int) -> None:
        #: Delivered lines (events), or stored ones (their wire form), oldest first.
        self.lines: collections.deque[Message | dict[str, Any]] = collections.deque(maxlen=size)
        self.ready = False

    def add(self, line: Message) -> None:
        self.lines.append(line)

    def extend(self, lines: Iterable[Message]) -> None:
        self.lines.extend(lines)

    def prime(self, stored: list[dict[str, Any]]) -> None:
        """``stored``: the room's latest stored lines (wire form, oldest first), read
        while :meth:`add` collected the lines delivered meanwhile. Merged by id: the read
        stops below the first line delivered after it began, but a line both read and
        collected (committed, and delivered only after the read began) is kept once."""
        by_id: dict[int, Message | dict[str, Any]] = {line["id"]: line for line in stored}
        by_id.update((line.id, line) for line in self.lines if isinstance(line, Message))
        self.lines.clear()
        self.lines.extend(by_id[key] for key in sorted(by_id))
        self.ready = True

    def page(self) -> list[dict[str, Any]]:
        """The lines, oldest first, each shaped like the ``message`` event that carried it."""
        return [line if isinstance(line, dict) else line.to_dict() for line in self.lines]
