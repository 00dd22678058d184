"""What a room is told beyond its lines, over real sockets, for IRC and JSON members alike:
rule changes (``MODE`` / a ``mode`` info), away changes for those who asked
(``away-notify``), and part reasons."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from test_irc import IrcClient, open_irc

from trio_chat.irc import numerics as n
from trio_chat.irc.message import IrcMessage
from trio_chat.testing import ChatClient, TestServer, local_config, open_client, open_test_server


@pytest.fixture
async def chat() -> AsyncIterator[TestServer]:
    async with open_test_server(config=local_config(irc_port=0)) as server:
        yield server


async def lines_until_said(irc: IrcClient, text: str) -> list[IrcMessage]:
    """Every line the server sends before the chat line ``text`` (which a member says
    after the events looked for: the hub delivers a room's events in order)."""
    lines = []
    while True:
        line = await irc.next_line()
        assert line is not None
        if line.command == "PRIVMSG" and line.params[-1] == text:
            return lines
        lines.append(line)


def mode_data(by: str, nick: str, rule: str, on: bool) -> dict[str, object]:
    return {"event": "mode", "room": "#mod", "by": by, "nick": nick, "rule": rule, "on": on}


async def test_rule_changes_are_told_to_the_whole_room(chat: TestServer) -> None:
    async with (
        open_irc(chat, "ivy") as ivy,
        open_irc(chat, "lee") as lee,
        open_client(chat, "jay") as jay,
        open_client(chat, "kay", websocket=True) as kay,
    ):
        await ivy.send("JOIN #mod")
        await ivy.expect(n.RPL_ENDOFNAMES, lambda m: m.params[1] == "#mod")
        await lee.send("JOIN #mod")
        await lee.expect(n.RPL_ENDOFNAMES, lambda m: m.params[1] == "#mod")
        for client in (jay, kay):
            await client.command("/join #mod")
            await client.expect("join", lambda e, nick=client.nick: e.nick == nick)
        await ivy.expect("JOIN", lambda m: m.source.startswith("kay!"))

        # An IRC operator's MODE: every member sees it, the operator once.
        await ivy.send("MODE #mod +o jay")
        seen = await lee.expect("MODE")
        assert (seen.source, seen.params) == ("ivy!ivy@trio-chat", ("#mod", "+o", "jay"))
        for client in (jay, kay):
            told = await client.expect("info", lambda e: e.data and e.data.get("event") == "mode")
            assert told.data == mode_data("ivy", "jay", "operator", True)
            assert told.text == "ivy made jay an operator of #mod"
            assert told.ref is None
        await jay.say("mark 1", room="#mod")
        modes = [m for m in await lines_until_said(ivy, "mark 1") if m.command == "MODE"]
        assert [m.params for m in modes] == [("#mod", "+o", "jay")]

        # A JSON operator's /mute: IRC members see +q from it.
        await jay.send({"type": "command", "name": "mute", "args": "lee", "room": "#mod"})
        told = await jay.expect("info", lambda e: e.data and e.data.get("event") == "mode")
        assert told.data == mode_data("jay", "lee", "muted", True)
        for irc in (ivy, lee):
            seen = await irc.expect("MODE")
            assert (seen.source, seen.params) == ("jay!jay@trio-chat", ("#mod", "+q", "lee"))
        told = await kay.expect("info", lambda e: e.data and e.data.get("event") == "mode")
        assert told.data == mode_data("jay", "lee", "muted", True)
        await jay.send({"type": "command", "name": "unmute", "args": "lee", "room": "#mod"})
        assert (await lee.expect("MODE")).params == ("#mod", "-q", "lee")

        # A ban: the mask, then the kick, in that order, for IRC and JSON members.
        await ivy.send("MODE #mod +b kay!*@*")
        ban = await lee.expect("MODE")
        assert ban.params == ("#mod", "+b", "kay!*@*")
        kick = await lee.expect("KICK")
        assert kick.params[:2] == ("#mod", "kay")
        told = await kay.expect("info", lambda e: e.data and e.data.get("rule") == "banned")
        assert told.data == mode_data("ivy", "kay", "banned", True)
        assert (await kay.expect("leave")).reason == "banned by ivy"
        await ivy.send("MODE #mod -b kay")
        assert (await lee.expect("MODE")).params == ("#mod", "-b", "kay!*@*")
        told = await jay.expect("info", lambda e: e.data and e.data.get("rule") == "banned")
        assert told.data == mode_data("ivy", "kay", "banned", True)
        told = await jay.expect("info", lambda e: e.data and e.data.get("rule") == "banned")
        assert told.data == mode_data("ivy", "kay", "banned", False)
        assert told.text == "ivy unbanned kay from #mod"

        # A change that changes nothing (jay is no operator the second time) tells nobody.
        await ivy.send("MODE #mod -o jay", "MODE #mod -o jay")
        await jay.expect("info", lambda e: e.data == mode_data("ivy", "jay", "operator", False))
        await jay.say("mark 2", room="#mod")
        modes = [m for m in await lines_until_said(lee, "mark 2") if m.command == "MODE"]
        assert [m.params for m in modes] == [("#mod", "-o", "jay")]


async def events_until_said(client: ChatClient, text: str) -> list[Any]:
    """Every event a JSON client gets before the chat line ``text``."""
    events = []
    while True:
        event = await client.receive()
        if event.TYPE == "message" and event.text == text:
            return events
        events.append(event)


async def test_away_changes_reach_only_those_who_asked(chat: TestServer) -> None:
    async with (
        open_irc(chat, "ivy", "CAP REQ :away-notify", "CAP END") as ivy,
        open_irc(chat, "lee") as lee,
        open_client(chat) as jay,
        open_client(chat, "kay") as kay,
        open_client(chat, websocket=True) as mo,
        open_client(chat, "zed") as zed,
    ):
        await jay.login("jay", away_notify=True)
        await mo.login("mo", away_notify=True)
        await ivy.expect("JOIN", lambda m: m.source.startswith("zed!"))
        await zed.expect("join", lambda e: e.nick == "mo")

        await zed.command("/away out to lunch")
        await zed.expect("info", lambda e: e.data == {"away": "out to lunch"})
        await zed.say("mark 1")
        seen = await ivy.expect("AWAY")
        assert (seen.source, seen.params) == ("zed!zed@trio-chat", ("out to lunch",))
        for client in (jay, mo):
            told = await client.expect("info", lambda e: e.ref is None)
            assert told.data == {"event": "away", "nick": "zed", "away": "out to lunch"}
            assert told.text == "zed is away: out to lunch"
        # Those who did not ask get nothing at all.
        assert [m for m in await lines_until_said(lee, "mark 1") if m.command == "AWAY"] == []
        assert [e for e in await events_until_said(kay, "mark 1") if e.TYPE == "info"] == []
        assert [e for e in await events_until_said(zed, "mark 1") if e.TYPE == "info"] == []

        # From IRC, and back again; asking after registration works too.
        await lee.send("CAP REQ :away-notify", "AWAY :brb")
        await lee.expect(n.RPL_NOWAWAY)
        assert (await ivy.expect("AWAY")).params == ("brb",)
        told = await jay.expect("info", lambda e: e.ref is None)
        assert told.data == {"event": "away", "nick": "lee", "away": "brb"}
        await zed.command("/away")
        seen = await lee.expect("AWAY")
        assert (seen.source, seen.params) == ("zed!zed@trio-chat", ())
        told = await mo.expect("info", lambda e: e.data and e.data.get("nick") == "zed")
        assert (told.data["away"], told.text) == (None, "zed is back")
        # The same state again is no change: nobody is told.
        await zed.command("/away")
        await zed.expect("info", lambda e: e.data == {"away": None})
        await zed.say("mark 2")
        assert [m for m in await lines_until_said(lee, "mark 2") if m.command == "AWAY"] == []


async def test_a_part_reason_reaches_the_room_from_every_transport(chat: TestServer) -> None:
    host, port = chat.address("tcp")
    text = await trio.open_tcp_stream(host, port)
    async with (
        text,
        open_irc(chat, "ivy") as ivy,
        open_client(chat, "jay") as jay,
        open_client(chat, "wes", websocket=True) as wes,
    ):
        await text.send_all(b"tex\n")
        for joiner in ("jay", "wes", "tex", "ivy"):
            if joiner == "ivy":
                await ivy.send("JOIN #tea")
            elif joiner == "tex":
                await text.send_all(b"/join #tea\n")
            else:
                client = jay if joiner == "jay" else wes
                await client.command("/join #tea")
            await jay.expect("join", lambda e, j=joiner: (e.nick, e.room) == (j, "#tea"))

        # JSON, with a reason: everyone else sees it, IRC as PART's reason.
        await jay.command("/part #tea see you   later")
        mine = await jay.expect("leave")
        assert (mine.nick, mine.reason) == ("jay", "see you later")
        got = await ivy.expect("PART")
        assert (got.source, got.params) == ("jay!jay@trio-chat", ("#tea", "see you later"))
        assert (await wes.expect("leave")).reason == "see you later"

        # IRC, with a reason.
        await ivy.send("PART #tea :gone fishing")
        left = await wes.expect("leave")
        assert (left.nick, left.reason) == ("ivy", "gone fishing")

        # Text mode, with a reason that pretends to be a kick: it stays the user's own.
        await text.send_all(b"/part #tea kicked by wes: nope\n")
        left = await wes.expect("leave")
        assert (left.nick, left.reason) == ("tex", "parted: kicked by wes: nope")

        # No reason: "parted", as before.
        await ivy.send("JOIN #tea")
        await wes.expect("join", lambda e: e.nick == "ivy")
        await wes.command("/part #tea")
        assert (await wes.expect("leave")).reason == "parted"
        got = await ivy.expect("PART", lambda m: m.source.startswith("wes!"))
        assert got.params == ("#tea", "parted")

        # A JSON user's long reason: cut to 300 characters, and to one IRC line.
        await wes.command("/join #tea")
        await ivy.expect("JOIN", lambda m: m.source.startswith("wes!"))
        await wes.command("/part #tea " + "é" * 400)
        assert (await wes.expect("leave")).reason == "é" * 300
        got = await ivy.expect(
            "PART", lambda m: m.source.startswith("wes!")
        )  # IrcClient checks it fits in 512 bytes
        assert 200 < len(got.params[1]) < 300 and set(got.params[1]) == {"é"}


async def test_an_away_joiner_is_followed_by_away_for_away_notify(chat: TestServer) -> None:
    async with (
        open_irc(chat, "ivy", "CAP REQ :away-notify", "CAP END") as ivy,
        open_irc(chat, "lee") as lee,
        open_client(chat, "zed") as zed,
    ):
        for irc in (ivy, lee):
            await irc.send("JOIN #x")
            await irc.expect(n.RPL_ENDOFNAMES, lambda m: m.params[1] == "#x")
        await zed.command("/away napping")
        await zed.expect("info", lambda e: e.data == {"away": "napping"})
        await zed.command("/join #x")
        await zed.expect("join", lambda e: e.room == "#x")
        await zed.say("mark 3", room="#x")
        lines = await lines_until_said(ivy, "mark 3")
        joined = [i for i, m in enumerate(lines) if m.command == "JOIN"]
        assert joined and lines[joined[-1] + 1].command == "AWAY"
        assert lines[joined[-1] + 1].params == ("napping",)
        lines = await lines_until_said(lee, "mark 3")
        assert [m.command for m in lines if m.command in ("JOIN", "AWAY")] == ["JOIN"]


async def test_a_quit_message_cannot_pass_for_a_kick(chat: TestServer) -> None:
    async with open_irc(chat, "ivy") as ivy, open_client(chat, "jay") as jay:
        async with open_client(chat, "kay") as kay:
            await ivy.expect("JOIN", lambda m: m.source.startswith("kay!"))
            await kay.send({"type": "quit", "reason": "kicked by ivy: fake"})
        left = await jay.expect("leave", lambda e: e.nick == "kay")
        assert left.reason == "quit: kicked by ivy: fake"
        got = await ivy.expect("PART", lambda m: m.source.startswith("kay!"))
        assert got.params == ("#lobby", "quit: kicked by ivy: fake")
        async with open_client(chat, "lou") as lou:
            await ivy.expect("JOIN", lambda m: m.source.startswith("lou!"))
            await lou.command("/quit banned by ivy")
        left = await jay.expect("leave", lambda e: e.nick == "lou")
        assert left.reason == "quit: banned by ivy"
        assert (await ivy.expect("PART", lambda m: m.source.startswith("lou!"))).params[1] == (
            "quit: banned by ivy"
        )


async def test_notices_stay_notices_on_every_transport(tmp_path: Path) -> None:
    """IRC's ``NOTICE #room`` is a line of kind ``notice``: IRC members get a ``NOTICE``,
    JSON members a ``message`` with ``kind: "notice"``, the history keeps it, and ``/notice``
    sends one from any client."""
    config = local_config(irc_port=0, db=str(tmp_path / "chat.db"))
    async with (
        open_test_server(config=config) as chat,
        open_irc(chat, "nia") as nia,
        open_irc(chat, "oto") as oto,
        open_client(chat, "pim") as pim,
    ):
        await nia.expect("JOIN", lambda m: m.source.startswith("pim!"))
        await oto.expect("JOIN", lambda m: m.source.startswith("pim!"))
        await nia.send("NOTICE #lobby :the build is green")
        seen = await oto.expect("NOTICE", lambda m: m.params[0] == "#lobby")
        assert (seen.source, seen.params) == ("nia!nia@trio-chat", ("#lobby", "the build is green"))
        said = await pim.expect("message")
        assert (said.nick, said.kind, said.text) == ("nia", "notice", "the build is green")
        await pim.command("/notice deploy at noon")
        for irc in (nia, oto):
            seen = await irc.expect("NOTICE", lambda m: m.params[-1] == "deploy at noon")
            assert (seen.source, seen.params[0]) == ("pim!pim@trio-chat", "#lobby")
        assert (await pim.expect("message")).kind == "notice"
        await pim.say("plain")
        plain = await pim.expect("message", lambda e: e.text == "plain")
        # Pages back from the line after them (the latest page stops where pim's live
        # stream began: see docs/protocol.md).
        await pim.send({"type": "history", "room": "#lobby", "before": plain.id, "ref": "h"})
        history = await pim.expect("history", lambda e: e.ref == "h")
        kinds = {m["text"]: m["kind"] for m in history.messages}
        assert kinds["the build is green"] == kinds["deploy at noon"] == "notice"
