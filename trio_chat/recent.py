"""The last lines of a room, in memory: the history a joiner gets right after its ``join``.

A joiner's history must reach it after its ``join`` and before any later event of the
room, with nothing both in it and live. Reading the store takes an ``await``, during
which the room's lines go on, so the page is kept here instead: the hub feeds each line
it delivers to its room's :class:`RecentLines` and, as it delivers a ``join``, offers the
joiner the page at once (see :attr:`trio_chat.hub.Hub.join_history`). The history service
fills a room's lines from the store once, before the first join that needs them.
"""

from __future__ import annotations

import bisect
import collections
import itertools
from collections.abc import Iterable
from typing import Any

from .changes import apply_change, quote_gone
from .protocol import EncodedMessages, Message, MessageChange, MessageDeleted, encoded_message


class RecentLines:
    """The last ``size`` stored lines of one room, oldest first.

    Fed with every line the hub delivers to the room (:meth:`add`) from the moment it
    exists; :meth:`prime` puts the lines read from the store before that under them.
    Until primed, it is not :attr:`ready` (it only collects).
    """

    __slots__ = ("_fresh", "_parts", "lines", "ready", "whole")

    def __init__(self, size: int) -> None:
        #: Delivered lines (events), or stored ones (their wire form), oldest first.
        self.lines: collections.deque[Message | dict[str, Any]] = collections.deque(maxlen=size)
        #: Each line's JSON (see :class:`~trio_chat.protocol.EncodedMessages`), beside it;
        #: ``None`` until a page holds it.
        self._parts: collections.deque[bytes | None] = collections.deque(maxlen=size)
        self.ready = False
        #: Set by :meth:`prime` when the store held fewer lines than fit: until the lines
        #: fill up, they are every stored line of the room.
        self.whole = False
        #: How many lines, the latest, may still want their wire form or their JSON (see
        #: :meth:`_wire`): only they are looked at when a page is next made.
        self._fresh = 0

    def add(self, line: Message) -> None:
        self.lines.append(line)
        self._parts.append(None)
        self._fresh += 1

    def extend(self, lines: Iterable[Message]) -> None:
        added = tuple(lines)
        self.lines.extend(added)
        self._parts.extend([None] * len(added))
        self._fresh += len(added)

    def change(self, change: MessageChange) -> None:
        """A change of a message went out: the line it changed (if here) is replaced by
        its current state, and so are the quotes of replies to a deleted one (new dicts:
        a page already handed out keeps its own)."""
        lines, parts = self.lines, self._parts
        index = bisect.bisect_left(lines, change.target, key=_line_id)
        if index < len(lines) and _line_id(lines[index]) == change.target:
            line = lines[index]
            lines[index] = apply_change(line if isinstance(line, dict) else line.to_dict(), change)
            parts[index] = None
        if isinstance(change, MessageDeleted):
            for later in range(index + 1, len(lines)):
                line = lines[later]
                if isinstance(line, dict):
                    lines[later] = quote_gone(line, change.target)
                elif line.reply_to == change.target:
                    lines[later] = quote_gone(line.to_dict(), change.target)
                if lines[later] is not line:
                    parts[later] = None
        self._fresh = len(lines)  # (the JSON of the lines changed is made again)

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
        self._parts.clear()
        self._parts.extend([None] * len(self.lines))
        self.whole = len(stored) < (self.lines.maxlen or 0)
        self._fresh = len(self.lines)
        self.ready = True

    def after(self, after: int, before: int, limit: int) -> EncodedMessages | None:
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
        covered = bool(lines) and _line_id(lines[0]) <= after + 1
        if not covered and not (self.whole and len(lines) < (lines.maxlen or 0)):
            return None
        start = bisect.bisect_right(lines, after, key=_line_id)  # ascending ids
        stop = min(start + limit, bisect.bisect_left(lines, before, lo=start, key=_line_id))
        return self._wire(start, max(start, stop))

    def page(self) -> EncodedMessages:
        """The lines, oldest first, each shaped like the ``message`` event that carried it."""
        return self._wire(0, len(self.lines))

    def _wire(self, start: int, stop: int) -> EncodedMessages:
        """Lines ``start`` to ``stop`` in wire form, with their JSON. The delivered lines
        are turned into it once and kept so, and each line's JSON is made once: every
        joiner gets the same page, and making it anew for each (about 1 µs a line to
        shape it, as much to encode it, 50 lines a join, two joins and as many gaps a
        login) was most of what a login's history cost. Nobody changes a page's lines
        after it is sent."""
        lines, parts = self.lines, self._parts
        if self._fresh:
            # Lines are added at the end, so only the latest ``_fresh`` ones can want it
            # (a page after each line said costs one line's work, not the room's).
            for index in range(max(0, len(lines) - self._fresh), len(lines)):
                line = lines[index]
                if not isinstance(line, dict):
                    line = lines[index] = line.to_dict()
                    parts[index] = None
                if parts[index] is None:
                    parts[index] = encoded_message(line)
            self._fresh = 0
        if start == 0 and stop == len(lines):
            return EncodedMessages(list(lines), list(parts))  # type: ignore[arg-type]
        return EncodedMessages(
            list(itertools.islice(lines, start, stop)),  # type: ignore[arg-type]
            list(itertools.islice(parts, start, stop)),  # type: ignore[arg-type]
        )


def _line_id(line: Message | dict[str, Any]) -> int:
    return line.id if isinstance(line, Message) else int(line["id"])
