"""The IRC port: irssi, WeeChat, HexChat, bots and bouncers in the same rooms as everyone.

A thin trio layer around the sans-IO :mod:`trio_chat.irc`: :class:`IrcLink` is one more
:class:`~trio_chat.transports.link.Link`, so an IRC connection goes through the same
admission, log-in (its registration ends in a ``hello``), flood control (fakelag: each
line read costs one frame of the budget, and a line over the rate waits before it is
handled), keepalive (``PING``), parking and goodbye (``ERROR``) as every other.

What the hub fans out to several IRC users is encoded once per fan-out and kept on the
parcel, under one wire format per :data:`~trio_chat.irc.render.Flavour` (which tags the
receiver asked for); what reads differently for one receiver (numerics, its own lines,
its own join with the names) is rendered for it alone.
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import re
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from .._version import __version__
from ..builtins.rooms import MAX_TOPIC_LENGTH
from ..errors import ChatError
from ..framing import EOF, NEED_DATA, LineBuffer, LineTooLong
from ..hub import serving
from ..irc.message import MAX_RECEIVED_LINE_BYTES, IrcParseError, parse_line
from ..irc.render import SHARED_KINDS, Flavour, shared_lines
from ..irc.session import IrcSession, IrcSettings, server_source
from ..irc.view import ChannelInfo, MemberInfo, UserInfo
from ..limits import BLANK_LINE, FRAME_COST, Overhead
from ..names import MAX_NICK_LENGTH, MAX_ROOM_LENGTH
from ..parcels import Bundle, Item, Parcel, Raw
from ..protocol import (
    ClientFrame,
    Joined,
    Message,
    NickChanged,
    Private,
    RemoteProtocolError,
    ServerEvent,
    ServerPing,
)
from ..wire import WireFormat, encoded, sizer
from .connection import Arrival, serve_accepted
from .streams import (
    accept_tls,
    close_now,
    closed_now,
    idle_fd,
    kept_stream,
    receive_on_fd,
    receive_or_end,
    serve_port,
    socket_fd,
    write_all_nowait,
    write_nowait,
)
from .tcp import enable_keepalive

if TYPE_CHECKING:
    from ..hub import Session
    from .host import ChatHost

log = logging.getLogger("trio_chat.irc")

_PING_TOKENS = itertools.count(1)

#: A line read and answered by the session itself (``NAMES``, ``PING``, ``CAP``...):
#: nothing for the hub, one frame of the flood budget.
ANSWERED = Overhead(FRAME_COST)


def _irc_lines(flavour: Flavour, event: ServerEvent) -> bytes:
    if isinstance(event, Raw):
        return event.data
    return shared_lines(event, flavour) or b""


#: One wire format per flavour: the lines every IRC receiver with those tags shares.
IRC_FORMATS: dict[Flavour, WireFormat[bytes]] = {
    flavour: WireFormat(f"irc{flavour}", functools.partial(_irc_lines, flavour))
    for flavour in range(4)
}
#: How the mailbox sizes what it queues for an IRC connection: the plain lines (tags and
#: numerics left out; one function for all, so a parcel is sized once for every IRC
#: receiver). ``IrcLink.send`` reports what it wrote by the same measure.
IRC_MEASURE = sizer(IRC_FORMATS[0])


#: The key of a parcel's marks (see :func:`personal_marks`) in its ``wire`` cache.
_MARKS = "irc-marks"
#: The marks of a payload that is rendered for each receiver alone.
_EACH_ALONE = "*"


def personal_marks(payload: ServerEvent | Bundle) -> str:
    """For whom a fanned-out payload reads differently, worked out once per fan-out (an
    IRC receiver then needs one substring test, not a look at every line of a bundle):
    ``"\nj<nick>\n"`` for a join or nick change of ``nick`` (for that receiver, with the
    names or its new nick), ``"\nm<nick>\n"`` for a line ``nick`` said (left out for it,
    unless it asked for ``echo-message``); ``"*"`` when it holds an event that every
    receiver gets in its own words."""
    inside = payload.events if isinstance(payload, Bundle) else (payload,)
    marks = []
    for event in inside:
        if type(event) not in SHARED_KINDS:
            return _EACH_ALONE
        if isinstance(event, Message | Private):
            marks.append(f"m{event.nick}")
        elif isinstance(event, Joined):
            marks.append(f"j{event.nick}")
        elif isinstance(event, NickChanged):
            marks.append(f"j{event.old}")
    return "\n" + "\n".join(marks) + "\n"


#: Per server: what each IRC user gave in ``USER`` (session id -> username, real name),
#: for ``WHO`` and ``WHOIS``; kept by the user's IRC connection while it lasts. Weak, so a
#: server that is gone takes its entries with it.
_IDENTITIES: weakref.WeakKeyDictionary[object, dict[int, tuple[str, str]]] = (
    weakref.WeakKeyDictionary()
)


def identities(server: ChatHost) -> dict[int, tuple[str, str]]:
    """The IRC identities of ``server``'s users (see :data:`_IDENTITIES`)."""
    return _IDENTITIES.setdefault(server, {})


