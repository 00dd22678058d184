"""The hub without sockets: numbering, delivery through a publisher, and bundled runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from trio_chat.broker import LocalBroker
from trio_chat.hub import Hub, Pending, Session
from trio_chat.mailbox import Mailbox
from trio_chat.parcels import Bundle, Item, Parcel, Payload, Raw
from trio_chat.protocol import Joined, Message, ServerEvent
from trio_chat.wire import JSON_LINES, TEXT_LINES, WEBSOCKET_JSON, encoded, sizer


def published_hub() -> tuple[Hub, list[Pending]]:
    """A hub whose numbered events wait in a list, as the publisher task would hold them."""
    hub = Hub()
    queue: list[Pending] = []
    hub.broker = LocalBroker(queue.append)
    return hub, queue


@dataclass
class Wire:
    """A JSON-lines connection's wire as its mailbox sees it (see ``DirectWrite``)."""

    measure: Callable[[Item], int] = field(default_factory=lambda: sizer(JSON_LINES))
    write_now: Callable[[Parcel], bytes] | None = None


def lobby_with(
    *nicks: str, sockets: dict[str, Callable[[Parcel], bytes]] | None = None
) -> tuple[Hub, list[Pending], list[Session]]:
    """A published hub with ``nicks`` in #lobby, their joins delivered and taken;
    ``sockets`` gives some of them a direct write."""
    hub, queue = published_hub()
    sockets = sockets or {}
    sessions = [connect(hub, nick, sockets.get(nick)) for nick in nicks]
    hub.deliver_many(queue)
    queue.clear()
    for session in sessions:
        received(session)
        session.mailbox.sent(session.mailbox.unsent_bytes)  # as the writer would
    return hub, queue, sessions


def connect(hub: Hub, nick: str, write_now: Callable[[Parcel], bytes] | None = None) -> Session:
    mailbox = Mailbox(100, wire=Wire(write_now=write_now))
    session = hub.attach(nick, mailbox, address="127.0.0.1:1", transport="test")
    hub.join(session, "#lobby")
    return session


def received(session: Session) -> list[Payload]:
    """What the session's mailbox holds (the hub's parcels, unwrapped)."""
    items = session.mailbox.take_nowait(100)
    return [item.event if isinstance(item, Parcel) else item for item in items]


def flatten(items: list[Payload]) -> list[ServerEvent]:
    out: list[ServerEvent] = []
    for item in items:
        out.extend(item.events if isinstance(item, Bundle) else (item,))
    return out


def test_a_run_of_lines_to_one_room_reaches_each_member_as_one_bundle() -> None:
    hub, queue, (ann, bob) = lobby_with("ann", "bob")
    lines = [hub.say(ann, "#lobby", f"line {i}") for i in range(3)]
    assert received(bob) == []  # nothing goes out before the publisher delivers
    hub.deliver_many(queue)

    for session in (ann, bob):
        assert len(session.mailbox) == 3  # bounded in events, not in queue items
        items = received(session)
        assert len(items) == 1 and isinstance(items[0], Bundle)
        assert list(items[0].events) == lines
    assert bob.mailbox.unsent_bytes == sum(len(encoded(m, JSON_LINES)) for m in lines)
    assert hub.history_bound() == hub.last_id + 1  # every bundled line counts as delivered


def test_other_events_split_runs_and_keep_their_place_in_the_order() -> None:
    hub, queue, (ann,) = lobby_with("ann")
    first = hub.say(ann, "#lobby", "one")
    second = hub.say(ann, "#lobby", "two")
    bob = hub.attach("bob", Mailbox(100), address="127.0.0.1:2", transport="test")
    hub.join(bob, "#lobby")
    third = hub.say(ann, "#lobby", "three")
    hub.deliver_many(queue)

    got = received(ann)
    assert isinstance(got[0], Bundle) and list(got[0].events) == [first, second]
    assert isinstance(got[1], Joined) and got[1].nick == "bob"
    assert got[2] == third  # a run of one is sent as itself
    # Receivers are decided at delivery: bob gets the room's events from his own join on
    # (the lines before it are his joining history), in the same order as everyone.
    assert flatten(received(bob)) == [got[1], third]


def test_lines_that_failed_to_be_stored_are_left_out_of_the_run() -> None:
    hub, queue, (ann,) = lobby_with("ann")
    kept, _lost, kept_too = (hub.say(ann, "#lobby", t) for t in ("a", "b", "c"))
    hub.deliver_many(queue, failed=frozenset({id(queue[1])}))
    assert flatten(received(ann)) == [kept, kept_too]
    assert hub.history_bound() == hub.last_id + 1


