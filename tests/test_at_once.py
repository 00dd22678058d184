"""Frames acted on at once (``quit``, ``ping``, ``pong``, typing notices, malformed frames)
are handed over by a TCP or WebSocket reader with nothing awaited, as plain says are
(``Resident._say_arrived``): a client's last read, its lines and then ``quit`` or the end
of its stream, ends the connection without the spell's reading scope (a churning client's
whole life after its log-in). Over real sockets: what everyone sees is what the awaited
way gave (the echo before the ``bye``, the leave after), that way is not taken, and flood
control still holds such frames to the budget."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from trio_chat.names import name_key
from trio_chat.protocol import Ping
from trio_chat.testing import (
    ChatClient,
    TestServer,
    local_config,
    open_client,
    open_test_server,
)
from trio_chat.transports import resident
from trio_chat.transports.resident import Resident


def _lines(*frames: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(frame).encode() + b"\n" for frame in frames)


def _say(text: str) -> dict[str, Any]:
    return {"type": "say", "text": text}


def watch_awaited_way(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The nicks of the connections whose frames took the awaited way (the spell's
    reading scope, :meth:`Resident._handle_input`), once per time they took it."""
    taken: list[str] = []
    handle_input = Resident._handle_input

    async def watched(self: Resident, *args: Any, **kwargs: Any) -> str | None:
        taken.append(self.device.nick)
        return await handle_input(self, *args, **kwargs)

    monkeypatch.setattr(Resident, "_handle_input", watched)
    return taken


async def _texts_then(client: ChatClient, kind: str, nick: str, texts: list[str]) -> Any:
    """Wait for ``texts`` said by ``nick``, in order, then for an event of ``kind``."""
    for text in texts:

        def said(event: Any, text: str = text) -> bool:
            return bool(event.nick == nick and event.text == text)

        await client.expect("message", said)
    return await client.expect(kind, lambda e: kind == "bye" or e.nick == nick)


@asynccontextmanager
async def alice_beside_bob(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[TestServer, list[str], ChatClient, ChatClient]]:
    """A server, the nicks that took the awaited way (see :func:`watch_awaited_way`),
    and alice and bob logged in, bob having seen alice join."""
    async with open_test_server(config=local_config(db=None)) as chat:
        taken = watch_awaited_way(monkeypatch)
        async with open_client(chat, "bob") as bob, open_client(chat, "alice") as alice:
            await bob.expect("join", lambda e: e.nick == "alice")
            yield chat, taken, alice, bob


@pytest.mark.parametrize("ending", ["quit", "end of stream"])
async def test_a_last_read_of_lines_ends_the_connection_without_the_scope(
    monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    """Lines, then a ``quit`` in the same read (alice gets her lines, then her ``bye``),
    or then the end of the stream: bob gets the lines, then alice's leave."""
    async with alice_beside_bob(monkeypatch) as (chat, taken, alice, bob):
        said = [_say("one"), _say("two")]
        if ending == "quit":
            await alice.send_raw(_lines(*said, {"type": "quit", "reason": "off to bed"}))
            bye = await _texts_then(alice, "bye", "alice", ["one", "two"])
            assert bye.code == "quit"
            assert await alice.closed()
        else:
            await alice.send_raw(_lines(*said))
            await alice.stream.send_eof()  # type: ignore[attr-defined]  # (TCP)
        left = await _texts_then(bob, "leave", "alice", ["one", "two"])
        assert left.reason == ("off to bed" if ending == "quit" else "connection lost")
        assert len(chat.server.hub.sessions) == 1
        assert "alice" not in taken


async def test_a_quit_among_frames_that_are_awaited_ends_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read whose frames the awaited way must take (a command) and a quit after it: the
    command is answered, then the connection ends with its bye."""
    async with open_test_server(config=local_config(db=None)) as chat:
        taken = watch_awaited_way(monkeypatch)
        async with open_client(chat, "alice") as alice:
            command = {"type": "command", "name": "me", "args": "waves"}
            await alice.send_raw(_lines(_say("one"), command, {"type": "quit"}))
            await alice.expect("message", lambda e: e.text == "one")
            await alice.expect("message", lambda e: e.text == "waves")
            assert (await alice.expect("bye")).code == "quit"
            assert await alice.closed()
        assert taken == ["alice"]


async def _pings_answered(*, runs: bool) -> list[tuple[str, str | None]]:
    """What a client that sends a burst of pings over its flood budget in one write gets:
    each reply's type and ``ref``, in order."""
    with pytest.MonkeyPatch.context() as patch:
        if not runs:
            patch.setattr(resident, "SAY_RUNS", False)
        config = local_config(db=None, flood_rate=1.0, flood_burst=3, flood_max_lag=0.2)
        async with open_test_server(config=config) as chat:
            async with open_client(chat, "alice") as alice:
                pings = [{"type": "ping", "token": str(i), "ref": str(i)} for i in range(8)]
                await alice.send_raw(_lines(*pings))
                answers: list[tuple[str, str | None]] = []
                while len(answers) < len(pings):
                    event = await alice.receive()
                    if event.TYPE in ("pong", "error"):
                        answers.append((event.TYPE, getattr(event, "ref", None)))
                return answers


async def test_pings_over_the_flood_budget_are_answered_as_the_awaited_way_does() -> None:
    at_once = await _pings_answered(runs=True)
    assert at_once == await _pings_answered(runs=False)
    assert at_once[:3] == [("pong", "0"), ("pong", "1"), ("pong", "2")]
    assert at_once[3:] == [("error", str(i)) for i in range(3, 8)]  # slow_down


async def test_handle_passes_a_frame_acted_on_at_once_and_counts_it_once() -> None:
    """:meth:`ChatServer.handle` hands such a frame to ``handle_at_once`` (the IRC
    transport's reader and plugins call ``handle``): one count in
    ``trio_chat_messages_in_total``, one answer."""
    async with open_test_server(config=local_config(db=None)) as chat:
        server = chat.server
        async with open_client(chat, "alice") as alice:
            counted = server.metrics.messages_in_total.value
            session = server.hub.sessions[name_key("alice")]
            await server.handle(session, Ping(token="t", ref="r"))
            pong = await alice.expect("pong")
            assert (pong.token, pong.ref) == ("t", "r")
            assert server.metrics.messages_in_total.value == counted + 1
