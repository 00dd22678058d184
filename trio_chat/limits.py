"""Rate and connection limits, as plain bookkeeping (sans-IO, no clock of their own).

Nothing here sleeps or reads the time: every method that depends on time takes ``now``
(seconds, from any monotonic clock, e.g. ``trio.current_time()``), so the server passes its
clock in and the tests pass plain numbers.

* :class:`TokenBucket`: the classic rate limiter, ``rate`` tokens per second up to ``burst``.
* :class:`FloodGuard`: one per connection; says whether a received frame goes on now
  (:attr:`Verdict.OK`), after a delay (:attr:`Verdict.WAIT`), is refused
  (:attr:`Verdict.REFUSE`) or ends the connection (:attr:`Verdict.DISCONNECT`).
* :class:`ConnectionLimiter`: one per server; counts open connections per host and in all.
"""

from __future__ import annotations

import collections
import enum
import functools
from dataclasses import dataclass

#: Config ``flood_rate``: frames per second a connection may send, on average.
DEFAULT_FLOOD_RATE = 5.0
#: Config ``flood_burst``: frames a connection may send at once after being quiet.
DEFAULT_FLOOD_BURST = 10
#: Config ``flood_max_lag``: seconds a connection's frames may be held back (fakelag) before
#: further ones are refused.
DEFAULT_FLOOD_MAX_LAG = 10.0
#: Config ``max_connections_per_host``: open connections from one host.
DEFAULT_MAX_CONNECTIONS_PER_HOST = 20
#: Config ``max_connections``: open connections to the whole server.
DEFAULT_MAX_CONNECTIONS = 5000

#: Protocol error code for a frame refused by :class:`FloodGuard`.
SLOW_DOWN = "slow_down"
#: ``Bye`` code when :class:`FloodGuard` ends a connection.
FLOODING = "flooding"

# Refill arithmetic adds up many small float steps; a bucket that is "full" by the
# arithmetic of a person (5 tokens/s for 0.2 s is one token) must not come out 1e-16 short.
_EPSILON = 1e-9


class TokenBucket:
    """``rate`` tokens per second flow in, up to ``burst``; each action takes some out.

    The bucket starts full, so a fresh client may send ``burst`` frames at once. A refused
    :meth:`take` takes nothing, so a client that waits is served again as soon as the
    tokens are back. A clock that goes backwards refills nothing (it is not an error).
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, not {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now

    def tokens(self, now: float) -> float:
        """How many tokens are in the bucket at ``now``."""
        self._refill(now)
        return self._tokens

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if there are that many (``True``), else take none (``False``).

        A ``cost`` above ``burst`` can never be paid and always returns ``False``.
        """
        if cost < 0:
            raise ValueError(f"cost cannot be negative, not {cost!r}")
        self._refill(now)
        if self._tokens + _EPSILON < cost:
            return False
        self._tokens = max(0.0, self._tokens - cost)
        return True

    def retry_after(self, now: float, cost: float = 1.0) -> float:
        """Seconds from ``now`` until :meth:`take` of ``cost`` would succeed (0 if it would
        now; ``inf`` if ``cost`` is above ``burst``)."""
        if cost > self.burst + _EPSILON:
            return float("inf")
        missing = cost - self.tokens(now)
        return 0.0 if missing <= _EPSILON else missing / self.rate

    def take_on_credit(self, now: float, cost: float, credit: float) -> float | None:
        """Take ``cost`` tokens even if that leaves the bucket up to ``credit`` tokens in
        debt; return the seconds from ``now`` until the debt is paid (0 if there is none).
        If the debt would go beyond ``credit``, take nothing and return ``None``.

        While in debt, :meth:`tokens` is negative and :meth:`take` refuses: a client that
        was let through on credit pays it back before anything else goes.
        """
        if cost < 0:
            raise ValueError(f"cost cannot be negative, not {cost!r}")
        left = self.tokens(now) - cost
        if left < -credit - _EPSILON:
            return None
        self._tokens = left
        return 0.0 if left >= -_EPSILON else -left / self.rate

    def take_run(self, now: float, count: int, cost: float = 1.0) -> int:
        """Take ``cost`` tokens for each of up to ``count`` actions, one after another, as
        long as that leaves the bucket with none missing: how many were taken for (the
        first ones; 0 if the first would leave it short). The bucket is left exactly as
        that many :meth:`take_on_credit` calls in a row at ``now`` leave it."""
        if cost < 0:
            raise ValueError(f"cost cannot be negative, not {cost!r}")
        # What tokens(now) does, written out: a reader checks a run at every read.
        tokens, last = self._tokens, self._last
        if last is None or now > last:
            if last is not None:
                tokens = self._tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            self._last = now
        if count <= 0 or tokens < cost:
            return 0
        if cost == 1.0:
            # Subtracting 1.0 from a float of at least 1 is exact, so ``taken`` takes one
            # after another leave exactly ``tokens - taken``, as one subtraction does.
            taken = min(count, int(tokens))
            self._tokens = tokens - taken
            return taken
        taken = 0
        while taken < count and tokens - cost >= 0.0:  # one by one, each rounded as there
            tokens -= cost
            taken += 1
        self._tokens = tokens
        return taken


