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

    __slots__ = ("lines", "ready", "whole")

    def __init__(self, size: int) -> None:
        #: Delivered lines (events), or stored ones (their wire form), oldest first.
        self.lines: collections.deque[Message | dict[str, Any]] = collections.deque(maxlen=size)
        self.ready = False
        #: Set by :meth:`prime` when the store held fewer lines than fit: until the lines
        #: fill up, they are every stored line of the room.
        self.whole = False

    def add(self, line: Message) -> None:
        self.lines.append(line)

    def extend(self, lines: Iterable[Message]) -> None:
        self.lines.extend(lines)

    def prime(self, stored: list[dict[str, Any]]) -> None:
        """``stored``: the room's latest stored lines (wire form, oldest first), as many as
        fit (``size``) or fewer if the store holds fewer, read while :meth:`add` collected
        the lines delivered meanwhile. Merged by id: the read stops below the first line
        delivered after it began, but a line both read and collected (committed, and
        delivered only after the read began) is kept once."""
        by_id: dict[int, Message | dict[str, Any]] = {line["id"]: line for line in stored}
        by_id.update((line.id, line) for line in self.lines if isinstance(line, Message))
        self.lines.clear()
        self.lines.extend(by_id[key] for key in sorted(by_id))
        self.whole = len(stored) < (self.lines.maxlen or 0)
        self.ready = True

    def after(self, after: int, before: int, limit: int) -> list[dict[str, Any]] | None:
        """The first ``limit`` lines with ``after < id < before`` (wire form, oldest first),
        the page the store would give, or ``None`` when these lines cannot tell it: lines
        above ``after`` may have left them (then ask the store).

        Why: a client coming back after a lost connection asks for what it missed since
        the last id it saw, and as a rule that is within a room's latest lines. The lines
        are every stored line of the room from the oldest one kept on (stored before the
        room's lines were primed, delivered, so committed, after), so a gap that starts at
        or after the oldest is all here, and so is any gap while nothing has been dropped
        from lines that held the room's whole history.
        """
        if not self.ready:
            return None
        lines = self.lines
        if lines:
            oldest = lines[0]
            oldest_id = oldest.id if isinstance(oldest, Message) else oldest["id"]
            covered = oldest_id <= after + 1
        else:
            covered = False
        if not covered and not (self.whole and len(lines) < (lines.maxlen or 0)):
            return None
        page: list[dict[str, Any]] = []
        for line in lines:
            line_id = line.id if isinstance(line, Message) else line["id"]
            if line_id <= after:
                continue
            if line_id >= before or len(page) == limit:
                break
            page.append(line if isinstance(line, dict) else line.to_dict())
        return page

    def page(self) -> list[dict[str, Any]]:
        """The lines, oldest first, each shaped like the ``message`` event that carried it."""
        return [line if isinstance(line, dict) else line.to_dict() for line in self.lines]
