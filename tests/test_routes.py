"""Plugin HTTP routes on the web port: the registry and the secret check without sockets,
then real requests (raw bytes, and Python's own HTTP client) to a running server."""

from __future__ import annotations

import json
import logging
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
import trio.lowlevel
import trustme
from doc_samples import load_sample

import trio_chat
from trio_chat.routes import (
    HTTPError,
    Request,
    Response,
    RouteRegistry,
    as_response,
    secret_proven,
    signature,
)
from trio_chat.testing import TestServer, local_config, open_client, open_test_server
from trio_chat.transports import webroutes

SECRET = "s3cret-for-tests"


def handler(request: Request) -> str:
    return "ok"


# ------------------------------------------------------------------ the registry, no server


@pytest.mark.parametrize(
    ("method", "path", "secret", "max_body", "complaint"),
    [
        ("POST", "hooks/x", SECRET, 10, "a path is"),
        ("POST", "/hooks/../x", SECRET, 10, "a path is"),
        ("POST", "/hooks/x?y=1", SECRET, 10, "a path is"),
        ("POST", "/hooks//x", SECRET, 10, "a path is"),
        ("POST", "/index.html", SECRET, 10, "the browser page's files"),
        ("TRACE", "/hooks/x", SECRET, 10, "the method"),
        ("POST", "/hooks/x", "", 10, "the secret is empty"),
        ("POST", "/hooks/x", SECRET, 2 * 1024 * 1024, "max_body"),
    ],
)
def test_the_registry_refuses_bad_routes(
    method: str, path: str, secret: str, max_body: int, complaint: str
) -> None:
    routes = RouteRegistry(lambda: "mine", reserved=["/", "/index.html"])
    with pytest.raises(ValueError, match=complaint) as raised:
        routes.register(method, path, handler, secret=secret, max_body=max_body)
    assert "plugin 'mine'" in str(raised.value)
    assert len(routes) == 0


def test_a_path_and_method_belong_to_one_plugin() -> None:
    owner = ["first"]
    routes = RouteRegistry(lambda: owner[0])
    routes.register("post", "/hooks/x", handler, secret=SECRET)
    routes.register("GET", "/hooks/x", handler, secret=None)
    owner[0] = "second"
    with pytest.raises(ValueError, match="already registered by 'first'"):
        routes.register("POST", "/hooks/x", handler, secret=SECRET)
    found = routes.find("/hooks/x")
    assert found is not None and sorted(found) == ["GET", "POST"]
    routes.remove_plugin("first")
    assert routes.find("/hooks/x") is None


