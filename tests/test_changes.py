"""Replies, edits, deletes and reactions: over real sockets (JSON lines, WebSocket, text
mode), the rules of who may, the store (SIGKILL, the migration), and the pure parts."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from test_history import running_server, sigkill
from test_hub import flatten, lobby_with, received
from test_store import database_at

from trio_chat.changes import (
    MAX_REACTIONS,
    BadEmoji,
    MessageIndex,
    apply_change,
    check_emoji,
    cut_quote,
    quote_gone,
)
from trio_chat.protocol import (
    Message,
    MessageDeleted,
    MessageEdited,
    Reaction,
    decode_client_frame,
)
from trio_chat.store import Store
from trio_chat.store.schema import MIGRATIONS, _message_changes
from trio_chat.testing import ChatClient, local_config, open_client, open_test_server

TIMEOUT = 15


async def said(client: ChatClient, text: str, **fields: Any) -> Any:
    """Say ``text`` (with ``fields``, e.g. ``reply_to``) and return its ``message``."""
    await client.send({"type": "say", "text": text, **fields})
    return await client.expect("message", lambda m: m.text == text)


async def error_of(client: ChatClient, frame: dict[str, Any]) -> Any:
    await client.send({**frame, "ref": "x"})
    return await client.expect("error", lambda e: e.ref == "x")


async def history(client: ChatClient, **fields: Any) -> list[dict[str, Any]]:
    """A page of history: by default every line delivered so far (``before`` a big id)."""
    if not fields:
        fields = {"before": 10**9}
    await client.send({"type": "history", "ref": "h", **fields})
    page = await client.expect("history", lambda h: h.ref == "h")
    return list(page.messages)


# ------------------------------------------------------------------------ pure parts


def test_frames_decode_with_their_fields_checked() -> None:
    edit = decode_client_frame(b'{"type":"edit","id":4,"text":"new"}')
    assert (edit.id, edit.text, edit.room) == (4, "new", None)  # type: ignore[union-attr]
    react = decode_client_frame(b'{"type":"react","id":4,"emoji":"\xf0\x9f\x91\x8d"}')
    assert (react.emoji, react.on) == ("👍", True)  # type: ignore[union-attr]
    off = decode_client_frame(b'{"type":"react","id":4,"emoji":"+1","on":false}')
    assert off.on is False  # type: ignore[union-attr]
    say = decode_client_frame(b'{"type":"say","text":"yes","reply_to":3}')
    assert say.reply_to == 3  # type: ignore[union-attr]
    for bad in (
        b'{"type":"edit","id":-1,"text":"x"}',
        b'{"type":"edit","id":"4","text":"x"}',
        b'{"type":"delete","id":1.5}',
        b'{"type":"react","id":1,"emoji":"x","on":"yes"}',
        b'{"type":"say","text":"x","reply_to":true}',
    ):
        with pytest.raises(Exception, match="must be") as info:
            decode_client_frame(bad)
        assert info.value.code == "bad_field"  # type: ignore[attr-defined]
    with pytest.raises(Exception) as missing:
        decode_client_frame(b'{"type":"delete"}')
    assert missing.value.code == "missing_field"  # type: ignore[attr-defined]


@pytest.mark.parametrize("emoji", ["👍", "❤️", "👩‍👩‍👧", "🇫🇷", "+1", "lol", "👍🏽"])
def test_an_emoji_or_short_token_is_a_reaction(emoji: str) -> None:
    assert check_emoji(emoji) == emoji


@pytest.mark.parametrize("emoji", ["", "a b", "x\u200b", "\u202eabc", "x" * 33, "👍" * 9, "a\tb"])
def test_spaces_invisible_characters_and_long_tokens_are_no_reaction(emoji: str) -> None:
    with pytest.raises(BadEmoji):
        check_emoji(emoji)


def test_a_quote_is_cut_to_a_hundred_characters() -> None:
    assert cut_quote("short") == "short"
    assert cut_quote("x" * 100) == "x" * 100
    cut = cut_quote("y" * 150)
    assert len(cut) == 100 and cut.endswith("…")


def test_the_current_state_follows_edits_reactions_and_a_delete() -> None:
    line = {"type": "message", "id": 5, "ts": 1.0, "room": "#a", "nick": "al", "text": "hi"}
    edited = apply_change(
        line, MessageEdited(id=6, ts=2.0, room="#a", nick="al", target=5, text="hello")
    )
    assert line["text"] == "hi"  # a page already sent keeps its dict
    assert (edited["text"], edited["edited"], edited["changed"]) == ("hello", 2.0, 6)

    def react(state: dict[str, Any], id_: int, nick: str, emoji: str, on: bool) -> dict[str, Any]:
        change = Reaction(id=id_, ts=3.0, room="#a", nick=nick, target=5, emoji=emoji, on=on)
        return apply_change(state, change)

    state = react(edited, 7, "bob", "👍", True)
    state = react(state, 8, "Cy", "👍", True)
    state = react(state, 9, "bob", "👍", True)  # again: nothing changes but `changed`
    state = react(state, 10, "bob", "🎉", True)
    assert state["reactions"] == {"👍": ["bob", "Cy"], "🎉": ["bob"]}
    state = react(state, 11, "CY", "👍", False)  # a nick compared by key
    state = react(state, 12, "bob", "🎉", False)
    assert state["reactions"] == {"👍": ["bob"]} and state["changed"] == 12
    gone = apply_change(state, MessageDeleted(id=13, ts=4.0, room="#a", nick="op", target=5))
    assert gone["text"] == "" and gone["deleted"] is True and gone["changed"] == 13
    assert "reactions" not in gone and "edited" not in gone
    reply = {"id": 20, "reply_to": 5, "quote": {"nick": "al", "text": "hi"}}
    assert quote_gone(reply, 5)["quote"] == {"nick": "al", "text": ""}
    assert quote_gone(reply, 6) is reply


def test_the_index_knows_authors_of_the_latest_lines_only() -> None:
    index = MessageIndex(size=2)
    guest = SimpleNamespace(id=77, account=None)
    logged_in = SimpleNamespace(id=78, account="al")
    for n in range(1, 6):
        line = Message(id=n, ts=1.0, room="#A", nick="al", text=f"line {n}")
        said = SimpleNamespace(event=line, author=None, sender=logged_in if n % 2 else guest)
        index.add("#a", [said])
    remote = Message(id=6, ts=1.0, room="#a", nick="bo", text="from another node")
    index.add("#a", [SimpleNamespace(event=remote, author="bo", sender=None)])
    sixth = index.get("#a", 6)
    assert sixth is not None and sixth.written_by("bo", 1) and not sixth.written_by(None, 77)
    # At least the latest 2 are kept, at most 4: past 4, the oldest are dropped.
    assert index.get("#a", 1) is None and index.get("#a", 2) is None
    assert index.covers("#a", 1) is False and index.covers("#a", 4) is True
    assert index.covers("#b", 4) is False
    three, four = index.get("#a", 5), index.get("#a", 4)  # (2 to 6 kept)
    assert three is not None and four is not None
    assert three.written_by("al", 1) and not three.written_by(None, 77)  # an account's
    assert four.written_by(None, 77) and not four.written_by("al", 78)  # a guest session's
    assert not four.written_by(None, 78)


def test_the_index_keeps_a_line_out_of_order_in_its_place_and_only_its_quote() -> None:
    """Lines come in id order, but one that does not is put in its place (or over the
    one with its id), not after the latest; and what a quote shows is all that is kept of
    a long text."""
    index = MessageIndex(size=3)
    guest = SimpleNamespace(id=77, account=None)

    def add(n: int, text: str, nick: str = "al") -> None:
        line = Message(id=n, ts=1.0, room="#a", nick=nick, text=text)
        index.add("#a", [SimpleNamespace(event=line, author=None, sender=guest)])

    for n in (2, 4, 6):
        add(n, f"line {n} é 👍")
    add(5, "late ✓")
    add(4, "again", nick="bo")
    add(1, "x" * 500)
    assert [index.get("#a", n) is not None for n in range(1, 8)] == [
        True, True, False, True, True, True, False,
    ]  # fmt: skip
    four, five, one = index.get("#a", 4), index.get("#a", 5), index.get("#a", 1)
    assert four is not None and four.nick == "bo" and four.quote == "again"
    assert five is not None and five.quote == "late ✓" and five.written_by(None, 77)
    assert one is not None and one.quote == cut_quote("x" * 500)
    two, six = index.get("#a", 2), index.get("#a", 6)
    assert two is not None and two.quote == "line 2 é 👍"
    assert six is not None and six.quote == "line 6 é 👍" and six.nick == "al"
    assert index.get("#a", 4) is four  # made once, then kept
    # Past twice the size the oldest go, the latest 3 stay: 7 lines, then 8.
    add(7, "seven")
    assert index.get("#a", 1) is not None
    add(8, "eight")
    assert [n for n in range(1, 9) if index.get("#a", n) is not None] == [6, 7, 8]
    seven, eight = index.get("#a", 7), index.get("#a", 8)
    assert seven is not None and seven.quote == "seven"
    assert eight is not None and eight.quote == "eight"
    assert index.covers("#a", 6) and not index.covers("#a", 5)


@pytest.mark.parametrize("kept", [True, False], ids=["in memory", "older than memory"])
def test_an_edit_or_reaction_numbered_after_a_delete_reaches_nobody(kept: bool) -> None:
    """Checked before the delete was numbered (on another node, or while the message was
    read from the store), a change numbered after it is dropped as it is delivered: no
    member sees a deleted message edited, and its sender is told it was deleted."""
    hub, queue, (alice, bob) = lobby_with("alice", "bob")
    if not kept:
        hub.messages = MessageIndex(size=1)
    line = hub.say(alice, "#lobby", "soon gone")
    for n in range(4 * (not kept)):  # enough lines after it that it is forgotten
        hub.say(bob, "#lobby", f"line {n}")
    hub.deliver_many(queue)
    queue.clear()
    assert (hub.messages.get("#lobby", line.id) is not None) is kept
    for session in (alice, bob):
        received(session)
    room = hub.room("#lobby")
    assert room is not None
    hub.change(
        bob,
        room,
        lambda i, ts: MessageDeleted(id=i, ts=ts, room="#lobby", nick="bob", target=line.id),
    )
    hub.change(
        alice,
        room,
        lambda i, ts: MessageEdited(
            id=i, ts=ts, room="#lobby", nick="alice", target=line.id, text="x"
        ),
    )
    hub.change(
        alice,
        room,
        lambda i, ts: Reaction(
            id=i, ts=ts, room="#lobby", nick="alice", target=line.id, emoji="ok", on=True
        ),
    )
    hub.deliver_many(queue)

    seen = {s.nick: [e.TYPE for e in flatten(received(s))] for s in (alice, bob)}
    assert seen == {"alice": ["delete", "error", "error"], "bob": ["delete"]}
    assert hub.messages.was_deleted("#lobby", line.id)


# ------------------------------------------------------------------ over the wire


async def test_reply_edit_react_and_delete_reach_every_member_and_history() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(open_client(chat, "alice"))
        bob = await stack.enter_async_context(open_client(chat, "bob", websocket=True))
        await alice.expect("join", lambda e: e.nick == "bob")
        first = await said(alice, "x" * 120)
        await bob.expect("message", lambda m: m.id == first.id)
        reply = await said(bob, "yes", reply_to=first.id)
        assert reply.reply_to == first.id
        assert reply.quote == {"nick": "alice", "text": "x" * 99 + "…"}
        got = await alice.expect("message", lambda m: m.id == reply.id)
        assert got.quote == reply.quote

        await alice.send({"type": "edit", "id": first.id, "text": "fixed"})
        for client in (alice, bob):
            edit = await client.expect("edit")
            assert (edit.target, edit.text, edit.nick, edit.room) == (
                first.id,
                "fixed",
                "alice",
                "#lobby",
            )
            assert edit.id > reply.id
        await bob.send({"type": "react", "id": first.id, "emoji": "👍"})
        for client in (alice, bob):
            reaction = await client.expect("reaction")
            assert (reaction.nick, reaction.emoji, reaction.on) == ("bob", "👍", True)
        await alice.send({"type": "react", "id": first.id, "emoji": "🎉"})
        await bob.expect("reaction", lambda r: r.emoji == "🎉")

        page = await history(bob)
        line = next(m for m in page if m["id"] == first.id)
        assert line["text"] == "fixed" and line["edited"] > first.ts
        assert line["reactions"] == {"👍": ["bob"], "🎉": ["alice"]}
        assert line["changed"] > edit.id
        answer = next(m for m in page if m["id"] == reply.id)
        assert answer["reply_to"] == first.id and answer["quote"]["nick"] == "alice"

        await alice.send({"type": "delete", "id": first.id})
        for client in (alice, bob):
            deleted = await client.expect("delete")
            assert (deleted.target, deleted.nick) == (first.id, "alice")
        page = await history(bob)
        line = next(m for m in page if m["id"] == first.id)
        assert line["deleted"] is True and line["text"] == "" and "reactions" not in line
        assert next(m for m in page if m["id"] == reply.id)["quote"]["text"] == ""
        # A deleted message is no more: nothing can be done to it.
        for frame in (
            {"type": "edit", "id": first.id, "text": "again"},
            {"type": "react", "id": first.id, "emoji": "👍"},
            {"type": "delete", "id": first.id},
            {"type": "say", "text": "re", "reply_to": first.id},
        ):
            assert (await error_of(alice, frame)).code == "no_such_message"


async def test_a_joiner_and_a_returning_client_see_the_current_state() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(open_client(chat, "alice"))
        lines = [await said(alice, f"line {n}") for n in range(3)]
        await alice.send({"type": "edit", "id": lines[0].id, "text": "line zero"})
        edit = await alice.expect("edit")
        await alice.send({"type": "react", "id": lines[1].id, "emoji": "ok"})
        react = await alice.expect("reaction")
        await alice.send({"type": "delete", "id": lines[2].id})
        delete = await alice.expect("delete")
        carol = await stack.enter_async_context(open_client(chat, "carol", websocket=True))
        page = await carol.expect("history")  # the join page, from memory
        state = {m["id"]: m for m in page.messages}
        assert state[lines[0].id]["text"] == "line zero"
        assert state[lines[1].id]["reactions"] == {"ok": ["alice"]}
        assert state[lines[2].id]["deleted"] is True
        # A client that saw the lines before catches up with their changes.
        changed = await history(carol, changed_after=lines[2].id)
        assert [m["id"] for m in changed] == [lines[0].id, lines[1].id, lines[2].id]
        assert [m["changed"] for m in changed] == [edit.id, react.id, delete.id]
        paged = await history(carol, changed_after=edit.id, limit=1)
        assert [m["id"] for m in paged] == [lines[1].id]


async def test_only_the_author_edits_and_an_operator_may_delete() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(open_client(chat, "alice"))
        await alice.command("/join #dev")  # alice made #dev: its operator
        await alice.expect("join", lambda e: e.room == "#dev")
        bob = await stack.enter_async_context(open_client(chat, "bob"))
        await bob.command("/join #dev")
        await alice.expect("join", lambda e: e.nick == "bob" and e.room == "#dev")
        line = await said(bob, "bob's line", room="#dev")
        refused = await error_of(
            alice, {"type": "edit", "id": line.id, "text": "x", "room": "#dev"}
        )
        assert refused.code == "not_allowed"
        carol = await stack.enter_async_context(open_client(chat, "carol"))
        await carol.command("/join #dev")
        await bob.expect("join", lambda e: e.nick == "carol" and e.room == "#dev")
        refused = await error_of(carol, {"type": "delete", "id": line.id, "room": "#dev"})
        assert refused.code == "not_allowed"
        # A line of another room, and an id that is no line, are not in #dev.
        lobby = await said(carol, "in the lobby", room="#lobby")
        for id_ in (lobby.id, line.id + 10_000):
            missing = await error_of(alice, {"type": "delete", "id": id_, "room": "#dev"})
            assert missing.code == "no_such_message"
        await alice.send({"type": "delete", "id": line.id, "room": "#dev"})
        deleted = await bob.expect("delete")
        assert (deleted.nick, deleted.target) == ("alice", line.id)


async def test_a_muted_user_deletes_but_neither_edits_nor_reacts_and_a_banned_one_nothing() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(open_client(chat, "alice"))
        await alice.join("#dev")  # alice made #dev (its operator) before bob comes
        bob = await stack.enter_async_context(open_client(chat, "bob"))
        await bob.command("/join #dev")
        await alice.expect("join", lambda e: e.nick == "bob" and e.room == "#dev")
        first = await said(bob, "one", room="#dev")
        second = await said(bob, "two", room="#dev")
        await alice.send({"type": "command", "name": "mute", "args": "bob", "room": "#dev"})
        await bob.expect("info", lambda i: "muted" in i.text)
        for frame in (
            {"type": "edit", "id": first.id, "text": "x", "room": "#dev"},
            {"type": "react", "id": first.id, "emoji": "👍", "room": "#dev"},
            {"type": "say", "text": "re", "reply_to": first.id, "room": "#dev"},
        ):
            assert (await error_of(bob, frame)).code == "not_allowed"
        await bob.send({"type": "delete", "id": first.id, "room": "#dev"})
        assert (await alice.expect("delete")).target == first.id
        await alice.send({"type": "command", "name": "ban", "args": "bob", "room": "#dev"})
        await bob.expect("leave", lambda e: e.nick == "bob" and e.room == "#dev")
        refused = await error_of(bob, {"type": "delete", "id": second.id, "room": "#dev"})
        assert refused.code == "not_in_room"


async def test_a_guests_lines_are_not_theirs_who_registers_the_nick_later() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        bob = await stack.enter_async_context(open_client(chat, "bob"))
        async with open_client(chat, "alice") as guest:
            line = await said(guest, "said as a guest")
            # The same guest session may edit it.
            await guest.send({"type": "edit", "id": line.id, "text": "edited as a guest"})
            await bob.expect("edit", lambda e: e.target == line.id)
        await bob.expect("leave", lambda e: e.nick == "alice")
        async with open_client(chat) as owner:
            await owner.login("alice", password="secret-pass", register=True)
            for frame in (
                {"type": "edit", "id": line.id, "text": "mine now?"},
                {"type": "delete", "id": line.id},
            ):
                assert (await error_of(owner, frame)).code == "not_allowed"
            # An account's line is the account's, on each of its connections.
            own = await said(owner, "said with an account")
            async with open_client(chat) as phone:
                await phone.login("alice", password="secret-pass")
                await phone.send({"type": "edit", "id": own.id, "text": "from the phone"})
                assert (await bob.expect("edit")).target == own.id


async def test_three_connections_of_one_account_each_see_and_make_changes() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        bob = await stack.enter_async_context(open_client(chat, "bob"))
        laptop = await stack.enter_async_context(open_client(chat))
        await laptop.login("alice", password="secret-pass", register=True)
        phone = await stack.enter_async_context(open_client(chat, websocket=True))
        await phone.login("alice", password="secret-pass", batch=True)
        tab = await stack.enter_async_context(open_client(chat, websocket=True))
        await tab.login("alice", password="secret-pass")
        devices = (laptop, phone, tab)
        line = await said(bob, "for alice")
        for device in devices:
            await device.expect("message", lambda m: m.id == line.id)
        # (The phone asked for batches: what waits for it comes in "batch" messages.)
        await phone.send({"type": "say", "text": "from the phone", "reply_to": line.id})
        await tab.send({"type": "react", "id": line.id, "emoji": "👍"})
        reply = await laptop.expect("message", lambda m: m.text == "from the phone")
        await laptop.send({"type": "edit", "id": reply.id, "text": "edited on the laptop"})
        await tab.expect("edit")
        await tab.send({"type": "delete", "id": reply.id})
        for client in (*devices, bob):
            seen: dict[str, Any] = {
                e.TYPE: e for e in client.history if e.TYPE in ("reaction", "edit", "delete")
            }
            while len(seen) < 3:
                event = await client.receive()
                if event.TYPE in ("reaction", "edit", "delete"):
                    seen[event.TYPE] = event
            assert seen["reaction"].target == line.id
            assert seen["edit"].target == seen["delete"].target == reply.id
            assert seen["edit"].id < seen["delete"].id
            assert {e.nick for e in seen.values()} == {"alice"}


async def test_text_mode_shows_ids_and_changes_as_lines() -> None:
    async with open_test_server() as chat, contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(open_client(chat, "alice"))
        stream = await stack.enter_async_context(await trio.open_tcp_stream(*chat.address("tcp")))
        await stream.send_all(b"tina\n")
        seen = b""

        async def wait_for(piece: bytes) -> bytes:
            nonlocal seen
            with trio.fail_after(TIMEOUT):
                while piece not in seen:
                    seen += await stream.receive_some(65536)
            return seen

        await alice.expect("join", lambda e: e.nick == "tina")
        line = await said(alice, "hello tina")
        await wait_for(b"] <alice> hello tina")
        assert f" #{line.id}] <alice> hello tina".encode() in seen
        await stream.send_all(f"/reply {line.id} hi alice\n".encode())
        reply = await alice.expect("message", lambda m: m.nick == "tina")
        assert reply.reply_to == line.id and reply.text == "hi alice"
        await wait_for(f"<tina> (re #{line.id} alice: hello tina) hi alice".encode())
        await stream.send_all(f"/react #{line.id} 👍\n/edit {reply.id} hi there\n".encode())
        await wait_for(f"* tina reacted 👍 to message {line.id}".encode())
        await wait_for(f"* tina edited message {reply.id}: hi there".encode())
        await alice.send({"type": "delete", "id": line.id})
        await wait_for(f"* alice deleted message {line.id}".encode())
        await stream.send_all(f"/unreact {line.id} 👍\n/edit {line.id} x\n/history\n".encode())
        await wait_for(f"!! there is no message {line.id} in #lobby".encode())
        await wait_for(b"-- history of #lobby:")
        await wait_for(b"hi there (edited)")
        assert f" #{line.id}] <alice> (deleted)".encode() in seen
        assert f"(re #{line.id} alice: (deleted)) hi there (edited)".encode() in seen
        await stream.send_all(b"/edit twelve words\n/react 1\n")
        await wait_for(b"!! 'twelve' is no message id; usage: /edit ID TEXT")
        await wait_for(b"!! usage: /react ID EMOJI")


async def test_without_a_database_the_latest_lines_can_be_changed() -> None:
    async with open_test_server(config=local_config(db=None)) as chat:
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            line = await said(alice, "no db here")
            await bob.send({"type": "react", "id": line.id, "emoji": "👀"})
            assert (await alice.expect("reaction")).target == line.id
            await alice.send({"type": "edit", "id": line.id, "text": "still none"})
            assert (await bob.expect("edit")).text == "still none"
            refused = await error_of(bob, {"type": "history", "changed_after": 0})
            assert refused.code == "no_store"


async def test_reactions_are_capped_per_message_and_a_repeat_sends_nothing() -> None:
    async with open_test_server() as chat:
        async with open_client(chat, "alice") as alice:
            line = await said(alice, "react to me")
            for n in range(MAX_REACTIONS):
                await alice.send({"type": "react", "id": line.id, "emoji": f"e{n}"})
            for n in range(MAX_REACTIONS):
                await alice.expect("reaction", lambda r, n=n: r.emoji == f"e{n}")  # type: ignore[misc]
            refused = await error_of(alice, {"type": "react", "id": line.id, "emoji": "more"})
            assert refused.code == "not_allowed" and str(MAX_REACTIONS) in refused.text
            bad = await error_of(alice, {"type": "react", "id": line.id, "emoji": "two words"})
            assert bad.code == "bad_field"
            await alice.send({"type": "react", "id": line.id, "emoji": "e0"})  # already
            await alice.send({"type": "react", "id": line.id, "emoji": "e1", "on": False})
            taken = await alice.expect("reaction")
            assert (taken.emoji, taken.on) == ("e1", False)  # the repeat sent nothing
            page = await history(alice)
            assert len(next(m for m in page if m["id"] == line.id)["reactions"]) == 19


async def test_a_message_older_than_memory_is_found_in_the_store(tmp_path: Path) -> None:
    config = local_config(db=str(tmp_path / "chat.db"))
    async with open_test_server(config=config) as chat:
        async with open_client(chat, "alice") as alice:
            line = await said(alice, "old words")
    async with open_test_server(config=config) as chat:  # a restart: memory is empty
        async with open_client(chat, "bob") as bob:
            reply = await said(bob, "answer", reply_to=line.id)
            assert reply.quote == {"nick": "alice", "text": "old words"}
            # alice was a guest: her line is nobody's to edit now; an operator's to delete.
            refused = await error_of(bob, {"type": "edit", "id": line.id, "text": "x"})
            assert refused.code == "not_allowed"


# ------------------------------------------------------------------------- the store


def test_the_migration_keeps_old_messages_and_adds_changes(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = database_at(path, MIGRATIONS.index(_message_changes))
    conn.execute(
        "INSERT INTO messages (id, ts, room, sender, text, kind, conv)"
        " VALUES (1, 1.0, '#Lobby', 'alice', 'from before', 'say', 'r:#lobby')"
    )
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    if "message_words" in tables:  # search's index, if it came first: as the store keeps it
        conn.execute("INSERT INTO message_words (message_words) VALUES ('rebuild')")
    conn.close()

    async def check() -> None:
        async with Store.open(path) as store:
            (old,) = await store.history("#lobby")
            assert (old.text, old.sender_account, old.deleted, old.changed) == (
                "from before",
                None,
                False,
                None,
            )
            edit = MessageEdited(id=5, ts=2.0, room="#lobby", nick="op", target=1, text="new")
            react = Reaction(id=6, ts=3.0, room="#lobby", nick="bob", target=1, emoji="👍", on=True)
            await store.write_many([edit, react])
            (now,) = await store.history("#lobby")
            assert (now.text, now.edited, now.changed, now.reactions) == (
                "new",
                2.0,
                6,
                {"👍": ["bob"]},
            )
            await store.write_many(
                [MessageDeleted(id=7, ts=4.0, room="#lobby", nick="op", target=1)]
            )
            changed = await store.changed_history("#lobby", changed_after=0)
            assert [(m.id, m.text, m.deleted, m.reactions) for m in changed] == [
                (1, "", True, None)
            ]

    trio.run(check)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT count(*) FROM reactions").fetchone() == (0,)
    assert raw.execute("SELECT text FROM messages").fetchall() == [("",)]


async def test_pruning_takes_the_reactions_of_pruned_messages(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "chat.db") as store:
        lines = [Message(id=n, ts=float(n), room="#a", nick="al", text=f"l{n}") for n in (1, 2)]
        from trio_chat.store.records import message_row

        await store.write_many([message_row(line) for line in lines])
        await store.write_many(
            [
                Reaction(id=3, ts=3.0, room="#a", nick="b", target=1, emoji="x", on=True),
                Reaction(id=4, ts=4.0, room="#a", nick="b", target=2, emoji="y", on=True),
            ]
        )
        assert await store.prune(1.5) == 1

    raw = sqlite3.connect(tmp_path / "chat.db")
    assert raw.execute("SELECT message_id FROM reactions").fetchall() == [(2,)]


CLI = [sys.executable, "-m", "trio_chat.cli"]


async def test_every_change_anyone_saw_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    async with running_server(db) as (process, port):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            frames = [{"type": "hello", "nick": "alice"}, {"type": "say", "text": "target"}]
            await stream.send_all(b"".join(json.dumps(f).encode() + b"\n" for f in frames))
            seen = b""
            with trio.fail_after(TIMEOUT):
                while b'"text":"target"' not in seen:
                    seen += await stream.receive_some(65536)
            target = next(json.loads(x)["id"] for x in seen.splitlines() if b'"text":"target"' in x)
            changes = [{"type": "say", "text": "re", "reply_to": target}]
            changes += [{"type": "react", "id": target, "emoji": f"r{n}"} for n in range(15)]
            changes += [{"type": "edit", "id": target, "text": f"edit {n}"} for n in range(30)]
            await stream.send_all(b"".join(json.dumps(f).encode() + b"\n" for f in changes))
            with trio.fail_after(TIMEOUT):
                while b'"text":"edit 29"' not in seen:
                    seen += await stream.receive_some(65536)
            await sigkill(process)  # no goodbye, no flush
    async with running_server(db) as (process, port):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b'{"type":"hello","nick":"bob"}\n')
            got = b""
            with trio.fail_after(TIMEOUT):
                while b'"type":"history"' not in got:
                    got += await stream.receive_some(65536)
        page = next(json.loads(x) for x in got.splitlines() if b'"type":"history"' in x)
        line = next(m for m in page["messages"] if m["id"] == target)
        assert line["text"] == "edit 29"
        assert list(line["reactions"]) == [f"r{n}" for n in range(15)]
        reply = next(m for m in page["messages"] if m.get("reply_to") == target)
        assert reply["quote"] == {"nick": "alice", "text": "target"}


async def test_history_export_keeps_working_with_changed_messages(tmp_path: Path) -> None:
    config = local_config(db=str(tmp_path / "chat.db"))
    async with open_test_server(config=config) as chat:
        async with open_client(chat, "alice") as alice:
            line = await said(alice, "to be edited")
            await alice.send({"type": "edit", "id": line.id, "text": "edited"})
            await alice.expect("edit")
    result = await trio.run_process(
        [*CLI, "history", "export", "--room", "#lobby", "--db", str(tmp_path / "chat.db")],
        capture_stdout=True,
        env={**os.environ},
    )
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert rows[-1]["text"] == "edited" and rows[-1]["edited"] > line.ts


# ------------------------------------------------------------- IRC, and across nodes


async def test_irc_members_read_replies_and_changes_in_words() -> None:
    from test_irc import open_irc

    async with (
        open_test_server(config=local_config(irc_port=0)) as chat,
        open_irc(chat, "ivy") as ivy,
        open_client(chat, "jay") as jay,
    ):
        await ivy.expect("JOIN", lambda m: m.source.startswith("jay!"))
        line = await said(jay, "shall we ship?")
        await ivy.expect("PRIVMSG", lambda m: m.params[-1] == "shall we ship?")
        await said(jay, "yes", reply_to=line.id)
        await ivy.expect("PRIVMSG", lambda m: m.params[-1] == "(re jay: shall we ship?) yes")
        await jay.send({"type": "edit", "id": line.id, "text": "ship it?"})
        seen = await ivy.expect("NOTICE", lambda m: m.params[0] == "#lobby")
        assert seen.source.startswith("jay!")
        assert seen.params[-1] == f"* jay edited message {line.id}: ship it?"
        await ivy.send(f"REACT {line.id} 👍")  # a chat command, as /quote sends it
        reaction = await jay.expect("reaction")
        assert (reaction.nick, reaction.emoji, reaction.target) == ("ivy", "👍", line.id)
        seen = await ivy.expect("NOTICE", lambda m: "reacted" in m.params[-1])
        assert seen.params[-1] == f"* ivy reacted 👍 to message {line.id}"
        await jay.send({"type": "delete", "id": line.id})
        seen = await ivy.expect("NOTICE", lambda m: "deleted" in m.params[-1])
        assert seen.params[-1] == f"* jay deleted message {line.id}"


async def test_changes_and_authors_cross_the_nodes_of_a_broker(broker_url: str) -> None:
    async with contextlib.AsyncExitStack() as stack:
        a, b = [
            await stack.enter_async_context(
                open_test_server(config=local_config(broker=broker_url))
            )
            for _ in range(2)
        ]
        alice = await stack.enter_async_context(open_client(a))
        await alice.login("alice", password="secret-pass", register=True)
        bob = await stack.enter_async_context(open_client(b, "bob", websocket=True))
        await alice.expect("join", lambda e: e.nick == "bob")
        line = await said(alice, "from node a")
        reply = await said(bob, "from node b", reply_to=line.id)
        assert reply.quote == {"nick": "alice", "text": "from node a"}
        await bob.send({"type": "react", "id": line.id, "emoji": "🚀"})
        for client in (alice, bob):
            reaction = await client.expect("reaction")
            assert (reaction.nick, reaction.target) == ("bob", line.id)
        refused = await error_of(bob, {"type": "edit", "id": line.id, "text": "x"})
        assert refused.code == "not_allowed"
        await alice.send({"type": "edit", "id": line.id, "text": "edited on a"})
        ids = [(await client.expect("edit")).id for client in (alice, bob)]
        assert ids[0] == ids[1]  # the same change, with the same id, on both nodes
        # alice's line is her account's on node b too: from a connection there, she edits.
        await alice.aclose()
        await bob.expect("leave", lambda e: e.nick == "alice")
        again = await stack.enter_async_context(open_client(b))
        await again.login("alice", password="secret-pass")
        await again.send({"type": "edit", "id": line.id, "text": "edited on b"})
        assert (await bob.expect("edit", lambda e: e.text == "edited on b")).target == line.id
        page = await history(bob)
        state = next(m for m in page if m["id"] == line.id)
        assert state["text"] == "edited on b" and state["reactions"] == {"🚀": ["bob"]}


async def test_message_filters_see_replies_and_edits_and_a_private_message_is_no_target() -> None:
    import trio_chat
    from trio_chat.commands import CommandError

    class NoShouting:
        @trio_chat.hookimpl
        def filter_message(self, session: Any, room: str, text: str) -> str | None:
            if "forbidden" in text:
                raise CommandError("that word is not allowed here", "message_refused")
            return text.replace("darn", "d**n")

    async with open_test_server(NoShouting()) as chat:
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            line = await said(alice, "hello")
            await alice.send({"type": "edit", "id": line.id, "text": "darn it"})
            assert (await bob.expect("edit")).text == "d**n it"
            refused = await error_of(alice, {"type": "edit", "id": line.id, "text": "forbidden"})
            assert refused.code == "message_refused"
            await bob.send({"type": "say", "text": "darn right", "reply_to": line.id})
            reply = await bob.expect("message", lambda m: m.reply_to == line.id)
            assert reply.text == "d**n right" and reply.quote["text"] == "d**n it"
            await bob.command("/msg alice psst")
            private = await alice.expect("private")
            for frame in (
                {"type": "delete", "id": private.id},
                {"type": "say", "text": "re", "reply_to": private.id},
            ):
                assert (await error_of(bob, frame)).code == "no_such_message"


async def test_search_finds_the_edited_words_and_never_a_deleted_line() -> None:
    async with open_test_server() as chat, open_client(chat, "alice") as alice:
        edited = await said(alice, "the secret plan")
        deleted = await said(alice, "another secret")
        await alice.send({"type": "edit", "id": edited.id, "text": "the public plan"})
        await alice.expect("edit")
        await alice.send({"type": "delete", "id": deleted.id})
        await alice.expect("delete")

        async def found(words: str) -> list[str]:
            await alice.send({"type": "search", "query": words, "ref": words})
            return [m["text"] for m in (await alice.expect("search")).messages]

        assert await found("secret") == []
        assert await found("public") == ["the public plan"]


def files_holding(db: Path, text: bytes) -> list[str]:
    """Which of the database's files (itself, its write-ahead log) hold ``text``."""
    return [
        path.name
        for path in (db, db.with_name(db.name + "-wal"))
        if path.exists() and text in path.read_bytes()
    ]