def username_of(user: str) -> str:
    """A ``USER`` name as it is shown: letters, digits, ``.``, ``_`` and ``-``, 10 at most."""
    return re.sub(r"[^\w.\-]", "", user)[:10] or "user"


class HubView:
    """:class:`~trio_chat.irc.view.IrcView` over the server's hub."""

    def __init__(self, server: ChatHost) -> None:
        self._server = server
        self._identities = identities(server)

    def _channel_info(self, room: object) -> ChannelInfo:
        from ..rooms import Room

        assert isinstance(room, Room)
        known = self._identities
        members = tuple(
            MemberInfo(
                s.nick,
                op=room.is_operator(s),
                muted=s.id in room.muted,
                away=s.away,
                username=known.get(s.id, ("", ""))[0],
                realname=known.get(s.id, ("", ""))[1],
            )
            for s in sorted(room.members.values(), key=lambda s: s.nick.casefold())
        )
        return ChannelInfo(room.name, room.topic, members, tuple(sorted(room.banned)))

    def channel(self, name: str) -> ChannelInfo | None:
        room = self._server.hub.room(name)
        return None if room is None else self._channel_info(room)

    def channels(self) -> list[ChannelInfo]:
        return [self._channel_info(room) for room in self._server.hub.rooms.values()]

    def user(self, nick: str) -> UserInfo | None:
        hub = self._server.hub
        session = hub.find(nick)
        if session is None:
            return None
        rooms = tuple(session.rooms)
        ops_in = tuple(
            name for name in rooms if (r := hub.room(name)) is not None and r.is_operator(session)
        )
        return UserInfo(
            session.nick,
            channels=rooms,
            ops_in=ops_in,
            away=session.away,
            account=session.account is not None,
            admin=session.admin,
            transport=session.transport,
            username=self._identities.get(session.id, ("", ""))[0],
            realname=self._identities.get(session.id, ("", ""))[1],
        )

    def user_count(self) -> int:
        return len(self._server.hub.sessions)

    @property
    def keeps_accounts(self) -> bool:
        return self._server.config.db is not None


def irc_settings(server: ChatHost) -> IrcSettings:
    config = server.config
    return IrcSettings(
        server_name=config.server_name,
        network=config.server_name,
        version=f"trio-chat-{__version__}",
        created=_STARTED,
        motd=(
            f"Welcome to {config.server_name}: the same rooms as the terminal, browser and",
            "JSON clients. Slash-commands of the chat work as raw commands:",
            "/quote HELP lists them, /quote ROLL 2d6 runs /roll 2d6.",
        ),
        nicklen=MAX_NICK_LENGTH,
        channellen=MAX_ROOM_LENGTH,
        topiclen=MAX_TOPIC_LENGTH,
    )


_STARTED = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


