"""What a transport gives the connection runner (a :class:`Link`), and how a link ends:
the goodbye (what was queued, then a ``bye``) and the close, both bounded in time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, final

import trio

from ..limits import Overhead
from ..parcels import Item, Parcel, Raw
from ..protocol import Bye, ClientFrame, RemoteProtocolError, ServerEvent

if TYPE_CHECKING:
    from .host import ChatHost


class Link(Protocol):
    """What a transport offers the connection runner."""

    transport: str  # "tcp-json", "tcp-text", "websocket"
    address: str  # the peer, for logs
    #: True when plain lines are chat text (a text-mode client types its nick as a line).
    plain_text: bool
    #: Whether :meth:`receive` may write to the peer (a WebSocket's pong, IRC's replies
    #: while it registers), and so may wait even when :meth:`input_waiting`.
    receive_writes: bool

    async def receive(self) -> ClientFrame | RemoteProtocolError | Overhead | None:
        """The next frame, a protocol error to report, an :class:`Overhead` for a frame
        that carries nothing for the chat (blank line, WebSocket ping, pong or fragment:
        one per such frame, so flood control sees each), or ``None`` once the peer is gone.
        Reads the socket (with :meth:`fill`) as long as it needs to."""
        ...

    async def fill(self) -> None:
        """Read once from the socket into the link's parser (the end of the stream counts
        as input too). Cancelling it loses nothing: it is the one place a logged-in
        connection waits for its peer, and what a parking connection cancels."""
        ...

    def feed(self, data: bytes) -> None:
        """Hand the link what was read from its socket (``b""``: the end of the stream),
        for a reader that reads the socket itself (:attr:`park_fd`) instead of calling
        :meth:`fill`."""
        ...

    async def send(self, events: list[Item]) -> int:
        """Write events in one go; return their size as ``measure`` counts it. Raises
        ``trio.BrokenResourceError`` if the peer is gone."""
        ...

    def write_nowait(self, events: list[Item]) -> bytes | None:
        """Write events in one go without waiting, if this link can now (a plain socket,
        no other write under way): the bytes the socket did not take (``b""``: all of
        them went), which must go next, as a :class:`~trio_chat.parcels.Raw` given to
        :meth:`send`; ``None`` if it cannot (nothing was written). Raises
        ``trio.BrokenResourceError`` if the peer is gone. For the last words of a
        connection (:func:`say_goodbye`), which then need no scope when the socket takes
        them, as it nearly always does."""
        ...

    def heard(self) -> float:
        """:attr:`last_heard` now (what the keepalive watches)."""
        ...

    def input_waiting(self) -> bool:
        """Whether :meth:`receive` has a frame (or the end) without reading the socket."""
        ...

    async def prompt_nick(self) -> None:
        """Ask for a nickname (text mode prints a prompt; JSON waits for ``hello``)."""
        ...

    async def aclose(self) -> None: ...

    def close_nowait(self) -> bool:
        """Close at once if closing needs no waiting (a plain socket, which has nothing
        to send first); whether it did. If not, :meth:`aclose` it (bounded)."""
        ...

    def abort(self) -> None:
        """Close the socket at once, without a word (a parked connection the server left)."""
        ...

    #: The socket's file descriptor if the connection may park while idle (plain sockets,
    #: whose readiness means input; not TLS, which buffers records of its own), else None.
    park_fd: int | None

    #: Bytes an event takes on this link (one function per wire format; see wire.sizer).
    measure: Callable[[Item], int]
    #: Write an event at once if the socket takes it, or None (see
    #: :class:`~trio_chat.mailbox.DirectWrite`, which the link is for its mailbox).
    write_now: Callable[[Parcel], bytes] | None
    #: The client asked for several events per message (``"batch": true`` in its hello).
    batching: bool
    #: ``trio.current_time()`` when the peer last sent anything (the keepalive reads it).
    last_heard: float
    #: A new keepalive ping in this link's form, or None for peers that cannot answer
    #: (a person on ``nc``; TCP keepalive on the socket notices those vanishing).
    keepalive_ping: Callable[[], ServerEvent] | None


@final
class LinkTurn:
    """In what a link hands over in runs (a ``receive_ready``), the place of a frame the
    link must take itself, perhaps waiting or writing (a WebSocket's ping, answered; its
    close, returned; a fragment of a message): the reader awaits :meth:`Link.receive`
    there for it, in its place, and handles what that returns as any frame."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LINK_TURN"


#: The one :class:`LinkTurn`.
LINK_TURN = LinkTurn()


#: Seconds a goodbye (``bye`` frame and close) may take before the socket is just dropped.
GOODBYE_TIMEOUT = 1.0


async def say_goodbye(link: Link, bye: Bye, pending: list[Item] | None = None) -> None:
    """Best effort: send what was queued and a ``bye``, within a short bounded time.

    Written at once when the socket takes it all, as it nearly always does: no cancel
    scope then (every connection that is told why it ends comes here, and a scope
    entered costs about as much as a scheduling round). Else what is left goes in one
    scope both shielded and with a deadline (the goodbye is said even by a cancelled
    task)."""
    events = [*(pending or []), bye]
    try:
        rest = link.write_nowait(events)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    if rest == b"":
        return
    with (
        trio.CancelScope(shield=True, deadline=trio.current_time() + GOODBYE_TIMEOUT),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
    ):
        await link.send(events if rest is None else [Raw(data=rest)])


async def close_link(server: ChatHost, link: Link, release: Callable[[], None]) -> None:
    """The last of every connection: close the link (bounded, even when cancelled; at
    once, with no scope, for a plain socket)."""
    try:
        if not link.close_nowait():
            with trio.CancelScope(shield=True, deadline=trio.current_time() + GOODBYE_TIMEOUT):
                await link.aclose()
    finally:
        count_out(server, link, release)


def count_out(server: ChatHost, link: Link, release: Callable[[], None]) -> None:
    """A connection is closed: count it out, and give back its place in the limits."""
    server.metrics.connections_by[link.transport].dec()
    release()
