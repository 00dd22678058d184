"""Rate and connection limits (sans-IO, the clock is a plain number)."""

from __future__ import annotations

import math

import pytest

from trio_chat.limits import (
    BLANK_LINE,
    DEFAULT_FLOOD_BURST,
    DEFAULT_FLOOD_MAX_LAG,
    DEFAULT_FLOOD_RATE,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_HOST,
    FRAGMENT_COST,
    FRAME_COST,
    PONG_COST,
    ConnectionLimiter,
    FloodGuard,
    TokenBucket,
    Verdict,
)


def test_defaults_match_the_documented_config() -> None:
    assert (DEFAULT_FLOOD_RATE, DEFAULT_FLOOD_BURST, DEFAULT_FLOOD_MAX_LAG) == (5.0, 10, 10.0)
    assert (DEFAULT_MAX_CONNECTIONS_PER_HOST, DEFAULT_MAX_CONNECTIONS) == (20, 5000)
    guard = FloodGuard()
    assert (guard.bucket.rate, guard.bucket.burst, guard.max_lag) == (5.0, 10, 10.0)
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

OK, WAIT, REFUSE, DISCONNECT = Verdict.OK, Verdict.WAIT, Verdict.REFUSE, Verdict.DISCONNECT


def verdicts(guard: FloodGuard, now: float, count: int, cost: float = 1.0) -> list[Verdict]:
    return [guard.check(now, cost).verdict for _ in range(count)]


def test_take_on_credit_goes_into_debt_up_to_the_credit() -> None:
    bucket = TokenBucket(rate=5, burst=10)
    assert bucket.take_on_credit(0.0, 10, credit=2) == 0.0
    assert bucket.take_on_credit(0.0, 1, credit=2) == pytest.approx(0.2)
    assert bucket.take_on_credit(0.0, 1, credit=2) == pytest.approx(0.4)
    assert bucket.take_on_credit(0.0, 1, credit=2) is None  # 3 in debt: over the credit
    assert bucket.tokens(0.0) == pytest.approx(-2)  # the refusal took nothing
    assert not bucket.take(0.3)  # in debt: nothing goes until it is paid
    assert bucket.tokens(0.4) == pytest.approx(0)
    assert bucket.take_on_credit(0.6, 1, credit=0) == 0.0


def test_flood_guard_delays_what_is_over_the_burst() -> None:
    guard = FloodGuard(rate=5, burst=10, max_lag=10)
    assert verdicts(guard, 0.0, 10) == [OK] * 10
    waits = [guard.check(0.0) for _ in range(5)]
    assert [d.verdict for d in waits] == [WAIT] * 5
    assert [d.delay for d in waits] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    # More frames that arrived at 0, checked later (the reader waited for those before):
    # each waits only for what is left of its own delay.
    late = guard.check(1.1, arrived=0.0)  # due at 1.2
    assert late.verdict is WAIT and late.delay == pytest.approx(0.1)
    assert guard.check(1.6, arrived=0.0).verdict is OK  # due at 1.4: late already


def test_a_pasted_block_of_30_lines_all_goes_through_in_order_at_the_rate() -> None:
    guard = FloodGuard()  # the defaults: 5/s, bursts of 10, 10 s of lag
    now, sent = 0.0, []
    for n in range(30):  # all arrived in one read at 0; the reader waits as told
        decision = guard.check(now, arrived=0.0)
        assert decision.verdict in (OK, WAIT)
        now += decision.delay
        sent.append((n, now))
    assert [n for n, _ in sent] == list(range(30))
    assert sent[9][1] == 0.0  # the first ten at once
    assert sent[-1][1] == pytest.approx(4.0)  # the last 20 at 5 a second


def test_a_typing_human_is_never_held_back() -> None:
    guard = FloodGuard()
    # Ten lines pasted at once, then two lines a second for ten minutes.
    assert verdicts(guard, 0.0, 10) == [OK] * 10
    assert all(guard.check(0.5 * i).verdict is OK for i in range(1, 1200))


