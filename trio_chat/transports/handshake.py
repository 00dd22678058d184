"""Logging in: asking for a nickname until a valid, free one arrives (``hello``, ``/nick``,
``/login``, ``/register``, or a bare line in text mode), then the welcome and the join; or,
for an account whose user is connected already, the welcome of one more connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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


def flood_guard(server: ChatHost) -> FloodGuard:
    config = server.config
    return FloodGuard(config.flood_rate, config.flood_burst, config.flood_max_lag)


def frame_cost(item: ClientFrame | RemoteProtocolError | Overhead) -> float:
    """What a frame read costs of the flood budget (every frame costs something)."""
    if isinstance(item, Overhead):
        return item.cost
    return PONG_COST if isinstance(item, PongReply) else FRAME_COST


async def handshake(server: ChatHost, link: Link, mailbox: Mailbox) -> Device | None:
    """Ask for a nickname until a valid, free one arrives; ``None`` if the peer left.

    A login to an account whose user is connected to this node already joins that user
    as one more connection (see :meth:`ChatHost.session_to_join`) instead."""
    await link.prompt_nick()
    flood = flood_guard(server)
    transport = link.transport
    while True:
        item = await link.receive()
        if item is None:
            return None
        if link.transport != transport:  # a late JSON hello after the text prompt
            server.metrics.connections.labels(transport).dec()
            transport = link.transport
            server.metrics.connections.labels(transport).inc()
            mailbox.follow(link)
        # Garbage before a hello counts too; a wait here is bounded by the handshake timeout.
        decision = flood.check(trio.current_time(), frame_cost(item), link.last_heard)
        verdict = decision.verdict
        if verdict is Verdict.WAIT:
            await trio.sleep(decision.delay)
        elif verdict is Verdict.DISCONNECT:
            await say_goodbye(link, Bye(code=FLOODING, text=flood.disconnect_text))
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
            await say_goodbye(link, Bye(code="quit", text=item.reason or "quit"))
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
        # #lobby's latest lines, for the history that comes with the join below: read as
        # the server started (nothing to do here), unless that failed.
        await server.warm_history(DEFAULT_ROOM)
        if server.stopping:
            await say_goodbye(link, Bye(code="shutdown", text="the server is shutting down"))
            return None
        try:
            account = await server.admit(login.nick, login.password, login.register, link.address)
            joining = server.session_to_join(login.nick, account)
            if joining is None:
                session = server.hub.attach(
                    login.nick, mailbox, address=link.address, transport=link.transport
                )
        except ChatError as exc:
            await link.send([error_reply(exc, login.ref)])
            await link.prompt_nick()
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
