"""Plugins' background work: periodic jobs keep their schedule whatever a run does, tasks
end alone, and the server stops promptly whatever its jobs are doing.

The schedule tests run :class:`Jobs` alone on trio's autojump clock (times are exact);
the server tests start a real server and talk to it over real sockets.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trio_chat import hookimpl
from trio_chat.api import ServerAPI
from trio_chat.hub import Session
from trio_chat.jobs import Jobs, JobsNotRunning
from trio_chat.plugins import import_plugin
from trio_chat.protocol import Info
from trio_chat.server import ChatServer
from trio_chat.testing import local_config, open_client, open_test_server

TIMEOUT = 5.0


class Recorder:
    """Job functions that note when they ran (``trio.current_time()``), by name."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.changed = trio.Event()

    def note(self, name: str) -> None:
        self.times.setdefault(name, []).append(trio.current_time())
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, name: str, runs: int) -> list[float]:
        # On the autojump clock: virtual seconds, passed at once while nothing else runs.
        with trio.fail_after(1000):
            while len(self.times.get(name, [])) < runs:
                await self.changed.wait()
        return self.times[name]


async def run_jobs(jobs: Jobs, nursery: trio.Nursery) -> float:
    """Start ``jobs`` in ``nursery``; the time it started."""
    await nursery.start(jobs.run)
    return trio.current_time()


# -------------------------------------------------------------- the schedule, exactly


async def test_every_runs_on_its_period_and_immediately_when_asked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    jobs, seen = Jobs(), Recorder()
    async with trio.open_nursery() as nursery:
        start = await run_jobs(jobs, nursery)
        jobs.every(10, seen.note, "plain", plugin="p")
        jobs.every(10, seen.note, "eager", immediately=True, plugin="p")
        assert [t - start for t in await seen.wait_for("plain", 3)] == [10, 20, 30]
        assert [t - start for t in seen.times["eager"][:3]] == [0, 10, 20]
        jobs.stop()


async def test_a_run_that_raises_is_logged_and_the_job_keeps_its_schedule(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    jobs, seen = Jobs(), Recorder()

    async def flaky() -> None:
        seen.note("flaky")
        if len(seen.times["flaky"]) == 2:
            raise RuntimeError("second run breaks")

    async with trio.open_nursery() as nursery:
        start = await run_jobs(jobs, nursery)
        with caplog.at_level(logging.ERROR, logger="trio_chat.plugins"):
            jobs.every(5, flaky, plugin="flaky-plugin")
            assert [t - start for t in await seen.wait_for("flaky", 4)] == [5, 10, 15, 20]
        jobs.stop()
    [record] = [r for r in caplog.records if "raised" in r.getMessage()]
    assert record.getMessage() == (
        "plugin 'flaky-plugin': job test_a_run_that_raises_is_logged_and_the_job_keeps_its"
        "_schedule.<locals>.flaky raised (it runs again at its next time)"
    )
    assert record.exc_info is not None and "second run breaks" in str(record.exc_info[1])


async def test_a_run_that_hangs_is_cancelled_at_its_timeout_and_the_next_runs_on_time(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    jobs, seen = Jobs(timeout=3), Recorder()
    ended: list[float] = []

    async def hangs_once() -> None:
        seen.note("hangs")
        if len(seen.times["hangs"]) == 1:
            try:
                await trio.sleep_forever()
            finally:
                ended.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        start = await run_jobs(jobs, nursery)
        with caplog.at_level(logging.ERROR, logger="trio_chat.plugins"):
            jobs.every(10, hangs_once, name="hangs", plugin="p")
            assert [t - start for t in await seen.wait_for("hangs", 3)] == [10, 20, 30]
        jobs.stop()
    assert [t - start for t in ended] == [13]  # the plugin timeout (3 s) after it began
    assert "plugin 'p': job hangs took longer than 3.0s" in caplog.text


async def test_a_run_longer_than_the_period_skips_the_times_it_missed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    jobs, seen = Jobs(), Recorder()

    async def slow() -> None:
        seen.note("slow")
        await trio.sleep(25)

    async with trio.open_nursery() as nursery:
        start = await run_jobs(jobs, nursery)
        jobs.every(10, slow, timeout=100, plugin="p")
        # Starts at 10, busy until 35: 20 and 30 are skipped, never run late or twice.
        assert [t - start for t in await seen.wait_for("slow", 3)] == [10, 40, 70]
        jobs.stop()


async def test_a_task_that_raises_ends_alone_and_is_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    jobs, seen = Jobs(), Recorder()

    async def breaks(what: str) -> None:
        await trio.sleep(1)
        raise ValueError(what)

    async with trio.open_nursery() as nursery:
        start = await run_jobs(jobs, nursery)
        with caplog.at_level(logging.ERROR, logger="trio_chat.plugins"):
            jobs.start_soon(breaks, "on purpose", name="breaker", plugin="p")
            jobs.every(2, seen.note, "steady", plugin="q")
            assert [t - start for t in await seen.wait_for("steady", 3)] == [2, 4, 6]
        jobs.stop()
    assert "plugin 'p': job breaker raised (it has ended)" in caplog.text


async def test_cancelling_a_plugin_stops_its_jobs_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    jobs, seen = Jobs(), Recorder()
    async with trio.open_nursery() as nursery:
        start = await run_jobs(jobs, nursery)
        jobs.every(1, seen.note, "gone", plugin="gone")
        jobs.every(1, seen.note, "stays", plugin="stays")
        await seen.wait_for("gone", 2)
        jobs.cancel_plugin("gone")
        assert [t - start for t in await seen.wait_for("stays", 5)] == [1, 2, 3, 4, 5]
        assert [t - start for t in seen.times["gone"]] == [1, 2]
        jobs.stop()


async def test_stop_ends_run_and_what_is_refused_outside_it() -> None:
    jobs = Jobs()
    with pytest.raises(JobsNotRunning, match="the server is not serving"):
        jobs.every(1, print, plugin="p")
    with trio.fail_after(TIMEOUT):  # stop() ends run(), with a task that would never end
        async with trio.open_nursery() as nursery:
            await run_jobs(jobs, nursery)
            for bad in (0, -1, float("inf"), float("nan"), "60"):
                with pytest.raises(ValueError, match="seconds must be a positive number"):
                    jobs.every(bad, print, plugin="p")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="timeout must be a positive number"):
                jobs.every(1, print, timeout=0, plugin="p")
            with pytest.raises(TypeError, match="'tick' is not callable"):
                jobs.every(1, "tick", plugin="p")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="None is not callable"):
                jobs.start_soon(None, plugin="p")  # type: ignore[arg-type]
            jobs.start_soon(trio.sleep_forever, plugin="p")
            assert jobs.running
            jobs.stop()
    assert not jobs.running
    with pytest.raises(JobsNotRunning):
        jobs.start_soon(trio.sleep_forever, plugin="p")