def test_the_secret_is_proven_by_signature_or_header() -> None:
    body = b'{"text": "hi"}'
    # GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
    assert signature("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
    assert secret_proven(SECRET, {"x-hub-signature-256": signature(SECRET, body)}, body)
    assert not secret_proven(SECRET, {"x-hub-signature-256": signature("other", body)}, body)
    assert not secret_proven(SECRET, {"x-hub-signature-256": signature(SECRET, body)}, b"{}")
    assert secret_proven(SECRET, {"x-trio-chat-secret": SECRET}, body)
    assert not secret_proven(SECRET, {"x-trio-chat-secret": SECRET + "x"}, body)
    assert not secret_proven(SECRET, {}, body)
    assert secret_proven(None, {}, body)


def test_what_a_handler_returns_becomes_an_answer() -> None:
    assert as_response("hi") == Response(200, "hi\n")
    assert as_response(None).status == 204
    answer = as_response({"a": 1})
    assert (answer.status, answer.body, answer.content_type) == (
        200,
        b'{"a":1}\n',
        "application/json",
    )
    assert as_response(Response(201, b"made")).status == 201
    for garbage in (42, b"bytes", object(), Response(99), Response(200, 5)):  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            as_response(garbage)


def test_a_request_body_that_is_not_text_or_json_is_a_400() -> None:
    request = Request("POST", "/x", {}, {}, b"\xff", "127.0.0.1:1")
    with pytest.raises(HTTPError) as raised:
        request.json()
    assert raised.value.status == 400
    with pytest.raises(HTTPError):
        _ = request.text


# ------------------------------------------------------------------------ a running server


class HookPlugin:
    """Routes for the tests: an echo (secret), a public GET, and ones that misbehave."""

    def __init__(self) -> None:
        self.calls: list[Request] = []
        self.hang_started = trio.Event()

    @trio_chat.hookimpl
    def register_routes(self, server: Any, register: Any) -> None:
        register("POST", "/hooks/echo", self.echo, secret=SECRET, max_body=1000)
        register("GET", "/status", self.status, secret=None)
        register("POST", "/hooks/raise", self.explode, secret=None)
        register("POST", "/hooks/hang", self.hang, secret=None)
        register("POST", "/hooks/garbage", lambda request: object(), secret=None)
        register("POST", "/hooks/refuse", self.refuse, secret=None)
        register("POST", "/hooks/post", self.post, secret=None)
        register("DELETE", "/hooks/nothing", lambda request: None, secret=None)
        self.server = server

    def echo(self, request: Request) -> dict[str, Any]:
        self.calls.append(request)
        return {"text": request.text, "query": dict(request.query), "client": request.client}

    def status(self, request: Request) -> str:
        return "fine"

    def explode(self, request: Request) -> str:
        raise RuntimeError("secret internals")

    async def hang(self, request: Request) -> str:
        self.hang_started.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    def refuse(self, request: Request) -> str:
        raise HTTPError(422, "no text\nfield")

    async def post(self, request: Request) -> Response:
        await trio.lowlevel.checkpoint()
        return Response(202, "queued", headers=[("X-Queued", "1")])


async def exchange(chat: TestServer, data: bytes, *, shut: bool = False) -> bytes:
    """Send raw bytes to the web port; everything the server answers until it closes."""
    stream = await trio.open_tcp_stream(*chat.address("ws"))
    async with stream:
        with trio.fail_after(5):
            await stream.send_all(data)
            if shut:
                await stream.send_eof()
            answer = b""
            while chunk := await stream.receive_some(65536):
                answer += chunk
    return answer


def parsed(answer: bytes, method: bytes = b"POST") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of an answer, as an HTTP client reads it."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    if answer.startswith(b"HTTP/1.1 100 "):
        answer = answer.split(b"\r\n\r\n", 1)[1]
    client.receive_data(answer)
    client.receive_data(b"")
    head = client.next_event()
    assert isinstance(head, h11.Response), head
    body = b""
    while isinstance(event := client.next_event(), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage)
    headers = {k.decode(): v.decode() for k, v in head.headers}
    return head.status_code, headers, body


def post(path: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_a_post_with_the_secret_reaches_the_handler() -> None:
    plugin = HookPlugin()
    async with open_test_server(plugin) as chat:
        body = "héllo".encode()
        answer = await exchange(
            chat, post("/hooks/echo?room=%23dev&x=1&x=2", body, f"X-Trio-Chat-Secret: {SECRET}")
        )
        status, headers, reply = parsed(answer)
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert headers["cache-control"] == "no-store"
        assert json.loads(reply) == {
            "text": "héllo",
            "query": {"room": "#dev", "x": "1"},
            "client": plugin.calls[0].client,
        }
        assert plugin.calls[0].client.startswith("127.0.0.1:")
        assert plugin.calls[0].headers["x-trio-chat-secret"] == SECRET


async def test_a_github_signature_proves_the_secret() -> None:
    plugin = HookPlugin()
    async with open_test_server(plugin) as chat:
        body = b'{"zen": "Keep it logically awesome."}'
        signed = f"X-Hub-Signature-256: {signature(SECRET, body)}"
        status, _, reply = parsed(await exchange(chat, post("/hooks/echo", body, signed)))
        assert status == 200 and json.loads(reply)["text"] == body.decode()


@pytest.mark.parametrize(
    "proof",
    [
        (),
        ("X-Trio-Chat-Secret: wrong",),
        (f"X-Hub-Signature-256: {signature('wrong', b'hi')}",),
        # The right secret as a signature header is not a signature.
        (f"X-Hub-Signature-256: {SECRET}", f"X-Trio-Chat-Secret: {SECRET}"),
    ],
)
async def test_without_the_secret_a_post_is_forbidden(proof: tuple[str, ...]) -> None:
    plugin = HookPlugin()
    async with open_test_server(plugin) as chat:
        answer = await exchange(chat, post("/hooks/echo", b"hi", *proof))
        assert parsed(answer)[0::2] == (403, b"wrong or missing secret\n")
        assert plugin.calls == []


async def test_a_body_announced_over_the_limit_is_refused_before_it_is_sent() -> None:
    plugin = HookPlugin()
    async with open_test_server(plugin) as chat:
        head = post("/hooks/echo", b"", f"X-Trio-Chat-Secret: {SECRET}")
        head = head.replace(b"Content-Length: 0", b"Content-Length: 1001")
        # The body never comes: the answer does not wait for it.
        status, _, reply = parsed(await exchange(chat, head))
        assert (status, reply) == (413, b"the body is over this route's limit of 1000 bytes\n")
        assert plugin.calls == []


@pytest.mark.parametrize(
    ("lengths", "status"),
    [(("2", "2"), 200), (("1001", "1001"), 413), (("2", "3"), 400), (("x",), 400)],
)
async def test_odd_content_lengths_are_answered(lengths: tuple[str, ...], status: int) -> None:
    async with open_test_server(HookPlugin()) as chat:
        head = "".join(f"Content-Length: {n}\r\n" for n in lengths)
        request = (
            f"POST /hooks/echo HTTP/1.1\r\nHost: x\r\n{head}X-Trio-Chat-Secret: {SECRET}\r\n\r\nhi"
        )
        assert parsed(await exchange(chat, request.encode()))[0] == status


async def test_a_chunked_body_over_the_limit_is_refused() -> None:
    plugin = HookPlugin()
    async with open_test_server(plugin) as chat:
        chunk = b"x" * 600
        head = (
            b"POST /hooks/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            + f"X-Trio-Chat-Secret: {SECRET}\r\n\r\n".encode()
        )
        piece = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        assert parsed(await exchange(chat, head + piece + piece + b"0\r\n\r\n"))[0] == 413
        # Under the limit, chunked works.
        status, _, reply = parsed(await exchange(chat, head + piece + b"0\r\n\r\n"))
        assert status == 200 and json.loads(reply)["text"] == chunk.decode()
        assert len(plugin.calls) == 1


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    async with open_test_server(HookPlugin()) as chat:
        stream = await trio.open_tcp_stream(*chat.address("ws"))
        async with stream:
            head = post("/hooks/echo", b"", f"X-Trio-Chat-Secret: {SECRET}", "Expect: 100-continue")
            with trio.fail_after(5):
                await stream.send_all(head.replace(b"Content-Length: 0", b"Content-Length: 2"))
                assert await stream.receive_some(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
                await stream.send_all(b"hi")
                answer = b""
                while chunk := await stream.receive_some(65536):
                    answer += chunk
        status, _, reply = parsed(answer)
        assert status == 200 and json.loads(reply)["text"] == "hi"


async def test_a_body_that_never_comes_is_a_408(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webroutes, "BODY_TIMEOUT", 0.2)
    async with open_test_server(HookPlugin()) as chat:
        head = post("/hooks/echo", b"", f"X-Trio-Chat-Secret: {SECRET}")
        answer = await exchange(chat, head.replace(b"Content-Length: 0", b"Content-Length: 5"))
        assert parsed(answer)[0] == 408


async def test_a_body_cut_short_is_a_400() -> None:
    async with open_test_server(HookPlugin()) as chat:
        head = post("/hooks/echo", b"abc", f"X-Trio-Chat-Secret: {SECRET}")
        answer = await exchange(
            chat, head.replace(b"Content-Length: 3", b"Content-Length: 5"), shut=True
        )
        assert parsed(answer)[0::2] == (400, b"bad request body\n")


async def test_a_handler_that_raises_is_a_plain_500_and_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_test_server(HookPlugin()) as chat:
        with caplog.at_level(logging.ERROR, "trio_chat.routes"):
            answer = await exchange(chat, post("/hooks/raise", b""))
        assert parsed(answer)[0::2] == (500, b"internal error\n")
        assert b"secret internals" not in answer and b"Traceback" not in answer
        (record,) = [r for r in caplog.records if r.name == "trio_chat.routes"]
        assert "route POST /hooks/raise raised" in record.getMessage()
        assert "HookPlugin" in record.getMessage()
        assert record.exc_info is not None


async def test_garbage_from_a_handler_is_a_500_and_http_error_is_answered_as_asked() -> None:
    async with open_test_server(HookPlugin()) as chat:
        assert parsed(await exchange(chat, post("/hooks/garbage", b"")))[0::2] == (
            500,
            b"internal error\n",
        )
        assert parsed(await exchange(chat, post("/hooks/refuse", b"")))[0::2] == (
            422,
            b"no text field\n",
        )
        status, headers, body = parsed(await exchange(chat, post("/hooks/post", b"")))
        assert (status, headers["x-queued"], body) == (202, "1", b"queued")
        answer = await exchange(chat, b"DELETE /hooks/nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert parsed(answer)[0::2] == (204, b"")
        assert b"content-length" not in answer.lower()


async def test_a_hanging_handler_is_cut_off_and_delays_no_one_else() -> None:
    plugin = HookPlugin()
    config = local_config(plugin_timeout=1.0)
    async with open_test_server(plugin, config=config) as chat:
        async with (
            open_client(chat, "alice") as alice,
            open_client(chat, "bob", websocket=True) as bob,
            trio.open_nursery() as nursery,
        ):
            answers: list[bytes] = []

            async def hang() -> None:
                answers.append(await exchange(chat, post("/hooks/hang", b"")))

            nursery.start_soon(hang)
            await plugin.hang_started.wait()
            # While the handler hangs, chat and other requests go on at once.
            started = trio.current_time()
            await alice.say("still here")
            await bob.expect("message", lambda e: e.text == "still here")
            status = parsed(
                await exchange(chat, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n"), b"GET"
            )
            assert status[0::2] == (200, b"fine\n")
            assert trio.current_time() - started < 0.5
            assert not answers
        assert parsed(answers[0])[0::2] == (504, b"the handler took too long\n")


async def test_other_methods_get_405_and_head_gets_the_get_head() -> None:
    async with open_test_server(HookPlugin()) as chat:
        status, headers, _ = parsed(
            await exchange(chat, b"PUT /status HTTP/1.1\r\nHost: x\r\n\r\n")
        )
        assert (status, headers["allow"]) == (405, "GET, HEAD")
        answer = await exchange(chat, b"HEAD /status HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = parsed(answer, b"HEAD")
        assert (status, headers["content-length"], body) == (200, "5", b"")
        assert answer.endswith(b"\r\n\r\n")


async def test_the_page_and_the_websocket_still_work_beside_routes() -> None:
    async with open_test_server(HookPlugin()) as chat:
        answer = await exchange(chat, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, page = parsed(answer, b"GET")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert page.startswith(b"<!doctype html>")
        assert (
            parsed(await exchange(chat, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"), b"GET")[0] == 404
        )
        async with open_client(chat, "webby", websocket=True) as webby:
            await webby.say("hi")
            assert (await webby.expect("message")).text == "hi"


async def test_pythons_http_client_posts_json_and_reads_json() -> None:
    async with open_test_server(HookPlugin()) as chat:
        host, port = chat.address("ws")
        url = f"http://{host}:{port}/hooks/echo"
        body = json.dumps({"text": "from urllib"}).encode()

        def call(secret: str) -> tuple[int, bytes]:
            request = urllib.request.Request(
                url, data=body, headers={"X-Hub-Signature-256": signature(secret, body)}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return answer.status, answer.read()
            except urllib.error.HTTPError as error:
                return error.code, error.read()

        status, reply = await trio.to_thread.run_sync(call, SECRET)
        assert status == 200 and json.loads(json.loads(reply)["text"]) == {"text": "from urllib"}
        assert await trio.to_thread.run_sync(call, "wrong") == (403, b"wrong or missing secret\n")


class BadRoutes:
    @trio_chat.hookimpl
    def register_routes(self, register: Any) -> None:
        register("POST", "/", handler, secret=None)


async def test_a_plugin_with_a_bad_route_is_logged_and_the_others_still_serve(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, "trio_chat.plugins"):
        async with open_test_server(BadRoutes(), HookPlugin()) as chat:
            answer = await exchange(chat, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            assert parsed(answer, b"GET")[0] == 200
    (record,) = [r for r in caplog.records if "register_routes raised" in r.getMessage()]
    assert "BadRoutes" in record.getMessage()
    assert record.exc_info is not None and "browser page's files" in str(record.exc_info[1])


async def test_the_room_count_example_of_the_docs(tmp_path: Path) -> None:
    roomcount = load_sample("roomcount.py", tmp_path)
    async with open_test_server(roomcount) as chat:
        async with open_client(chat, "alice"), open_client(chat, "bob"):
            request = b"GET /api/rooms HTTP/1.1\r\nHost: x\r\nX-Trio-Chat-Secret: change me\r\n\r\n"
            status, headers, body = parsed(await exchange(chat, request), b"GET")
            assert (status, headers["content-type"], body) == (
                200,
                "application/json",
                b'{"#lobby":2}\n',
            )
            wrong = request.replace(b"change me", b"guess")
            assert parsed(await exchange(chat, wrong), b"GET")[0] == 403


async def test_routes_are_served_over_https_too(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    config = local_config(tls_cert=str(cert_path), tls_key=str(key_path))
    async with open_test_server(HookPlugin(), config=config) as chat:
        host, port = chat.address("wss")

        def call() -> tuple[int, bytes]:
            request = urllib.request.Request(
                f"https://{host}:{port}/hooks/echo",
                data=b"over tls",
                headers={"X-Trio-Chat-Secret": SECRET},
            )
            with urllib.request.urlopen(request, timeout=5, context=context) as answer:
                return answer.status, answer.read()

        status, reply = await trio.to_thread.run_sync(call)
        assert status == 200 and json.loads(reply)["text"] == "over tls"


async def test_behind_a_trusted_proxy_the_request_names_the_real_client() -> None:
    plugin = HookPlugin()
    async with open_test_server(plugin, config=local_config(trusted_proxies=["127.0.0.1"])) as chat:
        forwarded = "X-Forwarded-For: 203.0.113.9"
        answer = await exchange(
            chat, post("/hooks/echo", b"hi", f"X-Trio-Chat-Secret: {SECRET}", forwarded)
        )
        assert parsed(answer)[0] == 200
        assert plugin.calls[0].client == "203.0.113.9:0"