class Verdict(enum.Enum):
    """What the server does with a frame, as decided by :meth:`FloodGuard.check`."""

    #: Handle the frame now.
    OK = "ok"
    #: Handle the frame after :attr:`Decision.delay` seconds, reading nothing meanwhile
    #: ("fakelag": the frames behind it wait in the socket, and TCP slows the sender down).
    WAIT = "wait"
    #: Drop the frame and tell the sender ``slow down`` (code :data:`SLOW_DOWN`).
    REFUSE = "refuse"
    #: The sender kept flooding: send ``Bye`` (code :data:`FLOODING`) and close.
    DISCONNECT = "disconnect"


@dataclass(frozen=True, slots=True)
class Decision:
    """:meth:`FloodGuard.check`'s answer: the verdict, and for :attr:`Verdict.WAIT` how many
    seconds from ``now`` to wait before handling the frame."""

    verdict: Verdict
    delay: float = 0.0


_GO = Decision(Verdict.OK)
_REFUSED = Decision(Verdict.REFUSE)
_DISCONNECTED = Decision(Verdict.DISCONNECT)


@dataclass(frozen=True, slots=True)
class Overhead:
    """A frame read that carries nothing for the chat (a blank line; a WebSocket ping, pong
    or unfinished fragment) and so reaches no handler, but still costs ``cost`` of the
    flood budget: otherwise a flood of them would be free (issue 12, item 7)."""

    cost: float


#: Flood cost of a frame that is handled (a message, command, ping, anything with a
#: reply), of a blank line and of a WebSocket ping: one token.
FRAME_COST = 1.0
#: Flood cost of a pong (JSON ``pong`` or WebSocket pong frame): less, since the server asks
#: for them, but not nothing, since a client can send them unasked.
PONG_COST = 0.5
#: Flood cost of each unfinished fragment of a WebSocket message (the frame that finishes
#: it costs :data:`FRAME_COST` as the message): a message in 9 fragments costs 2.
FRAGMENT_COST = 0.125

#: A blank line (TCP), as the link reports it.
BLANK_LINE = Overhead(FRAME_COST)


@dataclass(frozen=True, slots=True)
class _FloodPolicy:
    """What every connection's :class:`FloodGuard` of one server shares: its limits."""

    max_lag: float
    strikes_to_disconnect: int
    strike_window: float


@functools.lru_cache(maxsize=64)
def _flood_policy(max_lag: float, strikes_to_disconnect: int, strike_window: float) -> _FloodPolicy:
    return _FloodPolicy(max_lag, strikes_to_disconnect, strike_window)


