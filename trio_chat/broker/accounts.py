"""Accounts every node shares: one Redis hash, beside the broker's stream.

Why: each node's SQLite file keeps its own history, but an account kept there would be
known on one node only: a nick registered on node A would be free for anyone on node B.
So with a broker the accounts live in Redis, in one hash ``<prefix>:accounts``: the field
is the nick's name key, the value a small JSON object with the scrypt hash
(:func:`~trio_chat.store.accounts.hash_password`) and when it was created and last changed.

* Registering is ``HSETNX``: of two nodes registering one name at the same moment, Redis
  lets exactly one in (first come, first served, as the SQLite primary key does alone).
* Checking a password is ``HGET`` and scrypt in a worker thread (a few at a time); a
  missing account is checked against a dummy hash, so it takes as long as a wrong
  password and timing does not tell which names are registered.
* Changing a password is compare-and-set (a tiny Lua script): the new hash is written
  only if the stored value is still the one whose password was checked, so two changes
  with the same old password cannot both win, on one node or on two.

Every call is bounded by :data:`TIMEOUT`. When Redis cannot be reached (down, too slow,
refusing) the call raises :class:`~trio_chat.store.StoreError`, which
:class:`~trio_chat.logins.Logins` turns into a ``store_error`` refusal and one log line.
Nothing is cached: a password changed on one node is the password on all at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import urlsplit, urlunsplit

import trio

from ..names import name_key
from ..store import AccountExists, StoreError
from ..store.accounts import check_password, dummy_hash, hash_password
from .redis import RETRY_DELAYS

if TYPE_CHECKING:
    import coredis

    from ..store import Store

__all__ = ["TIMEOUT", "RedisAccounts", "move_in", "redis_failures", "without_credentials"]

log = logging.getLogger("trio_chat.broker")

#: Seconds one account call may wait for Redis before it is refused.
TIMEOUT = 3.0

#: Write the new value only if the stored one is still the one checked.
_COMPARE_AND_SET = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""


def redis_failures() -> tuple[type[BaseException], ...]:
    """What a Redis call raises when it cannot be done (coredis is optional: imported late)."""
    import coredis.exceptions

    return (OSError, trio.TooSlowError, coredis.exceptions.RedisError)


def without_credentials(url: str) -> str:
    """``url`` fit for a log line: a password in it (``redis://:secret@host``) is left out."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit(parts._replace(netloc=netloc))


def _record(password_hash: str, created: float, changed: float) -> str:
    return json.dumps({"hash": password_hash, "created": created, "changed": changed})


def _hash_of(value: bytes | None) -> str | None:
    """The password hash in a stored value (``None``: no account). A value that is not
    ours is an account whose password never matches, not an error."""
    if value is None:
        return None
    try:
        found = json.loads(value).get("hash")
    except (ValueError, AttributeError):
        return ""
    return found if isinstance(found, str) else ""


class SharedInRedis:
    """What the nodes share in Redis besides the log (:class:`RedisAccounts`, the read
    markers): through a client of its own, each request bounded by :data:`TIMEOUT`, and
    a failure told as a :class:`StoreError` naming :attr:`WHAT`. Make one with
    :meth:`open`."""

    #: What a failure says could not be read or written ("the accounts").
    WHAT: ClassVar[str] = ""

    def __init__(self, client: coredis.Redis[bytes], url: str) -> None:
        self._client = client
        self._where = without_credentials(url)

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str, *, prefix: str = "trio-chat") -> AsyncIterator[Self]:
        """A client of its own for the block's duration (the broker's are busy reading and
        appending the log). Connects lazily: opening succeeds with Redis down."""
        import coredis  # only with a broker: the dependency is optional

        client: coredis.Redis[bytes] = coredis.Redis.from_url(url)
        async with client:
            yield cls(client, url, prefix=prefix)  # type: ignore[call-arg]

    async def _call(self, what: str, request: Any) -> Any:
        """Await one Redis request within :data:`TIMEOUT`; a failure is a StoreError."""
        try:
            with trio.fail_after(TIMEOUT):
                return await request
        except redis_failures() as exc:
            reason = str(exc) or type(exc).__name__
            raise StoreError(
                f"cannot {what} {self.WHAT} in Redis at {self._where}: {reason}"
            ) from None


