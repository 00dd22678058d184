"""Issue 18 on the browser page, in real headless Chromium against the real server: replies,
reactions, edits, deletes and typing between two pages; mentions, read markers across the
devices of one account and search; and the changes made while a page was away, caught up
after a restart.

Like ``test_web_client.py`` (whose helpers it uses): an in-process server serves the page,
selenium drives two Chromiums in worker threads, raw JSON-lines TCP clients are the other
users and devices, and every wait polls a condition of the page.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from test_web_client import (
    CHAT_VISIBLE,
    CONNECTED,
    CURRENT,
    ESCAPE,
    Chat,
    badge,
    config,
    log_in,
    opened,
    running,
    switch,
)
from web_helpers import JsonLineClient, Page, chromium_driver


@pytest.fixture(scope="module")
def drivers() -> Iterator[list[Any]]:
    """Two headless Chromiums for the module: two people, with separate localStorage."""
    with ExitStack() as stack:
        yield [stack.enter_context(chromium_driver()) for _ in range(2)]


@pytest.fixture
async def chat() -> Any:
    async with running(config()) as chat:
        yield chat


#: JS: the id of the latest chat line whose text contains arguments[0] (0 if none).
LINE_ID = (
    "return Number([...document.querySelectorAll('#log li.say, #log li.action')]"
    ".filter(li => li.textContent.includes(arguments[0])).pop()?.dataset.id || 0)"
)
#: JS: the text of the chat line with id arguments[0], without the time.
LINE_TEXT = "return document.querySelector(`#log li[data-id='${arguments[0]}'] .body`)?.textContent"
#: JS: the reactions row of line arguments[0]: [[emoji, count, pressed], ...].
REACTIONS = (
    "return JSON.stringify([...document.querySelectorAll("
    "`#log li[data-id='${arguments[0]}'] .reaction`)]"
    ".map(b => [b.dataset.emoji, Number(b.querySelector('.count').textContent),"
    " b.getAttribute('aria-pressed') === 'true']))"
)
TYPING = "return document.getElementById('typing').textContent"
ACTIONS = (
    "return [...document.querySelectorAll('#msg-actions button')]"
    ".filter(b => !b.hidden).map(b => b.dataset.act)"
)


async def actions(page: Page) -> list[str]:
    """The actions the toolbar offers on the message it is on."""
    return list(await page.js(ACTIONS))


async def wait_reactions(page: Page, message_id: int, expected: list[list[Any]]) -> None:
    """Wait until the reactions row of a line is ``[[emoji, count, mine], ...]``."""
    wanted = json.dumps(expected, ensure_ascii=False, separators=(",", ":"))
    await page.wait_js(
        REACTIONS + " === arguments[1]",
        message_id,
        wanted,
        what=f"reactions {wanted} on {message_id}",
    )


async def line_id(page: Page, text: str) -> int:
    await page.wait_js(LINE_ID, text, what=f"a line with {text!r}")
    return int(await page.js(LINE_ID, text))


async def act_on(page: Page, message_id: int, action: str) -> None:
    """Hover a message and click one of its actions, as a mouse user does."""
    await page.hover(f"#log li[data-id='{message_id}']")
    await page.wait_js(
        "const bar = document.getElementById('msg-actions');"
        " return !bar.hidden && bar.parentElement.dataset.id === String(arguments[0])"
        " && !bar.querySelector(`[data-act='${arguments[1]}']`).hidden",
        message_id,
        action,
        what=f"the {action} action on message {message_id}",
    )
    await page.click(f"#msg-actions [data-act='{action}']")


async def test_reply_react_edit_delete_and_typing_between_two_pages(
    chat: Chat, drivers: list[Any]
) -> None:
    watcher = await chat.tcp_client("watcher")  # sees the frames the pages send
    async with opened(drivers[0], chat.url) as alice, opened(drivers[1], chat.url) as bob:
        for page, nick in ((alice, "alice"), (bob, "bob")):
            await page.js("localStorage.clear()")
            await page.open(chat.url)
            await log_in(page, nick)
        # Bob makes #dev, so he is its operator; alice and the watcher join.
        await bob.type("#line", "/join #dev")
        await bob.wait_js(f"{CURRENT} === '#dev'", what="#dev shown")
        for page in (alice,):
            await page.type("#line", "/join #dev")
            await page.wait_js(f"{CURRENT} === '#dev'", what="#dev shown")
        await watcher.send({"type": "command", "name": "join", "args": "#dev"})
        await watcher.expect("join", room="#dev", nick="watcher")
        await bob.type("#line", "original words")
        original = await line_id(alice, "bob original words")

        # Alice is no operator of #dev: on bob's line she may reply and react, no more.
        await act_on(alice, original, "reply")
        assert await actions(alice) == ["reply", "react"]
        await alice.wait_js(
            "return document.getElementById('compose-text').textContent"
            " === 'replying to bob: original words'",
            what="the reply bar",
        )
        await alice.type("#line", "a reply")
        said = await watcher.expect("message", nick="alice")
        assert (said["reply_to"], said["quote"]) == (
            original,
            {"nick": "bob", "text": "original words"},
        )
        reply = said["id"]
        await bob.wait_js(
            LINE_TEXT + " === 'bob: original wordsalice a reply'",
            reply,
            what="the reply with its quote on bob's page",
        )
        assert await alice.js("return document.getElementById('compose').hidden") is True
        await bob.click(f"#log li[data-id='{reply}'] .quote")
        await bob.wait_js(
            f"return document.querySelector(\"#log li[data-id='{original}']\")"
            ".classList.contains('flash')",
            what="the quoted line flashed",
        )

        # Reactions: alice picks 👍; bob adds his by clicking the count; alice takes hers back.
        await act_on(alice, original, "react")
        await alice.wait_js("return !document.getElementById('picker').hidden", what="picker")
        assert await alice.js("return document.activeElement.dataset.emoji") == "👍"
        await alice.click("#picker [data-emoji='👍']")
        await wait_reactions(bob, original, [["👍", 1, False]])
        await wait_reactions(alice, original, [["👍", 1, True]])
        await bob.click(f"#log li[data-id='{original}'] .reaction[data-emoji='👍']")
        await wait_reactions(alice, original, [["👍", 2, True]])
        await alice.click(f"#log li[data-id='{original}'] .reaction[data-emoji='👍']")
        await wait_reactions(bob, original, [["👍", 1, True]])
        await wait_reactions(alice, original, [["👍", 1, False]])

        # Typing: alice types, bob is told; clearing the box takes it back; a line ends it.
        await alice.type("#line", "thinking", enter=False)
        await bob.wait_js(TYPING + " === 'alice is typing…'", what="alice typing")
        await alice.keys("#line", "\ue009a\ue009\ue003")  # Ctrl+A, Backspace
        await bob.wait_js(TYPING + " === ''", what="alice stopped typing")
        await alice.type("#line", "done thinking", enter=False)
        await bob.wait_js(TYPING + " === 'alice is typing…'", what="alice typing again")
        await alice.keys("#line", "\ue007")  # Enter
        await bob.wait_log("alice done thinking")
        assert await bob.js(TYPING) == ""
        assert await alice.js(TYPING) == ""  # never one's own

        # Bob edits his line in the message box, with the keyboard: Shift+Tab from the
        # message box into the messages, Up to his line, E.
        await bob.keys("#line", "\ue008\ue004\ue008")  # Shift+Tab
        assert await bob.js(
            "return document.getElementById('log').contains(document.activeElement)"
        )
        for _ in range(3):
            await bob.press("\ue013")  # Up (at most to the first line)
        assert await bob.js("return document.querySelector('#log li.selected')?.dataset.id") == str(
            original
        )
        await bob.press("e")
        await bob.wait_js(
            "return document.getElementById('line').value === 'original words'",
            what="the text to edit in the box",
        )
        await bob.type("#line", "better words")
        edit = await watcher.expect("edit", target=original)
        assert (edit["nick"], edit["text"]) == ("bob", "better words")
        await alice.wait_js(
            LINE_TEXT + " === 'bob better words (edited)👍1'",
            original,
            what="the edit on alice's page",
        )

        # And deletes it, after saying yes.
        await act_on(bob, original, "delete")
        await bob.wait_js("return document.activeElement.id === 'compose-ok'", what="confirm")
        assert "better words" in await bob.js(
            "return document.getElementById('compose-text').textContent"
        )
        await bob.click("#compose-ok")
        await alice.wait_js(
            LINE_TEXT + " === 'bob message deleted'", original, what="the delete on alice's page"
        )
        await watcher.expect("delete", target=original)
        # The reply keeps who it answered, not the words.
        await alice.wait_js(
            LINE_TEXT + " === 'bob: message deletedalice a reply'", reply, what="quote blanked"
        )
        # A deleted line has no actions left.
        await alice.hover(f"#log li[data-id='{original}']")
        assert await alice.js(
            "const bar = document.getElementById('msg-actions');"
            " return bar.hidden || bar.parentElement.dataset.id !== String(arguments[0])",
            original,
        )

        # Bob, the operator, may delete alice's reply (not edit it), and does.
        await act_on(bob, reply, "delete")
        assert await actions(bob) == ["reply", "react", "delete"]
        await bob.click("#compose-ok")
        await alice.wait_js(
            LINE_TEXT + " === 'alice message deleted'", reply, what="the operator's delete"
        )
        assert (await watcher.expect("delete", target=reply))["nick"] == "bob"
    await watcher.aclose()


async def test_changes_made_while_away_are_applied_after_a_restart(
    drivers: list[Any], tmp_path: Path
) -> None:
    """The page sees four lines of carol's; the server stops; carol, on a server the page
    cannot reach, edits one, deletes one and reacts to one; when the page is back it shows
    all three changes (history with changed_after), and the line said meanwhile."""
    db = str(tmp_path / "chat.db")
    lines = ["keep me", "edit me", "delete me", "react to me"]
    async with running(config(db)) as first:
        assert first.ws is not None
        ws_port = first.ws[1]
        carol = await first.tcp_client("carol")
        await carol.send({"type": "command", "name": "register", "args": "carol-pass"})
        await carol.expect("info")
        page = Page(drivers[0])
        await page.open(first.url)
        await page.js("localStorage.clear()")
        await page.open(first.url)
        await log_in(page, "webby")
        ids = {}
        for text in lines:
            await carol.send({"type": "say", "text": text})
            ids[text] = (await carol.expect("message", text=text))["id"]
        await page.wait_log("carol react to me")
        await carol.aclose()

    async with running(config(db, ws_port=None)) as outage:
        carol = await JsonLineClient.connect(*outage.tcp)
        await carol.send({"type": "hello", "nick": "carol", "password": "carol-pass"})
        await carol.expect("welcome")
        await carol.send({"type": "edit", "id": ids["edit me"], "text": "edited meanwhile"})
        await carol.send({"type": "delete", "id": ids["delete me"]})
        await carol.send({"type": "react", "id": ids["react to me"], "emoji": "🎉"})
        await carol.send({"type": "say", "text": "said meanwhile"})
        await carol.expect("message", text="said meanwhile")
        await carol.aclose()

    async with running(config(db, ws_port=ws_port)):
        await page.wait_js(CONNECTED, what="reconnected by itself")
        await page.wait_log("carol said meanwhile")
        await page.wait_js(
            LINE_TEXT + " === 'carol edited meanwhile (edited)'", ids["edit me"], what="the edit"
        )
        await page.wait_js(
            LINE_TEXT + " === 'carol message deleted'", ids["delete me"], what="the delete"
        )
        await wait_reactions(page, ids["react to me"], [["🎉", 1, False]])
        assert await page.js(LINE_TEXT, ids["keep me"]) == "carol keep me"
        await page.open("about:blank")


async def test_mentions_read_on_another_device_and_search(chat: Chat, drivers: list[Any]) -> None:
    """An account on three devices (a TCP connection and two pages): a line naming alice
    is marked; what one device reads is read on the others, both ways, and after a reload;
    the search box finds lines in her rooms, page by page."""
    phone = await chat.tcp_client("alice")
    await phone.send({"type": "command", "name": "register", "args": "s3cret-pass"})
    await phone.expect("info")
    await phone.send({"type": "command", "name": "join", "args": "#dev"})
    await phone.expect("join", room="#dev", nick="alice")
    # #lobby is the user's current room again: the page starts there, #dev unseen.
    await phone.send({"type": "command", "name": "join", "args": "#lobby", "ref": "j"})
    await phone.expect("info", ref="j")
    carol = await chat.tcp_client("carol")
    await carol.send({"type": "command", "name": "join", "args": "#dev"})
    await carol.expect("join", room="#dev", nick="carol")

    async def log_in_alice(page: Page) -> None:
        await page.type("#nick", "alice")
        await page.wait_js(
            "return !document.getElementById('password-row').hidden", what="the password field"
        )
        await page.type("#password", "s3cret-pass")
        await page.wait_js(CHAT_VISIBLE, what="alice's second connection")
        await switch(page, "#lobby")

    async with opened(drivers[0], chat.url) as page:
        await page.js("localStorage.clear()")
        await page.open(chat.url)
        await log_in_alice(page)
        async with opened(drivers[1], chat.url) as laptop:
            await laptop.js("localStorage.clear()")
            await laptop.open(chat.url)
            await log_in_alice(laptop)
            await carol.send({"type": "say", "room": "#dev", "text": "alice: look at this"})
            await carol.send({"type": "say", "room": "#dev", "text": "a plain line"})
            plain = (await phone.expect("message", text="a plain line"))["id"]
            for each in (page, laptop):
                await each.wait_js(badge("#dev") + " === 2", what="two unread in #dev")
                assert await each.js(badge("#dev", mentions=True)) == 1

            # The phone reads #dev: both pages' counts go.
            await phone.send({"type": "read", "room": "#dev", "id": plain})
            for each in (page, laptop):
                await each.wait_js(badge("#dev") + " === 0", what="#dev read on the phone")
            # The page reads #dev (shown, visible): the phone and the laptop are told.
            await switch(page, "#dev")
            assert "mention" in await page.js(
                "return [...document.querySelectorAll('#log li.say')]"
                ".find(li => li.textContent.includes('look at this')).className"
            )
            await carol.send({"type": "say", "room": "#dev", "text": "one more"})
            more = (await phone.expect("message", text="one more"))["id"]
            await laptop.wait_js(badge("#dev") + " === 1", what="one more, on the laptop")
            assert (await phone.expect("read", room="#dev"))["id"] == more
            await laptop.wait_js(badge("#dev") + " === 0", what="#dev read on the page")

        # Search: a page of 20, then the older ones.
        await carol.send_many(
            [{"type": "say", "room": "#lobby", "text": f"needle {n}"} for n in range(25)]
        )
        await phone.expect("message", text="needle 24")
        await page.type("#search-query", "needle")
        results = "return [...document.querySelectorAll('#results-list li.result')]"
        await page.wait_js(f"{results}.length === 20", what="20 results")
        first = await page.js(f"{results}[0].textContent")
        assert first.startswith("#lobby") and first.endswith("carol needle 24")
        assert await page.js("return document.getElementById('results-more').hidden") is False
        await page.click("#results-more")
        await page.wait_js(f"{results}.length === 25", what="all 25 results")
        assert await page.js(f"{results}.pop().textContent.endsWith('needle 0')") is True
        assert await page.js("return document.getElementById('results-more').hidden") is True
        await page.keys("#search-query", ESCAPE)
        await page.wait_js("return document.getElementById('results').hidden", what="closed")

        # While the page is away, carol says one line in #dev: after a reload the welcome's
        # read marker leaves exactly that one unread.
        await page.open("about:blank")
        await carol.send({"type": "say", "room": "#dev", "text": "while you were away"})
        await phone.expect("message", text="while you were away")
        await page.open(chat.url)
        await log_in_alice(page)
        await page.wait_js(badge("#dev") + " === 1", what="one unread in #dev after the reload")
    await phone.aclose()
    await carol.aclose()
