"""The browser page (``trio_chat/web/index.html``) end to end, in a real headless Chromium.

An in-process server serves the page and the WebSocket on one port; selenium drives Chromium
in worker threads while trio keeps serving; a raw JSON-lines TCP client is the other user.
The browser tests skip when Chromium, ChromeDriver or selenium are missing (see
``web_helpers.REQUIREMENTS``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from web_helpers import TIMEOUT, JsonLineClient, Page, chromium_driver, split_address

from trio_chat.config import ServerConfig
from trio_chat.server import ChatServer
from trio_chat.transports.websocket import WEB_FILES

SCREENSHOT = os.environ.get("TRIO_CHAT_SCREENSHOT", "/tmp/trio-chat-web.png")

# JS snippets, each returning a value the test waits for or checks.
CHAT_VISIBLE = (
    "return !document.getElementById('chat-view').hidden"
    " && document.getElementById('login-view').hidden"
)
LOGIN_ERROR = (
    "const e = document.getElementById('login-error'); return e.hidden ? '' : e.textContent"
)
MEMBERS = "[...document.querySelectorAll('#members li')].map(li => li.dataset.nick)"
ROOMS = "[...document.querySelectorAll('#rooms .room')].map(b => b.dataset.room)"
CURRENT_ROOM = "return document.getElementById('room-name').textContent"


@dataclass
class Chat:
    server: ChatServer
    tcp: tuple[str, int]
    ws: tuple[str, int]

    @property
    def url(self) -> str:
        host, port = self.ws
        return f"http://{host}:{port}/"

    async def tcp_client(self, nick: str | None = None) -> JsonLineClient:
        client = await JsonLineClient.connect(*self.tcp)
        if nick is not None:
            await client.login(nick)
        return client


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """One headless Chromium for the whole module (each test loads a fresh page)."""
    with chromium_driver() as driver:
        yield driver


@pytest.fixture
async def chat(nursery: trio.Nursery) -> AsyncIterator[Chat]:
    server = ChatServer(
        ServerConfig(
            port=0,
            ws_port=0,
            entry_points=False,
            db=":memory:",
            db_sync_full=False,
            flood_rate=1000.0,  # the burst test sends 100 lines at once
            flood_burst=1000,
        )
    )
    with trio.fail_after(TIMEOUT):
        addresses = await nursery.start(server.serve)
    tcp = next(a for a in addresses if a.startswith("tcp://"))
    ws = next(a for a in addresses if a.startswith("ws://"))
    yield Chat(server, split_address(tcp), split_address(ws))


@pytest.fixture
async def page(driver: Any, chat: Chat) -> AsyncIterator[Page]:
    page = Page(driver)
    await page.open(chat.url)
    yield page
    # Leave the page so its WebSocket closes before the server is cancelled.
    await page.open("about:blank")


async def log_in(page: Page, nick: str) -> None:
    await page.type("#nick", nick)
    await page.wait_js(CHAT_VISIBLE, what=f"the chat view after logging in as {nick}")


async def http_get(chat: Chat, target: str) -> tuple[bytes, bytes]:
    """The head and body of the WebSocket port's answer to ``GET target``."""
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(*chat.ws)
        async with stream:
            await stream.send_all(
                f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )
            response = b""
            while data := await stream.receive_some(65536):
                response += data
    head, _, body = response.partition(b"\r\n\r\n")
    return head, body


async def test_page_is_served_on_the_websocket_port(chat: Chat) -> None:
    """No browser needed: GET / on the WebSocket port answers with the page, which loads
    its stylesheet and modules from the same server and nothing from elsewhere."""
    head, body = await http_get(chat, "/")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"text/html" in head
    html = body.decode()
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert '<script type="module" src="app.js">' in html
    assert '<link rel="stylesheet" href="style.css">' in html
    for name, (_, content_type) in WEB_FILES.items():
        head, body = await http_get(chat, name.decode())
        assert head.startswith(b"HTTP/1.1 200"), name
        assert f"Content-Type: {content_type}".encode() in head, name
        text = body.decode()
        # Self-contained: nothing loaded from elsewhere, no inline script for the CSP.
        for external in ("http://", "https://", "@import", "<script>", "innerHTML"):
            assert external not in text, (name, external)
    app = (await http_get(chat, "/app.js"))[1].decode()
    assert 'from "./chat.js"' in app and 'from "./frames.js"' in app


@pytest.mark.parametrize(
    "target",
    [
        "/../pyproject.toml",
        "/%2e%2e/%2e%2e/pyproject.toml",
        "/..%2fapp.js",
        "/__init__.py",
        "/web/app.js",
        "/app.js/",
        "/APP.JS",
        "/nosuch.js",
        "//app.js",
    ],
)
async def test_only_the_pages_files_are_served(chat: Chat, target: str) -> None:
    head, body = await http_get(chat, target)
    assert head.startswith(b"HTTP/1.1 404"), (target, head)
    assert body == b"not found\n"


