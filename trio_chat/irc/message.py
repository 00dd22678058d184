"""IRC messages on the wire, without any I/O: one line of bytes in, an :class:`IrcMessage`
out, and back (in the spirit of h11).

The grammar is the one of the "Modern IRC Client Protocol" (modern.ircdocs.horse) and
RFC 1459/2812, with IRCv3 message tags::

    [@tags SPACE] [:source SPACE] COMMAND [params] [SPACE :trailing] CRLF

Limits, as clients expect them:

* the line without its tags is at most 512 bytes, CRLF included (:data:`MAX_LINE_BYTES`);
* a client's tags take at most 4096 bytes with their ``@`` and space
  (:data:`MAX_CLIENT_TAGS_BYTES`); a server may add up to 8191 in all;
* a received line must be UTF-8. It is refused, not guessed at (no latin-1 fallback):
  the hub only carries text, and a guessed encoding would show other users mojibake.
  ``UTF8ONLY`` in ISUPPORT says so to clients.

A line that breaks these rules raises :class:`IrcParseError`, whose ``reason`` names the
rule, so the transport can answer with the numeric a client expects (417 for a line too
long, ``FAIL * INVALID_UTF8`` for bad bytes) and keep the connection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: Longest line without its tags, CRLF included (RFC 1459 2.3).
MAX_LINE_BYTES = 512
#: Longest tags section a client may send, its leading ``@`` and trailing space included.
MAX_CLIENT_TAGS_BYTES = 4096
#: Longest tags section a server may send (IRCv3 message-tags: 8191 with ``@`` and space).
MAX_SERVER_TAGS_BYTES = 8191
#: Most bytes one received line may hold before its CRLF (tags and message).
MAX_RECEIVED_LINE_BYTES = MAX_CLIENT_TAGS_BYTES + MAX_LINE_BYTES - 2

_TAG_ESCAPES = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
_TAG_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


class IrcParseError(ValueError):
    """A received line breaks the IRC grammar or its limits.

    ``reason`` is one of ``"too_long"``, ``"tags_too_long"``, ``"bad_utf8"``,
    ``"no_command"``; ``command`` is the line's command when it could be read (for a
    ``FAIL`` naming it)."""

    def __init__(self, reason: str, text: str, command: str = "*") -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text
        self.command = command


@dataclass(frozen=True, slots=True)
class IrcMessage:
    """One IRC message: ``command`` in capitals (or three digits), ``params`` with the
    trailing one last and unmarked, ``source`` without its ``:``, ``tags`` unescaped
    (a tag without a value maps to ``""``)."""

    command: str
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def param(self, index: int, default: str = "") -> str:
        """The ``index``-th parameter, or ``default`` if there are fewer."""
        return self.params[index] if index < len(self.params) else default


def escape_tag_value(value: str) -> str:
    """A tag value as it goes on the wire (IRCv3 message-tags escaping)."""
    if not any(ch in value for ch in _TAG_ESCAPES):
        return value
    return "".join(_TAG_ESCAPES.get(ch, ch) for ch in value)


def unescape_tag_value(raw: str) -> str:
    """A tag value as it was meant: ``\\:`` is ``;``, ``\\s`` a space, and so on; an
    unknown escape is the character itself and a lone trailing backslash is dropped."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    chars = iter(raw)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        following = next(chars, None)
        if following is not None:
            out.append(_TAG_UNESCAPES.get(following, following))
    return "".join(out)


