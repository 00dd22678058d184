"""wsproto's frame parser, held by a WebSocket connection only while it has something to
parse (sans-IO).

A wsproto ``Connection`` is about 1.6 KiB (its event deque alone is 0.75 KiB, then the
frame and message decoders, a buffer and a parser generator), and a WebSocket chat
connection would keep one for its whole life, parked or busy (bench/README.md, "Memory
per connection"). Yet between two reads it nearly always holds nothing: clients send
whole frames, so what one read brought is parsed to its last byte, and the parser is back
where a new one starts. So a link borrows a parser when bytes arrive (:func:`lend`) and
gives it back (:func:`give_back`) once everything it was fed is handed out and
:class:`FrameBoundary` says that ended on a frame boundary outside any fragmented
message; only a connection in the middle of a frame or message keeps its own. The
parser is wsproto's own, unchanged: this module only decides when none is needed.
"""

from __future__ import annotations

from wsproto.connection import Connection, ConnectionState, ConnectionType

#: Most spare parsers kept for the next connection that reads (one is made when none is
#: spare, in 3 us): as many as were ever in use at once, as a rule, readers in the
#: middle of their frames. A parser is not let go lightly: it is a reference cycle
#: (wsproto's parser generator holds its protocol), freed only by the cyclic garbage
#: collector, and one that lived long is freed only by a full collection, which is rare
#: here (:func:`trio_chat.program.quiet_gc`).
SPARE_PARSERS = 256

_spare: list[Connection] = []


def lend() -> Connection:
    """A server-side frame parser that has parsed nothing (a spare one if there is)."""
    return _spare.pop() if _spare else Connection(ConnectionType.SERVER)


def give_back(parser: Connection) -> None:
    """Return a parser lent by :func:`lend`. Only one at rest: every event of what it
    was fed handed out, on a frame boundary outside a fragmented message
    (:attr:`FrameBoundary.at_rest`), and still open (one that saw or sent a close stays
    with its connection)."""
    if parser.state is ConnectionState.OPEN and len(_spare) < SPARE_PARSERS:
        _spare.append(parser)


class FrameBoundary:
    """Follows the frame headers of what a client sends, only to know whether the bytes
    so far end exactly where a frame does, with no fragmented message open
    (:attr:`at_rest`). It checks nothing: the parser does, and a client whose frames it
    refuses is closed anyway.

    Each frame is a 2-byte header (FIN and the opcode; the mask bit and a 7-bit length),
    then a 2- or 8-byte length if the 7 bits say 126 or 127, a 4-byte mask if the mask bit
    is set, then the payload (RFC 6455, section 5.2). A data frame without FIN opens a
    fragmented message, and its last fragment's FIN closes it; control frames (opcode 8
    and up) may come in between and change nothing.
    """

    __slots__ = ("_head", "_open", "_skip")

    def __init__(self) -> None:
        #: The start of a frame header that has not all arrived yet.
        self._head = b""
        #: Payload bytes of the current frame still to come.
        self._skip = 0
        #: A data message is open: its last fragment has not come yet.
        self._open = False

    @property
    def at_rest(self) -> bool:
        """Whether everything fed so far ends a frame, outside any fragmented message."""
        return not self._skip and not self._head and not self._open

    def feed(self, data: bytes) -> None:
        """Follow the frames through ``data``, the next bytes the client sent."""
        if self._head:
            data, self._head = self._head + data, b""
        at, end = 0, len(data)
        while at < end:
            if self._skip:
                taken = min(self._skip, end - at)
                self._skip -= taken
                at += taken
                continue
            if end - at < 2:
                self._head = data[at:]
                return
            first, second = data[at], data[at + 1]
            size, header = second & 0x7F, 2
            if size == 126:
                header += 2
            elif size == 127:
                header += 8
            if second & 0x80:
                header += 4  # the mask
            if end - at < header:
                self._head = data[at:]
                return
            if size >= 126:
                size = int.from_bytes(data[at + 2 : at + (4 if size == 126 else 10)], "big")
            if first & 0x0F < 8:  # a data frame: FIN ends its message
                self._open = not first & 0x80
            at += header
            self._skip = size
