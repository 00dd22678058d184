"""Passwords and login throttling, without any I/O (pure functions and pure classes).

Hashing is scrypt from the standard library. It is slow on purpose (about 16 MiB and tens of
milliseconds per call), so async callers run it in a worker thread with a small limiter; see
:meth:`trio_chat.store.Store.verify_password`.

:class:`LoginThrottle` takes the time as an argument instead of reading a clock, so its rules
are tested with plain numbers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import os
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

from ..limits import TokenBucket

#: scrypt cost parameters for new hashes (n=2**14, r=8, p=1: 16 MiB of memory per hash).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
#: Longest password accepted, in characters: bounds the work one login attempt can cause.
MAX_PASSWORD_LENGTH = 1024

# Parameters read back from a stored hash are bounded, so a damaged or hostile row cannot
# make one check allocate gigabytes.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16


def _password_bytes(password: str) -> bytes:
    # NFC, as RFC 8265 asks for passwords: "é" typed as one or two code points is one password.
    return unicodedata.normalize("NFC", password).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Hash a password for storage: ``scrypt$n$r$p$salt_b64$hash_b64``.

    Raises :class:`ValueError` for an empty password or one longer than
    :data:`MAX_PASSWORD_LENGTH`. ``salt`` is for tests; by default 16 random bytes.
    """
    if not password:
        raise ValueError("a password cannot be empty")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    digest = hashlib.scrypt(
        _password_bytes(password), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HASH_BYTES
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a hash made by :func:`hash_password`.

    The final comparison is constant-time. A malformed or out-of-bounds hash never matches.
    """
    if not password or len(password) > MAX_PASSWORD_LENGTH:
        return False
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return False
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        return False
    if not salt or not 16 <= len(expected) <= 64:
        return False
    try:
        digest = hashlib.scrypt(
            _password_bytes(password),
            salt=salt,
            n=n,
            r=r,
            p=p,
            dklen=len(expected),
            maxmem=128 * r * n + 2**20,
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(digest, expected)


_dummy_hash: list[str] = []


def dummy_hash() -> str:
    """A valid hash of a random password, made once.

    Checking a password against it when an account does not exist costs the same time as a
    real check, so response times do not tell which accounts exist.
    """
    if not _dummy_hash:
        _dummy_hash.append(hash_password(_b64(os.urandom(12))))
    return _dummy_hash[0]


# --------------------------------------------------------------------------------------
# Throttling
# --------------------------------------------------------------------------------------


def failure_delay(failures: int, *, max_delay: float = 60.0) -> float:
    """Seconds to wait after ``failures`` consecutive failures: min(2**(k-1), max_delay)."""
    if failures <= 0:
        return 0.0
    # Capped before exponentiation so a huge count cannot overflow.
    return float(min(2.0 ** min(failures - 1, 64), max_delay))


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


class _FailureTable:
    """Failure counts by key, oldest-touched first, with a size cap and a forget horizon.

    The first ``allowance`` failures of a key cost no wait; after that the delay doubles
    as :func:`failure_delay` says.
    """

    def __init__(
        self, max_entries: int, forget_after: float, max_delay: float, allowance: int = 0
    ) -> None:
        self._entries: OrderedDict[str, _Failures] = OrderedDict()
        self._max_entries = max_entries
        self._forget_after = forget_after
        self._max_delay = max_delay
        self._allowance = allowance

    def __len__(self) -> int:
        return len(self._entries)

    def wait(self, key: str, now: float) -> float:
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        delay = failure_delay(entry.count - self._allowance, max_delay=self._max_delay)
        return max(0.0, entry.last + delay - now)

    def failed(self, key: str, now: float) -> None:
        self.expire(now)
        entry = self._entries.pop(key, None)
        if entry is None:
            entry = _Failures(0, now)
        entry.count += 1
        entry.last = now
        # Re-inserted at the end: the table stays ordered by last failure.
        self._entries[key] = entry
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def take_back(self, key: str) -> None:
        """Undo one :meth:`failed` (an attempt counted in advance that turned out right)."""
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.count -= 1
        if entry.count <= 0:
            del self._entries[key]

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def expire(self, now: float) -> None:
        while self._entries:
            entry = next(iter(self._entries.values()))
            if now - entry.last < self._forget_after:
                break
            self._entries.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Throttled:
    """Why a login attempt may not be checked now, and for how long."""

    #: Seconds until an attempt from this address may be checked.
    wait: float
    #: True when the account's own cap is the reason (guesses from many addresses), not
    #: this address's failures.
    account_wide: bool

    @property
    def text(self) -> str:
        """What the user is told (``login_throttled``)."""
        seconds = math.ceil(self.wait)
        if self.account_wide:
            return (
                f"too many failed logins for this nickname; try again in {seconds} s "
                "(or from where you logged in before)"
            )
        return f"too many failed logins; try again in {seconds} s"


class LoginThrottle:
    """Limits password guesses, the way mature servers do, without locking the owner out.

    An attempt is counted when it *starts* (:meth:`begin`), as a failure, before the slow
    password check; :meth:`succeeded` takes it back. So guesses sent in parallel are
    throttled like guesses sent one after another: while one is being checked, the next
    from the same place already has to wait.

    Three limits, each with its own purpose:

    * **Per account and address**: after ``k`` failures for one account from one address,
      the next attempt there waits ``min(2**(k-1), max_delay)`` seconds after the last.
      This is the one a guesser meets first, and it locks out nobody else: the owner
      logging in from another address is not slowed by it.
    * **Per address**, over all accounts: after ``address_allowance`` free failures, the
      same doubling delay. It stops one address from trying one password on many
      accounts, and leaves room for a few people behind one NAT mistyping at once.
    * **Per account**, over all addresses (the global cap): at most ``account_burst``
      attempts at once from addresses the account has not logged in from, then
      ``account_rate`` per second. Guesses spread over many addresses (a botnet) meet
      this one. Addresses the account logged in from recently are exempt, so even under
      such an attack the owner gets in from home.

    A success clears the account's count at that address but keeps the address's other
    failures: otherwise one attacker could reset their address's count by logging into
    their own account between guesses at others.

    ``now`` is any monotonic clock in seconds, passed in so the rules are testable with
    plain numbers. Memory is bounded: each table keeps at most ``max_entries`` keys (the
    stalest are dropped first), and entries quiet for ``forget_after`` seconds are dropped.
    """

    def __init__(
        self,
        *,
        max_delay: float = 60.0,
        forget_after: float = 3600.0,
        max_entries: int = 10_000,
        address_allowance: int = 3,
        account_burst: int = 10,
        account_rate: float = 10 / 60,
        known_per_account: int = 8,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._pairs = _FailureTable(max_entries, forget_after, max_delay)
        self._addresses = _FailureTable(max_entries, forget_after, max_delay, address_allowance)
        self._max_entries = max_entries
        self._account_burst = account_burst
        self._account_rate = account_rate
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._known: OrderedDict[str, list[str]] = OrderedDict()
        self._known_per_account = known_per_account

    @staticmethod
    def _pair(account: str, address: str) -> str:
        return f"{account}\0{address}"

    def check(self, account: str, address: str, now: float) -> Throttled | None:
        """Whether an attempt for ``account`` from ``address`` must wait (counts nothing)."""
        wait = max(
            self._pairs.wait(self._pair(account, address), now),
            self._addresses.wait(address, now),
        )
        if wait > 0:
            return Throttled(wait, account_wide=False)
        if not self._is_known(account, address):
            bucket = self._buckets.get(account)
            if bucket is not None:
                wait = bucket.retry_after(now)
                if wait > 0:
                    return Throttled(wait, account_wide=True)
        return None

    def begin(self, account: str, address: str, now: float) -> Throttled | None:
        """Start an attempt: ``None`` if it may be checked now (and it is counted as a
        failure until :meth:`succeeded`), else why and how long it must wait (nothing is
        counted for a refused attempt)."""
        refused = self.check(account, address, now)
        if refused is not None:
            return refused
        self._pairs.failed(self._pair(account, address), now)
        self._addresses.failed(address, now)
        if not self._is_known(account, address):
            self._bucket(account).take(now)
        return None

    def succeeded(self, account: str, address: str, now: float) -> None:
        """The attempt begun for ``account`` from ``address`` was right: take it back, and
        remember the address as one the owner uses (exempt from the account's cap)."""
        self._pairs.forget(self._pair(account, address))
        self._addresses.take_back(address)
        self._pairs.expire(now)
        self._addresses.expire(now)
        known = self._known.pop(account, [])
        if address in known:
            known.remove(address)
        known.append(address)
        self._known[account] = known[-self._known_per_account :]
        while len(self._known) > self._max_entries:
            self._known.popitem(last=False)

    def not_checked(self, account: str, address: str) -> None:
        """The attempt begun for ``account`` from ``address`` could not be checked (the
        accounts could not be read): take it back, as it says nothing about the password.
        Otherwise an outage would leave everyone who tried meanwhile waiting afterwards."""
        self._pairs.take_back(self._pair(account, address))
        self._addresses.take_back(address)

    def _is_known(self, account: str, address: str) -> bool:
        return address in self._known.get(account, ())

    def _bucket(self, account: str) -> TokenBucket:
        bucket = self._buckets.pop(account, None)
        if bucket is None:
            bucket = TokenBucket(self._account_rate, self._account_burst)
        self._buckets[account] = bucket  # most recently used last
        while len(self._buckets) > self._max_entries:
            self._buckets.popitem(last=False)
        return bucket

    def __len__(self) -> int:
        """Number of remembered failure entries (account-address pairs plus addresses)."""
        return len(self._pairs) + len(self._addresses)
