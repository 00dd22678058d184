"""The goodbye's wait for a connection's last lines (transports/settling.py): one settle
for every connection waiting, each wait bounded by its own deadline without a scope."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from trio_chat.transports.settling import Settler

DELAY = 1.0


class Gate:
    """A settle the test lets through: each call waits for the gate opened after it."""

    def __init__(self) -> None:
        self.calls = 0
        self.opened = trio.Event()

    async def settle(self) -> None:
        self.calls += 1
        opened = self.opened
        await opened.wait()

    def open(self) -> None:
        self.opened.set()
        self.opened = trio.Event()


async def test_one_settle_wakes_everyone_who_waited_before_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = Gate()
    settler = Settler(gate.settle, DELAY)
    results: dict[str, bool] = {}

    async def wait(name: str) -> None:
        results[name] = await settler.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(settler.run)
        await trio.testing.wait_all_tasks_blocked()
        for name in ("a", "b", "c"):
            nursery.start_soon(wait, name)
        await trio.testing.wait_all_tasks_blocked(cushion=0.0001)
        assert gate.calls == 1 and len(settler) == 3
        nursery.start_soon(wait, "late")  # begun during the settle: the next one's
        await trio.testing.wait_all_tasks_blocked(cushion=0.0001)
        gate.open()
        await trio.testing.wait_all_tasks_blocked(cushion=0.0001)
        assert results == {"a": True, "b": True, "c": True}
        assert gate.calls == 2 and len(settler) == 1
        gate.open()
        await trio.testing.wait_all_tasks_blocked(cushion=0.0001)
        assert results["late"] is True and len(settler) == 0
        assert trio.current_time() < DELAY  # nobody waited for a deadline
        nursery.cancel_scope.cancel()


async def test_a_wait_ends_at_its_deadline_when_nothing_settles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = Gate()  # never opened
    settler = Settler(gate.settle, DELAY)
    ended: dict[str, float] = {}
    results: dict[str, bool] = {}

    async def wait(name: str) -> None:
        results[name] = await settler.wait()
        ended[name] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(settler.run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(wait, "first")
        await trio.sleep(0.3)
        nursery.start_soon(wait, "second")
        await trio.sleep(2 * DELAY)
        assert results == {"first": False, "second": False}
        assert ended["first"] == pytest.approx(DELAY)
        assert ended["second"] == pytest.approx(0.3 + DELAY)
        nursery.cancel_scope.cancel()


async def test_a_cancelled_wait_leaves_the_others_waiting() -> None:
    """(The real clock and a long delay: no deadline comes into it.)"""
    gate = Gate()
    settler = Settler(gate.settle, 60.0)
    results: dict[str, bool] = {}
    cancelled = False

    async def wait(name: str) -> None:
        nonlocal cancelled
        try:
            results[name] = await settler.wait()
        except trio.Cancelled:
            cancelled = True
            raise

    async with trio.open_nursery() as nursery:
        nursery.start_soon(settler.run)
        await trio.testing.wait_all_tasks_blocked()  # (running: else a wait has a scope)
        async with trio.open_nursery() as doomed:
            doomed.start_soon(wait, "doomed")
            nursery.start_soon(wait, "kept")
            await trio.testing.wait_all_tasks_blocked(cushion=0.0001)
            doomed.cancel_scope.cancel()
        assert cancelled and len(settler) == 1
        gate.open()
        await trio.testing.wait_all_tasks_blocked(cushion=0.0001)
        assert results == {"kept": True}
        nursery.cancel_scope.cancel()


async def test_waits_left_when_the_settler_stops_go_on_as_run_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = Gate()
    settler = Settler(gate.settle, DELAY)
    results: list[bool] = []

    async def wait() -> None:
        results.append(await settler.wait())

    async with trio.open_nursery() as outer:
        outer.start_soon(wait)  # (waits outside the settler's nursery)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(settler.run)
            await trio.testing.wait_all_tasks_blocked()
            outer.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked(cushion=0.0001)
            nursery.cancel_scope.cancel()
    assert results == [False, False]
    assert trio.current_time() <= DELAY  # the first: a scope of its own, cut at DELAY


async def test_a_settle_that_fails_ends_the_waits_as_run_out(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure is logged and ends the goodbyes waiting then, not the server."""
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("broken")

    settler = Settler(failing, DELAY)
    results: list[bool] = []

    async def wait() -> None:
        results.append(await settler.wait())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(settler.run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked(cushion=0.0001)
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked(cushion=0.0001)
        assert results == [False, True]
        assert trio.current_time() < DELAY
        nursery.cancel_scope.cancel()
    assert "settling failed (goodbyes waiting: 1)" in caplog.text


async def test_without_a_running_settler_a_wait_is_bounded_by_a_scope(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = Gate()
    settler = Settler(gate.settle, DELAY)
    assert await settler.wait() is False
    assert trio.current_time() == pytest.approx(DELAY)
    async with trio.open_nursery() as nursery:
        result: list[bool] = []

        async def wait() -> None:
            result.append(await settler.wait())

        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked(cushion=0.0001)
        gate.open()
    assert result == [True]


async def test_a_connection_that_quits_after_a_line_gets_its_echo_then_its_bye() -> None:
    """Over sockets, a crowd of connections each saying a line and quitting at once (the
    churn): every one gets its echo, then its bye, and the settler holds nobody after."""
    from trio_chat.testing import open_test_server

    async with open_test_server() as chat:
        host, port = chat.address("tcp")

        async def churn(n: int) -> list[str]:
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                await stream.send_all(b'{"type":"hello","nick":"c%d"}\n' % n)
                data = b""
                while b'"type":"welcome"' not in data:
                    data += await stream.receive_some(65536)
                await stream.send_all(b'{"type":"say","text":"from c%d"}\n{"type":"quit"}\n' % n)
                while chunk := await stream.receive_some(65536):
                    data += chunk
            events = [json.loads(line) for line in data.splitlines()]
            mine = [e for e in events if e["type"] in ("message", "bye")]
            assert mine[-1]["type"] == "bye"
            assert any(e["type"] == "message" and e["text"] == f"from c{n}" for e in mine)
            return [e["type"] for e in events if e["type"] != "join" and e["type"] != "leave"]

        kinds: list[list[str]] = []

        async def one(n: int) -> None:
            kinds.append(await churn(n))

        with trio.fail_after(20):
            for wave in range(5):
                async with trio.open_nursery() as nursery:
                    for n in range(wave * 8, wave * 8 + 8):
                        nursery.start_soon(one, n)
        assert len(kinds) == 40
        assert all(k[0] == "welcome" and k[-1] == "bye" for k in kinds)
        assert len(chat.server.settler) == 0
