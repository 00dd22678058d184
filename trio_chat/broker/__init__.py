"""Brokers: the seam between "the hub published an event" and "deliver it here".

The hub numbers room events and decides who gets them; it hands each one to its broker
and never fans out a published event itself. A broker passes events on to the publisher
(:mod:`trio_chat.publisher`: commit to the store, then deliver to this process's members)
in one order that every member shares. Two implementations:

* :class:`LocalBroker` (the default): one process is the whole chat, so the order the hub
  numbered in is the order; events go straight on.
* :class:`~trio_chat.broker.redis.RedisBroker` (``--broker redis://...``): several
  processes share one chat through a Redis stream, the one log every node reads in the
  same order (see that module).

The hub does not know which it has. With Redis, the nodes share their accounts there too
(:mod:`~trio_chat.broker.accounts`), each keeping its own history.
"""

from __future__ import annotations

from collections.abc import Callable

from ..hub import Broker, Pending

__all__ = ["Broker", "LocalBroker"]


class LocalBroker:
    """One process, one chat: every event goes straight to ``deliver`` (the publisher)."""

    __slots__ = ("publish",)

    def __init__(self, deliver: Callable[[Pending], None]) -> None:
        #: Bound once: publishing is one call, on the path of every message.
        self.publish = deliver
