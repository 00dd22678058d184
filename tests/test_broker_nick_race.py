"""A node that has just started serves before the other nodes' snapshots come: a nick it
let in meanwhile may be held on another node since before it started. The snapshot
settles it as the log's order would have: the older claim wins, on every node.

(Over sockets the window is the few milliseconds between a node's start and its
snapshots, too short to hit on purpose; so these feed the log's entries by hand, as
``test_broker_moderation`` does.)
"""

from __future__ import annotations

from typing import Any

from trio_chat.broker import replica
from trio_chat.broker.log import Entry, decode_entry, encode_entry
from trio_chat.broker.redis import RedisBroker
from trio_chat.hub import Hub, Session
from trio_chat.mailbox import Mailbox


def starting_node_with_bob() -> tuple[Hub, RedisBroker, Session]:
    """Node C, started, waiting for A's snapshot, and bob logged in on it meanwhile."""
    hub = Hub()
    broker = RedisBroker("redis://unused", hub, lambda pending: None, node="c")
    broker._awaiting = {"a"}  # as _start finds it: A is alive
    bob = hub.attach("Bob", Mailbox(100), address="10.0.0.2:7", transport="test")
    hub.join(bob, "#dev")
    return hub, broker, bob


def snapshot_from_a(**bob: Any) -> Entry:
    users = [{"nick": "bob", "address": "10.0.0.7:5", "rooms": ["#lobby"], **bob}]
    return decode_entry("5-1", encode_entry("snapshot", "a", 1, data={"for": "c", "users": users}))


def test_a_nick_held_on_another_node_before_this_one_started_wins_over_ours() -> None:
    hub, broker, bob = starting_node_with_bob()
    broker._handle(snapshot_from_a())
    assert bob.closed and bob.close_code == "nick_taken"
    dev = hub.room("#dev")
    assert dev is None or bob.id not in dev.members
    theirs = hub.find("BOB")
    assert theirs is not None and theirs is not bob
    assert replica.node_of(theirs) == "a" and theirs.address == "10.0.0.7:5"
    assert theirs.id in hub.rooms["#lobby"].members
    assert not broker._awaiting


def test_a_nick_whose_hello_is_still_on_its_way_is_left_to_the_hellos_order() -> None:
    """Bob on A is new (A has not read his hello back): his hello is after C's sync in
    the log, where C reads it and the earlier of the two claims wins (``_on_hello``)."""
    hub, broker, bob = starting_node_with_bob()
    broker._handle(snapshot_from_a(new=True))
    assert not bob.closed and hub.find("bob") is bob
