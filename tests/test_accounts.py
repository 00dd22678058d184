"""Accounts: password hashing (pure), login throttling (pure, fake clock), and the store."""

from __future__ import annotations

import base64
import hashlib
import unicodedata
from pathlib import Path

import pytest
import trio

from trio_chat.store import AccountExists, LoginThrottle, Store, check_password, hash_password
from trio_chat.store.accounts import failure_delay

TIMEOUT = 10.0

# ------------------------------------------------------------------------- hashing


def test_hash_has_the_documented_format_and_parameters() -> None:
    encoded = hash_password("correct horse", salt=b"0123456789abcdef")
    scheme, n, r, p, salt, digest = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert base64.b64decode(salt) == b"0123456789abcdef"
    expected = hashlib.scrypt(
        b"correct horse", salt=b"0123456789abcdef", n=2**14, r=8, p=1, dklen=32
    )
    assert base64.b64decode(digest) == expected


def test_check_accepts_the_password_and_refuses_others() -> None:
    encoded = hash_password("correct horse")
    assert check_password("correct horse", encoded)
    assert not check_password("correct horse ", encoded)
    assert not check_password("Correct horse", encoded)
    assert not check_password("", encoded)


def test_salts_are_random() -> None:
    assert hash_password("same") != hash_password("same")


def test_passwords_are_compared_in_nfc() -> None:
    composed = unicodedata.normalize("NFC", "café")
    decomposed = unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    assert check_password(decomposed, hash_password(composed))


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain text",
        "bcrypt$16384$8$1$c2FsdA==$aGFzaA==",
        "scrypt$16384$8$1$not base64!$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$abc$8$1$c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$1000$8$1$c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==",  # n not a power of two
        "scrypt$1073741824$8$1$c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==",  # n = 2**30: refused
        "scrypt$16384$8$1$c2FsdA==$aGFzaA==",  # digest too short
    ],
)
def test_malformed_or_hostile_hashes_never_match(encoded: str) -> None:
    assert not check_password("anything", encoded)


def test_empty_and_overlong_passwords_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        hash_password("")
    with pytest.raises(ValueError, match="at most"):
        hash_password("x" * 1025)


# ------------------------------------------------------------------------ throttling


def test_delay_doubles_from_one_second_up_to_a_minute() -> None:
    assert [failure_delay(k) for k in range(9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert failure_delay(10**9) == 60


def test_each_failure_makes_the_next_attempt_wait_longer() -> None:
    throttle = LoginThrottle()
    now = 1000.0
    assert throttle.check("alice", "10.0.0.1", now) == 0
    for k in range(1, 10):
        throttle.failed("alice", "10.0.0.1", now)
        wait = throttle.check("alice", "10.0.0.1", now)
        assert wait == min(2 ** (k - 1), 60)
        assert throttle.check("alice", "10.0.0.1", now + wait / 2) == wait / 2
        now += wait
        assert throttle.check("alice", "10.0.0.1", now) == 0


def test_account_is_throttled_from_every_address() -> None:
    throttle = LoginThrottle()
    for n in range(4):
        throttle.failed("alice", f"10.0.0.{n}", 0.0)
    assert throttle.check("alice", "192.168.1.1", 0.0) == 8
    assert throttle.check("bob", "192.168.1.1", 0.0) == 0


def test_address_is_throttled_for_every_account() -> None:
    throttle = LoginThrottle()
    for name in ("alice", "bob", "carol"):
        throttle.failed(name, "10.6.6.6", 0.0)
    assert throttle.check("dave", "10.6.6.6", 0.0) == 4
    assert throttle.check("dave", "10.0.0.1", 0.0) == 0


def test_success_clears_the_account_but_not_the_address() -> None:
    throttle = LoginThrottle()
    for _ in range(3):
        throttle.failed("alice", "10.0.0.1", 0.0)
    throttle.succeeded("alice", "10.0.0.1", 4.0)
    assert throttle.check("alice", "10.0.0.2", 4.0) == 0
    # The address's count stays: the next failure from it costs 8 s, not 1 s.
    throttle.failed("alice", "10.0.0.1", 5.0)
    assert throttle.check("bob", "10.0.0.1", 5.0) == 8
    assert throttle.check("alice", "10.0.0.2", 5.0) == 1


def test_quiet_entries_are_forgotten() -> None:
    throttle = LoginThrottle(forget_after=600.0)
    for _ in range(5):
        throttle.failed("alice", "10.0.0.1", 0.0)
    assert len(throttle) == 2
    throttle.failed("bob", "10.0.0.2", 600.0)  # any later call sweeps what went quiet
    assert len(throttle) == 2
    assert throttle.check("alice", "10.0.0.1", 600.0) == 0


def test_memory_is_capped_dropping_the_stalest_entries() -> None:
    throttle = LoginThrottle(max_entries=100)
    for n in range(1000):
        throttle.failed(f"user{n}", f"10.0.{n // 256}.{n % 256}", float(n))
    assert len(throttle) == 200
    assert throttle.check("user999", "elsewhere", 999.0) == 1
    assert throttle.check("user0", "elsewhere", 999.0) == 0  # dropped: oldest


# --------------------------------------------------------------------- in the store


async def test_create_verify_and_change_password(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with trio.fail_after(TIMEOUT):
        async with Store.open(path) as store:
            assert not await store.account_exists("alice")
            await store.create_account("Alice", "hunter22")
            assert await store.account_exists("alice")
            assert await store.account_exists("ALICE")
            assert await store.verify_password("alice", "hunter22")
            assert not await store.verify_password("alice", "hunter23")
            assert not await store.verify_password("nobody", "hunter22")
            with pytest.raises(AccountExists, match="already registered"):
                await store.create_account("alice", "other")
            assert not await store.change_password("alice", "wrong", "new-secret")
            assert not await store.change_password("nobody", "hunter22", "new-secret")
            assert await store.change_password("alice", "hunter22", "new-secret")
            assert not await store.verify_password("alice", "hunter22")
        async with Store.open(path) as store:
            assert await store.verify_password("alice", "new-secret")


async def test_only_one_of_two_concurrent_changes_with_the_same_old_password_wins(
    tmp_path: Path,
) -> None:
    results: list[bool] = []
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            await store.create_account("alice", "old")

            async def change(new: str) -> None:
                results.append(await store.change_password("alice", "old", new))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(change, "first")
                nursery.start_soon(change, "second")
            assert sorted(results) == [False, True]
            winners = [n for n in ("first", "second") if await store.verify_password("alice", n)]
            assert len(winners) == 1


async def test_hashing_does_not_block_the_event_loop() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.005)

    with trio.fail_after(TIMEOUT):
        async with Store.open(":memory:") as store, trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await store.create_account("alice", "pw")
            for _ in range(4):
                await store.verify_password("alice", "pw")
            nursery.cancel_scope.cancel()
    # Five scrypt calls take ~0.25 s; a blocked loop would not have ticked meanwhile.
    assert ticks >= 10


async def test_bad_new_password_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with Store.open(tmp_path / "chat.db") as store:
            with pytest.raises(ValueError, match="empty"):
                await store.create_account("alice", "")
            assert not await store.account_exists("alice")
