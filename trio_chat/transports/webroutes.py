"""Answering a plugin's HTTP route on the web port (the registry and the rules are
:mod:`trio_chat.routes`).

Runs in the connection's own task, like the page's answers, so a slow or broken handler
holds up nobody else. Every step has a bound: the body is read within
:data:`BODY_TIMEOUT` and its route's size limit (413 past it, before reading a byte when
``Content-Length`` says so), the handler runs within the plugin timeout (504), and the
answer is written within :data:`SEND_TIMEOUT`. Whatever the handler raises is a 500 with a
plain body for the caller and a log line naming the plugin.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

import h11
import trio

from ..routes import (
    HTTPError,
    Request,
    Response,
    RouteSpec,
    as_response,
    header_map,
    request_parts,
    secret_proven,
)
from .http import CONNECTION_CLOSE, Header, response

log = logging.getLogger("trio_chat.routes")

#: Seconds a client has to send the body once its head arrived.
BODY_TIMEOUT = 10.0
#: Seconds the answer may take to write.
SEND_TIMEOUT = 10.0
#: What is read from the socket at once.
CHUNK = 64 * 1024

#: The headers of every route's answer after its own (no caching, no sniffing).
ROUTE_HEADERS: tuple[Header, ...] = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    CONNECTION_CLOSE,
)


def _plain(status: int, text: str, headers: tuple[Header, ...] = ()) -> Response:
    return Response(status, text + "\n", headers=headers)


async def serve_route(
    stream: trio.abc.Stream,
    head: bytes,
    routes: Mapping[str, RouteSpec],
    client: str,
    time_limit: float,
) -> None:
    """Answer the request that starts with ``head`` (its head and whatever of the body came
    with it) from ``routes``, the routes of its path by method; ``time_limit`` bounds the
    handler."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    try:
        request = conn.next_event()
    except h11.RemoteProtocolError:
        request = None
    if not isinstance(request, h11.Request):
        await _send(stream, _plain(400, "bad request"), head_only=False)
        return
    method = request.method.decode("ascii", "replace")
    head_only = method == "HEAD"
    spec = routes.get("GET" if head_only else method)
    if spec is None:
        allowed = sorted({*routes, *(["HEAD"] if "GET" in routes else [])})
        answer = _plain(405, "method not allowed", (("Allow", ", ".join(allowed)),))
        await _send(stream, answer, head_only)
        return
    answer = await _answer(stream, conn, request, spec, client, time_limit)
    await _send(stream, answer, head_only)


async def _answer(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    head: h11.Request,
    spec: RouteSpec,
    client: str,
    time_limit: float,
) -> Response:
    headers = header_map(head.headers)
    with trio.move_on_after(BODY_TIMEOUT) as reading:
        body = await _read_body(stream, conn, spec.max_body, headers.get("content-length"))
    if reading.cancelled_caught:
        return _plain(408, "the body took too long to arrive")
    if isinstance(body, Response):
        return body
    path, query = request_parts(head.target)
    if not secret_proven(spec.secret, headers, body):
        log.info("route %s %s: wrong or missing secret from %s", spec.method, path, client)
        return _plain(403, "wrong or missing secret")
    request = Request(spec.method, path, query, headers, body, client)
    return await run_handler(spec, request, time_limit)


async def _read_body(
    stream: trio.abc.Stream, conn: h11.Connection, limit: int, length: str | None
) -> bytes | Response:
    """The request's body (at most ``limit`` bytes), or the refusal to answer with.

    ``length`` is the ``Content-Length`` header (h11 checked it is a number): a body
    announced over the limit is refused before a byte of it is read."""
    too_large = _plain(413, f"the body is over this route's limit of {limit} bytes")
    # h11 checked the header (a number; repeated, the same number: "5, 5" once joined).
    if length is not None and int(length.split(",")[0]) > limit:
        return too_large
    body = bytearray()
    continued = False
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return _plain(400, "bad request body")
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > limit:  # a chunked body says its size only as it comes
                return too_large
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        elif event is h11.NEED_DATA:
            if conn.they_are_waiting_for_100_continue and not continued:
                # curl waits a second for this before sending a body over 1 KiB.
                continued = True
                await stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            data = await stream.receive_some(CHUNK)
            conn.receive_data(bytes(data))  # b"": the client closed; h11 sees it cut short
        else:  # the client closed before the body ended
            return _plain(400, "bad request body")


async def run_handler(spec: RouteSpec, request: Request, time_limit: float) -> Response:
    """The handler's answer: awaited within ``time_limit`` if async; an :class:`HTTPError` it
    raises answered as asked; anything else it raises, or returns wrong, a plain 500."""
    where = f"plugin {spec.plugin!r}: route {spec.method} {spec.path}"
    try:
        result: Any = spec.handler(request)
        if inspect.isawaitable(result):
            with trio.move_on_after(time_limit) as scope:
                result = await result
            if scope.cancelled_caught:
                log.error("%s took longer than %ss", where, time_limit)
                return _plain(504, "the handler took too long")
    except HTTPError as exc:
        status = exc.status if 400 <= exc.status <= 599 else 500
        return _plain(status, " ".join(exc.text.split())[:1000])
    except Exception:
        log.exception("%s raised", where)
        return _plain(500, "internal error")
    try:
        return as_response(result)
    except TypeError as exc:
        log.error("%s returned %s", where, exc)
        return _plain(500, "internal error")


def answer_bytes(answer: Response, head_only: bool) -> bytes:
    """The whole HTTP answer; a handler's headers h11 refuses (a newline in a value) make
    it a 500."""
    try:
        return response(
            answer.status,
            answer.body_bytes,
            content_type=answer.content_type,
            headers=[*answer.headers, *ROUTE_HEADERS],
            head_only=head_only,
        )
    except (h11.LocalProtocolError, ValueError) as exc:
        log.error("a route's answer could not be written: %s", exc)
        return response(500, b"internal error\n", headers=ROUTE_HEADERS, head_only=head_only)


async def _send(stream: trio.abc.Stream, answer: Response, head_only: bool) -> None:
    with trio.move_on_after(SEND_TIMEOUT):
        await stream.send_all(answer_bytes(answer, head_only))
