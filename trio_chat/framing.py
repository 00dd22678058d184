"""Line framing for byte streams, with a hard bound on memory (sans-IO).

TCP delivers bytes, not lines. :class:`LineBuffer` cuts them into lines the way h11 cuts
HTTP: feed it whatever arrived with :meth:`LineBuffer.feed`, then call
:meth:`LineBuffer.next_event` until it says :data:`NEED_DATA`.

A line longer than ``max_line_bytes`` is never kept in memory: the buffer reports one
:class:`LineTooLong` event, throws the bytes away up to the next newline, and then carries on
with the following line, so a client that sends a huge line gets an error and stays usable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    EOF = "EOF"


#: Returned by :meth:`LineBuffer.next_event` when more bytes are needed for a whole line.
NEED_DATA = _Sentinel.NEED_DATA
#: Returned once the peer closed its side and every buffered line was handed out.
EOF = _Sentinel.EOF


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line went over the limit and was discarded; ``limit`` is the limit in bytes."""

    limit: int


LineEvent = bytes | LineTooLong | _Sentinel


#: Bytes of whole lines :class:`LineBuffer` cuts from its buffer at a time (more only for
#: one longer line): their lines are then handed out without a search and a copy each,
#: and however short the lines, no more than this many bytes' worth of them are objects
#: at once (a 64 KiB read of two-byte lines would otherwise be 20,000 of them).
CUT_BYTES = 4096


class LineBuffer:
    """Split a byte stream into lines ending in ``\\n`` (a ``\\r`` before it is dropped)."""

    __slots__ = ("_buf", "_cut", "_discarding", "_eof", "_scan_from", "max_line_bytes")

    def __init__(self, max_line_bytes: int) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self.max_line_bytes = max_line_bytes
        #: What was received and not yet cut into lines: the shared ``b""`` when nothing
        #: is (nearly always, between a chatting client's reads: no buffer of its own per
        #: connection), a read's own bytes while they are all there is (kept, not copied),
        #: a ``bytearray`` once more is added to them (a line in many pieces grows in
        #: place, not by a copy a piece).
        self._buf: bytes | bytearray = b""
        #: Whole lines cut from the front of ``_buf`` and not handed out yet, the next one
        #: last (``pop()``); ``None`` when there are none.
        self._cut: list[bytes] | None = None
        self._scan_from = 0  # bytes of _buf before this offset are known to hold no newline
        self._discarding = False  # inside an over-long line: drop bytes until a newline
        self._eof = False

    def feed(self, data: bytes | bytearray) -> None:
        """Add bytes received from the peer. ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
            return
        if self._discarding:
            # Still inside an over-long line: drop everything up to its newline.
            newline = data.find(b"\n")
            if newline < 0:
                return
            data = data[newline + 1 :]
            self._discarding = False
        buf = self._buf
        if not buf:
            self._buf = data if type(data) is bytes else bytes(data)
        elif isinstance(buf, bytearray):
            buf += data
        else:
            self._buf = bytearray(buf) + data

    @property
    def buffered_bytes(self) -> int:
        """How many bytes are held right now (never much more than ``max_line_bytes``)."""
        cut = self._cut
        return len(self._buf) + (sum(map(len, cut)) + len(cut) if cut else 0)

    def has_line(self) -> bool:
        """Whether :meth:`next_event` can answer without more data: a line, the end, or a
        :class:`LineTooLong` (so a reader that waits for lines never buffers without bound).
        """
        buf = self._buf
        return (
            self._cut is not None
            or self._eof
            or buf.find(b"\n", self._scan_from) >= 0
            or len(buf) > self.max_line_bytes + 1  # too long even if it ends in a CR
        )

    def next_event(self) -> LineEvent:
        """Return the next line (without its ending), a :class:`LineTooLong`, or a sentinel."""
        cut = self._cut
        if cut is None:
            cut = self._cut_lines()
            if cut is None:
                return self._no_whole_line()
        line = cut.pop()
        if not cut:
            self._cut = None
        if line.endswith(b"\r"):  # CRLF
            line = line[:-1]
        if len(line) > self.max_line_bytes:
            return LineTooLong(self.max_line_bytes)
        return line

    def whole_lines(self) -> list[bytes]:
        """The next whole lines, in order, each as :meth:`next_event` would return it, as
        many as one cut holds (at most :data:`CUT_BYTES`' worth, or one longer line); an
        empty list when :meth:`next_event` would answer anything else first (no whole
        line, the end, a line too long: ask :meth:`next_event`, then this again). A
        reader at full speed takes a read's lines this way, a few dozen in one call
        instead of one call each."""
        cut = self._cut
        if cut is None:
            buf = self._buf
            if not buf:
                return []
            if (
                len(buf) <= CUT_BYTES
                and len(buf) <= self.max_line_bytes
                and buf.endswith(b"\n")
                and b"\r" not in buf
            ):
                # Nearly always: a read of whole lines that fit in one cut, none of them
                # too long, no CRLF (a chatting client's line): all of it, as it is.
                self._buf = b""
                self._scan_from = 0
                return bytes(buf[:-1]).split(b"\n")
            cut = self._cut_lines()
            if cut is None:
                return []
        lines = cut[::-1]
        if b"\r" in b"".join(lines):  # CRLF: rare, and one search for all of them
            lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        limit = self.max_line_bytes
        if max(map(len, lines)) > limit:
            # The lines before the first one too long; it and the rest stay in the cut as
            # they were, for next_event to say what it is.
            first = next(i for i, line in enumerate(lines) if len(line) > limit)
            del cut[len(cut) - first :]
            return lines[:first]
        self._cut = None
        return lines

    def _cut_lines(self) -> list[bytes] | None:
        """Cut the whole lines in the first :data:`CUT_BYTES` of the buffer (or the one
        whole line there is, if it is longer) from it into ``_cut``; ``None`` when it
        holds no whole line."""
        buf = self._buf
        end = buf.rfind(b"\n", 0, CUT_BYTES)
        if end < 0:
            end = buf.find(b"\n", max(self._scan_from, CUT_BYTES))
            if end < 0:
                return None
        cut = bytes(buf[:end]).split(b"\n")  # (bytes of bytes is the same object)
        if end + 1 == len(buf):
            self._buf = b""
        elif isinstance(buf, bytearray):
            del buf[: end + 1]
        else:  # the rest of a long read: cut in place from now on
            self._buf = bytearray(memoryview(buf)[end + 1 :])
        self._scan_from = 0
        cut.reverse()
        self._cut = cut
        return cut

    def _no_whole_line(self) -> LineEvent:
        """:meth:`next_event` when the buffer holds no whole line (``_scan_from`` on)."""
        # A CR at the very end may be the first half of a CRLF: it does not count yet.
        allowed = self.max_line_bytes + (1 if self._buf.endswith(b"\r") else 0)
        if len(self._buf) > allowed:
            self._discarding = True
            self._buf = b""
            self._scan_from = 0
            return LineTooLong(self.max_line_bytes)
        self._scan_from = len(self._buf)
        if not self._eof:
            return NEED_DATA
        if self._buf and not self._discarding:
            # A last line without a newline (``nc`` then Ctrl-D) still counts.
            line = bytes(self._buf)
            self._buf = b""
            self._scan_from = 0
            return line[:-1] if line.endswith(b"\r") else line
        return EOF
