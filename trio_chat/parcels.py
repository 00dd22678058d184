"""What delivery carries besides protocol events: a run of lines queued as one item
(:class:`Bundle`), bytes already encoded for one connection (:class:`Raw`), and the
:class:`Parcel` the hub wraps around each fan-out, which holds its encodings.

None of these is ever sent as itself: clients see only the events in them, or the bytes.
The events stay plain values; what is worked out once per fan-out and shared by all its
receivers (each wire format's encoding, the size on each wire) lives on the parcel, which
every receiver's mailbox queues as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from .protocol import ServerEvent

__all__ = ["Bundle", "Gathered", "Item", "Parcel", "Payload", "Raw", "events_in"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Raw(ServerEvent):
    """Bytes already encoded for one connection: the rest of a write the socket took only
    part of, or a WebSocket keepalive ping. Never built from or sent as JSON; wire formats
    hand ``data`` on as it is.

    A :class:`~trio_chat.protocol.ServerEvent` only so that a keepalive ping travels the
    same way (``Hub.send_to``) as the JSON ``ping`` of other transports."""

    TYPE: ClassVar[str] = "raw"
    data: bytes
    #: How many events these bytes finish (the rest of a bundle finishes all of its events).
    events: int = 1


@dataclass(frozen=True, slots=True)
class Bundle:
    """Several events for the same receivers, queued to each of them as one item.

    The hub bundles a run of chat lines to one room so that fanning out costs one queue
    operation per receiver per run, not per line, and a wire format encodes the run once
    (the lines one after another). Clients never see a bundle, only the events in it,
    each framed as it would be alone (or, asked for, as one ``batch`` message).
    """

    events: tuple[ServerEvent, ...]


@dataclass(frozen=True, slots=True)
class Gathered(Bundle):
    """The parcels one delivery pass had for one receiver, written to it at once (see
    :meth:`~trio_chat.delivery.Delivery.deliver_many`): one write where each parcel was one.

    To everything that reads a bundle it is the events of those parcels, in order. A wire
    format that writes a bundle as its events one after another joins the parcels'
    own encodings (made once per fan-out, shared with the other receivers) rather than
    encoding the events again; the bytes are those the parcels make one by one.
    """

    parcels: tuple[Parcel, ...] = ()

    @classmethod
    def of(cls, parcels: list[Parcel]) -> Gathered:
        events: list[ServerEvent] = []
        for parcel in parcels:
            payload = parcel.event
            if isinstance(payload, Bundle):
                events.extend(payload.events)
            else:
                events.append(payload)
        return cls(tuple(events), tuple(parcels))


#: What a parcel carries, and what a wire format encodes.
Payload: TypeAlias = ServerEvent | Bundle


class Parcel:
    """A payload on its way to the mailboxes of one fan-out, with what they share about
    it: how many events it stands for, its size on each wire (by ``measure``, worked out
    by the first mailbox that needs it) and its encoding in each wire format (by format
    name, filled in by :func:`trio_chat.wire.encoded`).

    The hub makes one per fan-out and every receiver's mailbox queues that same parcel,
    so a message to a thousand receivers is encoded at most once per wire format and the
    same bytes object is written to every socket. Sizing it per receiver instead costs a
    call each (a queued bundle took 1.3 times as long to offer)."""

    __slots__ = ("event", "events", "sizes", "wire")

    def __init__(self, event: Payload) -> None:
        self.event = event
        self.events = events_in(event)
        self.sizes: dict[Callable[[Item], int], int] = {}
        self.wire: dict[str, bytes | str] = {}

    def __repr__(self) -> str:
        return f"Parcel({self.event!r})"


#: What a mailbox queues and a link writes: a parcel of the hub's, or an event for this
#: connection alone (the rest of a write, a reply during the handshake, the bye).
Item: TypeAlias = Parcel | Payload


def events_in(item: Item) -> int:
    """How many events an item stands for: a bundle its events, the rest of a direct
    write those it finishes, a parcel those of what it carries, anything else one."""
    if isinstance(item, Parcel | Raw):
        return item.events
    if isinstance(item, Bundle):
        return len(item.events)
    return 1
