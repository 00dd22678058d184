"""The history service: pages of a room's or a conversation's stored messages for a
session (the one with its ``join`` and a gap-fill ``after`` an id never overlap what it
receives live), the room's latest lines read into memory for joiners
(:mod:`~trio_chat.recent`), and the pruning of old ones.

(Committing messages before fan-out is the :mod:`~trio_chat.publisher`'s job; accounts and
logins are :mod:`~trio_chat.logins`'.)
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import trio

from .errors import LoginRefused
from .hub import Device, Session, serving
from .names import name_key
from .protocol import History
from .recent import RecentLines
from .store import Store, StoredMessage, StoreError

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger("trio_chat.store")

#: Most messages one history request returns.
MAX_HISTORY_PAGE = 500


def clamp_page(limit: int) -> int:
    """A page holds 1 to :data:`MAX_HISTORY_PAGE` messages."""
    return max(1, min(limit, MAX_HISTORY_PAGE))


def cut_page(
    messages: list[StoredMessage], limit: int, *, forward: bool
) -> tuple[list[StoredMessage], bool]:
    """``limit`` of ``limit + 1`` fetched messages, and whether more remain: the first ones
    when paging forward (``after``), the last ones when paging back."""
    more = len(messages) > limit
    return (messages[:limit] if forward else messages[-limit:]), more


def wire_form(message: StoredMessage) -> dict[str, Any]:
    """A stored message shaped like the ``message`` or ``private`` event that carried it."""
    if message.kind == "private":
        return {
            "type": "private",
            "id": message.id,
            "ts": message.ts,
            "nick": message.sender,
            "to": message.recipient,
            "text": message.text,
        }
    line: dict[str, Any] = {
        "type": "message",
        "id": message.id,
        "ts": message.ts,
        "room": message.room,
        "nick": message.sender,
        "text": message.text,
        "kind": message.kind,
    }
    if message.reply_to is not None:  # the current state (see trio_chat.changes)
        line["reply_to"] = message.reply_to
        if message.quote_nick is not None:
            line["quote"] = {"nick": message.quote_nick, "text": message.quote_text or ""}
    if message.edited is not None:
        line["edited"] = message.edited
    if message.deleted:
        line["deleted"] = True
    if message.reactions:
        line["reactions"] = message.reactions
    if message.changed is not None:
        line["changed"] = message.changed
    return line


class HistoryService:
    """The server's history, read from a :class:`~trio_chat.store.Store` for sessions."""

    def __init__(self, store: Store, hub: Hub, *, history_on_join: int) -> None:
        self.store = store
        self.hub = hub
        self.history_on_join = history_on_join
        # Per room key: set once the task reading that room's latest lines is done.
        self._warming: dict[str, trio.Event] = {}
        if history_on_join > 0:
            hub.join_history = self.join_page

    async def warm(self, room: str) -> None:
        """Have ``room``'s latest lines in memory (:attr:`Hub.recent`), so that a user who
        joins it gets its history with the ``join`` (:meth:`join_page`), without waiting.

        Read from the store once while the room exists: before the read, the room's
        lines start being collected as they are delivered; the read takes those stored
        before (below :meth:`Hub.history_bound`), so the two meet with nothing missing
        or twice. Call :meth:`Hub.join` right after, with no ``await`` between (a room
        that vanishes drops its lines). Raises :class:`StoreError`.
        """
        key = name_key(room)
        recent = self.hub.recent
        while not self.at_hand(room):
            warming = self._warming.get(key)
            if warming is not None:  # another join is reading them: wait for it
                await warming.wait()
                continue
            lines = recent[key] = RecentLines(self.history_on_join + 1)
            warming = self._warming[key] = trio.Event()
            try:
                stored = await self.store.history(
                    room, before=self.hub.history_bound(), limit=self.history_on_join + 1
                )
            except BaseException:
                if recent.get(key) is lines:
                    del recent[key]
                raise
            finally:
                del self._warming[key]
                warming.set()
            if recent.get(key) is lines:
                lines.prime([wire_form(m) for m in stored])
                return

    def at_hand(self, room: str) -> bool:
        """Whether a join of ``room`` needs no :meth:`warm` first (its latest lines are in
        memory, or joins come with no history)."""
        if self.history_on_join <= 0:
            return True
        lines = self.hub.recent.get(name_key(room))
        return lines is not None and lines.ready

    def forget_unused(self, room: str) -> None:
        """A join after :meth:`warm` failed: drop the lines of a room that does not exist."""
        key = name_key(room)
        lines = self.hub.recent.get(key)
        if key not in self.hub.rooms and lines is not None and lines.ready:
            del self.hub.recent[key]

    def join_page(self, session: Session, room: str) -> History | None:
        """The history ``session`` gets right after its ``join`` of ``room`` (called by
        the hub as it delivers the ``join``): the latest lines before it, ``None`` if none."""
        lines = self.hub.recent.get(name_key(room))
        if lines is None or not lines.ready or not lines.lines:
            return None
        messages = lines.page()
        more = len(messages) > self.history_on_join
        messages = messages[-self.history_on_join :]
        oldest = session.history_oldest
        key = name_key(room)
        oldest[key] = min(oldest.get(key, messages[0]["id"]), messages[0]["id"])
        return History(room=room, messages=messages, more=more)

    async def prune_forever(self, keep_days: float, every: float = 3600.0) -> None:
        """Delete messages older than ``keep_days``, now and then every ``every`` seconds."""
        while True:
            try:
                removed = await self.store.prune(time.time() - keep_days * 86400)
            except StoreError as exc:
                log.error("pruning old messages failed: %s", exc)
            else:
                if removed:
                    log.info("pruned %d messages older than %g days", removed, keep_days)
            await trio.sleep(every)

    async def close(self) -> None:
        """Remember the last id given out, so numbering goes on after a restart (with a
        broker the shared log numbers, and this store's last id says how far it read)."""
        if self.hub.numbered_by_log:
            return
        with trio.move_on_after(5):
            await self.store.note_last_id(self.hub.last_id)

    async def send_recent(self, session: Session, room: str, *, device: Device) -> None:
        """Right after ``device`` joined its user, already in ``room`` (live delivery began
        for it now, not when its user joined): the latest messages before that."""
        bound = self.hub.history_bound()
        device.history_bound[name_key(room)] = bound
        if self.history_on_join <= 0:
            return
        await self.send_room_page(
            session, room, before=bound, limit=self.history_on_join, skip_empty=True
        )

    def room_bound(self, session: Session, room: str) -> int:
        """Where live delivery began for ``session`` in ``room``: history stops below it.
        For a connection that joined its user later (the one asking: :data:`serving`),
        where it began for that connection, if later."""
        key = name_key(room)
        bound = session.history_bound.get(key, self.hub.history_bound())
        device = serving.get()
        if device is not None and device.session is session:
            bound = max(bound, device.history_bound.get(key, bound))
        return bound

    async def send_room_page(
        self,
        session: Session,
        room: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
        ref: str | None = None,
        skip_empty: bool = False,
    ) -> None:
        """One page of a room's history for ``session``.

        ``after`` gives exactly the gap after the last id a client saw, up to where its
        live stream began (never overlapping it); neither pages back from there; ``before``
        pages back from any id: the messages before it that have been delivered (a member
        who saw them live gets them again, as asked).

        A gap within the room's latest lines in memory (:meth:`RecentLines.after
        <trio_chat.recent.RecentLines.after>`) is answered from them, with no read: what a
        storm of clients coming back after a restart asks for.
        """
        bound = self.room_bound(session, room)
        limit = clamp_page(limit)
        if before is None or after is not None:
            before = bound if before is None else min(before, bound)
        else:
            before = min(before, self.hub.history_bound())
        if after is not None:
            lines = self.hub.recent.get(name_key(room))
            page = None if lines is None else lines.after(after, before, limit + 1)
            if page is not None:
                if page or not skip_empty:
                    more = len(page) > limit
                    self.hub.send_to(
                        session, History(room=room, messages=page[:limit], more=more, ref=ref)
                    )
                return
        messages, more = cut_page(
            await self.store.history(room, before=before, after=after, limit=limit + 1),
            limit,
            forward=after is not None,
        )
        if after is None and messages:
            # Remember how far back this session has been shown, for /history.
            oldest = session.history_oldest
            key = name_key(room)
            oldest[key] = min(oldest.get(key, messages[0].id), messages[0].id)
        if messages or not skip_empty:
            self.hub.send_to(
                session,
                History(room=room, messages=[wire_form(m) for m in messages], more=more, ref=ref),
            )

    async def send_changed_page(
        self,
        session: Session,
        room: str,
        changed_after: int,
        *,
        limit: int = 50,
        ref: str | None = None,
    ) -> None:
        """The messages of ``room`` changed (edited, deleted, reacted to) by a change with
        an id above ``changed_after``, in their current state, ordered by ``changed``: how
        a returning client catches up with changes of messages it saw before (page on with
        the last ``changed`` received while ``more``). A change may be in a page and come
        live too: applying one twice changes nothing."""
        limit = clamp_page(limit)
        messages, more = cut_page(
            await self.store.changed_history(room, changed_after=changed_after, limit=limit + 1),
            limit,
            forward=True,
        )
        self.hub.send_to(
            session,
            History(room=room, messages=[wire_form(m) for m in messages], more=more, ref=ref),
        )

    async def room_history(
        self, room: str, *, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> list[StoredMessage]:
        """A page of ``room``'s stored messages, oldest first (see ``ChatServer.history``)."""
        return await self.store.history(room, before=before, after=after, limit=clamp_page(limit))

    async def send_private_page(
        self,
        session: Session,
        other: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
        ref: str | None = None,
    ) -> None:
        """Private history between the account ``session`` is logged in to and the
        account ``other`` (a nick, taken as the account of that name) only.

        By account keys alone: a guest's private messages are never stored, so nobody who
        registers a nick later can read what was said to whoever used it before.
        """
        account = session.account
        if account is None:
            raise LoginRefused(
                "login_required", "private history is kept for registered users; /login first"
            )
        limit = clamp_page(limit)
        messages, more = cut_page(
            await self.store.private_history(
                account, name_key(other), before=before, after=after, limit=limit + 1
            ),
            limit,
            forward=after is not None,
        )
        self.hub.send_to(
            session,
            History(with_nick=other, messages=[wire_form(m) for m in messages], more=more, ref=ref),
        )
