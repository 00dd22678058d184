"""A logged-in connection: its reader (flood control, one frame at a time), its writer
(a task only while something is queued), and its spells between parkings
(:class:`Resident`).

A connection is one :class:`~trio_chat.hub.Device` of its user's session: it parks, is
pinged and is closed on its own; its user leaves the rooms when its last connection ends.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

import trio

from ..hub import Device, Session, serving
from ..limits import (
    FLOODING,
    FRAME_COST,
    SLOW_DOWN,
    Overhead,
    Verdict,
)
from ..mailbox import Mailbox
from ..protocol import (
    Bye,
    ClientFrame,
    Error,
    RemoteProtocolError,
    Say,
    SayLines,
    error_reply,
)
from .handshake import flood_guard, frame_cost
from .link import GOODBYE_TIMEOUT, Link, LinkTurn, close_link, count_out, say_goodbye
from .parking import Woken
from .streams import read_nowait

if TYPE_CHECKING:
    from .host import ChatHost

log = logging.getLogger("trio_chat.connection")


#: Label values of ``trio_chat_disconnects_total`` for the ends the connection noticed itself
#: (free-text reasons must never be labels: each distinct value is a time series).
_REASON_CODES = {
    "connection closed": "closed",
    "connection lost": "connection_lost",
    "write timed out": "write_timeout",
    "ping timeout": "ping_timeout",
}


#: Frames a reader handles in a row before it lets other tasks run. One read may bring
#: thousands of tiny frames (a 64 KiB read holds 10,000 empty WebSocket frames), and
#: handling a frame need not yield; with a flood budget as large as the tests' that would
#: let one connection hold the whole server for the length of its read. (Under the default
#: flood limits a flooder soon waits or is refused anyway.) Not fewer: a yield in the middle
#: of a read lets the publisher take a partial batch, and at 64 frames the bench's fan-out
#: at N=100 lost 12-15% of its deliveries per second (reads of up to ~1,000 frames there).
FRAMES_PER_STEP = 1024

#: Seconds: a reader whose last wait for input was shorter is *busy* (its input comes
#: every few milliseconds: see :meth:`Resident.run`).
BUSY_WAIT = 0.05

#: Whether a reader takes what arrived in runs (see :meth:`Resident._handle_runs`), on a
#: link that hands them over (a :class:`RunLink`: TCP, and a WebSocket, whose frames that
#: need an answer come as :data:`~.link.LINK_TURN`; not IRC, which answers some commands
#: itself in between). Off, every frame is read, checked and handled on its own: tests
#: compare the two.
SAY_RUNS = True


#: What :meth:`RunLink.receive_ready` hands over, item by item.
RunItem = ClientFrame | SayLines | RemoteProtocolError | Overhead | LinkTurn | None


def hands_runs(link: Link) -> bool:
    """Whether the reader takes what arrives on ``link`` in runs (:data:`SAY_RUNS`, and
    a :class:`RunLink`: one whose class says ``hands_runs``)."""
    return SAY_RUNS and getattr(link, "hands_runs", False)


class _Rest:
    """What :meth:`Resident._say_arrived` left of what arrived, for
    :meth:`Resident._handle_runs` to go on with: the items from the first it did not
    handle, the frames it handled (see :data:`FRAMES_PER_STEP`), the plain says it did
    not yet hand to the server."""

    __slots__ = ("handled", "items", "run")

    def __init__(self, items: list[RunItem], handled: int, run: SayLines | None) -> None:
        self.items = items
        self.handled = handled
        self.run = run


def _split_run(
    run: SayLines | None, item: SayLines, went: int
) -> tuple[SayLines | None, list[RunItem]]:
    """Flood control let only the first ``went`` lines of ``item`` go on at once: ``run``
    with those after it (a new run if ``None``), and what is left to handle, in order: the
    next line alone (its own verdict), then the rest as a run again."""
    if went:
        if run is None:
            run = item.part(0, went)
        else:
            run.add(item, 0, went)
    left: list[RunItem] = [item.frame(went)]
    if went + 1 < len(item):
        left.append(item.part(went + 1))
    return run, left


class RunLink(Link, Protocol):
    """A link which also hands over every frame that has arrived in one call."""

    #: True: this link has :meth:`receive_ready`.
    hands_runs: bool

    def receive_ready(self) -> list[RunItem]:
        """What :meth:`~Link.receive` would return, call after call, for (some of) the
        frames that have arrived, without reading the socket (empty when none has), with
        plain ``say`` frames that come one after another as one :class:`SayLines`; a
        frame that only :meth:`~Link.receive` may take (it writes or waits) as
        :data:`~.link.LINK_TURN`, the list's last item."""
        ...


