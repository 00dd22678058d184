"""Parking: idle connections give up their tasks and come back when they have work.

The lot on its own over a socket pair (busy readers' waits watched by trio's epoll, and
the others by the lot's own set: ``busy``), then real clients over real sockets with a
short ``park_after``: parked, they still get every message, in order, and they come back
for their own input, a full socket, a close by the server, a hang-up and a keepalive ping.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme

from trio_chat.metrics import TRANSPORTS
from trio_chat.server import ChatServer
from trio_chat.testing import local_config, open_client, open_test_server, stalled_client
from trio_chat.transports import parking
from trio_chat.transports.parking import IDLE_RESOLUTION, ParkingLot, Woken

PARK_AFTER = 0.05


class Recorder:
    """A parked connection stand-in that notes what the lot did with it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.resumed = trio.Event()

    def resume(self) -> None:
        self.calls.append("resume")
        self.resumed.set()

    def abandon(self) -> None:
        self.calls.append("abandon")


@pytest.fixture(params=[True, False], ids=["busy", "idle"])
def busy(request: pytest.FixtureRequest) -> bool:
    """Whether the waits are a busy reader's (watched by trio's epoll; else by the lot's
    own set)."""
    return bool(request.param)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


async def test_lot_resumes_a_socket_once_when_it_has_input(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    lot, parked = ParkingLot(), Recorder()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lot.run)
        await trio.testing.wait_all_tasks_blocked()
        lot.park(ours.fileno(), parked)
        await trio.testing.wait_all_tasks_blocked()
        assert parked.calls == [] and len(lot) == 1  # nothing to read: still parked
        peer.send(b"hi")
        with trio.fail_after(2):
            await parked.resumed.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert parked.calls == ["resume"]  # once, though the byte is still unread
        assert ours.fileno() not in lot and len(lot) == 0
        nursery.cancel_scope.cancel()


async def test_lot_forgets_an_unparked_socket_and_abandons_the_rest_when_it_stops(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    other, other_peer = socket.socketpair()
    with other, other_peer:
        lot, first, second = ParkingLot(), Recorder(), Recorder()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lot.run)
            await trio.testing.wait_all_tasks_blocked()
            lot.park(ours.fileno(), first)
            lot.park(other.fileno(), second)
            lot.unpark(ours.fileno())  # it resumed for another reason
            peer.send(b"late")
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        assert first.calls == []
        assert second.calls == ["abandon"]
        assert not lot.available


async def test_lot_refuses_to_park_while_not_running(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    with pytest.raises(RuntimeError, match="not running"):
        ParkingLot().park(pair[0].fileno(), Recorder())


class Waits:
    """Tasks waiting on one socket in a lot, one after another: why each was woken."""

    def __init__(self, lot: ParkingLot, sock: socket.socket, busy: bool = False) -> None:
        self.lot, self.sock, self.busy = lot, sock, busy
        self.woken: list[Woken] = []
        self._changed = trio.Event()

    async def wait(self) -> None:
        self.woken.append(
            await self.lot.wait_readable(
                self.sock.fileno(), trio.current_time() + 60, busy=self.busy
            )
        )
        self._changed.set()

    async def until(self, count: int) -> list[Woken]:
        with trio.fail_after(2):
            while len(self.woken) < count:
                self._changed = trio.Event()
                await self._changed.wait()
        return self.woken


async def test_lot_wakes_a_task_waiting_on_a_socket_when_it_has_input_and_only_then(
    pair: tuple[socket.socket, socket.socket],
    busy: bool,
) -> None:
    ours, peer = pair
    lot = ParkingLot()
    waits = Waits(lot, ours, busy)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lot.run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waits.wait)
        await trio.testing.wait_all_tasks_blocked()
        assert waits.woken == []  # nothing to read: still waiting
        peer.send(b"hi")
        assert await waits.until(1) == [Woken.READABLE]
        assert ours.recv(10) == b"hi"
        nursery.start_soon(waits.wait)  # the next wait re-arms the socket
        await trio.testing.wait_all_tasks_blocked()
        assert waits.woken == [Woken.READABLE]
        peer.send(b"again")
        assert await waits.until(2) == [Woken.READABLE, Woken.READABLE]
        nursery.cancel_scope.cancel()


