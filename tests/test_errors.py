"""One user-error type: every refusal is a ChatError with a code and a text, turned into an
``error`` event by one helper."""

from __future__ import annotations

import pytest

from trio_chat import ChatError, CommandError
from trio_chat.errors import LoginRefused
from trio_chat.hub import NickInUse, NoSuchNick, NotAllowed, NotInRoom, NotSaved, ServerBusy
from trio_chat.names import InvalidName, InvalidNick, InvalidRoom, normalize_nick
from trio_chat.protocol import Error, RemoteProtocolError, error_reply


@pytest.mark.parametrize(
    ("error", "code", "text"),
    [
        (CommandError("not today"), "command_failed", "not today"),
        (CommandError("no", "nope"), "nope", "no"),
        (LoginRefused("login_failed", "wrong nickname or password"), "login_failed", None),
        (InvalidNick("bad"), "bad_nick", "bad"),
        (InvalidRoom("bad"), "bad_room", "bad"),
        (NickInUse("taken"), "nick_taken", "taken"),
        (NotInRoom("out"), "not_in_room", "out"),
        (NotAllowed("no"), "not_allowed", "no"),
        (NoSuchNick("who"), "no_such_nick", "who"),
        (NotSaved("lost"), "not_saved", "lost"),
        (ServerBusy("busy"), "busy", "busy"),
        (RemoteProtocolError("bad_json", "not JSON", ref="r1"), "bad_json", "not JSON"),
    ],
)
def test_every_user_error_is_a_chat_error_with_code_and_text(
    error: ChatError, code: str, text: str | None
) -> None:
    assert isinstance(error, ChatError)
    assert error.code == code
    assert error.text == str(error) == (text or error.text)
    assert error_reply(error, "ref") == Error(code=code, text=error.text, ref="ref")


def test_the_reply_keeps_the_refused_frames_ref() -> None:
    error = RemoteProtocolError("bad_field", "no", ref="mine")
    assert error.message == "no"  # the old name still reads
    assert error_reply(error) == Error(code="bad_field", text="no", ref="mine")
    assert error_reply(CommandError("x")).ref is None


def test_only_name_errors_are_name_errors() -> None:
    with pytest.raises(InvalidName) as caught:
        normalize_nick("")
    assert isinstance(caught.value, ValueError)  # as before: a name error is a ValueError
    for other in (NotAllowed, NotInRoom, NoSuchNick, ServerBusy, NotSaved):
        assert not issubclass(other, InvalidName)
