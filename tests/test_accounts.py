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


def _wait(throttle: LoginThrottle, account: str, address: str, now: float) -> float:
    refused = throttle.check(account, address, now)
    return 0.0 if refused is None else refused.wait


def test_each_failure_makes_the_next_attempt_wait_longer() -> None:
    throttle = LoginThrottle()
    now = 1000.0
    assert throttle.check("alice", "10.0.0.1", now) is None
    for k in range(1, 10):
        assert throttle.begin("alice", "10.0.0.1", now) is None  # then the check fails
        wait = _wait(throttle, "alice", "10.0.0.1", now)
        assert wait == min(2 ** (k - 1), 60)
        assert _wait(throttle, "alice", "10.0.0.1", now + wait / 2) == wait / 2
        now += wait


def test_an_attempt_counts_before_its_check_so_parallel_guesses_wait() -> None:
    throttle = LoginThrottle()
    assert throttle.begin("alice", "10.0.0.1", 0.0) is None
    # The first guess is still being checked: twenty more at the same moment all wait.
    refusals = [throttle.begin("alice", "10.0.0.1", 0.0) for _ in range(20)]
    assert all(r is not None and r.wait == 1 and not r.account_wide for r in refusals)
    # A refused attempt is not counted: the wait did not grow.
    assert _wait(throttle, "alice", "10.0.0.1", 0.0) == 1


def test_a_right_password_takes_its_attempt_back() -> None:
    throttle = LoginThrottle()
    for _ in range(5):  # a person reconnecting often from one address
        assert throttle.begin("alice", "10.0.0.1", 0.0) is None
        throttle.succeeded("alice", "10.0.0.1", 0.0)
    assert len(throttle) == 0
    assert throttle.check("alice", "10.0.0.1", 0.0) is None


def test_an_attempt_that_could_not_be_checked_is_taken_back() -> None:
    throttle = LoginThrottle()
    for second in range(10):  # the accounts unreachable: nothing was learnt, nothing counts
        assert throttle.begin("alice", "10.0.0.1", float(second)) is None
        throttle.not_checked("alice", "10.0.0.1")
    assert len(throttle) == 0
    assert throttle.check("alice", "10.0.0.1", 10.0) is None


def test_failures_from_one_address_do_not_lock_the_owner_out_elsewhere() -> None:
    throttle = LoginThrottle()
    now = 0.0
    for _ in range(6):
        now += _wait(throttle, "alice", "10.6.6.6", now)
        assert throttle.begin("alice", "10.6.6.6", now) is None
    assert _wait(throttle, "alice", "10.6.6.6", now) == 32
    assert throttle.begin("alice", "192.168.1.1", now) is None


def test_an_address_guessing_many_accounts_waits_after_a_few() -> None:
    throttle = LoginThrottle(address_allowance=3)
    for name in ("alice", "bob", "carol"):
        assert throttle.begin(name, "10.6.6.6", 0.0) is None  # room for a NAT's typos
    assert throttle.begin("dave", "10.6.6.6", 0.0) is None
    assert _wait(throttle, "erin", "10.6.6.6", 0.0) == 1
    assert _wait(throttle, "erin", "10.0.0.1", 0.0) == 0


def test_guesses_from_many_addresses_meet_the_accounts_cap_but_not_its_owner() -> None:
    throttle = LoginThrottle(account_burst=10, account_rate=0.1)
    assert throttle.begin("alice", "home", 0.0) is None
    throttle.succeeded("alice", "home", 0.0)
    for n in range(10):  # a botnet: one guess from each of ten addresses
        assert throttle.begin("alice", f"10.0.0.{n}", 100.0) is None
    refused = throttle.begin("alice", "10.0.1.1", 100.0)
    assert refused is not None and refused.account_wide and refused.wait == 10
    assert "try again in 10 s" in refused.text
    # The owner, from where they logged in before, is not held back by the cap...
    assert throttle.begin("alice", "home", 100.0) is None
    # ...and other accounts are not touched at all.
    assert throttle.begin("bob", "10.0.1.1", 100.0) is None


def test_success_clears_the_account_at_that_address_but_not_the_address() -> None:
    throttle = LoginThrottle(address_allowance=0)
    assert throttle.begin("mallory", "10.0.0.1", 0.0) is None
    assert throttle.begin("alice", "10.0.0.1", 10.0) is None
    throttle.succeeded("alice", "10.0.0.1", 10.0)
    # Logging into an account of one's own does not wipe the guesses made at others:
    # mallory's failure still counts (from the address's last attempt).
    assert _wait(throttle, "bob", "10.0.0.1", 10.0) == 1
    assert throttle.begin("bob", "10.0.0.1", 11.0) is None
    assert _wait(throttle, "carol", "10.0.0.1", 11.0) == 2


def test_quiet_entries_are_forgotten() -> None:
    throttle = LoginThrottle(forget_after=600.0)
    for n in range(5):
        throttle.begin("alice", "10.0.0.1", float(n * 100))
    assert len(throttle) == 2
    throttle.begin("bob", "10.0.0.2", 1100.0)  # any later call sweeps what went quiet
    assert len(throttle) == 2
    assert throttle.check("alice", "10.0.0.1", 1100.0) is None


def test_memory_is_capped_dropping_the_stalest_entries() -> None:
    throttle = LoginThrottle(max_entries=100)
    for n in range(1000):
        throttle.begin(f"user{n}", f"10.0.{n // 256}.{n % 256}", float(n))
    assert len(throttle) == 200
    assert _wait(throttle, "user999", "10.0.3.231", 999.0) == 1
    assert _wait(throttle, "user0", "10.0.0.0", 999.0) == 0  # dropped: oldest


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