async def test_lot_wakes_waiting_tasks_idle_at_their_deadlines_in_turn(
    autojump_clock: trio.testing.MockClock, busy: bool
) -> None:
    lot = ParkingLot()
    woken: dict[str, float] = {}
    a, a_peer = socket.socketpair()
    b, b_peer = socket.socketpair()

    async def wait(name: str, sock: socket.socket, after: float) -> None:
        why = await lot.wait_readable(sock.fileno(), trio.current_time() + after, busy=busy)
        assert why is Woken.IDLE
        woken[name] = trio.current_time()

    with a, a_peer, b, b_peer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lot.run)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            nursery.start_soon(wait, "first", a, 2.0)
            await trio.sleep(0.5)
            nursery.start_soon(wait, "second", b, 2.0)
            await trio.sleep(5)
            nursery.cancel_scope.cancel()
    # Each at its own deadline (0.5 s apart), up to the lot's resolution late, never early.
    assert 2.0 <= woken["first"] - start <= 2.0 + IDLE_RESOLUTION + 1e-9
    assert 2.5 <= woken["second"] - start <= 2.5 + IDLE_RESOLUTION + 1e-9


async def test_lot_wakes_waits_of_different_lengths_each_at_its_own_deadline(
    autojump_clock: trio.testing.MockClock, busy: bool
) -> None:
    """Long waits (a busy connection's idle time) and short ones started after them (a new
    connection waiting for its first bytes) in between: none waits for another's deadline,
    and one that gets input is woken at once, whichever its length."""
    lot = ParkingLot()
    woken: dict[str, tuple[float, Woken]] = {}
    sockets = {name: socket.socketpair() for name in ("long1", "short1", "long2", "short2", "io")}

    async def wait(name: str, after: float) -> None:
        ours = sockets[name][0]
        why = await lot.wait_readable(ours.fileno(), trio.current_time() + after, busy=busy)
        woken[name] = (trio.current_time(), why)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lot.run)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            nursery.start_soon(wait, "long1", 2.0)
            await trio.sleep(0.1)
            nursery.start_soon(wait, "short1", 0.3)
            nursery.start_soon(wait, "io", 0.3)
            await trio.sleep(0.1)
            nursery.start_soon(wait, "long2", 2.0)
            nursery.start_soon(wait, "short2", 0.3)
            await trio.sleep(0.1)
            sockets["io"][1].send(b"x")
            await trio.sleep(5)
            nursery.cancel_scope.cancel()
    finally:
        for ours, peer in sockets.values():
            ours.close()
            peer.close()
    late = IDLE_RESOLUTION + 1e-9
    for name, due in (("long1", 2.0), ("short1", 0.4), ("long2", 2.2), ("short2", 0.5)):
        at, why = woken[name]
        assert why is Woken.IDLE and due <= at - start <= due + late, name
    at, why = woken["io"]
    assert why is Woken.READABLE and 0.3 <= at - start < 0.3 + late


async def test_lot_interrupts_a_waiting_task_and_forgets_a_cancelled_one(
    pair: tuple[socket.socket, socket.socket],
    busy: bool,
) -> None:
    ours, peer = pair
    lot = ParkingLot()
    waits = Waits(lot, ours, busy)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lot.run)
        await trio.testing.wait_all_tasks_blocked()
        assert not lot.interrupt(ours.fileno())  # nobody waits
        nursery.start_soon(waits.wait)
        await trio.testing.wait_all_tasks_blocked()
        assert lot.interrupt(ours.fileno())
        assert await waits.until(1) == [Woken.INTERRUPTED]
        with trio.CancelScope() as waiting:
            nursery.start_soon(lambda: _cancel_soon(waiting))
            await lot.wait_readable(ours.fileno(), trio.current_time() + 60, busy=busy)
        assert waiting.cancelled_caught
        # Its socket, still armed (in the lot's set), is ready now: the lot wakes for
        # nobody and takes the event (else its epoll set would stay readable and it would
        # spin: the blocked wait below would never come).
        peer.send(b"late")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waits.wait)  # the socket can be waited on again
        assert await waits.until(2) == [Woken.INTERRUPTED, Woken.READABLE]
        nursery.cancel_scope.cancel()


