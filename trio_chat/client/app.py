"""``trio-chat connect``'s session: the chat that outlives its connections, and what ties
the client's parts together.

:func:`~.main.run_client` opens the user's end (:mod:`.terminal`) once, then
:class:`ChatClient` keeps a connection (:mod:`.connection`) to the server for as long as
the user wants one. The parts it orchestrates live apart, each testable on its own:
logging in (:mod:`.login`), reconnecting and filling gaps without I/O (:mod:`.resume`),
what a typed line becomes and what waits while offline (:mod:`.outbox`), Tab completion
(:mod:`.completion`) and the lines shown (:mod:`.render`).
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

**Another connection of the same account.** Logged in beside it (a phone, a browser tab),
the client is told in the welcome every room the user is in (``rooms``; no ``join`` comes
for them) and takes them as its own: the prompt, completion, ``/part`` and the rejoin after a
reconnect know them, and the welcome line says ``now on 2 connections``.

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

import contextlib
import dataclasses
import ssl

import trio

from ..names import name_key
from ..protocol import (
    Bye,
    Command,
    Error,
    History,
    HistoryRequest,
    Info,
    Joined,
    Left,
    MarkRead,
    Message,
    NickChanged,
    Ping,
    Pong,
    PongReply,
    Quit,
    ReadMarker,
    RemoteProtocolError,
    Say,
    SearchResults,
    ServerEvent,
    ServerPing,
    Typing,
    TypingNotice,
    Welcome,
    encode_server_event,
)
from .completion import BASE_COMMANDS, known_commands
from .connection import (
    OPENING_PING,
    ConnectError,
    ConnectionLost,
    ServerConnection,
    Target,
    not_a_chat_server,
    open_connection,
)
from .events import (
    Outgoing,
    WireFrame,
)
from .login import HELLO_ERRORS, hello, log_in
from .message_commands import SearchPaging, in_room_of_message
from .outbox import OWN, Outbox, is_quit, new_room, parse_typed
from .presence import READ_INTERVAL, ReadMarks, TypingNow, TypingSender
from .render import Renderer
from .resume import (
    GAP_PAGE,
    Numbered,
    Resume,
    RoomState,
    backoff_delay,
    history_events,
    room_of,
)
from .shown import ShownMessages
from .terminal import InputEnd, Terminal, print_error, printable

#: Seconds to wait for the server's ``bye`` after we said we quit.
QUIT_TIMEOUT = 3.0
#: Seconds the server has to answer the opening ping before we give up on it.
ANSWER_TIMEOUT = 10.0
#: Seconds of silence from the server before we ping it (as the server pings us), and then
#: for its answer: a connection whose other end vanished without closing it is noticed.
IDLE_TIMEOUT = 60.0
PING_TIMEOUT = 30.0
LOST = "connection to server lost"
#: Exit status after Ctrl-C, as a shell reports a process killed by SIGINT.
EXIT_INTERRUPTED = 130
KEEPALIVE_TOKEN = OWN + "alive"


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
        #: The messages shown lately, to name them (``/react 123 👍``) and what they became.
        self.shown = ShownMessages()
        self.renderer = Renderer(colour and not json_mode, self.shown)
        #: Who is typing (shown in the terminal's status line, when it has one).
        self.typing = TypingNow()
        self._typing_changed = trio.Event()
        #: Whether and when to tell others the user is typing (at a prompt only).
        self.typing_sender = TypingSender()
        #: The ``read`` markers to send for what was shown, and the last search, to page.
        self.reads = ReadMarks()
        self._reads_due = trio.Event()
        self.searches = SearchPaging()
        #: Logged in to an account (read markers are kept for accounts only).
        self.account = False
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
        #: What is held back for a rejoin or a /join, and what was shown already.
        self.resume = Resume()
        #: Typed frames tagged with our refs, or waiting to be sent once back.
        self.outbox = Outbox()

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
        self.resume.reset()
        self.typing = TypingNow()  # nobody is known to be typing any more
        self._refresh_status()
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
            nursery.start_soon(self._send_read_markers, connection)
            nursery.start_soon(self._expire_typing)
            await trio.sleep_forever()  # the receiver ends the session

    # ------------------------------------------------------------------------ logging in

    async def _log_in(self, connection: ServerConnection) -> bool:
        """Ask for a nick (and password) until the server welcomes us; ``False`` if the
        user gave up."""
        show_questions = not self.terminal.interactive and not self.json_mode
        result = await log_in(
            self.terminal,
            connection,
            self._answers_out,
            self.nick,
            show_questions=show_questions,
            typing=self._shows_typing,
        )
        if isinstance(result, InputEnd):
            await self._quit(result, connection)
            return False
        self.password = result.password
        await self._welcomed(connection, first=True)
        return True

    async def _log_back_in(self, connection: ServerConnection) -> None:
        """After a reconnect: the same nick, and the same account."""
        assert self.nick is not None
        await connection.send(hello(self.nick, self.password, typing=self._shows_typing))
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
        while self.outbox.queued and self.online:
            await self._send(self.outbox.queued.popleft())

    async def _resync(self, connection: ServerConnection) -> None:
        """Join every room again, the current one last, and ask for each room's gap."""
        self._notice(f"reconnected to {self.server}")
        leave_lobby, joins = self.resume.rejoins(self.rooms)
        if leave_lobby:
            await connection.send(Command(name="part", args="#lobby", ref=OWN + "part"))
        for key in joins:
            name = self.rooms[key].name
            await connection.send(Command(name="join", args=name, ref=f"{OWN}join:{key}"))
        for key, floor in self.resume.gaps(self.rooms, trio.current_time()):
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
            self.typing_sender.said()
            try:
                frame = parse_typed(line, self.json_mode)
            except RemoteProtocolError as exc:
                self._problem(exc.message)
                continue
            if frame is None:
                continue
            if is_quit(frame):
                self.quitting = True
                if self.online:
                    await self._send(frame)
                await self._finish()
                return
            await self._submit(frame)

    async def _submit(self, frame: Outgoing) -> None:
        """Send a typed frame, with what the client needs to follow it."""
        if isinstance(frame, WireFrame):
            await self._submit_wire(frame)
            return
        frame = self.outbox.tag(frame)
        key = new_room(frame, self.rooms) if self.online else None
        if key is not None:
            # Hold the room's lines until the server has answered the join.
            self.resume.hold(f"sync:{key}", trio.current_time())
            await self._send(frame)
            await self._send(Ping(token=f"{OWN}sync:{key}"))
            return
        if isinstance(frame, Say) and frame.room is None and not self.online:
            frame = dataclasses.replace(frame, room=self.room)
        await self._send(frame)

    async def _submit_wire(self, frame: WireFrame) -> None:
        """A frame about a message (or a search): to the room of the message it names."""
        if frame.kind == "search":
            paged = self.searches.next_frame(frame)
            if isinstance(paged, str):
                self._problem(paged)
                return
            frame = paged
        frame = in_room_of_message(frame, self.shown)
        if frame.kind != "search" and frame.room is None and not self.online and self.room:
            frame = frame.with_fields(room=self.room)  # where it was typed, not where we land
        await self._send(frame)

    def older_history(self) -> None:
        """PageUp: show the current room's older lines (``/history``), above the prompt."""
        if self.online and self.room and self._nursery is not None:
            self._nursery.start_soon(self._send, Command(name="history", room=self.room))

    async def _send(self, frame: Outgoing) -> None:
        """Send now, or keep for when we are back."""
        connection = self.connection
        if connection is not None and self.online:
            with contextlib.suppress(ConnectionLost):
                await connection.send(frame)
                return
        kept = self.outbox.keep(frame)
        if kept == "full":
            self._problem("not connected: line dropped (too many waiting)")
        elif kept == "kept":
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
            print_error(text)
        else:
            self.terminal.show(self.renderer.notice(text))

    def _problem(self, text: str) -> None:
        if self.json_mode:
            print_error(text)
        else:
            self.terminal.show(self.renderer.problem(text))

    def _display(self, event: ServerEvent) -> None:
        """Show one event (after any hold), and remember it as shown."""
        room = room_of(event)
        if isinstance(event, Numbered) and room is not None:
            state = self.rooms.get(name_key(room))
            if state is not None:
                state.last_id = max(state.last_id or 0, event.id)
        self._shown(event)
        if self.json_mode:
            self.terminal.show(encode_server_event(event))
        else:
            self.renderer.nick = self.nick
            self.renderer.room = self.room
            line = self.renderer.line(event)
            if line:
                self.terminal.show(line)
        self.shown.remember(event)

    def _shown(self, event: ServerEvent) -> None:
        """What showing ``event`` tells: a typist who spoke stopped typing; the user has
        read the current room up to its message."""
        if isinstance(event, Message) and self.typing.stopped(event.nick, event.room):
            self._typing_changed.set()
        newest: int | None = None
        if isinstance(event, Message) and self._is_current(event.room):
            newest = event.id
        elif isinstance(event, History) and event.room and self._is_current(event.room):
            ids = [m.get("id") for m in event.messages if isinstance(m, dict)]
            newest = max((i for i in ids if isinstance(i, int)), default=None)
        if (
            newest is not None
            and self.account
            and self.room
            and self.reads.shown(self.room, newest)
        ):
            self._reads_due.set()

    def _is_current(self, room: str) -> bool:
        return self.room is not None and name_key(room) == name_key(self.room)

    def _release(self, name: str) -> None:
        """Hold ``name`` is over: show what it held back."""
        self._show(*self.resume.release(name, self.nick))

    def _flush(self) -> None:
        """Show everything held back, and end any resync."""
        self._show(*self.resume.flush(self.nick))

    def _show(self, events: list[ServerEvent], resync_ended: bool) -> None:
        for event in events:
            self._display(event)
        if resync_ended:
            rooms = ", ".join(state.name for state in self.rooms.values()) or "no room"
            missed = f"; {self.resume.missed} new messages" if self.resume.missed else ""
            self._notice(f"back in {rooms}{missed}")

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
                self._fail(not_a_chat_server(self.target, event))
                return
            pinged = False
            while True:
                quiet = PING_TIMEOUT if pinged else IDLE_TIMEOUT
                wait_until = min(trio.current_time() + quiet, self.resume.deadline)
                with trio.move_on_at(wait_until):
                    event = await connection.receive()
                    pinged = False
                    if not await self._handle(event, connection):
                        return
                    if self.resume.changed.due and not self.resume.resyncing:
                        # Back (the "-- back in" line is out): what changed meanwhile.
                        for key, after in self.resume.changed.ask_due():
                            await self._ask_changes(connection, key, after)
                    continue
                if trio.current_time() >= self.resume.deadline:
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
                self.resume.start(self.rooms, self.room, trio.current_time())
                if self.json_mode:
                    self._display(event)
            else:
                self._display(event)
            if isinstance(event, Welcome) or event.code in HELLO_ERRORS:
                with contextlib.suppress(trio.WouldBlock):  # only a broken server floods
                    self._answers_in.send_nowait(event)
            return True
        if isinstance(event, Bye):
            self.bye = event
            self._display(event)
            return False
        if isinstance(event, Typing | ReadMarker):
            self._presence(event)
            return True
        if isinstance(event, SearchResults):
            ids = [m.get("id") for m in event.messages if isinstance(m, dict)]
            oldest = min((i for i in ids if isinstance(i, int)), default=None)
            self.searches.answered(oldest, event.more)
        if self.resume.is_own_rejoin(event, self.nick):
            return True  # our own rejoin, or leaving #lobby again
        if self.resume.holding(event):
            self.resume.held.append(event)
            return True
        if isinstance(event, Numbered) and not self.resume.seen.add(event.id):
            return True  # shown already (the server sent it twice)
        self._display(event)
        return True

    def _follow(self, event: ServerEvent) -> None:
        """Keep track of who we are, where we are and who is around."""
        if isinstance(event, Welcome):
            self.nick = event.nick
            self.account = event.account
            # A server keeping read markers says where the account's are.
            read = getattr(event, "read", None)
            for room, message_id in (read if isinstance(read, dict) else {}).items():
                if isinstance(room, str) and isinstance(message_id, int):
                    self.reads.known(room, message_id)
            if not self.welcomed_once:
                self.room = event.room
            # Logged in beside another connection of ours: the user is in these rooms
            # already, and no join comes for them.
            for name in event.rooms or ():
                self.rooms.setdefault(name_key(name), RoomState(name))
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
            if self.typing.stopped(event.nick, event.room):
                self._typing_changed.set()
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
                self._typing_changed.set()  # the status line is the current room's
            if isinstance(data.get("commands"), list):
                self.commands = known_commands(
                    [str(c.get("name")) for c in data["commands"] if isinstance(c, dict)]
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
                self.resume.held += history_events(event)
                if event.more and event.messages:
                    self.resume.progress(trio.current_time())
                    last = max(int(m.get("id", 0)) for m in event.messages)
                    with contextlib.suppress(ConnectionLost):
                        await connection.send(
                            HistoryRequest(room=event.room, after=last, limit=GAP_PAGE, ref=ref)
                        )
                    return
            elif isinstance(event, Error) and event.code == "no_store":
                self._notice("the server keeps no history: what was said meanwhile is lost")
                self.resume.changed.due.pop(key, None)
            self._release(f"gap:{key}")
        elif kind == "changes":
            await self._changes(event, key, connection)
        elif kind == "acct":
            nick, password = self.outbox.pending_accounts.pop(ref, (None, ""))
            if isinstance(event, Info):
                if nick is not None:
                    self.nick = nick  # /login NICK: the server may have changed our nick
                if ref and password:
                    self.password = password
                    self.account = True
            self._display(event)

    # The server's replies to what the user typed with a ref of ours are shown as usual.

    # ------------------------------------------------------- what changed while away

    async def _ask_changes(self, connection: ServerConnection, key: str, after: int) -> None:
        """Ask for room ``key``'s messages changed (edited, deleted, reacted to) by a
        change numbered above ``after`` (:class:`~.resume.ChangedMeanwhile`)."""
        state = self.rooms.get(key)
        if state is None:
            self.resume.changed.forget(key)
            return
        fields = {"room": state.name, "changed_after": after, "limit": GAP_PAGE}
        with contextlib.suppress(ConnectionLost):
            await connection.send(WireFrame("history", fields, ref=f"{OWN}changes:{key}"))

    async def _changes(self, event: ServerEvent, key: str, connection: ServerConnection) -> None:
        """A page of changed messages: show them as they are now; ask for the next."""
        if not isinstance(event, History):
            self.resume.changed.forget(key)  # refused: nothing to show
            return
        shown, after = self.resume.changed.page(key, event.messages, event.more)
        if shown:
            page = History(room=event.room, messages=shown)
            if self.json_mode:
                self._display(page)
            else:
                self.renderer.nick, self.renderer.room = self.nick, self.room
                self.terminal.show(self.renderer.changed_while_away(page))
                self.shown.remember(page)
        if after is not None:
            await self._ask_changes(connection, key, after)

    # ------------------------------------------------------------- typing and read

    @property
    def _shows_typing(self) -> bool:
        """Ask for typing notices only when they can be shown (a status line)."""
        return self.terminal.has_status and not self.json_mode

    def typed(self, text: str) -> None:
        """The prompt's line is now ``text`` (called on every key): tell the room's
        members that the user is typing, or stopped (thinned by :class:`TypingSender`)."""
        if not self.online or self.json_mode or self._nursery is None:
            return
        notice = self.typing_sender.changed(text, self.room, trio.current_time())
        if notice is not None:
            room, active = notice
            self._nursery.start_soon(self._send_typing, room, active)

    async def _send_typing(self, room: str, active: bool) -> None:
        # Now or never: a notice kept for after a reconnect would be stale.
        connection = self.connection
        if connection is not None and self.online:
            with contextlib.suppress(ConnectionLost):
                await connection.send(TypingNotice(room=room, active=active))

    def _presence(self, event: Typing | ReadMarker) -> None:
        if self.json_mode:
            self._display(event)
        if not isinstance(event.room, str):
            return  # a broken frame: nothing to keep
        if isinstance(event, Typing):
            if event.nick != self.nick and isinstance(event.nick, str):
                self.typing.notice(event.room, event.nick, event.active, trio.current_time())
                self._typing_changed.set()
        else:
            if isinstance(event.message_id, int):
                self.reads.known(event.room, event.message_id)

    def _refresh_status(self) -> None:
        if self.terminal.has_status:
            self.terminal.set_status(self.typing.status(self.room, trio.current_time()))

    async def _expire_typing(self) -> None:
        """Keep the status line right: redraw it when a notice comes or runs out."""
        while True:
            self._refresh_status()
            with trio.move_on_at(self.typing.next_change()):
                await self._typing_changed.wait()
            self._typing_changed = trio.Event()

    async def _send_read_markers(self, connection: ServerConnection) -> None:
        """Tell the server how far the user has read, at most once per READ_INTERVAL."""
        while True:
            await self._reads_due.wait()
            self._reads_due = trio.Event()
            for room, message_id in self.reads.take():
                with contextlib.suppress(ConnectionLost):
                    await connection.send(MarkRead(room=room, id=message_id))
            await trio.sleep(READ_INTERVAL)