class FloodGuard(TokenBucket):
    """Per-connection flood control ("fakelag", as IRC servers have it): call :meth:`check`
    once per frame read, *before* handling it, and do what it says.

    Config keys: ``flood_rate`` (default 5 frames/s), ``flood_burst`` (default 10) and
    ``flood_max_lag`` (default 10 s).

    The policy:

    * Each frame costs tokens from a :class:`TokenBucket` of ``rate`` and ``burst``
      (:data:`FRAME_COST`, or less for pongs and fragments; see :class:`Overhead`). A
      person typing never notices it.
    * A frame over the limit is *delayed*, not dropped: the bucket goes into debt and
      :meth:`check` says :attr:`Verdict.WAIT` with the seconds until the debt is paid. The
      reader waits that long before handling it, reading nothing meanwhile, so what the
      client sent next waits in the socket and TCP makes the client wait too. A pasted
      block of lines arrives whole, in order, at ``rate`` lines a second after the first
      ``burst``. Nobody else waits: the delay is in the sender's own reader, before the
      hub.
    * The debt is bounded: a frame that would go out more than ``max_lag`` seconds after it
      arrived is *refused* (dropped, error :data:`SLOW_DOWN`; it takes no tokens). Lag is
      counted from the frame's *arrival* (``arrived``: when the read that brought it
      returned), so a client that sent far more than it may at once (everything one read
      brings counts as arrived together) is refused at once for the excess, while the
      reader waits for each frame in turn.
    * A client that keeps going gets *disconnected*: more than ``strikes_to_disconnect``
      refusals within any ``strike_window`` seconds, and :meth:`check` returns
      :attr:`Verdict.DISCONNECT` (and keeps returning it).

    ``max_lag=0`` delays nothing: frames over the rate are refused at once.

    Memory is bounded: at most ``strikes_to_disconnect + 1`` refusal times are kept.

    The guard is its own token bucket (:attr:`bucket` is the guard), and its limits are
    one object shared by every guard made with the same ones: a connection keeps one
    object of 88 bytes for its flood control, not two of 144 between them.
    """

    __slots__ = ("_disconnected", "_policy", "_strikes")

    def __init__(
        self,
        rate: float = DEFAULT_FLOOD_RATE,
        burst: int = DEFAULT_FLOOD_BURST,
        max_lag: float = DEFAULT_FLOOD_MAX_LAG,
        strikes_to_disconnect: int = 20,
        strike_window: float = 10.0,
    ) -> None:
        if strikes_to_disconnect < 0:
            raise ValueError("strikes_to_disconnect cannot be negative")
        if not strike_window > 0:
            raise ValueError("strike_window must be positive")
        if not max_lag >= 0:
            raise ValueError(f"max_lag cannot be negative, not {max_lag!r}")
        super().__init__(rate, burst)
        self._policy = _flood_policy(float(max_lag), strikes_to_disconnect, float(strike_window))
        # Made on the first refusal: most connections never have one, and an empty deque is
        # ~600 bytes per connection.
        self._strikes: collections.deque[float] | None = None
        self._disconnected = False

    @property
    def bucket(self) -> TokenBucket:
        """The token bucket frames are taken from: the guard itself."""
        return self

    @property
    def max_lag(self) -> float:
        """Seconds a frame may be held back before frames are refused instead."""
        return self._policy.max_lag

    @property
    def strikes_to_disconnect(self) -> int:
        """Refusals within :attr:`strike_window` that end the connection (one more does)."""
        return self._policy.strikes_to_disconnect

    @property
    def strike_window(self) -> float:
        """Seconds within which refusals count as strikes together."""
        return self._policy.strike_window

    def check(self, now: float, cost: float = FRAME_COST, arrived: float | None = None) -> Decision:
        """Account for one frame read, ``cost`` tokens, that arrived at ``arrived`` (default
        ``now``), and say what to do with it at ``now``."""
        if self._disconnected:
            return _DISCONNECTED
        arrived = now if arrived is None or arrived > now else arrived
        policy = self._policy
        wait = self.take_on_credit(arrived, cost, policy.max_lag * self.rate)
        if wait is not None:
            delay = arrived + wait - now
            return _GO if delay <= _EPSILON else Decision(Verdict.WAIT, delay)
        strikes = self._strikes
        if strikes is None:
            strikes = self._strikes = collections.deque()
        strikes.append(now)
        while strikes and strikes[0] <= now - policy.strike_window:
            strikes.popleft()
        if len(strikes) > policy.strikes_to_disconnect:
            self._disconnected = True
            strikes.clear()
            return _DISCONNECTED
        return _REFUSED

    def check_run(
        self, now: float, count: int, cost: float = FRAME_COST, arrived: float | None = None
    ) -> int:
        """:meth:`check` ``count`` frames of ``cost`` each, that arrived together at
        ``arrived``, in one step as far as that is the same: how many of them, from the
        first, :meth:`check` would let go on now (:attr:`Verdict.OK`) without putting the
        bucket into debt, taken from the bucket as :meth:`check` takes them one by one.
        The frames from the one returned on are not accounted for: check them one at a
        time (the next may still go on, on credit, or be delayed, refused or end it all).

        Why: a client at full speed sends dozens of frames in one read, and checking each
        was four calls and a refill; here it is one refill and one subtraction. For the
        frames it lets through, :meth:`check` would have said OK to each (a take that
        leaves no debt waits for nothing) and left the bucket exactly as this does."""
        if self._disconnected:
            return 0
        return self.take_run(now if arrived is None or arrived > now else arrived, count, cost)

    @property
    def refuse_text(self) -> str:
        """The error text sent with a refused frame."""
        return (
            f"slow down: at most {self.rate:g} messages per second "
            f"(bursts of {self.burst}, at most {self.max_lag:g} s behind); "
            "that one was not sent"
        )

    @property
    def disconnect_text(self) -> str:
        """The ``Bye`` text when the guard gives up on a connection."""
        return (
            f"disconnected for flooding (more than {self.strikes_to_disconnect} refused "
            f"messages in {self.strike_window:g} seconds)"
        )


