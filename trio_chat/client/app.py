"""``trio-chat connect``: chat from a terminal, or from a script through stdin and stdout.

:func:`run_client` opens the user's end (:mod:`.terminal`) once, then :class:`ChatClient`
keeps a connection (:mod:`.connection`) to the server for as long as the user wants one.
Two tasks run side by side in one nursery: the connection loop (connect, log in, show every
server event; when the connection is lost, reconnect) and, once logged in, the input loop
(send every typed line). The prompt belongs to the input loop, so the line being typed
survives a reconnect.

**Reconnecting.** When the connection drops, or the server says goodbye for any reason but
our own quit, the client says so and tries again after 1, 2, 4, ... up to 60 seconds (each
delay cut by a random part of up to a half, so that everyone does not come back at once):
``-- reconnecting in 4 s…``. It logs in with the same nick (and the account's password,
kept in memory only), joins every room it was in again (the current one last, so that it
stays current), and fills each room's gap: a ``history`` request ``after`` the last id it
showed of that room, paged until complete. Until every gap is filled, events are held back;
then they are shown once each (by id: the join-time history overlaps the gap), in order.
Lines typed while disconnected are sent once back in. A user-typed ``/join`` is held back the
same way until the server has answered it (a ping after the join), so that the room's
history comes before its live lines whatever order the server sends them in.

**Ending.** ``/quit``, Ctrl-D or the end of stdin: a quit is sent and the client waits
(bounded) for the server's ``bye``, then exits 0; Ctrl-C exits 130, quietly. With
``--no-reconnect`` a lost connection ends the client (``trio-chat: connection to server
lost``, exit 1), as does a ``bye``. Errors before the first login (bad URL, unknown host,
connection refused, a port where no chat server answers, a certificate that is not trusted)
print one line on stderr and exit non-zero (2 for a bad HOST argument or CA file, 1
otherwise), never a traceback.

**Output.** On a terminal, lines are drawn by :class:`~.render.Renderer` (colours, room
prefixes, mentions); piped, the same lines without escape codes. With ``--json`` stdout
carries the server's events as JSON objects, one per line, and the client's own notices go
to stderr.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import random
import signal
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Iterator

import orjson
import trio

from .. import __version__
from ..names import InvalidName, name_key, normalize_room
from ..protocol import (
    Bye,
    ClientFrame,
    Command,
    Error,
    Hello,
    History,
    HistoryRequest,
    Info,
    Joined,
    Left,
    Message,
    NickChanged,
    Ping,
    Pong,
    PongReply,
    Private,
    Quit,
    RemoteProtocolError,
    Say,
    ServerEvent,
    ServerPing,
    Topic,
    Welcome,
    decode_client_frame,
    decode_server_event,
    encode_server_event,
)
from ..textmode import NICK_PROMPT, parse_command_line, render_text
from .connection import (
    NOT_CHAT_HTTP,
    OPENING_PING,
    SERVER_TEXT,
    BadTarget,
    ConnectError,
    ConnectionLost,
    ServerConnection,
    Target,
    open_connection,
    parse_target,
)
from .render import Renderer, colour_wanted
from .terminal import InputEnd, Terminal, open_terminal, printable, stdin_is_terminal
from .tls import TlsSetupError, client_ssl_context

#: Seconds to wait for the server's ``bye`` after we said we quit.
QUIT_TIMEOUT = 3.0
#: Error codes that refuse a nickname: the user is asked for another one.
NICK_ERRORS = frozenset({"nick_taken", "bad_nick"})
#: Error codes that refuse a password: the user is asked for it again.
PASSWORD_ERRORS = frozenset({"login_failed", "login_throttled", "bad_password"})
#: Seconds the server has to answer the opening ping before we give up on it.
ANSWER_TIMEOUT = 10.0
#: Seconds of silence from the server before we ping it (as the server pings us), and then
#: for its answer: a connection whose other end vanished without closing it is noticed.
IDLE_TIMEOUT = 60.0
PING_TIMEOUT = 30.0
#: Seconds events are held back waiting for a rejoin's history before they are shown anyway.
HOLD_TIMEOUT = 15.0
#: Reconnect delays: the first, and the longest (doubling in between).
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
#: Messages per gap-filling ``history`` page (the protocol's largest).
GAP_PAGE = 500
#: Lines typed while disconnected that are kept to send once back.
MAX_QUEUED = 100
#: Message ids remembered to show each message once.
SEEN_IDS = 20_000
LOST = "connection to server lost"
INSECURE_WARNING = "warning: --insecure: the server's certificate is not checked"
#: Exit status after Ctrl-C, as a shell reports a process killed by SIGINT.
EXIT_INTERRUPTED = 130
#: Refs and tokens of the frames the client sends on its own behalf start with this.
OWN = "tc:"
KEEPALIVE_TOKEN = OWN + "alive"
#: Commands known before the server lists its own (``/help``), for Tab completion.
BASE_COMMANDS = ("help", "join", "part", "who", "rooms", "msg", "me", "nick", "topic", "quit")

#: Events that carry an ``id``: the ones held back and shown once.
Numbered = Message | Joined | Left | NickChanged | Private | Topic


def event_lines(event: ServerEvent) -> str:
    """What to print for a server event: ``render_text``, made safe for a terminal."""
    text = render_text(event)
    if isinstance(event, Info | History):
        # render_text puts one line of the reply (or of the history) per line; anything else
        # is one line, and a newline inside it came from another user: show it, not obey it.
        return "\n".join(printable(line) for line in text.split("\n"))
    return printable(text)


def backoff_delay(attempt: int, rand: random.Random | None = None) -> float:
    """Seconds before reconnect attempt ``attempt`` (0 first): doubling, capped, jittered
    (between half the step and the whole of it)."""
    step = min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** min(attempt, 16))
    fraction: float = (rand or random).random()
    return step * (0.5 + 0.5 * fraction)


def _room_of(event: ServerEvent) -> str | None:
    room = getattr(event, "room", None)
    return room if isinstance(room, str) else None


@dataclasses.dataclass
class RoomState:
    """A room the user is in, as the client remembers it across reconnects."""

    name: str
    #: The highest id shown of this room: where its gap starts after a reconnect.
    last_id: int | None = None
    members: set[str] = dataclasses.field(default_factory=set)


class SeenIds:
    """The ids of the last :data:`SEEN_IDS` events shown, to show each one once."""

    def __init__(self, size: int = SEEN_IDS) -> None:
        self._ids: set[int] = set()
        self._order: collections.deque[int] = collections.deque()
        self._size = size

    def add(self, event_id: int) -> bool:
        """Remember ``event_id``; ``False`` if it was seen already."""
        if event_id in self._ids:
            return False
        self._ids.add(event_id)
        self._order.append(event_id)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())
        return True


class _Retry(Exception):
    """This connection cannot go on, but another one may: back off and reconnect."""


class ChatClient:
    """A chat session that outlives its connections: log in, chat, reconnect, until the
    user leaves.

    ``json_mode`` prints the server's events as JSON; ``reconnect`` ``False`` ends the
    client when the connection ends.
    """

    def __init__(
        self,
        target: Target,
        terminal: Terminal,
        nick: str | None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        json_mode: bool = False,
        reconnect: bool = True,
        colour: bool = False,
    ) -> None:
        self.target = target
        self.server = target.display
        self.ssl_context = ssl_context
        self.terminal = terminal
        self.json_mode = json_mode
        self.reconnect = reconnect
        self.renderer = Renderer(colour and not json_mode)
        self.nick = nick
        #: The account's password once logged in to one (memory only), to log back in.
        self.password: str | None = None
        #: The room plain lines go to (shown in the prompt).
        self.room: str | None = None
        #: The rooms the user is in, by :func:`name_key`, in the order joined.
        self.rooms: dict[str, RoomState] = {}
        self.commands: list[str] = list(BASE_COMMANDS)
        #: The user asked to leave (``/quit``, end of input, Ctrl-C).
        self.quitting = False
        self.interrupted = False
        #: The server's goodbye, if it sent one.
        self.bye: Bye | None = None
        #: Why the client failed, for one line on stderr (``None``: it did not fail).
        self.error: str | None = None
        self.connection: ServerConnection | None = None
        #: Logged in on the current connection.
        self.online = False
        self.welcomed_once = False
        self._nursery: trio.Nursery | None = None
        self._session_over = trio.Event()
        self._answers_in, self._answers_out = trio.open_memory_channel[ServerEvent](8)
        self._queued: collections.deque[ClientFrame] = collections.deque()
        self._seen = SeenIds()
        #: While not empty, numbered events wait in ``_held`` (a rejoin, a /join).
        self._holds: set[str] = set()
        self._held: list[ServerEvent] = []
        self._hold_deadline = float("inf")
        #: During a resync: per room, the last id shown before (older ids are not new).
        self._floors: dict[str, int] = {}
        #: Rooms being joined again, whose own join and leave lines are not shown.
        self._rejoining: set[str] = set()
        self._resyncing = False
        self._missed = 0
        #: Account commands waiting for their answer, by ref: (nick, password).
        self._pending_accounts: dict[str, tuple[str | None, str]] = {}
        self._refs = 0

    # ---------------------------------------------------------------------- the session

    async def run(self) -> int:
        """Chat until the user leaves (or, before the first login, until a failure);
        return the exit status."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._connection_loop()
            nursery.cancel_scope.cancel()
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.quitting and self.error is None:
            return 0
        return 1

    async def _connection_loop(self) -> None:
        attempt = 0
        while True:
            if self.welcomed_once:
                delay = backoff_delay(attempt)
                self._notice(f"reconnecting in {max(1, round(delay))} s…")
                await trio.sleep(delay)
                attempt += 1
            try:
                async with open_connection(self.target, self.ssl_context) as connection:
                    await self._session(connection)
            except ConnectError as exc:
                if not self.welcomed_once:
                    self.error = str(exc)
                    return
                self._notice(str(exc))
            finally:
                self._offline()
            if self.quitting or self.error is not None or not self.welcomed_once:
                return
            if not self.reconnect:
                if self.bye is None:
                    self.error = LOST
                return
            if self._reset_backoff:
                attempt = 0
                self._reset_backoff = False

    _reset_backoff = False

    def _offline(self) -> None:
        """The connection is gone: forget what only it knew."""
        self.connection = None
        self.online = False
        self._holds.clear()
        self._held.clear()
        self._floors.clear()
        self._rejoining.clear()
        self._resyncing = False
        self._hold_deadline = float("inf")
        self._session_over.set()

    async def _session(self, connection: ServerConnection) -> None:
        """One connection: log in (again), then show events until it ends."""
        self.connection = connection
        self._session_over = trio.Event()
        self.bye = None
        self._answers_in, self._answers_out = trio.open_memory_channel[ServerEvent](8)
        async with trio.open_nursery() as nursery:

            async def receive_then_stop() -> None:
                await self._receive_events(connection)
                nursery.cancel_scope.cancel()

            nursery.start_soon(receive_then_stop)
            try:
                if self.welcomed_once:
                    await self._log_back_in(connection)
                elif not await self._log_in(connection):
                    # The user gave up at the nickname prompt: wait (bounded) for the bye.
                    with trio.move_on_after(QUIT_TIMEOUT):
                        await trio.sleep_forever()
                    nursery.cancel_scope.cancel()
                    return
            except ConnectionLost:
                if not self.welcomed_once and not self.quitting:
                    self.error = self.error or LOST
                nursery.cancel_scope.cancel()
                return
            except _Retry:
                nursery.cancel_scope.cancel()
                return
            await trio.sleep_forever()  # the receiver ends the session

    # ------------------------------------------------------------------------ logging in

    async def _log_in(self, connection: ServerConnection) -> bool:
        """Ask for a nick (and password) until the server welcomes us; ``False`` if the
        user gave up."""
        password: str | None = None
        register = False
        while True:
            if self.nick is None:
                if not self.terminal.interactive and not self.json_mode:
                    self.terminal.show(NICK_PROMPT)
                answer = await self.terminal.read_line(lambda: "Nickname: ")
                if isinstance(answer, InputEnd):
                    await self._quit(answer, connection)
                    return False
                words = answer.split()
                if len(words) == 3 and words[0].lower() in ("/login", "/register"):
                    # As at the text-mode prompt: log in to (or create) an account.
                    register = words[0].lower() == "/register"
                    self.nick, password = words[1], words[2]
                elif not answer.strip():
                    continue
                else:
                    self.nick = answer.strip()
            elif password is None and self._asking_password:
                if not self.terminal.interactive and not self.json_mode:
                    self.terminal.show(f"Password for {self.nick} (empty line: another nick):")
                answer = await self.terminal.read_line(
                    lambda: f"Password for {self.nick} (empty: another nick): ", secret=True
                )
                if isinstance(answer, InputEnd):
                    await self._quit(answer, connection)
                    return False
                if not answer:
                    self.nick = None
                    self._asking_password = False
                    continue
                password = answer
            await connection.send(
                Hello(
                    nick=self.nick,
                    password=password,
                    register=register,
                    client=f"trio-chat/{__version__}",
                )
            )
            reply = await self._answers_out.receive()
            if isinstance(reply, Welcome):
                self.password = password if reply.account else None
                self._asking_password = False
                await self._welcomed(connection, first=True)
                return True
            assert isinstance(reply, Error)
            register = False
            if reply.code == "nick_registered" or (
                reply.code in PASSWORD_ERRORS and password is not None
            ):
                self._asking_password = True  # the nick is right: ask for its password
            else:
                self.nick = None
                self._asking_password = False
            password = None

    _asking_password = False

    async def _log_back_in(self, connection: ServerConnection) -> None:
        """After a reconnect: the same nick, and the same account."""
        assert self.nick is not None
        await connection.send(
            Hello(nick=self.nick, password=self.password, client=f"trio-chat/{__version__}")
        )
        reply = await self._answers_out.receive()
        if isinstance(reply, Welcome):
            await self._welcomed(connection, first=False)
            return
        assert isinstance(reply, Error)
        if reply.code == "nick_taken":
            # Most likely our old connection, which the server has not noticed is gone.
            self._notice("probably our old connection, not yet gone: trying again")
            raise _Retry
        self.error = f"cannot log back in as {self.nick}: {printable(reply.text)}"
        raise _Retry

    async def _welcomed(self, connection: ServerConnection, *, first: bool) -> None:
        self.online = True
        self._reset_backoff = True
        if first:
            self.welcomed_once = True
            assert self._nursery is not None
            self._nursery.start_soon(self._input_loop)
        else:
            await self._resync(connection)
        await connection.send(Command(name="help", ref=OWN + "help"))
        for key, state in list(self.rooms.items()):  # (it changes while we send)
            await connection.send(Command(name="who", args=state.name, ref=f"{OWN}who:{key}"))
        while self._queued and self.online:
            await self._send(self._queued.popleft())

    def _prepare_resync(self) -> None:
        """Welcomed back: from now on, hold every room's lines until the gaps are filled.

        Called as the welcome arrives, before the events that follow it (our join of
        #lobby, its history) are taken in.
        """
        self._resync_rooms = list(self.rooms)
        self._resync_current = name_key(self.room) if self.room else None
        self._rejoining = {*self.rooms, name_key("#lobby")}
        self._floors = {k: s.last_id for k, s in self.rooms.items() if s.last_id is not None}
        self._resyncing = True
        self._missed = 0
        self._hold("sync:resync")

    _resync_rooms: list[str] = []
    _resync_current: str | None = None

    async def _resync(self, connection: ServerConnection) -> None:
        """Join every room again, the current one last, and ask for each room's gap."""
        self._notice(f"reconnected to {self.server}")
        lobby = name_key("#lobby")
        current = self._resync_current
        keys = [k for k in self._resync_rooms if k in self.rooms or k == lobby]
        if lobby not in keys:
            await connection.send(Command(name="part", args="#lobby", ref=OWN + "part"))
        order = [k for k in keys if k != current] + ([current] if current in keys else [])
        for key in order:
            if key != lobby or len(keys) > 1:
                name = self.rooms[key].name
                await connection.send(Command(name="join", args=name, ref=f"{OWN}join:{key}"))
        for key, floor in list(self._floors.items()):
            if key not in self.rooms:
                continue
            self._hold(f"gap:{key}")
            await connection.send(
                HistoryRequest(
                    room=self.rooms[key].name, after=floor, limit=GAP_PAGE, ref=f"{OWN}gap:{key}"
                )
            )
        # Everything the server says about the joins comes before this ping's pong.
        await connection.send(Ping(token=OWN + "sync:resync"))

    # -------------------------------------------------------------------------- input

    def _prompt(self) -> str:
        """``nick #room> ``: who you are and where plain lines go."""
        where = f" {self.room}" if self.room else ""
        offline = "" if self.online else " (offline)"
        return f"{self.nick}{where}{offline}> "

    async def _input_loop(self) -> None:
        """Send every typed line until the user quits."""
        while True:
            line = await self.terminal.read_line(self._prompt)
            if isinstance(line, InputEnd):
                await self._quit(line, self.connection)
                return
            try:
                if self.json_mode and line.lstrip().startswith("{"):
                    frame: ClientFrame | None = decode_client_frame(line)
                else:
                    frame = parse_command_line(line)
            except RemoteProtocolError as exc:
                self._problem(exc.message)
                continue
            if frame is None:
                continue
            if isinstance(frame, Command | Quit) and (
                isinstance(frame, Quit) or frame.name == "quit"
            ):
                self.quitting = True
                if self.online:
                    await self._send(frame)
                await self._finish()
                return
            await self._submit(frame)

    async def _submit(self, frame: ClientFrame) -> None:
        """Send a typed frame, with what the client needs to follow it."""
        if isinstance(frame, Command) and frame.ref is None:
            words = frame.args.split()
            if frame.name in ("login", "register", "password") and words:
                ref = self._next_ref("acct")
                nick = words[0] if frame.name == "login" and len(words) == 2 else None
                self._pending_accounts[ref] = (nick, words[-1])
                frame = dataclasses.replace(frame, ref=ref)
            elif frame.name == "join" and words and self.online:
                try:
                    key = name_key(normalize_room(words[0]))
                except InvalidName:
                    key = None
                if key is not None and key not in self.rooms:
                    # Hold the room's lines until the server has answered the join.
                    self._hold(f"sync:{key}")
                    await self._send(frame)
                    await self._send(Ping(token=f"{OWN}sync:{key}"))
                    return
        if isinstance(frame, Say) and frame.room is None and not self.online:
            frame = dataclasses.replace(frame, room=self.room)
        await self._send(frame)

    def older_history(self) -> None:
        """PageUp: show the current room's older lines (``/history``), above the prompt."""
        if self.online and self.room and self._nursery is not None:
            self._nursery.start_soon(self._send, Command(name="history", room=self.room))

    def _next_ref(self, kind: str) -> str:
        self._refs += 1
        return f"{OWN}{kind}:{self._refs}"

    async def _send(self, frame: ClientFrame) -> None:
        """Send now, or keep for when we are back."""
        connection = self.connection
        if connection is not None and self.online:
            with contextlib.suppress(ConnectionLost):
                await connection.send(frame)
                return
        if isinstance(frame, Ping | PongReply):
            return
        if len(self._queued) >= MAX_QUEUED:
            self._problem("not connected: line dropped (too many waiting)")
            return
        self._queued.append(frame)
        self._notice("not connected: it will be sent once reconnected")

    async def _quit(self, why: InputEnd, connection: ServerConnection | None) -> None:
        self.quitting = True
        self.interrupted = why is InputEnd.INTERRUPT
        if connection is not None:
            with contextlib.suppress(ConnectionLost):
                await connection.send(Quit(reason="interrupted" if self.interrupted else None))
        await self._finish()

    async def _finish(self) -> None:
        """We said we quit: wait (bounded) for the server's bye, then stop everything."""
        if self.online:
            with trio.move_on_after(QUIT_TIMEOUT):
                await self._session_over.wait()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------------ output

    def _notice(self, text: str) -> None:
        if self.json_mode:
            _print_error(text)
        else:
            self.terminal.show(self.renderer.notice(text))

    def _problem(self, text: str) -> None:
        if self.json_mode:
            _print_error(text)
        else:
            self.terminal.show(self.renderer.problem(text))

    def _display(self, event: ServerEvent) -> None:
        """Show one event (after any hold), and remember it as shown."""
        room = _room_of(event)
        if isinstance(event, Numbered) and room is not None:
            state = self.rooms.get(name_key(room))
            if state is not None:
                state.last_id = max(state.last_id or 0, event.id)
        if self.json_mode:
            self.terminal.show(encode_server_event(event))
            return
        self.renderer.nick = self.nick
        self.renderer.room = self.room
        self.terminal.show(self.renderer.line(event))

    def _hold(self, name: str) -> None:
        self._holds.add(name)
        self._hold_deadline = trio.current_time() + HOLD_TIMEOUT

    def _holding(self, event: ServerEvent) -> bool:
        """Whether ``event`` waits: during a resync every room's lines do (they are shown in
        one run, in order); after a typed ``/join``, that room's."""
        if not self._holds or not (isinstance(event, Numbered) or _is_join_history(event)):
            return False
        if self._resyncing:
            return True
        room = _room_of(event)
        return room is not None and f"sync:{name_key(room)}" in self._holds

    def _release(self, name: str) -> None:
        self._holds.discard(name)
        if not self._holds:
            self._flush()
        elif not self._resyncing:
            ready = [event for event in self._held if not self._holding(event)]
            if ready:
                self._held = [event for event in self._held if self._holding(event)]
                self._show_held(ready)

    def _flush(self) -> None:
        """Show everything held back, and end any resync."""
        held, self._held = self._held, []
        self._holds.clear()
        self._hold_deadline = float("inf")
        self._show_held(held)
        self._floors.clear()
        self._rejoining.clear()
        if self._resyncing:
            self._resyncing = False
            rooms = ", ".join(state.name for state in self.rooms.values()) or "no room"
            missed = f"; {self._missed} new messages" if self._missed else ""
            self._notice(f"back in {rooms}{missed}")

    def _show_held(self, held: list[ServerEvent]) -> None:
        """Show held events once each, by id; a join's history block just after the join."""
        events: list[ServerEvent] = []
        for event in held:
            key = name_key(event.room) if isinstance(event, History) and event.room else None
            if key is not None and key in self._floors:
                # A rejoin's join-time history overlaps the gap: only its new lines count.
                assert isinstance(event, History)
                events += _history_events(event)
            else:
                events.append(event)
        # The server sends a join, then the room's history: keep that order.
        joins = {
            name_key(e.room): e.id for e in events if isinstance(e, Joined) and e.nick == self.nick
        }

        def order(event: ServerEvent) -> float:
            if isinstance(event, History) and event.room and name_key(event.room) in joins:
                return joins[name_key(event.room)] + 0.5
            return _order(event)

        events.sort(key=order)
        for event in events:
            if isinstance(event, History):
                for item in _history_events(event):
                    if isinstance(item, Numbered):
                        self._seen.add(item.id)
            elif isinstance(event, Numbered):
                room = _room_of(event)
                floor = self._floors.get(name_key(room)) if room else None
                if floor is not None and event.id <= floor:
                    continue
                if not self._seen.add(event.id):
                    continue
                if self._resyncing and isinstance(event, Message):
                    self._missed += 1
            self._display(event)

    # ----------------------------------------------------------------------- receiving

    async def _receive_events(self, connection: ServerConnection) -> None:
        """Show every server event until ``bye`` or the end of the connection."""
        try:
            # open_connection opened with a ping: a chat server answers at once.
            with trio.move_on_after(ANSWER_TIMEOUT) as waiting:
                event = await connection.receive()
            if waiting.cancelled_caught:
                self._fail(f"no answer from {self.server} (is it a trio-chat server?)")
                return
            if not isinstance(event, Pong) or event.token != OPENING_PING.token:
                self._fail(self._not_a_chat_server(event))
                return
            pinged = False
            while True:
                quiet = PING_TIMEOUT if pinged else IDLE_TIMEOUT
                wait_until = min(trio.current_time() + quiet, self._hold_deadline)
                with trio.move_on_at(wait_until):
                    event = await connection.receive()
                    pinged = False
                    if not await self._handle(event, connection):
                        return
                    continue
                if trio.current_time() >= self._hold_deadline:
                    self._notice("the server did not answer the rejoin in time")
                    self._flush()
                elif pinged:
                    self._notice("the server stopped answering")
                    return
                else:
                    pinged = True
                    with contextlib.suppress(ConnectionLost):
                        await connection.send(Ping(token=KEEPALIVE_TOKEN))
        finally:
            self._session_over.set()

    def _fail(self, message: str) -> None:
        """The server at the other end is not one we can talk to."""
        if self.welcomed_once:
            self._problem(message)
        else:
            self.error = message

    def _not_a_chat_server(self, event: ServerEvent | RemoteProtocolError | None) -> str:
        server = self.server
        if event is None:
            return f"{server} closed the connection without a word: not a trio-chat server?"
        if isinstance(event, RemoteProtocolError):
            if event.code == "tls_required":
                return f"{server} speaks TLS: connect with --tls"
            if event.code == NOT_CHAT_HTTP:
                hint = ""
                if self.target.scheme in ("tcp", "tls"):
                    scheme = "wss" if self.target.secure else "ws"
                    host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
                    hint = f" (the WebSocket port? use {scheme}://{host}:{self.target.port}/)"
                return f"{server} is not a trio-chat server: it answers HTTP{hint}"
            if event.code == SERVER_TEXT:
                return f"{server}: {printable(event.message)}"
        return f"{server} is not a trio-chat server (it does not speak the protocol)"

    async def _handle(
        self, event: ServerEvent | RemoteProtocolError | None, connection: ServerConnection
    ) -> bool:
        """Take in one event; ``False`` once the connection is over."""
        if event is None:
            if not self.quitting and self.bye is None:
                if self.welcomed_once and self.reconnect:
                    self._problem(LOST)
                elif not self.welcomed_once:
                    self.error = LOST
            return False
        if isinstance(event, RemoteProtocolError):
            self._problem(event.message)
            return True
        if isinstance(event, ServerPing):
            # The server checks that we are still here; this is not for the screen.
            with contextlib.suppress(ConnectionLost):
                await connection.send(PongReply(token=event.token))
            return True
        if isinstance(event, Pong) and (event.token or "").startswith(OWN):
            token = event.token or ""
            if token.startswith(OWN + "sync:"):
                self._release(token.removeprefix(OWN))
            return True
        if isinstance(event, Pong) and not self.online and event.token == OPENING_PING.token:
            return True
        ref = getattr(event, "ref", None)
        if isinstance(ref, str) and ref.startswith(OWN):
            await self._own_reply(event, ref, connection)
            return True
        self._follow(event)
        if isinstance(event, Welcome | Error) and not self.online:
            if isinstance(event, Welcome) and self.welcomed_once:
                self._prepare_resync()
                if self.json_mode:
                    self._display(event)
            else:
                self._display(event)
            if isinstance(event, Welcome) or event.code in NICK_ERRORS | PASSWORD_ERRORS | {
                "nick_registered",
                "account_required",
                "store_error",
            }:
                with contextlib.suppress(trio.WouldBlock):  # only a broken server floods
                    self._answers_in.send_nowait(event)
            return True
        if isinstance(event, Bye):
            self.bye = event
            self._display(event)
            return False
        if (
            isinstance(event, Joined | Left)
            and event.nick == self.nick
            and name_key(event.room) in self._rejoining
        ):
            return True  # our own rejoin, or leaving #lobby again
        if self._holding(event):
            self._held.append(event)
            return True
        if isinstance(event, Numbered) and not self._seen.add(event.id):
            return True  # shown already (the server sent it twice)
        self._display(event)
        return True

    def _follow(self, event: ServerEvent) -> None:
        """Keep track of who we are, where we are and who is around."""
        if isinstance(event, Welcome):
            self.nick = event.nick
            if not self.welcomed_once:
                self.room = event.room
        elif isinstance(event, NickChanged):
            if event.old == self.nick:
                self.nick = event.new
            for state in self.rooms.values():
                if event.old in state.members:
                    state.members.discard(event.old)
                    state.members.add(event.new)
        elif isinstance(event, Joined):
            key = name_key(event.room)
            if event.nick == self.nick and key not in self.rooms:
                self.rooms[key] = RoomState(event.room)
            if key in self.rooms:
                self.rooms[key].members.add(event.nick)
        elif isinstance(event, Left):
            key = name_key(event.room)
            if event.nick == self.nick:
                self.rooms.pop(key, None)
            elif key in self.rooms:
                self.rooms[key].members.discard(event.nick)
        elif isinstance(event, Message):
            speaker_room = self.rooms.get(name_key(event.room))
            if speaker_room is not None:
                speaker_room.members.add(event.nick)
        elif isinstance(event, Info) and isinstance(event.data, dict):
            data = event.data
            if "topic" in data or "left" in data:
                # /join answers {"room", "topic"}, /part {"room", "left"}: "room" is current.
                room = data.get("room")
                self.room = room if isinstance(room, str) and room else None
            if isinstance(data.get("commands"), list):
                self.commands = sorted(
                    str(c.get("name")) for c in data["commands"] if isinstance(c, dict)
                )

    async def _own_reply(self, event: ServerEvent, ref: str, connection: ServerConnection) -> None:
        """The answer to a frame the client sent on its own behalf (or tagged)."""
        kind, _, key = ref.removeprefix(OWN).partition(":")
        self._follow(event)
        if kind == "who" and isinstance(event, Info) and isinstance(event.data, dict):
            users = event.data.get("users")
            state = self.rooms.get(key)
            if state is not None and isinstance(users, list):
                state.members = {str(u) for u in users}
        elif kind == "join" and isinstance(event, Error):
            state = self.rooms.pop(key, None)
            name = state.name if state else key
            self._problem(f"cannot join {name} again: {event.text}")
        elif kind == "gap":
            if isinstance(event, History):
                self._held += _history_events(event)
                if event.more and event.messages:
                    self._hold_deadline = trio.current_time() + HOLD_TIMEOUT  # progress
                    last = max(int(m.get("id", 0)) for m in event.messages)
                    with contextlib.suppress(ConnectionLost):
                        await connection.send(
                            HistoryRequest(room=event.room, after=last, limit=GAP_PAGE, ref=ref)
                        )
                    return
            elif isinstance(event, Error) and event.code == "no_store":
                self._notice("the server keeps no history: what was said meanwhile is lost")
            self._release(f"gap:{key}")
        elif kind == "acct":
            nick, password = self._pending_accounts.pop(ref, (None, ""))
            if isinstance(event, Info):
                if nick is not None:
                    self.nick = nick  # /login NICK: the server may have changed our nick
                if ref and password:
                    self.password = password
            self._display(event)

    # The server's replies to what the user typed with a ref of ours are shown as usual.


