"""The one kind of error a user is told about: a machine-readable code and a line of text.

Whatever refuses what a user sent (a bad nickname, a failed login, a plugin's ``ctx.fail``,
a frame that breaks the protocol) raises a :class:`ChatError`; the server turns it into an
``error`` event in one place (:func:`trio_chat.protocol.error_reply`). The codes are the
stable ones documented in ``docs/protocol.md``; the subclasses only say where an error
comes from, so callers may catch the kind they expect.

This module imports nothing of trio-chat: every layer, the protocol included, may use it.
"""

from __future__ import annotations


class ChatError(Exception):
    """Refused, for a reason the user is told: ``code`` (stable, for programs) and ``text``
    (one line, for people). ``ref`` is the ``ref`` of the frame refused, when known."""

    code: str
    text: str

    def __init__(self, code: str, text: str, *, ref: str | None = None) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.ref = ref


class FixedCodeError(ChatError):
    """A :class:`ChatError` whose class decides the code: ``raise NotAllowed("text")``."""

    code = "error"

    def __init__(self, text: str) -> None:
        super().__init__(type(self).code, text)


class CommandError(ChatError):
    """Raise from a command handler (or message filter) to refuse with a message for the user.

    ``code`` is the error code the client sees (default ``command_failed``). Public plugin
    API, importable as ``trio_chat.CommandError``.
    """

    def __init__(self, text: str, code: str = "command_failed") -> None:
        super().__init__(code, text)


class LoginRefused(ChatError):
    """A login, registration or account change failed; ``code`` and ``text`` say why."""
