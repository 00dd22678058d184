"""What plugins and built-in commands may ask of the server: the public plugin API.

Built-ins use exactly this, as third-party plugins do (``ctx.server.rooms``,
``ctx.server.history(...)``, the account calls): neither reaches into the store, the
history service or private fields, so what a plugin can do is written down here, and the
insides can change without breaking them. :class:`ChatServer` gets these methods from
:class:`ServerAPI`; :class:`~trio_chat.commands.CommandContext` adds the per-call shortcuts
(``ctx.account``, ``ctx.history``, ``ctx.state``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from .errors import ChatError, CommandError, LoginRefused
from .hub import NickInUse, Room
from .names import name_key, normalize_nick
from .store import StoredMessage, StoreError

if TYPE_CHECKING:
    from .commands import CommandRegistry, CommandSpec
    from .history import HistoryService
    from .hub import Hub, Session
    from .logins import Logins

log = logging.getLogger("trio_chat.server")


def _no_store(what: str) -> CommandError:
    return CommandError(f"this server keeps no {what} (it runs without a database)", "no_store")


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


class ServerAPI:
    """The server's methods for plugins: rooms, commands, history, accounts, moderation."""

    hub: Hub
    commands: CommandRegistry
    history_service: HistoryService | None
    logins: Logins | None

    # --------------------------------------------------------------------------- rooms

    @property
    def rooms(self) -> RoomsView:
        """Every room by name, read-only (change rooms through the hub's and these calls)."""
        return RoomsView(self.hub.rooms)

    def set_operator(self, room: Room, session: Session, operator: bool) -> None:
        """Make ``session`` an operator of ``room``, or no longer one."""
        if operator:
            room.operators.add(session.id)
        else:
            room.operators.discard(session.id)

    def set_muted(self, room: Room, session: Session, muted: bool) -> None:
        """Stop ``session`` speaking in ``room``, or let it speak again."""
        if muted:
            room.muted.add(session.id)
        else:
            room.muted.discard(session.id)

    def ban(self, room: Room, nick: str, host: str) -> None:
        """Keep ``nick`` (and whoever comes from ``host``; ``"?"`` for none) out of ``room``."""
        room.banned[name_key(nick)] = host

    def unban(self, room: Room, nick: str) -> bool:
        """Let ``nick`` join ``room`` again; False if it was not banned."""
        return room.banned.pop(name_key(nick), None) is not None

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

    def _logins_for(self, what: str) -> Logins:
        if self.logins is None:
            raise _no_store(what)
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

    async def show_older_history(
        self, session: Session, room: str, *, limit: int, ref: str | None = None
    ) -> None:
        """Send ``session`` a ``history`` page of ``room`` older than anything it was shown
        (what ``/history`` does)."""
        service = self._history_for("history")
        before = session.history_oldest.get(name_key(room))
        await service.send_room_page(session, room, before=before, limit=limit, ref=ref)

    # ------------------------------------------------------------------------ accounts

    async def is_registered(self, nick: str) -> bool:
        """Whether ``nick`` is a registered account (never, without a database)."""
        if self.logins is None:
            return False
        return await self.logins.is_registered(nick)

    async def register_account(self, session: Session, password: str) -> None:
        """Register ``session``'s nick with ``password`` and log the session in to it."""
        logins = self._logins_for("accounts")
        if session.account == session.key:
            raise LoginRefused(
                "nick_registered", f"{session.nick} is already your registered nickname"
            )
        session.account = await logins.register(session.nick, password)

    async def log_in(self, session: Session, nick: str, password: str) -> str:
        """Log ``session`` in to the account ``nick`` and take that nick; returns it as
        normalised. Refused for a wrong password (throttled) or when the nick is in use on
        another connection."""
        logins = self._logins_for("accounts")
        nick = normalize_nick(nick)
        account = await logins.check_login(nick, password, session.address)
        holder = self.hub.find(nick)
        if holder is not None and holder is not session:
            raise NickInUse(f"{nick} is logged in on another connection")
        session.account = account
        self.hub.rename(session, nick)
        return nick

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
