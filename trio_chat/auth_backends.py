"""Auth backends: plugins that check a nick and password (a file of users, LDAP, a web
service) before, or instead of, the built-in accounts.

Two hooks, both "first answer wins": ``authenticate`` says True (let in), False (refuse)
or None (not mine: ask the next backend, then the built-in accounts), and ``is_account``
says whether a nick belongs to a backend's user, so guests cannot take it. pluggy's own
``firstresult`` cannot await: an ``async def`` implementation returns a coroutine, which
is not ``None``, so the chain would end there whatever it meant to say (see
../shared/LIBRARIES.md). This module walks the implementations itself, in pluggy's order
(``tryfirst`` first, then the last registered), awaiting each answer within the plugin
timeout, so a backend may be ``async def`` and still pass with ``None``.

A backend that raises, hangs or answers something else than True, False or None is
logged, and the login is refused with ``store_error`` (the answer a user gets when the
built-in accounts cannot be read): a broken backend never lets anyone in, and never
hands its users' nicks to whoever asks next. Password guesses checked by a backend are
throttled like those of the built-in accounts.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

import pluggy
import trio

from .errors import LoginRefused
from .hub import host_of
from .logins import CANNOT_CHECK_ACCOUNTS
from .names import name_key
from .store import LoginThrottle

log = logging.getLogger("trio_chat.auth")


class BackendFailed(Exception):
    """A backend raised, timed out or gave garbage (logged already)."""


class AuthBackends:
    """Asks the plugins' ``authenticate`` and ``is_account`` implementations, in order."""

    def __init__(self, hook: Any, time_limit: float) -> None:
        #: The plugin manager's ``pm.hook`` (where the two hook callers are found).
        self._hook = hook
        self.time_limit = time_limit
        self.throttle = LoginThrottle()

    async def authenticate(
        self, server: object, nick: str, password: str, address: str
    ) -> bool | None:
        """The first backend's verdict on ``nick``/``password`` (``None``: none decided).

        Raises :class:`LoginRefused`: ``login_throttled`` past the guess budget, and
        ``store_error`` when a backend failed."""
        impls = self._hook.authenticate.get_hookimpls()
        if not impls:
            return None
        key, host = name_key(nick), host_of(address)
        refused = self.throttle.begin(key, host, time.monotonic())
        if refused is not None:
            raise LoginRefused("login_throttled", refused.text)
        arguments = {"server": server, "nick": nick, "password": password, "address": address}
        try:
            verdict = await self._first_answer("authenticate", impls, arguments)
        except BackendFailed:
            self.throttle.not_checked(key, host)
            raise LoginRefused("store_error", CANNOT_CHECK_ACCOUNTS) from None
        if verdict is None:
            self.throttle.not_checked(key, host)  # the built-in accounts count it
        elif verdict:
            self.throttle.succeeded(key, host, time.monotonic())
        return verdict

    def has_accounts(self) -> bool:
        """Whether any backend says which nicks are its users (``is_account``): if none
        does, :meth:`is_account` says ``None`` without asking, and a guest's log-in need
        not await it (see :meth:`~trio_chat.server.ChatServer.admit_nowait`)."""
        return bool(self._hook.is_account.get_hookimpls())

    async def is_account(self, server: object, nick: str) -> bool | None:
        """The first backend's word on whether ``nick`` is one of its users (``None``: none
        said). Raises :class:`LoginRefused` (``store_error``) when a backend failed."""
        impls = self._hook.is_account.get_hookimpls()
        if not impls:
            return None
        try:
            return await self._first_answer("is_account", impls, {"server": server, "nick": nick})
        except BackendFailed:
            raise LoginRefused("store_error", CANNOT_CHECK_ACCOUNTS) from None

    async def _first_answer(
        self, hook_name: str, impls: list[pluggy.HookImpl], arguments: dict[str, Any]
    ) -> bool | None:
        for impl in reversed(impls):  # pluggy's calling order
            if impl.wrapper or impl.hookwrapper:
                log.error("plugin %r: %s cannot be a wrapper; skipped", impl.plugin_name, hook_name)
                continue
            answer = await self._ask(hook_name, impl, arguments)
            if answer is not None:
                return answer
        return None

    async def _ask(
        self, hook_name: str, impl: pluggy.HookImpl, arguments: dict[str, Any]
    ) -> bool | None:
        plugin = impl.plugin_name
        try:
            answer = impl.function(*[arguments[name] for name in impl.argnames])
            if inspect.isawaitable(answer):
                with trio.move_on_after(self.time_limit) as scope:
                    answer = await answer
                if scope.cancelled_caught:
                    log.error(
                        "plugin %r: %s took longer than %ss", plugin, hook_name, self.time_limit
                    )
                    raise BackendFailed
        except BackendFailed:
            raise
        except Exception:
            log.exception("plugin %r: %s raised", plugin, hook_name)
            raise BackendFailed from None
        if answer is not None and not isinstance(answer, bool):
            log.error(
                "plugin %r: %s returned %s, not True, False or None",
                plugin,
                hook_name,
                type(answer).__name__,
            )
            raise BackendFailed
        return answer
