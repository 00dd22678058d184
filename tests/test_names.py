"""Nick and room name rules."""

from __future__ import annotations

import pytest

from trio_chat.names import InvalidName, name_key, normalize_nick, normalize_room


def test_nicks_compare_case_and_width_insensitively() -> None:
    assert name_key("Alice") == name_key("ALICE") == name_key("\uff21lice")


def test_nick_is_nfc_normalized() -> None:
    assert normalize_nick("Jose\u0301") == "Jos\u00e9"


@pytest.mark.parametrize("bad", ["", "  ", "1abc", "-x", "a b", "a" * 25, "x:y", "bad\x00"])
def test_invalid_nicks_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(InvalidName) as info:
        normalize_nick(bad)
    assert str(info.value)


def test_rooms_get_a_hash_and_are_validated() -> None:
    assert normalize_room("dev") == "#dev"
    assert normalize_room("#Dev") == "#Dev"
    for bad in ("#", "#a b", "#" + "x" * 40):
        with pytest.raises(InvalidName):
            normalize_room(bad)
