"""The doorstep (transports/doorstep.py): a new TCP connection whose first bytes are not
there yet waits for them parked, without a task, its place in the limits taken; its task
starts when they come or when ``sniff_delay`` passes. The pure mechanism with socket
pairs, then the server over real sockets."""

from __future__ import annotations

import os
import socket

import trio
import trio.testing

from trio_chat.testing import local_config, open_client, open_test_server
from trio_chat.transports.doorstep import Doorstep
from trio_chat.transports.fdstream import FdStream
from trio_chat.transports.parking import ParkingLot


class Slot:
    """A stand-in for a ConnectionSlot: counts its giving back."""

    def __init__(self) -> None:
        self.given_back = 0

    def give_back(self) -> None:
        self.given_back += 1


class Served:
    def __init__(self) -> None:
        self.served: list[tuple[str, float]] = []
        self.changed = trio.Event()

    def __call__(self, stream: FdStream, peer: str, slot: object) -> None:
        stream.close()  # (a connection's task would serve it)
        self.served.append((peer, trio.current_time()))
        self.changed.set()
        self.changed = trio.Event()

    async def until(self, count: int) -> list[str]:
        while len(self.served) < count:
            await self.changed.wait()
        return [peer for peer, _ in self.served]


async def test_a_connection_leaves_when_its_bytes_come_or_at_the_delay_in_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lot = ParkingLot()
    served = Served()
    doorstep = Doorstep(lot, 2.0, served)
    pairs = [socket.socketpair() for _ in range(3)]
    for ours, _ in pairs:
        ours.setblocking(False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lot.run)
        nursery.start_soon(doorstep.run)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        for n, (ours, _) in enumerate(pairs):
            assert doorstep.wait(FdStream(os.dup(ours.fileno())), f"p{n}", Slot())  # type: ignore[arg-type]
            await trio.sleep(0.5)
        assert (len(doorstep), len(lot), lot.waiting) == (3, 3, 0)
        pairs[1][1].send(b'{"type":"hello"}\n')  # the second one speaks
        assert await served.until(1) == ["p1"]
        assert served.served[0][1] - start < 1.6  # at once, not at its deadline
        # The others at their deadlines, in the order they came.
        assert await served.until(3) == ["p1", "p0", "p2"]
        assert 2.0 <= served.served[1][1] - start <= 2.0 + 1e-6
        assert 3.0 <= served.served[2][1] - start <= 3.0 + 1e-6
        assert (len(doorstep), len(lot)) == (0, 0)
        nursery.cancel_scope.cancel()
    for ours, theirs in pairs:
        ours.close()
        theirs.close()


async def test_those_still_waiting_when_it_stops_are_closed_and_give_their_place_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lot = ParkingLot()
    served = Served()
    doorstep = Doorstep(lot, 10.0, served)
    ours, theirs = socket.socketpair()
    slot = Slot()
    with ours, theirs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lot.run)
            nursery.start_soon(doorstep.run)
            await trio.testing.wait_all_tasks_blocked()
            stream = FdStream(os.dup(ours.fileno()))
            assert doorstep.wait(stream, "p", slot)  # type: ignore[arg-type]
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
        assert (served.served, slot.given_back, stream.fileno()) == ([], 1, -1)
        assert not doorstep.wait(FdStream(os.dup(ours.fileno())), "q", slot)  # type: ignore[arg-type]


async def test_a_doorstep_that_does_not_run_holds_nobody() -> None:
    doorstep = Doorstep(ParkingLot(), 1.0, Served())
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert not doorstep.wait(FdStream(os.dup(ours.fileno())), "p", Slot())  # type: ignore[arg-type]


# ------------------------------------------------------------------------- over sockets


async def test_silent_connections_at_the_doorstep_count_against_the_limits() -> None:
    config = local_config(max_connections_per_host=2, limit_loopback=True, sniff_delay=30.0)
    async with open_test_server(config=config) as chat:
        host, port = chat.address("tcp")
        first = await trio.open_tcp_stream(host, port)
        second = await trio.open_tcp_stream(host, port)
        async with first, second:
            with trio.fail_after(5):
                while len(chat.server.parking) < 2:  # noqa: ASYNC110 (no event to wait on)
                    await trio.sleep(0.01)
            assert chat.server.parking.waiting == 0  # no task waits for them
            third = await trio.open_tcp_stream(host, port)
            async with third:
                with trio.fail_after(5):
                    assert b"connection refused" in await third.receive_some(1024)
            # One of the two speaks: served at once, well before the 30 s delay.
            await second.send_all(b'{"type":"hello","nick":"second"}\n')
            with trio.fail_after(5):
                assert b'"welcome"' in await second.receive_some(65536)
        with trio.fail_after(5):
            while chat.server.connections.count():  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.01)


async def test_a_person_at_a_prompt_is_asked_for_a_nick_at_the_delay() -> None:
    async with open_test_server(config=local_config(sniff_delay=0.3)) as chat:
        host, port = chat.address("tcp")
        async with await trio.open_tcp_stream(host, port) as stream:
            started = trio.current_time()
            with trio.fail_after(5):
                prompt = await stream.receive_some(1024)
            took = trio.current_time() - started
            assert b"nick" in prompt.lower()
            assert 0.25 < took < 2.0
            await stream.send_all(b"carol\n")
            async with open_client(chat, "dave") as dave:
                await dave.say("hi carol")
                with trio.fail_after(5):
                    heard = b""
                    while b"hi carol" not in heard:
                        heard += await stream.receive_some(65536)


async def test_a_server_stopping_closes_whoever_is_still_at_the_door() -> None:
    async with open_test_server(config=local_config(sniff_delay=30.0)) as chat:
        host, port = chat.address("tcp")
        stream = await trio.open_tcp_stream(host, port)
        with trio.fail_after(5):
            while not len(chat.server.parking):  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.01)
    async with stream:
        with trio.fail_after(5):
            while await stream.receive_some(65536):
                pass  # (its end: read at once, not after the 30 s delay)
