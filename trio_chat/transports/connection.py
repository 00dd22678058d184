"""One connection's life, whatever the transport: admitted, logged in, served, closed.

A transport provides a :class:`~trio_chat.transports.link.Link` (receive one frame, send a
batch of events, close); :func:`serve_accepted` and :func:`run_connection` do the rest, in
steps of their own modules: the log-in (:mod:`.handshake`), then the logged-in connection
(:class:`~trio_chat.transports.resident.Resident`: one reading task, and a writer task only
while something is queued, their failures ending this connection only; an idle one gives up
its task and parks until it has something to do), and the goodbye and close (:mod:`.link`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import trio

from ..hub import Device, host_of, serving
from ..mailbox import Mailbox
from ..protocol import (
    Bye,
)
from .handshake import HandshakeTimeout, handshake
from .link import Link, close_link, say_goodbye
from .resident import Resident
from .streams import peer_address, refuse

if TYPE_CHECKING:
    from .host import ChatHost, ConnectionSlot

log = logging.getLogger("trio_chat.connection")


class Arrival:
    """A new connection on its way in: who it comes from, and its place in the limits.

    From most peers the place is taken at once, keyed by the peer's address, before the
    transport reads a byte (as cheap as it can be). A peer in ``trusted_proxies``
    (``proxied``) is a reverse proxy speaking for someone else: its transport first learns
    the real client's address (a PROXY header on TCP, ``X-Forwarded-For`` on the WebSocket
    port, within the handshake's time) and then calls :meth:`admit` with it, so the limits,
    bans, login throttling and logs all see the client, never the proxy.
    """

    __slots__ = ("_refusal", "_server", "_stream", "address", "peer", "proxied", "slot")

    def __init__(
        self,
        server: ChatHost,
        stream: trio.abc.Stream,
        peer: str,
        refusal: Callable[[str], bytes],
    ) -> None:
        self._server = server
        self._stream = stream
        self._refusal = refusal
        #: ``host:port`` of the socket's peer (the proxy, when ``proxied``).
        self.peer = peer
        #: ``host:port`` of the client, as far as it is known yet (see :meth:`admit`).
        self.address = peer
        trust = server.proxy_trust
        self.proxied = bool(trust) and trust.trusts(host_of(peer))
        self.slot: ConnectionSlot | None = None

    async def admit(
        self,
        address: str,
        reply_to: trio.abc.Stream | None = None,
        slot: ConnectionSlot | None = None,
    ) -> bool:
        """Take the connection's place in the limits as coming from ``address`` (once;
        ``slot``: the place taken already, by the accept). If it may not stay, say why on
        ``reply_to`` (default: the socket, in the transport's own words), close it, and
        return ``False``."""
        assert self.slot is None, "a connection is admitted once"
        self.address = address
        if self.proxied:
            log.debug("connection from %s via proxy %s", address, self.peer)
        # Given back by serve_accepted unless the connection takes it over.
        self.slot = slot = slot or self._server.connection_slot(address)
        if slot.refusal is not None:
            if reply_to is None and self._server.ssl_context is not None:
                # A TLS client expects a handshake: plain words would only reach it as a
                # broken record. It is closed instead (the log says why).
                log.info("refused %s: %s", address, slot.refusal)
                await refuse(self._stream, b"")
            else:
                await refuse(reply_to or self._stream, self._refusal(slot.refusal))
            return False
        return True


#: The stream of an accepted connection: trio's, or the TCP chat port's descriptor.
S = TypeVar("S", bound=trio.abc.Stream)


async def serve_accepted(
    server: ChatHost,
    stream: S,
    open_link: Callable[[ChatHost, S, Arrival], Awaitable[Link | None]],
    refusal: Callable[[str], bytes],
    peer: str | None = None,
    slot: ConnectionSlot | None = None,
) -> None:
    """One accepted connection, whatever the transport: its place in the connection limits
    (or ``refusal(reason)`` sent back), the transport's opening (``open_link``: a PROXY
    header, TLS, sniffing or the HTTP upgrade; ``None`` if the peer is not here to chat),
    then the chat.

    The place is taken here, by the peer's address, unless the peer is a trusted proxy:
    then ``open_link`` takes it with :meth:`Arrival.admit` once it knows the client. A link
    comes back only from an admitted connection.

    ``peer``: the peer's ``host:port`` if the accept said it already (else asked of the
    socket); ``slot``: its place, if the accept took it already (not for a trusted
    proxy's connection). Owns ``stream``: closes it unless :func:`run_connection` took it over.
    Nothing a connection does gets past this function, so nothing takes down the listener.
    """
    if peer is None:
        peer = peer_address(stream)
    arrival: Arrival | None = None
    link: Link | None = None
    try:
        arrival = Arrival(server, stream, peer, refusal)
        try:
            if not arrival.proxied and not await arrival.admit(peer, slot=slot):
                return
            link = await open_link(server, stream, arrival)
            if link is not None:
                assert arrival.slot is not None, "open_link returned a link it did not admit"
                await run_connection(server, link, arrival.slot.hand_over())
        finally:
            if arrival.slot is not None:
                arrival.slot.give_back()  # (nothing, once handed over)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception:
        log.exception("connection from %s failed", peer if arrival is None else arrival.address)
    finally:
        if link is None:  # not handed over to run_connection, which closes it
            await trio.aclose_forcefully(stream)


async def run_connection(server: ChatHost, link: Link, release: Callable[[], None]) -> None:
    """Serve one client until it quits, vanishes, is disconnected, or the server stops.

    Owns ``link`` (closes it) and ``release`` (calls it once the connection is over) from
    its first line on, even if it raises. Once the client has logged in, the connection
    may outlive this call: an idle one parks, and resumes later in a task of its own
    (see :class:`Resident`).
    """
    metrics = server.metrics
    metrics.connections_by[link.transport].inc()
    metrics.connections_total.inc()
    device: Device | None = None
    end_label = "closed"
    try:
        # One deadline for the whole log-in, kept without a scope (see handshake.py).
        deadline = trio.current_time() + server.config.handshake_timeout
        mailbox = Mailbox(server.config.outbox_size, server.config.outbox_bytes, link)
        try:
            device = await handshake(server, link, mailbox, deadline)
        except HandshakeTimeout:
            end_label = "handshake_timeout"
            await say_goodbye(link, Bye(code="timeout", text="no nickname given in time"))
    finally:
        if device is None:
            metrics.disconnects_by[end_label].inc()
            await close_link(server, link, release)
    if device is None:
        return
    session = device.session
    # One more connection of a user here already (or kept offline: trio_chat.always_on).
    joined = device.rejoined
    # Replies to what this task handles go to this connection alone.
    serving.set(device)
    log.info(
        "connect nick=%s addr=%s transport=%s account=%s connections=%d",
        session.nick,
        link.address,
        link.transport,
        "yes" if session.account else "no",
        len(session.devices),
    )
    server.session_started()
    if link.keepalive_ping is not None:
        server.keepalive.watch(device, link, link.keepalive_ping)
    resident = Resident(server, link, device, release)
    # The history of the rooms a connection joining its user is in comes once the session
    # counts as live: a shutdown from here on waits for it and says goodbye (one that came
    # during the history read used to find no live session and cancel this task, bye
    # unsent), and a handshake timeout can no longer cut in after the hub has the session.
    # (A new user's #lobby history came with its join, read before: see handshake.py.)
    handed_over = False
    try:
        if joined:
            with trio.move_on_after(server.config.handshake_timeout):
                await server.after_attach(device)
        handed_over = True
    finally:
        if not handed_over:
            # Cancelled (the server stopping without a shutdown) while the history was
            # read: nobody else would close the socket, and the client would learn of it
            # only through its keepalive.
            await resident.end("server stopped")
    await resident.start()
