"""Flood control for a run of frames that arrived in one read (``FloodGuard.check_run``):
checking the run in one step must give every frame the outcome, and leave the guard in the
state, that checking the frames one by one gives (sans-IO: plain numbers for the clock).

The reader (``transports/resident.py``) checks a run as far as ``check_run`` lets it go on,
then the next frame alone with ``check`` (waiting if it says so), then the rest as a run
again: :func:`_in_runs` does that; :func:`_one_by_one` what the reader did before."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_chat.limits import FRAGMENT_COST, FRAME_COST, PONG_COST, FloodGuard, TokenBucket, Verdict
from trio_chat.testing import local_config, open_client, open_test_server
from trio_chat.transports import resident


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


# ------------------------------------------------------------------- over a real socket


def _say(text: str, **fields: Any) -> dict[str, Any]:
    return {"type": "say", "text": text, "ref": text, **fields}


def _lines(*frames: dict[str, Any] | str) -> bytes:
    return b"".join(
        (frame if isinstance(frame, str) else json.dumps(frame)).encode() + b"\n"
        for frame in frames
    )


async def _played(
    burst: bytes, last_said: str, *, runs: bool, rate: float, burst_size: int, max_lag: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What alice (who sends ``burst`` in one write) and bob (who watches) received, with a
    reader taking runs or every frame on its own: alice until the answer to her frame
    ``last`` (or her bye), bob until her line ``last_said`` (or her leaving)."""
    config = local_config(db=None, flood_rate=rate, flood_burst=burst_size, flood_max_lag=max_lag)
    with pytest.MonkeyPatch.context() as patch:
        if not runs:
            patch.setattr(resident, "SAY_RUNS", False)
        async with open_test_server(config=config) as chat:
            async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
                await alice.expect("join", lambda e: e.nick == "bob")
                await alice.send_raw(burst)
                while True:  # her last frame's answer: its line, its error, or her bye
                    end = (await alice.receive()).to_dict()
                    if end["type"] == "bye" or "last" in (end.get("ref"), end.get("text")):
                        break
                if end["type"] == "bye":
                    await bob.expect("leave", lambda e: e.nick == "alice")
                else:
                    await bob.expect("message", lambda e: e.text == last_said)
    seen = [
        [{k: v for k, v in e.to_dict().items() if k != "ts"} for e in client.history]
        for client in (alice, bob)
    ]
    return seen[0], seen[1]


async def _same_either_way(burst: bytes, last_said: str, **flood: Any) -> list[dict[str, Any]]:
    alice, bob = await _played(burst, last_said, runs=True, **flood)
    assert (alice, bob) == await _played(burst, last_said, runs=False, **flood)
    return alice


def _refused(alice: list[dict[str, Any]]) -> list[str]:
    return [e["ref"] for e in alice if e["type"] == "error" and e["code"] == "slow_down"]


def _said(alice: list[dict[str, Any]]) -> list[str]:
    return [e["text"] for e in alice if e["type"] == "message"]


async def test_a_burst_over_the_limit_is_refused_frame_for_frame_as_one_by_one() -> None:
    frames = [_say(str(i)) for i in range(8)]
    frames[3] = {"type": "ping", "token": "p", "ref": "ping"}  # (ends a run: one on its own)
    burst = _lines(*frames, "", *[_say(str(i)) for i in range(8, 16)], _say("last"))
    # max_lag 0: over the burst is refused at once, none delayed (the clock plays no part).
    alice = await _same_either_way(burst, "10", rate=0.001, burst_size=12, max_lag=0)
    assert _said(alice) == ["0", "1", "2", "4", "5", "6", "7", "8", "9", "10"]
    assert _refused(alice) == [str(i) for i in range(11, 16)] + ["last"]


async def test_a_flood_that_ends_the_connection_ends_it_at_the_same_frame() -> None:
    burst = _lines(*[_say(str(i)) for i in range(40)])
    alice = await _same_either_way(burst, "4", rate=0.001, burst_size=5, max_lag=0)
    assert _said(alice) == ["0", "1", "2", "3", "4"]
    assert _refused(alice) == [str(i) for i in range(5, 25)]  # 20 strikes; the 21st: bye
    assert alice[-1]["type"] == "bye" and alice[-1]["code"] == "flooding"


async def test_a_burst_over_the_rate_waits_and_goes_out_whole_in_order() -> None:
    burst = _lines(*[_say(str(i)) for i in range(14)], _say("last"))
    # 200 a second, bursts of 6: the ninth and later wait 5 ms each; none is refused.
    alice = await _same_either_way(burst, "last", rate=200, burst_size=6, max_lag=10)
    assert _said(alice) == [str(i) for i in range(14)] + ["last"]
    assert _refused(alice) == []
