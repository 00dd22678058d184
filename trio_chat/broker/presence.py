"""What a node knows of the other nodes' users, kept from the shared log.

The other half of :class:`~trio_chat.broker.redis.RedisBroker` (which reads the log and
hands entries here): another node's joins, leaves, renames and topics (:meth:`_apply`),
its users arriving and leaving (``hello``/``bye``), the room rules it changed, the
snapshots nodes send one that starts, and nodes gone. Each changes this node's hub through
:mod:`~trio_chat.broker.replica` without publishing anything: the other node published it.

Besides who is where, the moments of presence that one node gives its users and the
others must give theirs alike: another node's typing notices (:meth:`Presence._on_typing`),
handed on to this node's receivers in the log's order, among the room's lines; and its
users' away state (:meth:`Presence._on_away`: ``/away``, a user kept offline by
``always_on`` and back), which ``/who``, ``/msg`` and the ``away`` notices show here as
there.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..hub import Pending, Room, RuleChange, Session
from ..protocol import Info, Joined, Left, NickChanged, Topic, Typing
from ..typing_notices import typing_receivers
from . import replica
from .log import Entry, EntryKind

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["Presence"]

log = logging.getLogger("trio_chat.broker")


class Presence:
    """Another node's users and rules, replayed into this hub (the broker's base)."""

    # Set up by RedisBroker.__init__ (declared here for the methods below).
    hub: Hub
    node: str
    _deliver: Callable[[Pending], None]
    #: This node's users whose ``hello`` is not read back yet, by nick key.
    _unconfirmed: dict[str, int]
    #: The nodes whose snapshot a starting node waits for, and the rule changes it read
    #: meanwhile (applied again over each snapshot, which may be older).
    _awaiting: set[str]
    _rules_read: collections.deque[RuleChange]

    def _append(self, kind: EntryKind, **fields: Any) -> int:
        raise NotImplementedError  # the broker's

    def _apply(self, node: str, event: object, data: dict[str, Any]) -> None:
        """Replay another node's change to who is where."""
        hub = self.hub
        if isinstance(event, Joined):
            joiner = hub.find(event.nick) or replica.add_user(hub, event.nick, node, None)
            replica.join(hub, joiner, event.room, operator=data.get("op") is True)
        elif isinstance(event, Left):
            # Usually gone already (its node sent the bye first); a kick of a user here.
            leaver = hub.find(event.nick)
            if leaver is not None and replica.node_of(leaver) in (None, node):
                replica.leave(hub, leaver, event.room)
        elif isinstance(event, NickChanged):
            renamed = hub.find(event.old)
            taken = hub.find(event.new)
            if taken is not None and taken is not renamed:
                self._lost_race(taken, node)
            if renamed is not None:
                replica.rename(hub, renamed, event.new)
        elif isinstance(event, Topic):
            room = hub.room(event.room)
            if room is not None:
                room.topic = event.topic

    def _lost_race(self, session: Session, node: str) -> None:
        """Another node's claim on this nick came first in the log: it wins."""
        if replica.node_of(session) is not None:
            replica.remove_user(self.hub, session)
            return
        log.info("nick %s was taken on node %s at the same moment", session.nick, node)
        session.close("nick_taken", f"the nickname {session.nick!r} was taken at the same moment")
        self.hub.detach(session, "nickname taken elsewhere")

    def _on_hello(self, entry: Entry) -> None:
        nick = str(entry.data.get("nick", ""))
        account = entry.data.get("account")
        holder = self.hub.find(nick)
        if holder is not None and replica.node_of(holder) == entry.node:
            holder.account = str(account) if account else None  # logged in since it came
            return
        if holder is not None:
            mine = replica.node_of(holder) is None
            if not (mine and self._unconfirmed.get(holder.key) == holder.id):
                return  # an earlier claim holds: the newcomer's node will drop it
            self._lost_race(holder, entry.node)
        address = entry.data.get("address")
        added = replica.add_user(
            self.hub, nick, entry.node, str(account) if account else None, str(address or "?")
        )
        added.bot = entry.data.get("bot") is True

    def _on_tell(self, entry: Entry) -> None:
        """Another node's notice to a user of this one (see ``RedisBroker._tell_remote``)."""
        holder = self.hub.find(str(entry.data.get("nick", "")))
        text = entry.data.get("text")
        if holder is not None and replica.node_of(holder) is None and isinstance(text, str):
            self._deliver(Pending(Info(text=text), None, (holder,)))

    def share_typing(self, typist: Session, room: Room, active: bool) -> None:
        """A typing notice of this node's user passed (see
        :attr:`TypingNotices.share <trio_chat.typing_notices.TypingNotices.share>`): into
        the log, for the members of ``room`` on other nodes. Only when the room may have
        some: every member not among its receivers here (``here``) may be one (or a bot, or
        a user kept offline), so a room of this node's users alone costs Redis nothing."""
        if len(room.members) > len(room.here):
            self._append("typing", data={"room": room.name, "nick": typist.nick, "active": active})

    def _on_typing(self, entry: Entry) -> None:
        """Another node's user is typing (it thinned the notices already): this node's
        receivers get it by the same rule as there (:func:`typing_receivers`), now, in the
        log's order, so never after the line that ended it. Dropped when the typist is
        not, as this node knows, that node's user in the room, or is muted there."""
        data = entry.data
        room_name, nick, active = data.get("room"), data.get("nick"), data.get("active")
        if not (isinstance(room_name, str) and isinstance(nick, str) and isinstance(active, bool)):
            log.warning("broker: skipped an entry: log entry %s is a bad typing", entry.stream_id)
            return
        room = self.hub.room(room_name)
        typist = self.hub.find(nick)
        if (
            room is None
            or typist is None
            or replica.node_of(typist) != entry.node
            or typist.id not in room.members
            or typist.id in room.muted
        ):
            return
        receivers = typing_receivers(room, typist)
        if receivers:
            event = Typing(room=room.name, nick=typist.nick, active=active)
            self._deliver(Pending(event, None, receivers))

    def _away_changed(self, session: Session) -> None:
        """This node's user went away or came back (the hub's ``on_away``): into the log,
        for every other node (``/who`` and ``/msg`` there show it, whoever asks)."""
        if replica.node_of(session) is None:
            self._append("away", data={"nick": session.nick, "away": session.away})

    def _on_away(self, entry: Entry) -> None:
        """Another node's user went away (``away``: the reason) or came back (``None``):
        so it is here, and this node's connections that asked are told, in the log's
        order, as its own node tells its own (:meth:`Hub.away_notice
        <trio_chat.hub.Hub.away_notice>`)."""
        nick, away = entry.data.get("nick"), entry.data.get("away")
        if not (isinstance(nick, str) and (away is None or isinstance(away, str))):
            log.warning("broker: skipped an entry: log entry %s is a bad away", entry.stream_id)
            return
        holder = self.hub.find(nick)
        if holder is None or replica.node_of(holder) != entry.node or holder.away == away:
            return
        holder.away = away
        notice = self.hub.away_notice(holder)
        if notice is not None:
            self._deliver(notice)

    def _on_bye(self, entry: Entry) -> None:
        holder = self.hub.find(str(entry.data.get("nick", "")))
        if holder is not None and replica.node_of(holder) == entry.node:
            replica.remove_user(self.hub, holder)

    def _on_rule(self, entry: Entry) -> None:
        assert entry.rule is not None  # decode_entry checked it
        replica.apply_rule(self.hub, entry.rule)
        if self._awaiting:
            self._rules_read.append(entry.rule)

    def _on_sync(self, entry: Entry) -> None:
        self._append("snapshot", data={"for": entry.node, **self._snapshot()})

    def _snapshot(self) -> dict[str, Any]:
        """What this node holds: its own users (where they are, and their roles there),
        every room's topic and bans (each node has them all)."""
        users = [
            {
                "nick": s.nick,
                "account": s.account,
                "address": s.address,
                "rooms": list(s.rooms),
                **replica.roles(self.hub, s),
                **({"bot": True} if s.bot else {}),
                **({"away": s.away} if s.away else {}),
                # Its hello is not read back yet, so it comes after the sync in the log,
                # where the new node reads it: a race on its nick is settled there.
                **({"new": True} if self._unconfirmed.get(s.key) == s.id else {}),
            }
            for s in self.hub.sessions.values()
            if replica.node_of(s) is None
        ]
        topics = {room.name: room.topic for room in self.hub.rooms.values() if room.topic}
        return {"users": users, "topics": topics, "bans": replica.bans(self.hub)}

    def _on_snapshot(self, entry: Entry) -> None:
        if entry.data.get("for") != self.node:
            return
        hub = self.hub
        for user in entry.data.get("users", ()):
            nick = str(user.get("nick", ""))
            found = hub.find(nick)
            if found is not None and replica.node_of(found) is None and not user.get("new"):
                # This node's own user has a nick that one held before this node started
                # (its hello is older than the sync, so older than ours): that one wins.
                # This node serves before the snapshots come, and could not know.
                self._lost_race(found, entry.node)
                found = None
            if found is None:
                account = user.get("account")
                found = replica.add_user(hub, nick, entry.node, str(account) if account else None)
                found.bot = user.get("bot") is True
            elif replica.node_of(found) != entry.node:
                continue  # another node's claim, or a race their hellos in the log settle
            found.address = str(user.get("address") or found.address)
            away = user.get("away")
            found.away = away if isinstance(away, str) else None
            ops, muted = user.get("op", ()), user.get("muted", ())
            for room_name in user.get("rooms", ()):
                there = replica.join(hub, found, str(room_name), operator=room_name in ops)
                if room_name in muted:
                    there.muted.add(found.id)
        for room_name, topic in dict(entry.data.get("topics", {})).items():
            room = hub.room(room_name)
            if room is not None and not room.topic:
                room.topic = str(topic)
        replica.learn_bans(hub, dict(entry.data.get("bans", {})))
        for change in self._rules_read:  # newer than the snapshot, or as new
            replica.apply_rule(hub, change)
        self._answered(entry.node)

    def _answered(self, node: str) -> None:
        """``node`` sent its snapshot, or is gone: one fewer to wait for."""
        self._awaiting.discard(node)
        if not self._awaiting:
            self._rules_read.clear()

    def _on_gone(self, entry: Entry) -> None:
        gone = str(entry.data.get("node", ""))
        self._answered(gone)
        for session in list(self.hub.sessions.values()):
            if replica.node_of(session) == gone:
                replica.remove_user(self.hub, session)

    def _node_gone(self, node: str) -> None:
        """``node`` stopped refreshing its key: tell everyone its users left."""
        log.warning("broker: node %s is gone; its users are shown as gone", node)
        for session in list(self.hub.sessions.values()):
            if replica.node_of(session) == node:
                self.hub.detach(session, "connection lost (their server went away)")
        self._append("gone", data={"node": node})
        self._on_gone(Entry("gone", self.node, 0, data={"node": node}))
