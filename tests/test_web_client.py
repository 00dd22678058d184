"""The browser client's behaviour as a user sees it, in real headless Chromium: a scrollback
per conversation, unread counts, reconnecting with the exact gap filled after a server
restart, phones, Tab completion, link safety, older history, remembered nick and rooms.

Like ``test_web.py``: an in-process server serves the page while selenium drives Chromium in
worker threads; raw JSON-lines TCP clients are the other users; every wait polls a condition.
Set ``TRIO_CHAT_SCREENSHOT_DIR=docs`` to refresh ``docs/web.png`` and ``docs/web-phone.png``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from web_helpers import TIMEOUT, JsonLineClient, Page, chromium_driver, split_address

from trio_chat.config import ServerConfig
from trio_chat.server import ChatServer

SCREENSHOT_DIR = os.environ.get("TRIO_CHAT_SCREENSHOT_DIR")
# Selenium's key codes (a second ALT releases the first).
TAB, UP, DOWN, ESCAPE, ALT = "\ue004", "\ue013", "\ue015", "\ue00c", "\ue00a"

CHAT_VISIBLE = (
    "return !document.getElementById('chat-view').hidden"
    " && document.getElementById('login-view').hidden"
)
CONNECTED = "return document.getElementById('status').textContent === 'connected'"
CURRENT = "return document.getElementById('room-name').textContent"
LINES = (
    "return [...document.querySelectorAll('#log li.say, #log li.action')]"
    ".map(li => li.textContent.slice(5))"  # without the HH:MM
)


def badge(conv: str, mentions: bool = False) -> str:
    """JS: the unread count shown on a conversation's button (or how many of them mention
    the user), 0 if none."""
    value = "dataset.mentions" if mentions else "textContent"
    return (
        f"return Number(document.querySelector(\"#sidebar .conv[data-conv='{conv}'] .unread\")"
        f"?.{value} || 0)"
    )


@dataclass
class Chat:
    server: ChatServer
    tcp: tuple[str, int]
    ws: tuple[str, int] | None

    @property
    def url(self) -> str:
        assert self.ws is not None
        host, port = self.ws
        return f"http://{host}:{port}/"

    async def tcp_client(self, nick: str) -> JsonLineClient:
        client = await JsonLineClient.connect(*self.tcp)
        await client.login(nick)
        return client


def config(db: str = ":memory:", ws_port: int | None = 0) -> ServerConfig:
    return ServerConfig(
        port=0,
        ws_port=ws_port,
        entry_points=False,
        db=db,
        db_sync_full=False,
        flood_rate=1000.0,  # the tests say many lines at once
        flood_burst=1000,
        shutdown_grace=2.0,
    )


@asynccontextmanager
async def running(cfg: ServerConfig) -> AsyncIterator[Chat]:
    """A server for the ``async with`` block; shut down (users told) at its end."""
    server = ChatServer(cfg)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(TIMEOUT):
            addresses = await nursery.start(server.serve)
        tcp = next(a for a in addresses if a.startswith("tcp://"))
        ws = next((a for a in addresses if a.startswith("ws://")), None)
        yield Chat(server, split_address(tcp), None if ws is None else split_address(ws))
        server.shutdown()


@pytest.fixture(scope="module")
def drivers() -> Iterator[list[Any]]:
    """Two headless Chromiums for the module: two people, with separate localStorage."""
    with ExitStack() as stack:
        yield [stack.enter_context(chromium_driver()) for _ in range(2)]


@pytest.fixture
async def chat() -> AsyncIterator[Chat]:
    async with running(config()) as chat:
        yield chat


@asynccontextmanager
async def opened(driver: Any, url: str) -> AsyncIterator[Page]:
    page = Page(driver)
    await page.open(url)
    try:
        yield page
    finally:
        # Leave the page so its WebSocket closes before the server stops.
        await page.open("about:blank")


async def log_in(page: Page, nick: str) -> None:
    await page.type("#nick", nick)
    await page.wait_js(CHAT_VISIBLE, what=f"the chat view after logging in as {nick}")
    await page.wait_js(CONNECTED, what="connected")


async def switch(page: Page, conv: str) -> None:
    await page.js(
        "document.querySelector(`#sidebar .conv[data-conv='${arguments[0]}']`).click()", conv
    )
    await page.wait_js(f"{CURRENT} === arguments[0]", conv, what=f"{conv} shown")


async def lines(page: Page) -> list[str]:
    return list(await page.js(LINES))


async def screenshot(page: Page, name: str) -> None:
    if SCREENSHOT_DIR:
        await trio.Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        await page.screenshot(str(Path(SCREENSHOT_DIR) / name))


async def test_two_pages_and_a_tcp_client_in_rooms_and_a_private_talk(
    chat: Chat, drivers: list[Any]
) -> None:
    carol = await chat.tcp_client("carol")
    async with opened(drivers[0], chat.url) as alice, opened(drivers[1], chat.url) as bob:
        await log_in(alice, "alice")
        await log_in(bob, "bob")
        for page in (alice, bob):
            await page.type("#line", "/join #dev")
            await page.wait_js(f"{CURRENT} === '#dev'", what="#dev shown")
        await carol.send({"type": "command", "name": "join", "args": "#dev"})
        await carol.send({"type": "say", "room": "#lobby", "text": "lobby news"})
        await alice.wait_js(badge("#lobby") + " === 1", what="one unread in #lobby")
        assert "lobby news" not in await alice.log_text()

        # A line in the room shown: seen, not counted; a mention elsewhere: counted twice.
        await bob.type("#line", "hello dev, see https://example.org/notes")
        await alice.wait_log("bob hello dev, see https://example.org/notes")
        assert await alice.js(badge("#dev")) == 0
        await switch(alice, "#lobby")
        await alice.wait_log("carol lobby news")
        await carol.send({"type": "say", "room": "#dev", "text": "alice: review please"})
        await alice.wait_js(badge("#dev") + " === 1", what="one unread in #dev")
        assert await alice.js(badge("#dev", mentions=True)) == 1
        assert await alice.js("return document.title") == "(1, 1 for you) trio-chat"
        assert await alice.js("return document.querySelector('#log li.day')") is not None

        # Bob clicks alice's nick: a private talk of its own, on both sides.
        await bob.wait_js(
            "return document.querySelector(\"#members .nick[data-nick='alice']\")",
            what="alice in bob's member list",
        )
        await bob.click("#members .nick[data-nick='alice']")
        await bob.wait_js(f"{CURRENT} === 'alice'", what="bob's talk with alice")
        await bob.type("#line", "just between us")
        await alice.wait_js(badge("bob") + " === 1", what="alice's talk with bob unread")
        assert await alice.js(badge("bob", mentions=True)) == 1
        assert "just between us" not in await alice.log_text()
        await switch(alice, "bob")
        await alice.wait_log("bob just between us", "#log li.private")
        await alice.type("#line", "sure")
        await bob.wait_log("alice sure", "#log li.private")
        await carol.send({"type": "command", "name": "msg", "args": "alice psst"})
        await alice.wait_js(badge("carol") + " === 1", what="a talk with carol")
        assert await alice.js(badge("bob")) == 0
        assert await lines(alice) == ["bob just between us", "alice → bob sure"]

        await switch(alice, "#dev")
        assert await lines(alice) == [
            "bob hello dev, see https://example.org/notes",
            "carol alice: review please",
        ]
        assert await alice.js("return document.title") == "(1, 1 for you) trio-chat"
        await alice.type("#line", "/topic Release on Friday")
        await alice.wait_js(
            "return document.getElementById('topic').textContent === '— Release on Friday'",
            what="the topic in the header",
        )
        await alice.js("document.getElementById('line').value = 'typing a reply…'")
        await screenshot(alice, "web.png")

        # The talk with carol follows her new nick.
        await carol.send({"type": "command", "name": "nick", "args": "carol2"})
        await alice.wait_js(badge("carol2") + " === 1", what="the talk renamed")
        await switch(alice, "carol2")
        await alice.wait_log("carol is now known as carol2")
        await alice.type("#line", "got it")
        assert (await carol.expect("private", nick="alice"))["text"] == "got it"
    await carol.aclose()


async def test_restart_gap_filled_exactly_in_two_rooms(drivers: list[Any], tmp_path: Path) -> None:
    """The server stops; while the page is away the TCP client says 60 lines in #lobby
    (more than a history page) and 3 in #dev; the page comes back by itself, logs in,
    rejoins both rooms and shows every line once, in order, with the half-typed line kept."""
    db = str(tmp_path / "chat.db")
    async with running(config(db)) as first:
        assert first.ws is not None
        ws_port = first.ws[1]
        page = Page(drivers[0])
        await page.open(first.url)
        await log_in(page, "webby")
        await page.type("#line", "/join #dev")
        await page.wait_js(f"{CURRENT} === '#dev'", what="#dev shown")
        carol = await first.tcp_client("carol")
        await carol.send({"type": "command", "name": "join", "args": "#dev"})
        await carol.send({"type": "say", "room": "#dev", "text": "before 1"})
        await carol.send({"type": "say", "room": "#lobby", "text": "before 2"})
        await page.wait_js(badge("#lobby") + " === 1", what="before 2 in #lobby")
        await page.wait_log("carol before 1")
        await page.type("#line", "half-typed", enter=False)
        await carol.aclose()
    await page.wait_js(
        "return document.getElementById('retry-text').textContent.startsWith('reconnecting')",
        what="the reconnect countdown",
    )
    banner = await page.js("return document.getElementById('banner-text').textContent")
    assert banner == "disconnected: the server is shutting down"

    async with running(config(db, ws_port=None)) as outage:  # the page cannot get in
        carol = await outage.tcp_client("carol")
        await carol.send({"type": "command", "name": "join", "args": "#dev"})
        await carol.send_many(
            [{"type": "say", "room": "#lobby", "text": f"gap {n}"} for n in range(60)]
            + [{"type": "say", "room": "#dev", "text": f"dev gap {n}"} for n in range(3)]
        )
        await carol.expect("message", text="dev gap 2")
        await carol.aclose()

    async with running(config(db, ws_port=ws_port)) as second:
        await page.wait_js(CONNECTED, what="reconnected by itself")
        await page.wait_log("carol dev gap 2")
        assert await lines(page) == [
            "carol before 1",
            "carol dev gap 0",
            "carol dev gap 1",
            "carol dev gap 2",
        ]
        await page.wait_js(badge("#lobby") + " === 61", what="61 unread in #lobby")
        await switch(page, "#lobby")
        await page.wait_log("carol gap 59")
        assert await lines(page) == ["carol before 2"] + [f"carol gap {n}" for n in range(60)]
        assert await page.js("return document.getElementById('line').value") == "half-typed"
        rooms = await page.js(
            "return [...document.querySelectorAll('#rooms .room')].map(b => b.dataset.room)"
        )
        assert rooms == ["#lobby", "#dev"]
        # Both rooms were rejoined on the server, and new lines arrive live.
        dave = await second.tcp_client("dave")
        await dave.send({"type": "command", "name": "join", "args": "#dev"})
        await dave.send({"type": "say", "room": "#dev", "text": "after"})
        await page.wait_js(badge("#dev") + " === 1", what="a live line in #dev")
        await dave.aclose()
        await page.open("about:blank")


async def test_phone_viewport_keeps_the_input_visible(chat: Chat, drivers: list[Any]) -> None:
    driver = drivers[1]
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        talker = await chat.tcp_client("talker")
        async with opened(driver, chat.url) as page:
            await log_in(page, "phone")
            assert await page.js("return window.innerWidth") == 390
            await talker.send_many(
                [{"type": "say", "text": f"line {n} of a long day's chat"} for n in range(200)]
            )
            await page.wait_log("line 199 of")
            box = await page.js(
                "const r = document.getElementById('line').getBoundingClientRect();"
                " return [r.top, r.bottom, r.left, r.right, window.innerHeight]"
            )
            top, bottom, left, right, height = box
            assert 0 <= top < bottom <= height and 0 <= left < right <= 390, box
            # The last line is in view, above the input.
            last = await page.js(
                "const r = [...document.querySelectorAll('#log li')].pop()"
                ".getBoundingClientRect(); return r.bottom"
            )
            assert last <= top + 1
            # The conversation list is a drawer behind the menu button.
            assert (
                await page.js(
                    "return getComputedStyle(document.getElementById('sidebar')).visibility"
                )
                == "hidden"
            )
            await page.click("#menu")
            await page.wait_js(
                "return getComputedStyle(document.getElementById('sidebar')).visibility"
                " === 'visible'",
                what="the drawer open",
            )
            await page.keys("#line", ESCAPE)
            await page.js("document.getElementById('line').value = 'hi from a phone'")
            await page.wait_js(
                "return getComputedStyle(document.getElementById('sidebar')).visibility"
                " === 'hidden'",
                what="the drawer closed by Escape",
            )
            await screenshot(page, "web-phone.png")

            # Dark, when the system says so; and what waits in other rooms shows on the
            # menu button.
            light = await page.js("return getComputedStyle(document.body).backgroundColor")
            driver.execute_cdp_cmd(
                "Emulation.setEmulatedMedia",
                {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
            )
            dark = await page.js("return getComputedStyle(document.body).backgroundColor")
            assert (light, dark) == ("rgb(246, 247, 249)", "rgb(22, 24, 29)")
            await page.type("#line", "/join #side")
            await page.wait_js(f"{CURRENT} === '#side'", what="#side shown")
            await talker.send({"type": "say", "room": "#lobby", "text": "phone: look"})
            await page.wait_js(
                "const m = document.getElementById('menu');"
                " return m.dataset.unread === '1' && m.classList.contains('mentioned')",
                what="the menu button's badge",
            )
        await talker.aclose()
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


async def test_tab_completion_and_input_history(chat: Chat, drivers: list[Any]) -> None:
    tcpuser = await chat.tcp_client("tcpuser")
    other = await chat.tcp_client("tcpother")
    async with opened(drivers[0], chat.url) as page:
        await log_in(page, "webby")
        await other.send({"type": "say", "text": "hi"})
        await page.wait_log("tcpother hi")
        await page.wait_js(
            "return document.querySelectorAll('#members li').length === 3", what="members"
        )

        async def tab(typed: str, times: int = 1) -> str:
            await page.type("#line", typed + TAB * times, enter=False)
            return str(await page.js("return document.getElementById('line').value"))

        assert await tab("tcpu") == "tcpuser: "
        assert await tab("thanks tcpo") == "thanks tcpother "
        assert await tab("/jo") == "/join "
        assert await tab("/join #lo") == "/join #lobby "
        # Tab again cycles through the matches, the one who spoke last first.
        assert await tab("tc") == "tcpother: "
        assert await tab("tc", 2) == "tcpuser: "
        assert await tab("tc", 3) == "tcpother: "
        # Nothing to complete: Tab moves the focus on, as it does elsewhere.
        await page.type("#line", "zz" + TAB, enter=False)
        assert await page.js("return document.activeElement.id") == "send-button"

        # Up and Down walk the lines sent and come back to the half-typed one.
        await page.type("#line", "first line")
        await page.type("#line", "second line")
        await page.wait_log("webby second line")
        await page.type("#line", "half typed", enter=False)
        await page.keys("#line", UP)
        assert await page.js("return document.getElementById('line').value") == "second line"
        await page.keys("#line", UP + UP)
        assert await page.js("return document.getElementById('line').value") == "first line"
        await page.keys("#line", DOWN + DOWN)
        assert await page.js("return document.getElementById('line').value") == "half typed"

        # Keyboard only: Alt+Down goes to the next conversation, keeping the typed line.
        await page.type("#line", "/join #dev")
        await page.wait_js(f"{CURRENT} === '#dev'", what="#dev shown")
        await page.type("#line", "draft", enter=False)
        await page.keys("#line", ALT + DOWN + ALT)
        await page.wait_js(f"{CURRENT} === '#lobby'", what="#lobby after Alt+Down")
        assert await page.js("return document.activeElement.id") == "line"
        assert await page.js("return document.getElementById('line').value") == "draft"
    await tcpuser.aclose()
    await other.aclose()


async def test_links_are_safe_and_clickable(chat: Chat, drivers: list[Any]) -> None:
    talker = await chat.tcp_client("talker")
    async with opened(drivers[0], chat.url) as page:
        await log_in(page, "webby")
        evil = (
            "go https://example.org/a_(b)?q=1&r=2, javascript:alert(1) "
            '<a href="javascript:alert(2)">x</a> jAvAsCrIpT:window.pwned=1 '
            'data:text/html,<b>x</b> http://example.net/"onmouseover="window.pwned=1'
        )
        await talker.send({"type": "say", "text": evil})
        await page.wait_log("talker go")
        links = await page.js(
            "return [...document.querySelectorAll('#log a')].map(a => [a.href, a.textContent,"
            " a.target, a.rel])"
        )
        assert links == [
            [
                "https://example.org/a_(b)?q=1&r=2",
                "https://example.org/a_(b)?q=1&r=2",
                "_blank",
                "noopener noreferrer nofollow",
            ],
            [
                "http://example.net/",
                "http://example.net/",
                "_blank",
                "noopener noreferrer nofollow",
            ],
        ]
        assert (
            await page.js(
                "return [...document.querySelectorAll('#log [href], #log [onmouseover], #log b')]"
                ".filter(e => !e.href?.startsWith('http')).length"
            )
            == 0
        )
        assert await page.js("return window.pwned === undefined") is True
        shown = await page.js(
            "return [...document.querySelectorAll('#log li.say')].pop()"
            ".querySelector('.body').textContent"
        )
        assert shown == "talker " + evil  # all of it shown, as text
    await talker.aclose()


async def test_scrolling_up_loads_older_history(chat: Chat, drivers: list[Any]) -> None:
    talker = await chat.tcp_client("talker")
    await talker.send_many([{"type": "say", "text": f"old {n}"} for n in range(130)])
    await talker.expect("message", text="old 129")
    async with opened(drivers[0], chat.url) as page:
        await log_in(page, "reader")
        await page.wait_log("talker old 129")
        shown = await lines(page)
        assert shown[0] == "talker old 80" and len(shown) == 50  # the latest page on joining
        for _ in range(10):
            if "talker old 0\n" in await page.log_text() + "\n":
                break
            count = len(await lines(page))
            await page.js("document.getElementById('log').scrollTop = 0")
            await page.wait_js(
                "return document.querySelectorAll('#log li.say').length > arguments[0]",
                count,
                what="an older page",
            )
        assert await lines(page) == [f"talker old {n}" for n in range(130)]
    await talker.aclose()


async def test_nick_and_rooms_remembered_password_only_in_memory(
    chat: Chat, drivers: list[Any]
) -> None:
    owner = await chat.tcp_client("owner")
    await owner.send({"type": "command", "name": "register", "args": "s3cret-pass"})
    await owner.expect("info")
    await owner.send({"type": "quit"})
    await owner.aclose()
    async with opened(drivers[1], chat.url) as page:
        await page.type("#nick", "owner")
        await page.wait_js(
            "return !document.getElementById('password-row').hidden", what="the password field"
        )
        error = await page.js("return document.getElementById('login-error').textContent")
        assert "owner" in error
        await page.type("#password", "s3cret-pass")
        await page.wait_js(CHAT_VISIBLE, what="logged in with the password")
        assert (await page.js("return window.trioChat.state"))["account"] is True
        await page.type("#line", "/join #dev")
        await page.wait_js(f"{CURRENT} === '#dev'", what="#dev shown")
        stored = await page.js("return JSON.stringify(localStorage)")
        assert "s3cret" not in stored and "owner" in stored and "#dev" in stored

        await page.open(chat.url)  # a reload: the nick is filled in, the rooms come back
        assert await page.js("return document.getElementById('nick').value") == "owner"
        await page.click("#login-button")
        await page.wait_js(
            "return !document.getElementById('password-row').hidden", what="the password field"
        )
        await page.type("#password", "s3cret-pass")
        await page.wait_js(CHAT_VISIBLE, what="logged in again")
        await page.wait_js(
            "return [...document.querySelectorAll('#rooms .room')].map(b => b.dataset.room)"
            ".join() === '#lobby,#dev'",
            what="#dev rejoined after the reload",
        )


async def test_an_account_logs_in_again_by_itself_after_a_restart(
    drivers: list[Any], tmp_path: Path
) -> None:
    db = str(tmp_path / "chat.db")
    async with running(config(db)) as first:
        assert first.ws is not None
        ws_port = first.ws[1]
        page = Page(drivers[0])
        await page.open(first.url)
        await log_in(page, "member")
        await page.type("#line", "/register hunter22")
        await page.wait_log("member is now registered", "#log li.info")
    async with running(config(db, ws_port=ws_port)) as second:
        await page.wait_js(CONNECTED, what="reconnected by itself")
        state = await page.js("return window.trioChat.state")
        assert (state["me"], state["account"]) == ("member", True)
        assert await page.js("return document.getElementById('login-view').hidden") is True
        # A guest cannot take the nick meanwhile: it is registered.
        guest = await JsonLineClient.connect(*second.tcp)
        await guest.send({"type": "hello", "nick": "member"})
        assert (await guest.expect("error"))["code"] in ("nick_taken", "nick_registered")
        await guest.aclose()
        stored = await page.js("return JSON.stringify(localStorage)")
        assert "hunter22" not in stored
        await page.open("about:blank")


FAKE_NOTIFICATIONS = """
window.shown = []; window.asked = 0;
window.Notification = class {
  static permission = "default";
  static async requestPermission() {
    window.asked += 1; this.permission = "granted"; return "granted";
  }
  constructor(title, options) { window.shown.push([title, options.body]); }
  close() {}
};
"""


async def test_desktop_notifications_only_once_asked_for(chat: Chat, drivers: list[Any]) -> None:
    """The page never asks by itself; once the user allowed them, mentions and private
    messages not in view are notified, other lines are not."""
    driver = drivers[1]
    script = driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": FAKE_NOTIFICATIONS}
    )
    try:
        talker = await chat.tcp_client("talker")
        await talker.send({"type": "command", "name": "join", "args": "#dev"})
        async with opened(driver, chat.url) as page:
            await log_in(page, "nora")
            await talker.send({"type": "say", "room": "#lobby", "text": "nora: before"})
            await page.wait_log("talker nora: before")
            assert await page.js("return window.asked") == 0
            assert await page.js("return document.getElementById('notify').hidden") is False
            await page.click("#notify")
            await page.wait_js(
                "return document.getElementById('notify').hidden", what="the button gone"
            )
            assert await page.js("return window.asked") == 1
            await page.type("#line", "/join #dev")
            await page.wait_js(f"{CURRENT} === '#dev'", what="#dev shown")
            await talker.send({"type": "say", "room": "#lobby", "text": "no mention"})
            await talker.send({"type": "say", "room": "#lobby", "text": "hey nora, look"})
            await talker.send({"type": "say", "room": "#dev", "text": "nora: in view"})
            await talker.send({"type": "command", "name": "msg", "args": "nora a secret"})
            await page.wait_js(badge("talker") + " === 1", what="the private message")
            shown = await page.js("return window.shown")
            assert shown == [
                ["talker in #lobby", "hey nora, look"],
                ["talker (private)", "a secret"],
            ]
        await talker.aclose()
    finally:
        driver.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
        )


async def test_a_page_joining_a_connected_user_shows_its_rooms(
    chat: Chat, drivers: list[Any]
) -> None:
    """The page logs in to an account already connected over TCP: it becomes a second
    connection of that user, and shows the rooms its welcome lists (no join comes)."""
    owner = await chat.tcp_client("owner")
    await owner.send({"type": "command", "name": "register", "args": "s3cret-pass"})
    await owner.expect("info")
    await owner.send({"type": "command", "name": "join", "args": "#ops"})
    await owner.expect("join", room="#ops")
    async with opened(drivers[1], chat.url) as page:
        await page.js("localStorage.clear()")
        await page.open(chat.url)
        await page.type("#nick", "owner")
        await page.wait_js(
            "return !document.getElementById('password-row').hidden", what="the password field"
        )
        await page.type("#password", "s3cret-pass")
        await page.wait_js(CHAT_VISIBLE, what="logged in as a second connection")
        await page.wait_js(
            "return [...document.querySelectorAll('#rooms .room')].map(b => b.dataset.room)"
            ".sort().join() === '#lobby,#ops'",
            what="the user's rooms from the welcome",
        )
        await page.wait_log("now on 2 connections", "#log li")
        await owner.send({"type": "say", "room": "#ops", "text": "said over tcp"})
        await switch(page, "#ops")
        await page.wait_log("said over tcp", "#log li.say")
    await owner.aclose()


async def test_bots_are_marked_in_the_member_list_and_their_joins(
    chat: Chat, drivers: list[Any]
) -> None:
    """A plugin's bot is shown as one: in the member list (from ``/who`` for a bot already
    there, from its ``join`` for one that comes later) and in its join line."""
    early = await chat.server.add_bot("weather", plugin="test")
    await early.join("#lobby")
    async with opened(drivers[0], chat.url) as page:
        await page.js("localStorage.clear()")
        await page.open(chat.url)
        await log_in(page, "reader")
        bots = "[...document.querySelectorAll('#members li.bot')].map(li => li.dataset.nick)"
        await page.wait_js(f"return {bots}.join() === 'weather'", what="weather from /who")
        late = await chat.server.add_bot("greeter", plugin="test")
        await late.join("#lobby")
        await page.wait_log("→ greeter (bot) joined #lobby", "#log li")
        await page.wait_js(f"return {bots}.sort().join() === 'greeter,weather'", what="both")
        person = "return document.querySelector(\"#members li[data-nick='reader']\").className"
        assert "bot" not in await page.js(person)
        late.say("#lobby", "hello from a bot")
        await page.wait_log("hello from a bot", "#log li.say")


async def test_a_notice_is_shown_apart_from_chat_lines(chat: Chat, drivers: list[Any]) -> None:
    async with opened(drivers[0], chat.url) as page:
        await page.js("localStorage.clear()")
        await page.open(chat.url)
        await log_in(page, "viewer")
        teller = await chat.tcp_client("teller")
        await teller.send({"type": "command", "name": "notice", "args": "deploy at noon"})
        await page.wait_log("-teller- deploy at noon", "#log li.chat-notice")
        await teller.aclose()


PAGE_LOGIC = """
const done = arguments[arguments.length - 1];
(async () => {
  const m = await import("./messages.js");
  const t = await import("./typing.js");
  const s = await import("./search.js");
  const out = {};
  const rec = m.makeRecord({type: "message", id: 10, ts: 1, room: "#a", nick: "bob",
    text: "hi", kind: "say", reply_to: 7, quote: {nick: "carol", text: "earlier"}});
  const reactions = () => JSON.stringify([...rec.reactions]);
  out.reply = [rec.replyTo, m.quoteText(rec.quote)];
  out.steps = [
    m.applyReaction(rec, {id: 11, nick: "alice", emoji: "👍", on: true}), reactions(),
    m.applyReaction(rec, {id: 11, nick: "alice", emoji: "👍", on: true}), reactions(),
    m.applyReaction(rec, {id: 12, nick: "bob", emoji: "👍"}), reactions(),
    m.applyReaction(rec, {id: 13, nick: "ALICE", emoji: "👍", on: false}), reactions(),
    // History's state from before reaction 13 is older than what is shown: kept.
    m.applyState(rec, {text: "hi", changed: 12, reactions: {"👍": ["alice", "bob"]}}),
    reactions(),
    m.applyEdit(rec, {id: 14, ts: 99, nick: "bob", text: "hello"}), rec.text, rec.edited,
    m.applyDelete(rec, {id: 15, nick: "bob"}), rec.text, rec.deleted, reactions(),
    m.applyEdit(rec, {id: 16, ts: 100, text: "back?"}), rec.text, m.changeable(rec),
  ];
  const other = m.makeRecord({type: "message", id: 20, room: "#a", nick: "c", text: "old"});
  const answer = m.makeRecord({type: "message", id: 21, room: "#a", nick: "d", text: "re",
    reply_to: 10, quote: {nick: "bob", text: "hi"}});
  out.unquote = [m.unquote(answer, 9), m.unquote(answer, 10), m.quoteText(answer.quote),
    m.unquote(answer, 10)];
  out.caughtUp = [m.applyState(other, {text: "new", edited: 5, changed: 30,
    reactions: {"🎉": ["d"]}}), other.text, other.edited, JSON.stringify([...other.reactions])];
  out.cut = [m.cut("x".repeat(100)).length, m.cut("x".repeat(101)),
    [...m.cut("😀".repeat(101))].length];

  let now = 0;
  const sent = [];
  const sender = new t.TypingSender((room, active) => sent.push([now, room, active]), () => now);
  sender.update("#a", "h");
  now = 1000; sender.update("#a", "he");
  now = 3000; sender.update("#a", "hel");
  now = 3500; sender.update("#a", "");
  now = 4000; sender.update("#a", "/join #b");
  now = 4100; sender.update("#a", "//not a command");
  now = 4200; sender.update("#b", "x");
  now = 4300; sender.sent(); sender.update("#b", "");
  now = 4400; sender.update(null, "x");
  out.sent = sent;

  const changes = [];
  const board = new t.TypingBoard(() => changes.push(now), () => now);
  now = 0; board.event("#a", "alice", true); board.event("#a", "bob", true);
  out.typing = [board.typing("#a"), board.typing("#b")];
  now = 2000; board.event("#a", "bob", true);
  now = 6500; out.typing.push(board.typing("#a"));
  board.stopped("#a", "BOB"); out.typing.push(board.typing("#a"));
  out.texts = [[], ["a"], ["a", "b"], ["a", "b", "c"], ["a", "b", "c", "d"]].map(t.typingText);
  board.clear();
  out.search = [s.parseSearch("#dev deploy friday"), s.parseSearch("#dev"),
    s.parseSearch("  two words ")];
  done(out);
})().catch((e) => done({error: String(e.stack || e)}));
"""


async def test_page_logic_in_the_browser(chat: Chat, drivers: list[Any]) -> None:
    """The page's pure parts, run by the browser itself: message changes applied once and
    in order, typing notices thinned and expired, search boxes parsed."""
    async with opened(drivers[0], chat.url) as page:
        out = await page.run(page.driver.execute_async_script, PAGE_LOGIC)
    assert "error" not in out, out.get("error")
    assert out["reply"] == [7, "carol: earlier"]
    assert out["steps"] == [
        True, '[["👍",["alice"]]]',
        False, '[["👍",["alice"]]]',
        True, '[["👍",["alice","bob"]]]',
        True, '[["👍",["bob"]]]',
        False, '[["👍",["bob"]]]',
        True, "hello", 99,
        True, "", True, "[]",
        False, "", False,
    ]  # fmt: skip
    assert out["unquote"] == [False, True, "bob: message deleted", False]
    assert out["caughtUp"] == [True, "new", 5, '[["🎉",["d"]]]']
    assert out["cut"] == [100, "x" * 100 + "…", 101]
    assert out["sent"] == [
        [0, "#a", True],
        [3000, "#a", True],
        [3500, "#a", False],
        [4100, "#a", True],
        [4200, "#a", False],
        [4200, "#b", True],
    ]
    assert out["typing"] == [["alice", "bob"], [], ["bob"], []]  # bob renewed at 2 s
    assert out["texts"] == [
        "",
        "a is typing…",
        "a and b are typing…",
        "a, b and c are typing…",
        "4 people are typing…",
    ]
    assert out["search"] == [
        {"room": "#dev", "query": "deploy friday"},
        {"room": None, "query": "#dev"},
        {"room": None, "query": "two words"},
    ]
