"""Every HTTP answer the server gives, written by h11 (sans-IO: status, headers, body in,
bytes out).

Three places answer HTTP and then close: the WebSocket port (the page, its errors, a refusal
when full), the chat TCP port (a browser that dialled the wrong port) and the metrics port.
None of them keeps a connection alive, so each answer is one :func:`response`, sent whole.

h11 writes the status line and the headers, in the order and letter case given, and checks
that the body matches ``Content-Length``. It can answer without having parsed a request: a
server :class:`h11.Connection` in state ``IDLE`` may send a ``Response`` at once, the case
h11 keeps for errors about requests it could not read (our 400 for garbage, and the chat
port's answer, which never parses HTTP). So no request is fed to it; the caller says
whether the request was a ``HEAD``, whose answer is the head alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus

import h11

#: ``Content-Type`` of the short plain-text bodies of errors and refusals.
PLAIN_TEXT = "text/plain; charset=utf-8"

#: Every answer ends its connection; a caller's headers may place this one themselves.
CONNECTION_CLOSE = ("Connection", "close")

Header = tuple[str, str]


def response(
    status: int,
    body: bytes,
    *,
    content_type: str = PLAIN_TEXT,
    headers: Sequence[Header] = (),
    head_only: bool = False,
) -> bytes:
    """The bytes of a whole HTTP/1.1 answer: the status line with its standard reason,
    ``Content-Type``, ``Content-Length``, then ``headers`` in order (``Connection: close``
    is added last unless they hold it), then ``body`` unless ``head_only`` (the answer to a
    ``HEAD``, whose ``Content-Length`` still tells the body's size).

    Raises :class:`h11.LocalProtocolError` for headers h11 refuses (a newline in a value).
    """
    fields = [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers]
    if status == 204:  # no body, and RFC 9110 forbids saying its length
        fields = [field for field in fields if field[0].lower() != "content-length"]
    if not any(name.lower() == "connection" for name, _ in headers):
        fields.append(CONNECTION_CLOSE)
    conn = h11.Connection(h11.SERVER)
    head = conn.send(
        h11.Response(status_code=status, reason=HTTPStatus(status).phrase, headers=fields)
    )
    assert head is not None  # only ConnectionClosed sends nothing
    if head_only:
        return head
    rest = [conn.send(h11.Data(data=body)) if body else b"", conn.send(h11.EndOfMessage())]
    return head + b"".join(part for part in rest if part)


__all__ = ["CONNECTION_CLOSE", "PLAIN_TEXT", "Header", "response"]
