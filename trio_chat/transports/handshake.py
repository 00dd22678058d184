"""Logging in: asking for a nickname until a valid, free one arrives (``hello``, ``/nick``,
``/login``, ``/register``, or a bare line in text mode), then the welcome and the join; or,
for an account whose user is connected already, the welcome of one more connection.

The whole log-in has one deadline (``handshake_timeout`` from the connection's start),
kept without a cancel scope of its own: a program's ``hello`` has nearly always arrived
by the time its connection is served, and then the log-in waits for nothing, while a scope
entered costs about as much as a scheduling round and leaves its deadline in trio's heap
for as long as the timeout (30 s), one per log-in of a reconnecting crowd. Instead each
wait that happens is bounded by the deadline where it happens: for the peer's input, for
a write the socket does not take at once, for a flood delay, for a password's check.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import trio

from ..errors import ChatError
from ..hub import Device
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
from ..parcels import Item, Raw
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
    error_reply,
)
from .link import Link, say_goodbye

if TYPE_CHECKING:
    from .host import ChatHost

T = TypeVar("T")


def flood_guard(server: ChatHost) -> FloodGuard:
    config = server.config
    return FloodGuard(config.flood_rate, config.flood_burst, config.flood_max_lag)


def frame_cost(item: ClientFrame | RemoteProtocolError | Overhead) -> float:
    """What a frame read costs of the flood budget (every frame costs something)."""
    if isinstance(item, Overhead):
        return item.cost
    return PONG_COST if isinstance(item, PongReply) else FRAME_COST


class HandshakeTimeout(Exception):
    """The log-in's deadline passed while it waited (see the module's docstring)."""


async def handshake(
    server: ChatHost, link: Link, mailbox: Mailbox, deadline: float
) -> Device | None:
    """Ask for a nickname until a valid, free one arrives; ``None`` if the peer left.
    Raises :class:`HandshakeTimeout` once ``deadline`` (``trio.current_time()``) passes
    in one of its waits.

    A login to an account whose user is connected to this node already joins that user
    as one more connection (see :meth:`ChatHost.session_to_join`) instead."""
    if not link.receive_writes:
        return await _log_in(server, link, mailbox, deadline)
    # Its reads answer as they go (IRC registers over several lines, each answered; a
    # WebSocket answers pings): one scope for the whole log-in, however many reads.
    with trio.CancelScope(deadline=deadline):
        return await _log_in(server, link, mailbox, None)
    raise HandshakeTimeout


async def _log_in(
    server: ChatHost, link: Link, mailbox: Mailbox, deadline: float | None
) -> Device | None:
    """:func:`handshake`, each wait within ``deadline`` (``None``: the caller's scope
    keeps it)."""
    if link.plain_text:  # (the others have no prompt)
        await _within(deadline, link.prompt_nick())
    flood = flood_guard(server)
    transport = link.transport
    while True:
        item = await _receive(link, deadline)
        if item is None:
            return None
        if link.transport != transport:  # a late JSON hello after the text prompt
            server.metrics.connections_by[transport].dec()
            transport = link.transport
            server.metrics.connections_by[transport].inc()
            mailbox.follow(link)
        # Garbage before a hello counts too; a wait here is bounded by the handshake timeout.
        decision = flood.check(trio.current_time(), frame_cost(item), link.last_heard)
        verdict = decision.verdict
        if verdict is Verdict.WAIT:
            if deadline is None:
                await trio.sleep(decision.delay)
            else:
                await trio.sleep_until(min(deadline, trio.current_time() + decision.delay))
                if trio.current_time() >= deadline:
                    raise HandshakeTimeout
        elif verdict is Verdict.DISCONNECT:
            await say_goodbye(link, Bye(code=FLOODING, text=flood.disconnect_text))
            return None
        elif verdict is Verdict.REFUSE:
            if not isinstance(item, Overhead):
                ref = getattr(item, "ref", None)
                refused = Error(code=SLOW_DOWN, text=flood.refuse_text, ref=ref)
                await _send(link, [refused], deadline)
            continue
        if isinstance(item, Overhead):
            await trio.lowlevel.checkpoint()  # a flood of them must not hold the loop
            continue
        if isinstance(item, Quit):
            await say_goodbye(link, Bye(code="quit", text=item.reason or "quit"))
            return None
        if isinstance(item, RemoteProtocolError):
            server.metrics.frames_rejected_total.labels(item.code).inc()
            await _send(link, [error_reply(item)], deadline)
            continue
        if isinstance(item, Ping):
            await _send(link, [Pong(token=item.token, ref=item.ref)], deadline)
            continue
        login = _login_from(item, link.plain_text)
        if login is None:
            hello_required = Error(
                code="hello_required",
                text="say who you are first: send a 'hello' frame",
                ref=getattr(item, "ref", None),
            )
            await _send(link, [hello_required], deadline)
            continue
        # #lobby's latest lines, for the history that comes with the join below: read as
        # the server started (nothing to do here), unless that failed (then a read, as
        # bounded as the store's reads are; a password's log-in waits for it within the
        # deadline, as for the rest of its checks).
        if not server.history_at_hand(DEFAULT_ROOM):
            warm = server.warm_history(DEFAULT_ROOM)
            await (warm if login.password is None else _within(deadline, warm))
        if server.stopping:
            await say_goodbye(link, Bye(code="shutdown", text="the server is shutting down"))
            return None
        try:
            try:  # a guest's nick is checked in memory: no coroutine to await
                account = server.admit_nowait(
                    login.nick, login.password, login.register, link.address
                )
            except trio.WouldBlock:
                account = await _admit(server, login, link.address, deadline)
            joining = server.session_to_join(login.nick, account)
            if joining is None:
                session = server.hub.attach(
                    login.nick, mailbox, address=link.address, transport=link.transport
                )
        except ChatError as exc:
            await _send(link, [error_reply(exc, login.ref)], deadline)
            if link.plain_text:
                await _within(deadline, link.prompt_nick())
            continue
        link.batching = login.batch
        if joining is not None:
            welcome = server.welcome_to(joining, ref=login.ref, joined=True)
            device = server.hub.add_device(
                joining, mailbox, address=link.address, transport=link.transport, first=welcome
            )
            device.away_notify = login.away_notify
            device.typing = login.typing
            return device
        server.set_account(session, account)
        session.devices[0].away_notify = login.away_notify
        session.devices[0].typing = login.typing
        # The welcome, the join and #lobby's history reach the client in one write.
        server.hub.send_to(session, server.welcome_to(session, ref=login.ref), in_order=True)
        server.hub.join(session, DEFAULT_ROOM)
        return session.devices[0]


async def _within(deadline: float | None, waiting: Awaitable[T]) -> T:
    """``await waiting``, in a scope with the log-in's deadline (only where the log-in
    may really wait): :class:`HandshakeTimeout` once it passes. (``None``: the caller's
    scope keeps the deadline.)"""
    if deadline is None:
        return await waiting
    with trio.CancelScope(deadline=deadline):
        return await waiting
    raise HandshakeTimeout  # (reached only when the deadline cancelled the wait)


async def _receive(
    link: Link, deadline: float | None
) -> ClientFrame | RemoteProtocolError | Overhead | None:
    """The next frame: taken at once when it is there and taking it writes nothing back
    (a line), else within the deadline."""
    if link.input_waiting() and not link.receive_writes:
        return await link.receive()
    return await _within(deadline, link.receive())


async def _send(link: Link, events: list[Item], deadline: float | None) -> None:
    """A reply before the log-in (an error, a pong): written at once if the socket takes
    it, else within the deadline. Either way a scheduling round, as a trio write is: a
    read of many bad frames must not hold the loop (flood control lets a burst through)."""
    rest = link.write_nowait(events)
    if rest == b"":
        await trio.lowlevel.checkpoint()
    else:
        await _within(deadline, link.send(events if rest is None else [Raw(data=rest)]))


async def _admit(
    server: ChatHost, login: _Login, address: str, deadline: float | None
) -> str | None:
    """:meth:`ChatHost.admit`: the account ``login`` logs in to (``None``: a guest), or
    :class:`~trio_chat.errors.ChatError` for a refusal.

    A guest's nick is checked in memory (or by an auth plugin, or in Redis, each within
    its own time limit): nothing the peer can slow down, so no scope. A password is
    checked in a worker thread (scrypt), within the log-in's deadline."""
    admitted = server.admit(login.nick, login.password, login.register, address)
    if login.password is None:
        return await admitted
    return await _within(deadline, admitted)


@dataclass(frozen=True, slots=True)
class _Login:
    nick: str
    password: str | None = field(default=None, repr=False)
    register: bool = False
    ref: str | None = None
    batch: bool = False
    away_notify: bool = False
    typing: bool = False


def _login_from(item: ClientFrame, plain_text: bool) -> _Login | None:
    """Who a not-yet-logged-in client says it is: ``hello``, ``/nick NAME``,
    ``/login NAME PASSWORD``, ``/register NAME PASSWORD``, or (text mode) a bare line."""
    if isinstance(item, Hello):
        return _Login(
            item.nick,
            item.password,
            item.register,
            item.ref,
            item.batch,
            item.away_notify,
            item.typing,
        )
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
