"""Look-alike nicknames share a skeleton; mixed-script names are spotted."""

from __future__ import annotations

import pytest

from trio_chat.confusables import PROTOTYPES, is_mixed_script, letter_scripts, skeleton

ALICES = [
    "alice",
    "Alice",
    "ALICE",
    "\u0410lice",  # Cyrillic capital А
    "\u0430lice",  # Cyrillic small а
    "\uff41\uff4c\uff49\uff43\uff45",  # full width
    "al1ce",
    "AIice",  # capital i for l
    "a|ice",
    "al\u0456ce",  # Cyrillic і
    "Alicé",
    "Ali\u0301ce",  # combining accent
    "Al\u200bice",  # zero-width space
    "Al\u00adice",  # soft hyphen
]


@pytest.mark.parametrize("name", ALICES)
def test_look_alikes_of_alice_collide(name: str) -> None:
    assert skeleton(name) == skeleton("alice")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Jose", "Jos\u00e9"),
        ("Jose", "Jose\u0301"),
        ("rn", "m"),
        ("Vlad", "VIad"),
        ("bob0", "BOBO"),
        ("vvill", "will"),
        ("\u0412\u041e\u0422", "BOT"),  # Cyrillic В О Т
        ("\u0432\u043e\u0442", "bot"),  # and in lower case: case-insensitive identity
        ("\u0397\u03a1", "HP"),  # Greek Η Ρ
        ("\u039a\u0391\u03a4\u0395", "KATE"),  # Greek Κ Α Τ Ε
        ("\u0405\u0415\u0421", "SEC"),  # Cyrillic Ѕ Е С
        ("\u0501og", "dog"),
        ("straße", "STRASSE"),
        ("\ufb01sh", "fish"),  # ligature
        ("\u00b5", "\u03bc"),  # micro sign and Greek mu
    ],
)
def test_confusable_pairs_collide(a: str, b: str) -> None:
    assert skeleton(a) == skeleton(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("alice", "bob"),
        ("alice", "alicia"),
        ("dan", "dam"),
        ("ole", "ale"),
        ("l\u00f8v", "lov"),  # ø is a letter of its own, not o plus a mark
        ("\u0414\u043c\u0438\u0442\u0440\u0438\u0439", "dmitriy"),
        ("\u03a3\u03c9\u03ba\u03c1\u03ac\u03c4\u03b7\u03c2", "sokratis"),
    ],
)
def test_different_names_stay_apart(a: str, b: str) -> None:
    assert skeleton(a) != skeleton(b)


def test_non_latin_names_keep_a_stable_skeleton_of_their_own() -> None:
    dmitriy = "\u0414\u043c\u0438\u0442\u0440\u0438\u0439"  # Дмитрий
    sokratis = "\u03a3\u03c9\u03ba\u03c1\u03ac\u03c4\u03b7\u03c2"  # Σωκράτης
    # Pinned: a changed skeleton would split or merge stored names.
    assert skeleton(dmitriy) == "\u0434m\u0438tp\u0438\u0438"
    assert skeleton(sokratis) == "\u03c3\u03c9kpath\u03c3"
    assert skeleton(dmitriy.upper()) == skeleton(dmitriy)
    assert skeleton(sokratis.upper()) == skeleton(sokratis)
    assert not is_mixed_script(dmitriy)
    assert not is_mixed_script(sokratis)
    assert skeleton(dmitriy) != skeleton(sokratis)


def test_skeleton_is_a_fixed_point() -> None:
    for name in [*ALICES, "Дмитрий", "Σωκράτης", "rnrn", "vvv", "ǅemal"]:
        assert skeleton(skeleton(name)) == skeleton(name)


def test_prototypes_are_lower_case_ascii_and_sources_survive_folding() -> None:
    for source, target in PROTOTYPES.items():
        assert len(target) == 1 and target.isascii() and target == target.casefold()
        # Each source is what folding leaves, or the table entry would be dead.
        assert skeleton(source) == skeleton(target) or source == target


@pytest.mark.parametrize(
    ("name", "scripts"),
    [
        ("alice", {"LATIN"}),
        ("\u0410lice", {"LATIN", "CYRILLIC"}),
        ("p\u0430ypal", {"LATIN", "CYRILLIC"}),
        ("\u03b1lpha", {"LATIN", "GREEK"}),
        ("\u0414\u03b1", {"CYRILLIC", "GREEK"}),
        ("\uff41\uff4c\uff49\uff43\uff45", {"LATIN"}),  # full width Latin is Latin
        ("Ivan_2", {"LATIN"}),
        ("\u7530\u4e2dTaro", {"LATIN"}),  # Han counts for none
        ("1234", set()),
    ],
)
def test_letter_scripts(name: str, scripts: set[str]) -> None:
    assert letter_scripts(name) == scripts
    assert is_mixed_script(name) == (len(scripts) > 1)