class LotSteps(trio.abc.Instrument):
    """Counts the steps of the lot's own task (the one running ``ParkingLot.run``)."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        code = getattr(task.coro, "cr_code", None)
        if code is not None and code.co_qualname == "ParkingLot.run":
            self.steps += 1


@pytest.mark.parametrize("watches", [True, False], ids=["trio-epoll", "no-trio-epoll"])
async def test_a_busy_readers_wait_is_woken_by_trios_epoll_with_no_step_of_the_lot(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch, watches: bool
) -> None:
    """A busy connection's reader waits in the lot between its reads: its socket's input
    wakes it directly, in the scheduling round trio's epoll finds it in; the lot's task,
    which keeps the wait's deadline, does nothing for it. (Where trio's epoll is not to
    be used so, the lot's set watches the socket, and the lot wakes the reader.)"""
    monkeypatch.setattr(parking, "TRIO_WATCHES", watches)
    ours, peer = pair
    lot = ParkingLot()
    waits = Waits(lot, ours, busy=True)
    steps = LotSteps()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lot.run)
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.add_instrument(steps)
        try:
            for n in range(1, 4):
                nursery.start_soon(waits.wait)
                await trio.testing.wait_all_tasks_blocked()
                peer.send(b"line")
                assert await waits.until(n) == [Woken.READABLE] * n
                assert ours.recv(10) == b"line"
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert steps.steps == 0 if watches else steps.steps >= 3
        nursery.cancel_scope.cancel()


async def test_a_second_task_cannot_wait_on_a_socket_a_task_waits_on(
    pair: tuple[socket.socket, socket.socket], busy: bool
) -> None:
    ours, _peer = pair
    lot = ParkingLot()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lot.run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(Waits(lot, ours, busy).wait)
        await trio.testing.wait_all_tasks_blocked()
        for second in (True, False):
            with pytest.raises(trio.BusyResourceError):
                await lot.wait_readable(ours.fileno(), trio.current_time() + 60, busy=second)
        nursery.cancel_scope.cancel()


class OnScheduled(trio.abc.Instrument):
    """Calls ``act`` as ``task`` is rescheduled, before it runs again."""

    def __init__(self, task: trio.lowlevel.Task, act: Callable[[], object]) -> None:
        self.task, self.act = task, act
        self.results: list[object] = []

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.results.append(self.act())


async def test_a_wait_that_trios_epoll_woke_is_not_woken_again_before_it_runs(
    pair: tuple[socket.socket, socket.socket], autojump_clock: trio.testing.MockClock
) -> None:
    """Between trio's epoll waking a waiting task and the task taking its entry out of the
    lot, the lot may be asked to interrupt it or find it past its deadline: it was woken
    already (once: trio refuses to reschedule a task twice), and the lot keeps its other
    deadlines."""
    ours, peer = pair
    other, other_peer = socket.socketpair()
    lot = ParkingLot()
    got: dict[str, Woken] = {}
    at: dict[str, float] = {}

    async def wait(name: str, sock: socket.socket, after: float) -> None:
        deadline = trio.current_time() + after
        got[name] = await lot.wait_readable(sock.fileno(), deadline, busy=True)
        at[name] = trio.current_time()

    with other, other_peer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lot.run)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            nursery.start_soon(wait, "woken", ours, 1.0)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(wait, "idle", other, 2.0)
            await trio.testing.wait_all_tasks_blocked()
            waiter = next(
                task for task in nursery.child_tasks if task.custom_sleep_data == start + 1.0
            )
            on_scheduled = OnScheduled(
                waiter, lambda: (lot.interrupt(ours.fileno()), lot.expire(start + 1.5))
            )
            trio.lowlevel.add_instrument(on_scheduled)
            try:
                peer.send(b"x")
                await trio.testing.wait_all_tasks_blocked()
            finally:
                trio.lowlevel.remove_instrument(on_scheduled)
            assert on_scheduled.results == [(False, 0)]  # neither woke it again
            assert got == {"woken": Woken.READABLE}
            await trio.sleep(5)
            assert got["idle"] is Woken.IDLE
            assert 2.0 <= at["idle"] - start <= 2.0 + IDLE_RESOLUTION + 1e-9
            nursery.cancel_scope.cancel()


