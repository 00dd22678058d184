"""Passwords and login throttling, without any I/O (pure functions and one pure class).

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
import os
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

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
    """Failure counts by key, oldest-touched first, with a size cap and a forget horizon."""

    def __init__(self, max_entries: int, forget_after: float, max_delay: float) -> None:
        self._entries: OrderedDict[str, _Failures] = OrderedDict()
        self._max_entries = max_entries
        self._forget_after = forget_after
        self._max_delay = max_delay

    def __len__(self) -> int:
        return len(self._entries)

    def wait(self, key: str, now: float) -> float:
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        return max(0.0, entry.last + failure_delay(entry.count, max_delay=self._max_delay) - now)

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

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def expire(self, now: float) -> None:
        while self._entries:
            entry = next(iter(self._entries.values()))
            if now - entry.last < self._forget_after:
                break
            self._entries.popitem(last=False)


class LoginThrottle:
    """Exponential delay between failed logins, per account and per address.

    After ``k`` consecutive failures for an account (or from an address), the next attempt
    must wait ``min(2**(k-1), max_delay)`` seconds after the last failure. :meth:`check`
    returns the longer of the two waits. ``now`` is any monotonic clock in seconds
    (``trio.current_time()``), passed in so the rules are testable with plain numbers.

    A success clears the account's count but not the address's: otherwise one attacker
    could reset their address's count by logging into their own account between guesses
    at others. An address's count only matters right after its failures, and is
    forgotten after ``forget_after`` quiet seconds.

    Memory is bounded: each table keeps at most ``max_entries`` keys (the stalest are
    dropped first), and entries quiet for ``forget_after`` seconds are dropped.
    """

    def __init__(
        self,
        *,
        max_delay: float = 60.0,
        forget_after: float = 3600.0,
        max_entries: int = 10_000,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._accounts = _FailureTable(max_entries, forget_after, max_delay)
        self._addresses = _FailureTable(max_entries, forget_after, max_delay)

    def check(self, account: str, address: str, now: float) -> float:
        """Seconds the caller must wait before trying this login (0.0: go ahead)."""
        return max(self._accounts.wait(account, now), self._addresses.wait(address, now))

    def failed(self, account: str, address: str, now: float) -> None:
        """Record a failed login (wrong password, or an account that does not exist)."""
        self._accounts.failed(account, now)
        self._addresses.failed(address, now)

    def succeeded(self, account: str, address: str, now: float) -> None:
        """Record a successful login: the account's failure count starts again at zero."""
        self._accounts.forget(account)
        self._accounts.expire(now)
        self._addresses.expire(now)

    def __len__(self) -> int:
        """Number of remembered entries (accounts plus addresses); for tests and metrics."""
        return len(self._accounts) + len(self._addresses)
