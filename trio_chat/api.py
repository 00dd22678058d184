"""What plugins and built-in commands may ask of the server: the public plugin API.

Built-ins use exactly this, as third-party plugins do (``ctx.server.rooms``,
``ctx.server.history(...)``, the account calls): neither reaches into the store, the
history service or private fields, so what a plugin can do is written down here, and the
insides can change without breaking them. :class:`ChatServer` gets these methods from
:class:`ServerAPI`; :class:`CommandContext` (``ctx``) adds the per-call shortcuts
(``ctx.account``, ``ctx.history``, ``ctx.state``).

The slash-command registry and the context a handler gets live here, beside
:class:`ServerAPI`, because each refers to the other (``ctx.server``,
``server.command(name)``); :mod:`trio_chat.commands` runs handlers and re-exports them.
Nothing here imports the server, the plugin manager or the transports: they import this.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from ._version import __version__
from .bots import DEFAULT_BOT_BURST, DEFAULT_BOT_RATE, Bot, Bots
from .command_rules import ALLOWED_NOTE, Allowed, UsageWindow, check_allowed
from .errors import ChatError, CommandError, LoginRefused
from .hub import Device, NickInUse, Room, TooManyConnections
from .names import DEFAULT_ROOM, name_key, normalize_nick
from .plugin_storage import PluginData, PluginStorage
from .protocol import Info, SearchResults, Welcome, encode_server_event
from .search import find_lines, find_mentions
from .store import StoredMessage, StoreError

if TYPE_CHECKING:
    from .auth_backends import AuthBackends
    from .broker.redis import RedisBroker
    from .config import ServerConfig
    from .history import HistoryService
    from .hub import Hub, Session
    from .jobs import Jobs
    from .logins import Logins
    from .message_changes import MessageChanges
    from .protocol import MessageKind
    from .read_markers import ReadMarkers
    from .typing_notices import TypingNotices

log = logging.getLogger("trio_chat.server")


def _no_store(what: str, because: str = "it runs without a database") -> CommandError:
    return CommandError(f"this server keeps no {what} ({because})", "no_store")


class RoomsView(Mapping[str, Room]):
    """The rooms that exist now, read-only, by name (``rooms["#Lobby"]`` finds ``#lobby``:
    names compare as :func:`~trio_chat.names.name_key` does); iterates over room names."""

    __slots__ = ("_rooms",)

    def __init__(self, rooms: Mapping[str, Room]) -> None:
        self._rooms = rooms

    def __getitem__(self, name: str) -> Room:
        return self._rooms[name_key(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name_key(name) in self._rooms

    def __iter__(self) -> Iterator[str]:
        return iter([room.name for room in self._rooms.values()])

    def __len__(self) -> int:
        return len(self._rooms)


COMMAND_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

Handler = Callable[["CommandContext"], "str | Awaitable[str | None] | None"]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    handler: Handler
    help: str
    usage: str
    plugin: str
    #: Who may run it: ``"everyone"``, ``"operators"`` (of the room it is run in) or
    #: ``"admins"`` (see :mod:`trio_chat.command_rules`).
    allowed: Allowed = "everyone"
    #: How often one user may run it (``None``: as often as the flood limit lets them).
    rate: UsageWindow | None = None

    @property
    def synopsis(self) -> str:
        return f"/{self.name} {self.usage}".rstrip()

    @property
    def rules(self) -> str:
        """Who may run it and how often, as ``/help`` says it (``""`` for no rule)."""
        notes = [ALLOWED_NOTE[self.allowed], self.rate.describe() if self.rate is not None else ""]
        return "; ".join(note for note in notes if note)


class CommandRegistry:
    """All commands by name; refuses duplicates and bad names, remembering who added what."""

    def __init__(self, owner: Callable[[], str] = lambda: "") -> None:
        #: Names the plugin whose hook implementation is calling (``""`` outside one): the
        #: server passes :func:`~trio_chat.plugins.calling_plugin`.
        self._owner = owner
        self._commands: dict[str, CommandSpec] = {}

    def register(
        self,
        name: str,
        handler: Handler,
        *,
        help: str,
        usage: str = "",
        allowed: str = "everyone",
        rate: tuple[int, float] | None = None,
    ) -> None:
        """The ``register`` callable of the ``register_commands`` hook: the command belongs
        to the plugin whose hook implementation is calling (as the registry's ``owner``
        says: :func:`~trio_chat.plugins.calling_plugin`). ``allowed`` and ``rate`` are
        its rules (:mod:`trio_chat.command_rules`)."""
        owner = self._owner() or "(unknown plugin)"
        try:
            who = check_allowed(allowed)
            window = None if rate is None else UsageWindow(*rate)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"plugin {owner!r}: /{name}: {exc}") from None
        self.add(
            CommandSpec(name.lower(), handler, help.strip(), usage.strip(), owner, who, window)
        )

    def add(self, spec: CommandSpec) -> None:
        if not COMMAND_NAME.match(spec.name):
            raise ValueError(f"plugin {spec.plugin!r}: invalid command name {spec.name!r}")
        if not callable(spec.handler):
            raise ValueError(f"plugin {spec.plugin!r}: handler of /{spec.name} is not callable")
        taken = self._commands.get(spec.name)
        if taken is not None:
            raise ValueError(
                f"plugin {spec.plugin!r}: /{spec.name} is already registered by {taken.plugin!r}"
            )
        self._commands[spec.name] = spec

    def remove_plugin(self, plugin: str) -> None:
        for name in [n for n, s in self._commands.items() if s.plugin == plugin]:
            del self._commands[name]

    def get(self, name: str) -> CommandSpec | None:
        return self._commands.get(name.lower())

    def __iter__(self) -> Any:
        return iter(sorted(self._commands.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._commands)


class ServerAPI:
    """The server's methods for plugins: rooms, commands, history, accounts, moderation."""

    config: ServerConfig
    hub: Hub
    commands: CommandRegistry
    history_service: HistoryService | None
    logins: Logins | None
    broker: RedisBroker | None
    #: The plugins' auth backends (the ``authenticate`` and ``is_account`` hooks).
    auth: AuthBackends
    #: Where :meth:`storage` keeps plugins' data now: the database while serving with one,
    #: a dict without one (``--no-db``), ``None`` when there is nowhere (not serving).
    plugin_data: PluginData | None = None
    #: Plugins' background tasks and periodic jobs (see :class:`trio_chat.jobs.Jobs` and the
    #: ``start_jobs`` hook): ``server.jobs.start_soon(...)`` from a command handler too.
    jobs: Jobs
    #: The plugins' bot users, by nick (see :meth:`add_bot`).
    bots: Bots
    #: Replies, edits, deletes and reactions (see :mod:`trio_chat.message_changes`).
    message_changes: MessageChanges
    #: Typing notices (see :mod:`trio_chat.typing_notices`).
    typing_notices: TypingNotices
    #: Read markers (see :mod:`trio_chat.read_markers`).
    read_markers: ReadMarkers

    # ------------------------------------------------------------------------ messages

    def post(self, session: Session, room: str, text: str, kind: MessageKind = "say") -> None:
        """Say ``text`` in ``room`` as ``session``, after every message filter agreed (what
        ``ctx.say`` and ``ctx.action`` do). The server provides it: it runs the filters."""
        raise NotImplementedError

    def filtered_text(self, session: Session, room: str, text: str) -> str:
        """``text`` as every message filter leaves it (``""``: dropped; a filter that
        refuses raises). The server provides it."""
        raise NotImplementedError

    async def reply(
        self, session: Session, room: str, message_id: int, text: str, kind: MessageKind = "say"
    ) -> None:
        """Say ``text`` in ``room`` as ``session``, answering the message ``message_id`` of
        the room (the line carries ``reply_to`` and a ``quote`` of it). Raises
        ``ChatError`` ``no_such_message`` when the room has no such message (or it was
        deleted), ``store_error`` when the database could not be read."""
        quote = await self.message_changes.quote(session, room, message_id)
        text = self.filtered_text(session, room, text)
        if text:
            self.hub.say(session, room, text, kind, reply_to=message_id, quote=quote)

    async def edit_message(self, session: Session, room: str, message_id: int, text: str) -> None:
        """Replace the text of ``session``'s own message ``message_id`` of ``room`` (through
        the message filters, as a line said). ``not_allowed`` for another's message or when
        muted, ``no_such_message`` as :meth:`reply`."""
        text = self.filtered_text(session, room, text)
        if text:
            await self.message_changes.edit(session, room, message_id, text)

    async def delete_message(self, session: Session, room: str, message_id: int) -> None:
        """Delete message ``message_id`` of ``room``: ``session``'s own, or any when it is an
        operator of the room (``not_allowed`` otherwise)."""
        await self.message_changes.delete(session, room, message_id)

    async def react(
        self, session: Session, room: str, message_id: int, emoji: str, *, on: bool = True
    ) -> bool:
        """Add (or with ``on=False`` take back) ``session``'s reaction ``emoji`` to message
        ``message_id`` of ``room``; ``False`` when it was so already (nothing is sent)."""
        return await self.message_changes.react(session, room, message_id, emoji, on)

    def disconnect(self, session: Session, code: str, reason: str) -> None:
        """End a session (every connection of a user logged in more than once) with a
        reason it will be told in a ``bye`` frame."""
        session.close(code, reason)

    def end_connection(self, session: Session, code: str, reason: str) -> None:
        """End the connection whose frame is being handled (what ``quit`` does): for a user
        logged in more than once, that one alone; the user leaves the rooms, with
        ``reason``, when its last connection ends. Outside a frame's handling, the whole
        session."""
        self.hub.connection_of(session).close(code, reason)

    def plugin_settings(self, name: str) -> dict[str, Any]:
        """The settings of plugin ``name`` from the config file (empty if it has none)."""
        return dict(self.config.plugin_settings.get(name, {}))

    def storage(self, namespace: str) -> PluginStorage:
        """A plugin's own key-value store, ``namespace`` keeping it apart from every other
        (use the plugin's name): ``await storage.set("key", {"any": "JSON"})``,
        ``await storage.get("key")``, ``delete``, ``items(prefix)``. In the server's database,
        so it survives restarts; in memory with ``--no-db``. Usable while the server runs
        (else :class:`~trio_chat.plugin_storage.StorageError`); see
        :class:`~trio_chat.plugin_storage.PluginStorage`."""
        return PluginStorage(namespace, lambda: self.plugin_data)

    # ---------------------------------------------------------------------------- bots

    async def add_bot(
        self,
        nick: str,
        *,
        plugin: str = "",
        rate: float = DEFAULT_BOT_RATE,
        burst: int = DEFAULT_BOT_BURST,
    ) -> Bot:
        """A bot user called ``nick``, owned by ``plugin`` (its name, for logs and
        :meth:`remove_plugin <trio_chat.ChatServer.remove_plugin>`): a user with no
        connection that :meth:`Bot.join <trio_chat.bots.Bot.join>` rooms,
        :meth:`~trio_chat.bots.Bot.say`, :meth:`~trio_chat.bots.Bot.act` and
        :meth:`~trio_chat.bots.Bot.tell`, shown as a bot (``"bot": true``) in ``/who`` and
        in its ``join`` events. It says at most ``rate`` lines a second after a ``burst``.

        Refused (a :class:`~trio_chat.errors.ChatError`) for an invalid nick, one in use
        (look-alikes included) and a registered account's. A bot lives until
        :meth:`Bot.remove <trio_chat.bots.Bot.remove>`, a moderator disconnecting it, or
        the server stopping: add it again in ``server_started``."""
        nick = normalize_nick(nick)
        if await self.is_registered(nick):
            raise NickInUse(f"the nickname {nick} is a registered account")
        return self.bots.add(self, nick, plugin=plugin, rate=rate, burst=burst)

    def bot(self, nick: str) -> Bot | None:
        """The bot called ``nick`` (look-alikes match), or ``None``."""
        return self.bots.get(nick)

    # --------------------------------------------------------------------------- rooms

    @property
    def rooms(self) -> RoomsView:
        """Every room by name, read-only (change rooms through the hub's and these calls)."""
        return RoomsView(self.hub.rooms)

    def set_operator(
        self, room: Room, session: Session, operator: bool, *, by: str | None = None
    ) -> None:
        """Make ``session`` an operator of ``room``, or no longer one (on every node). The
        room's members are told, naming ``by`` (the operator's nick; ``None``: the
        server)."""
        self.hub.set_rule(room, "operator", session, operator, by=by)

    def set_muted(
        self, room: Room, session: Session, muted: bool, *, by: str | None = None
    ) -> None:
        """Stop ``session`` speaking in ``room``, or let it speak again (on every node); the
        room's members are told, naming ``by``."""
        self.hub.set_rule(room, "muted", session, muted, by=by)

    def ban(self, room: Room, nick: str, host: str, *, by: str | None = None) -> None:
        """Keep ``nick`` (and whoever comes from ``host``; ``"?"`` for none) out of ``room``
        (on every node); the room's members are told, naming ``by``."""
        self.hub.set_rule(room, "banned", nick, True, host=host, by=by)

    def unban(self, room: Room, nick: str, *, by: str | None = None) -> bool:
        """Let ``nick`` join ``room`` again; False if it was not banned. The room's members
        are told, naming ``by``."""
        return self.hub.set_rule(room, "banned", nick, False, by=by)

    # ------------------------------------------------------------------------ commands

    def command(self, name: str) -> CommandSpec | None:
        """The command ``name`` (without the slash), if a plugin registered it."""
        return self.commands.get(name)

    def command_list(self) -> list[CommandSpec]:
        """Every command, by name."""
        return list(self.commands)

    # ------------------------------------------------------------------------- history

    @property
    def keeps_history(self) -> bool:
        """Whether the server has a database (history and accounts); else those calls
        refuse with ``no_store``."""
        return self.history_service is not None

    def require_store(self, what: str) -> None:
        """Refuse (``no_store``, naming ``what``) unless the server has a database."""
        self._history_for(what)

    def _history_for(self, what: str) -> HistoryService:
        if self.history_service is None:
            raise _no_store(what)
        return self.history_service

    @property
    def no_accounts_because(self) -> str:
        """Why there are no accounts, when there are none (said in the refusals)."""
        return "it runs without a database"

    def _logins_for(self, what: str) -> Logins:
        if self.logins is None:
            raise _no_store(what, self.no_accounts_because)
        return self.logins

    async def history(
        self,
        room: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> list[StoredMessage]:
        """Up to ``limit`` (at most 500) stored messages of ``room``, oldest first: the
        latest ones, those just ``before`` an id, or the first ones ``after`` an id.

        Read in a thread: it never blocks the server. Refuses (``no_store``,
        ``store_error``) without a database or when it cannot be read.
        """
        service = self._history_for("history")
        try:
            return await service.room_history(room, before=before, after=after, limit=limit)
        except StoreError as exc:
            log.error("history of %s for a plugin failed: %s", room, exc)
            raise ChatError("store_error", "history is unavailable") from None

    async def warm_history(self, room: str) -> None:
        """Have ``room``'s latest lines at hand (read from the database if they are not),
        so that whoever joins it next gets them with the ``join``: call :meth:`Hub.join`
        right after, with no ``await`` between. Without a database, nothing to do; if it
        cannot be read, the join will come without history (logged)."""
        if self.history_service is not None and not self.history_service.at_hand(room):
            try:
                await self.history_service.warm(room)
            except StoreError as exc:
                log.error("history of %s failed: %s", room, exc)

    async def join_room(self, session: Session, room: str) -> Room:
        """Put ``session`` in ``room`` (see :meth:`Hub.join`): it receives the ``join``,
        then the room's ``history`` (if any), then the room's live events."""
        await self.warm_history(room)
        try:
            return self.hub.join(session, room)
        finally:
            if self.history_service is not None:
                self.history_service.forget_unused(room)

    def join_room_nowait(self, session: Session, room: str) -> Room:
        """:meth:`join_room` without waiting: raises ``trio.WouldBlock`` (and joins
        nothing) when ``room``'s latest lines would have to be read from the database
        first. As a rule they are at hand (every room with members has them), and then a
        caller with nothing else to wait for needs no ``await``: ``/join`` runs as a
        plain call, without the plugin timeout's cancel scope around it."""
        if self.history_service is not None and not self.history_service.at_hand(room):
            raise trio.WouldBlock
        return self.hub.join(session, room)

    async def after_attach(self, device: Device) -> None:
        """What one more connection of a user gets after its welcome: each of the user's
        rooms' recent history, up to where its live stream began (to it alone). The hub
        gave it those whose latest lines it had at hand (all, as a rule) with the welcome;
        the others are read from the store now. Then a ``read`` event for each room with
        a read marker."""
        session = device.session
        service = self.history_service
        for room in list(session.rooms):
            if service is None or name_key(room) in device.history_bound:
                continue
            try:
                await service.send_recent(session, room, device=device)
            except StoreError as exc:
                log.error("history of %s for %s failed: %s", room, session.nick, exc)
        # Then where the user had read each room up to (after the history it marks).
        self.read_markers.tell_device(device)

    async def show_older_history(
        self, session: Session, room: str, *, limit: int, ref: str | None = None
    ) -> None:
        """Send ``session`` a ``history`` page of ``room`` older than anything it was shown
        (what ``/history`` does)."""
        service = self._history_for("history")
        # Nothing shown yet (the room had no history when it joined): the latest lines,
        # those it saw live included.
        before = session.history_oldest.get(name_key(room), self.hub.history_bound())
        await service.send_room_page(session, room, before=before, limit=limit, ref=ref)

    # -------------------------------------------------------------------------- search

    async def search(
        self,
        session: Session,
        query: str,
        *,
        room: str | None = None,
        before: int | None = None,
        limit: int | None = None,
        ref: str | None = None,
    ) -> SearchResults:
        """The ``search`` reply for ``session``: the stored lines of the rooms it is in (of
        ``room`` alone, if given: one it is in) holding every word of ``query``, newest
        first, ids below ``before``, ``limit`` of them (default 20, at most 100). A word is
        what the user typed, never search syntax. Read in a thread. Refuses
        (``bad_arguments`` for a query with no words, ``not_in_room``, ``no_store``,
        ``store_error``)."""
        service = self._history_for("search")
        try:
            messages, more = await find_lines(
                service.store, self.hub, session, query, room=room, before=before, limit=limit
            )
        except StoreError as exc:
            log.error("search for %s failed: %s", session.nick, exc)
            raise ChatError("store_error", "search is unavailable") from None
        return SearchResults(query=query, messages=messages, more=more, ref=ref)

    async def mentions(self, session: Session, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The latest stored lines of the rooms ``session`` is in that name it (its nick, or
        its account's), newest first, ``limit`` of them (default 20, at most 100), each
        shaped like a ``message`` event, with ``"unread": true`` when it is newer than the
        user's read marker of its room (see :meth:`mark_read`); what ``/mentions`` lists.
        Refuses (``no_store``, ``store_error``)."""
        service = self._history_for("mentions")
        try:
            lines = await find_mentions(service.store, self.hub, session, limit=limit)
        except StoreError as exc:
            log.error("mentions of %s failed: %s", session.nick, exc)
            raise ChatError("store_error", "mentions are unavailable") from None
        for line in lines:  # not read yet: newer than the user's read marker of its room
            marker = self.read_marker(session, line["room"])
            if marker is not None and line["id"] > marker:
                line["unread"] = True
        return lines

    # ------------------------------------------------------------------------ presence

    async def mark_read(self, session: Session, room: str, message_id: int) -> bool:
        """``session`` has read ``room`` up to message ``message_id``: its read marker moves
        there (only ever forward: ``False`` if it was there already), its other
        connections are told, and an account's is stored (see
        :mod:`trio_chat.read_markers`). Refuses (a ``ChatError``) a room it is not in, an id
        not given out yet, or a marker that could not be saved."""
        return await self.read_markers.mark(session, room, message_id)

    def read_marker(self, session: Session, room: str) -> int | None:
        """The id of the newest message ``session`` has read in ``room``, or ``None``."""
        return self.read_markers.marker(session, room)

    def set_typing_notices(self, session: Session, on: bool) -> None:
        """``/typing on|off``: whether ``session`` sends and receives typing notices (see
        :mod:`trio_chat.typing_notices`)."""
        self.typing_notices.set_enabled(session, on)

    # ------------------------------------------------------------------------ accounts

    async def is_registered(self, nick: str) -> bool:
        """Whether ``nick`` is an account: an auth backend's user (the ``is_account`` hook)
        or a registered one (never, without a database or a backend). Refuses
        (``store_error``) when the accounts cannot be read (with a broker: Redis down; a
        backend that failed)."""
        known = await self.auth.is_account(self, nick)
        if known is not None:
            return known
        if self.logins is None:
            return False
        return await self.logins.is_registered(nick)

    async def backend_login(self, nick: str, password: str, address: str) -> str | None:
        """Ask the auth backends (the ``authenticate`` hook) about a login: the account key
        if one let it in, ``None`` if none decided (the built-in accounts do then).
        Refused (``login_failed``) if one said no; see :mod:`trio_chat.auth_backends`."""
        verdict = await self.auth.authenticate(self, nick, password, address)
        if verdict is False:
            raise LoginRefused("login_failed", "wrong nickname or password")
        return None if verdict is None else name_key(nick)

    async def register_account(self, session: Session, password: str) -> None:
        """Register ``session``'s nick with ``password`` and log the session in to it."""
        logins = self._logins_for("accounts")
        if session.account == session.key:
            raise LoginRefused(
                "nick_registered", f"{session.nick} is already your registered nickname"
            )
        if await self.auth.is_account(self, session.nick):
            raise LoginRefused("nick_registered", f"the nickname {session.nick} is registered")
        self.set_account(session, await logins.register(session.nick, password))

    async def log_in(self, session: Session, nick: str, password: str) -> str:
        """Log ``session`` in to the account ``nick`` and take that nick; returns it as
        normalised. Refused for a wrong password (throttled) or when the nick is in use by
        someone else.

        If that account's user is connected already, the connection whose frame is being
        handled leaves ``session`` (which leaves its rooms, if this was its only
        connection) and joins that user instead, with a ``welcome`` as if it had logged in
        to it when connecting (see :meth:`session_to_join`)."""
        nick = normalize_nick(nick)
        account = await self.backend_login(nick, password, session.address)
        if account is None:
            account = await self._logins_for("accounts").check_login(
                nick, password, session.address
            )
        await self.read_markers.load(account)
        holder = self.hub.find(nick)
        if holder is not None and holder is not session:
            joining = self.session_to_join(nick, account)
            device = self.hub.connection_of(session)
            if joining is None or not isinstance(device, Device):
                raise NickInUse(f"{nick} is logged in on another connection")
            welcome = self.welcome_to(joining, ref=None, joined=True)
            self.hub.move_device(device, joining, f"logged in as {joining.nick}", first=welcome)
            await self.after_attach(device)
            return joining.nick
        # The account first: the other nodes hear of it before they see the new nick.
        self.set_account(session, account)
        self.hub.rename(session, nick)
        self.read_markers.tell_user(session, session.rooms)  # where the account had read
        return nick

    def session_to_join(self, nick: str, account: str | None) -> Session | None:
        """The user a login to ``account`` as ``nick`` adds a connection to: the one of this
        node connected to that account under that nick; ``None`` for a new session (a
        guest, a nick nobody holds; someone else holding it is refused as ever when the
        hub attaches). Refused for a user of another node, one on its way out, or one at
        ``max_connections_per_account``."""
        if account is None:
            return None
        holder = self.hub.find(nick)
        if holder is None or holder.account != account:
            return None
        if holder.always_on and not holder.devices and not holder.closed:
            return holder  # kept offline (trio_chat.always_on): this login brings it back
        if not holder.mailbox.delivers_here:
            raise NickInUse(f"{holder.nick} is logged in on another server of this chat")
        if holder.closed:
            raise NickInUse(f"{holder.nick} is logging out; try again in a moment")
        limit = self.config.max_connections_per_account
        if len(holder.devices) >= limit:
            raise TooManyConnections(
                f"{holder.nick} is logged in on {len(holder.devices)} connections already "
                f"(limit {limit})"
            )
        return holder

    def welcome_to(self, session: Session, *, ref: str | None, joined: bool = False) -> Welcome:
        """The ``welcome`` of a connection logged in to ``session``: a new one, or one that
        ``joined`` it, connected elsewhere already (then with its rooms and connections,
        this one counted), and where the user had read its rooms up to (``read``; for a
        new session, ``#lobby``, which it joins next)."""
        return Welcome(
            nick=session.nick,
            room=session.room,
            server=self.config.server_name,
            version=__version__,
            account=session.account is not None,
            rooms=list(session.rooms) if joined else None,
            connections=len(session.devices) + 1 if joined else None,
            read=self.read_markers.of_rooms(session, session.rooms if joined else [DEFAULT_ROOM]),
            ref=ref,
        )

    def set_account(self, session: Session, account: str | None) -> None:
        """``session`` is logged in to ``account`` from now on (``None``: a guest).

        The other nodes are told too: they store a private message only between two
        accounts, so theirs must know this user's."""
        session.account = account
        # With always_on an account's user stays when its last connection ends; a
        # guest's never does (trio_chat.always_on).
        session.always_on = self.config.always_on and account is not None and not session.bot
        if self.broker is not None:
            self.broker.account_changed(session)

    async def change_password(self, session: Session, old: str, new: str) -> None:
        """Change the password of the account ``session`` is logged in to."""
        logins = self._logins_for("accounts")
        if session.account is None:
            raise LoginRefused("login_required", "log in (or /register) first")
        try:
            changed = await logins.change_password(session.account, old, new)
        except ValueError as exc:  # an empty or overlong new password
            raise LoginRefused("bad_password", str(exc)) from None
        if not changed:
            raise LoginRefused("login_failed", "wrong password; nothing changed")


#: How many lines one run of a command handler may speak in rooms (``ctx.say``,
#: ``ctx.action``). A user's own lines pass flood control; a handler's would not, so a
#: handler that loops on ``ctx.say`` would bury the room and get its members dropped as
#: slow receivers. Past this the call raises :class:`PluginMisuse` (a ``plugin_error``).
MAX_LINES_PER_COMMAND = 20


class PluginMisuse(RuntimeError):
    """A plugin used the API in a way that would cost other users (too many lines from one
    command, a line longer than any user may send): raised to the plugin, so its caller gets
    ``plugin_error`` and the log names the plugin, and nothing reaches anyone else."""


class CommandContext:
    """What a command handler gets: who called, with what, and ways to answer.

    ``reply`` answers the caller alone; ``say``/``action`` speak in the room as the caller
    (through message filters, like any chat line); ``fail`` refuses with an error.
    """

    def __init__(
        self,
        server: ServerAPI,
        session: Session,
        spec: CommandSpec,
        args: str,
        room: str,
        ref: str | None,
    ) -> None:
        self.server = server
        self.session = session
        self.spec = spec
        self.name = spec.name
        self.args = args
        self.room = room
        self.ref = ref
        self._lines = 0  # said by this run (see MAX_LINES_PER_COMMAND)

    @property
    def nick(self) -> str:
        return self.session.nick

    @property
    def hub(self) -> Hub:
        return self.server.hub

    @property
    def account(self) -> str | None:
        """The key of the account the caller is logged in to; ``None`` for a guest."""
        return self.session.account

    @property
    def state(self) -> dict[str, Any]:
        """This plugin's own dict on the caller's session: kept for the connection's life,
        seen by no other plugin (it is ``session.extra[plugin name]``)."""
        state: dict[str, Any] = self.session.extra.setdefault(self.spec.plugin, {})
        return state

    async def history(
        self,
        room: str | None = None,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> list[StoredMessage]:
        """Stored messages of ``room`` (default: :attr:`room`), oldest first; see
        :meth:`ChatServer.history <trio_chat.api.ServerAPI.history>`."""
        return await self.server.history(
            self.room if room is None else room, before=before, after=after, limit=limit
        )

    def reply(self, text: str, data: dict[str, Any] | None = None) -> None:
        """Send ``text`` (and optional structured ``data``, a JSON object) to the caller only.

        Checked here, where the plugin can be told: a reply that cannot be encoded would
        otherwise fail later, in the delivery every connection shares. So a ``text`` that is
        not a string or ``data`` that is not a JSON-encodable dict raises ``TypeError``.
        """
        if not isinstance(text, str):
            raise TypeError(f"ctx.reply takes a str, not {type(text).__name__}")
        if data is not None and not isinstance(data, dict):
            raise TypeError(f"ctx.reply's data is a dict or None, not {type(data).__name__}")
        reply = Info(text=text, data=data, ref=self.ref)
        if data is not None:
            try:
                encode_server_event(reply)
            except TypeError as exc:  # orjson's JSONEncodeError is one
                raise TypeError(f"ctx.reply's data cannot be sent as JSON: {exc}") from None
        self.server.hub.send_to(self.session, reply)

    def say(self, text: str) -> None:
        """Say ``text`` in the room as the caller (at most :data:`MAX_LINES_PER_COMMAND`
        lines per run of the handler, each no longer than a user's)."""
        self.server.post(self.session, self.room, self._line("say", text), "say")

    def action(self, text: str) -> None:
        """Emote ``text`` in the room as the caller (shown as ``* nick text``; counted and
        bounded as :meth:`say`)."""
        self.server.post(self.session, self.room, self._line("action", text), "action")

    def notice(self, text: str) -> None:
        """Say ``text`` in the room as a notice (``kind: "notice"``: shown apart, and never
        answered by bots or triggers, as IRC's ``NOTICE``; counted and bounded as
        :meth:`say`)."""
        self.server.post(self.session, self.room, self._line("notice", text), "notice")

    def _line(self, how: str, text: str) -> str:
        """``text`` if the handler may still speak it, else :class:`PluginMisuse`."""
        if not isinstance(text, str):
            raise TypeError(f"ctx.{how} takes a str, not {type(text).__name__}")
        self._lines += 1
        if self._lines > MAX_LINES_PER_COMMAND:
            raise PluginMisuse(
                f"/{self.name} tried to speak more than {MAX_LINES_PER_COMMAND} lines in one run"
            )
        limit = self.server.config.max_frame_bytes
        if len(text) > limit // 4 and len(text.encode()) > limit:  # (cheap test first)
            raise PluginMisuse(f"/{self.name} tried to speak a line over {limit} bytes")
        return text

    def fail(self, text: str, code: str = "command_failed") -> NoReturn:
        """Refuse: raises :class:`CommandError`, so nothing after this call runs."""
        raise CommandError(text, code)

    def usage_error(self, why: str | None = None) -> CommandError:
        """The error for arguments that do not fit, to ``raise``: ``usage: /roll [NdM]``, or
        with ``why`` in front (``bad dice: 0d6; usage: /roll [NdM]``); code
        ``bad_arguments``. Every command's argument errors read alike this way."""
        usage = f"usage: {self.spec.synopsis}"
        return CommandError(f"{why}; {usage}" if why else usage, "bad_arguments")
