"""Splitting a long chat line for IRC receivers (pure functions).

A user of the JSON or WebSocket protocol may say far more than one IRC line holds (512
bytes with the source, command, target and CRLF). IRC servers that relay such text (and
bouncers, and clients that send it) cut it into several messages; so do we, and never
cut it silently:

* every piece, with the real source prefix, command and target, fits in 512 bytes;
* cuts fall between UTF-8 characters, never inside one;
* a cut prefers the last space that leaves the piece at least half full; that one space
  is dropped (the next piece starts after it), so the pieces rejoined with a space are
  the original line. Without such a space (a long word, a URL) the cut falls after the
  last whole character that fits, and the pieces rejoined without anything are the line;
* a ``/me`` action is split the same way, each piece its own ``ACTION``.
"""

from __future__ import annotations

from .message import MAX_LINE_BYTES


def split_utf8(text: str, budget: int) -> list[str]:
    """``text`` in pieces of at most ``budget`` UTF-8 bytes each (see the module's
    rules). An empty text is one empty piece."""
    if budget < 4:
        raise ValueError("a piece must have room for at least one character (4 bytes)")
    data = text.encode("utf-8")
    if len(data) <= budget:
        return [text]
    pieces: list[str] = []
    while len(data) > budget:
        cut = budget
        # Back off to the start of a character: continuation bytes are 10xxxxxx.
        while cut > 0 and (data[cut] & 0xC0) == 0x80:
            cut -= 1
        space = data.rfind(b" ", 0, cut + 1)
        if space >= budget // 2:
            pieces.append(data[:space].decode("utf-8"))
            data = data[space + 1 :]
        else:
            pieces.append(data[:cut].decode("utf-8"))
            data = data[cut:]
    if data or not pieces:
        pieces.append(data.decode("utf-8"))
    return pieces


def text_budget(source: str, command: str, target: str, *, wrapper: int = 0) -> int:
    """Bytes left for the text of ``:source COMMAND target :text\\r\\n`` in one line
    (``wrapper``: bytes the text is wrapped in, 9 for a CTCP ACTION's ``\\x01ACTION \\x01``)."""
    overhead = len(f":{source} {command} {target} :\r\n".encode()) + wrapper
    return MAX_LINE_BYTES - overhead
