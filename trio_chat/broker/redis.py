"""Several processes, one chat: the broker that shares it through a Redis stream.

Every node appends what its hub publishes to one stream and reads the whole stream back,
in the stream's order, before it delivers anything — its own users' lines included. So
every member of a room, on whichever node, sees one order with the same ids.

Why a stream and not pub/sub: a node that loses Redis for a second misses whatever was
published meanwhile with pub/sub (at most once), and has nothing to replay from. A stream
keeps the entries (``XADD ... MAXLEN ~``): a node reads on from the last id it saw after
any outage, without holes or duplicates, and a node that was down fills its history from
it. One small Lua script appends a batch: it gives each event the next id from one counter
(the stream id is ``<id>-0``, so ids rise with the stream; the chat lines a node appends
at once share one entry, a group, whose id is its last line's), and skips entries the
node already appended (each carries the node's running numbers), so a batch whose answer
was lost is simply sent again.

What each node keeps: every remote user as a member it never delivers to
(:mod:`~trio_chat.broker.replica`), rebuilt from the ``snapshot`` entries the other nodes
write when one starts (``sync``), and kept current by the joins, leaves and renames in
the stream; the rooms' rules too (operators, mutes, bans: ``rule`` entries, and the
snapshots), so a ban given on one node holds on all of them from that entry on. Its own
SQLite store keeps history and stores every chat line of the stream, so any node answers
``history`` and ``after=ID`` alike. Nodes refresh a key with a time to live; when one
stops refreshing, the first node to notice announces its users' leaves.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import operator
import os
import secrets
import socket
from collections.abc import Callable, Iterable
from itertools import repeat
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import trio

from ..delivery import author_of, pending_lines
from ..hub import Pending, Receiver, Room, RuleChange, ServerBusy, Session
from ..names import name_key
from ..protocol import Info, Joined, Message, renumbered
from . import replica
from .connection import CommandError, RedisConnection, RedisError, open_redis_connection
from .log import (
    BadEntry,
    Entry,
    EntryKind,
    decode_entries,
    decode_group,
    decode_line,
    encode_columns,
    encode_entry,
    number_own_line,
    own_columns_prefix,
    own_event_prefix,
    own_event_seq,
    own_group_prefix,
    own_group_seqs,
    own_line_prefix,
)
from .presence import Presence
from .resp import StreamEntry, encode_command_after, encode_head

if TYPE_CHECKING:
    import coredis

    from ..hub import Hub

log = logging.getLogger("trio_chat.broker")

#: An entry waiting to be appended: its running number, its kind's letter for the append
#: script, and its payload, or for a group (``"g"``) its lines so far (written by column
#: as the writer takes it: see :func:`.log.encode_columns`).
_Outgoing: TypeAlias = tuple[int, str, bytes | list[Pending]]

#: Entries the stream keeps (about; Redis trims whole blocks). A node that was away for
#: longer than this many entries finds a hole in its history (said in its log).
LOG_CAP = 1_000_000
#: Most entries appended in one script call.
APPEND_BATCH = 512
#: Most entries read in one call (see :data:`GROUP_LINES`).
READ_BATCH = 32
#: Most entries read in one call while catching up (history only, handed on one by one).
CATCH_UP_BATCH = 1024
#: A node's key lives this long unless refreshed; refreshed every HEARTBEAT seconds.
NODE_TTL = 10
HEARTBEAT = 3.0
#: Back-off between attempts while Redis cannot be reached, doubling up to the last.
RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
#: Seconds a stopping node waits for what it still has to append.
CLOSE_WAIT = 3.0
#: Most of this node's messages that may wait for Redis before new ones are refused.
MAX_WAITING = 10_000

#: Most chat lines in one group (one entry of the log; see :func:`.log.encode_columns`):
#: with :data:`READ_BATCH`, at most 1024 lines are read, and handed on, at once.
GROUP_LINES = 32

#: ARGV: the cap, the node, the running number of the batch's first entry (the others
#: follow it), each entry's kind ('e' for an event, 'c' for control, 'g' for a group of
#: chat lines: one letter each), the payloads, each ended by a newline (JSON from orjson
#: has none inside), and the number of lines of each group, in order, spaced (none: no
#: group). An event takes the next id; a group of N lines the next N, and its entry the
#: last of them; each line of a group has a running number of its own. Five arguments for
#: a whole batch: the client's cost per argument showed per line.
_APPEND = """
local last_seq = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
local seq = tonumber(ARGV[3]) - 1
local flags = ARGV[4]
local payloads = ARGV[5]
local counts = string.gmatch(ARGV[6] or '', '%d+')
local start = 1
for i = 1, #flags do
  local stop = string.find(payloads, '\\n', start, true)
  local flag = string.byte(flags, i)
  local lines = 1
  if flag == 103 then -- 'g'
    lines = tonumber(counts())
  end
  seq = seq + lines
  if seq > last_seq then
    local sid
    if flag == 101 then -- 'e'
      sid = redis.call('INCR', KEYS[1]) .. '-0'
    elseif flag == 103 then
      sid = redis.call('INCRBY', KEYS[1], lines) .. '-0'
    else
      sid = (redis.call('GET', KEYS[1]) or '0') .. '-*'
    end
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], sid, 'x',
      string.sub(payloads, start, stop - 1))
    last_seq = seq
  end
  start = stop + 1