def test_a_bundle_is_encoded_as_its_events_one_after_another() -> None:
    lines = tuple(Message(id=i, ts=0.0, room="#lobby", nick="ann", text=f"hi {i}") for i in (1, 2))
    bundle = Bundle(events=lines)
    for fmt in (JSON_LINES, TEXT_LINES):
        assert encoded(bundle, fmt) == b"".join(encoded(m, fmt) for m in lines)
    assert sizer(WEBSOCKET_JSON)(bundle) == sum(len(encoded(m, WEBSOCKET_JSON)) for m in lines)


def test_fan_out_writes_straight_to_each_receiver_with_nothing_queued() -> None:
    """However close together events come (no busy-hub window): waking a writer for a
    receiver that has nothing queued costs task steps and milliseconds of latency."""
    wire: dict[str, list[bytes]] = {"ann": [], "bob": []}

    def socket_of(nick: str, takes: int | None = None) -> Callable[[Parcel], bytes]:
        def write_now(parcel: Parcel) -> bytes:
            data = encoded(parcel, JSON_LINES)
            cut = len(data) if takes is None else takes
            wire[nick].append(data[:cut])
            return data[cut:]

        return write_now

    sockets = {"ann": socket_of("ann"), "bob": socket_of("bob", takes=5)}
    hub, queue, (ann, bob) = lobby_with("ann", "bob", sockets=sockets)
    wire["ann"].clear()  # the joins
    wire["bob"].clear()
    first = hub.say(ann, "#lobby", "one")
    hub.deliver_many(queue)
    queue.clear()
    second = hub.say(ann, "#lobby", "two")  # right after: still written directly to ann
    hub.deliver_many(queue)

    assert wire["ann"] == [encoded(first, JSON_LINES), encoded(second, JSON_LINES)]
    assert received(ann) == [] and ann.mailbox.unsent_bytes == 0
    # bob's socket took 5 bytes of the first line; the rest and the second line wait, in order.
    assert wire["bob"] == [encoded(first, JSON_LINES)[:5]]
    assert received(bob) == [Raw(data=encoded(first, JSON_LINES)[5:]), second]


def test_a_fan_out_is_encoded_once_and_every_socket_gets_the_same_bytes() -> None:
    written: list[bytes] = []

    def write_now(parcel: Parcel) -> bytes:
        written.append(encoded(parcel, JSON_LINES))
        return b""

    nicks = ("ann", "bob", "cat")
    hub, queue, (ann, *_) = lobby_with(*nicks, sockets=dict.fromkeys(nicks, write_now))
    written.clear()
    hub.say(ann, "#lobby", "hi")
    hub.deliver_many(queue)
    assert len(written) == 3 and written[0] is written[1] is written[2]


def test_a_queued_bundle_is_one_parcel_for_all_its_receivers_encoded_once() -> None:
    hub, queue, (ann, bob) = lobby_with("ann", "bob")
    for text in ("one", "two"):
        hub.say(ann, "#lobby", text)
    hub.deliver_many(queue)
    (for_ann,) = ann.mailbox.take_nowait(100)
    (for_bob,) = bob.mailbox.take_nowait(100)
    assert for_ann is for_bob and isinstance(for_ann, Parcel)
    assert isinstance(for_ann.event, Bundle)
    # Sized for the mailboxes (JSON lines), so already encoded: the same bytes for both.
    assert encoded(for_ann, JSON_LINES) is encoded(for_bob, JSON_LINES)
    assert encoded(for_ann, TEXT_LINES) is encoded(for_bob, TEXT_LINES)


def test_messages_are_not_numbered_past_the_message_id_limit() -> None:
    import pytest

    from trio_chat.hub import NotSaved

    hub, _, (alice, bob) = lobby_with("alice", "bob")
    hub.message_id_limit = hub.last_id + 2
    hub.say(alice, "#lobby", "one")
    hub.private(alice, "bob", "two")
    limit = hub.last_id
    for refused in (
        lambda: hub.say(alice, "#lobby", "three"),
        lambda: hub.private(bob, "alice", "x"),
    ):
        with pytest.raises(NotSaved) as info:
            refused()
        assert info.value.code == "not_saved"
    assert hub.last_id == limit  # refused before numbering: no id used up
    hub.join(connect(hub, "carol"), "#lobby")  # a join cannot be refused: numbered past it
    assert hub.last_id == limit + 1
    assert hub.metrics.value("trio_chat_messages_not_saved_total") == 2


