"""Accounts and logins: registering a nick, checking a password (throttled), changing it.

An :class:`AccountBook` keeps the accounts: the node's SQLite
:class:`~trio_chat.store.Store` when it serves alone, the Redis hash every node shares
(:class:`~trio_chat.broker.accounts.RedisAccounts`) with a broker. This is what the server
does with them, and what a user is told when something goes wrong (the book's own errors
are for the operator's log).

The throttle stays in this process: with several nodes each counts the guesses it checks,
so a guesser who spreads guesses over N nodes gets N times the budget of one (the per
account cap included). A shared count would cost a Redis round trip per attempt and one
more thing that fails with Redis; the doubling delays keep N times the budget small.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import trio

from .errors import LoginRefused
from .hub import host_of
from .names import name_key
from .store import AccountExists, LoginThrottle, StoreError
from .store.health import LogLimiter

log = logging.getLogger("trio_chat.store")

#: What a user is told when an account cannot be written (full disk, I/O error, no Redis).
CANNOT_SAVE_ACCOUNTS = "the server cannot save accounts right now"
#: What a user is told when the accounts cannot be read (a login, a registered nick).
CANNOT_CHECK_ACCOUNTS = "the server cannot check accounts right now; try again later"


class AccountBook(Protocol):
    """Where accounts are kept, by name key (:func:`~trio_chat.names.name_key`).

    Every method raises :class:`~trio_chat.store.StoreError` when the book cannot be read
    or written (the message is for the operator's log). Passwords are hashed by the book
    (:mod:`trio_chat.store.accounts`), slowly, off the event loop.
    """

    async def create_account(self, nick_key: str, password: str) -> None:
        """Register ``nick_key`` (first come, first served). Raises
        :class:`~trio_chat.store.AccountExists`, or :class:`ValueError` for an empty or
        overlong password."""
        ...

    async def account_exists(self, nick_key: str) -> bool:
        """Whether ``nick_key`` is registered. A book that keeps its names in memory may
        answer at once too, as ``account_exists_nowait(nick_key) -> bool`` (see
        :meth:`Logins.is_registered_nowait`)."""
        ...

    async def verify_password(self, nick_key: str, password: str) -> bool:
        """Whether the account exists and ``password`` is its password; as slow for a
        missing account as for a wrong password."""
        ...

    async def change_password(self, nick_key: str, old: str, new: str) -> bool:
        """Replace the password if ``old`` is right (and still the password when the new
        one is written); False if not. :class:`ValueError` for a bad ``new``."""
        ...


class Logins:
    """The server's accounts, in an :class:`AccountBook`, behind a
    :class:`~trio_chat.store.LoginThrottle`."""

    def __init__(self, book: AccountBook) -> None:
        self.book = book
        self.throttle = LoginThrottle()
        #: The book's answer at once, if it keeps its names in memory.
        self._exists_nowait: Callable[[str], bool] | None = getattr(
            book, "account_exists_nowait", None
        )
        self._account_log = LogLimiter()

    def _cannot_save_accounts(self, exc: StoreError) -> LoginRefused:
        """Log a failed account write (one line, no traceback; repeats rate-limited) and
        say what the user is told: the book's error is for the operator, not for them."""
        self._account_log.error(log, time.monotonic(), "could not save an account: %s", exc)
        return LoginRefused("store_error", CANNOT_SAVE_ACCOUNTS)

    def _cannot_check_accounts(self, exc: StoreError) -> LoginRefused:
        """The same for a failed read: refused rather than let in unchecked (a guest must
        not take a registered nick because the accounts could not be read)."""
        self._account_log.error(log, time.monotonic(), "could not read the accounts: %s", exc)
        return LoginRefused("store_error", CANNOT_CHECK_ACCOUNTS)

    async def check_login(self, nick: str, password: str, address: str) -> str:
        """Verify a password (throttled; see :class:`~trio_chat.store.LoginThrottle`) and
        return the account key. The attempt is counted before the slow check, so guesses
        sent in parallel are throttled like guesses sent one by one.

        The refusal never says whether the nick is registered.
        """
        key = name_key(nick)
        host = host_of(address)
        refused = self.throttle.begin(key, host, time.monotonic())
        if refused is not None:
            raise LoginRefused("login_throttled", refused.text)
        try:
            right = await self.book.verify_password(key, password)
        except StoreError as exc:
            self.throttle.not_checked(key, host)
            raise self._cannot_check_accounts(exc) from None
        if right:
            self.throttle.succeeded(key, host, time.monotonic())
            return key
        raise LoginRefused("login_failed", "wrong nickname or password")

    async def register(self, nick: str, password: str) -> str:
        """Create the account ``nick`` (first come, first served); return its key."""
        key = name_key(nick)
        try:
            await self.book.create_account(key, password)
        except AccountExists:
            raise LoginRefused(
                "nick_registered", f"the nickname {nick} is already registered"
            ) from None
        except ValueError as exc:
            raise LoginRefused("bad_password", str(exc)) from None
        except StoreError as exc:
            raise self._cannot_save_accounts(exc) from None
        return key

    async def change_password(self, account: str, old: str, new: str) -> bool:
        """Replace ``account``'s password if ``old`` is right; False if it is not.

        Raises :class:`LoginRefused` (``store_error``) when the change cannot be saved, and
        :class:`ValueError` for an empty or overlong ``new``.
        """
        try:
            return await self.book.change_password(account, old, new)
        except StoreError as exc:
            raise self._cannot_save_accounts(exc) from None

    async def is_registered(self, nick: str) -> bool:
        """Whether ``nick`` is registered; raises :class:`LoginRefused` (``store_error``)
        when that cannot be told."""
        try:
            return await self.book.account_exists(name_key(nick))
        except StoreError as exc:
            raise self._cannot_check_accounts(exc) from None

    def is_registered_nowait(self, nick: str) -> bool:
        """:meth:`is_registered` where the book answers from memory (the node's own
        :class:`~trio_chat.store.Store`); raises ``trio.WouldBlock`` where it would
        wait (Redis, the accounts every node shares). A guest's log-in asks it, and a
        coroutine the book's answer does not need costs about as much as the answer."""
        if self._exists_nowait is None:
            raise trio.WouldBlock
        try:
            return self._exists_nowait(name_key(nick))
        except StoreError as exc:
            raise self._cannot_check_accounts(exc) from None
