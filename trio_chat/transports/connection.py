"""One connection's life, whatever the transport: handshake, reader, writer, goodbye.

A transport provides a :class:`Link` (receive one frame, send a batch of events, close);
:func:`run_connection` does the rest. Each connection runs in its own task with its own
nursery (the writer beside the reader), so a failure here ends this connection only; an
idle one gives up its tasks and parks until it has something to do (:class:`Resident`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import trio

from ..errors import ChatError
from ..hub import Session, host_of
from ..limits import (
    FLOODING,
    FRAME_COST,
    PONG_COST,
    SLOW_DOWN,
    FloodGuard,
    Overhead,
    Verdict,
)
from ..mailbox import Mailbox
from ..names import DEFAULT_ROOM
from ..protocol import (
    Bye,
    ClientFrame,
    Command,
    Error,
    Hello,
    Ping,
    Pong,
    PongReply,
    Quit,
    RemoteProtocolError,
    Say,
    ServerEvent,
    Welcome,
    error_reply,
)
from .streams import peer_address, refuse

if TYPE_CHECKING:
    from ..server import ChatServer, ConnectionSlot

log = logging.getLogger("trio_chat.connection")

#: Label values of ``trio_chat_disconnects_total`` for the ends the connection noticed itself
#: (free-text reasons must never be labels: each distinct value is a time series).
_REASON_CODES = {
    "connection closed": "closed",
    "connection lost": "connection_lost",
    "write timed out": "write_timeout",
    "ping timeout": "ping_timeout",
}

#: Seconds a goodbye (``bye`` frame and close) may take before the socket is just dropped.
GOODBYE_TIMEOUT = 1.0

#: Frames a reader handles in a row before it lets other tasks run. One read may bring
#: thousands of tiny frames (a 64 KiB read holds 10,000 empty WebSocket frames), and
#: handling a frame need not yield; with a flood budget as large as the tests' that would
#: let one connection hold the whole server for the length of its read. (Under the default
#: flood limits a flooder soon waits or is refused anyway.) Not fewer: a yield in the middle
#: of a read lets the publisher take a partial batch, and at 64 frames the bench's fan-out
#: at N=100 lost 12-15% of its deliveries per second (reads of up to ~1,000 frames there).
FRAMES_PER_STEP = 1024


class Link(Protocol):
    """What a transport offers the connection runner."""

    transport: str  # "tcp-json", "tcp-text", "websocket"
    address: str  # the peer, for logs
    #: True when plain lines are chat text (a text-mode client types its nick as a line).
    plain_text: bool

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

    async def send(self, events: list[ServerEvent]) -> int:
        """Write events in one go; return their size as ``measure`` counts it. Raises
        ``trio.BrokenResourceError`` if the peer is gone."""
        ...

    def input_waiting(self) -> bool:
        """Whether :meth:`receive` has a frame (or the end) without reading the socket."""
        ...

    async def prompt_nick(self) -> None:
        """Ask for a nickname (text mode prints a prompt; JSON waits for ``hello``)."""
        ...

    async def aclose(self) -> None: ...

    def abort(self) -> None:
        """Close the socket at once, without a word (a parked connection the server left)."""
        ...

    #: The socket's file descriptor if the connection may park while idle (plain sockets,
    #: whose readiness means input; not TLS, which buffers records of its own), else None.
    park_fd: int | None

    #: Bytes an event takes on this link (one function per wire format; see wire.sizer).
    measure: Callable[[ServerEvent], int]
    #: Write an event at once if the socket takes it, or None (see
    #: :class:`~trio_chat.mailbox.DirectWrite`, which the link is for its mailbox).
    write_now: Callable[[ServerEvent], bytes] | None
    #: The client asked for several events per message (``"batch": true`` in its hello).
    batching: bool
    #: ``trio.current_time()`` when the peer last sent anything (the keepalive reads it).
    last_heard: float
    #: A new keepalive ping in this link's form, or None for peers that cannot answer
    #: (a person on ``nc``; TCP keepalive on the socket notices those vanishing).
    keepalive_ping: Callable[[], ServerEvent] | None


class Arrival:
    """A new connection on its way in: who it comes from, and its place in the limits.

    From most peers the place is taken at once, keyed by the peer's address, before the
    transport reads a byte (as cheap as it can be). A peer in ``trusted_proxies``
    (``proxied``) is a reverse proxy speaking for someone else: its transport first learns
    the real client's address (a PROXY header on TCP, ``X-Forwarded-For`` on the WebSocket
    port, within the handshake's time) and then calls :meth:`admit` with it, so the limits,
    bans, login throttling and logs all see the client, never the proxy.
    """

    __slots__ = ("_refusal", "_server", "_slots", "_stream", "address", "peer", "proxied", "slot")

    def __init__(
        self,
        server: ChatServer,
        stream: trio.SocketStream,
        peer: str,
        refusal: Callable[[str], bytes],
        slots: contextlib.ExitStack[bool | None],
    ) -> None:
        self._server = server
        self._stream = stream
        self._refusal = refusal
        self._slots = slots
        #: ``host:port`` of the socket's peer (the proxy, when ``proxied``).
        self.peer = peer
        #: ``host:port`` of the client, as far as it is known yet (see :meth:`admit`).
        self.address = peer
        trust = server.proxy_trust
        self.proxied = bool(trust) and trust.trusts(host_of(peer))
        self.slot: ConnectionSlot | None = None

    async def admit(self, address: str, reply_to: trio.abc.Stream | None = None) -> bool:
        """Take the connection's place in the limits as coming from ``address`` (once).
        If it may not stay, say why on ``reply_to`` (default: the socket, in the
        transport's own words), close it, and return ``False``."""
        assert self.slot is None, "a connection is admitted once"
        self.address = address
        if self.proxied:
            log.debug("connection from %s via proxy %s", address, self.peer)
        self.slot = slot = self._slots.enter_context(self._server.connection_slot(address))
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


#: A transport's opening (see :func:`serve_accepted`).
OpenLink = Callable[["ChatServer", trio.SocketStream, Arrival], Awaitable["Link | None"]]


async def serve_accepted(
    server: ChatServer,
    stream: trio.SocketStream,
    open_link: OpenLink,
    refusal: Callable[[str], bytes],
) -> None:
    """One accepted connection, whatever the transport: its place in the connection limits
    (or ``refusal(reason)`` sent back), the transport's opening (``open_link``: a PROXY
    header, TLS, sniffing or the HTTP upgrade; ``None`` if the peer is not here to chat),
    then the chat.

    The place is taken here, by the peer's address, unless the peer is a trusted proxy:
    then ``open_link`` takes it with :meth:`Arrival.admit` once it knows the client. A link
    comes back only from an admitted connection.

    Owns ``stream``: closes it unless :func:`run_connection` took it over. Nothing a
    connection does gets past this function, so nothing takes down the listener.
    """
    peer = peer_address(stream)
    arrival: Arrival | None = None
    link: Link | None = None
    try:
        with contextlib.ExitStack() as slots:
            arrival = Arrival(server, stream, peer, refusal, slots)
            if not arrival.proxied and not await arrival.admit(peer):
                return
            link = await open_link(server, stream, arrival)
            if link is not None:
                assert arrival.slot is not None, "open_link returned a link it did not admit"
                await run_connection(server, link, arrival.slot.hand_over())
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception:
        log.exception("connection from %s failed", peer if arrival is None else arrival.address)
    finally:
        if link is None:  # not handed over to run_connection, which closes it
            await trio.aclose_forcefully(stream)


async def run_connection(server: ChatServer, link: Link, release: Callable[[], None]) -> None:
    """Serve one client until it quits, vanishes, is disconnected, or the server stops.

    Owns ``link`` (closes it) and ``release`` (calls it once the connection is over) from
    its first line on, even if it raises. Once the client has logged in, the connection
    may outlive this call: an idle one parks, and resumes later in a task of its own
    (see :class:`Resident`).
    """
    metrics = server.metrics
    metrics.connections.labels(link.transport).inc()
    metrics.connections_total.inc()
    session: Session | None = None
    end_label = "closed"
    try:
        with trio.move_on_after(server.config.handshake_timeout) as handshake_scope:
            mailbox = Mailbox(server.config.outbox_size, server.config.outbox_bytes, link)
            session = await _handshake(server, link, mailbox)
        if handshake_scope.cancelled_caught:
            end_label = "handshake_timeout"
            await _goodbye(link, Bye(code="timeout", text="no nickname given in time"))
    finally:
        if session is None:
            metrics.disconnects_total.labels(end_label).inc()
            await _close(server, link, release)
    if session is None:
        return
    log.info(
        "connect nick=%s addr=%s transport=%s account=%s",
        session.nick,
        link.address,
        link.transport,
        "yes" if session.account else "no",
    )
    server.session_started()
    if link.keepalive_ping is not None:
        server.keepalive.watch(session, lambda: link.last_heard, link.keepalive_ping)
    resident = Resident(server, link, session, release)
    # The history of the room it joined comes once the session counts as live: a shutdown
    # from here on waits for it and says goodbye (one that came during the history read
    # used to find no live session and cancel this task, bye unsent), and a handshake
    # timeout can no longer cut in after the hub has the session.
    with trio.move_on_after(server.config.handshake_timeout):
        await server.after_join(session, DEFAULT_ROOM)
    await resident.start()


async def _close(server: ChatServer, link: Link, release: Callable[[], None]) -> None:
    """The last of every connection: close the link (bounded, even when cancelled)."""
    try:
        with trio.CancelScope(shield=True), trio.move_on_after(GOODBYE_TIMEOUT):
            await link.aclose()
    finally:
        _closed(server, link, release)


def _closed(server: ChatServer, link: Link, release: Callable[[], None]) -> None:
    """A connection is closed: count it out, and give back its place in the limits."""
    server.metrics.connections.labels(link.transport).dec()
    release()


class Resident:
    """A logged-in connection: what lives as long as it does, whichever task serves it.

    It is served in *spells*. A spell runs the reader and the writer; it ends when the
    connection ends (and then says goodbye and cleans up), or when the connection has
    been idle for ``config.park_after`` seconds: then the spell's tasks end and the
    connection parks (see :mod:`trio_chat.transports.parking`) until its socket has
    input, its mailbox has something its socket would not take, or its session is closed;
    then :meth:`resume` starts the next spell in a new task.
    """

    __slots__ = ("_parked", "flood", "link", "release", "server", "session")

    def __init__(
        self, server: ChatServer, link: Link, session: Session, release: Callable[[], None]
    ) -> None:
        self.server = server
        self.link = link
        self.session = session
        self.release = release
        # Kept across spells: a flooder's strikes are not forgiven by a pause.
        self.flood = _flood_guard(server)
        self._parked = False

    async def start(self) -> None:
        """Serve the connection from its log-in on. One that has said nothing more parks at
        once: a crowd logging in then never holds two tasks per user, which would leave
        the server's memory at that peak (freed task memory is reused, not returned)."""
        if not self._park():
            await self.run()

    async def run(self) -> None:
        """Serve spells until the connection ends or parks; clean up if it ended."""
        parked = False
        reason: str | None = "connection closed"
        try:
            while True:
                reason = await self._spell()
                if reason is not None:
                    break
                if self._park():
                    parked = True
                    return
        finally:
            if not parked:
                await self._end(reason or "connection closed")

    def resume(self) -> None:
        """Start the next spell (whatever woke the parked connection first calls this;
        later calls find it unparked and do nothing)."""
        if not self._unpark():
            return
        try:
            self.server.start_connection_task(self.run)
        except RuntimeError:  # the server has stopped serving: nobody to run it
            self._drop()

    def abandon(self) -> None:
        """The server is gone while this connection was parked: close it without a word."""
        if self._unpark():
            self._drop()

    def _drop(self) -> None:
        self.link.abort()
        self._forget(self.session.close_reason or "server stopped")
        _closed(self.server, self.link, self.release)

    def _unpark(self) -> bool:
        """Take back every way of being woken (whichever woke it used its own already);
        whether it was parked."""
        if not self._parked:
            return False
        self._parked = False
        assert self.link.park_fd is not None
        self.server.parking.unpark(self.link.park_fd)
        self.session.mailbox.unpark()
        self.server.metrics.parked.dec()
        return True

    def _park(self) -> bool:
        """Hand the connection over to the parking lot if it is still idle; whether it did."""
        session, mailbox, fd = self.session, self.session.mailbox, self.link.park_fd
        if fd is None or not self.server.parking.available:
            return False
        if session.closed or self.server.stopping:
            return False
        if self.link.input_waiting() or not mailbox.park(self.resume):
            return False  # woken while its writer stopped: serve on
        self.server.parking.park(fd, self)
        self._parked = True
        self.server.metrics.parked.inc()
        return True

    async def _spell(self) -> str | None:
        """Run reader and writer until one ends or the connection idles; why it ended
        (``None`` if it only idles: the caller parks it)."""
        server, link, session = self.server, self.link, self.session
        mailbox = session.mailbox
        reason = "connection closed"
        async with trio.open_nursery() as nursery:
            writer_done = trio.Event()

            async def write() -> None:
                nonlocal reason
                try:
                    await _writer(
                        link, mailbox, server.config.max_batch, server.config.send_timeout
                    )
                except trio.TooSlowError:
                    reason = "write timed out"
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    reason = "connection lost"
                finally:
                    writer_done.set()
                nursery.cancel_scope.cancel()

            nursery.start_soon(write)
            ended: str | None = reason
            with trio.CancelScope() as reading:
                # The server ends a session (quit, kick off, flooding, slow, shutdown) by
                # stopping its reader; the writer then still delivers what is queued.
                mailbox.call_on_hang_up(reading.cancel)
                if session.closed:  # closed before we could listen
                    reading.cancel()
                ended = await _read_frames(server, link, session, self.flood)
            if ended is None:
                mailbox.call_on_hang_up(None)
                nursery.cancel_scope.cancel()  # the writer waits for events: stop it too
                return None
            reason = ended
            if session.close_reason is not None:
                reason = session.close_reason
            # Whatever stopped the reading (the peer closed or only stopped sending, or the
            # server ended it): the writer delivers what is queued, its own last lines
            # included, then the bye, all within a bounded time.
            with trio.move_on_after(GOODBYE_TIMEOUT):
                await server.settle()
                server.hub.detach(session, reason)
                mailbox.close()
                await writer_done.wait()
            nursery.cancel_scope.cancel()
        if session.close_code is not None:
            # What the writer had no time for:
            pending = mailbox.take_nowait(server.config.max_batch)
            bye = Bye(code=session.close_code, text=session.close_reason or session.close_code)
            await _goodbye(link, bye, pending)
        return reason

    async def _end(self, reason: str) -> None:
        session = self.session
        if session.close_reason is not None:
            reason = session.close_reason
        self._forget(reason)
        await _close(self.server, self.link, self.release)

    def _forget(self, reason: str) -> None:
        """Take the ended session out of the server's books (the hub, counters, logs)."""
        server, session = self.server, self.session
        server.session_ended()
        label = session.close_code or _REASON_CODES.get(reason, "other")
        server.metrics.disconnects_total.labels(label).inc()
        server.keepalive.forget(session)
        server.hub.detach(session, reason)
        log.info("disconnect nick=%s addr=%s reason=%r", session.nick, self.link.address, reason)
        session.mailbox.close()


async def _handshake(server: ChatServer, link: Link, mailbox: Mailbox) -> Session | None:
    """Ask for a nickname until a valid, free one arrives; ``None`` if the peer left."""
    await link.prompt_nick()
    flood = _flood_guard(server)
    while True:
        item = await link.receive()
        if item is None:
            return None
        # Garbage before a hello counts too; a wait here is bounded by the handshake timeout.
        decision = flood.check(trio.current_time(), _cost(item), link.last_heard)
        verdict = decision.verdict
        if verdict is Verdict.WAIT:
            await trio.sleep(decision.delay)
        elif verdict is Verdict.DISCONNECT:
            await _goodbye(link, Bye(code=FLOODING, text=flood.disconnect_text))
            return None
        elif verdict is Verdict.REFUSE:
            if not isinstance(item, Overhead):
                ref = getattr(item, "ref", None)
                await link.send([Error(code=SLOW_DOWN, text=flood.refuse_text, ref=ref)])
            continue
        if isinstance(item, Overhead):
            await trio.lowlevel.checkpoint()  # a flood of them must not hold the loop
            continue
        if isinstance(item, Quit):
            await _goodbye(link, Bye(code="quit", text=item.reason or "quit"))
            return None
        if isinstance(item, RemoteProtocolError):
            server.metrics.frames_rejected_total.labels(item.code).inc()
            await link.send([error_reply(item)])
            continue
        if isinstance(item, Ping):
            await link.send([Pong(token=item.token, ref=item.ref)])
            continue
        login = _login_from(item, link.plain_text)
        if login is None:
            await link.send(
                [
                    Error(
                        code="hello_required",
                        text="say who you are first: send a 'hello' frame",
                        ref=getattr(item, "ref", None),
                    )
                ]
            )
            continue
        if server.stopping:
            await _goodbye(link, Bye(code="shutdown", text="the server is shutting down"))
            return None
        try:
            account = await server.admit(login.nick, login.password, login.register, link.address)
            session = server.hub.attach(
                login.nick, mailbox, address=link.address, transport=link.transport
            )
        except ChatError as exc:
            await link.send([error_reply(exc, login.ref)])
            await link.prompt_nick()
            continue
        session.account = account
        link.batching = login.batch
        server.hub.send_to(
            session,
            Welcome(
                nick=session.nick,
                room=DEFAULT_ROOM,
                server=server.config.server_name,
                version=_version(),
                account=account is not None,
                ref=login.ref,
            ),
        )
        server.hub.join(session, DEFAULT_ROOM)
        return session


def _flood_guard(server: ChatServer) -> FloodGuard:
    config = server.config
    return FloodGuard(config.flood_rate, config.flood_burst, config.flood_max_lag)


def _cost(item: ClientFrame | RemoteProtocolError | Overhead) -> float:
    """What a frame read costs of the flood budget (every frame costs something)."""
    if isinstance(item, Overhead):
        return item.cost
    return PONG_COST if isinstance(item, PongReply) else FRAME_COST


@dataclass(frozen=True, slots=True)
class _Login:
    nick: str
    password: str | None = field(default=None, repr=False)
    register: bool = False
    ref: str | None = None
    batch: bool = False


def _login_from(item: ClientFrame, plain_text: bool) -> _Login | None:
    """Who a not-yet-logged-in client says it is: ``hello``, ``/nick NAME``,
    ``/login NAME PASSWORD``, ``/register NAME PASSWORD``, or (text mode) a bare line."""
    if isinstance(item, Hello):
        return _Login(item.nick, item.password, item.register, item.ref, item.batch)
    if isinstance(item, Command):
        words = item.args.split()
        if item.name == "nick" and len(words) == 1:
            return _Login(words[0], ref=item.ref)
        if item.name in ("login", "register") and len(words) == 2:
            return _Login(words[0], words[1], item.name == "register", item.ref)
        return None
    if isinstance(item, Say) and plain_text:
        return _Login(item.text, ref=item.ref)
    return None


async def _read_frames(
    server: ChatServer, link: Link, session: Session, flood: FloodGuard
) -> str | None:
    """Act on every frame the peer sends until it closes or stops sending; the reason.
    ``None`` once the connection idles and may park: nothing came for ``park_after``
    seconds and its writer waits with nothing to send."""
    park_after = server.config.park_after if link.park_fd is not None else None
    if park_after is not None and not server.parking.available:
        park_after = None
    while True:
        # One scope per idle spell, its deadline moved around each socket read only:
        # cancelling a read loses nothing, cancelling a command half-way would.
        reason: str | None = None
        with trio.CancelScope() as idle:
            reason = await _read_until_idle(server, link, session, flood, idle, park_after)
        if reason is not None:
            return reason
        mailbox = session.mailbox
        if idle.cancelled_caught and not len(mailbox) and mailbox.writer_waiting:
            return None
        # Busy writing, or input came just as the deadline passed: go on, in a new scope.


async def _read_until_idle(
    server: ChatServer,
    link: Link,
    session: Session,
    flood: FloodGuard,
    idle: trio.CancelScope,
    park_after: float | None,
) -> str | None:
    """:func:`_read_frames` within one ``idle`` scope (see there); returns when the
    scope's deadline passed while a read was coming in (the caller then starts anew).

    Flood control happens here, in the sender's own task and before the hub, so nobody
    else waits for a flooder: a frame over the rate waits (fakelag) before it is handled,
    and nothing more is read meanwhile. The wait has no idle deadline, so a connection
    held back does not park; its writer runs on; closing the session cancels the wait."""
    handled = 0  # frames since this task last let others run
    while True:
        if not link.input_waiting():
            # All that arrived is handled: let what it said go out now, in one bundle.
            server.flush()
            handled = 0
            if park_after is None:
                await link.fill()
            else:
                idle.deadline = trio.current_time() + park_after
                await link.fill()
                idle.deadline = math.inf
                if idle.cancel_called:
                    return None
            continue
        item = await link.receive()
        if item is None:
            return "connection lost"
        handled += 1
        if handled >= FRAMES_PER_STEP:
            handled = 0
            await trio.lowlevel.checkpoint()
        decision = flood.check(trio.current_time(), _cost(item), link.last_heard)
        verdict = decision.verdict
        if verdict is Verdict.WAIT:
            server.flush()  # what the frames before it said goes out first
            await trio.sleep(decision.delay)
            handled = 0
        elif verdict is Verdict.DISCONNECT:
            log.info("flooding nick=%s addr=%s", session.nick, link.address)
            server.disconnect(session, FLOODING, flood.disconnect_text)
            return flood.disconnect_text
        elif verdict is Verdict.REFUSE:
            if not isinstance(item, Overhead):  # (nothing to drop: it only counts)
                server.metrics.frames_rejected_total.labels(SLOW_DOWN).inc()
                ref = getattr(item, "ref", None)
                server.hub.send_to(session, Error(code=SLOW_DOWN, text=flood.refuse_text, ref=ref))
            continue
        if isinstance(item, Overhead):
            continue
        if isinstance(item, RemoteProtocolError):
            server.metrics.frames_rejected_total.labels(item.code).inc()
            server.hub.send_to(session, error_reply(item))
            continue
        await server.handle(session, item)


async def _writer(
    link: Link,
    mailbox: Mailbox,
    max_batch: int,
    send_timeout: float,
) -> None:
    """Send everything waiting in the mailbox, as many events per write as are queued.

    Raises ``trio.TooSlowError`` if one write takes longer than ``send_timeout``. (One cancel
    scope whose deadline moves, rather than a new ``fail_after`` per write: this loop runs
    once per delivery burst for every connection.)
    """
    with trio.CancelScope() as write_deadline:
        while True:
            # Waits for the first event, then one scheduling round for more to arrive:
            # bigger batches, fewer writes. Empty once the mailbox is closed and drained.
            batch = await mailbox.take(max_batch)
            if not batch:
                break
            write_deadline.deadline = trio.current_time() + send_timeout
            sent = await link.send(batch)
            write_deadline.deadline = math.inf
            mailbox.sent(sent)  # link.send sized them as its measure does
    if write_deadline.cancelled_caught:
        raise trio.TooSlowError


async def _goodbye(link: Link, bye: Bye, pending: list[ServerEvent] | None = None) -> None:
    """Best effort: send what was queued and a ``bye``, within a short bounded time."""
    with (
        trio.CancelScope(shield=True),
        trio.move_on_after(GOODBYE_TIMEOUT),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
    ):
        await link.send([*(pending or []), bye])


def _version() -> str:
    from .. import __version__

    return __version__