end
redis.call('HSET', KEYS[3], ARGV[2], last_seq)
return last_seq
"""

_APPEND_SHA = hashlib.sha1(_APPEND.encode()).hexdigest()

#: Ids never go back, even if Redis lost its data: each node raises the counter to the
#: largest id it has seen before appending.
_FLOOR = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return redis.call('GET', KEYS[1])
"""


class _Backoff:
    """The waits between attempts while Redis fails: :data:`RETRY_DELAYS`, then its last."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._delays = iter(RETRY_DELAYS)

    def next_wait(self) -> float:
        return next(self._delays, RETRY_DELAYS[-1])


def _failures() -> tuple[type[BaseException], ...]:
    """What talking to Redis raises when it cannot: the network, a timeout, Redis itself,
    through coredis or :mod:`.connection` (coredis is imported only with a broker: the
    dependency is optional)."""
    import coredis.exceptions

    return (
        OSError,
        trio.TooSlowError,
        coredis.exceptions.RedisError,
        RedisError,  # ours (see .connection), for the hot path
    )


def _keys(prefix: str) -> dict[str, str]:
    return {
        "counter": f"{prefix}:last-id",
        "log": f"{prefix}:log",
        "seqs": f"{prefix}:node-seq",
        "nodes": f"{prefix}:nodes",
    }


def new_node_name(slot: str | None = None) -> str:
    """A name for this process's run: unique, and readable in logs. A ``--workers``
    worker's starts with its ``slot`` (see :func:`trio_chat.workers.worker_slot`)."""
    if slot is not None:
        return f"{slot}-{os.getpid()}-{secrets.token_hex(2)}"
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class RedisBroker(Presence):
    """Publish to, and deliver from, one Redis stream shared by every node."""

    def __init__(
        self,
        url: str,
        hub: Hub,
        deliver: Callable[[Pending], None],
        *,
        deliver_many: Callable[[list[Pending]], None] | None = None,
        start_after: int = 0,
        prefix: str = "trio-chat",
        node: str | None = None,
        slot: str | None = None,
    ) -> None:
        self.url = url
        self.hub = hub
        self._deliver_one = deliver
        #: What one XREAD read, handed on at once (see :meth:`_read_entries`); without
        #: ``deliver_many``, one by one to ``deliver``.
        self._deliver_many = deliver_many or self._deliver_each
        self._handing: list[Pending] | None = None  # while a batch is read: what it hands on
        self._deliver = self._give
        self.node = node or new_node_name(slot)
        #: The worker slot this node took over: earlier nodes of it are dead (the
        #: supervisor starts a worker only once the one before it exited).
        self._slot = slot
        self._keys = _keys(prefix)
        #: Largest event id this node has seen in the log (or stored before it started).
        self.last_event_id = start_after
        self._position = "0-0"  # the last stream id read
        self._seq = 0
        #: What waits to be appended, in order: (running number, kind letter, payload),
        #: and for a group of chat lines (its first line's number, "g", its rows).
        self._outgoing: collections.deque[_Outgoing] = collections.deque()
        #: The group at the end of _outgoing that this node's next chat line joins, until
        #: the writer takes it (from then on it is sent as it is, again if need be).
        self._open_group: list[Pending] | None = None
        # How this node's groups start: by column, and by row (from a run of before).
        self._own_columns = own_columns_prefix(self.node)
        self._own_group = own_group_prefix(self.node)
        self._wake_writer = trio.Event()
        self._mine: dict[int, Pending] = {}  # own events on their way through the log
        self._replies: collections.deque[tuple[int, Pending]] = collections.deque()
        self._unconfirmed: dict[str, int] = {}  # own users' nick keys whose hello is out
        self._paused: set[str] = set()  # "writing", "reading" while Redis fails them
        self._sent_all = trio.Event()
        self._expired: dict[str, float] = {}  # nodes whose key expired, and since when
        #: The nodes whose snapshot this node still waits for (those alive as it started),
        #: and the rule changes it read meanwhile: a snapshot may be older than they are
        #: (its node answered before reading them), so they are applied again over it.
        self._awaiting: set[str] = set()
        self._rules_read: collections.deque[RuleChange] = collections.deque(maxlen=MAX_WAITING)

    # ------------------------------------------------------------ the hub's side

    def attach(self) -> None:
        """Take the numbering from the hub (the publisher makes this its broker): ids and
        order now come from the log, and users' arrivals and departures go into it."""
        self.hub.numbered_by_log = True
        self.hub.log_run = self.publish_run
        self.hub.on_attach.append(self._user_arrived)
        self.hub.on_detach.append(self._user_left)
        self.hub.on_rule.append(self._rule_changed)
        self.hub.on_away.append(self._away_changed)

    def detach(self) -> None:
        self.hub.numbered_by_log = False
        self.hub.log_run = None
        self.hub.on_attach.remove(self._user_arrived)
        self.hub.on_detach.remove(self._user_left)
        self.hub.on_rule.remove(self._rule_changed)
        self.hub.on_away.remove(self._away_changed)

    def publish(self, pending: Pending) -> None:
        event = pending.event
        room = pending.room
        if (
            type(event) is Message
            and room is not None
            and not pending.extra
            and pending.accounts is None
            and room.name == event.room
        ):  # a plain chat line, most of what is published: straight to the array form
            if pending.persist and len(self._mine) >= MAX_WAITING:
                raise ServerBusy("the server is busy sharing messages; try again in a moment")
            self._seq = seq = self._seq + 1
            group = self._open_group
            if group is None or len(group) >= GROUP_LINES:
                self._open_group = group = []
                self._outgoing.append((seq, "g", group))
                self._wake_writer.set()
            group.append(pending)
            self._mine[seq] = pending
            return
        if getattr(event, "id", None) is None:  # a reply: after this node's earlier events
            if isinstance(event, Info):
                self._tell_remote(pending.extra, event)
            if self._mine:
                self._replies.append((self._seq, pending))
            else:
                self._deliver(pending)
            return
        if pending.persist and len(self._mine) >= MAX_WAITING:
            raise ServerBusy("the server is busy sharing messages; try again in a moment")
        seq = self._append(
            "event",
            event=event,
            room=room.name if room is not None else None,
            to=tuple(s.key for s in pending.extra),
            persist=pending.persist,
            accounts=pending.accounts,
            data={"op": True} if self._made_operator(event) else None,
            author=author_of(pending) if type(event) is Message else None,
        )
        self._mine[seq] = pending

    def publish_run(self, run: list[Pending]) -> None:
        """:meth:`publish` each of ``run``, plain chat lines of this node said together
        (see :meth:`Hub.say_lines`), in one call: they join the open group, then groups
        of their own; :class:`ServerBusy`, and none of them taken, if they would not all
        fit in what may wait for Redis."""
        count = len(run)
        if len(self._mine) + count > MAX_WAITING:
            raise ServerBusy("the server is busy sharing messages; try again in a moment")
        first = self._seq + 1
        self._seq += count
        self._mine.update(zip(range(first, first + count), run, strict=True))
        group = self._open_group
        done = 0
        while done < count:
            if group is None or len(group) >= GROUP_LINES:
                group = []
                self._outgoing.append((first + done, "g", group))
            take = min(GROUP_LINES - len(group), count - done)
            group += run[done : done + take]
            done += take
        self._open_group = group
        self._wake_writer.set()

    def _tell_remote(self, receivers: tuple[Receiver, ...], event: Info) -> None:
        """A notice to users of other nodes ("alice made you an operator of #dev"): their
        node tells them (what this node offers them is dropped)."""
        for receiver in receivers:
            if isinstance(receiver, Session) and replica.node_of(receiver) is not None:
                self._append("tell", data={"nick": receiver.nick, "text": event.text})

    def _made_operator(self, event: object) -> bool:
        """Whether ``event`` is a join whose joiner is the room's operator as it joins (it
        created the room here): the other nodes make it one too (see :meth:`_apply`)."""
        if not isinstance(event, Joined):
            return False
        room, joiner = self.hub.room(event.room), self.hub.find(event.nick)
        return room is not None and joiner is not None and joiner.id in room.operators

    def _append(self, kind: EntryKind, **fields: Any) -> int:
        self._seq += 1
        payload = encode_entry(kind, self.node, self._seq, **fields)
        self._open_group = None  # a later line goes after this entry, in a group of its own
        self._outgoing.append((self._seq, "e" if kind == "event" else "c", payload))
        self._wake_writer.set()
        return self._seq

    def _user_arrived(self, session: Session) -> None:
        if replica.node_of(session) is None:
            self._unconfirmed[session.key] = session.id
            # The address, so that a ban given on another node refuses its host too.
            data: dict[str, object] = {
                "nick": session.nick,
                "account": session.account,
                "address": session.address,
            }
            if session.bot:  # a plugin's bot: shown as one on every node
                data["bot"] = True
            self._append("hello", data=data)

    def account_changed(self, session: Session) -> None:
        """This node's user logged in to an account (or registered one) after arriving:
        say it again as a ``hello``, which the other nodes take as news of the account."""
        if replica.node_of(session) is None and session.account is not None:
            self._append("hello", data={"nick": session.nick, "account": session.account})

    def _user_left(self, session: Session) -> None:
        if replica.node_of(session) is None:
            self._unconfirmed.pop(session.key, None)
            self._append("bye", data={"nick": session.nick})

    def _rule_changed(self, change: RuleChange) -> None:
        self._append("rule", rule=change)

    # --------------------------------------------------------------------- running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, fill this node's history from the log, ask the others who is where,
        then append, read, and keep this node alive, until cancelled."""
        import coredis  # only with a broker: the dependency is optional

        async with coredis.Redis.from_url(self.url) as writer_client:
            await self._start(writer_client)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_forever, writer_client)
                nursery.start_soon(self._read_forever)
                nursery.start_soon(self._keep_alive_forever, writer_client)
                task_status.started()

    async def _start(self, client: coredis.Redis[bytes]) -> None:
        backoff = _Backoff()
        while True:
            try:
                await self._raise_floor(client)
                await self._retire_predecessors(client)
                last = await client.xrevrange(self._keys["log"], count=1)
                self._position = _text(last[0].identifier) if last else "0-0"
                await self._catch_up(client)
                alive = await client.smembers(self._keys["nodes"])
                self._awaiting = {_text(n) for n in alive} - {self.node}
                break
            except _failures() as exc:
                wait = backoff.next_wait()
                log.warning(
                    "cannot reach the broker at %s (%s); not serving until it answers, "
                    "retrying in %gs",
                    self.url,
                    exc,
                    wait,
                )
                await trio.sleep(wait)
        self._append("sync")
        log.info("broker: node %s joined the chat at %s", self.node, self.url)

    async def _retire_predecessors(self, client: coredis.Redis[bytes]) -> None:
        """Expire the key of the dead worker this one replaces, so that the nodes that
        know its users show them leaving at their next check (within :data:`HEARTBEAT`)
        rather than :data:`NODE_TTL` after it died, and their nicks are free again."""
        if self._slot is None:
            return
        for raw in await client.smembers(self._keys["nodes"]):
            other = _text(raw)
            if other.startswith(f"{self._slot}-") and other != self.node:
                log.info("broker: node %s, the worker this one replaces, is gone", other)
                await client.delete([f"{self._keys['nodes']}:{other}"])

    async def _raise_floor(self, client: coredis.Redis[bytes]) -> None:
        await client.eval(_FLOOR, keys=[self._keys["counter"]], args=[self.last_event_id])

    async def _catch_up(self, client: coredis.Redis[bytes]) -> None:
        """Store the chat lines appended while this node was away (history only: nobody
        here was there to see them live, and who was where then no longer matters)."""
        if self._position == "0-0":
            return
        start = f"{self.last_event_id + 1}-0"
        first = await client.xrange(self._keys["log"], count=1)
        if first:
            first_id = int(_text(first[0].identifier).partition("-")[0])
            payload = cast("bytes | None", first[0].field_values.get(b"x"))
            held = self._decode_all(_text(first[0].identifier), payload)
            if held and held[0].kind == "event":  # a group's lines start below its id
                first_id = getattr(held[0].event, "id", first_id)
            if first_id > self.last_event_id + 1 and self.last_event_id:
                log.warning(
                    "broker: the log no longer holds ids %d to %d: this node's history "
                    "misses what was said then",
                    self.last_event_id + 1,
                    first_id - 1,
                )
        while True:
            page = await client.xrange(
                self._keys["log"], start, self._position, count=CATCH_UP_BATCH
            )
            for item in page:
                payload = cast("bytes | None", item.field_values.get(b"x"))
                for entry in self._decode_all(_text(item.identifier), payload):
                    # (A group's first lines may be older than the first id missed.)
                    if entry.kind == "event" and entry.persist and self._missed(entry):
                        self._deliver_remote(entry, state=False)
            if len(page) < CATCH_UP_BATCH:
                break
            start = "(" + _text(page[-1].identifier)

    async def _write_forever(self, client: coredis.Redis[bytes]) -> None:
        """Append what waits, a batch at a time, through a connection of our own (see
        :mod:`.connection`: a tenth of coredis's CPU per call); ``client`` (coredis)
        raises the floor after a failure."""
        keys = (self._keys["counter"], self._keys["log"], self._keys["seqs"])
        backoff = _Backoff()
        connection: RedisConnection | None = None
        try:
            while True:
                if not self._outgoing:
                    self._sent_all.set()
                    await self._wake_writer.wait()
                    self._wake_writer = trio.Event()
                    self._sent_all = trio.Event()
                    continue
                batch = list(itertools.islice(self._outgoing, APPEND_BATCH))
                # From now on the groups taken are sent as they are (again, if this fails:
                # the script skips what it appended by the running numbers, whole entries).
                self._open_group = None
                # Running numbers follow each other in _outgoing (one per entry or line).
                args = (
                    LOG_CAP,
                    self.node,
                    batch[0][0],
                    "".join([flag for _, flag, _ in batch]),
                    b"\n".join([*(self._payload(unit) for unit in batch), b""]),
                    " ".join([str(len(rows)) for _, flag, rows in batch if flag == "g"]),
                )
                try:
                    with trio.fail_after(5):
                        if connection is None:
                            connection = await open_redis_connection(self.url)
                        await _run_script(connection, _APPEND, _APPEND_SHA, keys, args)
                except _failures() as exc:
                    if connection is not None:
                        await connection.aclose()
                        connection = None
                    self._pause("writing", exc)
                    await trio.sleep(backoff.next_wait())
                    with contextlib.suppress(*_failures()):
                        await self._raise_floor(client)
                    continue
                backoff.reset()
                self._resume("writing")
                for _ in batch:
                    self._outgoing.popleft()
        finally:
            if connection is not None:
                await connection.aclose()

    def _payload(self, unit: _Outgoing) -> bytes:
        seq, _, payload = unit
        if isinstance(payload, list):  # a group: its lines, written as they are now
            return encode_columns(
                self.node,
                seq,
                list(map(_EVENT, payload)),
                list(map(_PERSIST, payload)),
                list(map(author_of, payload)),
            )
        return payload

    async def _read_forever(self) -> None:
        """Read the log on from :attr:`_position`, blocking in Redis until there is more,
        through a connection of our own (see :mod:`.connection`)."""
        backoff = _Backoff()
        xread = encode_head(
            b"XREAD", b"COUNT", READ_BATCH, b"BLOCK", 1000, b"STREAMS", self._keys["log"]
        )
        own = own_event_prefix(self.node)
        own_line = own_line_prefix(self.node)
        connection: RedisConnection | None = None
        try:
            while True:
                try:
                    with trio.fail_after(5):
                        if connection is None:
                            connection = await open_redis_connection(self.url)
                        request = encode_command_after(xread, self._position)
                        entries = await connection.read_stream_encoded(request)
                except _failures() as exc:
                    if connection is not None:
                        await connection.aclose()
                        connection = None
                    self._pause("reading", exc)
                    await trio.sleep(backoff.next_wait())
                    continue
                backoff.reset()
                self._resume("reading")
                self._read_entries(entries, own, own_line)
                await trio.lowlevel.checkpoint()
        finally:
            if connection is not None:
                await connection.aclose()

    async def _keep_alive_forever(self, client: coredis.Redis[bytes]) -> None:
        """Refresh this node's key; notice nodes whose key expired, and announce them gone."""
        mine = f"{self._keys['nodes']}:{self.node}"
        while True:
            try:
                with trio.fail_after(5):
                    await client.set(mine, b"1", ex=NODE_TTL)
                    await client.sadd(self._keys["nodes"], [self.node])
                    for raw in await client.smembers(self._keys["nodes"]):
                        other = raw.decode()
                        if other == self.node:
                            continue
                        if await client.exists([f"{self._keys['nodes']}:{other}"]):
                            continue
                        # Whoever removes an expired node first announces it, once; a node
                        # that knows none of its users (it started after they came) leaves
                        # that to one that does, for a while.
                        noticed = self._expired.setdefault(other, trio.current_time())
                        knows = any(replica.node_of(s) == other for s in self.hub.sessions.values())
                        if (
                            knows or trio.current_time() - noticed > NODE_TTL
                        ) and await client.srem(self._keys["nodes"], [other]):
                            self._expired.pop(other, None)
                            self._node_gone(other)
            except _failures():
                pass  # the reader and writer say so
            await trio.sleep(HEARTBEAT)

    async def aclose(self) -> None:
        """Send what waits (this node's users' leaves, for up to :data:`CLOSE_WAIT`
        seconds), and leave the chat at once rather than after the key expires."""
        import coredis

        with trio.move_on_after(CLOSE_WAIT):
            while self._outgoing:
                await self._sent_all.wait()
        with trio.move_on_after(1):
            async with coredis.Redis.from_url(self.url) as client:
                await client.delete([f"{self._keys['nodes']}:{self.node}"])
                await client.srem(self._keys["nodes"], [self.node])

    # ------------------------------------------------------------ entries read back

    def _missed(self, entry: Entry) -> bool:
        """Whether ``entry``'s event is newer than any this node stored before it started."""
        return getattr(entry.event, "id", 0) > self.last_event_id

    def _decode_all(self, stream_id: str, payload: bytes | None) -> list[Entry]:
        """The entry (a group: the entry of each of its lines, see
        :func:`.log.decode_entries`); none, said in the log, if it is not one of ours."""
        try:
            if payload is None:
                raise BadEntry(f"log entry {stream_id} has no payload")
            return decode_entries(stream_id, payload)
        except BadEntry as exc:
            log.warning("broker: skipped an entry: %s", exc)
            return []

    def _handle(self, entry: Entry) -> None:
        if entry.kind == "event":
            if entry.node == self.node:
                self._deliver_own(entry)
            else:
                self._deliver_remote(entry, state=True)
            return
        if entry.node == self.node:
            if entry.kind == "hello":
                self._unconfirmed.pop(name_key(str(entry.data.get("nick", ""))), None)
            self._release_replies(entry.seq)
            return
        handler = getattr(self, f"_on_{entry.kind}")
        handler(entry)

    def _deliver_own(self, entry: Entry) -> None:
        pending = self._mine.pop(entry.seq, None)
        if pending is not None and entry.event is not None:  # now with its id from the log
            self._hand_on(dataclasses.replace(pending, event=entry.event))
        self._release_replies(entry.seq)

    def _give(self, pending: Pending) -> None:
        """Pass ``pending`` on: now, or, while a batch is read, with the rest of it."""
        if self._handing is not None:
            self._handing.append(pending)
        else:
            self._deliver_one(pending)

    def _deliver_each(self, batch: list[Pending]) -> None:
        for pending in batch:
            self._deliver_one(pending)

    def _read_entries(self, entries: list[StreamEntry], own: bytes, own_line: bytes) -> None:
        """Handle what one XREAD read, in order, and hand on what it holds for delivery as
        one batch (one call, one commit and one fan-out per batch rather than per line:
        at the fan-out bench's rates the cost per hand-on outweighed the cost per line).
        ``own``, ``own_line``: how this node's events and chat lines start, see
        :func:`.log.own_event_seq`.

        Chat lines, this node's and the others', are handed on right here (what
        :meth:`_read_own`, :meth:`_deliver_remote` and :meth:`_hand_on` do, without an
        :class:`.log.Entry` and with what they look up bound once per batch): they are
        most of the log, and each call and lookup per line showed in a node's CPU per
        line."""
        handing: list[Pending] = []
        self._handing = handing
        try:
            self._read_lines(entries, own, own_line, handing)
        finally:
            self._handing = None
            if handing:
                self._deliver_many(handing)

    def _read_lines(
        self, entries: list[StreamEntry], own: bytes, own_line: bytes, handing: list[Pending]
    ) -> None:
        mine, replies = self._mine, self._replies
        expect, deliver, room = self.hub.expect, handing.append, self.hub.room
        raw_id = b""
        try:
            for raw_id, payload in entries:
                if payload is None or payload[:1] != b"[":  # not a chat line
                    stream_id = raw_id.decode()
                    seq = own_event_seq(payload, own) if payload is not None else None
                    if seq is not None:  # this node's own event: it holds it already
                        self._read_own(seq, stream_id)
                        continue
                    for entry in self._decode_all(stream_id, payload):
                        self._handle(entry)
                    continue
                tag = payload[2:3]
                if tag == b"c" or tag == b"g":  # a group of chat lines (most of the log)
                    self._read_group(raw_id, payload, handing)
                    continue
                seq = own_event_seq(payload, own_line)
                if seq is not None:  # this node's own line: it holds it already
                    pending = mine.pop(seq, None)
                    if pending is None:  # (it failed, or this node sent it twice)
                        self._release_replies(seq)
                        continue
                    event_id = int(raw_id.partition(b"-")[0])
                    number_own_line(pending.event, event_id)  # type: ignore[arg-type]
                else:
                    stream_id = raw_id.decode()
                    try:
                        node, seq, event, persist, author = decode_line(stream_id, payload)
                    except BadEntry as exc:
                        log.warning("broker: skipped an entry: %s", exc)
                        continue
                    if node == self.node:  # not known by its start: still this node's own
                        self._read_own(seq, stream_id)
                        continue
                    event_id = event.id
                    pending = Pending(event, room(event.room), (), persist, author=author)
                    seq = 0  # (another node's: no reply of this one waits for it)
                if event_id > self.last_event_id:
                    self.last_event_id = event_id
                expect(event_id)
                deliver(pending)
                if replies and seq:
                    self._release_replies(seq)
        finally:
            if raw_id:  # read on after the last entry handled (one decode per batch)
                self._position = raw_id.decode()

    def _read_group(self, raw_id: bytes, payload: bytes, handing: list[Pending]) -> None:
        """Hand on the lines of a group read from the log (see :func:`.log.encode_group`),
        as :meth:`_read_lines` hands on a line: this node's own from its start alone (it
        holds them already), another node's each decoded."""
        mine, replies, expect, deliver = self._mine, self._replies, self.hub.expect, handing.append
        last_id = int(raw_id.partition(b"-")[0])
        own = own_group_seqs(
            payload, self._own_columns if payload[2:3] == b"c" else self._own_group
        )
        if own is not None:
            first_seq, count = own
            first_id = last_id - count + 1
            pop, waiting = mine.pop, len(mine)
            held = [pop(seq, None) for seq in range(first_seq, first_seq + count)]
            # (Counted, not looked for: `None in held` would call Pending.__eq__ on each.)
            if replies or waiting - len(mine) < count:  # (a line failed or came twice; a reply)
                for offset, pending in enumerate(held):
                    event_id, seq = first_id + offset, first_seq + offset
                    if pending is not None:
                        number_own_line(pending.event, event_id)  # type: ignore[arg-type]
                        expect(event_id)
                        deliver(pending)
                    if replies:
                        self._release_replies(seq)
            else:  # (all of them, most groups: their ids expected at once)
                self.hub.expect_run(first_id, last_id)
                for event_id, pending in enumerate(held, first_id):
                    number_own_line(pending.event, event_id)  # type: ignore[arg-type, union-attr]
                handing.extend(held)  # type: ignore[arg-type]
        else:
            stream_id = raw_id.decode()
            try:
                group = decode_group(stream_id, payload)
            except BadEntry as exc:
                log.warning("broker: skipped an entry: %s", exc)
                return
            lines = group.lines
            if group.node == self.node:  # not known by its start: still this node's own
                for seq, line in enumerate(lines, group.first_seq):
                    self._read_own(seq, f"{line.id}-0")
                return
            # Their ids follow each other up to the group's: expected at once.
            self.hub.expect_run(last_id - len(lines) + 1, last_id)
            room = self.hub.room
            if group.room is not None:  # (most groups: one room)
                rooms: Iterable[Room | None] = repeat(room(group.room))
            else:
                found = {name: room(name) for name in {line.room for line in lines}}
                rooms = [found[line.room] for line in lines]
            handing += pending_lines(lines, rooms, group.persist, repeat(None), group.authors)
        if last_id > self.last_event_id:
            self.last_event_id = last_id

    def _read_own(self, seq: int, stream_id: str) -> None:
        """This node's own event number ``seq`` read back: what :meth:`_deliver_own` does
        with the decoded entry, from the event it holds (the entry has the same one)."""
        pending = self._mine.pop(seq, None)
        if pending is not None:
            event_id = int(stream_id.partition("-")[0])
            self._hand_on(pending.with_event(renumbered(pending.event, event_id)))
        self._release_replies(seq)

    def _hand_on(self, pending: Pending) -> None:
        """Pass a numbered event read from the log on to the publisher, in log order."""
        event_id: int = pending.event.id  # type: ignore[union-attr]
        self.last_event_id = max(self.last_event_id, event_id)
        self.hub.expect(event_id)
        self._deliver(pending)

    def _release_replies(self, seq: int) -> None:
        while self._replies and self._replies[0][0] <= seq:
            self._deliver(self._replies.popleft()[1])

    def _deliver_remote(self, entry: Entry, *, state: bool) -> None:
        event = entry.event
        assert event is not None
        if state:
            self._apply(entry.node, event, entry.data)
        room = self.hub.room(entry.room) if entry.room is not None else None
        local = tuple(
            s
            for key in entry.to
            if (s := self.hub.sessions.get(key)) is not None and replica.node_of(s) is None
        )
        self._hand_on(
            Pending(event, room, local, entry.persist, None, entry.accounts, author=entry.author)
        )

    # ------------------------------------------------------------------ outages

    def _pause(self, what: str, exc: BaseException) -> None:
        if what in self._paused:
            return
        first = not self._paused
        self._paused.add(what)
        log.warning("broker: %s the log failed (%s); cross-node delivery paused", what, exc)
        if first:
            self._tell_local("cross-node delivery paused: the server lost its broker; retrying")

    def _resume(self, what: str) -> None:
        if what not in self._paused:
            return
        self._paused.discard(what)
        if not self._paused:
            log.warning("broker: reconnected to %s; cross-node delivery resumed", self.url)
            self._tell_local("cross-node delivery resumed")

    def _tell_local(self, text: str) -> None:
        local = tuple(s for s in self.hub.sessions.values() if replica.node_of(s) is None)
        if local:
            self._deliver(Pending(Info(text=text), None, local))


_EVENT = operator.attrgetter("event")
_PERSIST = operator.attrgetter("persist")

#: The start of each EVALSHA sent, by script and keys: encoded once (see _run_script).
_SCRIPT_HEADS: dict[tuple[str, tuple[str, ...]], tuple[int, bytes]] = {}


async def _run_script(
    connection: RedisConnection, script: str, sha: str, keys: tuple[str, ...], args: tuple[Any, ...]
) -> object:
    """``EVALSHA``, or ``EVAL`` (which caches the script again) when Redis does not know
    the script: it restarted, or its script cache was flushed."""
    head = _SCRIPT_HEADS.get((sha, keys))
    if head is None:
        head = _SCRIPT_HEADS[sha, keys] = encode_head(b"EVALSHA", sha, len(keys), *keys)
    try:
        return await connection.call_encoded(encode_command_after(head, *args))
    except CommandError as exc:
        if exc.code != "NOSCRIPT":
            raise
    return await connection.call(b"EVAL", script, len(keys), *keys, *args)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
