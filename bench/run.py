"""Benchmark trio-chat against a naive threaded server and ngIRCd: ``python bench/run.py``.

Scenarios: ``fanout`` (N receivers, senders at full speed), ``steady`` (1000 receivers at a
fixed offered rate), ``idle`` (memory per idle connection), ``churn`` (connect, say, quit).
Writes ``bench/results/results.md``, ``results.json`` and ``fanout.png``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import community
import report
import scenarios
import servers as servers_mod
from servers import (
    BROKER_WORKERS,
    SCENARIOS_OF,
    SERVER_NAMES,
    ServerStartError,
    ServerUnavailable,
    raise_nofile,
    unavailable,
)

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("fanout", "steady", "idle", "churn", "community", "storm")
#: What runs without --scenarios (community and storm are asked for by name).
DEFAULT_SCENARIOS = ("fanout", "steady", "idle", "churn")


def csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        return [kind(x.strip()) for x in text.split(",") if x.strip()]

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="short run (~5 min): 1 repeat, 2 s sends, 2000 idle connections",
    )
    p.add_argument(
        "--scenarios",
        type=csv(str),
        default=list(DEFAULT_SCENARIOS),
        help="comma list of " + ",".join(SCENARIOS) + " (default: the first four)",
    )
    p.add_argument(
        "--servers",
        type=csv(str),
        default=list(SERVER_NAMES),
        help="comma list of " + ",".join(SERVER_NAMES),
    )
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="REF",
        help="also run plain trio-chat from git REF as server 'trio-chat@REF' (repeatable), "
        "to measure a change against the code before it in the same run",
    )
    p.add_argument(
        "--n",
        type=csv(int),
        default=[10, 100, 1000],
        help="fanout receiver counts (default 10,100,1000)",
    )
    p.add_argument("--duration", type=float, help="seconds of sending per measurement")
    p.add_argument("--repeats", type=int, help="measurements per point; medians are reported")
    p.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help="steady: offered messages/s, all senders together (default 50)",
    )
    p.add_argument(
        "--steady-n",
        type=csv(int),
        default=[1000],
        help="steady: receivers, a comma list of points (default 1000)",
    )
    p.add_argument(
        "--steady-deliveries",
        type=float,
        metavar="D",
        help="steady: offer D deliveries/s at every point (the rate is D / N messages/s, "
        "e.g. 50000 for issue 19's one-room latency); overrides --rate",
    )
    p.add_argument(
        "--probe-join",
        choices=("last", "first", "spread"),
        default=scenarios.Options.probe_join,
        help="fanout/steady: the latency probes join last, so they are the last members a "
        "message reaches (default), first (the first it reaches), or spread through the "
        "join order (as before 2026-12-02)",
    )
    p.add_argument("--idle-n", type=int, help="idle connections (2000 quick, 10000 full)")
    p.add_argument("--senders", type=int, default=4, help="sending clients (default 4)")
    p.add_argument(
        "--window",
        type=int,
        default=256,
        help="fanout: unacknowledged messages per sender (default 256)",
    )
    p.add_argument(
        "--ngircd-max-n",
        type=int,
        default=1000,
        help="skip ngircd at points with more connections than this: 10,000 users "
        "joining one channel is 50 million join notices for it (default 1000)",
    )
    p.add_argument(
        "--receiver-nice",
        type=int,
        default=scenarios.Options.receiver_nice,
        help="steady: nice value of the receiver processes other than the probes' (default "
        "%(default)s), so they do not preempt the server they measure (see bench/README.md)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile trio-chat with py-spy under fanout at the largest N",
    )
    p.add_argument(
        "--profile-server",
        default="trio-chat",
        help="which trio-chat variant --profile runs (trio-chat, trio-chat+db, trio-chat-ws, "
        "trio-chat-workers2, ...)",
    )
    p.add_argument(
        "--ref",
        default="HEAD",
        help="git ref of trio-chat to run (exported to a temp dir, so edits in "
        "progress do not leak into a run); 'worktree' runs the installed tree",
    )
    add_community_arguments(p)
    p.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    return p


def add_community_arguments(p: argparse.ArgumentParser) -> None:
    """The community and storm scenarios' options (issue 19; see bench/README.md)."""
    shape = community.CommunityShape()
    g = p.add_argument_group("community (many Zipf-sized rooms at an open-loop rate)")
    g.add_argument("--users", type=int, default=shape.users, help="default %(default)s")
    g.add_argument("--rooms", type=int, default=shape.rooms, help="default %(default)s")
    g.add_argument(
        "--community-rate",
        type=float,
        default=shape.rate,
        help="messages/s, all senders together (default %(default)s)",
    )
    g.add_argument(
        "--community-duration",
        type=float,
        default=shape.duration,
        help="seconds of sending (default %(default)s)",
    )
    g.add_argument("--seed", type=int, default=shape.seed, help="default %(default)s")
    g.add_argument(
        "--big-room",
        type=int,
        default=0,
        metavar="N",
        help="also measure with one more room of N listeners and its own sender, to see "
        "whether its fan-out delays the small rooms (default: not measured)",
    )
    g.add_argument(
        "--big-rate",
        type=float,
        default=shape.big_rate,
        help="the big room's messages/s (default %(default)s)",
    )
    g.add_argument(
        "--community-procs",
        type=int,
        default=scenarios.CommunityOptions.procs,
        help="generator processes (default %(default)s)",
    )
    g.add_argument(
        "--tcp-only",
        action="store_true",
        help="trio-chat users all on TCP JSON lines (default: every other one on WebSocket)",
    )
    s = p.add_argument_group("storm (everyone logging back in after a restart)")
    s.add_argument(
        "--storm-users", type=int, default=scenarios.StormOptions.users, help="default %(default)s"
    )
    s.add_argument(
        "--storm-rooms",
        type=int,
        default=scenarios.StormOptions.rooms,
        help="rooms, besides #lobby, the users are spread over (default %(default)s)",
    )


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.servers += [servers_mod.compare_with(ref) for ref in args.compare]
    known = {*SERVER_NAMES, *servers_mod.COMPARE_REFS}
    unknown = set(args.scenarios) - set(SCENARIOS) or set(args.servers) - known
    if unknown:
        print(f"run.py: unknown name(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    raise_nofile()
    servers_mod.TRIO_CHAT_REF = None if args.ref == "worktree" else args.ref
    opts = scenarios.Options(
        duration=args.duration or (2.0 if args.quick else 5.0),
        senders=args.senders,
        window=args.window,
        rate=args.rate,
        steady_n=args.steady_n[0],
        probe_join=args.probe_join,
        receiver_nice=args.receiver_nice,
        idle_n=args.idle_n or (2000 if args.quick else 10_000),
    )
    repeats = args.repeats or (1 if args.quick else 3)
    servers = list(args.servers)
    skipped: dict[str, str] = {}
    for server in list(servers):  # ngircd; redis-server for the broker kinds
        if (reason := unavailable(server)) is not None:
            log(f"skipping {server}: {reason}")
            skipped[server] = reason
            servers.remove(server)

    results: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "quick": args.quick,
            "repeats": repeats,
            "options": vars(opts),
            "servers": servers,
            "skipped": skipped,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {_cpus()} CPUs",
            "ngircd": _ngircd(),
            "redis": _redis() if any(s in BROKER_WORKERS for s in servers) else None,
            "trio_chat": _revision(args.ref),
        },
    }
    started = time.monotonic()

    def measure(
        scenario: str, label: str, fn: Callable[[str], dict[str, Any]], conns: int = 0
    ) -> None:
        here = [s for s in servers if scenario in SCENARIOS_OF.get(s, (scenario,))]
        if scenario == "storm":  # a restart with SQLite: trio-chat's history, not IRC's
            here = [s for s in here if scenarios.storm_supports(s)]
        if len(here) < len(servers):
            log(f"{scenario}: not measuring {', '.join(s for s in servers if s not in here)}")
        rows: dict[str, list[dict[str, Any]]] = {s: [] for s in here}
        too_many = f"more than --ngircd-max-n={args.ngircd_max_n} connections"
        for rep in range(repeats):
            for server in here:  # interleaved, so drift on a noisy box hits all alike
                if server in skipped:
                    continue
                if server == "ngircd" and conns > args.ngircd_max_n:
                    if rep == 0:
                        log(f"{scenario} {label}: skipping ngircd ({too_many})")
                        rows[server].append({"server": server, "error": "skipped: " + too_many})
                    continue
                log(f"{scenario} {label} {server} run {rep + 1}/{repeats}")
                try:
                    run = fn(server)
                except ServerUnavailable as exc:
                    log(f"  skipping {server}: {exc}")
                    skipped[server] = str(exc)
                    continue
                except (scenarios.BenchError, ServerStartError) as exc:
                    log(f"  FAILED: {exc}")
                    run = {"server": server, "error": str(exc)}
                rows[server].append(run)
                log("  " + report.one_line(scenario, run))
        for server, runs in rows.items():
            good = [r for r in runs if "error" not in r]
            entry = {
                "server": server,
                "label": label,
                "runs": runs,
                "median": scenarios.median_of(good) if good else None,
            }
            results.setdefault(scenario, []).append(entry)

    if "fanout" in args.scenarios:
        for n in args.n:
            measure("fanout", f"N={n}", lambda s, n=n: scenarios.broadcast(s, n, opts, "window"), n)
    if "steady" in args.scenarios:
        for n in args.steady_n:
            rate = args.steady_deliveries / n if args.steady_deliveries else opts.rate
            at = dataclasses.replace(opts, steady_n=n, rate=rate)
            measure(
                "steady",
                f"N={n} @ {rate:g} msg/s",
                lambda s, n=n, at=at: scenarios.broadcast(s, n, at, "rate"),
                n,
            )
    if "idle" in args.scenarios:
        measure(
            "idle", f"N={opts.idle_n}", lambda s: scenarios.idle(s, opts.idle_n, opts), opts.idle_n
        )
    if "churn" in args.scenarios:
        measure("churn", f"{opts.churn_workers} workers", lambda s: scenarios.churn(s, opts))
    if "community" in args.scenarios:
        shape = community.CommunityShape(
            users=args.users,
            rooms=args.rooms,
            rate=args.community_rate,
            duration=args.community_duration,
            seed=args.seed,
            big_rate=args.big_rate,
        )
        copts = scenarios.CommunityOptions(procs=args.community_procs, mixed=not args.tcp_only)
        shapes = [shape]
        if args.big_room:
            shapes.append(dataclasses.replace(shape, big_room=args.big_room))
        results["meta"]["community"] = {"shape": vars(shape), "options": vars(copts)}
        for one in shapes:
            label = community_label(one)
            measure(
                "community",
                label,
                lambda s, one=one: scenarios.community(s, one, copts),
            )  # no --ngircd-max-n: that cap is for everyone in one channel
    if "storm" in args.scenarios:
        sopts = scenarios.StormOptions(users=args.storm_users, rooms=args.storm_rooms)
        results["meta"]["storm"] = vars(sopts)
        measure(
            "storm",
            f"{sopts.users} users, {sopts.rooms} rooms",
            lambda s: scenarios.storm(s, sopts),
        )
    wanted = set(args.scenarios)
    if args.profile and ("fanout" in wanted or not wanted & {"community", "storm"}):
        results["profile"] = profile(max(args.n), opts, args.out, args.profile_server)
    if args.profile and "storm" in args.scenarios:
        results["storm_profile"] = profile_storm(sopts, args.out, args.profile_server)
    if args.profile and "community" in args.scenarios:
        results["community_profile"] = profile_community(
            shape, copts, args.out, args.profile_server
        )

    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    markdown = report.markdown(results)
    (args.out / "results.md").write_text(markdown)
    plot = report.plot_fanout(results, args.out / "fanout.png")
    print()
    print(markdown)
    log(
        f"wrote {args.out}/results.md, results.json"
        + (", fanout.png" if plot else " (no plot: matplotlib missing)")
    )
    return 0


