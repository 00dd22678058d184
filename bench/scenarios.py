"""The coordinator: one function per scenario, each measuring one server once.

A measurement starts a fresh server, starts the worker processes of :mod:`loadgen`, steps
them through their phases (ready -> sync -> go -> done) over pipes with a bounded wait at
every step, and reads the server's CPU time and memory from /proc around the measured part
(of all its processes, with ``--workers``; and the CPU time of its redis-server apart).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import community as community_plan
import community_load
import loadgen
import storm_load
from servers import HOST, RunningServer, start_server

_MP = multiprocessing.get_context("spawn")


class BenchError(Exception):
    """A measurement could not be completed (a worker hung or died); the text says where."""


@dataclass
class Options:
    duration: float = 5.0  # seconds of sending per fanout / steady measurement
    senders: int = 4
    window: int = 256  # unacknowledged messages per full-speed sender (see README)
    size: int = 64  # message text length, characters
    max_messages: int = 200_000  # per sender, a hard cap besides the duration
    rate: float = 50.0  # steady: messages per second offered, all senders together
    steady_n: int = 1000
    idle_n: int = 10_000
    churn_workers: int = 4
    receiver_procs: int = 3
    #: steady: the plain receivers' nice value (see ``broadcast``).
    receiver_nice: int = 10
    probes: int = 4
    #: Where the probes join #lobby: "last" (after every receiver and the senders, so a
    #: probe is the last member a message reaches: issue 19's latency probe), "first"
    #: (before everyone: the first members it reaches) or "spread" (at 1/5 .. 4/5 of the
    #: receivers, as before 2026-12-02). See ``probe_order``.
    probe_join: str = "last"


class Workers:
    """A group of worker processes, each with a pipe to the coordinator."""

    def __init__(self, pipes: list[Connection], procs: list[Any]) -> None:
        self.pipes = pipes
        self.procs = procs

    @classmethod
    def start(
        cls, target: Callable[[dict[str, Any], Connection], None], cfgs: list[dict[str, Any]]
    ) -> Workers:
        group = cls([], [])
        for cfg in cfgs:
            parent, child = _MP.Pipe()
            proc = _MP.Process(target=target, args=(cfg, child), daemon=True)
            proc.start()
            child.close()
            group.pipes.append(parent)
            group.procs.append(proc)
        return group

    def part(self, which: slice) -> Workers:
        """Some of the workers, to command apart (stopping them stays with the group)."""
        return Workers(self.pipes[which], self.procs[which])

    def expect(self, tag: str, timeout: float) -> list[tuple[Any, ...]]:
        """One ``tag`` message from every worker, within ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        replies: list[tuple[Any, ...]] = []
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"a worker sent no {tag!r} within {timeout:.0f} s")
                if pipe.poll(min(left, 0.5)):
                    try:
                        reply = pipe.recv()
                    except (EOFError, OSError):
                        raise BenchError(f"a worker died before {tag!r}") from None
                    if reply[0] == tag:
                        replies.append(reply)
                        break
                elif not proc.is_alive():
                    raise BenchError(f"a worker exited (code {proc.exitcode}) before {tag!r}")
        return replies

    def send(self, message: tuple[Any, ...]) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(message)

    def close(self) -> None:
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for pipe in self.pipes:
            pipe.close()


@contextlib.contextmanager
def workers(
    target: Callable[[dict[str, Any], Connection], None], cfgs: list[dict[str, Any]]
) -> Iterator[Workers]:
    group = Workers.start(target, cfgs)
    try:
        yield group
    finally:
        group.send(("stop",))
        group.close()


