"""Rate and connection limits (sans-IO, the clock is a plain number)."""

from __future__ import annotations

import math

import pytest

from trio_chat.limits import (
    DEFAULT_FLOOD_BURST,
    DEFAULT_FLOOD_RATE,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_HOST,
    ConnectionLimiter,
    FloodGuard,
    TokenBucket,
    Verdict,
)


def test_defaults_match_the_documented_config() -> None:
    assert (DEFAULT_FLOOD_RATE, DEFAULT_FLOOD_BURST) == (5.0, 10)
    assert (DEFAULT_MAX_CONNECTIONS_PER_HOST, DEFAULT_MAX_CONNECTIONS) == (20, 5000)
    guard = FloodGuard()
    assert (guard.bucket.rate, guard.bucket.burst) == (5.0, 10)
    limiter = ConnectionLimiter()
    assert (limiter.per_host, limiter.total) == (20, 5000)


# ----------------------------------------------------------------------------- TokenBucket


def test_bucket_starts_full_and_allows_a_burst() -> None:
    bucket = TokenBucket(rate=5, burst=10)
    assert all(bucket.take(0.0) for _ in range(10))
    assert not bucket.take(0.0)


def test_bucket_refills_at_rate_up_to_burst() -> None:
    bucket = TokenBucket(rate=5, burst=10)
    for _ in range(10):
        bucket.take(0.0)
    assert not bucket.take(0.1)  # half a token
    assert bucket.take(0.2)  # one token, in two float steps
    assert not bucket.take(0.2)
    assert bucket.tokens(100.0) == 10  # capped at burst after a long quiet
    assert sum(bucket.take(100.0) for _ in range(20)) == 10


def test_refused_take_costs_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    assert bucket.take(0.0)
    for t in (0.1, 0.5, 0.9):
        assert not bucket.take(t)
    assert bucket.take(1.0)


def test_bucket_steady_rate_is_exact_over_time() -> None:
    bucket = TokenBucket(rate=5, burst=10)
    # Ask 100 times a second for 10 seconds: burst + 10 s * rate pass.
    granted = sum(bucket.take(i / 100) for i in range(1001))
    assert granted == 10 + 50


def test_cost_and_retry_after() -> None:
    bucket = TokenBucket(rate=2, burst=4)
    assert bucket.take(0.0, cost=3)
    assert not bucket.take(0.0, cost=2)
    assert bucket.retry_after(0.0, cost=2) == pytest.approx(0.5)
    assert bucket.retry_after(0.0, cost=1) == 0.0
    assert math.isinf(bucket.retry_after(0.0, cost=5))
    assert not bucket.take(100.0, cost=5)  # more than burst: never
    assert bucket.take(100.0, cost=0)