class RedisAccounts(SharedInRedis):
    """The accounts of every node, in one Redis hash (an
    :class:`~trio_chat.logins.AccountBook`). Make one with :meth:`open`."""

    WHAT = "the accounts"

    def __init__(
        self, client: coredis.Redis[bytes], url: str, *, prefix: str = "trio-chat"
    ) -> None:
        super().__init__(client, url)
        self.key = f"{prefix}:accounts"
        self._compare_and_set = client.register_script(_COMPARE_AND_SET)
        # scrypt takes 16 MiB per call: a few at a time, not one per connecting client.
        self._hash_limiter = trio.CapacityLimiter(2)

    async def _stored(self, key: str) -> bytes | None:
        value: bytes | None = await self._call("read", self._client.hget(self.key, key))
        return value

    # ---------------------------------------------------------------- the book

    async def create_account(self, nick_key: str, password: str) -> None:
        key = name_key(nick_key)
        encoded = await trio.to_thread.run_sync(hash_password, password, limiter=self._hash_limiter)
        now = time.time()
        added = await self._call(
            "write", self._client.hsetnx(self.key, key, _record(encoded, now, now))
        )
        if not added:
            raise AccountExists(f"the name {nick_key!r} is already registered")

    async def account_exists(self, nick_key: str) -> bool:
        return bool(await self._call("read", self._client.hexists(self.key, name_key(nick_key))))

    async def verify_password(self, nick_key: str, password: str) -> bool:
        return await self._check(password, _hash_of(await self._stored(name_key(nick_key))))

    async def change_password(self, nick_key: str, old: str, new: str) -> bool:
        key = name_key(nick_key)
        stored = await self._stored(key)
        if not await self._check(old, _hash_of(stored)):
            return False
        assert stored is not None  # _check is never right without an account
        encoded = await trio.to_thread.run_sync(hash_password, new, limiter=self._hash_limiter)
        created = json.loads(stored).get("created", time.time())
        replaced = await self._call(
            "write",
            self._compare_and_set(
                keys=[self.key], args=[key, stored, _record(encoded, created, time.time())]
            ),
        )
        return bool(replaced)

    async def _check(self, password: str, stored: str | None) -> bool:
        def check() -> bool:
            matches = check_password(password, stored if stored is not None else dummy_hash())
            return matches and stored is not None

        return await trio.to_thread.run_sync(check, limiter=self._hash_limiter)

    # ------------------------------------------------------------- moving in

    async def copy_in(self, accounts: Iterable[tuple[str, str, float, float]]) -> int:
        """Add accounts kept elsewhere (a node's SQLite file), as ``(name key, password
        hash, created, changed)``; return how many were added. A name already here keeps
        the account it has: the shared one wins over a node's old copy."""
        added = 0
        for key, encoded, created, changed in accounts:
            value = _record(encoded, created, changed)
            if await self._call("write", self._client.hsetnx(self.key, name_key(key), value)):
                added += 1
        return added


async def move_in(store: Store, accounts: RedisAccounts) -> int:
    """Copy the accounts of this node's SQLite file into the shared hash (see
    :meth:`RedisAccounts.copy_in`), retrying while Redis cannot be reached; return how
    many were new there.

    So a node that served alone keeps its users' accounts when it joins a broker. Done at
    every start: a name registered in Redis since keeps its account, and an account changed
    in Redis is not touched. (If Redis loses the hash, the nodes put back the accounts their
    files had from before the broker, with the passwords of then.)
    """
    local = await store.all_accounts()
    if not local:
        return 0
    added = await until_reached(lambda: accounts.copy_in(local))
    log.info(
        "accounts: %d of this node's %d accounts copied to the shared accounts "
        "(the others were there already)",
        added,
        len(local),
    )
    return added


async def until_reached(attempt: Callable[[], Awaitable[int]]) -> int:
    """``attempt()`` again, after each of :data:`~.redis.RETRY_DELAYS` in turn (then the
    last, on and on), while it fails with :class:`StoreError` (Redis cannot be reached),
    each failure logged: what a node does with its database's accounts and markers when
    it starts (it does not serve until they are in Redis)."""
    delays = iter(RETRY_DELAYS)
    while True:
        try:
            return await attempt()
        except StoreError as exc:
            wait = next(delays, RETRY_DELAYS[-1])
            log.warning("%s; retrying in %gs", exc, wait)
            await trio.sleep(wait)
