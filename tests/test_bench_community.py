"""The community benchmark's plan (bench/community.py): pure, seeded, and the same for
every server. No server, no sockets: the benchmark itself is never run by the tests."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import community
from community import CommunityShape, Plan


@pytest.fixture(scope="module")
def issue_plan() -> Plan:
    return community.plan(CommunityShape())


def test_default_rooms_have_the_issue_shape(issue_plan: Plan) -> None:
    sizes = sorted((len(m) for m in issue_plan.members), reverse=True)
    assert len(sizes) == 200
    # Two big rooms (the issue's 233 and 163), the rest much smaller, most of 5-15.
    assert sizes[:2] == [233, 159]
    assert sizes[2] < 100
    assert sum(5 <= s <= 15 for s in sizes) > 150
    assert min(sizes) >= 5


def test_every_user_is_in_a_room_and_no_room_twice(issue_plan: Plan) -> None:
    assert issue_plan.users == 2000
    assert all(issue_plan.rooms_of[u] for u in range(2000))
    for members in issue_plan.members:
        assert len(set(members)) == len(members)
    for user, rooms in enumerate(issue_plan.rooms_of):
        assert all(user in issue_plan.members[r] for r in rooms)


def test_same_shape_same_plan_other_seed_other_plan() -> None:
    shape = CommunityShape(users=300, rooms=30, rate=50, duration=2)
    a, b = community.plan(shape), community.plan(shape)
    assert a.members == b.members and a.schedule == b.schedule
    c = community.plan(CommunityShape(users=300, rooms=30, rate=50, duration=2, seed=45))
    assert c.members != a.members


def test_schedule_is_an_open_loop_at_the_rate(issue_plan: Plan) -> None:
    times = [at for at, _, _ in issue_plan.schedule]
    assert len(times) == 20_000
    assert times == sorted(times)
    assert times[1] - times[0] == pytest.approx(0.001)
    assert times[-1] < 20.0
    # Each message goes to a room of its sender.
    for _, user, room in issue_plan.schedule[:2000]:
        assert room in issue_plan.rooms_of[user]


def test_activity_is_zipf(issue_plan: Plan) -> None:
    spoken = Counter(user for _, user, _ in issue_plan.schedule).most_common()
    # Rank 1 speaks about twice as often as rank 2 (weights 1 and 1/2), far more than most.
    assert 1.5 < spoken[0][1] / spoken[1][1] < 2.7
    assert spoken[0][1] > 20 * spoken[len(spoken) // 2][1]


def test_big_room_is_extra_listeners_with_a_sender_of_its_own() -> None:
    shape = CommunityShape(users=100, rooms=10, rate=100, duration=1, big_room=50, big_rate=10)
    plan = community.plan(shape)
    assert plan.big == 10
    assert plan.members[10] == list(range(100, 150))
    assert plan.room_name(10) == "#big" and plan.room_name(3) == "#r3"
    big_sends = [s for s in plan.schedule if s[2] == 10]
    assert len(big_sends) == 10 and {u for _, u, _ in big_sends} == {100}
    assert all(r != 10 for _, u, r in plan.schedule if u < 100)


def test_expected_deliveries_count_the_echo_only_where_the_server_echoes() -> None:
    plan = Plan(
        CommunityShape(users=3, rooms=2),
        members=[[0, 1], [1, 2]],
        schedule=[],
        rooms_of=[[0], [0, 1], [1]],
    )
    sent = [(0, 0, 5), (2, 1, 3), (1, 1, 1)]
    assert community.expected_per_user(plan, sent, echo=True) == {0: 5, 1: 9, 2: 4}
    assert community.expected_per_user(plan, sent, echo=False) == {0: 0, 1: 8, 2: 1}


def test_quantiles_nearest_rank() -> None:
    data = list(range(1000, 0, -1))  # unsorted on purpose
    assert community.quantiles(data, (0.5, 0.99, 0.999, 1.0)) == [501.0, 991.0, 1000.0, 1000.0]
    assert community.quantiles([], (0.5,)) == [None]
    summary = community.latency_summary([2_000_000] * 99 + [50_000_000])
    assert summary["p50_ms"] == 2.0 and summary["max_ms"] == 50.0
    assert summary["p999_ms"] == 50.0


def test_zipf_sizes_stay_in_bounds() -> None:
    sizes = community.zipf_room_sizes(500, seed=1, exponent=1.5, min_size=3, max_size=40)
    assert len(sizes) == 500 and sizes == sorted(sizes, reverse=True)
    assert min(sizes) >= 3 and max(sizes) <= 40
    assert community.zipf_room_sizes(0, seed=1) == []


def test_probes_join_where_they_hear_a_message_last() -> None:
    import scenarios

    # Every server writes in arrival order (trio-chat: joins; ngIRCd: its connection
    # table): with "last" the receivers log in first, then (after the senders) the probes.
    chunks, probes, after_senders = scenarios.probe_order([10, 20], 4, "last")
    assert (chunks, probes, after_senders) == ([[10, 0], [20, 0]], [0, 4], True)
    # "first": the probes before everyone, the first members a message reaches.
    chunks, probes, after_senders = scenarios.probe_order([10, 20], 4, "first")
    assert (chunks, probes, after_senders) == ([[0, 10], [0, 20]], [4, 0], False)
    # The old spread: probes at 1/5 .. 4/5 of the join order.
    chunks, probes, after_senders = scenarios.probe_order([10], 4, "spread")
    assert (chunks, probes, after_senders) == ([[2, 2, 2, 2, 2]], [1, 1, 1, 1, 0], False)


def test_mixed_transports_give_each_generator_process_both() -> None:
    import scenarios

    users = list(range(16))
    ws = scenarios.community_transports("json", users, 4, mixed=True)
    assert ws.count("ws") == 8
    for proc in range(4):
        assert set(ws[proc::4]) == {"json", "ws"}
    assert set(scenarios.community_transports("irc", users, 4, mixed=True)) == {"irc"}
    assert set(scenarios.community_transports("json", users, 4, mixed=False)) == {"json"}


def test_strace_summary_reads_calls_per_syscall(tmp_path: Path) -> None:
    import report

    table = tmp_path / "strace.txt"
    table.write_text(
        "% time     seconds  usecs/call     calls    errors syscall\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        " 87.08    0.247518          10     24683           write\n"
        "  3.31    0.009421           4      1947       969 recvfrom\n"
        "  6.32    0.017968           7      2471           epoll_wait\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        "100.00    0.284258           9     29101       969 total\n"
    )
    calls = report.strace_summary(table)
    assert list(calls) == ["total", "write", "epoll_wait", "recvfrom"]
    assert calls["write"] == 24683 and calls["recvfrom"] == 1947
