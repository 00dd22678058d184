"""The events every connection is sent once (welcome, join, history, leave, bye) are
encoded from objects made directly (protocol.py, ``_DIRECT_OBJECTS``), not by the general
``to_dict``: the bytes must be the same as ``to_dict``'s, field for field, on every wire
format that encodes JSON."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from trio_chat import protocol
from trio_chat.protocol import (
    Bye,
    EncodedMessages,
    History,
    Joined,
    Left,
    ServerEvent,
    Welcome,
    encode_server_event,
    encode_server_line,
    encode_server_lines,
    encoded_message,
)

MESSAGES = [
    {"type": "message", "id": 7, "ts": 1.5, "room": "#lobby", "nick": "ann", "text": "hi"},
    {"type": "message", "id": 9, "ts": 2.25, "room": "#lobby", "nick": "bob", "text": "é\n"},
]

ENCODED = [encoded_message(message) for message in MESSAGES]

EVENTS: list[ServerEvent] = [
    Welcome(nick="ann", room="#lobby", server="trio-chat", version="1.0"),
    Welcome(nick="ann", room="#lobby", server="s", version="v", account=True, ref="r1"),
    Welcome(
        nick="ann",
        room="#dev",
        server="s",
        version="v",
        protocol=3,
        account=True,
        rooms=["#lobby", "#dev"],
        connections=2,
        read={"#lobby": 7, "#dev": 0},
        ref='\u2603"quoted"',
    ),
    Welcome(nick="ann", room="#lobby", server="s", version="v", read={}),
    Joined(id=1, ts=1700000000.123456, room="#lobby", nick="ann"),
    Joined(id=2, ts=0.0, room="#lobby", nick="bot", bot=True),
    Joined(id=3, ts=1.0, room="#lobby", nick="x", bot=False),
    Left(id=4, ts=2.0, room="#lobby", nick="ann"),
    Left(id=5, ts=2.5, room="#lobby", nick="ann", reason="quit: bye now"),
    Left(id=6, ts=2.5, room="#lobby", nick="ann", reason=""),
    Bye(code="quit", text="goodbye"),
    Bye(code="timeout", text="no nickname given in time \u00e9"),
    History(room="#lobby", messages=list(MESSAGES)),
    History(room="#lobby", messages=[], more=True, ref="L"),
    History(with_nick="bob", messages=list(MESSAGES), ref="p"),
    History(room=None, with_nick=None, messages=[]),
    History(
        room="#lobby",
        messages=EncodedMessages(list(MESSAGES), [encoded_message(m) for m in MESSAGES]),
        ref="R",
    ),
    History(with_nick="bob", messages=EncodedMessages([], []), more=True),
]


def general(event: ServerEvent) -> dict[str, Any]:
    return event.to_dict()


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_each_is_encoded_as_to_dict_encodes_it(event: ServerEvent) -> None:
    expected = orjson.dumps(general(event))
    assert encode_server_line(event) == expected + b"\n"
    assert encode_server_event(event) == expected.decode()


def test_a_run_of_them_is_encoded_alike() -> None:
    expected = b"".join(orjson.dumps(general(e)) + b"\n" for e in EVENTS)
    assert encode_server_lines(EVENTS) == expected


def test_they_take_the_direct_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of them asks ``to_dict`` (which would make the test above compare a thing
    with itself): with ``to_dict`` broken they still encode."""
    expected = [encode_server_line(e) for e in EVENTS]

    def broken(self: ServerEvent) -> dict[str, Any]:
        raise AssertionError("to_dict asked")

    for cls in (ServerEvent, History):
        monkeypatch.setattr(cls, "to_dict", broken)
    assert [encode_server_line(e) for e in EVENTS] == expected
    assert [encode_server_event(e) for e in EVENTS] == [x[:-1].decode() for x in expected]


def test_a_subclass_takes_the_general_way() -> None:
    """A subclass may have fields of its own: only the exact classes are made directly."""
    from dataclasses import dataclass

    @dataclass(frozen=True, slots=True, kw_only=True)
    class Tagged(Joined):
        tag: str = "t"

    event = Tagged(id=1, ts=1.0, room="#r", nick="n", tag="x")
    assert orjson.loads(encode_server_line(event))["tag"] == "x"


def test_the_fields_are_those_the_direct_objects_know() -> None:
    """A field added to one of these events must be added to its direct object too (this
    fails first, so that it is)."""
    assert protocol._wire_fields(Welcome) == (
        "nick", "room", "server", "version", "protocol", "account", "rooms", "connections",
        "read", "ref",
    )  # fmt: skip
    assert protocol._wire_fields(Joined) == ("id", "ts", "room", "nick", "bot")
    assert protocol._wire_fields(Left) == ("id", "ts", "room", "nick", "reason")
    assert protocol._wire_fields(Bye) == ("code", "text")
    assert protocol._wire_fields(History) == ("room", "with_nick", "messages", "more", "ref")
    assert set(protocol._DIRECT_OBJECTS) == {Welcome, Joined, Left, Bye, History}