class ConnectionLimiter:
    """Counts open connections per host and in all, and refuses those over the limits.

    Config keys: ``max_connections_per_host`` (``per_host``, default 20) and
    ``max_connections`` (``total``, default 5000).

    Call :meth:`acquire` when a connection arrives; if it returns ``None`` the connection
    holds a slot and *must* :meth:`release` it exactly once when it closes (in a
    ``finally``). Otherwise the returned string is the reason to send before closing, and
    there is nothing to release. Counts are exact, and a host whose count drops to zero is
    forgotten, so memory follows the open connections, not every host ever seen.

    ``host`` is whatever the caller groups connections by (the peer's IP address; note that
    an IPv6 client usually owns a whole /64, so a strict server may pass that prefix).

    With ``exempt_loopback`` (the server's default, config ``limit_loopback = false``, as
    ergo does), loopback hosts (``127.0.0.0/8``, ``::1``) are not held to ``per_host``: they
    are local tools, tests, or a reverse proxy on the same machine. They are still counted,
    and still count towards ``total``.
    """

    __slots__ = ("_by_host", "_total", "exempt_loopback", "per_host", "total")

    def __init__(
        self,
        per_host: int = DEFAULT_MAX_CONNECTIONS_PER_HOST,
        total: int = DEFAULT_MAX_CONNECTIONS,
        *,
        exempt_loopback: bool = False,
    ) -> None:
        if per_host < 1 or total < 1:
            raise ValueError("connection limits must be at least 1")
        self.per_host = per_host
        self.total = total
        self.exempt_loopback = exempt_loopback
        self._by_host: dict[str, int] = {}
        self._total = 0

    def acquire(self, host: str) -> str | None:
        """Take a slot for a connection from ``host``: ``None`` if granted, else why not."""
        held = self._by_host.get(host, 0)
        # The loopback test only runs for a host at its limit: the usual path pays nothing.
        if held >= self.per_host and not (self.exempt_loopback and self.is_loopback(host)):
            return f"too many connections from {host} (limit {self.per_host})"
        if self._total >= self.total:
            return f"server full (limit {self.total} connections)"
        self._by_host[host] = held + 1
        self._total += 1
        return None

    def release(self, host: str) -> None:
        """Give back a slot taken by a successful :meth:`acquire` for ``host``.

        Raises :class:`ValueError` if ``host`` holds no slot (a release without an acquire
        is a bug in the caller, and ignoring it would make the counts drift).
        """
        held = self._by_host.get(host, 0)
        if held <= 0:
            raise ValueError(f"release({host!r}) without a matching acquire")
        if held == 1:
            del self._by_host[host]
        else:
            self._by_host[host] = held - 1
        self._total -= 1

    def count(self, host: str | None = None) -> int:
        """Open connections from ``host``, or in all when ``host`` is ``None``."""
        return self._total if host is None else self._by_host.get(host, 0)

    @property
    def hosts(self) -> int:
        """How many hosts hold at least one connection (the size of the table)."""
        return len(self._by_host)

    @staticmethod
    def is_loopback(host: str) -> bool:
        """Whether ``host`` is a loopback address (an IPv4-mapped one included)."""
        import ipaddress  # only asked about hosts at their limit

        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped.is_loopback
        return address.is_loopback