def _history_events(event: History) -> list[ServerEvent]:
    """The messages of a history page as events."""
    out: list[ServerEvent] = []
    for item in event.messages:
        try:
            out.append(decode_server_event(orjson.dumps(item)))
        except (RemoteProtocolError, TypeError):
            continue
    return out


def _order(event: ServerEvent) -> float:
    """Where a held event goes: by id; a history block just after its newest message."""
    if isinstance(event, Numbered):
        return float(event.id)
    if isinstance(event, History):
        ids = [m.get("id") for m in event.messages]
        return max((float(i) for i in ids if isinstance(i, int)), default=0.0) + 0.5
    return 0.0


def _is_join_history(event: ServerEvent) -> bool:
    """The history a server sends by itself on a join (not an answer to a request)."""
    return isinstance(event, History) and event.ref is None and event.room is not None


async def connect_and_chat(
    target: Target,
    nick: str | None,
    interactive: bool,
    ssl_context: ssl.SSLContext | None = None,
    *,
    json_mode: bool = False,
    reconnect: bool = True,
) -> int:
    """Chat (reconnecting as needed); print any error as one line on stderr. Return exit
    status."""
    colour = colour_wanted(_stdout_is_terminal())
    client: ChatClient | None = None

    def complete(text: str) -> tuple[int, list[str]]:
        return completions(client, text) if client is not None else (len(text), [])

    def page_up() -> None:
        if client is not None:
            client.older_history()

    async with open_terminal(interactive and not json_mode, complete, page_up) as terminal:
        client = ChatClient(
            target,
            terminal,
            nick,
            ssl_context=ssl_context,
            json_mode=json_mode,
            reconnect=reconnect,
            colour=colour,
        )
        code = await client.run()
    # Printed only now, after the prompt is gone, so it lands on the real stderr.
    if client.error is not None:
        _print_error(client.error)
    return code


