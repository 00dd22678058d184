"""The plain-text dialect used by nc-style clients (sans-IO)."""

from __future__ import annotations

import pytest

from trio_chat.protocol import (
    Command,
    Error,
    Info,
    Joined,
    Left,
    Message,
    NickChanged,
    RemoteProtocolError,
    Say,
)
from trio_chat.textmode import clock, decode_text_line, parse_command_line, render_text


def test_typed_lines_become_frames() -> None:
    assert parse_command_line("hello there") == Say(text="hello there")
    assert parse_command_line("/nick  Bob ") == Command(name="nick", args="Bob")
    assert parse_command_line("/WHO") == Command(name="who", args="")
    assert parse_command_line("//shrug") == Say(text="/shrug")
    assert parse_command_line("   ") is None


def test_lone_slash_is_an_error() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_command_line("/")


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_text_line(b"caf\xe9")
    assert info.value.code == "bad_utf8"


def test_events_render_as_readable_lines_with_time() -> None:
    ts = 1_700_000_000.0
    t = clock(ts)
    # A chat line shows its id, which /reply, /edit, /delete and /react name it by.
    assert render_text(Message(id=1, ts=ts, room="#l", nick="al", text="hi")) == f"[{t} #1] <al> hi"
    assert render_text(Message(id=1, ts=ts, room="#l", nick="al", text="waves", kind="action")) == (
        f"[{t} #1] * al waves"
    )
    assert render_text(Joined(id=1, ts=ts, room="#l", nick="al")) == f"[{t}] -!- al joined #l"
    assert render_text(Left(id=1, ts=ts, room="#l", nick="al", reason="bye")) == (
        f"[{t}] -!- al left #l (bye)"
    )
    assert render_text(NickChanged(id=1, ts=ts, old="a", new="b")) == (
        f"[{t}] -!- a is now known as b"
    )
    assert render_text(Error(code="x", text="nope")) == "!! nope"
    assert render_text(Info(text="a\nb")) == "-- a\n-- b"
