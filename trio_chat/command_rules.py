"""Who may run a command, and how often: the rules a command declares at ``register(...)``.

A plugin says ``register("weather", handler, help=..., allowed="everyone", rate=(3, 60))``
and the server enforces both before the handler runs, the same way for every command, so
each plugin need not write its own checks (and get them slightly different). This module
holds the bookkeeping, with no I/O and with ``now`` passed in, so it is tested with plain
numbers; :func:`trio_chat.commands.run_command` applies it.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal, get_args

#: Who may run a command: anyone, the operators of the room it is run in (server
#: administrators are operators everywhere), or server administrators (``/oper``).
Allowed = Literal["everyone", "operators", "admins"]
ALLOWED: tuple[str, ...] = get_args(Allowed)

#: What ``/help`` says about a command's audience.
ALLOWED_NOTE = {"everyone": "", "operators": "operators only", "admins": "administrators only"}

#: Most uses per window a rate may name, and the longest window (a day).
MAX_RATE_COUNT = 1000
MAX_RATE_SECONDS = 86400.0


def check_allowed(allowed: str) -> Allowed:
    if allowed not in ALLOWED:
        raise ValueError(f"allowed={allowed!r} is not one of {', '.join(ALLOWED)}")
    return allowed  # type: ignore[return-value]


class UsageWindow:
    """At most ``count`` uses in any ``seconds`` by one user: a sliding window, the times of
    each user's latest uses (at most ``count`` each), so ``(3, 60)`` means exactly "3 in
    any minute", not a burst followed by a trickle.

    Users whose latest use is older than the window hold nothing back and are forgotten
    now and then, so the table stays as large as the users active within one window.
    """

    __slots__ = ("_prune_at", "_uses", "count", "seconds")

    def __init__(self, count: int, seconds: float) -> None:
        if not isinstance(count, int) or not 1 <= count <= MAX_RATE_COUNT:
            raise ValueError(f"rate: the count must be 1 to {MAX_RATE_COUNT}, not {count!r}")
        if not isinstance(seconds, int | float) or not 0 < seconds <= MAX_RATE_SECONDS:
            raise ValueError(f"rate: the seconds must be over 0, at most {MAX_RATE_SECONDS:g}")
        self.count = count
        self.seconds = float(seconds)
        self._uses: dict[str, deque[float]] = {}
        self._prune_at = 1024

    def take(self, user: str, now: float) -> float | None:
        """Count a use by ``user`` at ``now``: ``None`` if it may go ahead, else the
        seconds until it may (nothing is counted then)."""
        uses = self._uses.get(user)
        if uses is None:
            if len(self._uses) >= self._prune_at:
                self._prune(now)
            uses = self._uses[user] = deque(maxlen=self.count)
        elif len(uses) == self.count:
            wait = uses[0] + self.seconds - now
            if wait > 0:
                return wait
        uses.append(now)
        return None

    def _prune(self, now: float) -> None:
        stale = [user for user, uses in self._uses.items() if uses[-1] + self.seconds <= now]
        for user in stale:
            del self._uses[user]
        self._prune_at = max(1024, 2 * len(self._uses))

    def __len__(self) -> int:
        return len(self._uses)

    def describe(self) -> str:
        return f"at most {self.count} per {self.seconds:g} s"


def rate_refusal(name: str, window: UsageWindow, wait: float) -> str:
    """What a user told to wait reads."""
    return f"/{name} is limited to {window.describe()}; try again in {math.ceil(wait)} s"


__all__ = ["ALLOWED", "Allowed", "UsageWindow", "check_allowed", "rate_refusal"]