class IrcLink:
    """A :class:`~trio_chat.transports.link.Link` speaking IRC over a trio stream."""

    transport = "irc"
    plain_text = False
    #: Registration (``CAP``, ``NICK``, ``PING``...) is answered as it is read.
    receive_writes = True

    def __init__(self, server: ChatHost, stream: trio.abc.Stream, address: str) -> None:
        self.server = server
        self.stream = stream
        self.address = address
        self.session = IrcSession(HubView(server), irc_settings(server))
        self._lines = LineBuffer(MAX_RECEIVED_LINE_BYTES)
        self._frames: collections.deque[ClientFrame] = collections.deque()
        self.last_heard = trio.current_time()
        # The marks naming this receiver (see personal_marks), for the nick they name.
        self._marked_nick: str | None = None
        #: The session id and identity this connection registered (see identities).
        self._identity: tuple[int, tuple[str, str]] | None = None
        self._own_mark = self._said_mark = ""
        self.measure = IRC_MEASURE
        self.park_fd = socket_fd(stream)
        self.write_now: Callable[[Parcel], bytes] | None = (
            None if self.park_fd is None else self._write_now
        )
        self.batching = False
        self.keepalive_ping: Callable[[], ServerEvent] | None = lambda: ServerPing(
            token=f"{server_source(server.config.server_name)}-{next(_PING_TOKENS)}"
        )

    # ------------------------------------------------------------------ reading

    async def receive(self) -> ClientFrame | RemoteProtocolError | Overhead | None:
        while True:
            if self.session.closing:
                return None
            if self._frames:
                return self._frames.popleft()
            event = self._lines.next_event()
            if event is NEED_DATA:
                await self.fill()
                continue
            if event is EOF:
                return None
            if isinstance(event, LineTooLong):
                await self._reply(
                    self.session.parse_error(IrcParseError("too_long", "line too long"))
                )
                return ANSWERED
            assert isinstance(event, bytes)
            if not event.strip():
                return BLANK_LINE
            return await self._handle_line(event)

    async def _handle_line(self, line: bytes) -> ClientFrame | Overhead:
        session = self.session
        device = serving.get()
        if device is not None and not session.registered:
            # Logged in (the welcome may still be on its way out): commands are taken.
            session.registered = True
            session.nick = device.session.nick
        try:
            message = parse_line(line)
        except IrcParseError as exc:
            await self._reply(session.parse_error(exc))
            return ANSWERED
        try:
            step = session.receive(message)
        except ValueError:
            # A line the session could not word an answer to: a bug of ours, logged; the
            # client is told in one line and the connection goes on.
            log.exception("IRC line not handled from %s: %r", self.address, line[:80])
            await self._reply(session.numeric("400", message.command, "Could not process"))
            return ANSWERED
        if device is not None and device.away_notify != session.away_notify:
            device.away_notify = session.away_notify  # CAP REQ after registration
        replies = list(step.replies)
        if step.check_account is not None:
            account, password = step.check_account
            error: str | None = None
            try:
                await self.server.admit(account, password, False, self.address)
            except ChatError as exc:
                error = exc.text
            checked = session.sasl_result(account, password, error)
            replies += checked.replies
            step.frames += checked.frames
        if replies:
            await self._reply(b"".join(replies), urgent=message.command == "PING")
        if step.close is not None:
            self._lines.feed(b"")  # nothing more is read: the end comes next
            return ANSWERED
        if not step.frames:
            return ANSWERED
        self._frames.extend(step.frames[1:])
        return step.frames[0]

    async def _reply(self, data: bytes, *, urgent: bool = False) -> None:
        """Lines for this client now: written at once while it registers (nothing else
        writes then), else queued behind what it was sent already, in order.

        ``urgent`` (a ``PONG``) goes straight to this connection's mailbox instead: behind
        what the mailbox holds, but not behind the room events still on their way to the
        mailboxes. A reply through the hub waits its turn among those, and so splits the
        runs of lines the hub bundles for every receiver: an IRC client pinging every few
        lines (a bouncer, a bot pacing itself) cost the whole room's fan-out a write per
        receiver per ping. A ``PONG`` says only that the server is there."""
        device = serving.get()
        if device is None:
            await self.stream.send_all(data)
            return
        if urgent:
            device.mailbox.offer(Parcel(Raw(data=data)))  # a full mailbox: the hub drops it
            return
        session: Session = device.session
        self.server.hub.send_to(session, Raw(data=data))

    async def fill(self) -> None:
        fd = self.park_fd
        self.feed(await (receive_or_end(self.stream) if fd is None else receive_on_fd(fd)))

    def feed(self, data: bytes | bytearray) -> None:
        if data:
            self.last_heard = trio.current_time()
        self._lines.feed(data)

    def heard(self) -> float:
        """:attr:`last_heard`, for the keepalive (a bound method: a closure per connection
        costs three times its memory)."""
        return self.last_heard

    def input_waiting(self) -> bool:
        return bool(self._frames) or self._lines.has_line()

    # ------------------------------------------------------------------ writing

    def _lines_of(self, item: Item) -> bytes:
        """What ``item`` is on this connection: the shared encoding of its flavour (made
        once per fan-out), or rendered for this receiver alone."""
        session = self.session
        if isinstance(item, Parcel):
            payload = item.event
            if isinstance(payload, Raw):
                return payload.data
            marks = item.wire.get(_MARKS)
            if not isinstance(marks, str):
                marks = item.wire[_MARKS] = personal_marks(payload)
            if marks != _EACH_ALONE:
                nick = session.nick
                if nick != self._marked_nick:
                    self._marked_nick = nick
                    self._own_mark, self._said_mark = f"\nj{nick}\n", f"\nm{nick}\n"
                # With away-notify, a join is followed by the joiner's AWAY: its own words.
                if (
                    self._own_mark not in marks
                    and (self._said_mark not in marks or "echo-message" in session.caps)
                    and not ("\nj" in marks and session.away_notify)
                ):
                    return encoded(item, IRC_FORMATS[session.flavour])
        else:
            payload = item
            if isinstance(payload, Raw):
                return payload.data
        inside = payload.events if isinstance(payload, Bundle) else (payload,)
        try:
            data = b"".join([session.render(e) for e in inside])
        except ValueError:  # a bug of ours: logged, and the connection goes on
            log.exception("IRC lines not made for %s: %r", self.address, payload)
            return b""
        if self._identity is None and session.registered:
            self._remember_identity()
        return data

    def _remember_identity(self) -> None:
        """Once registered (its welcome rendered): what it gave in ``USER``, for the others'
        ``WHO`` and ``WHOIS``."""
        user = self.server.hub.find(self.session.nick or "")
        if user is None:
            return
        entry = (username_of(self.session.user or ""), self.session.realname)
        identities(self.server)[user.id] = entry
        self._identity = (user.id, entry)

    def _forget_identity(self) -> None:
        if self._identity is not None:
            key, entry = self._identity
            known = identities(self.server)
            if known.get(key) is entry:  # not another connection's since
                del known[key]
            self._identity = None

    def _write_now(self, parcel: Parcel) -> bytes:
        """The mailbox's direct write (see :class:`~trio_chat.mailbox.DirectWrite`): the
        parcel's lines to the socket without waiting; what it did not take comes back."""
        assert self.park_fd is not None
        data = self._lines_of(parcel)
        return write_nowait(self.park_fd, data) if data else b""

    async def send(self, events: list[Item]) -> int:
        size = 0
        out: list[bytes] = []
        for item in events:
            size += IRC_MEASURE(item)
            out.append(self._lines_of(item))
        data = b"".join(out)
        if data:
            await self.stream.send_all(data)
        return size

    def write_nowait(self, events: list[Item]) -> bytes | None:
        fd = idle_fd(self.stream)
        if fd is None:
            return None
        return write_all_nowait(fd, b"".join([self._lines_of(e) for e in events]))

    async def prompt_nick(self) -> None:
        pass  # an IRC client registers of its own accord; a refusal is a numeric

    async def aclose(self) -> None:
        self._forget_identity()
        await self.stream.aclose()

    def close_nowait(self) -> bool:
        if not closed_now(self.stream):
            return False
        self._forget_identity()
        return True

    def abort(self) -> None:
        self._forget_identity()
        close_now(self.stream)