def test_frames_beyond_the_max_lag_are_refused_and_a_persistent_flooder_disconnected() -> None:
    guard = FloodGuard(rate=5, burst=10, max_lag=10, strikes_to_disconnect=20)
    # 200 frames arrive at once: 10 go, 50 wait (up to 10 s), the rest would be later.
    got = verdicts(guard, 0.0, 200)
    assert got[:10] == [OK] * 10
    assert got[10:60] == [WAIT] * 50
    assert got[60:80] == [REFUSE] * 20  # 20 strikes are tolerated
    assert got[80] is DISCONNECT  # the 21st is not
    # The verdict sticks: the connection is going away.
    assert guard.check(1000.0).verdict is DISCONNECT
    assert "flooding" in guard.disconnect_text
    assert "at most 10 s behind" in guard.refuse_text


def test_a_refused_frame_takes_nothing_so_the_next_one_in_time_waits_again() -> None:
    guard = FloodGuard(rate=5, burst=10, max_lag=1)
    assert verdicts(guard, 0.0, 15) == [OK] * 10 + [WAIT] * 5
    assert guard.check(0.0).verdict is REFUSE  # 1.2 s late
    assert guard.check(0.2).verdict is WAIT  # a token came back: 1.0 s late again


def test_no_max_lag_refuses_at_once_as_before_fakelag() -> None:
    guard = FloodGuard(rate=5, burst=10, max_lag=0)
    assert verdicts(guard, 0.0, 11) == [OK] * 10 + [REFUSE]
    assert guard.check(0.2).verdict is OK  # a token came back


def test_strikes_expire_after_the_window() -> None:
    guard = FloodGuard(rate=1, burst=1, max_lag=0, strikes_to_disconnect=3, strike_window=10.0)
    assert guard.check(0.0).verdict is OK
    assert verdicts(guard, 0.1, 3) == [REFUSE] * 3
    # Ten seconds later the old strikes are forgotten (and a token is back).
    assert guard.check(10.1).verdict is OK
    assert verdicts(guard, 10.2, 3) == [REFUSE] * 3
    assert guard.check(10.3).verdict is DISCONNECT


def test_slightly_too_fast_client_is_held_back_then_refused_but_kept() -> None:
    guard = FloodGuard()  # 5/s, 10 s of lag; strikes: more than 20 in 10 s
    # Six frames a second arriving, for two minutes: after the burst (55 frames) the lag
    # grows by 1/30 s a frame until it reaches 10 s (300 frames later), then about one
    # frame a second is refused: never disconnected.
    got = [guard.check(i / 6).verdict for i in range(6 * 120)]
    assert got[:55] == [OK] * 55
    assert WAIT in got[55:350] and REFUSE not in got[:350]
    assert REFUSE in got
    assert DISCONNECT not in got


def test_every_frame_costs_something_and_cheaper_ones_cost_less() -> None:
    guard = FloodGuard(rate=5, burst=10, max_lag=0)
    assert verdicts(guard, 0.0, 80, cost=FRAGMENT_COST) == [OK] * 80  # 80 * 1/8 = 10
    assert guard.check(0.0, FRAGMENT_COST).verdict is REFUSE
    guard = FloodGuard(rate=5, burst=10, max_lag=0)
    assert verdicts(guard, 0.0, 20, cost=PONG_COST) == [OK] * 20
    assert guard.check(0.0, PONG_COST).verdict is REFUSE
    assert BLANK_LINE.cost == FRAME_COST > PONG_COST > FRAGMENT_COST > 0


def test_strike_memory_is_bounded() -> None:
    guard = FloodGuard(rate=1, burst=1, max_lag=0, strikes_to_disconnect=5, strike_window=1.0)
    for i in range(10_000):
        verdict = guard.check(i * 0.3).verdict  # about one strike per window: never disconnected
        assert verdict is not DISCONNECT
        assert len(guard._strikes or ()) <= 6


def test_flood_guard_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        FloodGuard(max_lag=-1)
    with pytest.raises(ValueError):
        TokenBucket(1, 1).take_on_credit(0.0, -1, 0)


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


def test_a_connections_flood_guard_is_one_object_with_limits_shared_by_all() -> None:
    # A connection keeps its guard for its whole life: its bucket is the guard itself, and
    # the limits (the same for every connection of a server) are one shared object.
    first, second = FloodGuard(rate=5, burst=10, max_lag=10), FloodGuard(5, 10, 10.0)
    assert first.bucket is first
    assert first._policy is second._policy
    assert FloodGuard(rate=5, burst=10, max_lag=2)._policy is not first._policy
    assert (second.max_lag, second.strikes_to_disconnect, second.strike_window) == (10, 20, 10)