def _parse_tags(section: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in section.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        if key:
            tags[key] = unescape_tag_value(value)
    return tags


def parse_line(line: bytes) -> IrcMessage:
    """Parse one received line (without its line ending: ``\\r\\n`` or a bare ``\\n``).

    Raises :class:`IrcParseError` for a line over the limits, bytes that are not UTF-8,
    or a line with no command (a blank line is the caller's to skip)."""
    tags_section = b""
    rest = line
    if line.startswith(b"@"):
        end = line.find(b" ")
        if end < 0:
            raise IrcParseError("no_command", "a line with tags needs a command after them")
        tags_section, rest = line[1:end], line[end + 1 :]
        if end + 1 > MAX_CLIENT_TAGS_BYTES:
            raise IrcParseError(
                "tags_too_long", f"message tags are limited to {MAX_CLIENT_TAGS_BYTES} bytes"
            )
    rest = rest.lstrip(b" ")
    if len(rest) > MAX_LINE_BYTES - 2:
        raise IrcParseError(
            "too_long", f"a line is limited to {MAX_LINE_BYTES} bytes with its CRLF", _peek(rest)
        )
    try:
        text = rest.decode("utf-8")
        tags = _parse_tags(tags_section.decode("utf-8")) if tags_section else {}
    except UnicodeDecodeError:
        raise IrcParseError(
            "bad_utf8", "this server only takes UTF-8 text; the line was dropped", _peek(rest)
        ) from None
    source: str | None = None
    if text.startswith(":"):
        source, _, text = text[1:].partition(" ")
        text = text.lstrip(" ")
    head, _, params_text = text.partition(" ")
    if not head:
        raise IrcParseError("no_command", "the line has no command")
    return IrcMessage(head.upper(), _parse_params(params_text), source, tags)


def _peek(rest: bytes) -> str:
    """The command of a line that could not be parsed whole, for the error naming it."""
    words = rest.split(b" ", 2)
    word = words[1] if words[0].startswith(b":") and len(words) > 1 else words[0]
    command = word.decode("ascii", "replace").upper()
    return command if command.isalnum() and len(command) <= 20 else "*"


def _parse_params(text: str) -> tuple[str, ...]:
    params: list[str] = []
    while text:
        if text.startswith(":"):
            params.append(text[1:])
            break
        word, _, text = text.partition(" ")
        if word:
            params.append(word)
        text = text.lstrip(" ")
    return tuple(params)


def format_message(
    command: str,
    *params: str,
    source: str | None = None,
    tags: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
) -> bytes:
    """One line to send, CRLF included. The last parameter is made trailing when it must
    be (empty, holds a space, or starts with ``:``); the others must be plain words.

    Raises ``ValueError`` for a middle parameter that is not one, or a parameter holding
    CR, LF or NUL (a bug of the caller's: it would forge a line)."""
    parts: list[str] = []
    if tags:
        items = tags.items() if isinstance(tags, Mapping) else tags
        parts.append(
            "@"
            + ";".join(f"{key}={escape_tag_value(value)}" if value else key for key, value in items)
        )
    if source:
        parts.append(":" + source)
    parts.append(command)
    for index, param in enumerate(params):
        if "\r" in param or "\n" in param or "\0" in param:
            raise ValueError(f"an IRC parameter cannot hold CR, LF or NUL: {param!r}")
        last = index == len(params) - 1
        if not last:
            if not param or " " in param or param.startswith(":"):
                raise ValueError(f"only the last IRC parameter may be {param!r}")
            parts.append(param)
        elif not param or " " in param or param.startswith(":"):
            parts.append(":" + param)
        else:
            parts.append(param)
    return (" ".join(parts) + "\r\n").encode("utf-8")


def message_bytes(message: IrcMessage) -> bytes:
    """:func:`format_message` for an :class:`IrcMessage`."""
    return format_message(
        message.command, *message.params, source=message.source, tags=message.tags
    )


# ------------------------------------------------------------------------------ CTCP

CTCP_MARK = "\x01"


def ctcp_decode(text: str) -> tuple[str, str] | None:
    """``(command, arguments)`` of a CTCP message (``\\x01ACTION waves\\x01``), or
    ``None`` for plain text. The closing ``\\x01`` is optional, as some clients drop it."""
    if not text.startswith(CTCP_MARK):
        return None
    body = text[1:]
    if body.endswith(CTCP_MARK):
        body = body[:-1]
    command, _, args = body.partition(" ")
    return command.upper(), args


def ctcp_encode(command: str, args: str = "") -> str:
    """A CTCP message as the text of a PRIVMSG or NOTICE."""
    return CTCP_MARK + command + (" " + args if args else "") + CTCP_MARK
