"""The usual ``hello`` decodes by its keys (``protocol._plain_hello``), exactly as the
general rules decode it: the same frame, or the same error for anything else."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from trio_chat import protocol
from trio_chat.protocol import Hello, decode_client_frame


def _hello(**fields: Any) -> dict[str, Any]:
    return {"type": "hello", **fields}


#: Hellos the fast path takes (it must, or it saves nothing).
TAKEN = [
    _hello(nick="alice"),
    _hello(nick="alice", ref="r1"),
    _hello(nick="alice", ref="x" * 64),
    _hello(nick="alice", client="trio-chat 1.0"),
    _hello(nick="alice", client=None, ref=None),
    _hello(nick="alice", batch=True, away_notify=True, typing=False),
    _hello(nick="bob", client="web", ref="7", batch=False, typing=True),
    _hello(nick="éü", client="caf\u00e9"),
    {"nick": "alice", "type": "hello"},
]

#: Hellos it leaves to the general rules (an error, or something it does not check).
LEFT = [
    _hello(),
    _hello(nick=None),
    _hello(nick=5),
    _hello(nick="a\u0000b"),
    _hello(nick="a\u00a0b"),  # not printable, yet no control character: theirs to say
    _hello(nick="alice", password="secret"),
    _hello(nick="alice", password="secret", register=True),
    _hello(nick="alice", register=False),
    _hello(nick="alice", ref=5),
    _hello(nick="alice", ref=True),
    _hello(nick="alice", ref="x" * 65),
    _hello(nick="alice", ref="r\u0007"),
    _hello(nick="alice", client=3),
    _hello(nick="alice", client="a\nb"),
    _hello(nick="alice", batch=1),
    _hello(nick="alice", typing="yes"),
    _hello(nick="alice", away_notify=None),
    _hello(nick="alice", extra=[1]),
    _hello(nick="alice\ud800"),
]


def _decoded(line: bytes) -> object:
    try:
        return decode_client_frame(line)
    except protocol.RemoteProtocolError as exc:
        return (exc.code, exc.text, exc.ref)


def _general(line: bytes, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as patch:
        patch.setattr(protocol, "_plain_hello", lambda obj: None)
        return _decoded(line)


def _lines(frame: dict[str, Any]) -> list[bytes]:
    return [
        json.dumps(frame).encode(),
        json.dumps(frame, ensure_ascii=False).encode("utf-8", "surrogatepass"),
    ]


@pytest.mark.parametrize("frame", TAKEN + LEFT)
def test_a_hello_decodes_as_the_general_rules_decode_it(
    frame: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for line in _lines(frame):
        assert _decoded(line) == _general(line, monkeypatch), line


@pytest.mark.parametrize("frame", TAKEN)
def test_the_usual_hello_takes_the_fast_way(frame: dict[str, Any]) -> None:
    plain = protocol._plain_hello(orjson.loads(json.dumps(frame)))
    assert isinstance(plain, Hello)
    assert plain.nick == frame["nick"]
    assert plain.ref == frame.get("ref")


@pytest.mark.parametrize("frame", LEFT)
def test_anything_else_goes_the_general_way(frame: dict[str, Any]) -> None:
    try:
        obj = orjson.loads(json.dumps(frame))
    except orjson.JSONDecodeError:
        return  # (a lone surrogate: not even JSON to orjson)
    assert protocol._plain_hello(obj) is None


def test_the_fast_way_sets_every_field() -> None:
    """A field it forgot to set would be missing (a slotted frozen dataclass)."""
    hello = decode_client_frame(b'{"type":"hello","nick":"n","typing":true}')
    assert hello == Hello(nick="n", typing=True)
    assert repr(hello)  # every slot set