def test_clock_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(10.5)
    assert bucket.take(11.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_bucket_refuses_nonsense(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


# ------------------------------------------------------------------------------ FloodGuard


def test_flood_guard_ok_then_refuse() -> None:
    guard = FloodGuard(rate=5, burst=10)
    assert [guard.check(0.0) for _ in range(11)] == [Verdict.OK] * 10 + [Verdict.REFUSE]
    assert guard.check(0.2) is Verdict.OK  # a token came back
    assert "slow down" in guard.refuse_text


def test_a_typing_human_is_never_refused() -> None:
    guard = FloodGuard()
    # Ten lines pasted at once, then two lines a second for ten minutes.
    assert all(guard.check(0.0) is Verdict.OK for _ in range(10))
    assert all(guard.check(0.5 * i) is Verdict.OK for i in range(1, 1200))


def test_persistent_flooder_is_disconnected_after_more_than_n_strikes() -> None:
    guard = FloodGuard(rate=5, burst=10, strikes_to_disconnect=20, strike_window=10.0)
    verdicts = [guard.check(0.0) for _ in range(10 + 21)]
    assert verdicts[:10] == [Verdict.OK] * 10
    assert verdicts[10:30] == [Verdict.REFUSE] * 20  # 20 strikes are tolerated
    assert verdicts[30] is Verdict.DISCONNECT  # the 21st is not
    # The verdict sticks: the connection is going away.
    assert guard.check(1000.0) is Verdict.DISCONNECT
    assert "flooding" in guard.disconnect_text


def test_strikes_expire_after_the_window() -> None:
    guard = FloodGuard(rate=1, burst=1, strikes_to_disconnect=3, strike_window=10.0)
    assert guard.check(0.0) is Verdict.OK
    assert [guard.check(0.1) for _ in range(3)] == [Verdict.REFUSE] * 3
    # Ten seconds later the old strikes are forgotten (and a token is back).
    assert guard.check(10.1) is Verdict.OK
    assert [guard.check(10.2) for _ in range(3)] == [Verdict.REFUSE] * 3
    assert guard.check(10.3) is Verdict.DISCONNECT


def test_slightly_too_fast_client_is_refused_but_kept() -> None:
    guard = FloodGuard()  # 5/s; strikes: more than 20 in 10 s
    # Six frames a second: one refusal a second, ten per window: never disconnected.
    verdicts = [guard.check(i / 6) for i in range(6 * 120)]
    assert Verdict.REFUSE in verdicts
    assert Verdict.DISCONNECT not in verdicts


def test_strike_memory_is_bounded() -> None:
    guard = FloodGuard(rate=1, burst=1, strikes_to_disconnect=5, strike_window=1.0)
    for i in range(10_000):
        verdict = guard.check(i * 0.3)  # about one strike per window: never disconnected
        assert verdict is not Verdict.DISCONNECT
        assert len(guard._strikes or ()) <= 6


# ------------------------------------------------------------------------ ConnectionLimiter


def test_per_host_limit_with_reason() -> None:
    limiter = ConnectionLimiter(per_host=2, total=10)
    assert limiter.acquire("127.0.0.1") is None
    assert limiter.acquire("127.0.0.1") is None
    assert limiter.acquire("127.0.0.1") == "too many connections from 127.0.0.1 (limit 2)"
    assert limiter.acquire("10.0.0.1") is None  # other hosts are not affected
    assert limiter.count("127.0.0.1") == 2
    assert limiter.count() == 3
    limiter.release("127.0.0.1")
    assert limiter.acquire("127.0.0.1") is None


def test_total_limit_with_reason() -> None:
    limiter = ConnectionLimiter(per_host=5, total=3)
    for host in ("a", "b", "c"):
        assert limiter.acquire(host) is None
    assert limiter.acquire("d") == "server full (limit 3 connections)"
    assert limiter.count() == 3  # a refusal takes nothing
    limiter.release("b")
    assert limiter.acquire("d") is None


def test_per_host_reason_wins_when_both_limits_are_hit() -> None:
    limiter = ConnectionLimiter(per_host=1, total=1)
    assert limiter.acquire("a") is None
    assert limiter.acquire("a") == "too many connections from a (limit 1)"
    assert limiter.acquire("b") == "server full (limit 1 connections)"


def test_counts_are_exact_and_hosts_forgotten_at_zero() -> None:
    limiter = ConnectionLimiter(per_host=100, total=10_000)
    hosts = [f"10.0.{i // 256}.{i % 256}" for i in range(1000)]
    for host in hosts:
        assert limiter.acquire(host) is None
        assert limiter.acquire(host) is None
    assert limiter.count() == 2000
    assert limiter.hosts == 1000
    for host in hosts:
        limiter.release(host)
        limiter.release(host)
    assert limiter.count() == 0
    assert limiter.hosts == 0  # memory follows open connections only


def test_release_without_acquire_is_an_error() -> None:
    limiter = ConnectionLimiter(per_host=1, total=1)
    with pytest.raises(ValueError):
        limiter.release("nobody")
    assert limiter.acquire("x") is None
    limiter.release("x")
    with pytest.raises(ValueError):
        limiter.release("x")
    assert limiter.count() == 0


def test_limiter_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        ConnectionLimiter(per_host=0, total=1)
    with pytest.raises(ValueError):
        ConnectionLimiter(per_host=1, total=0)
