"""A read's lines taken at once (sans-IO): ``LineBuffer.whole_lines`` gives the lines
``next_event`` would give one by one, and ``decode_client_lines`` decodes them as
``decode_client_frame`` decodes each, with the plain says gathered in a ``SayLines``.

What a reader does with them over a socket (flood control, errors, order) is compared with
frame-by-frame reading in tests/test_say_runs.py."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_chat.framing import EOF, NEED_DATA, LineBuffer, LineEvent
from trio_chat.protocol import (
    RemoteProtocolError,
    Say,
    SayLines,
    decode_client_frame,
    decode_client_lines,
)

# Few distinct pieces, so that newlines, CRs and line-length edges come up often.
_pieces = st.lists(
    st.sampled_from([b"a", b"bc", b"\n", b"\r", b"\r\n", b"\xff", b"xyzw" * 5, b"q" * 70]),
    max_size=30,
).map(b"".join)


def _one_by_one(buf: LineBuffer) -> list[LineEvent]:
    events: list[LineEvent] = []
    while (event := buf.next_event()) is not NEED_DATA:
        events.append(event)
        if event is EOF:
            break
    return events


def _in_runs(buf: LineBuffer, choices: itertools.cycle[bool]) -> list[LineEvent]:
    """As a reader takes them: whole_lines, and next_event when it gives nothing (and now
    and then anyway, to mix the two)."""
    events: list[LineEvent] = []
    while True:
        lines = buf.whole_lines() if next(choices) else []
        if lines:
            assert all(isinstance(line, bytes) for line in lines)
            events += lines
            continue
        event = buf.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
        if event is EOF:
            return events


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1, 100),
    chunks=st.lists(_pieces, max_size=12),
    eof=st.booleans(),
    choices=st.lists(st.booleans(), min_size=1, max_size=7),
)
def test_whole_lines_are_what_next_event_gives_one_by_one(
    limit: int, chunks: list[bytes], eof: bool, choices: list[bool]
) -> None:
    alone, together = LineBuffer(limit), LineBuffer(limit)
    expected: list[LineEvent] = []
    got: list[LineEvent] = []
    cycle = itertools.cycle([*choices, True])
    for chunk in [*(c for c in chunks if c), *([b""] if eof else [])]:
        alone.feed(chunk)
        together.feed(chunk)
        expected += _one_by_one(alone)
        got += _in_runs(together, cycle)
        assert together.buffered_bytes == alone.buffered_bytes
    assert got == expected


def test_whole_lines_stop_before_a_line_too_long_and_go_on_after_it() -> None:
    buf = LineBuffer(5)
    buf.feed(b"one\r\ntwo\nmuch too long\nthree\n")
    assert buf.whole_lines() == [b"one", b"two"]
    assert buf.whole_lines() == []
    assert buf.next_event() != b"much too long"  # a LineTooLong
    assert buf.whole_lines() == [b"three"]
    assert buf.whole_lines() == []
    assert buf.next_event() is NEED_DATA


def _decoded_alone(line: bytes) -> Say | RemoteProtocolError | object | None:
    if not line.strip():
        return None
    try:
        return decode_client_frame(line)
    except RemoteProtocolError as exc:
        return exc


def _flat(decoded: list[Any]) -> list[Any]:
    """Each SayLines as the Say frames it stands for; errors as their fields."""
    flat: list[Any] = []
    for item in decoded:
        if isinstance(item, SayLines):
            assert len(item) > 0
            flat += item.frames()
        elif isinstance(item, RemoteProtocolError):
            flat.append(("error", item.code, item.ref, str(item)))
        else:
            flat.append(item)
    return flat


_texts = st.sampled_from(["hi", "", "  ", "a\u00a0b", "bell\u0007", "x" * 64, "é"])
_fields = st.fixed_dictionaries(
    {"type": st.sampled_from(["say", "say", "say", "ping", "sayy"])},
    optional={
        "text": _texts | st.integers() | st.none(),
        "room": st.sampled_from(["#lobby", "#a\u0001", ""]) | st.none() | st.integers(),
        "ref": st.sampled_from(["r", "x" * 64, "x" * 65, "t\tab"]) | st.none() | st.integers(),
        "reply_to": st.sampled_from([1, None, "1"]),
        "token": st.just("t"),
        "other": st.just(1),
    },
)
#: Plain says and near misses: each of the checks a plain say passes, failed by one field.
_says = st.fixed_dictionaries(
    {"type": st.just("say"), "text": _texts},
    optional={
        "room": st.sampled_from(["#lobby", "#a\u0001", "", None, 5]),
        "ref": st.sampled_from(["r", "x" * 64, "x" * 65, "t\tab", None, 7]),
    },
)
_lines = st.lists(
    _says.map(lambda frame: json.dumps(frame).encode())
    | _fields.map(lambda frame: json.dumps(frame).encode())
    | st.sampled_from([b"", b"   ", b"not json", b"[1]", b'{"type":"say","text":"\xff"}']),
    max_size=20,
)


@settings(max_examples=400, deadline=None)
@given(lines=_lines)
def test_lines_decoded_at_once_are_what_each_decodes_to(lines: list[bytes]) -> None:
    decoded = decode_client_lines(lines)
    assert _flat(decoded) == _flat([_decoded_alone(line) for line in lines])
    # Plain says one after another are one SayLines, never two in a row.
    assert not any(
        isinstance(a, SayLines) and isinstance(b, SayLines) for a, b in itertools.pairwise(decoded)
    )


def test_plain_says_come_together_and_anything_else_ends_them() -> None:
    lines = [
        b'{"type":"say","text":"one"}',
        b'{"type":"say","text":"two","room":"#r","ref":"a"}',
        b'{"type":"say","text":"three","reply_to":4}',
        b'{"type":"say","text":"four"}',
        b"",
    ]
    first, answer, second, blank = decode_client_lines(lines)
    assert isinstance(first, SayLines) and first.frames() == [
        Say(text="one"),
        Say(text="two", room="#r", ref="a"),
    ]
    assert answer == Say(text="three", reply_to=4)
    assert isinstance(second, SayLines) and second.frames() == [Say(text="four")]
    assert blank is None