def profile(
    n: int, opts: scenarios.Options, out: Path, server: str = "trio-chat"
) -> dict[str, Any]:
    """Run fanout at N against ``server`` twice under py-spy: a flame graph and raw stacks."""
    import shutil

    if shutil.which("py-spy") is None:
        log("no profile: py-spy is not installed (pip install py-spy)")
        return {"error": "py-spy not installed"}
    out.mkdir(parents=True, exist_ok=True)
    files = {"flamegraph": out / "profile.svg", "raw": out / "profile.txt"}
    for fmt, path in files.items():
        log(f"profiling {server} fanout N={n} with py-spy ({fmt})")
        procs: list[subprocess.Popen[bytes]] = []

        def attach(
            srv: Any,
            seconds: float,
            fmt: str = fmt,
            path: Path = path,
            procs: list[subprocess.Popen[bytes]] = procs,
        ) -> None:
            procs.append(
                subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "--pid",
                        str(srv.pid),
                        "--duration",
                        str(max(1, int(seconds))),
                        "--rate",
                        "200",
                        "--format",
                        fmt,
                        "--output",
                        str(path),
                        "--nonblocking",
                        "--subprocesses",  # --workers: the workers are the supervisor's
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

        run = scenarios.broadcast(server, n, opts, "window", on_running=attach)
        for proc in procs:
            proc.wait(60)
        log("  " + report.one_line("fanout", run))
    hot = report.hot_spots(files["raw"]) if files["raw"].exists() else []
    return {"files": {k: str(v.name) for k, v in files.items()}, "hot_spots": hot}


def community_label(shape: community.CommunityShape) -> str:
    label = f"{shape.users} users, {shape.rooms} rooms @ {shape.rate:g} msg/s"
    if shape.big_room:
        label += f" + #big of {shape.big_room} @ {shape.big_rate:g} msg/s"
    return label


def profile_community(
    shape: community.CommunityShape,
    copts: scenarios.CommunityOptions,
    out: Path,
    server: str = "trio-chat",
) -> dict[str, Any]:
    """One community run of ``server`` under py-spy (the first half of the sending, raw
    stacks) and then ``strace -c -f`` (the second half: syscall counts): where the time
    goes, and syscalls per delivery. strace slows the server a lot while attached, so the
    run's own figures are not comparable with the unprofiled ones."""
    import shutil

    missing = [tool for tool in ("py-spy", "strace") if shutil.which(tool) is None]
    if missing:
        log(f"no community profile: {', '.join(missing)} not installed")
        return {"error": f"not installed: {', '.join(missing)}"}
    out.mkdir(parents=True, exist_ok=True)
    stacks, syscalls = out / "community-profile.txt", out / "community-strace.txt"
    half = max(1, int(shape.duration / 2))
    procs: list[subprocess.Popen[bytes]] = []

    def attach(srv: Any, seconds: float) -> None:
        pid = str(srv.pid)
        script = (
            f"py-spy record --pid {pid} --duration {half} --rate 200 --format raw "
            f"--output {stacks} --nonblocking --subprocesses >/dev/null 2>&1; "
            f"timeout -s INT {half} strace -c -f -o {syscalls} -p {pid} >/dev/null 2>&1"
        )
        procs.append(subprocess.Popen(["sh", "-c", script]))

    log(f"profiling {server} community ({community_label(shape)}): py-spy, then strace -c")
    run = scenarios.community(server, shape, copts, on_running=attach)
    for proc in procs:
        proc.wait(shape.duration + 60)
    log("  " + report.one_line("community", run))
    calls = report.strace_summary(syscalls) if syscalls.exists() else {}
    deliveries = run["deliveries_per_s"] * half
    return {
        "files": {"stacks": stacks.name, "strace": syscalls.name},
        "hot_spots": report.hot_spots(stacks) if stacks.exists() else [],
        "syscalls": calls,
        "strace_seconds": half,
        "syscalls_per_delivery": {k: v / deliveries for k, v in calls.items()}
        if deliveries
        else {},
        "run": {k: v for k, v in run.items() if k != "server_log_tail"},
    }


def profile_storm(
    sopts: scenarios.StormOptions, out: Path, server: str = "trio-chat"
) -> dict[str, Any]:
    """One storm of ``server`` under py-spy (every thread, the first ``seconds``) and
    ``strace -c -f`` at the same time (py-spy reads memory without stopping the process):
    where the log-ins spend their time, the worker threads' included."""
    import shutil

    if server not in ("trio-chat", "trio-chat+db"):
        server = "trio-chat"
    missing = [tool for tool in ("py-spy", "strace") if shutil.which(tool) is None]
    if missing:
        log(f"no storm profile: {', '.join(missing)} not installed")
        return {"error": f"not installed: {', '.join(missing)}"}
    out.mkdir(parents=True, exist_ok=True)
    stacks, syscalls = out / "storm-profile.txt", out / "storm-strace.txt"
    seconds = 5
    procs: list[subprocess.Popen[bytes]] = []

    def attach(srv: Any, _: float) -> None:
        pid = str(srv.pid)
        spy = ["py-spy", "record", "--pid", pid, "--duration", str(seconds), "--rate", "200"]
        spy += ["--format", "raw", "--output", str(stacks), "--nonblocking", "--threads"]
        trace = ["timeout", "-s", "INT", str(seconds), "strace", "-c", "-f"]
        trace += ["-o", str(syscalls), "-p", pid]
        for command in (spy, trace):
            procs.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )

    log(f"profiling {server} storm ({sopts.users} users): py-spy and strace -c, {seconds} s")
    run = scenarios.storm(server, sopts, on_running=attach)
    for proc in procs:
        proc.wait(60)
    log("  " + report.one_line("storm", run))
    return {
        "files": {"stacks": stacks.name, "strace": syscalls.name},
        "hot_spots": report.hot_spots(stacks) if stacks.exists() else [],
        "syscalls": report.strace_summary(syscalls) if syscalls.exists() else {},
        "seconds": seconds,
        "run": {k: v for k, v in run.items() if k != "server_log_tail"},
    }


def _revision(ref: str) -> str:
    if ref == "worktree":
        return "installed working tree"
    out = subprocess.run(
        ["git", "-C", str(RESULTS.parent.parent), "rev-parse", "--short", ref],
        capture_output=True,
        timeout=10,
    )
    return f"git {ref} = {out.stdout.decode().strip() or '?'}"


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def _ngircd() -> str | None:
    try:
        out = subprocess.run(["ngircd", "--version"], capture_output=True, timeout=10)
        return out.stdout.decode(errors="replace").splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def _redis() -> str | None:
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, timeout=10)
        return out.stdout.decode(errors="replace").split(" sha=")[0].strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
