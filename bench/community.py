"""The community load's plan, without sockets: who is in which room, who says what, when.

Real chats are many small rooms at modest rates (issue 19), not one big room at full speed.
Everything here is a pure function of its arguments and a seed, so every server in a run
(trio-chat over JSON lines and WebSocket, ngIRCd over IRC) gets the very same rooms, members
and send schedule, and a unit test can pin them down:

* **Room sizes** are drawn from a discrete power law (Zipf), P(size = x) proportional to
  ``x ** -exponent`` for ``min_size <= x <= max_size``: most rooms are small (5-15 members),
  a few are big. The defaults (2,000 users, 200 rooms, exponent 2.2, seed 44) give rooms of
  233, 159, 76, 65, ... members, 157 of the 200 rooms with 5-15: the shape of the issue's
  community (two rooms of 233 and 163, the rest small).
* **Members**: rooms are filled from a seeded shuffle of the users, cycled, so that every
  user is in at least one room when there are more seats than users.
* **Activity** is Zipf too: the user at activity rank ``r`` (a seeded permutation) speaks
  with weight ``1 / r ** activity_exponent``; each message goes to one of the speaker's
  rooms, chosen uniformly.
* **Schedule**: an open loop, ``rate`` messages a second evenly spaced over ``duration``
  seconds, whatever the server does; latency is measured from these scheduled times, so a
  server that stalls cannot hide it by slowing the senders down (coordinated omission).
* Optionally **one big room** of ``big_room`` extra listeners (users of their own, in no
  other room), its first member saying ``big_rate`` messages a second: to measure whether a
  big room's fan-out delays the small rooms' messages (issue 19).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: (seconds after the start, user, room index): one scheduled message.
Send = tuple[float, int, int]


@dataclass(frozen=True)
class CommunityShape:
    """What the community looks like; the defaults are issue 19's."""

    users: int = 2000
    rooms: int = 200
    #: Exponent of the room-size power law, and the smallest and largest room allowed
    #: (``max_size`` 0: a quarter of the users).
    size_exponent: float = 2.2
    min_size: int = 5
    max_size: int = 0
    activity_exponent: float = 1.0
    rate: float = 1000.0  # messages per second, all senders together
    duration: float = 20.0  # seconds of sending
    seed: int = 44
    #: Extra listeners in one more room (0: none), and its sender's messages per second.
    big_room: int = 0
    big_rate: float = 20.0


@dataclass
class Plan:
    """The rooms, their members and the send schedule of one community run."""

    shape: CommunityShape
    #: ``members[k]``: the users in room ``k`` (the big room, if any, is the last).
    members: list[list[int]]
    schedule: list[Send]
    #: Index of the big room in ``members``, or ``None``.
    big: int | None = None
    #: ``rooms_of[u]``: the rooms user ``u`` is in, in joining order.
    rooms_of: list[list[int]] = field(default_factory=list)

    @property
    def users(self) -> int:
        return len(self.rooms_of)

    def room_name(self, room: int) -> str:
        return "#big" if room == self.big else f"#r{room}"


def zipf_room_sizes(
    rooms: int,
    seed: int,
    exponent: float = 2.2,
    min_size: int = 5,
    max_size: int = 250,
) -> list[int]:
    """``rooms`` sizes drawn from P(x) ~ x**-exponent on [min_size, max_size], largest first."""
    if rooms <= 0:
        return []
    max_size = max(min_size, max_size)
    sizes = range(min_size, max_size + 1)
    cumulative = list(itertools.accumulate(x**-exponent for x in sizes))
    rng = random.Random(seed)
    drawn = (
        sizes[min(len(sizes) - 1, bisect.bisect(cumulative, rng.random() * cumulative[-1]))]
        for _ in range(rooms)
    )
    return sorted(drawn, reverse=True)


def fill_rooms(sizes: Sequence[int], users: int, rng: random.Random) -> list[list[int]]:
    """Members for rooms of ``sizes`` from users ``0..users-1``: a shuffled order of the users,
    cycled, each room taking the next users not in it yet (a room is capped at ``users``)."""
    order = list(range(users))
    rng.shuffle(order)
    cycle = itertools.cycle(order)
    members: list[list[int]] = []
    for size in sizes:
        room: list[int] = []
        seen: set[int] = set()
        while len(room) < min(size, users):
            user = next(cycle)
            if user not in seen:
                seen.add(user)
                room.append(user)
        members.append(room)
    return members


