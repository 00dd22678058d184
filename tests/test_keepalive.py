"""The keepalive's decisions, as a function of the clock (no sockets, no sleeping)."""

from __future__ import annotations

from types import SimpleNamespace

from trio_chat.hub import Session
from trio_chat.keepalive import PING_TIMEOUT, Keepalive
from trio_chat.mailbox import Mailbox
from trio_chat.protocol import ServerEvent, ServerPing


class Peer:
    """A connection's clock of last bytes heard, and the session it carries."""

    def __init__(self, sid: int, heard: float = 0.0) -> None:
        self.heard = heard
        self.session = Session(
            id=sid, nick=f"n{sid}", address="127.0.0.1:1", transport="test", mailbox=Mailbox(8)
        )


def keepalive_with(*peers: Peer) -> tuple[Keepalive, list[tuple[int, ServerEvent]]]:
    sent: list[tuple[int, ServerEvent]] = []
    keepalive = Keepalive(lambda s, e: sent.append((s.id, e)), idle=60, answer_within=30)
    for peer in peers:
        keepalive.watch(
            peer.session,
            SimpleNamespace(heard=lambda p=peer: p.heard),
            lambda: ServerPing(token="t"),
        )
    return keepalive, sent


def test_a_quiet_peer_is_pinged_once_then_closed_if_it_stays_silent() -> None:
    quiet = Peer(1)
    keepalive, sent = keepalive_with(quiet)
    keepalive.sweep(59.0)
    assert sent == []
    keepalive.sweep(60.0)
    assert sent == [(1, ServerPing(token="t"))]
    keepalive.sweep(75.0)
    assert len(sent) == 1 and not quiet.session.closed  # one ping, still waiting
    keepalive.sweep(90.0)
    assert quiet.session.closed
    assert (quiet.session.close_code, quiet.session.close_reason) == ("ping_timeout", PING_TIMEOUT)


def test_anything_heard_after_the_ping_counts_as_the_answer() -> None:
    peer = Peer(1)
    keepalive, sent = keepalive_with(peer)
    keepalive.sweep(60.0)
    peer.heard = 70.0  # a pong, or any frame at all
    keepalive.sweep(95.0)
    assert not peer.session.closed
    keepalive.sweep(129.0)
    assert len(sent) == 1  # quiet again, but not yet for a full idle period
    keepalive.sweep(130.0)
    assert len(sent) == 2


def test_busy_peers_are_never_pinged_and_forgotten_ones_never_touched() -> None:
    busy, gone = Peer(1), Peer(2)
    keepalive, sent = keepalive_with(busy, gone)
    keepalive.forget(gone.session)
    for now in range(0, 600, 15):
        busy.heard = float(now)
        keepalive.sweep(float(now))
    assert sent == [] and not gone.session.closed
    assert len(keepalive) == 1
    assert keepalive.interval == 30 / 4