def _split(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def percentiles(latencies_ns: list[int]) -> dict[str, float | None]:
    if not latencies_ns:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    data = sorted(latencies_ns)

    def at(q: float) -> float:
        return data[min(len(data) - 1, int(q * len(data)))] / 1e6

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": data[-1] / 1e6}


# ------------------------------------------------------------------------ fanout / steady


def login_rounds(counts: list[int], probes: int) -> tuple[list[list[int]], list[int]]:
    """How many connections each receiver worker logs in at each round, and how many the
    probe worker does: ``probes + 1`` rounds, and in round ``k`` the receivers log in
    their ``k``-th share, then the probe worker one probe (none in the last round).

    So the probes sit evenly through the room's join order, at 1/(p+1), 2/(p+1), ... of
    it: a server writes a message to its members one after another, so where a probe
    joined decides when it hears a message (at N=1000 by milliseconds). And they have a
    process of their own: a probe among a hundred receivers was read when that process
    got round to it, which added 0.2 ms at the median and 0.35 ms at p99 at N=100 to
    every server (measured with a minimal relay).
    """
    rounds = probes + 1
    chunks = [[c * (k + 1) // rounds - c * k // rounds for k in range(rounds)] for c in counts]
    return chunks, [1] * probes + [0]


def probe_order(
    counts: list[int], probes: int, where: str
) -> tuple[list[list[int]], list[int], bool]:
    """Login rounds (``login_rounds``'s two lists) and whether the last round waits for the
    senders: with ``where`` "last" the probes are the last members a message reaches.

    Every server here writes a room's line to its members in the order they came:
    trio-chat in the order members joined, ngIRCd in the order of its connections
    (``Send_Marked_Connections`` in its ``irc-write.c`` walks ``Conn_First``/``Conn_Next``,
    its connection table, for every channel message; the member list is only used to mark
    who gets it). So with "last" the probes connect and join after all the receivers *and*
    after the senders (who are members too), and with "first" before everyone: the first
    members a message reaches, as a best case to set beside the last."""
    if where == "spread":
        chunks, probe_chunks = login_rounds(counts, probes)
        return chunks, probe_chunks, False
    if where == "first":
        return [[0, c] for c in counts], [probes, 0], False
    return [[c, 0] for c in counts], [0, probes], True


def broadcast(
    server_name: str,
    n: int,
    opts: Options,
    mode: str,
    on_running: Callable[[RunningServer, float], None] | None = None,
) -> dict[str, Any]:
    """N receivers and S senders in #lobby; ``mode`` is ``window`` (fanout) or ``rate``."""
    with start_server(server_name) as srv:
        # ngIRCd accepts a few dozen connections a second here (see README): give it time.
        login_timeout = 30 + n * 0.1
        send_seconds = opts.duration
        base = {
            "host": HOST,
            "port": srv.port,
            "dialect": srv.dialect,
            "senders": opts.senders,
            "max_seconds": login_timeout * 2 + send_seconds + 90,
        }
        probes = min(opts.probes, n // 2)
        counts = _split(n - probes, opts.receiver_procs if n >= 100 else 1)
        chunks, probe_chunks, after_senders = probe_order(counts, probes, opts.probe_join)
        # At a fixed rate, the plain receivers run at a lower priority. They stand in for
        # clients on other machines, yet here they share the server's two cores, and each
        # one the server's writes wake can preempt it in the middle of a fan-out: on a
        # minimal relay at N=100, nice 10 took its fan-out from 0.45 to 0.29 ms at p50 and
        # from 1.2 to 0.55 ms at p99. At full speed (fanout) they need every cycle to keep
        # up, and a receiver that falls behind is a disconnect, not a latency: not there.
        nice = opts.receiver_nice if mode == "rate" else 0
        rcfgs = [
            {**base, "worker": w, "chunks": c, "probe": False, "nice": nice}
            for w, c in enumerate(chunks)
        ]
        rcfgs.append(
            {**base, "worker": len(rcfgs), "chunks": probe_chunks, "probe": True, "nice": 0}
        )
        with workers(loadgen.receiver_worker, rcfgs) as receivers:
            deadline = time.monotonic() + login_timeout

            def login_round(k: int) -> None:
                for group in (receivers.part(slice(0, -1)), receivers.part(slice(-1, None))):
                    group.send(("login", k))
                    group.expect("logged", deadline - time.monotonic())

            rounds = len(probe_chunks)
            for k in range(rounds - 1 if after_senders else rounds):
                login_round(k)
            with workers(loadgen.sender_worker, [base]) as senders:
                senders.expect("ready", 30)
                if after_senders:  # the probes join last, after the senders too
                    login_round(rounds - 1)
                ready = receivers.expect("ready", login_timeout)
                logged_in = sum(r[1] for r in ready)
                senders.send(("sync",))
                synced = sum(r[1] for r in receivers.expect("synced", login_timeout))
                cpu0, broker0 = srv.cpu_snapshot(), srv.broker_cpu_seconds()
                writes0 = srv.write_calls()
                params = {
                    "mode": mode,
                    "duration": send_seconds,
                    "size": opts.size,
                    "max_messages": opts.max_messages,
                    "window": opts.window,
                    "rate": opts.rate,
                }
                senders.send(("go", params))
                if on_running is not None:
                    on_running(srv, send_seconds)
                sent = senders.expect("done", send_seconds + 60)[0][1]
                if "error" in sent:
                    raise BenchError(sent["error"])
                # Receivers stop by themselves once they saw every END marker; bound the
                # wait. Nobody disconnects before all are done (leave notices would count).
                try:
                    done = receivers.expect("done", 30)
                except BenchError:
                    receivers.send(("stop",))
                    done = receivers.expect("done", 10)
                cpu_each = srv.cpu_by_process(cpu0)
                cpu = sum(cpu_each)
                writes1 = srv.write_calls()
                broker = _broker_cpu(srv, broker0)
                peak_kb = srv.peak_rss_kb()
                broker_peak_kb = srv.broker_peak_rss_kb()
                sockets = srv.sockets_by_process()
                alive = srv.alive()
                log_tail = srv.log_tail()
                pids_steady = set(srv.pids()) == set(cpu0)
    results = [d[1] for d in done]
    deliveries = sum(r["deliveries"] for r in results)
    expected = sent["sent"] * synced
    last_rx = max(r["last_rx_ns"] for r in results)
    seconds = max(1e-9, (last_rx - sent["start_ns"]) / 1e9) if last_rx else sent["seconds"]
    latencies = [x for r in results for x in r["latencies_ns"]]
    late = percentiles(sent.get("late_ns", []))
    ws_messages = sum(r["ws_messages"] for r in results)
    return {
        "server": server_name,
        "n": n,
        "mode": mode,
        "receivers": logged_in,
        "synced": synced,
        "messages_sent": sent["sent"],
        "deliveries": deliveries,
        "expected": expected,
        "completeness": deliveries / expected if expected else 0.0,
        "seconds": seconds,
        "deliveries_per_s": deliveries / seconds,
        "offered_per_s": opts.rate * synced if mode == "rate" else None,
        "disconnects": sum(r["disconnected"] for r in results),
        "sender_disconnects": sent.get("sender_disconnects", 0),
        "login_failures": sum(r["login_failures"] for r in results),
        **percentiles(latencies),
        "latency_samples": len(latencies),
        # steady: how late the generator woke for a scheduled send (not in the latency).
        "sender_late_p50_ms": late["p50_ms"],
        "sender_late_p99_ms": late["p99_ms"],
        "server_cpu_s": cpu,
        # Per process (with --workers: the supervisor, then the workers), first run only.
        "server_cpu_s_by_process": cpu_each,
        "server_sockets_by_process": sockets,
        "cpu_s_per_1000": cpu / deliveries * 1000 if deliveries else None,
        # The server's write calls per delivery (less than 1: writes carried several).
        "writes_per_delivery": (writes1 - writes0) / deliveries
        if deliveries and writes0 is not None and writes1 is not None
        else None,
        "peak_rss_mb": peak_kb / 1024,
        # The broker kinds' redis-server, apart from the server's own (None without one).
        "broker_cpu_s": broker,
        "broker_cpu_s_per_1000": broker / deliveries * 1000
        if broker is not None and deliveries
        else None,
        "broker_peak_rss_mb": None if broker_peak_kb is None else broker_peak_kb / 1024,
        # False if a worker exited or was restarted during the measurement (CPU time off).
        "server_pids_steady": pids_steady,
        "generator_cpu_s": sum(r["cpu_seconds"] for r in results) + sent["cpu_seconds"],
        "server_alive": alive,
        # What the server logged last (warnings and up; a --workers server's workers' too).
        "server_log_tail": log_tail,
        "odd_lines": [x for r in results for x in r["odd_lines"]][:10],
        # WebSocket: deliveries per WebSocket message (above 1 when the server batches).
        "events_per_ws_message": deliveries / ws_messages if ws_messages else None,
        "per_receiver_min": min(x for r in results for x in r["per_receiver"]),
        "per_receiver_max": max(x for r in results for x in r["per_receiver"]),
    }


def _broker_cpu(srv: RunningServer, before: float | None) -> float | None:
    """CPU seconds the server's redis-server used since ``before`` (``None`` without one)."""
    now = srv.broker_cpu_seconds()
    return None if now is None or before is None else now - before


# ------------------------------------------------------------------------------- idle


def _login_one(port: int, dialect: loadgen.Dialect, nick: str, timeout: float) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    loadgen.log_in(sock, dialect, nick)
    return sock


#: Quiet seconds before an idle server's memory is read: the SYNC line is the last thing
#: every connection did, and trio-chat parks a connection after ``park_after`` (2 s) of
#: quiet (see README, "How it works"). Other servers have nothing to settle.
IDLE_SETTLE_SECONDS = 3.0


def idle(server_name: str, n: int, opts: Options) -> dict[str, Any]:
    """N idle logged-in connections in #lobby; server memory before and after."""
    with start_server(server_name) as srv:
        time.sleep(0.5)
        rss0 = srv.rss_kb()
        timeout = 60 + n * 0.05
        cfgs = [
            {
                "host": HOST,
                "port": srv.port,
                "dialect": srv.dialect,
                "worker": w,
                "count": c,
                "max_seconds": timeout * 2 + 60,
            }
            for w, c in enumerate(_split(n, 4))
        ]
        with workers(loadgen.idle_worker, cfgs) as group:
            ready = group.expect("ready", timeout)
            connected = sum(r[1] for r in ready)
            login_seconds = max(r[3] for r in ready)
            dialect = loadgen.DIALECTS[srv.dialect]
            # One more client says SYNC: once every idle client has seen it, the join storm
            # is over and the server holds nothing but the idle connections.
            with _login_one(srv.port, dialect, "syncer", 30) as syncer:
                syncer.sendall(dialect.say(loadgen.SYNC.decode()))
                synced = sum(r[1] for r in group.expect("synced", timeout))
                time.sleep(IDLE_SETTLE_SECONDS)
                rss1 = srv.rss_kb()
                peak_kb = srv.peak_rss_kb()
                cpu = srv.cpu_seconds()
                broker_cpu = srv.broker_cpu_seconds()
                broker_peak_kb = srv.broker_peak_rss_kb()
                sockets = srv.sockets_by_process()
            log_tail = srv.log_tail()
            group.send(("stop",))
            done = group.expect("done", 30)
    return {
        "server": server_name,
        "n": n,
        "connected": connected,
        "synced": synced,
        "completeness": synced / n if n else 0.0,
        "login_seconds": login_seconds,
        "logins_per_s": connected / login_seconds,
        "rss_before_mb": rss0 / 1024,
        "rss_after_mb": rss1 / 1024,
        "kb_per_conn": (rss1 - rss0) / max(1, synced),
        "peak_rss_mb": peak_kb / 1024,
        "server_cpu_s": cpu,
        "broker_cpu_s": broker_cpu,
        "broker_peak_rss_mb": None if broker_peak_kb is None else broker_peak_kb / 1024,
        # Open sockets per server process (supervisor first), first run only.
        "server_sockets_by_process": sockets,
        "disconnects": sum(d[1]["disconnected"] for d in done),
        "server_log_tail": log_tail,
    }


# ------------------------------------------------------------------------------ churn


def churn(server_name: str, opts: Options) -> dict[str, Any]:
    """Workers loop: connect, log in, say one line, quit, wait for the close."""
    with start_server(server_name) as srv:
        cfgs = [
            {
                "host": HOST,
                "port": srv.port,
                "dialect": srv.dialect,
                "worker": w,
                "max_seconds": opts.duration + 60,
            }
            for w in range(opts.churn_workers)
        ]
        with workers(loadgen.churn_worker, cfgs) as group:
            group.expect("ready", 30)
            cpu0, broker0 = srv.cpu_snapshot(), srv.broker_cpu_seconds()
            group.send(("go", {"duration": opts.duration, "max_count": 100_000}))
            done = [d[1] for d in group.expect("done", opts.duration + 30)]
            cpu = srv.cpu_since(cpu0)
            broker = _broker_cpu(srv, broker0)
            peak_kb = srv.peak_rss_kb()
    ok = sum(d["ok"] for d in done)
    failed = sum(d["failed"] for d in done)
    seconds = max(d["seconds"] for d in done) or 1e-9
    errors: dict[str, int] = {}
    for d in done:
        for key, count in d.get("errors", {}).items():
            errors[key] = errors.get(key, 0) + count
    return {
        "server": server_name,
        "ok": ok,
        "failed": failed,
        "completeness": ok / (ok + failed) if ok + failed else 0.0,
        "conns_per_s": ok / seconds,
        "seconds": seconds,
        "server_cpu_s": cpu,
        "cpu_ms_per_conn": cpu / ok * 1000 if ok else None,
        "broker_cpu_s": broker,
        "broker_cpu_ms_per_conn": broker / ok * 1000 if broker is not None and ok else None,
        "peak_rss_mb": peak_kb / 1024,
        "errors": errors,
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric field over repeated runs (other fields from the first run)."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
            out[key] = statistics.median(values)
        elif isinstance(value, bool):
            out[key] = all(r[key] for r in runs)
    return out


# -------------------------------------------------------------------------- community


@dataclass
class CommunityOptions:
    """How the community load is generated (the community itself is a ``CommunityShape``)."""

    #: Generator processes, each with an equal share of the users.
    procs: int = 4
    #: trio-chat: every other user of a process on WebSocket, the rest on TCP JSON lines
    #: (False: all on the server's own dialect).
    mixed: bool = True
    size: int = 64  # message text length, characters
    #: Seconds to wait, after the last send, for deliveries still on their way.
    drain: float = 15.0


def community_load_config(
    srv: RunningServer,
    the_plan: community_plan.Plan,
    mine: list[int],
    transports: list[str],
    room_names: list[str],
    size: int,
) -> dict[str, Any]:
    """What a community load process is given for its users ``mine``: the server, each
    user's transport and rooms, their part of the schedule, and the texts' ``size``."""
    mine_set = set(mine)
    return {
        "host": HOST,
        "port": srv.port,
        "ws_port": srv.ws_port,
        "users": [
            {
                "user": u,
                "transport": transports[u],
                "rooms": [room_names[r] for r in the_plan.rooms_of[u]],
            }
            for u in mine
        ],
        "schedule": [s for s in the_plan.schedule if s[1] in mine_set],
        "room_names": room_names,
        "size": size,
    }


def community_transports(dialect: str, users: list[int], procs: int, mixed: bool) -> list[str]:
    """Each user's wire dialect: IRC for ngIRCd; for trio-chat, with ``mixed``, every other
    user of each generator process on WebSocket (by ``user // procs``, so each process has
    both), the others on JSON lines."""
    if dialect != "json" or not mixed:
        return [dialect for _ in users]
    return ["ws" if (u // max(1, procs)) % 2 else "json" for u in users]


def community(
    server_name: str,
    shape: community_plan.CommunityShape,
    copts: CommunityOptions,
    on_running: Callable[[RunningServer, float], None] | None = None,
) -> dict[str, Any]:
    """Many Zipf-sized rooms, Zipf-active senders at an open-loop rate (bench/README.md)."""
    the_plan = community_plan.plan(shape)
    users = list(range(the_plan.users))
    with start_server(server_name, ws=copts.mixed) as srv:
        time.sleep(0.3)
        rss0 = srv.rss_kb()
        transports = community_transports(srv.dialect, users, copts.procs, copts.mixed)
        login_timeout = 60 + the_plan.users * (0.01 if srv.dialect == "irc" else 0.005)
        room_names = [the_plan.room_name(r) for r in range(len(the_plan.members))]
        cfgs = []
        for w in range(copts.procs):
            cfg = community_load_config(
                srv, the_plan, users[w :: copts.procs], transports, room_names, copts.size
            )
            cfg["big_room"] = the_plan.big
            cfg["login_timeout"] = login_timeout
            cfg["max_seconds"] = login_timeout + shape.duration + copts.drain + 120
            cfgs.append(cfg)
        with workers(community_load.community_worker, cfgs) as group:
            t_login = time.monotonic()
            group.send(("login",))
            ready = [r[1] for r in group.expect("ready", login_timeout + 30)]
            login_seconds = time.monotonic() - t_login
            time.sleep(1.0)  # the last join notices settle
            rss_ready = srv.rss_kb()
            cpu0 = srv.cpu_snapshot()
            start = time.monotonic() + 0.5
            group.send(("go", {"start": start}))
            if on_running is not None:  # --profile: py-spy, strace
                on_running(srv, shape.duration)
            reports = [r[1] for r in group.expect("sent", shape.duration + 60)]
            sent = [t for r in reports for t in r["sent"]]
            expected = community_plan.expected_per_user(the_plan, sent, echo=srv.dialect != "irc")
            group.send(("expect", {"expected": expected, "drain": copts.drain}))
            done = [d[1] for d in group.expect("done", copts.drain + 60)]
            end = time.monotonic()
            cpu = srv.cpu_since(cpu0)
            rss_busy = srv.rss_kb()
            peak_kb = srv.peak_rss_kb()
            alive = srv.alive()
            log_tail = srv.log_tail()
    received = sum(d["received"] for d in done)
    want = sum(d["expected"] for d in done)
    small = [x for d in done for x in d["small_ns"]]
    big = [x for d in done for x in d["big_ns"]]
    connections = sum(r["ready"] for r in ready)
    lat = community_plan.latency_summary(small + big)
    small_lat = community_plan.latency_summary(small)
    big_lat = community_plan.latency_summary(big)
    ws_users = sum(t == "ws" for t in transports)
    messages = sum(n for _, _, n in sent)
    seconds = max(1e-9, end - start)
    late50 = [r["late_p50_ns"] for r in reports if r["late_p50_ns"] is not None]
    late99 = [r["late_p99_ns"] for r in reports if r["late_p99_ns"] is not None]
    sizes = sorted((len(m) for m in the_plan.members[: shape.rooms]), reverse=True)
    return {
        "server": server_name,
        "users": the_plan.users,
        "rooms": len(the_plan.members),
        "largest_rooms": sizes[:3],
        "memberships": sum(len(m) for m in the_plan.members),
        "ws_users": ws_users,
        "connections": connections,
        "login_failures": sum(r["failures"] for r in ready),
        "login_seconds": login_seconds,
        "messages_sent": messages,
        "not_sent": sum(r["not_sent"] for r in reports),
        "deliveries": received,
        "expected": want,
        "missing": sum(max(0, n) for d in done for n in d["short"].values()),
        "extra": sum(max(0, -n) for d in done for n in d["short"].values()),
        "completeness": received / want if want else 0.0,
        "disconnects": sum(d["disconnected"] for d in done),
        # From the start of the schedule to the end of the drain: a rate of the whole run.
        "deliveries_per_s": received / seconds,
        **lat,
        "small_p50_ms": small_lat["p50_ms"],
        "small_p99_ms": small_lat["p99_ms"],
        "small_p999_ms": small_lat["p999_ms"],
        "big_room": the_plan.big is not None,
        "big_p99_ms": big_lat["p99_ms"],
        "latency_samples": len(small) + len(big),
        "sender_late_p50_ms": statistics.median(late50) / 1e6 if late50 else None,
        "sender_late_p99_ms": max(late99) / 1e6 if late99 else None,
        "server_cpu_s": cpu,
        "cpu_us_per_delivery": cpu / received * 1e6 if received else None,
        "rss_before_mb": rss0 / 1024,
        "rss_ready_mb": rss_ready / 1024,
        "rss_busy_mb": rss_busy / 1024,
        "kib_per_conn_idle": (rss_ready - rss0) / max(1, connections),
        "kib_per_conn_busy": (rss_busy - rss0) / max(1, connections),
        "peak_rss_mb": peak_kb / 1024,
        "generator_cpu_s": sum(d["cpu_seconds"] for d in done),
        "server_alive": alive,
        "server_log_tail": log_tail,
    }


# ------------------------------------------------------------------------------ storm


@dataclass
class StormOptions:
    """The reconnect storm: ``users`` spread over ``rooms`` rooms besides #lobby."""

    users: int = 10_000
    rooms: int = 100
    #: Messages said in #lobby and in each room before the restart, and how many of the
    #: last of them each user missed (its gap in each room).
    history: int = 20
    gap: int = 10
    procs: int = 4
    #: Seconds the users get to come back before the rest count as not back.
    timeout: float = 120.0


def _json_lines(sock: socket.socket, until: Callable[[dict[str, Any]], bool], deadline: float):
    """Read JSON lines from a blocking socket, yielding each, until ``until`` says so."""
    import json

    buf = b""
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("the server closed the filler's connection")
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            event = json.loads(line)
            yield event
            if until(event):
                return
    raise BenchError("the filler timed out")


def fill_history(port: int, rooms: list[str], per_room: int, timeout: float = 120.0):
    """One client says ``per_room`` lines in each of ``rooms`` (after joining them); return
    the ids of its lines per room, in order (the echoes carry them)."""
    deadline = time.monotonic() + timeout
    ids: dict[str, list[int]] = {room: [] for room in rooms}
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(b'{"type":"hello","nick":"filler"}\n')
        for _ in _json_lines(sock, lambda e: e.get("type") == "welcome", deadline):
            pass
        others = [r for r in rooms if r != "#lobby"]
        for room in others:
            sock.sendall(
                b'{"type":"command","name":"join","args":"%s","ref":"J"}\n' % room.encode()
            )
        joined = 0

        def all_joined(event: dict[str, Any]) -> bool:
            nonlocal joined
            joined += event.get("ref") == "J"
            return joined >= len(others)

        if others:
            for _ in _json_lines(sock, all_joined, deadline):
                pass
        total = per_room * len(rooms)
        lines = [
            b'{"type":"say","room":"%s","text":"before the restart %d"}\n' % (room.encode(), i)
            for i in range(per_room)
            for room in rooms
        ]
        sock.sendall(b"".join(lines))
        said = 0

        def all_said(event: dict[str, Any]) -> bool:
            nonlocal said
            if event.get("type") == "message" and event.get("nick") == "filler":
                ids[event["room"]].append(event["id"])
                said += 1
            elif event.get("type") == "error":
                raise BenchError(f"the filler's line was refused: {event}")
            return said >= total

        for _ in _json_lines(sock, all_said, deadline):
            pass
    return ids


def storm_supports(server_name: str) -> bool:
    """Whether the storm runs ``server_name``: plain trio-chat (given a database), also
    from another ref; not ngIRCd (IRC has no history) nor the other kinds."""
    return server_name in ("trio-chat", "trio-chat+db") or server_name.startswith("trio-chat@")


def storm(
    server_name: str,
    sopts: StormOptions,
    on_running: Callable[[RunningServer, float], None] | None = None,
) -> dict[str, Any]:
    """A restart with SQLite: history said, the server stopped and started again on the same
    database, then every user logging back in at once and filling its gaps (README)."""
    import tempfile
    from pathlib import Path

    if not storm_supports(server_name):
        raise BenchError(f"storm runs trio-chat with a database only, not {server_name}")
    rooms = [f"#s{k}" for k in range(sopts.rooms)]
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        db = Path(tmp) / "chat.db"
        with start_server(server_name, db=db) as srv:
            ids = fill_history(srv.port, ["#lobby", *rooms], sopts.history)
        before = sopts.history - sopts.gap - 1
        specs = [
            {
                "user": u,
                "nick": f"s{u}",
                "room": rooms[u % sopts.rooms],
                "lobby_after": ids["#lobby"][before],
                "room_after": ids[rooms[u % sopts.rooms]][before],
            }
            for u in range(sopts.users)
        ]
        with start_server(server_name, db=db) as srv:
            time.sleep(0.3)
            rss0 = srv.rss_kb()
            cfgs = [
                {
                    "host": HOST,
                    "port": srv.port,
                    "users": specs[w :: sopts.procs],
                    "timeout": sopts.timeout,
                    "max_seconds": sopts.timeout + 120,
                }
                for w in range(sopts.procs)
            ]
            with workers(storm_load.storm_worker, cfgs) as group:
                group.expect("ready", 60)
                cpu0 = srv.cpu_snapshot()
                group.send(("go",))
                if on_running is not None:  # --profile: py-spy, strace
                    on_running(srv, sopts.timeout)
                done = [d[1] for d in group.expect("done", sopts.timeout + 60)]
                cpu = srv.cpu_since(cpu0)
                rss1 = srv.rss_kb()
                peak_kb = srv.peak_rss_kb()
                alive = srv.alive()
                log_tail = srv.log_tail()
    back = sum(d["back"] for d in done)
    seconds = max(d["last_back"] for d in done) or 1e-9
    each = [x for d in done for x in d["back_seconds"]]
    gaps = [g for d in done for g in d["gap_messages"]]
    failures: dict[str, int] = {}
    for d in done:
        for key, n in d["failures"].items():
            failures[key] = failures.get(key, 0) + n
    p50, p99 = community_plan.quantiles([int(x * 1e9) for x in each], (0.5, 0.99))
    return {
        "server": server_name,
        "users": sopts.users,
        "back": back,
        "completeness": back / sopts.users if sopts.users else 0.0,
        "failures": failures,
        "seconds": seconds,
        "logins_per_s": back / seconds,
        "user_p50_s": None if p50 is None else p50 / 1e9,
        "user_p99_s": None if p99 is None else p99 / 1e9,
        # Each user's two gaps must hold exactly ``gap`` messages each.
        "wrong_gaps": sum(g != (sopts.gap, sopts.gap) for g in gaps),
        "server_cpu_s": cpu,
        "cpu_ms_per_login": cpu / back * 1000 if back else None,
        "kib_per_conn": (rss1 - rss0) / max(1, back),
        "peak_rss_mb": peak_kb / 1024,
        "generator_cpu_s": sum(d["cpu_seconds"] for d in done),
        "server_alive": alive,
        "server_log_tail": log_tail,
    }