async def test_taken_and_bad_nick_show_inline_errors_then_retry_works(
    chat: Chat, page: Page
) -> None:
    tcp = await chat.tcp_client("tcpuser")
    try:
        await page.type("#nick", "TCPuser")  # nicks compare case-insensitively
        error = await page.wait_js(LOGIN_ERROR, what="the nick_taken error")
        assert "taken" in error
        assert await page.js("return document.getElementById('login-view').hidden") is False

        await page.type("#nick", "9lives")
        await page.wait_js(
            "const e = document.getElementById('login-error');"
            " return !e.hidden && e.textContent.includes('digit')",
            what="the bad_nick error",
        )

        await log_in(page, "webby")  # same socket, third try
        assert await page.js("return document.getElementById('login-error').hidden") is True
        assert await page.js(CURRENT_ROOM) == "#lobby"
        await page.wait_js(
            f"return {MEMBERS}.join() === 'tcpuser,webby'", what="both users in the member list"
        )
        await tcp.expect("join", nick="webby", room="#lobby")
    finally:
        await tcp.aclose()


async def test_chat_between_browser_and_tcp_client(chat: Chat, page: Page) -> None:
    await log_in(page, "webby")
    tcp = await chat.tcp_client("tcpuser")
    try:
        # The TCP user's join shows as a notice and refreshes the member list.
        await page.wait_log("tcpuser joined #lobby", "#log li.notice")
        await page.wait_js(f"return {MEMBERS}.includes('tcpuser')", what="tcpuser in members")

        await tcp.send({"type": "say", "text": "hello from tcp"})
        await page.wait_log("hello from tcp", "#log li.say")
        line = await page.js(
            "const li = [...document.querySelectorAll('#log li.say')].pop();"
            " return [li.querySelector('time').textContent, li.querySelector('.nick').textContent]"
        )
        assert line[1] == "tcpuser"
        assert len(line[0]) == 5 and line[0][2] == ":"  # HH:MM

        await page.type("#line", "hi from the browser")
        message = await tcp.expect("message", nick="webby")
        assert message["text"] == "hi from the browser"
        assert message["room"] == "#lobby"
        assert await page.js("return document.getElementById('line').value") == ""

        # HTML is text, never markup.
        evil = '<img src=x onerror="window.pwned=1"><b id="bold">bold</b>'
        await tcp.send({"type": "say", "text": evil})
        await page.wait_log(evil, "#log li.say")
        assert await page.js("return document.querySelector('#log img, #log b, #bold')") is None
        assert await page.js("return window.pwned === undefined") is True
        await page.type("#line", "<i>mine</i> & stuff")
        message = await tcp.expect("message", nick="webby")
        assert message["text"] == "<i>mine</i> & stuff"
        await page.wait_log("<i>mine</i> & stuff")
        assert await page.js("return document.querySelector('#log i')") is None

        # Typed commands: /who shows the preformatted reply, /me an action, // a literal slash.
        await page.type("#line", "/who")
        await page.wait_js(
            "return [...document.querySelectorAll('#log li.info pre')].some(p =>"
            " /^2 in #lobby: .*tcpuser.*webby/.test(p.textContent))",
            what="the /who reply",
        )
        await page.type("#line", "/me waves")
        await page.wait_log("* webby waves", "#log li.action")
        assert (await tcp.expect("message", kind="action"))["text"] == "waves"
        await page.type("#line", "//not a command")
        assert (await tcp.expect("message", nick="webby"))["text"] == "/not a command"
        await page.wait_log("/not a command", "#log li.say")
        await page.js("document.getElementById('line').value = 'typing a reply...'")
        await page.screenshot(SCREENSHOT)  # for people to look at; CI keeps no artefact
        await page.js("document.getElementById('line').value = ''")
        await page.type("#line", "/help")
        await page.wait_js(
            "return [...document.querySelectorAll('#log li.info pre')]"
            ".some(p => p.textContent.includes('Commands:') && p.textContent.includes('\\n'))",
            what="the multi-line /help reply",
        )
        await page.type("#line", "/nosuchcommand")
        await page.wait_log("unknown command", "#log li.error")

        # Someone else leaves: a notice, and the member list follows.
        other = await chat.tcp_client("passerby")
        await page.wait_js(f"return {MEMBERS}.includes('passerby')", what="passerby in members")
        await other.send({"type": "quit", "reason": "bye all"})
        await page.wait_log("passerby left #lobby (bye all)", "#log li.notice")
        await page.wait_js(
            f"return !{MEMBERS}.includes('passerby')",
            what="passerby gone from members",
        )
        await other.aclose()

    finally:
        await tcp.aclose()


