"""RESP2, the Redis protocol, without any networking code (the sans-IO style of h11).

:func:`encode_command` turns a command into the bytes to send; a :class:`ReplyParser`
takes the bytes Redis sends back, in pieces of any size (:meth:`~ReplyParser.feed`),
and hands back whole replies (:meth:`~ReplyParser.next_reply`, :data:`NEED_DATA` until
one is complete). Replies come back as Python values:

=============================  ============================================
``+OK``                        ``"OK"`` (:class:`str`)
``-ERR ...``                   a :class:`ReplyError` *value* (not raised here)
``:42``                        ``42``
``$5 hello``                   ``b"hello"``
``*2 ...``                     a :class:`list` of replies
``$-1`` / ``*-1``              ``None``
=============================  ============================================

A broken or hostile peer cannot make the parser hold more than it was told to
(:data:`MAX_BULK`, :data:`MAX_ARRAY`, :data:`MAX_DEPTH`, :data:`MAX_LINE`): it raises
:class:`RemoteProtocolError` instead, and the connection is done for.

Only RESP2: trio-chat never sends ``HELLO 3``, and Redis answers RESP2 until asked.
"""

from __future__ import annotations

import re
from typing import Final

#: Longest bulk string accepted (Redis's own default ``proto-max-bulk-len`` is 512 MB;
#: trio-chat's entries are a few kB).
MAX_BULK: Final = 64 * 1024 * 1024
#: Most elements in one array (an XREAD reply has at most COUNT entries).
MAX_ARRAY: Final = 1024 * 1024
#: Deepest nesting of arrays (XREAD answers four deep).
MAX_DEPTH: Final = 16
#: Longest line without its end (a type, a length, a status or an error message).
MAX_LINE: Final = 64 * 1024


class RedisProtocolError(Exception):
    """Base of the errors about the protocol itself (not an error Redis answered)."""


class LocalProtocolError(RedisProtocolError):
    """We tried to send something RESP cannot carry."""


class RemoteProtocolError(RedisProtocolError):
    """The peer sent bytes that are not RESP2, or beyond the parser's bounds."""


class ReplyError(Exception):
    """An error Redis answered (``-NOSCRIPT No matching script``): :attr:`code` is its
    first word (``NOSCRIPT``), the whole line is the message."""

    @property
    def code(self) -> str:
        return str(self.args[0]).partition(" ")[0] if self.args else ""


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


#: What :meth:`ReplyParser.next_reply` answers while no whole reply has arrived.
NEED_DATA: Final = _NeedData()

#: A reply: str (status), int, bytes, None, ReplyError or a list of replies.
Reply = object


#: One stream entry whose only field is ``x`` (the broker's): id, and the payload's length.
_ENTRY = re.compile(rb"\*2\r\n\$(\d{1,2})\r\n(\d+-\d+)\r\n\*2\r\n\$1\r\nx\r\n\$(\d{1,10})\r\n")
#: Longer than any head _ENTRY matches (fewer bytes left may be a head cut short).
_ENTRY_HEAD_MAX = 128
#: The start of an XREAD reply for one stream: the key's length.
_XREAD_HEAD = re.compile(rb"\*1\r\n\*2\r\n\$(\d{1,10})\r\n")
_COUNT = re.compile(rb"\*(\d{1,10})\r\n")

#: The lines of an _ENTRY head, each on its own.
_HEAD_LINES = tuple(
    re.compile(line)
    for line in (rb"\*2", rb"\$\d{1,2}", rb"\d+-\d+", rb"\*2", rb"\$1", rb"x", rb"\$\d{1,10}")
)


def _head_cut_short(rest: bytes) -> bool:
    """Whether ``rest`` may be the start of an _ENTRY head (the end of what came so
    far), rather than something else (left to the general parser)."""
    lines = rest.split(b"\r\n")[:-1]  # the last is cut short, or empty
    if len(lines) >= len(_HEAD_LINES):
        return False
    return all(pattern.fullmatch(line) for pattern, line in zip(_HEAD_LINES, lines, strict=False))


#: A stream entry as :meth:`ReplyParser.next_entries` gives it: its id, and the value of
#: its ``x`` field (None if it has none).
StreamEntry = tuple[bytes, bytes | None]


def _argument(arg: object) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, bool):  # an int, but ambiguous on the wire
        raise LocalProtocolError("a bool is not a Redis argument (send 0/1 or a string)")
    if isinstance(arg, int | float):
        return repr(arg).encode()
    if isinstance(arg, bytearray | memoryview):
        return bytes(arg)
    raise LocalProtocolError(f"a {type(arg).__name__} is not a Redis argument")


def encode_command(*args: object) -> bytes:
    """The request for one command: an array of bulk strings (``str`` as UTF-8, numbers
    as their decimal form)."""
    if not args:
        raise LocalProtocolError("a command needs at least its name")
    return encode_command_after(_NO_HEAD, *args)


