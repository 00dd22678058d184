"""Look-alike names: a *skeleton* that two confusable nicknames share (pure functions).

``alice``, ``ALICE``, ``ａｌｉｃｅ`` (full width), ``al1ce``, ``AIice`` (capital i) and
``аlice`` (Cyrillic ``а``) all read as "alice" on screen, so a chat server that keeps them
apart lets anyone impersonate anyone. :func:`skeleton` maps each of them to one string
(in the spirit of Unicode TS #39's skeletons, with a small hand-checked table instead of the
whole ``confusables.txt``); a server that keys nicks by it refuses the second spelling as
"nick in use". :func:`is_mixed_script` catches the rest of the trick (one Cyrillic letter
hidden in a Latin name).

The skeleton is a key, never shown: ``skeleton("alice") == "allce"``. How it is made:

1. NFKC, then case folding, then NFKC again: width, ligatures, compatibility forms and
   case stop mattering (``ＡＬＩＣＥ``, ``ﬁ``, ``ß`` = ``ss``).
2. NFD, then every combining mark (categories Mn, Mc, Me) and every format character (Cf:
   zero-width spaces and joiners, soft hyphen, bidi controls) is dropped. So **two nicks
   that differ only by accents cannot coexist**: ``José`` and ``Jose`` are one name, as are
   ``Zoë`` and ``Zoe``, ``й`` and ``и``. That is the price of not letting ``аlicé`` pass
   for ``alice``; letters that are not a base letter plus a mark (``ø``, ``ł``, ``đ``) stay
   distinct.
3. Each remaining character that looks like a Latin letter becomes that letter
   (:data:`PROTOTYPES`): Cyrillic and Greek look-alikes, and the ASCII ones ``0`` -> ``o``
   and ``1``, ``i``, ``l``, ``|`` -> ``l`` (one class, since each pair of them is confused
   in some font).
4. ``rn`` -> ``m`` and ``vv`` -> ``w``, the two multi-letter look-alikes that survive small
   sans-serif fonts.

Because identity is case-insensitive, a Greek or Cyrillic letter counts as a look-alike if
*either* of its cases looks like the same case of a Latin letter: ``В`` looks like ``B``,
``В`` and ``в`` are one nick letter, and ``B`` and ``b`` are, so ``в`` must collide with
``b`` too. Where the two cases suggest different Latin letters the capital wins (``Η``/``η``
-> ``h``, ``Ν``/``ν`` -> ``n``, ``Υ``/``υ`` -> ``y``, ``Μ``/``μ`` -> ``m``): a key is one
string, and an all-Greek ``νο`` posing as ``vo`` is rare next to a Latin name with one Greek
letter in it, which :func:`is_mixed_script` refuses.

Names genuinely written in Greek or Cyrillic keep a skeleton of their own
(``skeleton("Дмитрий") == "дmиtpии"``); it only collides with another spelling that looks
the same.
"""

from __future__ import annotations

import unicodedata

#: Single characters (after case folding and mark stripping) and their Latin prototype.
PROTOTYPES: dict[str, str] = {
    # ASCII and Latin look-alikes.
    "0": "o",
    "1": "l",
    "i": "l",
    "|": "l",
    "\u0131": "l",  # ı dotless i
    "\u01c0": "l",  # ǀ Latin letter dental click
    "\u0269": "l",  # ɩ Latin small letter iota
    "\u0251": "a",  # ɑ Latin small letter alpha
    "\u0261": "g",  # ɡ Latin small letter script g
    # Cyrillic (lower case; the capitals fold to these first).
    "\u0430": "a",  # а (А)
    "\u0432": "b",  # в (В looks like B)
    "\u0435": "e",  # е (Е)
    "\u043a": "k",  # к (К)
    "\u043c": "m",  # м (М)
    "\u043d": "h",  # н (Н looks like H)
    "\u043e": "o",  # о (О)
    "\u0440": "p",  # р (Р)
    "\u0441": "c",  # с (С)
    "\u0442": "t",  # т (Т)
    "\u0443": "y",  # у (У)
    "\u0445": "x",  # х (Х)
    "\u0455": "s",  # ѕ (Ѕ)
    "\u0456": "l",  # і (І), dotted like i
    "\u0458": "j",  # ј (Ј)
    "\u0461": "w",  # ѡ omega
    "\u04bb": "h",  # һ (Һ)
    "\u04af": "y",  # ү (Ү straight u looks like Y)
    "\u04cf": "l",  # ӏ palochka (Ӏ)
    "\u0501": "d",  # ԁ
    "\u051b": "q",  # ԛ (Ԛ)
    "\u051d": "w",  # ԝ (Ԝ)
    # Greek (lower case; the capitals fold to these first).
    "\u03b1": "a",  # α (Α)
    "\u03b2": "b",  # β (Β)
    "\u03b5": "e",  # ε (Ε)
    "\u03b6": "z",  # ζ (Ζ)
    "\u03b7": "h",  # η (Η looks like H)
    "\u03b9": "l",  # ι (Ι looks like I)
    "\u03ba": "k",  # κ (Κ)
    "\u03bc": "m",  # μ (Μ); also µ micro sign, which NFKC turns into μ
    "\u03bd": "n",  # ν (Ν looks like N; the capital wins over ν looking like v)
    "\u03bf": "o",  # ο (Ο)
    "\u03c1": "p",  # ρ (Ρ)
    "\u03c4": "t",  # τ (Τ)
    "\u03c5": "y",  # υ (Υ looks like Y)
    "\u03c7": "x",  # χ (Χ)
    "\u03f3": "j",  # ϳ yot (Ϳ)
}

#: Letter sequences that read as one letter, replaced after :data:`PROTOTYPES`.
SEQUENCES: tuple[tuple[str, str], ...] = (("rn", "m"), ("vv", "w"))

_TABLE = str.maketrans(PROTOTYPES)

#: Scripts whose letters imitate each other; a name may use letters of only one of them.
CONFUSABLE_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")


def _fold(text: str) -> str:
    """Steps 1 and 2: compatibility, case, marks and invisible characters."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(
        ch
        for ch in unicodedata.normalize("NFD", text)
        if unicodedata.category(ch)[0] != "M" and unicodedata.category(ch) != "Cf"
    )


def skeleton(text: str) -> str:
    """The key under which ``text`` and every look-alike of it are one name.

    Idempotent (``skeleton(skeleton(x)) == skeleton(x)``) and case-insensitive.
    """
    text = _fold(text).translate(_TABLE)
    for sequence, letter in SEQUENCES:
        text = text.replace(sequence, letter)
    return text


def letter_scripts(text: str) -> frozenset[str]:
    """Which of :data:`CONFUSABLE_SCRIPTS` the letters of ``text`` are written in.

    Digits, punctuation and letters of other scripts (Han, Arabic, ...) count for none.
    """
    found: set[str] = set()
    for ch in unicodedata.normalize("NFKC", text):
        if not ch.isalpha():
            continue
        script = unicodedata.name(ch, "").partition(" ")[0]
        if script in CONFUSABLE_SCRIPTS:
            found.add(script)
    return frozenset(found)


def is_mixed_script(text: str) -> bool:
    """Whether ``text`` mixes Latin, Greek and Cyrillic letters (``Аlice``, ``pаypal``).

    Such a name only makes sense as a disguise, so the server refuses it. Letters of one
    of those scripts with digits, punctuation or other scripts (``Ivan_2``, ``田中Taro``)
    are fine.
    """
    if text.isascii():  # ASCII letters are all Latin: the usual nick, told at once
        return False
    return len(letter_scripts(text)) > 1
