"""What a transport may ask of the server that runs it: the :class:`ChatHost` interface.

The server hands itself to its listeners (``serve_tcp_chat(server, ...)``) as a
:class:`ChatHost`; transports see only the members below, never
:class:`~trio_chat.server.ChatServer` itself, so they never import ``server.py`` (which
imports them to start them). :class:`ChatServer` satisfies the interface structurally
(mypy checks it: ``server.py`` assigns a server to a ``ChatHost``).

Every member is here because a transport uses it today; one that none uses any more
should go.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from ..users import host_of

if TYPE_CHECKING:
    from ..config import ServerConfig
    from ..hub import Device, Hub, Session
    from ..keepalive import Keepalive
    from ..metrics import Metrics
    from ..protocol import ClientFrame, SayLines, Welcome
    from ..proxyproto import ProxyTrust
    from ..routes import RouteRegistry
    from .parking import ParkingLot
    from .settling import Settler


class Releases(Protocol):
    """What keeps the counts a :class:`ConnectionSlot` holds a place in (the server's
    :class:`~trio_chat.limits.ConnectionLimiter`)."""

    def release(self, host: str) -> None: ...


class ConnectionSlot:
    """A connection's place in the connection limits (see :meth:`ChatHost.connection_slot`).

    Handed over, the slot itself is what the connection calls once when it ends: it keeps
    the limiter and the host, rather than a ``functools.partial`` of the limiter's
    ``release`` (with its bound method and argument tuple, three times the memory, for
    every connection's life; bench/README.md, "Memory per connection")."""

    __slots__ = ("_handed_over", "_held", "_limiter", "address", "refusal")

    def __init__(self, refusal: str | None, limiter: Releases, address: str) -> None:
        #: Why the connection may not stay, or ``None``: it holds a place for the host of
        #: ``address`` (the connection's own string, kept: not a host string of its own).
        self.refusal = refusal
        self.address = address
        self._limiter = limiter
        self._held = refusal is None
        self._handed_over = False

    def __enter__(self) -> ConnectionSlot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.give_back()

    def hand_over(self) -> Callable[[], None]:
        """Give the slot to the connection, which calls the result once when it ends."""
        if not self._held or self._handed_over:
            raise RuntimeError("this slot was refused or handed over already")
        self._handed_over = True
        return self

    def give_back(self) -> None:
        """Free the slot now, unless it was refused or handed over."""
        if not self._handed_over:
            self()

    def __call__(self) -> None:
        """Free the place (once; what a connection calls when it ends)."""
        if self._held:
            self._held = False
            self._limiter.release(host_of(self.address))


class ChatHost(Protocol):
    """The server as its transports see it."""

    # ------------------------------------------------------------------ configuration

    @property
    def config(self) -> ServerConfig:
        """Ports, limits and timeouts: the listeners bind from it, connections read their
        limits (line and frame sizes, flood and login budgets, timeouts) from it."""
        ...

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context to wrap accepted sockets in (``None``: plain TCP); also picks
        the ``tcp://``/``tls://`` and ``ws://``/``wss://`` schemes of the addresses."""
        ...

    @property
    def proxy_trust(self) -> ProxyTrust:
        """Whose PROXY header or ``X-Forwarded-For`` is believed about a client's address."""
        ...

    @property
    def ws_port(self) -> int | None:
        """The WebSocket port, for the TCP port's answer to a browser that knocked there."""
        ...

    @property
    def routes(self) -> RouteRegistry:
        """The plugins' HTTP routes, which the web port answers besides the page."""
        ...

    # ---------------------------------------------------------- shared state and helpers

    @property
    def hub(self) -> Hub:
        """Rooms and sessions: a connection attaches its session here once logged in."""
        ...

    @property
    def metrics(self) -> Metrics:
        """Counters a connection bumps (bytes, frames, refusals, live connections)."""
        ...

    @property
    def keepalive(self) -> Keepalive:
        """Pings idle sessions: a connection registers its session and reports traffic."""
        ...

    @property
    def parking(self) -> ParkingLot:
        """Where an idle connection waits without a task until its socket is readable."""
        ...

    @property
    def settler(self) -> Settler:
        """Where a connection's goodbye waits for its last lines to be delivered (see
        :mod:`.settling`)."""
        ...

    @property
    def stopping(self) -> bool:
        """True once the server shuts down: refuse new logins, do not park or resume."""
        ...

    # ----------------------------------------------------------------- the connection's life

    def connection_slot(self, address: str) -> ConnectionSlot:
        """Count a new connection from ``address`` against the connection limits; the slot
        says whether it may stay (``refusal``) and is handed over to a connection that does
        (else given back: it is its own context manager)."""
        ...

    async def admit(
        self, nick: str, password: str | None, register: bool, address: str
    ) -> str | None:
        """Decide whether a ``hello`` may log in (accounts, required logins); returns the
        account key or ``None`` for a guest, raises :class:`~trio_chat.errors.ChatError`."""
        ...

    def admit_nowait(
        self, nick: str, password: str | None, register: bool, address: str
    ) -> str | None:
        """:meth:`admit` at once where its answer is in memory (a guest's nick); raises
        ``trio.WouldBlock`` where :meth:`admit` would wait."""
        ...

    def session_to_join(self, nick: str, account: str | None) -> Session | None:
        """The user of this node a login to ``account`` as ``nick`` adds a connection to,
        or ``None`` for a new session; raises :class:`~trio_chat.errors.ChatError` when the
        user is connected but may not get another connection here (on another node, at
        the per-account limit)."""
        ...

    def welcome_to(self, session: Session, *, ref: str | None, joined: bool = False) -> Welcome:
        """The ``welcome`` of a connection that ``joined`` a user connected elsewhere."""
        ...

    def set_account(self, session: Session, account: str | None) -> None:
        """A session admitted with ``account`` (or as a guest) is logged in to it."""
        ...

    def session_started(self) -> None:
        """A connection's task logged its session in: the shutdown waits for it to end."""
        ...

    def history_at_hand(self, room: str) -> bool:
        """Whether a join of ``room`` needs no :meth:`warm_history` first."""
        ...

    async def warm_history(self, room: str) -> None:
        """Have ``room``'s latest lines at hand, for the history a joiner gets with its
        ``join`` (call :meth:`Hub.join` right after, with no ``await`` between)."""
        ...

    async def after_attach(self, device: Device) -> None:
        """What one more connection of a user gets after its welcome (each room's history)."""
        ...

    async def handle(self, session: Session, frame: ClientFrame) -> None:
        """Act on one frame a logged-in session sent (say, commands, history, quit...)."""
        ...

    @property
    def frames_at_once(self) -> frozenset[type[ClientFrame]]:
        """The kinds of frame :meth:`handle_at_once` takes (quit, ping, pong, typing...)."""
        ...

    def handle_at_once(self, session: Session, frame: ClientFrame) -> None:
        """Act on a frame of a kind in :attr:`frames_at_once`, as :meth:`handle` would,
        with nothing awaited: a reader hands those over without a cancel scope."""
        ...

    def say_run(self, session: Session, lines: SayLines) -> None:
        """Act on plain ``say`` frames (no ``reply_to``) a logged-in session sent one after
        another, as :meth:`handle` would on each in turn."""
        ...

    async def settle(self) -> None:
        """Wait until everything said so far reached the mailboxes (before parking)."""
        ...

    def settled_now(self) -> bool:
        """Whether :meth:`settle` would return at once: nothing said so far is still on
        its way to the mailboxes (a goodbye then waits for nothing)."""
        ...

    def start_connection_task(self, run: Callable[[], Awaitable[None]]) -> None:
        """Serve a parked connection that woke up in a task of its own again."""
        ...

    def session_ended(self) -> None:
        """A connection's task is done with its session, ``bye`` sent."""
        ...
