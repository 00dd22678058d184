"""Keepalive: one task watches every connection for silence.

A quiet peer might be gone (cable pulled, laptop shut) without the socket telling us. The
classic answer is a timer per connection; here one :class:`Keepalive` task sweeps all of
them every few seconds instead, so an idle connection costs no task of its own (memory is
what 10,000 idle users are made of). A connection quiet for ``idle`` seconds is sent a
ping (what its transport uses: a JSON ``ping`` frame, a WebSocket ping frame); if nothing
at all arrives within ``answer_within`` seconds more, it is closed as ``ping timeout``.
It watches connections, not users: each connection of a user logged in more than once is
pinged, and closed, on its own.

:meth:`Keepalive.sweep` is the whole decision, a plain function of the clock, tested
without sockets; :meth:`Keepalive.run` only calls it now and then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import trio

from .protocol import ServerEvent

if TYPE_CHECKING:
    from .hub import Receiver

log = logging.getLogger("trio_chat.keepalive")

#: Connections handled per sweep step before giving other tasks a turn.
SWEEP_SLICE = 500

#: Why a connection was closed by the keepalive (the ``leave`` reason others see).
PING_TIMEOUT = "ping timeout"


class Heard(Protocol):
    """What tells when a connection was last heard from (its transport's link)."""

    def heard(self) -> float:
        """The transport's clock reading of the latest bytes that came."""
        ...


@dataclass(eq=False, slots=True)
class Watched:
    """One watched connection: when it was last heard from, and the ping it owes."""

    connection: Receiver  # a Device (or, in tests, a Session: anything with close())
    #: Asked ``heard()`` at each sweep. (The link itself rather than its bound method
    #: ``link.heard``: one object fewer per connection, for its whole life.)
    link: Heard
    ping: Callable[[], ServerEvent]  # a fresh ping in the transport's own form
    pinged_at: float | None = None
    heard_before_ping: float = 0.0


class Keepalive:
    """Pings quiet connections and closes those that stay silent."""

    def __init__(
        self,
        send: Callable[[Receiver, ServerEvent], None],
        *,
        idle: float,
        answer_within: float,
    ) -> None:
        self._send = send
        self.idle = idle
        self.answer_within = answer_within
        #: How often to sweep: often enough that a ping goes out at most a quarter of
        #: ``idle`` late, and a silent peer is closed at most a quarter of the wait late.
        self.interval = min(idle, answer_within) / 4
        self._watched: dict[Receiver, Watched] = {}

    def __len__(self) -> int:
        return len(self._watched)

    def watch(self, connection: Receiver, link: Heard, ping: Callable[[], ServerEvent]) -> None:
        """Watch ``connection``, heard from when ``link.heard()`` says; ``ping()`` makes
        its pings."""
        self._watched[connection] = Watched(connection, link, ping)

    def forget(self, connection: Receiver) -> None:
        self._watched.pop(connection, None)

    def sweep(self, now: float, watched: list[Watched] | None = None) -> None:
        """Ping whoever has been quiet for ``idle``; close whoever did not answer."""
        for entry in self._watched.values() if watched is None else watched:
            heard = entry.link.heard()
            if entry.pinged_at is not None:
                if heard != entry.heard_before_ping:
                    entry.pinged_at = None  # answered (anything counts)
                elif now - entry.pinged_at >= self.answer_within:
                    connection = entry.connection
                    log.info("quiet nick=%s addr=%s", connection.nick, connection.address)
                    connection.close("ping_timeout", PING_TIMEOUT)
                    continue
            if entry.pinged_at is None and now - heard >= self.idle:
                entry.pinged_at = now
                entry.heard_before_ping = heard
                self._send(entry.connection, entry.ping())

    async def run(self) -> None:
        """Sweep forever, a slice at a time so a big server never stalls for it."""
        while True:
            await trio.sleep(self.interval)
            entries = list(self._watched.values())
            for start in range(0, len(entries), SWEEP_SLICE):
                if start:
                    await trio.lowlevel.checkpoint()
                self.sweep(trio.current_time(), entries[start : start + SWEEP_SLICE])
