"""Operators, mutes and bans across nodes, through a real Redis: given on one node, they hold
on every node, and a node that starts later learns them."""

from __future__ import annotations

import pytest

from trio_chat.broker.log import BadEntry, decode_entry, encode_entry
from trio_chat.hub import Hub, RuleChange
from trio_chat.mailbox import Mailbox

# ------------------------------------------------------------------ sans-IO


def test_a_rule_entry_round_trips() -> None:
    change = RuleChange("#dev", "banned", "Bob", True, "10.0.0.7")
    entry = decode_entry("12-3", encode_entry("rule", "node-a", 4, rule=change))
    assert (entry.kind, entry.node, entry.seq, entry.rule) == ("rule", "node-a", 4, change)
    lifted = RuleChange("#dev", "operator", "bob", False)
    assert decode_entry("12-4", encode_entry("rule", "n", 5, rule=lifted)).rule == lifted


@pytest.mark.parametrize(
    "data",
    [
        {"room": "#dev", "rule": "banned", "nick": "bob", "on": True},  # no host
        {"room": "#dev", "rule": "owner", "nick": "bob", "on": True, "host": "?"},
        {"room": "#dev", "rule": "muted", "nick": "bob", "on": "yes", "host": "?"},
        {"room": 7, "rule": "muted", "nick": "bob", "on": True, "host": "?"},
    ],
)
def test_a_rule_entry_that_is_not_ours_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(BadEntry):
        decode_entry("1-1", encode_entry("rule", "n", 1, data=data))


def test_the_hub_tells_its_observers_of_each_rule_that_changed() -> None:
    hub = Hub()
    alice = hub.attach("alice", Mailbox(100), address="10.0.0.1:5000", transport="test")
    bob = hub.attach("bob", Mailbox(100), address="10.0.0.7:6000", transport="test")
    room = hub.join(alice, "#dev")
    hub.join(bob, "#dev")
    heard: list[RuleChange] = []
    hub.on_rule.append(heard.append)
    assert hub.set_rule(room, "muted", bob, True)
    assert not hub.set_rule(room, "muted", bob, True)  # no change, nobody told
    assert hub.set_rule(room, "banned", "Bob", True, host="10.0.0.7")
    assert not hub.set_rule(room, "operator", "nobody", True)  # nobody by that nick
    assert hub.set_rule(room, "banned", "bob", False)
    assert not hub.set_rule(room, "banned", "bob", False)
    assert heard == [
        RuleChange("#dev", "muted", "bob", True),
        RuleChange("#dev", "banned", "Bob", True, "10.0.0.7"),
        RuleChange("#dev", "banned", "bob", False),
    ]
    assert bob.id in room.muted and not room.banned