def refused_line(reason: str) -> bytes:
    return f"ERROR :Closing link: {reason}\r\n".encode()


async def open_irc_link(
    server: ChatHost, stream: trio.SocketStream, arrival: Arrival
) -> IrcLink | None:
    """TLS (when the server has a certificate), then IRC. A trusted proxy's connection is
    taken as coming from the proxy: the IRC port reads no PROXY header."""
    if arrival.proxied and not await arrival.admit(arrival.peer):
        return None
    chat_stream: trio.abc.Stream = stream
    if server.ssl_context is not None:
        tls = None
        with trio.move_on_after(server.config.handshake_timeout):
            tls = await accept_tls(stream, server.ssl_context)
        if tls is None:
            return None
        chat_stream = tls
    return IrcLink(server, kept_stream(chat_stream), arrival.address)


async def handle_irc(server: ChatHost, stream: trio.SocketStream) -> None:
    """Serve one IRC connection (see :func:`serve_accepted`)."""
    enable_keepalive(stream)
    await serve_accepted(server, stream, open_irc_link, refused_line)


async def serve_irc_chat(
    server: ChatHost,
    handler_nursery: trio.Nursery,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept IRC connections forever (``irc://``, or ``ircs://`` with TLS), each served
    in ``handler_nursery``."""
    port = server.config.irc_port
    assert port is not None, "the IRC port is off"
    scheme = "irc" if server.ssl_context is None else "ircs"
    await serve_port(
        server.config.host,
        port,
        scheme,
        functools.partial(handle_irc, server),
        handler_nursery,
        task_status=task_status,
    )