def test_a_private_message_is_stored_only_between_two_accounts() -> None:
    hub, queue, (alice, bob, guest) = lobby_with("alice", "bob", "guest")
    alice.account, bob.account = "allce", "bob"
    guest.account = None
    hub.private(alice, "bob", "kept")
    hub.private(alice, "guest", "not kept")
    hub.private(guest, "alice", "nor this")
    alice.account = None  # logged out later: the message stays theirs
    kept, *not_kept = queue
    assert (kept.persist, kept.accounts) == (True, ("allce", "bob"))
    assert [(p.persist, p.accounts) for p in not_kept] == [(False, None), (False, None)]


def test_pending_with_event_keeps_every_other_field() -> None:
    """A broker swaps in the event with the log's id by ``with_event``; a field it forgot
    (a join's arrival, once) silently changed who got what."""
    import dataclasses

    values = {f.name: object() for f in dataclasses.fields(Pending)}
    pending = Pending(**values)  # type: ignore[arg-type]
    event = object()
    swapped = pending.with_event(event)  # type: ignore[arg-type]
    assert swapped.event is event
    for name in values.keys() - {"event"}:
        assert getattr(swapped, name) is values[name], name


def test_joins_of_one_pass_reach_each_member_writing_directly_in_one_write() -> None:
    """A room refilling after a restart: every join goes to every member, and the joins of
    one delivery pass (with the joiner's own history, and lines between them) reach each
    member in one write, the same bytes as one write each, each parcel encoded once."""
    from trio_chat.protocol import History

    writes: dict[str, list[bytes]] = {}

    def socket_of(nick: str) -> Callable[[Parcel], bytes]:
        def write_now(parcel: Parcel) -> bytes:
            writes.setdefault(nick, []).append(encoded(parcel, JSON_LINES))
            return b""

        return write_now

    hub, queue, (ann, bob) = lobby_with("ann", "bob", sockets={"ann": socket_of("ann")})
    hub.join_history = lambda session, room: History(room=room, messages=[])
    writes.clear()
    line = hub.say(ann, "#lobby", "hi")
    cat = connect(hub, "cat", socket_of("cat"))
    dan = connect(hub, "dan", socket_of("dan"))
    hub.deliver_many(queue)
    joins = [p.event for p in queue if isinstance(p.event, Joined)]
    assert [j.nick for j in joins] == ["cat", "dan"]
    history = encoded(History(room="#lobby", messages=[]), JSON_LINES)
    # ann: one write of the line and both joins, in id order.
    assert writes["ann"] == [b"".join(encoded(e, JSON_LINES) for e in (line, *joins))]
    # Each joiner: its own join, its history, then what came after, in one write.
    assert writes["cat"] == [
        encoded(joins[0], JSON_LINES) + history + encoded(joins[1], JSON_LINES)
    ]
    assert writes["dan"] == [encoded(joins[1], JSON_LINES) + history]
    # bob writes nothing directly: its mailbox queues each parcel, as without gathering.
    assert received(bob) == [line, *joins]
    assert received(ann) == received(cat) == received(dan) == []  # nothing left queued


def test_a_welcome_sent_in_order_goes_out_in_one_write_with_the_join_after_it() -> None:
    """A login: the welcome waits for the pass of the join published right after it (it is
    a reply, with nothing else waiting), so both, and the history, are one write."""
    from trio_chat.protocol import History, Info

    writes: list[bytes] = []

    def write_now(parcel: Parcel) -> bytes:
        writes.append(encoded(parcel, JSON_LINES))
        return b""

    hub, queue = published_hub()
    hub.join_history = lambda session, room: History(room=room, messages=[])
    ann = hub.attach(
        "ann", Mailbox(100, wire=Wire(write_now=write_now)), address="a:1", transport="t"
    )
    hello = Info(text="welcome, ann")
    hub.send_to(ann, hello, in_order=True)
    assert writes == []  # waits for its pass
    hub.join(ann, "#lobby")
    hub.deliver_many(queue)
    (joined,) = [p.event for p in queue if isinstance(p.event, Joined)]
    history = History(room="#lobby", messages=[])
    assert writes == [b"".join(encoded(e, JSON_LINES) for e in (hello, joined, history))]
    # Without in_order, a reply with nothing waiting before it is written at once.
    hub.send_to(ann, Info(text="now"))
    assert writes[-1] == encoded(Info(text="now"), JSON_LINES)