def completions(client: ChatClient, text: str) -> tuple[int, list[str]]:
    """Tab completion of ``text`` (what is before the cursor): a command after a leading
    ``/``, a room after ``#``, a nick otherwise (``nick: `` at the start of a line).

    Returns where the completed word starts and what it may become. Runs in the prompt's
    thread: it only reads, and copies before it iterates.
    """
    start = max(text.rfind(" "), text.rfind("\t")) + 1
    word = text[start:]
    if start == 0 and word.startswith("/") and not word.startswith("//"):
        prefix = word[1:].lower()
        return start, [f"/{c} " for c in list(client.commands) if c.startswith(prefix)]
    if word.startswith("#"):
        rooms = [state.name for state in list(client.rooms.values())]
        return start, [r + " " for r in rooms if r.casefold().startswith(word.casefold())]
    if not word:
        return start, []
    current: RoomState | None = None
    if client.room:
        current = client.rooms.get(name_key(client.room))
    nicks: list[str] = sorted(current.members) if current else []
    for state in list(client.rooms.values()):
        nicks += sorted(set(state.members) - set(nicks))
    suffix = ": " if start == 0 else " "
    found = [n for n in nicks if n.casefold().startswith(word.casefold()) and n != client.nick]
    return start, [n + suffix for n in dict.fromkeys(found)]


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _print_error(message: str) -> None:
    print(f"trio-chat: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _sigint_receiver() -> Iterator[AsyncIterator[int] | None]:
    # Trio can only listen for signals from the main thread; elsewhere leave SIGINT alone.
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        yield signals


async def _main(
    target: Target,
    nick: str | None,
    interactive: bool,
    ssl_context: ssl.SSLContext | None,
    json_mode: bool,
    reconnect: bool,
) -> int:
    code = EXIT_INTERRUPTED
    with _sigint_receiver() as signals:
        async with trio.open_nursery() as nursery:
            if signals is not None:
                # Ctrl-C while no prompt owns the terminal (connecting, piped input) arrives
                # as SIGINT: cancel everything, which closes the connection and the prompt.
                async def cancel_on_sigint() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(cancel_on_sigint)
            code = await connect_and_chat(
                target, nick, interactive, ssl_context, json_mode=json_mode, reconnect=reconnect
            )
            nursery.cancel_scope.cancel()
    return code


def run_client(
    host: str,
    port: int,
    nick: str | None,
    *,
    tls: bool = False,
    ca_file: str | None = None,
    insecure: bool = False,
    json_mode: bool = False,
    reconnect: bool = True,
) -> int:
    """Run the terminal client (``trio-chat connect HOST --port PORT --nick NICK``).

    ``host`` is a host name (TCP, JSON lines on ``port``; over TLS if ``tls``), a
    ``tls://host:port`` URL, or a ``ws://``/``wss://`` URL. TLS certificates are checked
    against the system's CAs plus ``ca_file``; ``insecure`` checks nothing (with a warning).
    ``nick`` ``None`` means: ask. ``json_mode`` prints the server's events as JSON lines;
    ``reconnect`` ``False`` ends the client with its connection. Returns the exit status.
    """
    try:
        target = parse_target(host, port, tls=tls)
        if (ca_file is not None or insecure) and not target.secure:
            option = "--insecure" if insecure else "--ca"
            raise BadTarget(f"{option} is for TLS: add --tls (or use tls:// or wss://)")
        if json_mode and nick is None:
            raise BadTarget("--json needs --nick")
        context = client_ssl_context(ca_file, insecure) if target.secure else None
    except (BadTarget, TlsSetupError) as exc:
        _print_error(str(exc))
        return 2
    if insecure:
        _print_error(INSECURE_WARNING)
    try:
        return trio.run(_main, target, nick, stdin_is_terminal(), context, json_mode, reconnect)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as group:
        _, rest = group.split(KeyboardInterrupt)
        if rest is None:
            return EXIT_INTERRUPTED
        raise