# ------------------------------------------------------------------- in a real server


class Ticker:
    """Tells everyone in #lobby ``tick N`` every 50 ms, and keeps a task that never ends."""

    def __init__(self) -> None:
        self.ticks = 0
        self.forever_cancelled = trio.Event()

    @hookimpl
    def start_jobs(self, server: ServerAPI, jobs: Jobs) -> None:
        jobs.every(0.05, self.tick, server)
        jobs.start_soon(self.forever)

    def tick(self, server: ServerAPI) -> None:
        self.ticks += 1
        lobby = server.rooms.get("#lobby")
        for session in list(lobby.members.values()) if lobby else ():
            server.hub.send_to(session, Info(text=f"tick {self.ticks}"))

    async def forever(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.forever_cancelled.set()


def is_tick(event: Any) -> bool:
    return bool(event.TYPE == "info" and event.text.startswith("tick "))


async def test_a_plugins_periodic_job_reaches_users_over_the_wire() -> None:
    ticker = Ticker()
    async with open_test_server(ticker) as chat, open_client(chat, "alice") as alice:
        first = int((await alice.expect("info", is_tick)).text.split()[1])
        second = int((await alice.expect("info", is_tick)).text.split()[1])
        assert second == first + 1
    assert ticker.forever_cancelled.is_set()  # stopped with the server


class Hangs:
    """Every kind of job stuck: a task that never ends, and a run that waits far past the
    time the test allows (its own timeout is an hour)."""

    def __init__(self) -> None:
        self.running = trio.Event()

    @hookimpl
    def start_jobs(self, jobs: Jobs) -> None:
        jobs.start_soon(trio.sleep_forever)
        jobs.every(0.01, self.stuck, timeout=3600, immediately=True)

    async def stuck(self) -> None:
        self.running.set()
        await trio.sleep(3600)


async def test_the_server_stops_promptly_with_a_hanging_job() -> None:
    hangs = Hangs()
    server = ChatServer(local_config(), plugins=[hangs])
    async with trio.open_nursery() as nursery:
        with trio.fail_after(TIMEOUT):
            await nursery.start(server.serve)
            await hangs.running.wait()
        started = time.monotonic()
        server.shutdown()
    took = time.monotonic() - started
    # Prompt: well under the 3 s connections get to say goodbye (shutdown_grace), which a
    # job that held the shutdown would use up, and far under the job's own hour.
    assert took < 2.0, f"shutdown took {took:.2f}s"
    assert not server.jobs.running


class Broken:
    @hookimpl
    def start_jobs(self, jobs: Jobs) -> None:
        raise RuntimeError("broken start_jobs")


async def test_a_start_jobs_that_raises_costs_the_other_plugins_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticker = Ticker()
    with caplog.at_level(logging.ERROR, logger="trio_chat.plugins"):
        async with open_test_server(Broken(), ticker) as chat, open_client(chat, "alice") as a:
            await a.expect("info", is_tick)
    assert "start_jobs raised" in caplog.text and "Broken" in caplog.text


async def test_a_plugin_added_while_serving_starts_its_jobs_and_removing_it_stops_them() -> None:
    async with open_test_server() as chat, open_client(chat, "alice") as alice:
        ticker = Ticker()
        name = chat.server.add_plugin(ticker, "ticker")
        await alice.expect("info", is_tick)
        chat.server.remove_plugin(name)
        with trio.fail_after(TIMEOUT):
            await ticker.forever_cancelled.wait()
        stopped_at = ticker.ticks
        await trio.sleep(0.2)  # four periods: a job still running would have ticked
        assert ticker.ticks == stopped_at


async def test_jobs_belong_to_the_plugin_whose_hook_started_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Owner:
        def __init__(self) -> None:
            self.failed = trio.Event()

        @hookimpl
        def start_jobs(self, jobs: Jobs) -> None:
            jobs.start_soon(self.fail)

        async def fail(self) -> None:
            try:
                raise KeyError("x")
            finally:
                self.failed.set()

    first, second = Owner(), Owner()
    with caplog.at_level(logging.ERROR, logger="trio_chat.plugins"):
        async with open_test_server(first) as chat:
            chat.server.add_plugin(second, "second-owner")
            with trio.fail_after(TIMEOUT):
                await first.failed.wait()
                await second.failed.wait()
    owners = sorted(r.getMessage().split("'")[1] for r in caplog.records if "job" in r.getMessage())
    assert owners == [
        "second-owner",
        "test_plugin_jobs.test_jobs_belong_to_the_plugin_whose_hook_started_them.<locals>.Owner",
    ]


async def test_a_command_can_start_a_task_through_server_jobs() -> None:
    done = trio.Event()

    class Later:
        @hookimpl
        def register_commands(self, register: Any) -> None:
            register("later", self.later, help="Answer a moment later")

        def later(self, ctx: Any) -> None:
            ctx.server.jobs.start_soon(self.answer, ctx.server, ctx.session, plugin="later")

        async def answer(self, server: ServerAPI, session: Session) -> None:
            await trio.sleep(0.01)
            server.hub.send_to(session, Info(text="later, as promised"))
            done.set()

    async with open_test_server(Later()) as chat, open_client(chat, "alice") as alice:
        await alice.command("/later")
        await alice.expect("info", lambda e: e.text == "later, as promised")


def docs_example(name: str) -> str:
    """The code of the ``# NAME`` example of docs/plugins.md, as printed there."""
    documented = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
    return documented.split(f"```python\n# {name}\n", 1)[1].split("```", 1)[0]


async def test_the_chime_example_of_the_docs_tells_lobby_the_time(tmp_path: Path) -> None:
    (tmp_path / "chime.py").write_text(docs_example("chime.py"))
    chime = import_plugin(str(tmp_path / "chime.py"))
    chime.EVERY = 0.05  # type: ignore[attr-defined]  (an hour is long for a test)
    async with open_test_server(chime) as chat, open_client(chat, "alice") as alice:
        event = await alice.expect("info", lambda e: e.text.startswith("it is "))
        assert re.fullmatch(r"it is \d\d:\d\d UTC", event.text)


async def test_a_job_that_keeps_failing_is_logged_once_a_minute_then_its_recovery(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    jobs, seen = Jobs(), Recorder()

    def fails_for_two_minutes() -> None:
        seen.note("job")
        if len(seen.times["job"]) <= 120:
            raise OSError("feed unreachable")

    async with trio.open_nursery() as nursery:
        await run_jobs(jobs, nursery)
        with caplog.at_level(logging.WARNING, logger="trio_chat.plugins"):
            jobs.every(1, fails_for_two_minutes, name="feed", plugin="p")
            await seen.wait_for("job", 125)
        jobs.stop()
    # Failures at 1..120 s: logged at 1 and 61 s (each line a minute), recovered at 121 s.
    raised = "plugin 'p': job feed raised (it runs again at its next time)"
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", raised),
        ("ERROR", raised + " (and 59 more like it in the last 60 s)"),
        ("WARNING", "plugin 'p': job feed works again (59 more failures not logged)"),
    ]
    assert all(r.exc_info for r in caplog.records if r.levelname == "ERROR")


async def test_an_async_start_jobs_is_refused_and_named(caplog: pytest.LogCaptureFixture) -> None:
    class Eager:
        @hookimpl
        async def start_jobs(self, jobs: Jobs) -> None:
            raise AssertionError("never run")  # pragma: no cover

    ticker = Ticker()
    with caplog.at_level(logging.ERROR, logger="trio_chat.plugins"):
        async with open_test_server(Eager(), ticker) as chat:
            async with open_client(chat, "alice") as alice:
                await alice.expect("info", is_tick)  # the other plugin's jobs run
    assert "start_jobs must not be async (nothing it does is done)" in caplog.text