async def _cancel_soon(scope: trio.CancelScope) -> None:
    await trio.testing.wait_all_tasks_blocked()
    scope.cancel()


async def test_a_stopping_lot_wakes_its_waiting_tasks_and_refuses_new_waits(
    pair: tuple[socket.socket, socket.socket],
    busy: bool,
) -> None:
    ours, _peer = pair
    lot = ParkingLot()
    waits = Waits(lot, ours, busy)
    async with trio.open_nursery() as nursery:
        async with trio.open_nursery() as lot_nursery:
            lot_nursery.start_soon(lot.run)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(waits.wait)
            await trio.testing.wait_all_tasks_blocked()
            lot_nursery.cancel_scope.cancel()
    assert waits.woken == [Woken.IDLE]  # the caller waits some other way now
    with pytest.raises(RuntimeError, match="not running"):
        lot.wait_readable(ours.fileno(), 0.0)


async def wait_parked(server: ChatServer, count: int) -> None:
    """Until ``count`` connections are parked (the server's state, polled)."""
    with trio.fail_after(5):
        while len(server.parking) != count:  # noqa: ASYNC110
            await trio.sleep(0.01)


def parked_gauge(server: ChatServer) -> float:
    return server.metrics.value("trio_chat_parked_connections")


async def test_parked_clients_get_every_message_in_order_and_come_back_to_speak() -> None:
    async with open_test_server(config=local_config(park_after=PARK_AFTER)) as chat:
        async with (
            open_client(chat, "alice") as alice,
            open_client(chat, "bob") as bob,
            open_client(chat, "carol", websocket=True) as carol,
        ):
            await alice.expect("join", lambda e: e.nick == "carol")
            await wait_parked(chat.server, 3)
            assert parked_gauge(chat.server) == 3
            # Sent to while parked: written straight to their sockets, no task woken.
            for n in range(3):
                await trio.sleep(PARK_AFTER * 2)
                await wait_parked(chat.server, 3)
                sender = (alice, bob, carol)[n]
                await sender.say(f"line {n}")  # wakes the sender only
                for client in (alice, bob, carol):
                    event = await client.expect("message")
                    assert event.text == f"line {n}"
            for client in (alice, bob, carol):
                texts = [e.text for e in client.history if e.TYPE == "message"]
                assert texts == ["line 0", "line 1", "line 2"]
            await wait_parked(chat.server, 3)


async def test_a_parked_client_whose_socket_fills_is_resumed_and_gets_everything() -> None:
    total, text = 300, "z" * 2000  # 600 KB: far more than the socket buffers hold
    async with open_test_server(config=local_config(park_after=PARK_AFTER)) as chat:
        with stalled_client(chat, "slow") as slow:
            async with open_client(chat, "alice") as alice:
                await alice.expect("join", lambda e: e.nick == "alice")
                await wait_parked(chat.server, 2)
                for n in range(total):  # slow reads nothing meanwhile
                    await alice.say(f"{n} {text}")
                    await alice.expect("message")
                # Its socket filled, the rest was queued: it had to wake up to write it.
                assert len(chat.server.parking) < 2
                assert chat.server.hub.find("slow") is not None
                slow.setblocking(False)
                got = await read_messages(slow, total)
                assert got == [f"{n} {text}" for n in range(total)]
                await wait_parked(chat.server, 2)  # all written: parks again


async def read_messages(sock: socket.socket, count: int) -> list[str]:
    """Read JSON lines from a raw non-blocking socket until ``count`` messages came."""
    buffer, texts = b"", []
    with trio.fail_after(10):
        while len(texts) < count:
            await trio.lowlevel.wait_readable(sock)
            data = sock.recv(65536)
            assert data, "the server closed the connection"
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = json.loads(line)
                if event["type"] == "message":
                    texts.append(event["text"])
    return texts


