"""Helpers for the browser tests: headless Chromium through selenium, and a raw TCP client.

Selenium's API blocks, so every browser call runs in a worker thread
(``trio.to_thread.run_sync``) while the in-process trio server keeps serving the page and
its WebSocket on the test's event loop. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import pytest
import trio

from trio_chat.testing import is_prompt

#: Seconds any single wait (a page condition, a TCP frame) may take.
TIMEOUT = 8.0

#: What CI needs for the browser tests (the tests skip without them).
REQUIREMENTS = (
    "needs Chromium and ChromeDriver (Debian: apt-get install chromium chromium-driver) "
    "and selenium (pip install selenium)"
)

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1100,720",
)

T = TypeVar("T")


def find_browser() -> tuple[str, str] | None:
    """Paths of the Chromium binary and its ChromeDriver, or ``None`` if either is missing."""
    chromium = os.environ.get("CHROMIUM_BIN") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if chromium is None or driver is None:
        return None
    return chromium, driver


def skip_or_fail(reason: str) -> NoReturn:
    """Skip, unless ``TRIO_CHAT_REQUIRE_BROWSER=1`` (CI) makes a missing browser an error."""
    if os.environ.get("TRIO_CHAT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (TRIO_CHAT_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@contextmanager
def chromium_driver() -> Iterator[Any]:
    """A headless Chromium driven by selenium; skips the test if anything is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail(f"selenium is not installed: {REQUIREMENTS}")
    found = find_browser()
    if found is None:
        skip_or_fail(f"no chromium/chromedriver on PATH: {REQUIREMENTS}")
    chromium, driver_path = found
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download
    with tempfile.TemporaryDirectory(prefix="trio-chat-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        try:
            driver.set_page_load_timeout(TIMEOUT)
            driver.set_script_timeout(TIMEOUT)
            yield driver
        finally:
            driver.quit()


class Page:
    """Async wrappers around one selenium driver, for use inside trio tests."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking selenium call in a thread; a cancelled test does not wait for it."""
        with trio.fail_after(TIMEOUT + 2):
            return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)

    async def open(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, script, *args)

    async def wait_js(self, script: str, *args: Any, what: str = "") -> Any:
        """Poll a JS expression (``return ...``) until it is truthy; return its value."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        def wait() -> Any:
            try:
                return WebDriverWait(self.driver, TIMEOUT, poll_frequency=0.05).until(
                    lambda d: d.execute_script(script, *args)
                )
            except TimeoutException:
                raise AssertionError(
                    f"timed out waiting for {what or script}; page log:\n"
                    + str(self.driver.execute_script(LOG_TEXT))
                ) from None

        return await self.run(wait)

    async def type(self, css: str, text: str, *, enter: bool = True) -> None:
        """Type into an element as a user would (optionally pressing Enter)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        def type_() -> None:
            element = self.driver.find_element(By.CSS_SELECTOR, css)
            element.clear()
            element.send_keys(text + (Keys.ENTER if enter else ""))

        await self.run(type_)

    async def keys(self, css: str, keys: str) -> None:
        """Press keys in an element, keeping what it holds (unlike :meth:`type`)."""
        from selenium.webdriver.common.by import By

        await self.run(lambda: self.driver.find_element(By.CSS_SELECTOR, css).send_keys(keys))

    async def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        await self.run(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())

    async def press(self, keys: str) -> None:
        """Press keys wherever the focus is now (as a user does; :meth:`keys` focuses an
        element first)."""
        from selenium.webdriver.common.action_chains import ActionChains

        await self.run(lambda: ActionChains(self.driver).send_keys(keys).perform())

    async def hover(self, css: str, index: int = -1) -> None:
        """Move the mouse over the element matching ``css`` (the last one by default)."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        def hover() -> None:
            element = self.driver.find_elements(By.CSS_SELECTOR, css)[index]
            ActionChains(self.driver).move_to_element(element).perform()

        await self.run(hover)

    async def log_text(self) -> str:
        return str(await self.js(LOG_TEXT))

    async def wait_log(self, needle: str, css: str = "#log li") -> None:
        """Wait until a message-list entry (matching ``css``) contains ``needle``."""
        await self.wait_js(
            "return [...document.querySelectorAll(arguments[0])]"
            ".some(li => li.textContent.includes(arguments[1]))",
            css,
            needle,
            what=f"{needle!r} in {css}",
        )

    async def screenshot(self, path: str) -> None:
        await self.run(self.driver.save_screenshot, path)


LOG_TEXT = "return [...document.querySelectorAll('#log li')].map(li => li.textContent).join('\\n')"


class JsonLineClient:
    """A raw JSON-lines TCP client, the way a program talks to the chat port."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = b""
        self.history: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, host: str, port: int) -> JsonLineClient:
        with trio.fail_after(TIMEOUT):
            return cls(await trio.open_tcp_stream(host, port))

    async def send(self, frame: dict[str, Any]) -> None:
        with trio.fail_after(TIMEOUT):
            await self.stream.send_all(json.dumps(frame).encode() + b"\n")

    async def send_many(self, frames: list[dict[str, Any]]) -> None:
        """Several frames in one write (a burst)."""
        with trio.fail_after(TIMEOUT):
            await self.stream.send_all(b"".join(json.dumps(f).encode() + b"\n" for f in frames))

    async def receive(self) -> dict[str, Any]:
        line: bytes | None = None
        while line is None or is_prompt(line):  # (skipped: our hello came after the sniff delay)
            with trio.fail_after(TIMEOUT):
                while b"\n" not in self._buffer:
                    data = await self.stream.receive_some(65536)
                    if not data:
                        raise ConnectionError("the server closed the connection")
                    self._buffer += data
            line, self._buffer = self._buffer.split(b"\n", 1)
        frame: dict[str, Any] = json.loads(line)
        self.history.append(frame)
        return frame

    async def expect(self, frame_type: str, /, **fields: Any) -> dict[str, Any]:
        """Skip frames until one of type ``frame_type`` with the given field values arrives."""
        with trio.fail_after(TIMEOUT):
            while True:
                frame = await self.receive()
                if frame.get("type") == frame_type and all(
                    frame.get(k) == v for k, v in fields.items()
                ):
                    return frame

    async def login(self, nick: str) -> dict[str, Any]:
        await self.send({"type": "hello", "nick": nick})
        return await self.expect("welcome")

    async def aclose(self) -> None:
        await self.stream.aclose()


def split_address(address: str) -> tuple[str, int]:
    """``"ws://127.0.0.1:5000"`` -> ``("127.0.0.1", 5000)``."""
    host, _, port = address.split("://", 1)[1].rpartition(":")
    return host.strip("[]"), int(port)