#: No arguments encoded ahead: :func:`encode_command_after` of it encodes a whole command.
_NO_HEAD = (0, b"")


def encode_head(*args: object) -> tuple[int, bytes]:
    """The first arguments of a command sent again and again, encoded once: give it to
    :func:`encode_command_after` with the arguments that change."""
    request = encode_command(*args)
    return len(args), request[request.index(b"\r\n") + 2 :]


def encode_command_after(head: tuple[int, bytes], *args: object) -> bytes:
    """:func:`encode_command` of ``head``'s arguments (see :func:`encode_head`) followed by
    ``args``: only those are encoded (a node reads and appends with the same command,
    key and script each time, and encoding those showed per round trip)."""
    count, fixed = head
    parts = [b"*%d\r\n" % (count + len(args)), fixed]
    for arg in args:
        data = _argument(arg)
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


class _Incomplete(Exception):
    """The buffer ends inside a reply; ``need`` is the least length it must reach."""

    def __init__(self, need: int) -> None:
        self.need = need


class ReplyParser:
    """Bytes in (:meth:`feed`), whole replies out (:meth:`next_reply`).

    A reply cut short is parsed again from its start when enough bytes arrived for the
    part it stopped at (a long bulk string is not parsed again for every piece of it).
    """

    def __init__(
        self,
        *,
        max_bulk: int = MAX_BULK,
        max_array: int = MAX_ARRAY,
        max_depth: int = MAX_DEPTH,
        max_line: int = MAX_LINE,
    ) -> None:
        self._buffer = b""
        self._need = 1  # parse again once the buffer holds this many bytes
        self._max_bulk = max_bulk
        self._max_array = max_array
        self._max_depth = max_depth
        self._max_line = max_line
        self._broken: RemoteProtocolError | None = None
        #: An XREAD reply read in part by the fast path: its entries so far, where the
        #: next starts, how many there are.
        self._partial: tuple[list[StreamEntry], int, int] | None = None

    def feed(self, data: bytes | bytearray) -> None:
        """Add bytes received from the peer."""
        if data:
            self._buffer = self._buffer + data if self._buffer else bytes(data)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet part of a reply handed back."""
        return len(self._buffer)

    def next_reply(self) -> Reply:
        """The next whole reply, or :data:`NEED_DATA`. Raises
        :class:`RemoteProtocolError` (then again at every call) if the peer broke RESP."""
        if self._broken is not None:
            raise self._broken
        buffer = self._buffer
        if len(buffer) < self._need:
            return NEED_DATA
        try:
            value, end = self._parse(buffer)
        except _Incomplete as incomplete:
            self._need = max(incomplete.need, len(buffer) + 1)
            if self._need - len(buffer) > self._max_bulk + self._max_line + 4:
                self._broken = RemoteProtocolError("reply larger than allowed")
                raise self._broken from None
            return NEED_DATA
        except RemoteProtocolError as exc:
            self._broken = exc
            raise
        self._buffer = buffer[end:]
        self._need = 1
        return value

    def next_entries(self) -> list[StreamEntry] | ReplyError | _NeedData | None:
        """The next reply as the answer to an ``XREAD`` of one stream: its entries as
        (id, the ``x`` field's value), or None when there are none (``BLOCK`` timed
        out), a :class:`ReplyError`, or :data:`NEED_DATA`. Raises
        :class:`RemoteProtocolError` for what is not RESP, or not an XREAD reply.

        Entries shaped as the broker writes them (one field, ``x``) are read with one
        regular expression each, at ~a third of the cost of :meth:`next_reply`'s loop;
        anything else (and a reply not yet whole) goes through :meth:`next_reply`.
        """
        fast = self._fast_entries()
        if fast is not None:
            return fast
        reply = self.next_reply()
        if reply is NEED_DATA or reply is None or isinstance(reply, ReplyError):
            return reply
        try:
            entries: list[StreamEntry] = []
            for _key, items in reply:  # type: ignore[attr-defined]
                for raw_id, fields in items:
                    found = dict(zip(fields[::2], fields[1::2], strict=False)).get(b"x")
                    entries.append((bytes(raw_id), found))
        except (TypeError, ValueError) as exc:
            self._broken = RemoteProtocolError(f"not an XREAD reply: {exc}")
            raise self._broken from None
        return entries

    def _fast_entries(self) -> list[StreamEntry] | _NeedData | None:
        """The entries of an XREAD reply at the start of the buffer while every one of
        them is shaped as the broker's: all of them once the reply is whole, else
        :data:`NEED_DATA` (what was read so far is kept: a reply arriving in pieces is
        read once); None (and nothing consumed) for anything else."""
        buffer = self._buffer
        if self._broken is not None or len(buffer) < self._need:
            return None
        size = len(buffer)
        if self._partial is None:
            head = _XREAD_HEAD.match(buffer)
            if head is None:
                return None
            pos = head.end() + int(head[1]) + 2
            counted = _COUNT.match(buffer, pos)
            if counted is None or buffer[pos - 2 : pos] != b"\r\n":
                return None
            count = int(counted[1])
            if count > self._max_array:
                return None
            entries: list[StreamEntry] = []
            pos = counted.end()
        else:
            entries, pos, count = self._partial
            self._partial = None
        append = entries.append
        match = _ENTRY.match
        max_bulk = self._max_bulk
        # (One groups() call, and the checks in few steps: this runs for every entry.)
        for _ in range(count - len(entries)):
            entry = match(buffer, pos)
            if entry is None:
                if size - pos < _ENTRY_HEAD_MAX and _head_cut_short(buffer[pos:]):
                    self._partial = (entries, pos, count)
                    self._need = size + 1
                    return NEED_DATA
                return None
            id_size, raw_id, value_size = entry.groups()
            length = int(value_size)
            if len(raw_id) != int(id_size) or length > max_bulk:
                return None
            start = entry.end()
            stop = start + length
            if stop + 2 > size:
                self._partial = (entries, pos, count)
                self._need = stop + 2
                return NEED_DATA
            if not buffer.startswith(b"\r\n", stop):
                return None
            append((raw_id, buffer[start:stop]))
            pos = stop + 2
        self._buffer = buffer[pos:]
        self._need = 1
        return entries

    def _parse(self, buffer: bytes) -> tuple[Reply, int]:
        """The reply at the start of ``buffer``: (the value, where the next one starts).

        One loop with a stack of the arrays being filled, rather than a call per element:
        an XREAD reply is thousands of small bulk strings and arrays, and a Python call
        per element cost more than the rest of parsing it.
        """
        find = buffer.find
        size = len(buffer)
        max_line = self._max_line + 2
        max_bulk = self._max_bulk
        arrays: list[list[Reply]] = []  # the arrays being filled, innermost last
        counts: list[int] = []  # how many elements each of them has
        pos = 0
        value: Reply
        try:
            while True:
                end = find(b"\r\n", pos, pos + max_line)
                if end < 0:
                    if size - pos >= max_line:
                        raise RemoteProtocolError("line longer than allowed")
                    raise _Incomplete(size + 1)
                kind = buffer[pos]
                if kind == 36:  # '$' bulk string
                    length = int(buffer[pos + 1 : end])
                    if length >= 0:
                        if length > max_bulk:
                            raise RemoteProtocolError(f"bulk string of {length} bytes refused")
                        stop = end + 2 + length
                        if size < stop + 2:
                            raise _Incomplete(stop + 2)
                        if buffer[stop] != 13 or buffer[stop + 1] != 10:
                            raise RemoteProtocolError("bulk string not ended by CRLF")
                        value = buffer[end + 2 : stop]
                        pos = stop + 2
                    elif length == -1:
                        value = None
                        pos = end + 2
                    else:
                        raise RemoteProtocolError(f"bad bulk length {length}")
                elif kind == 42:  # '*' array
                    count = int(buffer[pos + 1 : end])
                    pos = end + 2
                    if count > 0:
                        if count > self._max_array:
                            raise RemoteProtocolError(f"array of {count} elements refused")
                        if len(arrays) >= self._max_depth:
                            raise RemoteProtocolError("arrays nested too deep")
                        arrays.append([])
                        counts.append(count)
                        continue
                    if count == 0:
                        value = []
                    elif count == -1:
                        value = None
                    else:
                        raise RemoteProtocolError(f"bad array length {count}")
                elif kind == 43:  # '+' simple string
                    value = buffer[pos + 1 : end].decode("utf-8", "replace")
                    pos = end + 2
                elif kind == 45:  # '-' error
                    value = ReplyError(buffer[pos + 1 : end].decode("utf-8", "replace"))
                    pos = end + 2
                elif kind == 58:  # ':' integer
                    value = int(buffer[pos + 1 : end])
                    pos = end + 2
                else:
                    raise RemoteProtocolError(f"unknown reply type {bytes([kind])!r}")
                # Put the value in its array; a full array is in turn a value for the next.
                while arrays:
                    innermost = arrays[-1]
                    innermost.append(value)
                    if len(innermost) < counts[-1]:
                        break
                    value = arrays.pop()
                    counts.pop()
                else:
                    return value, pos
                if pos >= size:
                    raise _Incomplete(pos + 1)
        except ValueError:
            line = buffer[pos : buffer.find(b"\r\n", pos)][:20]
            raise RemoteProtocolError(f"bad length or integer in {line!r}") from None
