"""The publisher: the one task every numbered room event passes through, in id order.

The hub numbers an event at once but, rather than fanning it out in the sender's task,
hands it to its broker, which passes it here (at once in one process; once read back from
the shared log with several, see :mod:`trio_chat.broker`). The publisher takes everything
waiting, commits what must be stored (chat lines and private messages, in one transaction,
when the server has a store), then gives the batch back to the hub to deliver. So:

* a message anyone saw is in the database (commit before fan-out);
* a run of lines to one room goes out as one bundle per receiver: the fan-out cost per
  line shrinks as load grows (see :meth:`~trio_chat.hub.Hub.deliver_many`);
* everyone still sees one order, the id order.

The readers never deliver themselves. Lines that arrive together, from one reader or
several (the readers trio wakes for one poll of the sockets run in one scheduling round),
are delivered together once that round is over: a room's lines then go to each member as
one bundle, one write, instead of one fan-out per reader. That is what keeps the last
member's tail short when lines bunch up: with each reader fanning out its own line at
once, the last member of a room of 100 heard the third of three lines that came together
after 300 writes instead of 100. Without a store they go out at the very end of the
readers' round, before trio polls the sockets again, in no task's step
(:mod:`trio_chat.rounds`): a lone line, a chat at a steady rate, then costs no round and
no step of its own. (Under load, when tasks are ready for the next round, at the end of
that one, with what it adds.) With a store (or where trio's run loop is not one
:mod:`~trio_chat.rounds` knows) the publisher task takes them, in the round after the
readers'.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from .broker import Broker, LocalBroker
from .delivery import author_of
from .hub import Pending
from .protocol import (
    Error,
    Message,
    MessageChange,
    MessageDeleted,
    MessageEdited,
    Private,
    Reaction,
)
from .rounds import RoundEnd, round_end
from .store import Store, StoredMessage, StoreError
from .store.db import Commit
from .store.health import LogLimiter
from .store.records import Row, message_row

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger("trio_chat.publisher")

#: Most events the publisher takes from its queue for one round of commits.
PUBLISH_BATCH = 1024
#: A fan-out to more than FANOUT_SLICED_FROM receivers that has taken FANOUT_BUDGET
#: seconds (the clock read every FANOUT_SLICE receivers) owes the event to the rest of its
#: receivers, paid for up to FANOUT_BUDGET seconds per scheduling round (see
#: :meth:`Publisher.pay_owed_forever`), letting other rooms' lines through in between. A
#: direct write to a socket is a few microseconds, so a line to a room of a thousand is
#: sliced after several hundred receivers; offers to mailboxes that are queueing are
#: appends, and their fan-out is over before its budget. (A budget of 0.5 ms let a small
#: room's line through sooner, but made the big room's last receivers wait longer: more
#: rounds; bench/README.md, "A big room beside small ones".)
FANOUT_SLICED_FROM = 128
FANOUT_SLICE = 32
FANOUT_BUDGET = 0.002
#: Ids reserved in the store ahead of those given out (see :meth:`Publisher.reserve_ids`).
ID_RESERVE = 100_000
#: Seconds between attempts to write a reservation while writing it fails.
ID_RESERVE_RETRY = 1.0


def stored_form(pending: Pending) -> StoredMessage:
    """The stored message of a chat line or private message: its row without the
    conversation key (which the store derives again)."""
    row = stored_row(pending)
    assert type(row) is tuple, "a change of a message is no stored message"
    return StoredMessage(
        *row[:7],  # type: ignore[arg-type]
        sender_account=row[8],
        recipient_account=row[9],
        reply_to=row[10],
        quote_nick=row[11],
        quote_text=row[12],
    )


def stored_row(pending: Pending) -> Row | MessageChange:
    """The table row of a chat line or private message (with its accounts), or the change
    of a message (an edit, delete or reaction: written as such, see
    :mod:`trio_chat.store.changes`)."""
    event = pending.event
    if type(event) is Message or type(event) is Private:
        return message_row(event, pending.accounts, author_of(pending))
    assert isinstance(event, MessageEdited | MessageDeleted | Reaction), "not a stored event"
    return event


@dataclass(eq=False, slots=True)
class _Committing:
    """A batch on its way through the store."""

    batch: list[Pending]
    to_store: list[Pending]  # the chat lines and private messages in it
    commit: Commit | None  # None if it could not be queued in one piece


class Publisher:
    """Commit (if there is a ``store``), then deliver, every event the hub publishes."""

    def __init__(self, hub: Hub, *, store: Store | None, outbox_size: int) -> None:
        self.hub = hub
        self.store = store
        # A batch is delivered a slice at a time, letting every writer drain its mailbox in
        # between: a client that keeps up never sees its queue fill in one burst.
        self.deliver_slice = max(1, outbox_size // 4)
        #: Set (and dropped) after every delivered batch; made only while someone waits.
        self._delivered: trio.Event | None = None
        self._in_flight = 0  # batches taken from the queue and not yet delivered
        # Events handed to the publisher so far, and how many of them are delivered: both
        # go in the same order (first in, first out), so one count says what :meth:`settle`
        # waits for.
        self._accepted = 0
        self._done = 0
        # Published events wait here for the publisher task; _wakeup is set while any wait.
        self._buffer: list[Pending] = []
        self._wakeup = trio.Event()
        # Ids up to _reserved are reserved in the store (written down); from _renew_at on,
        # the keeper writes the next reservation (woken through _renew).
        self._id_reserve = ID_RESERVE
        self._reserved = 0
        self._renew_at = math.inf
        self._renew = trio.Event()
        self._reserved_changed = trio.Event()
        self._not_saved_log = LogLimiter()
        self._reserve_log = LogLimiter()
        self._owing = trio.Event()  # set when the hub starts owing (see pay_owed_forever)
        #: Without a store, while :meth:`publish_forever` runs: what waits is delivered at
        #: the end of the scheduling round it was published in (see :meth:`_round_ended`).
        self._round_end: RoundEnd | None = None
        #: What delivering at a round's end raised, for the publisher task to raise.
        self._failed: BaseException | None = None
        #: Whether what waits has waited for one round's end already (see _round_ended).
        self._waited = False

    def attach(self, broker: Broker | None = None) -> None:
        """Route the hub's numbered events through ``broker`` to :meth:`accept` (straight
        there, with a :class:`~trio_chat.broker.LocalBroker`, by default)."""
        if self.store is not None:
            self.hub.start_ids_after(self.store.last_id)
        self.hub.broker = broker if broker is not None else LocalBroker(self.accept)
        self.hub.publish_run = self.accept_run if broker is None else None
        self.hub.fanout_sliced_from = FANOUT_SLICED_FROM
        self.hub.fanout_slice = FANOUT_SLICE
        self.hub.fanout_budget = FANOUT_BUDGET
        self.hub.wake_payer = self._wake_payer

    def accept(self, pending: Pending) -> None:
        """Take an event from the broker, in the order every member is to see: it is
        committed (if stored) and delivered by :meth:`publish_forever`."""
        self._buffer.append(pending)
        self._accepted += 1
        self._waiting()
        if self.hub.last_id >= self._renew_at:
            self._renew.set()

    def accept_run(self, run: list[Pending]) -> None:
        """:meth:`accept` each event of ``run`` (the hub's lines of one read: see
        :meth:`Hub.say_lines`), in one call: they wait, as each would, for the publisher
        task."""
        self._buffer.extend(run)
        self._accepted += len(run)
        self._waiting()
        if self.hub.last_id >= self._renew_at:
            self._renew.set()

    def accept_many(self, batch: list[Pending]) -> None:
        """:meth:`accept` each event of ``batch`` (a broker's read of its log, in order),
        and, without a store and when nothing waits before it, deliver it right here: the
        broker's batch is already one bundle per room, and waiting a scheduling round for
        the publisher task would cost a wakeup per batch and grow nothing. A batch bigger
        than ``deliver_slice`` waits for the publisher task, which delivers it a slice at a
        time."""
        self._accepted += len(batch)
        if (
            self.store is None
            and not self._in_flight
            and not self._buffer
            and len(batch) <= self.deliver_slice
        ):
            self.hub.deliver_many(batch)
            self._done += len(batch)
            self._signal_delivered()
        else:
            self._buffer.extend(batch)
            self._waiting()
        if self.hub.last_id >= self._renew_at:
            self._renew.set()

    def _waiting(self) -> None:
        """Something waits in the buffer: deliver it at the end of this round, or wake the
        publisher task."""
        hook = self._round_end
        if hook is not None:
            hook.due = True
        else:
            self._wakeup.set()

    def _signal_delivered(self) -> None:
        delivered = self._delivered
        if delivered is not None:
            self._delivered = None
            delivered.set()

    async def reserve_ids(self) -> None:
        """Write down, before any is given out, an id well above the next ones.

        Joins, leaves and other events are numbered too but not stored, so the largest
        stored id alone may be below ids that clients saw; after a crash (no clean
        shutdown to note the last id), numbering would then repeat those ids, and a client
        asking for everything after one of them would miss messages. So ids are reserved
        ``ID_RESERVE`` at a time, like a database sequence's cache: a restart continues above
        the reservation (skipping at most that many ids, which only need to rise).

        Ids are never given out past what is written down: when the next reservation
        cannot be written (a full disk), chat lines and private messages are refused with
        ``not_saved`` before they would pass it (see :attr:`Hub.message_id_limit`), and a
        tenth of the reservation is kept for joins, leaves and other events that cannot be
        refused. The write is retried every ``ID_RESERVE_RETRY`` seconds; numbering
        resumes once it succeeds. Raises :class:`StoreError` if the first one fails.
        """
        self._id_reserve = ID_RESERVE
        if self.store is not None and not self.hub.numbered_by_log:
            reserved = self.hub.last_id + self._id_reserve
            await self.store.note_last_id(reserved)
            self._now_reserved(reserved)

    def _now_reserved(self, reserved: int) -> None:
        """``reserved`` is written down: number messages up to near it, renew at half-way."""
        self._reserved = reserved
        self._renew_at = reserved - self._id_reserve // 2
        self.hub.message_id_limit = reserved - max(1, self._id_reserve // 10)
        self._reserved_changed.set()
        self._reserved_changed = trio.Event()

    async def wait_reserved_beyond(self, last_id: int) -> None:
        """Return once ids above ``last_id`` are reserved in the store (for tests)."""
        while self._reserved <= last_id:
            await self._reserved_changed.wait()

    async def _keep_ids_reserved(self, store: Store) -> None:
        """Write the next reservation whenever numbering passes half of the current one."""
        while True:
            await self._renew.wait()
            self._renew = trio.Event()
            if self.hub.last_id < self._renew_at:
                continue
            reserved = self.hub.last_id + self._id_reserve
            try:
                await store.note_last_id(reserved)
            except StoreError as exc:
                self._reserve_log.error(
                    log,
                    trio.current_time(),
                    "could not reserve ids (last id %d, reserved up to %d; new messages "
                    "are refused from id %d on until this works): %s",
                    self.hub.last_id,
                    self._reserved,
                    self.hub.message_id_limit + 1,
                    exc,
                )
                await trio.sleep(ID_RESERVE_RETRY)
                self._renew.set()
                continue
            self._reserve_log.recovery(log, "ids reserved again, up to %d", reserved)
            self._now_reserved(reserved)

    def deliver_waiting(self) -> None:
        """Deliver what waits, now, in this task, unless a batch of the publisher task's is
        on its way (it goes first): for :meth:`detach`, and for tests that drive a
        publisher without its task."""
        if self._buffer and not self._in_flight:
            batch, self._buffer = self._buffer, []
            self.hub.deliver_many(batch)
            self._done += len(batch)
            self._signal_delivered()

    def detach(self) -> None:
        """Back to fanning out at once (the server is stopping); what waits goes out first."""
        self.hub.broker = None
        self.hub.publish_run = None
        self.deliver_waiting()
        self.hub.pay_all_owed()
        self.hub.fanout_sliced_from = sys.maxsize

    def _wake_payer(self) -> None:
        self._owing.set()

    async def pay_owed_forever(self) -> None:
        """Pay what the hub's sliced fan-outs owe, a budget's worth per scheduling round (see
        :meth:`~trio_chat.delivery.Delivery.pay_owed`): between two slices the readers
        run, and their lines to other rooms go out without waiting for the rest of a big
        room's fan-out. Runs until cancelled."""
        while True:
            await self._owing.wait()
            self._owing = trio.Event()
            while self.hub.pay_owed():
                self._signal_delivered()  # (a settle may wait for the fan-outs paid so far)
                await trio.lowlevel.checkpoint()
            self._signal_delivered()

    async def publish_forever(self) -> None:
        """Commit what needs storing, then deliver every event, in id order. Runs until
        cancelled; the hub bounds how many messages may wait here.

        With a store this is a two-stage pipeline: while one batch is being committed, the
        next is already taken and sent to the store, and a second task delivers each batch
        once its own commit is done, in the order the batches were taken. So the loop
        thread goes on reading and fanning out while the disk works, and the store's writer
        always has the next batch waiting.

        Without one, what is published is delivered at the end of the round it was
        published in (under load, of the next: :meth:`_round_ended`), for as long as this
        task runs; the task itself delivers only a batch that it delivers a slice at a
        time (or everything, where :func:`~trio_chat.rounds.round_end` gives nothing).
        """
        if self.store is None:
            with round_end(self._round_ended) as hook:
                self._round_end = hook
                try:
                    while True:
                        batch = await self._next_batch()
                        await self._deliver(batch, frozenset())
                finally:
                    self._round_end = None
        store = self.store
        async with trio.open_nursery() as nursery:
            committed_send, committed_receive = trio.open_memory_channel[_Committing](math.inf)
            nursery.start_soon(self._deliver_committed, store, committed_receive)
            if not self.hub.numbered_by_log:  # else the broker's log gives the ids
                nursery.start_soon(self._keep_ids_reserved, store)
            while True:
                batch = await self._next_batch()
                to_store = [p for p in batch if p.persist]
                commit = None
                if to_store:
                    rows = [stored_row(p) for p in to_store]
                    with contextlib.suppress(trio.WouldBlock, StoreError):
                        commit = store.append_rows_nowait(rows)
                committed_send.send_nowait(_Committing(batch, to_store, commit))

    async def _next_batch(self) -> list[Pending]:
        """Up to :data:`PUBLISH_BATCH` waiting events, oldest first, counted in flight.

        Always after a scheduling round, even when events already wait: the round lets
        more in, so batches (and bundles) grow with the load.
        """
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            failed = self._failed
            if failed is not None:
                raise failed
            if self._buffer:  # (emptied meanwhile by a detach, or at a round's end)
                break
        batch = self._buffer[:PUBLISH_BATCH]
        del self._buffer[:PUBLISH_BATCH]
        if self._buffer:
            self._wakeup.set()
        self._in_flight += 1
        return batch

    def _round_ended(self) -> None:
        """Deliver what was published in the round that just ended (without a store, see
        :mod:`trio_chat.rounds`): what the readers of one round said goes out together, as
        the publisher task delivered it in the round after theirs, without that round and
        that step. When tasks are ready for the next round (under load), after that round
        instead, with what it adds (the task took a round's lines and, as often as not,
        the next's). Not while the task delivers a batch (it goes first), and not a batch
        the task would slice (:attr:`deliver_slice`): that is handed to the task."""
        buffer = self._buffer
        if not buffer:
            self._waited = False
            return
        hook = self._round_end
        if self._in_flight:  # the task's batch first: tried again at the next round's end
            if hook is not None:
                hook.due = True
            return
        if len(buffer) > self.deliver_slice:
            self._wakeup.set()
            return
        if hook is not None and not self._waited and hook.tasks_ready():
            # Tasks will run in the next round (under load, readers with more lines): what
            # they say goes out with this, at that round's end, as the publisher task took
            # it in the round after the readers'. Once: a lone line, with nothing else
            # ready, goes out now.
            self._waited = True
            hook.due = True
            return
        self._waited = False
        self._buffer = []
        try:
            self.hub.deliver_many(buffer)
        except BaseException as exc:  # (no task here: the publisher task raises it)
            self._failed = exc
            self._wakeup.set()
            return
        self._done += len(buffer)
        self._signal_delivered()

    async def _deliver_committed(
        self, store: Store, commits: trio.MemoryReceiveChannel[_Committing]
    ) -> None:
        """Deliver each batch once its commit is done, in the order they were taken.

        The batches behind it whose commits are done by then go out with it, as one: each
        receiver gets one bundle for all of them. A batch is what one scheduling round
        brought, so at a steady rate most are a line or two; delivered one by one, each
        cost a write per member, and while the fan-outs fell behind the commits, lines
        queued here in front of their deliverer (the p50 at a steady 500 lines/s to a room
        of 100 went from 1.5 ms without a store to 7 ms with one).
        """
        waiting: _Committing | None = None
        while True:
            try:
                batch = waiting if waiting is not None else await commits.receive()
            except trio.EndOfChannel:
                return
            waiting = None
            failed = await self._commit_of(store, batch)
            events, batches = batch.batch, 1
            while True:
                try:
                    later = commits.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                if later.to_store and (later.commit is None or not later.commit.committed()):
                    waiting = later  # still committing, or failed: it goes out on its own
                    break
                events = events + later.batch
                batches += 1
            await self._deliver(events, frozenset(failed), batches)

    async def _commit_of(self, store: Store, batch: _Committing) -> set[int]:
        """Wait until ``batch``'s messages are committed; the ids of the pendings that
        could not be saved (each tried alone once the batch failed as one)."""
        failed: set[int] = set()
        if batch.to_store:
            try:
                if batch.commit is not None:
                    await batch.commit.wait()
                else:  # the store's queue was full: wait for room
                    await store.write_many([stored_row(p) for p in batch.to_store])
            except StoreError:
                await self._save_one_by_one(store, batch.to_store, failed)
            else:
                self._not_saved_log.recovery(log, "messages are saved again")
        return failed

    async def _deliver(
        self, batch: list[Pending], failed: frozenset[int], batches: int = 1
    ) -> None:
        """Hand ``batch`` (made of ``batches`` taken from the queue) to the hub a slice at
        a time (see ``deliver_slice``)."""
        for start in range(0, len(batch), self.deliver_slice):
            if start:
                await trio.lowlevel.checkpoint()
            self.hub.deliver_many(batch[start : start + self.deliver_slice], failed)
        self._in_flight -= batches
        self._done += len(batch)
        self._signal_delivered()

    async def settle(self) -> None:
        """Return once every event numbered so far, and every reply queued so far, has
        been delivered (or failed), and no sliced fan-out made so far still owes receivers
        (those are paid a slice per scheduling round).

        Not what is published after the call. (Waiting until
        nothing at all was queued made every connection that ended during a crowd's
        comings and goings wait for a quiet moment, up to its goodbye's timeout, and wake
        at every batch delivered meanwhile: hundreds of wake-ups per connection closed.)
        """
        target = self.hub.last_id
        accepted, owed = self._accepted, self.hub.owed_made
        while (
            self.hub.history_bound() <= target or self._done < accepted or self.hub.owes_since(owed)
        ):
            delivered = self._delivered
            if delivered is None:
                delivered = self._delivered = trio.Event()
            await delivered.wait()

    async def _save_one_by_one(
        self, store: Store, to_store: list[Pending], failed: set[int]
    ) -> None:
        """The batch could not be committed (or queued) as one: save each message alone,
        so that only the ones that cannot be stored fail (the others still go out)."""
        async with trio.open_nursery() as nursery:
            for pending in to_store:
                nursery.start_soon(self._save, store, pending, failed)

    async def _save(self, store: Store, pending: Pending, failed: set[int]) -> None:
        record = stored_row(pending)
        try:
            await store.write_many([record])
        except StoreError as exc:
            failed.add(id(pending))
            self.hub.metrics.messages_not_saved_total.inc()
            # One line per run of failures, not one per message.
            self._not_saved_log.error(
                log,
                trio.current_time(),
                "message %d not saved: %s",
                getattr(pending.event, "id", 0),
                exc,
            )
            if pending.sender is not None:
                self.hub.send_to(
                    pending.sender,
                    Error(code="not_saved", text="your message could not be saved; not sent"),
                )

    def settled_now(self) -> bool:
        """Whether :meth:`settle` would return at once: every event numbered and every
        reply queued so far delivered, and no sliced fan-out owing anyone. Asked without
        waiting, so that a connection ending while nothing is in flight (the usual quiet
        end) says its goodbye without a scope around a wait that would not happen."""
        hub = self.hub
        return (
            hub.history_bound() > hub.last_id
            and self._done >= self._accepted
            and not hub.owes_since(hub.owed_made)
        )