def activity_weights(users: int, exponent: float, rng: random.Random) -> list[float]:
    """Zipf weights by a seeded activity rank: the busiest user 1, the next ``2**-exponent``..."""
    ranks = list(range(1, users + 1))
    rng.shuffle(ranks)
    return [rank**-exponent for rank in ranks]


def evenly(rate: float, duration: float) -> list[float]:
    """Send times (seconds from the start) of an open loop at ``rate`` for ``duration``."""
    if rate <= 0:
        return []
    return [i / rate for i in range(int(rate * duration))]


def plan(shape: CommunityShape) -> Plan:
    """The rooms, members and schedule of ``shape`` (the same for the same shape)."""
    rng = random.Random(shape.seed)
    max_size = shape.max_size or max(shape.min_size, shape.users // 4)
    sizes = zipf_room_sizes(shape.rooms, shape.seed, shape.size_exponent, shape.min_size, max_size)
    members = fill_rooms(sizes, shape.users, rng)
    total = shape.users
    big = None
    if shape.big_room > 0:
        big = len(members)
        members.append(list(range(total, total + shape.big_room)))
        total += shape.big_room
    rooms_of: list[list[int]] = [[] for _ in range(total)]
    for room, people in enumerate(members):
        for user in people:
            rooms_of[user].append(room)
    weights = activity_weights(shape.users, shape.activity_exponent, rng)
    speakers = [u for u in range(shape.users) if rooms_of[u]]
    cumulative = list(itertools.accumulate(weights[u] for u in speakers))
    schedule: list[Send] = []
    for at in evenly(shape.rate, shape.duration):
        user = speakers[bisect.bisect(cumulative, rng.random() * cumulative[-1])]
        schedule.append((at, user, rng.choice(rooms_of[user])))
    if big is not None:
        sender = members[big][0]
        # Offset by half a step, so the big room's sends do not coincide with the others'.
        half = 0.5 / shape.rate if shape.rate > 0 else 0.0
        schedule += [(at + half, sender, big) for at in evenly(shape.big_rate, shape.duration)]
        schedule.sort()
    return Plan(shape, members, schedule, big, rooms_of)


def expected_per_user(
    plan: Plan, sent: Iterable[tuple[int, int, int]], echo: bool
) -> dict[int, int]:
    """Deliveries each user should receive, from what was sent: ``(user, room, count)``
    triples. Every member of the room gets each message; the sender too when the server
    echoes (trio-chat does, IRC servers do not)."""
    per_room: dict[int, int] = {}
    own: dict[int, int] = {}
    for user, room, count in sent:
        per_room[room] = per_room.get(room, 0) + count
        own[user] = own.get(user, 0) + count
    expected = {u: sum(per_room.get(r, 0) for r in rooms) for u, rooms in enumerate(plan.rooms_of)}
    if not echo:
        for user, count in own.items():
            expected[user] -= count
    return expected


def quantiles(values: Sequence[int], qs: Sequence[float]) -> list[float | None]:
    """Nearest-rank quantiles of ``values`` (sorted or not): the value at index
    ``int(q * n)`` of the sorted data (the last for q = 1); ``None`` for no data."""
    if not values:
        return [None for _ in qs]
    data = sorted(values)
    return [float(data[min(len(data) - 1, int(q * len(data)))]) for q in qs]


def latency_summary(latencies_ns: Sequence[int]) -> dict[str, float | None]:
    """p50, p99, p99.9 and max in milliseconds."""
    p50, p99, p999, top = quantiles(latencies_ns, (0.5, 0.99, 0.999, 1.0))
    return {
        "p50_ms": None if p50 is None else p50 / 1e6,
        "p99_ms": None if p99 is None else p99 / 1e6,
        "p999_ms": None if p999 is None else p999 / 1e6,
        "max_ms": None if top is None else top / 1e6,
    }
