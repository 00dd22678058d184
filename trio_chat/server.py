"""The chat server: one hub, one plugin manager, and the listeners in one nursery."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import trio

from .always_on import AlwaysOn
from .api import ServerAPI
from .auth_backends import AuthBackends
from .bots import Bot, Bots
from .broker.redis import RedisBroker
from .commands import CommandContext, CommandRegistry, run_command
from .config import ServerConfig
from .errors import ChatError, LoginRefused
from .history import HistoryService
from .hub import Hub, NotInRoom, Session, host_of
from .jobs import Jobs
from .keepalive import Keepalive
from .limits import ConnectionLimiter
from .logins import AccountBook, Logins
from .message_changes import MessageChanges
from .metrics import Metrics
from .names import DEFAULT_ROOM, normalize_nick
from .plugin_storage import MemoryPluginData
from .plugins import (
    ENTRY_POINT_GROUP,
    FILTER_FAILED,
    ChatPluginManager,
    calling_plugin,
    collect_plugins,
    new_plugin_manager,
    run_soon,
)
from .posted import PostedFeed
from .protocol import (
    ClientFrame,
    Command,
    Delete,
    Edit,
    Error,
    Hello,
    HistoryRequest,
    MarkRead,
    Message,
    MessageKind,
    Ping,
    Pong,
    PongReply,
    Private,
    Quit,
    React,
    Say,
    SayLines,
    SearchRequest,
    TypingNotice,
    error_reply,
)
from .proxyproto import ProxyTrust
from .publisher import Publisher
from .read_markers import ReadMarkers
from .rooms import users_reason
from .routes import RouteRegistry
from .store import Store, StoreError
from .transports.host import ConnectionSlot
from .transports.link import GOODBYE_TIMEOUT
from .transports.parking import ParkingLot
from .transports.scrape import serve_metrics
from .transports.settling import Settler
from .transports.streams import certificate_not_after, server_ssl_context
from .typing_notices import TypingNotices

if TYPE_CHECKING:
    from .transports.host import ChatHost

log = logging.getLogger("trio_chat.server")


#: A certificate expiring within this many days is warned about at start.
CERT_EXPIRY_WARNING_DAYS = 14


class ServerSetupError(Exception):
    """The server cannot start as configured; the message is one line for the operator."""


def _nick_registered(nick: str) -> LoginRefused:
    """What a guest (or a registration) taking a registered ``nick`` is told."""
    return LoginRefused(
        "nick_registered", f"the nickname {nick} is registered; log in with its password"
    )


class ChatServer(ServerAPI):
    """Owns the hub and the plugins, and turns client frames into hub calls.

    Transports (TCP, WebSocket, later IRC) call :meth:`handle` with frames they decoded;
    nothing here knows which transport a session came through.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        plugins: Iterable[object] = (),
        builtins: bool = True,
        broker_slot: str | None = None,
    ) -> None:
        """``broker_slot``: for a ``--workers`` worker, the part of its name in the broker's
        log that the worker replacing it will share (see :func:`trio_chat.workers.worker_slot`)."""
        self.config = config or ServerConfig()
        self.broker_slot = broker_slot
        self.ssl_context = self._load_tls()
        #: Counters for Prometheus; ``self.metrics.render()`` answers a scrape.
        self.metrics = Metrics()
        self._note_certificate_expiry()
        self.hub = Hub(metrics=self.metrics)
        self.keepalive = Keepalive(
            self.hub.send_to,
            idle=self.config.idle_timeout,
            answer_within=self.config.ping_timeout,
        )
        self.hub.quiet_room_size = self.config.quiet_room_size
        self.commands = CommandRegistry(calling_plugin)
        self.bots = Bots(on_private=self._bot_messaged)
        self.pm: ChatPluginManager = new_plugin_manager()
        self.pm.timeout = self.config.plugin_timeout
        self.auth = AuthBackends(self.pm.hook, self.config.plugin_timeout)
        # Historic: every plugin registered from now on (built-ins, entry points, plugins
        # added while serving) gets this call when it is registered, and only then.
        self.pm.hook.register_commands.call_historic(kwargs={"register": self.commands.register})
        from .transports.websocket import WEB_FILES

        #: The plugins' HTTP routes on the web port (the page's own files are not theirs).
        self.routes = RouteRegistry(calling_plugin, reserved=[p.decode() for p in WEB_FILES])
        self.pm.hook.register_routes.call_historic(
            kwargs={"server": self, "register": self.routes.register}
        )
        self.addresses: list[str] = []
        #: Plugins' background work; runs while serving (see the ``start_jobs`` hook).
        self.jobs = Jobs(timeout=self.config.plugin_timeout, owner=calling_plugin)
        self._nursery: trio.Nursery | None = None
        #: Where idle connections wait without tasks (see transports.parking).
        self.parking = ParkingLot()
        #: Where a goodbye waits for the connection's last lines (see transports.settling).
        self.settler = Settler(lambda: self.settle(), GOODBYE_TIMEOUT)
        #: History and accounts: set while serving with a database, else None.
        self.history_service: HistoryService | None = None
        self.logins: Logins | None = None
        self.publisher: Publisher | None = None
        #: Plugins' storage without a database: one dict for the server object's life.
        self._memory_plugin_data = MemoryPluginData()
        self.plugin_data = self._memory_plugin_data if self.config.db is None else None
        #: The Redis broker while serving with ``--broker`` (else events stay in-process).
        self.broker: RedisBroker | None = None
        self._live_sessions = 0
        self._sessions_ended = trio.Event()
        self.connections = ConnectionLimiter(
            self.config.max_connections_per_host,
            self.config.max_connections,
            exempt_loopback=not self.config.limit_loopback,
        )
        #: The ``trusted_proxies``: whose word is taken for a connection's real address.
        self.proxy_trust = self._load_proxy_trust()
        self._stopping = False
        self._shutdown_requested = trio.Event()
        self.hub.on_join.append(self._joined)
        self.hub.on_part.append(self._parted)
        #: The lines said here, on their way to the ``message_posted`` listeners.
        self.posted = PostedFeed(
            self._call_message_posted, lambda: bool(self.pm.hook.message_posted.get_hookimpls())
        )
        self.hub.on_said.append(self.posted.heard_all)
        self.message_changes = MessageChanges(self.hub)
        #: Presence: typing notices, read markers, and (``always_on``) users kept in their
        #: rooms with no connection.
        self.typing_notices = TypingNotices(self.hub)
        self.read_markers = ReadMarkers(self.hub)
        self.always_on = AlwaysOn(self.hub) if self.config.always_on else None
        #: Private messages to bots, on their way to the ``bot_messaged`` listeners.
        self.bot_messages = PostedFeed(
            self._call_bot_messaged,
            lambda: bool(self.pm.hook.bot_messaged.get_hookimpls()),
            what="bot_messaged",
        )
        for plugin, name in collect_plugins(self.config.plugins, builtins=builtins):
            self.add_plugin(plugin, name)
        if self.config.entry_points:
            self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        for plugin in plugins:
            self.add_plugin(plugin)

    def _load_proxy_trust(self) -> ProxyTrust:
        try:
            return ProxyTrust(self.config.trusted_proxies)
        except ValueError as exc:
            raise ServerSetupError(f"trusted_proxies: {exc}") from None

    def _load_tls(self) -> ssl.SSLContext | None:
        cert, key = self.config.tls_cert, self.config.tls_key
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise ServerSetupError("TLS needs both a certificate (tls_cert) and a key (tls_key)")
        for path in (cert, key):
            if not os.path.isfile(path):
                raise ServerSetupError(f"TLS file not found: {path}")
        try:
            return server_ssl_context(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ServerSetupError(
                f"cannot load TLS certificate {cert} / key {key}: {exc}"
            ) from None

    def _note_certificate_expiry(self) -> None:
        """Say in the log (and in /metrics) when the certificate has expired or soon will:
        clients refuse an expired one, and the server would otherwise start without a word."""
        cert = self.config.tls_cert
        if self.ssl_context is None or cert is None:
            return
        not_after = certificate_not_after(cert)
        if not_after is None:
            return
        self.metrics.tls_cert_not_after.set(not_after)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(not_after))
        left = not_after - time.time()
        if left <= 0:
            log.warning(
                "the TLS certificate %s expired on %s: clients will refuse to connect", cert, when
            )
        elif left < CERT_EXPIRY_WARNING_DAYS * 86400:
            log.warning(
                "the TLS certificate %s expires on %s, in %d days",
                cert,
                when,
                math.ceil(left / 86400),
            )

    # ------------------------------------------------------------------------- plugins

    def add_plugin(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin (module or object with hookimpls); works while serving too."""
        registered = self.pm.register(plugin, name or self._default_name(plugin))
        if registered is None:
            raise ValueError(f"plugin {name or plugin!r} is already registered")
        if self.jobs.running:
            # Serving already: this plugin's start_jobs now (the others had theirs).
            others = [p for p in self.pm.get_plugins() if p is not plugin]
            self._start_jobs(self.pm.subset_hook_caller("start_jobs", remove_plugins=others))
        return registered

    def _start_jobs(self, hook: Callable[..., Any]) -> None:
        try:
            results = hook(server=self, jobs=self.jobs)
        except Exception:
            log.exception("a wrapper of start_jobs raised")
            return
        run_soon(results, self._nursery, "start_jobs")

    def _default_name(self, plugin: object) -> str:
        """A readable name for logs: the module's name, or the class's dotted path."""
        if isinstance(plugin, ModuleType):
            base = plugin.__name__
        else:
            cls = plugin if isinstance(plugin, type) else type(plugin)
            base = f"{cls.__module__}.{cls.__qualname__}"
        name, n = base, 1
        while self.pm.get_plugin(name) is not None:
            n += 1
            name = f"{base}#{n}"
        return name

    def connection_slot(self, address: str) -> ConnectionSlot:
        """Count a new connection from ``address`` (the client's ``host:port``: behind a
        trusted proxy, the one the proxy reported). The slot's ``refusal`` is ``None`` when
        it may stay, or the reason it may not (too many from that host, server full); it
        is given back when its ``with`` block ends, unless the connection took it with it
        (:meth:`ConnectionSlot.hand_over`)."""
        refusal = self.connections.acquire(host_of(address))
        return ConnectionSlot(refusal, self.connections, address)

    def remove_plugin(self, name: str) -> None:
        self.jobs.cancel_plugin(name)
        self.pm.unregister(name=name)
        self.commands.remove_plugin(name)
        self.routes.remove_plugin(name)
        for bot in self.bots.of_plugin(name):
            bot.session.close("bot_removed", "its plugin was removed")

    def call_hook(self, hook_name: str, **kwargs: Any) -> None:
        """Call an event hook through pluggy's caller; run async implementations in the
        background (bounded by the plugin timeout).

        Each implementation's errors are contained by the plugin manager (see
        :class:`~trio_chat.plugins.ChatPluginManager`); what still escapes comes from a
        ``wrapper=True`` implementation, and is logged here: an event hook never stops the
        server or the connection that caused it.
        """
        caller = getattr(self.pm.hook, hook_name)
        if not caller.get_hookimpls():
            # Nobody listens (as a rule, for user_joined and user_left): 0.1 us instead
            # of pluggy's 2.4 for nothing, twice a login and twice a logout.
            return
        try:
            results = caller(**kwargs)
        except Exception:
            log.exception("a wrapper of %s raised", hook_name)
            return
        run_soon(results, self._nursery, hook_name)

    def _joined(self, session: Session, room: str) -> None:
        self.call_hook("user_joined", server=self, session=session, room=room)

    def _parted(self, session: Session, room: str, reason: str | None) -> None:
        self.call_hook("user_left", server=self, session=session, room=room, reason=reason)

    def _call_message_posted(self, message: Message, session: Session) -> object:
        """The ``message_posted`` listeners' results (the feed runs the awaitable ones)."""
        try:
            return self.pm.hook.message_posted(server=self, message=message, session=session)
        except (Exception, SystemExit):  # from a wrapper=True listener: logged, no more
            log.exception("a wrapper of message_posted raised")
            return []

    def _bot_messaged(self, bot: Bot, message: Private) -> None:
        """Someone sent ``bot`` a private message (told by the bot's mailbox, as it is
        delivered): queue it for the ``bot_messaged`` listeners."""
        sender = self.hub.find(message.nick)
        if sender is not None:
            self.bot_messages.heard(bot, message, sender)

    def _call_bot_messaged(self, bot: Bot, message: Private, session: Session) -> object:
        try:
            return self.pm.hook.bot_messaged(server=self, bot=bot, message=message, session=session)
        except (Exception, SystemExit):  # from a wrapper=True listener: logged, no more
            log.exception("a wrapper of bot_messaged raised")
            return []

    # ------------------------------------------------------------------------ messages

    def post(self, session: Session, room: str, text: str, kind: MessageKind = "say") -> None:
        """Say ``text`` in ``room`` as ``session``, after every message filter agreed."""
        text = self.filtered_text(session, room, text)
        if not text:
            return
        self.hub.say(session, room, text, kind)

    def filtered_text(self, session: Session, room: str, text: str) -> str:
        """``text`` as the message filters leave it (``""``: dropped)."""
        hook = self.pm.hook.filter_message
        # No filters (the usual case): skip pluggy's call, ~2 us on the path of every line.
        texts = hook(session=session, room=room, text=text) if hook.get_hookimpls() else None
        if texts:
            # Each filter saw the text the one before returned: the last is the final one
            # (a wrapper may have appended its own).
            text = texts[-1]
            if not isinstance(text, str):
                log.error("a wrapper of filter_message gave %s, not text", type(text).__name__)
                raise ChatError("plugin_error", FILTER_FAILED)
        return text

    def say_run(self, session: Session, lines: SayLines) -> None:
        """Plain ``say`` frames of one read (in order, none with ``reply_to``), as
        :meth:`handle` takes each in turn: in one pass through the hub
        (:meth:`Hub.say_lines`) when nothing could tell the difference, that is, no
        message filter (a plugin that sees each line gets them one at a time), every line
        to the same room, none blank, none the hub would refuse. Else each is said on its
        own, and a refused one gets its own error."""
        self.metrics.messages_in_total.inc(len(lines))
        rooms, texts = lines.rooms, lines.texts
        room = rooms[0]
        if (
            not self.pm.hook.filter_message.get_hookimpls()
            and rooms.count(room) == len(rooms)
            and all(map(str.strip, texts))
            and self.hub.say_lines(session, room or session.room, texts)
        ):
            return
        for frame in lines.frames():
            self._say(session, frame)

    def _say(self, session: Session, frame: Say) -> None:
        """A ``say`` frame that answers nothing (or a blank one): said, or its error."""
        if not frame.text.strip():
            error = Error(code="bad_field", text="a message needs some text", ref=frame.ref)
            self.hub.send_to(session, error)
            return
        room = frame.room or session.room
        try:
            self.post(session, room, frame.text)
        except ChatError as exc:
            self.hub.send_to(session, error_reply(exc, frame.ref))
        except Exception:
            log.exception("message filter raised")
            self.hub.send_to(
                session,
                Error(code="plugin_error", text="message refused (internal error)", ref=frame.ref),
            )

    #: The kinds of frame :meth:`handle_at_once` acts on: what they ask for is done at
    #: once, nothing awaited (a reader hands them over without a cancel scope, as it does
    #: plain says: see :meth:`~trio_chat.transports.resident.Resident._say_arrived`).
    frames_at_once: frozenset[type[ClientFrame]] = frozenset(
        {Quit, Ping, PongReply, TypingNotice, Hello}
    )

    def handle_at_once(self, session: Session, frame: ClientFrame) -> None:
        """Act on a frame of a kind in :attr:`frames_at_once` (as :meth:`handle` does, which
        hands them here). Never raises for bad input."""
        self.metrics.messages_in_total.inc()
        if isinstance(frame, Quit):
            reason = users_reason(frame.reason, "quit") if frame.reason else "quit"
            self.end_connection(session, "quit", reason)
        elif isinstance(frame, Ping):
            self.hub.send_to(session, Pong(token=frame.token, ref=frame.ref))
        elif isinstance(frame, TypingNotice):
            try:
                self.typing_notices.typing(session, frame.room or session.room, frame.active)
            except ChatError as exc:
                self.hub.send_to(session, error_reply(exc, frame.ref))
        elif isinstance(frame, Hello):
            self.hub.send_to(
                session,
                Error(
                    code="already_logged_in",
                    text="you are already logged in; use /nick",
                    ref=frame.ref,
                ),
            )
        # (PongReply: the keepalive already counted the bytes it arrived in.)

    async def handle(self, session: Session, frame: ClientFrame) -> None:
        """Act on one frame from a logged-in session. Never raises for bad input."""
        if type(frame) in self.frames_at_once:
            self.handle_at_once(session, frame)
            return
        self.metrics.messages_in_total.inc()
        if isinstance(frame, Say):
            if frame.reply_to is not None and frame.text.strip():
                await self.change_message(session, frame)
            else:
                self._say(session, frame)
        elif isinstance(frame, Command):
            spec = self.commands.get(frame.name)
            if spec is None:
                self.hub.send_to(
                    session,
                    Error(
                        code="unknown_command",
                        text=f"unknown command /{frame.name}; /help lists the commands",
                        ref=frame.ref,
                    ),
                )
                return
            ctx = CommandContext(
                self, session, spec, frame.args, frame.room or session.room, frame.ref
            )
            await run_command(ctx)
        elif isinstance(frame, HistoryRequest):
            await self.answer_history(session, frame)
        elif isinstance(frame, Edit | Delete | React):
            await self.change_message(session, frame)
        elif isinstance(frame, SearchRequest):
            await self.answer_search(session, frame)
        elif isinstance(frame, MarkRead):
            try:
                await self.mark_read(session, frame.room or session.room, frame.id)
            except ChatError as exc:
                self.hub.send_to(session, error_reply(exc, frame.ref))

    async def change_message(self, session: Session, frame: Say | Edit | Delete | React) -> None:
        """A reply (``say`` with ``reply_to``), ``edit``, ``delete`` or ``react`` frame;
        refused with an error to the sender alone (see :mod:`trio_chat.message_changes`)."""
        room = frame.room or session.room
        try:
            if isinstance(frame, Say):
                assert frame.reply_to is not None
                await self.reply(session, room, frame.reply_to, frame.text)
            elif isinstance(frame, Edit):
                if not frame.text.strip():
                    raise ChatError("bad_field", "an edit needs some text")
                await self.edit_message(session, room, frame.id, frame.text)
            elif isinstance(frame, Delete):
                await self.delete_message(session, room, frame.id)
            else:
                await self.react(session, room, frame.id, frame.emoji, on=frame.on)
        except ChatError as exc:  # (a store that failed too: store_error)
            self.hub.send_to(session, error_reply(exc, frame.ref))

    # ------------------------------------------------------------- history and accounts

    async def answer_history(self, session: Session, request: HistoryRequest) -> None:
        """Answer a ``history`` frame with one page, or an error saying why not."""
        try:
            service = self._history_for("history")
            limit = request.limit or 50
            if request.with_nick is not None:
                await service.send_private_page(
                    session,
                    request.with_nick,
                    before=request.before,
                    after=request.after,
                    limit=limit,
                    ref=request.ref,
                )
                return
            room = self.hub.room(request.room or session.room)
            if room is None or session.id not in room.members:
                raise NotInRoom(f"you are not in {request.room or session.room}")
            if request.changed_after is not None:
                await service.send_changed_page(
                    session, room.name, request.changed_after, limit=limit, ref=request.ref
                )
                return
            await service.send_room_page(
                session,
                room.name,
                before=request.before,
                after=request.after,
                limit=limit,
                ref=request.ref,
            )
        except ChatError as exc:
            self.hub.send_to(session, error_reply(exc, request.ref))
        except StoreError as exc:
            log.error("history for %s failed: %s", session.nick, exc)
            self.hub.send_to(
                session, Error(code="store_error", text="history is unavailable", ref=request.ref)
            )

    async def answer_search(self, session: Session, request: SearchRequest) -> None:
        """Answer a ``search`` frame with one page of matches, or an error saying why not."""
        try:
            reply = await self.search(
                session,
                request.query,
                room=request.room,
                before=request.before,
                limit=request.limit,
                ref=request.ref,
            )
        except ChatError as exc:
            self.hub.send_to(session, error_reply(exc, request.ref))
            return
        self.hub.send_to(session, reply)

    async def settle(self) -> None:
        """Wait until everything said so far has been delivered to the mailboxes."""
        if self.publisher is not None:
            await self.publisher.settle()

    def settled_now(self) -> bool:
        """Whether :meth:`settle` would return at once (nothing in flight)."""
        return self.publisher is None or self.publisher.settled_now()

    async def admit(
        self, nick: str, password: str | None, register: bool, address: str
    ) -> str | None:
        """Decide whether a connection may log in as ``nick``; return its account key
        (``None`` for a guest). Raises :class:`~trio_chat.errors.ChatError` (a bad nick, a
        refused login). An account's read markers are at hand for its welcome after."""
        account = await self._admit(nick, password, register, address)
        if account is not None:
            await self.read_markers.load(account)
        return account

    def history_at_hand(self, room: str) -> bool:
        """Whether a join of ``room`` needs no :meth:`warm_history` first (its latest
        lines are in memory, or there is no database): a log-in asks before it awaits."""
        return self.history_service is None or self.history_service.at_hand(room)

    def admit_nowait(
        self, nick: str, password: str | None, register: bool, address: str
    ) -> str | None:
        """:meth:`admit` answered at once, where the answer is in memory: a guest's nick
        on a server whose accounts are its own store's (or none) and no auth backend
        says which nicks are its users. Raises ``trio.WouldBlock`` where :meth:`admit`
        would wait (a password, a backend, accounts in Redis), and what :meth:`admit`
        raises for a refusal.

        A storm of guests logging back in asks it of every one: :meth:`admit`'s five
        coroutines (the auth backends, the accounts, the book) for an answer that is a
        set's lookup cost as much as the lookup itself."""
        if password is not None or self.auth.has_accounts():
            raise trio.WouldBlock
        self._check_guest(normalize_nick(nick))
        return None

    def _check_guest(self, nick: str) -> None:
        """Raise :class:`LoginRefused` if the guest ``nick`` (normalized) may not log in;
        ``trio.WouldBlock`` if the accounts cannot say so at once."""
        if self.logins is None:
            return
        if self.config.require_accounts:
            raise LoginRefused(
                "account_required",
                "this server is for registered users: log in with your password "
                "(or register an account)",
            )
        if self.logins.is_registered_nowait(nick):
            raise _nick_registered(nick)

    async def _admit(
        self, nick: str, password: str | None, register: bool, address: str
    ) -> str | None:
        nick = normalize_nick(nick)
        if password is not None and not register:
            account = await self.backend_login(nick, password, address)
            if account is not None:
                return account
        elif await self.auth.is_account(self, nick):  # a guest, or a registration
            raise _nick_registered(nick)
        if self.logins is None:
            if password is not None:
                raise LoginRefused(
                    "no_store",
                    f"this server keeps no accounts ({self.no_accounts_because}); log in without",
                )
            return None
        if password is not None:
            if register:
                return await self.logins.register(nick, password)
            return await self.logins.check_login(nick, password, address)
        try:
            self._check_guest(nick)
            return None
        except trio.WouldBlock:  # (the accounts are in Redis)
            pass
        if await self.logins.is_registered(nick):
            raise _nick_registered(nick)
        return None

    # ------------------------------------------------------------------------- serving

    async def serve(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on the configured ports until :meth:`shutdown` (or cancellation).

        ``task_status.started`` gets the bound addresses (``tcp://host:port``,
        ``ws://host:port``), so ``await nursery.start(server.serve)`` returns them.
        """
        self._shutdown_requested = trio.Event()
        async with contextlib.AsyncExitStack() as stack:
            store: Store | None = None
            if self.config.db is not None:
                store = await stack.enter_async_context(
                    Store.open(
                        self.config.db,
                        synchronous="full" if self.config.db_sync_full else "normal",
                    )
                )
                self.history_service = HistoryService(
                    store, self.hub, history_on_join=self.config.history_on_join
                )
                self.logins = Logins(await self._account_book(stack, store))
                self.message_changes.store = store
                self.plugin_data = store
                self.read_markers.store = store
                self.metrics.watch_store(lambda: store.stats)
            if self.config.broker is not None:  # the markers every node shares
                from .broker.markers import open_shared_markers

                self.read_markers.store = await stack.enter_async_context(
                    open_shared_markers(self.config.broker, store)
                )
                self.read_markers.shared = True
            self.publisher = Publisher(self.hub, store=store, outbox_size=self.config.outbox_size)
            self.broker = None
            if self.config.broker is not None:
                self.broker = RedisBroker(
                    self.config.broker,
                    self.hub,
                    self.publisher.accept,
                    deliver_many=self.publisher.accept_many,
                    start_after=store.last_id if store is not None else 0,
                    slot=self.broker_slot,
                )
            self.publisher.attach(self.broker)
            if self.broker is not None:
                self.broker.attach()
                self.typing_notices.share = self.broker.share_typing
            else:
                await self.publisher.reserve_ids()
            # #lobby's latest lines, for the history that comes with every login's join
            # (read once: #lobby never vanishes; other rooms on their first join).
            await self.warm_history(DEFAULT_ROOM)
            try:
                await self._serve(task_status, self.publisher)
            finally:
                self.publisher.detach()
                if self.broker is not None:
                    self.broker.detach()
                    self.typing_notices.share = None
                self.history_service = self.logins = self.publisher = self.broker = None
                self.message_changes.store = None
                self.read_markers.store = None
                self.read_markers.shared = False
                self.read_markers.clear()
                if store is not None:
                    self.plugin_data = None
                self.hub.join_history = None
                self.hub.recent.clear()

    async def _account_book(self, stack: contextlib.AsyncExitStack, store: Store) -> AccountBook:
        """Where accounts are kept: this node's database when it serves alone; with a
        broker, the Redis hash every node shares (an account in one node's database only
        would leave its nick free on the others), with this node's own accounts copied in."""
        if self.config.broker is None:
            return store
        from .broker.accounts import RedisAccounts, move_in

        accounts = await stack.enter_async_context(RedisAccounts.open(self.config.broker))
        await move_in(store, accounts)
        return accounts

    async def _serve(self, task_status: trio.TaskStatus[list[str]], publisher: Publisher) -> None:
        from .transports.tcp import serve_tcp_chat
        from .transports.websocket import serve_websocket_chat

        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(publisher.publish_forever)
            nursery.start_soon(publisher.pay_owed_forever)
            if self.broker is not None:
                await nursery.start(self.broker.run)
            nursery.start_soon(self.keepalive.run)
            nursery.start_soon(self.parking.run)
            nursery.start_soon(self.settler.run)
            nursery.start_soon(self.posted.run)
            nursery.start_soon(self.bot_messages.run)
            if self.history_service is not None and self.config.keep_days is not None:
                nursery.start_soon(self.history_service.prune_forever, self.config.keep_days)
            await nursery.start(self.jobs.run)
            self._start_jobs(self.pm.hook.start_jobs)
            # Listeners live in their own nursery so that stopping them stops accepting
            # while the connections (spawned in ``nursery``) get to say goodbye.
            async with trio.open_nursery() as listeners:
                self.addresses = await listeners.start(serve_tcp_chat, self, nursery)
                if self.config.ws_port is not None:
                    self.addresses += await listeners.start(serve_websocket_chat, self, nursery)
                if self.config.irc_port is not None:
                    from .transports.irc import serve_irc_chat

                    self.addresses += await listeners.start(serve_irc_chat, self, nursery)
                if self.config.metrics_port is not None:
                    self.addresses += await listeners.start(
                        serve_metrics,
                        self.metrics.render,
                        self.config.host,
                        self.config.metrics_port,
                    )
                log.info("listening on %s", " ".join(self.addresses))
                self.call_hook("server_started", server=self, addresses=list(self.addresses))
                task_status.started(list(self.addresses))
                await self._shutdown_requested.wait()
                listeners.cancel_scope.cancel()
            # Plugins' jobs stop first: nothing of theirs runs while users are told goodbye,
            # nor after storage closes.
            self.jobs.stop()
            await self._say_goodbye()
            if self.broker is not None:
                await self.broker.aclose()
            publisher.detach()
            if self.history_service is not None:
                await self.history_service.close()
            nursery.cancel_scope.cancel()
        self._nursery = None

    @property
    def ws_port(self) -> int | None:
        """The port the WebSocket listener actually bound, once serving (else the config's)."""
        for address in self.addresses:
            if address.startswith(("ws://", "wss://")):
                return int(address.rsplit(":", 1)[1])
        return self.config.ws_port

    def shutdown(self) -> None:
        """Ask :meth:`serve` to stop: no new connections, every user told, then exit."""
        self._stopping = True
        self._shutdown_requested.set()

    async def _say_goodbye(self) -> None:
        """Tell every session the server is stopping and give them a moment to hear it."""
        self._stopping = True
        self.hub.pay_all_owed()  # lines said before the goodbye come before it
        for session in list(self.hub.sessions.values()):
            session.close("shutdown", "the server is shutting down")
        with trio.move_on_after(self.config.shutdown_grace):
            # Each session's task detaches it early but then still says goodbye: wait for
            # the tasks, not only for the hub to empty.
            while self._live_sessions:
                self._sessions_ended = trio.Event()
                await self._sessions_ended.wait()

    def start_connection_task(self, run: Callable[[], Awaitable[None]]) -> None:
        """Serve a resumed connection in a task of its own, beside the others."""
        if self._nursery is None:
            raise RuntimeError("the server is not serving")
        # One name for all of them: trio would make each task a name string of its own
        # (91 bytes per busy connection; bench/README.md, "Memory per connection").
        self._nursery.start_soon(run, name="trio_chat.connection")

    def session_started(self) -> None:
        """Called by a connection's task once its session is logged in."""
        self._live_sessions += 1

    def session_ended(self) -> None:
        """Called by a connection's task when it has finished with its session, bye sent."""
        self._live_sessions -= 1
        self._sessions_ended.set()

    @property
    def stopping(self) -> bool:
        return self._stopping


if TYPE_CHECKING:

    def _hosts_transports(server: ChatServer) -> ChatHost:
        """mypy checks here that the server is what its transports take it for."""
        return server


__all__ = ["ChatServer"]
