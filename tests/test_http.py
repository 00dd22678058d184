"""The HTTP answers (trio_chat.transports.http), without sockets: the bytes h11 writes, and
what a client reads from them."""

from __future__ import annotations

import h11
import pytest

from trio_chat.metrics import CONTENT_TYPE
from trio_chat.transports.http import CONNECTION_CLOSE, PLAIN_TEXT, response
from trio_chat.transports.scrape import scrape_response
from trio_chat.transports.tcp import http_misdirected
from trio_chat.transports.websocket import (
    SECURITY_HEADERS,
    http_error,
    http_response,
    parse_request,
    refused_response,
)


def read_as_client(data: bytes, method: bytes = b"GET") -> tuple[h11.Response, bytes]:
    """What an HTTP client makes of ``data``, the answer to a ``method`` request."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    client.receive_data(data)
    client.receive_data(b"")  # the server closes after its answer
    head = client.next_event()
    assert isinstance(head, h11.Response)
    body = b""
    while True:
        event = client.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            raise AssertionError(event)
    assert isinstance(client.next_event(), h11.ConnectionClosed)
    return head, body


def test_exact_bytes_of_a_plain_answer() -> None:
    assert response(404, b"not found\n") == (
        b"HTTP/1.1 404 Not Found\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 10\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"not found\n"
    )


def test_a_client_reads_status_headers_and_body() -> None:
    data = response(
        503,
        b"server full\n",
        headers=[("Cache-Control", "no-cache"), ("X-Frame-Options", "DENY")],
    )
    head, body = read_as_client(data)
    assert (head.status_code, head.reason) == (503, b"Service Unavailable")
    assert head.headers == [
        (b"content-type", PLAIN_TEXT.encode()),
        (b"content-length", b"12"),
        (b"cache-control", b"no-cache"),
        (b"x-frame-options", b"DENY"),
        (b"connection", b"close"),
    ]
    assert body == b"server full\n"


def test_headers_keep_their_order_and_case_and_connection_is_not_repeated() -> None:
    data = response(
        200, b"x", headers=[("Cache-Control", "no-cache"), CONNECTION_CLOSE, ("A", "b")]
    )
    head = data.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[1:] == [
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Length: 1",
        b"Cache-Control: no-cache",
        b"Connection: close",
        b"A: b",
    ]


def test_head_only_is_the_head_with_the_body_length() -> None:
    full = response(200, b"<html></html>", content_type="text/html")
    head = response(200, b"<html></html>", content_type="text/html", head_only=True)
    assert full == head + b"<html></html>" and head.endswith(b"\r\n\r\n")
    assert b"Content-Length: 13\r\n" in head
    answer, body = read_as_client(head, method=b"HEAD")
    assert answer.status_code == 200 and body == b""


def test_an_empty_body() -> None:
    assert response(200, b"").endswith(b"Content-Length: 0\r\nConnection: close\r\n\r\n")


def test_h11_refuses_a_header_that_would_split_the_answer() -> None:
    with pytest.raises(h11.LocalProtocolError):
        response(200, b"", headers=[("X-Evil", "a\r\nSet-Cookie: b")])


# ------------------------------------------------------------------ the three callers


def test_the_page_and_its_errors_carry_the_security_headers() -> None:
    request = parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    answers = [
        http_response(request),
        http_response(None),
        http_error(400, b"bad WebSocket handshake\n"),
        refused_response("too many connections"),
    ]
    for data in answers:
        head, _ = read_as_client(data)
        headers = dict(head.headers)
        assert headers[b"cache-control"] == b"no-cache"
        assert headers[b"connection"] == b"close"
        for name, value in SECURITY_HEADERS:
            assert headers[name.lower().encode()] == value.encode()
    assert [read_as_client(d)[0].status_code for d in answers] == [200, 400, 400, 503]
    _, page = read_as_client(answers[0])
    assert page.lstrip().lower().startswith(b"<!doctype html>")


@pytest.mark.parametrize(
    ("request_head", "status", "has_body"),
    [
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404, True),
        (b"HEAD /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404, False),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, True),
    ],
)
def test_the_page_ports_errors_to_head_and_other_methods(
    request_head: bytes, status: int, has_body: bool
) -> None:
    data = http_response(parse_request(request_head))
    method = b"HEAD" if request_head.startswith(b"HEAD") else b"GET"
    head, body = read_as_client(data, method=method)
    assert head.status_code == status
    assert bool(body) == has_body and data.endswith(b"\r\n\r\n") != has_body
    if status == 405:
        assert dict(head.headers)[b"allow"] == b"GET, HEAD"


def test_head_of_the_page_has_no_body() -> None:
    head = http_response(parse_request(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"))
    page = http_response(parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert head.endswith(b"\r\n\r\n") and page.startswith(head) and len(page) > len(head)


def test_the_chat_port_answers_http_clients_with_where_to_go() -> None:
    head, body = read_as_client(http_misdirected(6001))
    assert (head.status_code, head.reason) == (400, b"Bad Request")
    assert body.endswith(b"For WebSocket and the browser page use port 6001.\n")


@pytest.mark.parametrize(
    ("request_head", "status", "has_body"),
    [
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200, True),
        (b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", 200, True),
        (b"HEAD /metrics HTTP/1.1\r\n\r\n", 200, False),
        (b"GET / HTTP/1.1\r\n\r\n", 404, True),
        (b"HEAD / HTTP/1.1\r\n\r\n", 404, False),
        (b"POST /metrics HTTP/1.1\r\n\r\n", 405, True),
        (b"nonsense\r\n\r\n", 400, True),
        (b"", 400, True),  # nothing came in time
    ],
)
def test_scrape_answers(request_head: bytes, status: int, has_body: bool) -> None:
    data = scrape_response(lambda: "x_total 1.0\n", request_head)
    method = b"HEAD" if request_head.startswith(b"HEAD") else b"GET"
    head, body = read_as_client(data, method=method)
    assert head.status_code == status
    assert dict(head.headers)[b"connection"] == b"close"
    assert bool(body) == has_body
    if status == 200:
        assert dict(head.headers)[b"content-type"] == CONTENT_TYPE.encode()
        assert data.endswith(b"\r\n\r\nx_total 1.0\n") == has_body


def test_the_allow_list_is_the_pages_files() -> None:
    """Every stylesheet and module in trio_chat/web is served (and nothing else is), and
    every module the page imports is one of them."""
    import re
    from importlib import resources

    from trio_chat.transports.websocket import WEB_FILES

    package = resources.files("trio_chat.web")
    shipped = {p.name for p in package.iterdir() if p.name.endswith((".html", ".css", ".js"))}
    assert {name for name, _ in WEB_FILES.values()} == shipped
    for name in shipped:
        text = package.joinpath(name).read_text()
        for imported in re.findall(r'from "\./([^"]+)"', text):
            assert f"/{imported}".encode() in WEB_FILES, (name, imported)
    for target, (name, content_type) in WEB_FILES.items():
        head, body = read_as_client(
            http_response(parse_request(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"))
        )
        assert (
            head.status_code == 200 and dict(head.headers)[b"content-type"] == content_type.encode()
        )
        assert body == package.joinpath(name).read_bytes()