async def test_rooms_then_quit_and_reconnect(chat: Chat, page: Page) -> None:
    await log_in(page, "webby")
    tcp = await chat.tcp_client("tcpuser")
    try:
        await page.type("#line", "/join #dev")
        await page.wait_js(f"return {ROOMS}.includes('#dev')", what="#dev in the room list")
        assert await page.wait_js(
            "return document.getElementById('room-name').textContent === '#dev'"
        )
        assert await page.js(f"return {ROOMS}") == ["#lobby", "#dev"]
        await page.wait_js(f"return {MEMBERS}.join() === 'webby'", what="members of #dev")

        # Plain lines go to the current room; each room has its own scrollback, and a line
        # said in another room only counts as unread there.
        await page.type("#line", "in dev")
        await page.wait_log("webby in dev", "#log li.say")
        await tcp.send({"type": "say", "text": "lobby chatter"})
        await page.wait_js(
            "return document.querySelector(\"#rooms .room[data-room='#lobby'] .unread\")"
            "?.textContent === '1'",
            what="an unread badge on #lobby",
        )
        assert "lobby chatter" not in await page.log_text()
        assert await page.js("return document.title") == "(1) trio-chat"

        # Switch back with the room list: the lobby members show again.
        await page.click("#rooms .room[data-room='#lobby']")
        await page.wait_js(f"return {MEMBERS}.join() === 'tcpuser,webby'", what="lobby members")
        assert await page.js(CURRENT_ROOM) == "#lobby"
        await page.wait_log("tcpuser lobby chatter", "#log li.say")
        assert "webby in dev" not in await page.log_text()
        assert await page.js("return document.title") == "trio-chat"
        assert await page.js("return document.querySelector('#log li.unread-marker')") is not None
        await page.type("#line", "back in lobby")
        message = await tcp.expect("message", nick="webby")
        assert (message["room"], message["text"]) == ("#lobby", "back in lobby")

        await page.type("#line", "/part #dev")
        await page.wait_js(f"return {ROOMS}.join() === '#lobby'", what="#dev gone from the rooms")

        await page.type("#line", "/nick webster")
        await tcp.expect("nick", old="webby", new="webster")
        await page.wait_log("webby is now known as webster", "#log li.notice")
        await page.wait_js(
            "return document.getElementById('me-nick').textContent === 'webster'",
            what="the new nick in the header",
        )
        await page.wait_js(f"return {MEMBERS}.join() === 'tcpuser,webster'", what="members")

        # /quit: the server says bye and closes; the page says why and offers to reconnect.
        await page.type("#line", "/quit gone fishing")
        await tcp.expect("leave", nick="webster", reason="gone fishing")
        await page.wait_js(
            "return !document.getElementById('banner').hidden"
            " && document.getElementById('banner-text').textContent"
            " === 'disconnected: gone fishing'",
            what="the disconnected banner",
        )
        status = await page.js("return document.getElementById('status').textContent")
        assert status == "disconnected: gone fishing"
        assert await page.js("return document.getElementById('send-button').disabled") is True
        await page.click("#reconnect")
        await page.wait_js(
            "return document.getElementById('status').textContent === 'connected'"
            " && document.getElementById('banner').hidden",
            what="reconnected",
        )
        await tcp.expect("join", nick="webster", room="#lobby")  # the nick it had last
        await page.type("#line", "I am back")
        assert (await tcp.expect("message", nick="webster"))["text"] == "I am back"
    finally:
        await tcp.aclose()


async def test_server_shutdown_shows_reason(chat: Chat, page: Page) -> None:
    await log_in(page, "webby")
    chat.server.shutdown()
    await page.wait_js(
        "return document.getElementById('banner-text').textContent"
        " === 'disconnected: the server is shutting down'",
        what="the shutdown reason",
    )
    assert await page.js("return document.getElementById('reconnect').disabled") is False


async def test_history_is_shown_dimmed_on_joining(chat: Chat, page: Page) -> None:
    early = await chat.tcp_client("early")
    try:
        await early.send({"type": "say", "text": "said before you came"})
        await early.expect("message", text="said before you came")
        await log_in(page, "latecomer")
        await page.wait_log("said before you came", css="#log li.past")
        await early.send({"type": "say", "text": "said live"})
        await page.wait_log("said live", css="#log li:not(.past)")
    finally:
        await early.aclose()


async def test_a_burst_arrives_whole_in_the_page(chat: Chat, page: Page) -> None:
    """The page asks for batched WebSocket messages; a burst still shows every line once."""
    await log_in(page, "reader")
    talker = await chat.tcp_client("talker")
    try:
        await talker.send_many([{"type": "say", "text": f"burst {n}"} for n in range(100)])
        await page.wait_log("burst 99")
        shown = await page.js(
            "return [...document.querySelectorAll('#log li')]"
            ".map(li => li.textContent).filter(t => t.includes('burst '))"
        )
        assert [t.rsplit("burst ", 1)[1] for t in shown] == [str(n) for n in range(100)]
    finally:
        await talker.aclose()
