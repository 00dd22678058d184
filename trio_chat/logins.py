"""Accounts and logins: registering a nick, checking a password (throttled), changing it.

The store keeps the accounts; this is what the server does with them, and what a user is
told when something goes wrong (the store's own errors are for the operator's log).
"""

from __future__ import annotations

import logging
import time

from .errors import LoginRefused
from .hub import host_of
from .names import name_key
from .store import AccountExists, LoginThrottle, Store, StoreError
from .store.health import LogLimiter

log = logging.getLogger("trio_chat.store")

#: What a user is told when an account cannot be written (full disk, I/O error).
CANNOT_SAVE_ACCOUNTS = "the server cannot save accounts right now"


class Logins:
    """The server's accounts, in a :class:`~trio_chat.store.Store`, behind a
    :class:`~trio_chat.store.LoginThrottle`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.throttle = LoginThrottle()
        self._account_log = LogLimiter()

    def _cannot_save_accounts(self, exc: StoreError) -> LoginRefused:
        """Log a failed account write (one line, no traceback; repeats rate-limited) and
        say what the user is told: the store's error is for the operator, not for them."""
        self._account_log.error(log, time.monotonic(), "could not save an account: %s", exc)
        return LoginRefused("store_error", CANNOT_SAVE_ACCOUNTS)

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
        if await self.store.verify_password(key, password):
            self.throttle.succeeded(key, host, time.monotonic())
            return key
        raise LoginRefused("login_failed", "wrong nickname or password")

    async def register(self, nick: str, password: str) -> str:
        """Create the account ``nick`` (first come, first served); return its key."""
        key = name_key(nick)
        try:
            await self.store.create_account(key, password)
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
            return await self.store.change_password(account, old, new)
        except StoreError as exc:
            raise self._cannot_save_accounts(exc) from None

    async def is_registered(self, nick: str) -> bool:
        return await self.store.account_exists(name_key(nick))