async def test_the_server_can_close_a_parked_connection() -> None:
    async with open_test_server(config=local_config(park_after=PARK_AFTER)) as chat:
        async with open_client(chat, "op") as op, open_client(chat, "quiet") as quiet:
            await op.join("#room")
            await quiet.command("/join #room")
            await op.expect("join", lambda e: e.nick == "quiet")
            await wait_parked(chat.server, 2)
            await op.command("/kick quiet being idle")
            assert (await op.expect("leave", lambda e: e.nick == "quiet")).reason.startswith(
                "kicked by op"
            )
            # The kick only took quiet out of #room; shutdown closes the connection itself.
            await wait_parked(chat.server, 2)
            chat.server.shutdown()
            bye = await quiet.expect("bye")
            assert bye.code == "shutdown"


async def test_a_parked_client_that_hangs_up_is_seen_to_leave() -> None:
    async with open_test_server(config=local_config(park_after=PARK_AFTER)) as chat:
        async with open_client(chat, "stays") as stays:
            async with open_client(chat, "goes"):
                await wait_parked(chat.server, 2)
            event = await stays.expect("leave", lambda e: e.nick == "goes")
            assert event.reason == "connection lost"
            assert chat.server.hub.find("goes") is None
            await wait_parked(chat.server, 1)
            assert parked_gauge(chat.server) == 1


async def test_a_parked_client_is_pinged_and_its_answer_keeps_it() -> None:
    config = local_config(park_after=PARK_AFTER, idle_timeout=0.3, ping_timeout=0.5)
    async with open_test_server(config=config) as chat:
        async with open_client(chat, "answers") as answers:
            await wait_parked(chat.server, 1)
            ping = await answers.expect("ping")
            unanswered_by = trio.current_time() + config.ping_timeout
            await answers.send({"type": "pong", "token": ping.token})
            await wait_parked(chat.server, 1)  # woke for the pong, parked again
            # Kept past the first ping's deadline: pinged again after it (each answered,
            # so that a loaded machine's late wake-up drops nobody), not dropped.
            while trio.current_time() < unanswered_by:
                ping = await answers.expect("ping")
                await answers.send({"type": "pong", "token": ping.token})
            assert chat.server.hub.find("answers") is not None
        async with open_client(chat, "silent") as silent:
            await silent.expect("ping")  # and never answers
            assert (await silent.expect("bye")).code == "ping_timeout"


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[trustme.CA, str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return ca, str(cert_path), str(key_path)


async def test_tls_connections_keep_their_tasks(tls_files: tuple[trustme.CA, str, str]) -> None:
    ca, cert, key = tls_files
    context = ssl.create_default_context()
    ca.configure_trust(context)
    config = local_config(park_after=PARK_AFTER, tls_cert=cert, tls_key=key)
    async with open_test_server(config=config) as chat:
        async with open_client(chat, "secure", ssl_context=context) as secure:
            await trio.sleep(PARK_AFTER * 4)
            assert len(chat.server.parking) == 0
            await secure.say("still served")
            assert (await secure.expect("message")).text == "still served"


async def test_a_server_cancelled_outright_closes_parked_connections_and_counts_them_out() -> None:
    # No graceful shutdown: the lot abandons whoever is parked, and each abandoned user's
    # leave reaches others who may be parked too (and wake, or are abandoned next).
    server = ChatServer(local_config(park_after=PARK_AFTER))
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(server.serve)
        port = int(addresses[0].rsplit(":", 1)[1])
        socks = []
        for n in range(5):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b'{"type":"hello","nick":"u%d"}\n' % n)
            socks.append(sock)
        await wait_parked(server, 5)
        nursery.cancel_scope.cancel()
    try:
        assert len(server.parking) == 0 and parked_gauge(server) == 0
        assert server.connections.count() == 0
        open_now = [server.metrics.value("trio_chat_connections", transport=t) for t in TRANSPORTS]
        assert open_now == [0] * len(TRANSPORTS)
        for sock in socks:
            sock.settimeout(5)
            while sock.recv(65536):  # the server closed it: the end comes after what was sent
                pass
    finally:
        for sock in socks:
            sock.close()
