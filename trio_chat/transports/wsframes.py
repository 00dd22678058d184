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

Nor is one needed for what nearly every read of a chatting client is: whole text
messages, each in one masked frame (:func:`whole_messages` takes those on their own, and
hands the rest, from the first frame that is anything else, to wsproto).
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


#: The first byte of a frame :func:`whole_messages` takes: FIN, no reserved bit, and the
#: opcode text (1) or binary (2).
_WHOLE_TEXT = 0x81
_WHOLE_BINARY = 0x82


def whole_messages(data: bytes) -> tuple[list[str | bytes], int]:
    """The messages at the start of ``data`` (what a client sent, from a frame boundary
    outside any fragmented message) that come each whole in one frame, and how many bytes
    of ``data`` they took: the rest, from the first frame that is not such a message, or
    not all there yet, is for wsproto's parser.

    A frame is taken here only if wsproto would make exactly one whole message of it,
    with nothing to answer and nothing to refuse: FIN, no reserved bit, text or binary,
    masked (as a client's must be), a length in 7 or (from 126 on) 16 bits, the whole
    payload there, and for text valid UTF-8. Anything else (a ping, a pong, a close, a
    fragment, a reserved bit, a frame wsproto refuses, a length in 64 bits or one not
    written in its fewest bytes, text that is not UTF-8) stops it, so that wsproto parses
    it as it always did: its errors and close codes are the same (RFC 6455, section 5.2).

    A text message is a ``str``, a binary one ``bytes``, as wsproto's ``TextMessage`` and
    ``BytesMessage`` carry them. The mask is undone in one integer ``xor`` (what wsproto
    does with four ``bytes.translate`` and a ``bytearray``, and a call per frame for each
    of its parser's steps: a third of what a WebSocket line cost the server)."""
    messages: list[str | bytes] = []
    at, end = 0, len(data)
    while end - at >= 6:  # the shortest masked frame: 2 bytes of header, 4 of mask
        first, second = data[at], data[at + 1]
        if (first != _WHOLE_TEXT and first != _WHOLE_BINARY) or second < 0x80:
            break
        size, head = second & 0x7F, at + 2
        if size == 126:
            if end - at < 8:
                break
            size = (data[head] << 8) | data[head + 1]
            if size < 126:  # wsproto refuses a length longer than it needs to be
                break
            head += 2
        elif size == 127:
            break
        stop = head + 4 + size
        if stop > end:
            break
        payload = data[head + 4 : stop]
        if size:
            mask = data[head : head + 4] * ((size >> 2) + 1)
            payload = (
                int.from_bytes(payload, "little") ^ int.from_bytes(mask[:size], "little")
            ).to_bytes(size, "little")
        if first == _WHOLE_TEXT:
            try:
                messages.append(payload.decode())
            except UnicodeDecodeError:  # wsproto closes with 1007: let it
                break
        else:
            messages.append(payload)
        at = stop
    return messages, at
