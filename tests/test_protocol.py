"""The sans-IO protocol core, on plain bytes: no sockets here."""

from __future__ import annotations

import json

import pytest

from trio_chat.protocol import (
    Bye,
    Command,
    Error,
    Hello,
    Info,
    Message,
    Ping,
    Quit,
    RemoteProtocolError,
    Say,
    decode_client_frame,
    decode_server_event,
    encode_client_frame,
    encode_server_event,
    encode_server_line,
)


def test_decodes_every_client_frame() -> None:
    assert decode_client_frame(b'{"type":"hello","nick":"alice"}') == Hello(nick="alice")
    assert decode_client_frame('{"type":"say","text":"hi","room":"#x","ref":"7"}') == Say(
        text="hi", room="#x", ref="7"
    )
    assert decode_client_frame(b'{"type":"command","name":"nick","args":"bob"}') == Command(
        name="nick", args="bob"
    )
    assert decode_client_frame(b'{"type":"ping","token":"t"}') == Ping(token="t")
    assert decode_client_frame(b'{"type":"quit"}') == Quit()


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    assert decode_client_frame(b'{"type":"say","text":"x","color":"red"}') == Say(text="x")


def test_numeric_ref_is_echoed_as_string() -> None:
    assert decode_client_frame(b'{"type":"ping","ref":12}') == Ping(ref="12")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff\xfe{}", "bad_utf8"),
        (b"{not json", "bad_json"),
        (b"", "bad_json"),
        (b"[1, 2]", "bad_frame"),
        (b'"hello"', "bad_frame"),
        (b'{"nick":"a"}', "bad_frame"),
        (b'{"type":7}', "bad_frame"),
        (b'{"type":"dance"}', "unknown_type"),
        (b'{"type":"hello"}', "missing_field"),
        (b'{"type":"say"}', "missing_field"),
        (b'{"type":"say","text":5}', "bad_field"),
        (b'{"type":"say","text":"a\\u0000b"}', "bad_field"),
        (b'{"type":"say","text":"x","ref":{}}', "bad_field"),
        (b"[" * 100_000, "bad_json"),
        (b'{"type":"say","text":"x","ref":NaN}', "bad_json"),
        (b'{"type":"say","text":"\\ud800"}', "bad_json"),  # a lone surrogate
        (b'{"type":"say","text":"\xff"}', "bad_utf8"),
    ],
)
def test_bad_frames_raise_remote_protocol_error(data: bytes, code: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_client_frame(data)
    assert info.value.code == code
    assert info.value.message  # one human-readable line
    assert "\n" not in info.value.message


def test_error_keeps_the_ref_when_it_could_be_read() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_client_frame(b'{"type":"nope","ref":"r1"}')
    assert info.value.ref == "r1"


def test_server_events_encode_compactly_without_none_fields() -> None:
    text = encode_server_event(Error(code="bad_json", text="oops"))
    assert text == '{"type":"error","code":"bad_json","text":"oops"}'
    msg = Message(id=3, ts=1.5, room="#lobby", nick="ünï", text="héllo")
    assert json.loads(encode_server_event(msg)) == {
        "type": "message",
        "id": 3,
        "ts": 1.5,
        "room": "#lobby",
        "nick": "ünï",
        "text": "héllo",
        "kind": "say",
    }
    assert "ünï" in encode_server_event(msg)  # UTF-8, not \\u escapes


def test_a_server_line_is_the_documented_json_line() -> None:
    """Compact, UTF-8 left as it is, control characters escaped, one newline at the end;
    the same text as the WebSocket message of the event."""
    msg = Message(id=7, ts=2.25, room="#lobby", nick="zoë", text='a "b"\tc\x01 \u2028 é')
    line = encode_server_line(msg)
    assert line == (
        b'{"type":"message","id":7,"ts":2.25,"room":"#lobby","nick":"zo\xc3\xab",'
        b'"text":"a \\"b\\"\\tc\\u0001 \xe2\x80\xa8 \xc3\xa9","kind":"say"}\n'
    )
    assert line == encode_server_event(msg).encode() + b"\n"
    assert json.loads(line) == msg.to_dict()


def test_server_events_round_trip() -> None:
    for event in (
        Message(id=1, ts=2.0, room="#a", nick="n", text="t", kind="action"),
        Info(text="x", data={"users": ["a"]}, ref="1"),
        Bye(code="shutdown", text="bye"),
    ):
        assert decode_server_event(encode_server_event(event)) == event


def test_client_frames_round_trip() -> None:
    for frame in (Hello(nick="a"), Say(text="hi", room="#r", ref="1"), Command(name="who")):
        line = encode_client_frame(frame)
        assert line.endswith(b"\n")
        assert decode_client_frame(line.rstrip(b"\n")) == frame
