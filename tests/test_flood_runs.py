"""Flood control for a run of frames that arrived in one read (``FloodGuard.check_run``):
checking the run in one step must give every frame the outcome, and leave the guard in the
state, that checking the frames one by one gives (sans-IO: plain numbers for the clock).

The reader (``transports/resident.py``) checks a run as far as ``check_run`` lets it go on,
then the next frame alone with ``check`` (waiting if it says so), then the rest as a run
again: :func:`_in_runs` does that; :func:`_one_by_one` what the reader did before."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_chat.limits import FRAGMENT_COST, FRAME_COST, PONG_COST, FloodGuard, TokenBucket, Verdict


@dataclass(frozen=True)
class Read:
    """Frames of one cost that one read brought, ``gap`` seconds after the one before."""

    gap: float
    frames: int
    cost: float


Outcome = tuple[Verdict, float]


def _one_by_one(guard: FloodGuard, reads: list[Read]) -> list[Outcome]:
    now, outcomes = 0.0, []
    for read in reads:
        now += read.gap
        arrived = now
        for _ in range(read.frames):
            decision = guard.check(now, read.cost, arrived)
            outcomes.append((decision.verdict, decision.delay))
            if decision.verdict is Verdict.WAIT:
                now += decision.delay
    return outcomes


def _in_runs(guard: FloodGuard, reads: list[Read]) -> list[Outcome]:
    now, outcomes = 0.0, []
    for read in reads:
        now += read.gap
        arrived = now
        left = read.frames
        while left:
            went = guard.check_run(now, left, read.cost, arrived)
            assert 0 <= went <= left
            outcomes += [(Verdict.OK, 0.0)] * went
            left -= went
            if left:
                decision = guard.check(now, read.cost, arrived)
                outcomes.append((decision.verdict, decision.delay))
                if decision.verdict is Verdict.WAIT:
                    now += decision.delay
                left -= 1
    return outcomes


def _state(guard: FloodGuard) -> tuple[object, ...]:
    bucket = guard.bucket
    strikes = guard._strikes
    return (bucket._tokens, bucket._last, None if strikes is None else list(strikes))


_reads = st.lists(
    st.builds(
        Read,
        gap=st.sampled_from([0.0, 0.001, 0.05, 0.2, 1.0, 3.7]) | st.floats(0, 5),
        frames=st.integers(0, 80),
        cost=st.sampled_from([FRAME_COST, FRAME_COST, PONG_COST, FRAGMENT_COST, 0.3]),
    ),
    max_size=25,
)


@settings(max_examples=400, deadline=None)
@given(
    rate=st.sampled_from([1.0, 5.0, 7.3, 1000.0]) | st.floats(0.1, 100),
    burst=st.integers(1, 60),
    max_lag=st.sampled_from([0.0, 0.5, 10.0]) | st.floats(0, 20),
    strikes=st.integers(0, 25),
    reads=_reads,
)
def test_a_run_checked_at_once_gets_what_each_frame_would(
    rate: float, burst: int, max_lag: float, strikes: int, reads: list[Read]
) -> None:
    def guard() -> FloodGuard:
        return FloodGuard(rate, burst, max_lag, strikes_to_disconnect=strikes, strike_window=5)

    alone, together = guard(), guard()
    assert _in_runs(together, reads) == _one_by_one(alone, reads)
    assert _state(together) == _state(alone)
    assert together._disconnected == alone._disconnected


def test_a_run_goes_on_as_far_as_the_bucket_holds_and_no_further() -> None:
    guard = FloodGuard(rate=5, burst=10, max_lag=10)
    assert guard.check_run(0.0, 4) == 4
    assert guard.check_run(0.0, 20) == 6  # the rest of the burst
    assert guard.check_run(0.0, 20) == 0  # the next would wait: check says how long
    decision = guard.check(0.0)
    assert decision.verdict is Verdict.WAIT and decision.delay == pytest.approx(0.2)
    assert guard.check_run(0.1, 5) == 0  # in debt until 0.2
    assert guard.check_run(1.2, 5, arrived=0.0) == 0  # arrived at 0: still in debt then
    assert guard.check_run(1.4, 5) == 5  # six tokens back by 1.4


def test_a_disconnected_guard_lets_nothing_through() -> None:
    guard = FloodGuard(rate=1, burst=1, max_lag=0, strikes_to_disconnect=0)
    assert guard.check_run(0.0, 1) == 1
    assert guard.check(0.0).verdict is Verdict.DISCONNECT
    assert guard.check_run(100.0, 10) == 0


def test_take_run_takes_whole_costs_while_nothing_is_missing() -> None:
    bucket = TokenBucket(rate=2, burst=3)
    assert bucket.take_run(0.0, 10, cost=0.5) == 6
    assert bucket.tokens(0.0) == 0.0
    assert bucket.take_run(0.75, 10) == 1  # 1.5 tokens back: one whole one
    assert bucket.tokens(0.75) == 0.5
    with pytest.raises(ValueError):
        bucket.take_run(1.0, 1, cost=-1)