async def test_a_deleted_text_is_gone_from_the_database_files_once_its_delete_is_seen(
    tmp_path: Path,
) -> None:
    db = tmp_path / "chat.db"
    secret = b"my zqx bank pin is 4711"
    async with open_test_server(config=local_config(db=str(db))) as chat:
        async with open_client(chat, "alice") as alice:
            line = await said(alice, secret.decode())
            assert files_holding(db, secret)  # the committed line is on disk, in the log
            await alice.send({"type": "delete", "id": line.id})
            await alice.expect("delete")
            # The delete was told after its commit, which emptied the log of the old
            # pages; secure_delete zeroed the text in the page that replaced them.
            assert files_holding(db, secret) == []
            assert (await history(alice))[-1]["deleted"] is True


async def test_a_reader_in_the_log_puts_off_its_emptying_to_the_next_checkpoint(
    tmp_path: Path,
) -> None:
    from trio_chat.store.records import message_row

    db = tmp_path / "chat.db"
    secret = b"the zqx launch code 0000"
    async with Store.open(db, checkpoint_every=None) as store:
        await store.write_many(
            [message_row(Message(id=1, ts=1.0, room="#a", nick="al", text=secret.decode()))]
        )
        reader = sqlite3.connect(db)
        try:
            reader.execute("BEGIN")
            assert reader.execute("SELECT count(*) FROM messages").fetchone() == (1,)
            delete = MessageDeleted(id=2, ts=2.0, room="#a", nick="al", target=1)
            await store.write_many([delete])
            assert files_holding(db, secret) == ["chat.db-wal"]  # the reader holds the log
        finally:
            reader.close()
        assert await store.checkpoint() == 0
        assert files_holding(db, secret) == []
        await store.write_many([message_row(Message(id=3, ts=3.0, room="#a", nick="al", text="x"))])
        assert await store.checkpoint() == 0  # and after that, checkpoints as before


async def test_a_log_that_cannot_be_emptied_leaves_the_delete_standing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_chat.store import writer
    from trio_chat.store.records import message_row

    def disk_full(conn: sqlite3.Connection) -> bool:
        raise sqlite3.OperationalError("database or disk is full")

    db = tmp_path / "chat.db"
    secret = b"the zqx vault combination"
    async with Store.open(db, checkpoint_every=None) as store:
        line = Message(id=1, ts=1.0, room="#a", nick="al", text=secret.decode())
        await store.write_many([message_row(line)])
        with monkeypatch.context() as patched:
            patched.setattr(writer, "empty_log", disk_full)
            await store.write_many([MessageDeleted(id=2, ts=2.0, room="#a", nick="al", target=1)])
        (kept,) = await store.history("#a", limit=10)
        assert kept.deleted and kept.text == ""  # committed, whatever the log's emptying did
        assert files_holding(db, secret) == ["chat.db-wal"]
        assert await store.checkpoint() == 0  # the next checkpoint empties it
        assert files_holding(db, secret) == []