class Resident:
    """A logged-in connection: what lives as long as it does, whichever task serves it.

    It is served in *spells*, each one task: the reader. Writing needs no task of its own
    while the socket takes what the hub writes to it directly (see
    :mod:`trio_chat.mailbox`); only when something is queued (the socket was full, or the
    transport cannot write directly) is a writer task started, which writes until nothing
    is left and then ends. So a busy connection has one task, not two: a task, with its
    coroutine frames and cancel scopes, is most of what a connection costs (bench/README.md,
    "Memory per connection").

    A spell ends when the connection ends (and then says goodbye and cleans up), or when
    the connection has been idle for ``config.park_after`` seconds: then the connection
    parks (see :mod:`trio_chat.transports.parking`) until its socket has input, its mailbox
    has something its socket would not take, or its session is closed; then :meth:`resume`
    starts the next spell in a new task.
    """

    __slots__ = (
        "_parked",
        "_reading",
        "_write_failed",
        "_writer_done",
        "_writer_scope",
        "device",
        "flood",
        "link",
        "release",
        "server",
    )

    def __init__(
        self, server: ChatHost, link: Link, device: Device, release: Callable[[], None]
    ) -> None:
        self.server = server
        self.link = link
        self.device = device
        self.release = release
        # Kept across spells: a flooder's strikes are not forgiven by a pause.
        self.flood = flood_guard(server)
        self._parked = False
        #: The spell's reading scope while it reads (a failed write cancels it).
        self._reading: trio.CancelScope | None = None
        #: The writer task's scope while one runs (its deadline is the write's).
        self._writer_scope: trio.CancelScope | None = None
        #: Why the last writer could not write (``None``: it could).
        self._write_failed: str | None = None
        #: Set when the writer task ends, made only while someone waits for that.
        self._writer_done: trio.Event | None = None

    @property
    def session(self) -> Session:
        """The user this connection is one of."""
        return self.device.session

    @property
    def writing(self) -> bool:
        """Whether a writer task runs now (something queued, or a write under way)."""
        return self._writer_scope is not None

    async def start(self) -> None:
        """Serve the connection from its log-in on. One that has said nothing more parks at
        once: a crowd logging in then never holds a task per user, which would leave
        the server's memory at that peak (freed task memory is reused, not returned).
        One with more to do is served in a new task, so that the task that accepted and
        logged it in ends, with all it held (about 1.5 KiB: its frames, the arrival, the
        handshake's scopes)."""
        if self._park():
            return
        try:
            self.server.start_connection_task(self.run)
        except RuntimeError:  # the server stops serving: this task serves on, to the end
            await self.run()

    async def run(self) -> None:
        """Serve spells until the connection ends or parks; clean up if it ended.

        Runs in a task of the server's own (a new one after each parking), so nothing it
        raises may escape: a failure ends this connection only (logged), never the server.

        A spell reads until the connection ends or idles, then ends (:meth:`_end_spell`).
        Its reading acts on every frame the peer sends until it closes or stops sending;
        it stops early when the reading is stopped (the server hung up, a write failed:
        see :meth:`_stop_reading`) or when nothing came for ``park_after`` seconds (the
        spell's end then checks that nothing is left to write, and the connection parks).

        Only the wait for input has that deadline: cancelling a read loses nothing,
        cancelling a command half-way would. A connection that may park waits in the
        parking lot (:meth:`~trio_chat.transports.parking.ParkingLot.wait_readable`, which
        keeps the deadline; a hang-up interrupts it) and reads its socket itself, and only
        what it does with a read's frames (:meth:`_handle_input`) is in a cancel scope (the
        hang-up cancels it), and only when that may wait: a read of plain says that flood
        control lets go on at once (what a chatting client sends) is handed to the server
        with nothing awaited (:meth:`_say_arrived`), so there is nothing to cancel, and a
        hang-up meanwhile is seen right after it (:attr:`_stopped`). Any other connection
        waits with trio (:meth:`Link.fill`, no deadline: it never parks), all in one
        scope. The reading is written out here, not in a method of its own: a busy
        connection waits for input nearly all the time, and every coroutine frame under
        this one, and every scope, would be held meanwhile (0.3 KiB for a frame, 0.75 KiB
        for a scope and its status; bench/README.md, "Memory per connection").

        A *busy* reader, whose last read came after a wait of less than
        :data:`BUSY_WAIT` (a client saying lines a few milliseconds apart), does not read
        its socket again before the next wait (it would almost never have more yet, and
        the wait finds out as well: epoll reports a socket that is ready as it is armed),
        and its wait is watched by trio's own epoll, which wakes it directly (no step of
        the lot's task, no scheduling round of its own; ``busy`` in
        :meth:`~trio_chat.transports.parking.ParkingLot.wait_readable`). Any other reader
        tries a read first (a client at full speed: its lines are there), and waits in the
        lot's set, which keeps less memory meanwhile (a client saying a line now and
        then: the lot's step is once a line, not often).

        Flood control happens in :meth:`_handle_input`, in the sender's own task and
        before the hub, so nobody else waits for a flooder: a frame over the rate waits
        (fakelag) before it is handled, and nothing more is read meanwhile. That wait has
        no idle deadline, so a connection held back does not park; closing the session
        cancels the wait.
        """
        parked = False
        reason: str | None = "connection closed"
        # A resumed spell's task was started by whoever woke it: replies go to this one.
        serving.set(self.device)
        link, lot = self.link, self.server.parking
        park_after = self.server.config.park_after
        # A task's first step is a scheduling round of its own: the first read of a
        # resumed spell (the lot resumed it because its socket had input) needs no other.
        scheduled = True
        try:
            while True:
                self._begin_spell()
                fd = link.park_fd if lot.available else None
                # Plain says said with no scope where the link hands over runs (TCP, and
                # WebSocket).
                runs = fd is not None and hands_runs(link)
                ended: str | None = None
                busy = False  # whether the last read came after a short wait
                drained = False  # whether all that arrived was said (nothing waits: wait)
                while True:
                    if fd is not None and (drained or not link.input_waiting()):
                        drained = False
                        if self._stopped:
                            break
                        # What receive_on_fd does (a read that gets something at once is
                        # followed by a checkpoint that cannot be cancelled, so cancelling
                        # never loses bytes), but waiting in the lot, whose wait is all
                        # the checkpoint the read after it needs.
                        data = None
                        if not busy:
                            await trio.lowlevel.checkpoint_if_cancelled()
                            data = read_nowait(fd)
                        if data is None:
                            while data is None:
                                # (A busy reader's last input came a moment ago: its time
                                # is the wait's start, without reading the clock again.)
                                deadline = park_after + (
                                    link.last_heard if busy else trio.current_time()
                                )
                                if (
                                    await lot.wait_readable(fd, deadline, busy=busy)
                                    is not Woken.READABLE
                                ):
                                    break  # idle, or interrupted: the spell's end sees which
                                data = read_nowait(fd)
                            if data is None:
                                break
                            link.feed(data)
                            # How long it waited (since park_after before its deadline).
                            busy = link.last_heard - deadline < BUSY_WAIT - park_after
                        else:
                            if not scheduled:
                                await trio.lowlevel.cancel_shielded_checkpoint()
                            busy = False
                            link.feed(data)
                        scheduled = False
                    rest: _Rest | None = None
                    if runs:
                        arrived = self._say_arrived(link)  # type: ignore[arg-type]  # (a RunLink)
                        if arrived is None:
                            # (_say_arrived asked: no whole frame is left. A hang-up while
                            # they were said, a quit among them, is seen at the top.)
                            drained = True
                            continue
                        if type(arrived) is str:  # the peer closed after what it said
                            ended = arrived
                            break
                        rest = cast(_Rest, arrived)
                    with trio.CancelScope() as reading:
                        self._reading = reading
                        if self._stopped:  # closed before we could listen, or while we read
                            reading.cancel()
                        try:
                            ended = await self._handle_input(fd is None, rest)
                        finally:
                            self._reading = None
                    if ended is not None or reading.cancel_called:
                        break
                    del reading, rest  # not kept in this frame while it waits again
                reason = await self._end_spell(ended)
                if reason is not None:
                    break
                if self._park():
                    parked = True
                    return
        except Exception:
            log.exception("connection of %s from %s failed", self.device.nick, self.link.address)
        finally:
            if not parked:
                await self._stop_writer()
                await self.end(reason or "connection closed")

    def resume(self) -> None:
        """Start the next spell (whatever woke the parked connection first calls this;
        later calls find it unparked and do nothing)."""
        if not self._unpark():
            return
        try:
            self.server.start_connection_task(self.run)
        except RuntimeError:  # the server has stopped serving: nobody to run it
            self._drop()

    def __call__(self) -> None:
        """What the mailbox calls: while parked, at anything (:meth:`resume`); in a spell,
        when the server hangs up (:meth:`_stop_reading`). (The connection itself, rather
        than a bound method made at each spell and each parking: 64 bytes each.)"""
        if self._parked:
            self.resume()
        else:
            self._stop_reading()

    def abandon(self) -> None:
        """The server is gone while this connection was parked: close it without a word."""
        if self._unpark():
            self._drop()

    def _drop(self) -> None:
        self.link.abort()
        self._forget(self.device.ending[1] or "server stopped")
        count_out(self.server, self.link, self.release)

    def _unpark(self) -> bool:
        """Take back every way of being woken (whichever woke it used its own already);
        whether it was parked."""
        if not self._parked:
            return False
        self._parked = False
        assert self.link.park_fd is not None
        self.server.parking.unpark(self.link.park_fd)
        self.device.mailbox.unpark()
        self.server.metrics.parked.dec()
        return True

    def _park(self) -> bool:
        """Hand the connection over to the parking lot if it is still idle; whether it did."""
        device, mailbox, fd = self.device, self.device.mailbox, self.link.park_fd
        if fd is None or not self.server.parking.available:
            return False
        if device.closed or self.server.stopping or self.writing:
            return False
        if self.link.input_waiting() or not mailbox.park(self):
            return False  # woken while its spell ended: serve on
        self.server.parking.park(fd, self)
        self._parked = True
        self.server.metrics.parked.inc()
        return True

    def _begin_spell(self) -> None:
        """Ready the connection to be read until it ends or idles (in :meth:`run`)."""
        mailbox = self.device.mailbox
        self._write_failed = None
        # The server ends a session (quit, kick off, flooding, slow, shutdown) by stopping
        # its reader; what is queued is still delivered after.
        mailbox.call_on_hang_up(self)
        if not mailbox.call_when_queued(self._start_writer) and not mailbox.closed:
            self._start_writer()  # queued while no spell ran

    async def _end_spell(self, ended: str | None) -> str | None:
        """The reading stopped (``ended``: why, if the reading knew): why the
        connection ends, after its goodbye; ``None`` if it only idles (the caller parks
        it, or starts the next spell if it has work after all)."""
        server, link, device = self.server, self.link, self.device
        mailbox = device.mailbox
        if ended is None and not device.closed and self._write_failed is None:
            mailbox.call_on_hang_up(None)
            mailbox.call_when_queued(None)  # a writer still running re-arms itself
            return None
        reason = self._write_failed or ended or "connection closed"
        if self._write_failed is None:
            close_reason = device.ending[1]
            if close_reason is not None:
                reason = close_reason
            # Whatever stopped the reading (the peer closed or only stopped sending, or the
            # server ended it): what is queued is written, the connection's own last lines
            # included, then the bye, all within a bounded time. When nothing is in flight
            # and no writer runs (a quiet end), nothing is waited for: no scope.
            # A connection whose last line is in flight waits for it without a scope of
            # its own (the settler keeps its deadline: see settling.py); a scope only for
            # a writer to wait for or what is queued, within the same deadline.
            quiet = server.settled_now() and not self.writing
            settled = True
            deadline = trio.current_time() + GOODBYE_TIMEOUT
            if quiet:
                self._leave(reason)
            else:
                settled = await server.settler.wait()
                if settled:
                    self._leave(reason)
            if settled and (self.writing or len(mailbox)):
                with trio.move_on_at(deadline):
                    await self._writer_ended()
                    if self._write_failed is None and len(mailbox):
                        await self._write(rearm=False)  # (a write scope only if it has work)
            reason = self._write_failed or reason
            await self._stop_writer()
        close_code, close_reason = device.ending
        if close_code is not None:
            # What the writer had no time for:
            pending = mailbox.take_nowait(server.config.max_batch)
            bye = Bye(code=close_code, text=close_reason or close_code)
            await say_goodbye(link, bye, pending)
        return reason

    def _leave(self, reason: str) -> None:
        """The goodbye's start: out of the hub (its user leaves its rooms if this was its
        last connection), and the mailbox closed to anything more."""
        mailbox = self.device.mailbox
        self.server.hub.detach_device(self.device, reason)
        mailbox.call_when_queued(None)
        mailbox.close()

    async def _handle_input(self, fill: bool, rest: _Rest | None = None) -> str | None:
        """Handle the frames that have arrived (with ``fill``, and those that arrive after
        them, reading the socket with :meth:`Link.fill`, until the connection ends);
        ``None`` once they are handled, or the reason the connection ends.

        Each frame is checked by flood control, then handled, one at a time. A link
        that hands over what arrived in runs (TCP, WebSocket: :func:`hands_runs`) is
        read that way instead (:meth:`_handle_runs`; ``rest``: what
        :meth:`_say_arrived` left of what arrived)."""
        link = self.link
        if rest is not None or hands_runs(link):
            return await self._handle_runs(cast("RunLink", link), fill, rest)
        server, device, flood = self.server, self.device, self.flood
        handled = 0  # frames since this task last let others run
        # trio.current_time() is this clock's current_time(), in one call instead of three.
        now = trio.lowlevel.current_clock().current_time
        while True:
            if not link.input_waiting():
                if not fill:
                    return None
                handled = 0
                await link.fill()
                continue
            item = await link.receive()
            if item is None:
                return "connection lost"
            handled += 1
            if handled >= FRAMES_PER_STEP:
                handled = 0
                await trio.lowlevel.checkpoint()
            cost = FRAME_COST if type(item) is Say else frame_cost(item)  # (what it gives)
            decision = flood.check(now(), cost, link.last_heard)
            verdict = decision.verdict
            if verdict is Verdict.WAIT:
                await trio.sleep(decision.delay)
                handled = 0
            elif verdict is Verdict.DISCONNECT:
                return self._flooded()
            elif verdict is Verdict.REFUSE:
                self._refuse(item)
                continue
            if not self._act_at_once(item):
                await server.handle(device.session, cast(ClientFrame, item))

    def _say_arrived(self, link: RunLink) -> _Rest | str | None:
        """Hand what has arrived to the server, with nothing awaited, as far as it is plain
        says and frames acted on at once (a quit, a ping or pong, a typing notice:
        :meth:`_acts_at_once`) that flood control lets go on at once
        (:meth:`FloodGuard.check_run`): a chatting client's lines, nearly every read,
        and a client's last read (its lines, then ``quit``). ``None`` once all of it is
        handled so (a hang-up meanwhile, a quit, is seen by the caller: as in
        :meth:`_handle_runs`, what came with the quit is acted on too); why it ended if
        the peer closed after it (its lines are said first); else what is left from the
        first frame that may have to wait (anything else, or a frame over the flood
        budget), for :meth:`_handle_runs` to go on with, as if it had handled all of it
        itself: so only then is a cancel scope needed.

        (The plain says not yet handed to the server go on with what is left: a line
        checked on its own next that may go on joins them, as in :meth:`_handle_runs`.)"""
        flood = self.flood
        handled = 0  # frames handled in this step (see FRAMES_PER_STEP)
        run: SayLines | None = None  # plain says read and not yet handed to the server
        items: list[RunItem] | None = link.receive_ready()
        while items:
            for index, item in enumerate(items):
                if handled >= FRAMES_PER_STEP:
                    return _Rest(items[index:], handled, run)
                if type(item) is not SayLines:
                    if item is None:
                        if run is not None:
                            self.server.say_run(self.device.session, run)
                        return "connection lost"
                    if isinstance(item, LinkTurn) or not self._acts_at_once(item):
                        return _Rest(items[index:], handled, run)
                    frame = cast("ClientFrame | RemoteProtocolError | Overhead", item)
                    if not flood.check_run(link.last_heard, 1, frame_cost(frame)):
                        return _Rest(items[index:], handled, run)
                    handled += 1
                    if run is not None:
                        self.server.say_run(self.device.session, run)
                        run = None
                    self._act_at_once(frame)
                    continue
                count = len(item)
                # As arrived at link.last_heard (what check_run takes of now and the
                # time they arrived: the earlier), without reading the clock.
                went = flood.check_run(
                    link.last_heard, min(count, FRAMES_PER_STEP - handled), FRAME_COST
                )
                handled += went
                if went < count:
                    run, left = _split_run(run, item, went)
                    return _Rest(left + items[index + 1 :], handled, run)
                if run is None:
                    run = item
                else:
                    run.add(item)
            items = link.receive_ready() if link.input_waiting() else None
        if run is not None:
            self.server.say_run(self.device.session, run)
        return None

    async def _handle_runs(self, link: RunLink, fill: bool, rest: _Rest | None) -> str | None:
        """:meth:`_handle_input` for a link that hands over every frame that arrived in
        one call (:meth:`RunLink.receive_ready`), the plain ``say`` frames that come one
        after another as one :class:`~trio_chat.protocol.SayLines`.

        Those are checked by flood control in one step as far as each would go on at
        once (:meth:`FloodGuard.check_run`; the next one alone, which may wait, be refused
        or end the connection, as :meth:`FloodGuard.check` says) and handed to the server
        together (:meth:`ChatHost.say_run`: a client at full speed sends many in one
        read, and one pass for all of them costs less than one for each) as soon as
        anything else comes: another frame, a flood verdict other than OK, the end of
        what arrived, the step's end. So nothing else is handled, and nothing is
        awaited, between those frames and their turn, as if each had been handled as it
        came; every frame gets the answer it would get on its own. A frame only the link
        may take (:data:`~.link.LINK_TURN`: a WebSocket's ping, close or fragment) is
        taken in its place with :meth:`Link.receive`, the says before it handed over
        first."""
        server, device, flood = self.server, self.device, self.flood
        handled = 0  # frames since this task last let others run
        run: SayLines | None = None  # plain says read and not yet handed to the server
        items: list[RunItem] | None = None
        if rest is not None:
            items, handled, run = rest.items, rest.handled, rest.run
        # trio.current_time() is this clock's current_time(), in one call instead of three.
        now = trio.lowlevel.current_clock().current_time
        while True:
            if items is None:
                if not link.input_waiting():
                    if run is not None:
                        server.say_run(device.session, run)
                        run = None
                    if not fill:
                        return None
                    handled = 0
                    await link.fill()
                    continue
                items = link.receive_ready()
            index = 0
            while index < len(items):
                item = items[index]
                index += 1
                if handled >= FRAMES_PER_STEP:
                    if run is not None:
                        server.say_run(device.session, run)
                        run = None
                    handled = 0
                    await trio.lowlevel.checkpoint()
                if isinstance(item, SayLines):
                    count = len(item)
                    went = flood.check_run(
                        now(), min(count, FRAMES_PER_STEP - handled), FRAME_COST, link.last_heard
                    )
                    handled += went
                    if went == count:
                        if run is None:
                            run = item
                        else:
                            run.add(item)
                        continue
                    run, items[index:index] = _split_run(run, item, went)
                    continue
                if type(item) is LinkTurn:  # a frame the link takes itself, perhaps writing
                    if run is not None:
                        server.say_run(device.session, run)
                        run = None
                    item = await link.receive()
                if item is None:
                    if run is not None:
                        server.say_run(device.session, run)
                    return "connection lost"
                handled += 1
                plain = type(item) is Say and item.reply_to is None
                if run is not None and not plain:
                    server.say_run(device.session, run)
                    run = None
                cost = FRAME_COST if type(item) is Say else frame_cost(item)
                decision = flood.check(now(), cost, link.last_heard)
                verdict = decision.verdict
                if verdict is not Verdict.OK and run is not None:
                    server.say_run(device.session, run)
                    run = None
                if verdict is Verdict.WAIT:
                    await trio.sleep(decision.delay)
                    handled = 0
                elif verdict is Verdict.DISCONNECT:
                    return self._flooded()
                elif verdict is Verdict.REFUSE:
                    self._refuse(item)
                    continue
                if plain:
                    if run is None:
                        run = SayLines()
                    run.append(cast(Say, item))
                    continue
                if not self._act_at_once(item):
                    await server.handle(device.session, cast(ClientFrame, item))
            items = None

    def _acts_at_once(self, item: RunItem) -> bool:
        """Whether :meth:`_act_at_once` takes ``item``: a frame of a kind the server acts
        on with nothing awaited (:attr:`ChatHost.frames_at_once`: a quit, a ping or pong,
        a typing notice), a frame refused as malformed, or what only counts."""
        kind = type(item)
        return kind in self.server.frames_at_once or isinstance(
            item, RemoteProtocolError | Overhead
        )

    def _act_at_once(self, item: ClientFrame | RemoteProtocolError | Overhead) -> bool:
        """Act on ``item`` if that awaits nothing (what :meth:`_acts_at_once` tells);
        whether it did (flood control has let it go on)."""
        server = self.server
        if isinstance(item, RemoteProtocolError):
            server.metrics.frames_rejected_total.labels(item.code).inc()
            server.hub.send_to(self.device, error_reply(item))
        elif isinstance(item, Overhead):
            pass  # (it only counts)
        elif type(item) in server.frames_at_once:
            server.handle_at_once(self.device.session, item)
        else:
            return False
        return True

    def _flooded(self) -> str:
        """Flood control gave up on the connection: it ends (why, for the caller)."""
        flood, device = self.flood, self.device
        log.info("flooding nick=%s addr=%s", device.nick, self.link.address)
        device.close(FLOODING, flood.disconnect_text)
        return flood.disconnect_text

    def _refuse(self, item: ClientFrame | RemoteProtocolError | Overhead) -> None:
        """Flood control refused a frame: its sender is told (but for an Overhead)."""
        if isinstance(item, Overhead):  # (nothing to drop: it only counts)
            return
        server = self.server
        server.metrics.frames_rejected_total.labels(SLOW_DOWN).inc()
        ref = getattr(item, "ref", None)
        server.hub.send_to(self.device, Error(code=SLOW_DOWN, text=self.flood.refuse_text, ref=ref))

    def _start_writer(self) -> None:
        """Something is queued: write it in a task of its own (the mailbox calls this at
        the first event queued while no writer runs)."""
        if self.writing:
            return
        self._writer_scope = trio.CancelScope()
        try:
            self.server.start_connection_task(self._write)
        except RuntimeError:  # the server has stopped serving: nobody to write
            self._writer_scope = None
            self._writer_failed("connection lost")

    async def _write(self, *, rearm: bool = True) -> None:
        """Write what is queued until nothing is left; with ``rearm`` (the writer task),
        then have the mailbox start a writer again at the next event queued. Without it
        (the goodbye, in the spell's own task), until the closed mailbox is empty."""
        scope = self._writer_scope if rearm else trio.CancelScope()
        assert scope is not None
        config = self.server.config
        failed: str | None = None
        try:
            with scope:
                await _writer(
                    self.link,
                    self.device.mailbox,
                    config.max_batch,
                    config.send_timeout,
                    scope,
                    self._start_writer if rearm else None,
                )
        except trio.TooSlowError:
            failed = "write timed out"
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            failed = "connection lost"
        except Exception:  # a task of the server's own: end this connection, not the server
            log.exception("writing to %s failed", self.link.address)
            failed = "connection lost"
        finally:
            if rearm:
                self._writer_scope = None
                done = self._writer_done
                if done is not None:
                    done.set()
        if failed is not None:
            self._writer_failed(failed)

    def _writer_failed(self, reason: str) -> None:
        """The socket would not take what was queued: the connection ends (its reader
        stops; nothing more is written but a best-effort bye)."""
        self._write_failed = reason
        self._stop_reading()

    def _stop_reading(self) -> None:
        """The server hung up, or a write failed: the reader stops (at once if it waits for
        input or is held back; after the frame it is handling otherwise)."""
        reading = self._reading
        if reading is not None:
            reading.cancel()
        elif self.link.park_fd is not None:
            self.server.parking.interrupt(self.link.park_fd)  # if it waits there

    @property
    def _stopped(self) -> bool:
        return self.device.closed or self._write_failed is not None

    async def _writer_ended(self) -> None:
        """Wait until no writer task runs."""
        while self.writing:
            self._writer_done = done = trio.Event()
            try:
                await done.wait()
            finally:
                self._writer_done = None

    async def _stop_writer(self) -> None:
        """Stop a writer task still running (the goodbye ran out of time, or the spell was
        cancelled) before anything else writes or the link closes."""
        scope = self._writer_scope
        if scope is not None:
            scope.cancel()
            with trio.CancelScope(shield=True), trio.move_on_after(GOODBYE_TIMEOUT):
                await self._writer_ended()

    async def end(self, reason: str) -> None:
        """The connection is over: out of the server's books, its link closed (bounded,
        even when cancelled). :meth:`run` calls it; so does whoever is cancelled before
        it could call :meth:`start`."""
        close_reason = self.device.ending[1]
        if close_reason is not None:
            reason = close_reason
        self._forget(reason)
        await close_link(self.server, self.link, self.release)

    def _forget(self, reason: str) -> None:
        """Take the ended connection out of the server's books (the hub, counters, logs);
        its user leaves with ``reason`` if it was the last."""
        server, device = self.server, self.device
        server.session_ended()
        label = device.ending[0] or _REASON_CODES.get(reason, "other")
        server.metrics.disconnects_by[label].inc()
        server.keepalive.forget(device)
        server.hub.detach_device(device, reason)
        log.info("disconnect nick=%s addr=%s reason=%r", device.nick, self.link.address, reason)
        device.mailbox.close()


async def _writer(
    link: Link,
    mailbox: Mailbox,
    max_batch: int,
    send_timeout: float,
    write_deadline: trio.CancelScope,
    rearm: Callable[[], None] | None,
) -> None:
    """Send everything waiting in the mailbox, as many events per write as are queued,
    until it is empty; then, with ``rearm``, have the mailbox call it at the next event
    queued (and return: the writer task ends), else return once the mailbox is closed
    and empty.

    Raises ``trio.TooSlowError`` if one write takes longer than ``send_timeout``. (One cancel
    scope, the caller's, whose deadline moves, rather than a new ``fail_after`` per write:
    this runs once per delivery burst of every backlogged connection.)
    """
    while True:
        batch = mailbox.take_nowait(max_batch)
        if not batch:
            if rearm is None or mailbox.closed or mailbox.call_when_queued(rearm):
                break
            continue  # (cannot happen: nothing is queued between the two calls)
        write_deadline.deadline = trio.current_time() + send_timeout
        try:
            sent = await link.send(batch)
        except trio.Cancelled:
            if trio.current_time() >= write_deadline.deadline:
                raise trio.TooSlowError from None
            raise
        write_deadline.deadline = math.inf
        mailbox.sent(sent)  # link.send sized them as its measure does
