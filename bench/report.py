"""Turn the results dict into a markdown report, a fanout plot and profile hot spots."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any


def _f(value: Any, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and digits == 0:
        return f"{value:,.0f}{suffix}"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}{suffix}"
    return str(value)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def one_line(scenario: str, run: dict[str, Any]) -> str:
    """A progress line for one measurement."""
    if "error" in run:
        return f"error: {run['error']}"
    if scenario in ("fanout", "steady"):
        return (
            f"{_f(run['deliveries_per_s'])} deliveries/s, complete {_pct(run['completeness'])}"
            f", p50 {_f(run['p50_ms'], 1)} ms, p99 {_f(run['p99_ms'], 1)} ms, "
            f"cpu/1k {_f(run['cpu_s_per_1000'], 4)} s, peak {_f(run['peak_rss_mb'], 1)} MB, "
            f"disconnects {run['disconnects']}, sent {run['messages_sent']}"
            + _redis_note(run, "broker_cpu_s_per_1000", "cpu/1k", 4)
        )
    if scenario == "community":
        return (
            f"{run['deliveries']}/{run['expected']} delivered ({run['missing']} missing), "
            f"p50/p99/p99.9 {_f(run['p50_ms'], 2)}/{_f(run['p99_ms'], 1)}/"
            f"{_f(run['p999_ms'], 1)} ms, small rooms p99 {_f(run['small_p99_ms'], 1)} ms, "
            f"{_f(run['cpu_us_per_delivery'], 1)} us CPU/delivery, "
            f"{_f(run['kib_per_conn_busy'], 1)} KiB/conn, disconnects {run['disconnects']}"
        )
    if scenario == "storm":
        return (
            f"{run['back']}/{run['users']} back in {_f(run['seconds'], 2)} s, "
            f"{_f(run['cpu_ms_per_login'], 3)} ms CPU/login, wrong gaps {run['wrong_gaps']}, "
            f"failures {run['failures'] or '-'}"
        )
    if scenario == "idle":
        return (
            f"{run['synced']}/{run['n']} idle, {_f(run['kb_per_conn'], 1)} KiB/conn, "
            f"login {_f(run['login_seconds'], 1)} s, disconnects {run['disconnects']}"
            + _redis_note(run, "broker_peak_rss_mb", "peak MB", 1)
        )
    return (
        f"{_f(run['conns_per_s'])} conns/s, ok {run['ok']}, failed {run['failed']} "
        f"{run.get('errors') or ''}"
    )


def _redis_note(run: dict[str, Any], key: str, what: str, digits: int) -> str:
    """The broker kinds' redis-server figure for a progress line ("" for other servers)."""
    if run.get(key) is None:
        return ""
    return f"; redis {what} {_f(run[key], digits)}"


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return "-"
    return f"{a / b:.2f}x"


def _medians(results: dict[str, Any], scenario: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (e["label"], e["server"]): e["median"]
        for e in results.get(scenario, [])
        if e["median"] is not None
    }


def _labels(results: dict[str, Any], scenario: str) -> list[str]:
    return list(dict.fromkeys(e["label"] for e in results.get(scenario, [])))


def _ratios(results: dict[str, Any], scenario: str, metrics: list[tuple[str, str]]) -> list[str]:
    med = _medians(results, scenario)
    compared = sorted({k[1] for k in med if k[1].startswith("trio-chat@")})
    others = [
        s
        for s in ("trio-chat-ws", "trio-chat+db", "baseline", "ngircd", *compared)
        if any(k[1] == s for k in med)
    ]
    if not others or not any(k[1] == "trio-chat" for k in med):
        return []
    head = (
        "| | "
        + " | ".join(f"{title}: trio-chat / {o}" for title, _ in metrics for o in others)
        + " |"
    )
    lines = [
        "",
        "Ratios (trio-chat divided by the other server's median):",
        "",
        head,
        "|---" * (1 + len(metrics) * len(others)) + "|",
    ]
    for label in _labels(results, scenario):
        mine = med.get((label, "trio-chat"))
        if mine is None:
            continue
        cells = [
            _ratio(mine.get(key), (med.get((label, o)) or {}).get(key))
            for _, key in metrics
            for o in others
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _ws_share(results: dict[str, Any], scenario: str) -> list[str]:
    """WebSocket fan-out as a share of TCP fan-out (the inverse of the ratio table's)."""
    med = _medians(results, scenario)
    lines = []
    for label in _labels(results, scenario):
        tcp, ws = med.get((label, "trio-chat")), med.get((label, "trio-chat-ws"))
        if tcp and ws and tcp["deliveries_per_s"]:
            share = ws["deliveries_per_s"] / tcp["deliveries_per_s"]
            cells = [
                _f(ws["deliveries_per_s"]),
                _f(tcp["deliveries_per_s"]),
                f"{share:.1%}",
                _f(ws.get("events_per_ws_message"), 1),
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if not lines:
        return []
    return [
        "",
        "WebSocket fan-out as a share of TCP fan-out (trio-chat-ws / trio-chat, deliveries/s):",
        "",
        "| | trio-chat-ws | trio-chat | ws / tcp | events per WebSocket message |",
        "|---|---|---|---|---|",
        *lines,
    ]


def _cpu_with_redis(m: dict[str, Any]) -> float | None:
    """The server's CPU per 1000 deliveries plus its redis-server's."""
    if m.get("cpu_s_per_1000") is None or m.get("broker_cpu_s_per_1000") is None:
        return None
    return float(m["cpu_s_per_1000"]) + float(m["broker_cpu_s_per_1000"])


def _broker_vs_one(results: dict[str, Any], scenario: str) -> list[str]:
    """The broker kinds beside one plain process (trio-chat) at each point: throughput and
    CPU per delivery as ratios (kind / trio-chat, the inverse of the ratio table's), CPU
    with and without the redis-server, and the median latency as a difference in ms."""
    med = _medians(results, scenario)
    kinds = [k for k in ("trio-chat-workers2", "trio-chat-broker1") if any(s == k for _, s in med)]
    lines = []
    for label in _labels(results, scenario):
        one = med.get((label, "trio-chat"))
        if one is None:
            continue
        for kind in kinds:
            m = med.get((label, kind))
            if m is None:
                continue
            p50 = None
            if m.get("p50_ms") is not None and one.get("p50_ms") is not None:
                p50 = f"{m['p50_ms'] - one['p50_ms']:+.2f}"
            cells = [
                _ratio(m["deliveries_per_s"], one["deliveries_per_s"]),
                _ratio(m["cpu_s_per_1000"], one["cpu_s_per_1000"]),
                _ratio(_cpu_with_redis(m), one["cpu_s_per_1000"]),
                p50 or "-",
                "-" if m.get("server_pids_steady", True) else "a worker exited meanwhile",
            ]
            lines.append(f"| {label} | {kind} | " + " | ".join(cells) + " |")
    if not lines:
        return []
    return [
        "",
        "Broker kinds against one plain process (kind / trio-chat; p50 as kind - trio-chat):",
        "",
        "| | kind | deliveries/s | CPU per delivery | CPU per delivery with redis "
        "| p50 ms added | note |",
        "|---|---|---|---|---|---|---|",
        *lines,
    ]


def _table(results: dict[str, Any], scenario: str, columns: list[tuple[str, Any]]) -> list[str]:
    lines = [
        "| point | server | " + " | ".join(c for c, _ in columns) + " |",
        "|---" * (2 + len(columns)) + "|",
    ]
    for entry in results.get(scenario, []):
        med = entry["median"]
        if med is None:
            errors = "; ".join(r.get("error", "") for r in entry["runs"]) or "not run"
            if not errors.startswith("skipped"):
                errors = "failed: " + errors
            lines.append(f"| {entry['label']} | {entry['server']} | {errors} |")
            continue
        cells = [fmt(med) for _, fmt in columns]
        lines.append(f"| {entry['label']} | {entry['server']} | " + " | ".join(cells) + " |")
    return lines


BROADCAST_COLUMNS: list[tuple[str, Any]] = [
    ("deliveries/s", lambda m: _f(m["deliveries_per_s"])),
    ("completeness", lambda m: _pct(m["completeness"])),
    ("p50 ms", lambda m: _f(m["p50_ms"], 1)),
    ("p99 ms", lambda m: _f(m["p99_ms"], 1)),
    ("max ms", lambda m: _f(m["max_ms"], 1)),
    ("server CPU-s / 1000 deliveries", lambda m: _f(m["cpu_s_per_1000"], 4)),
    ("server writes / delivery", lambda m: _f(m.get("writes_per_delivery"), 3)),
    ("server peak RSS MB", lambda m: _f(m["peak_rss_mb"], 1)),
    ("msgs sent", lambda m: _f(m["messages_sent"])),
    ("disconnects", lambda m: _f(m["disconnects"])),
]


#: For runs with a broker kind: its redis-server's share ("-" for the other servers).
BROKER_COLUMNS: list[tuple[str, Any]] = [
    ("redis CPU-s / 1000 deliveries", lambda m: _f(m.get("broker_cpu_s_per_1000"), 4)),
    ("redis peak RSS MB", lambda m: _f(m.get("broker_peak_rss_mb"), 1)),
]


def _has_broker(results: dict[str, Any], scenario: str) -> bool:
    return any(m.get("broker_cpu_s") is not None for m in _medians(results, scenario).values())


def _late(m: dict[str, Any]) -> str:
    """How late the sender process woke for its scheduled sends (not part of the latency)."""
    if m.get("sender_late_p99_ms") is None:
        return "-"
    return f"{_f(m['sender_late_p50_ms'], 2)} / {_f(m['sender_late_p99_ms'], 2)}"


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [
        "# trio-chat benchmark results",
        "",
        f"Run {meta['started']} on {meta['machine']}, Python {meta['python']}, "
        f"{'quick' if meta['quick'] else 'full'} run, {meta['repeats']} repeat(s) per point "
        f"(medians shown), {meta.get('seconds', '?')} s in all. "
        f"trio-chat: {meta.get('trio_chat', '?')}. "
        f"ngIRCd: {meta.get('ngircd') or 'not installed'}.",
        f"Options: `{meta['options']}`.",
    ]
    for server, reason in meta.get("skipped", {}).items():
        out.append(f"\nSkipped {server}: {reason}.")
    if "fanout" in results:
        out += [
            "",
            "## fanout: N receivers, "
            f"{meta['options']['senders']} senders at full speed "
            f"(window {meta['options']['window']} unacknowledged msgs each)",
            "",
        ]
        broker = BROKER_COLUMNS if _has_broker(results, "fanout") else []
        out += _table(results, "fanout", [*BROADCAST_COLUMNS, *broker])
        out += _ratios(
            results,
            "fanout",
            [
                ("deliveries/s", "deliveries_per_s"),
                ("CPU per delivery", "cpu_s_per_1000"),
                ("p99", "p99_ms"),
            ],
        )
        out += _ws_share(results, "fanout")
        out += _broker_vs_one(results, "fanout")
    if "steady" in results:
        out += ["", "## steady: fixed offered rate, latency", ""]
        cols = [
            ("offered deliveries/s", lambda m: _f(m["offered_per_s"])),
            *BROADCAST_COLUMNS,
            *(BROKER_COLUMNS if _has_broker(results, "steady") else []),
            ("generator late p50 / p99 ms", _late),
        ]
        out += _table(results, "steady", cols)
        out += _ratios(
            results,
            "steady",
            [("p50", "p50_ms"), ("p99", "p99_ms"), ("CPU per delivery", "cpu_s_per_1000")],
        )
        out += _broker_vs_one(results, "steady")
    if "idle" in results:
        out += ["", "## idle: logged-in connections that only read", ""]
        out += _table(
            results,
            "idle",
            [
                ("connected", lambda m: _f(m["synced"])),
                ("completeness", lambda m: _pct(m["completeness"])),
                ("log-in time s", lambda m: _f(m["login_seconds"], 1)),
                ("RSS before MB", lambda m: _f(m["rss_before_mb"], 1)),
                ("RSS after MB", lambda m: _f(m["rss_after_mb"], 1)),
                ("KiB per connection", lambda m: _f(m["kb_per_conn"], 1)),
                ("peak RSS MB", lambda m: _f(m["peak_rss_mb"], 1)),
                ("disconnects", lambda m: _f(m["disconnects"])),
                *(BROKER_COLUMNS[1:] if _has_broker(results, "idle") else []),
            ],
        )
        out += _ratios(
            results, "idle", [("KiB/conn", "kb_per_conn"), ("log-in time", "login_seconds")]
        )
    if "churn" in results:
        out += ["", "## churn: connect, log in, say one line, quit", ""]
        out += _table(
            results,
            "churn",
            [
                ("connections/s", lambda m: _f(m["conns_per_s"])),
                ("completeness", lambda m: _pct(m["completeness"])),
                ("server CPU ms / connection", lambda m: _f(m["cpu_ms_per_conn"], 3)),
                ("peak RSS MB", lambda m: _f(m["peak_rss_mb"], 1)),
                ("errors", lambda m: str(m.get("errors") or "-")),
                *(
                    [
                        (
                            "redis CPU ms / connection",
                            lambda m: _f(m.get("broker_cpu_ms_per_conn"), 3),
                        )
                    ]
                    if _has_broker(results, "churn")
                    else []
                ),
            ],
        )
        out += _ratios(
            results,
            "churn",
            [("connections/s", "conns_per_s"), ("CPU per connection", "cpu_ms_per_conn")],
        )
    out += _community_sections(results)
    out += _profile_section(results.get("community_profile"), "community")
    out += _profile_section(results.get("storm_profile"), "storm")
    prof = results.get("profile")
    if prof and prof.get("hot_spots"):
        out += [
            "",
            "## trio-chat profile (py-spy, fanout, self time)",
            "",
            "| share of samples | function |",
            "|---|---|",
        ]
        out += [f"| {share:.1f}% | `{name}` |" for name, share in prof["hot_spots"]]
    return "\n".join(out) + "\n"


COMMUNITY_COLUMNS: list[tuple[str, Any]] = [
    ("users (ws)", lambda m: f"{_f(m['connections'])} ({_f(m['ws_users'])})"),
    ("delivered / expected", lambda m: f"{_f(m['deliveries'])} / {_f(m['expected'])}"),
    ("missing", lambda m: _f(m["missing"])),
    ("deliveries/s", lambda m: _f(m["deliveries_per_s"])),
    ("p50 ms", lambda m: _f(m["p50_ms"], 2)),
    ("p99 ms", lambda m: _f(m["p99_ms"], 1)),
    ("p99.9 ms", lambda m: _f(m["p999_ms"], 1)),
    ("small rooms p99 / p99.9 ms", lambda m: f"{_f(m['small_p99_ms'], 1)} / "
     f"{_f(m['small_p999_ms'], 1)}"),
    ("server CPU µs / delivery", lambda m: _f(m["cpu_us_per_delivery"], 1)),
    ("KiB / connection idle, busy", lambda m: f"{_f(m['kib_per_conn_idle'], 1)}, "
     f"{_f(m['kib_per_conn_busy'], 1)}"),
    ("generator late p50 / p99 ms", _late),
    ("disconnects", lambda m: _f(m["disconnects"])),
]  # fmt: skip

STORM_COLUMNS: list[tuple[str, Any]] = [
    ("back", lambda m: f"{_f(m['back'])} / {_f(m['users'])}"),
    ("all back s", lambda m: _f(m["seconds"], 2)),
    ("logins/s", lambda m: _f(m["logins_per_s"])),
    ("per user p50 / p99 s", lambda m: f"{_f(m['user_p50_s'], 2)} / {_f(m['user_p99_s'], 2)}"),
    ("server CPU ms / login", lambda m: _f(m["cpu_ms_per_login"], 3)),
    ("KiB / connection", lambda m: _f(m["kib_per_conn"], 1)),
    ("wrong gaps", lambda m: _f(m["wrong_gaps"])),
    ("failures", lambda m: str(m.get("failures") or "-")),
]


def _small_rooms_with_big(results: dict[str, Any]) -> list[str]:
    """Small-room latency without and with the big room, per server (issue 19: a big
    room's fan-out must not add its whole time to other rooms' messages)."""
    med = _medians(results, "community")
    labels = _labels(results, "community")
    plain = [lb for lb in labels if "#big" not in lb]
    big = [lb for lb in labels if "#big" in lb]
    if not plain or not big:
        return []
    lines = [
        "",
        f"Small rooms' latency without and with the big room ({big[0].split(' + ')[1]}):",
        "",
        "| server | p50 ms without / with | p99 ms without / with | p99.9 ms without / with "
        "| big room's own p99 ms |",
        "|---|---|---|---|---|",
    ]
    for server in dict.fromkeys(k[1] for k in med):
        a, b = med.get((plain[0], server)), med.get((big[0], server))
        if not a or not b:
            continue
        cells = [
            f"{_f(a[f'small_{q}_ms'], 2)} / {_f(b[f'small_{q}_ms'], 2)}"
            for q in ("p50", "p99", "p999")
        ]
        cells.append(_f(b.get("big_p99_ms"), 1))
        lines.append(f"| {server} | " + " | ".join(cells) + " |")
    return lines


def _community_sections(results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    meta = results["meta"]
    if "community" in results:
        shape = meta.get("community", {}).get("shape", {})
        out += [
            "",
            "## community: many Zipf-sized rooms, Zipf-active senders, open loop",
            "",
            f"Shape: `{shape}`. Latency from each message's *scheduled* send time, over every "
            "delivery; CPU over the sending and the drain; KiB per connection: (RSS after "
            "the joins, and at the end of the load) - RSS before, / connections.",
            "",
        ]
        out += _table(results, "community", COMMUNITY_COLUMNS)
        out += _ratios(
            results,
            "community",
            [
                ("p99", "p99_ms"),
                ("p99.9", "p999_ms"),
                ("CPU per delivery", "cpu_us_per_delivery"),
                ("KiB/conn busy", "kib_per_conn_busy"),
            ],
        )
        out += _small_rooms_with_big(results)
    if "storm" in results:
        out += [
            "",
            "## storm: everyone logging back in after a restart (SQLite)",
            "",
            f"Options: `{meta.get('storm')}`.",
            "",
        ]
        out += _table(results, "storm", STORM_COLUMNS)
        out += _ratios(
            results,
            "storm",
            [("all back s", "seconds"), ("CPU per login", "cpu_ms_per_login")],
        )
    return out


def _profile_section(prof: dict[str, Any] | None, scenario: str) -> list[str]:
    """py-spy's hot spots and strace's syscall counts of a profiled run, if any."""
    if not prof or not (prof.get("hot_spots") or prof.get("syscalls")):
        return []
    out = [
        "",
        f"## trio-chat profile (py-spy, {scenario}, self time)",
        "",
        "| share of samples | function |",
        "|---|---|",
    ]
    out += [f"| {share:.1f}% | `{name}` |" for name, share in prof.get("hot_spots", [])]
    if prof.get("syscalls"):
        seconds = prof.get("strace_seconds", prof.get("seconds"))
        per = prof.get("syscalls_per_delivery", {})
        out += [
            "",
            f"Syscalls (strace -c -f, {seconds} s of the {scenario} run"
            + ("; per delivery at the run's delivery rate" if per else "")
            + "):",
            "",
            "| syscall | calls |" + (" per delivery |" if per else ""),
            "|---|---|" + ("---|" if per else ""),
        ]
        out += [
            f"| {name} | {count:,} |" + (f" {per.get(name, 0):.2f} |" if per else "")
            for name, count in prof["syscalls"].items()
        ]
    return out


def strace_summary(path: Path, top: int = 12) -> dict[str, int]:
    """Calls per syscall from an ``strace -c`` summary table, the most called first."""
    calls: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        if len(parts) >= 5 and parts[0].replace(".", "", 1).isdigit() and parts[3].isdigit():
            calls[parts[-1]] = int(parts[3])
    return dict(sorted(calls.items(), key=lambda kv: -kv[1])[:top])


def hot_spots(raw_path: Path, top: int = 15) -> list[tuple[str, float]]:
    """Self-time shares of the leaf functions in a py-spy ``--format raw`` (collapsed) file."""
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        # "func (path/file.py:123)" -> "func (file.py)": group by function, not line.
        name, _, where = leaf.partition(" (")
        where = where.rstrip(")").rsplit(":", 1)[0].rsplit("/", 1)[-1]
        leaves[f"{name} ({where})" if where else name] += int(count)
        total += int(count)
    return [(name, 100 * c / total) for name, c in leaves.most_common(top)] if total else []


def plot_fanout(results: dict[str, Any], path: Path) -> bool:
    """Deliveries/s and p99 latency against N for each server; False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    entries = [e for e in results.get("fanout", []) if e["median"] is not None]
    if not entries:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server in dict.fromkeys(e["server"] for e in entries):
        rows = sorted((e["median"]["n"], e["median"]) for e in entries if e["server"] == server)
        ns = [n for n, _ in rows]
        left.plot(ns, [m["deliveries_per_s"] for _, m in rows], marker="o", label=server)
        right.plot(ns, [m["p99_ms"] or 0 for _, m in rows], marker="o", label=server)
    left.set(
        xscale="log",
        yscale="log",
        xlabel="receivers N",
        ylabel="deliveries / s (median)",
        title="fanout throughput",
    )
    right.set(
        xscale="log",
        yscale="log",
        xlabel="receivers N",
        ylabel="p99 latency, ms",
        title="fanout p99 latency (probe receivers)",
    )
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"4 senders at full speed, 127.0.0.1, {results['meta']['machine']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
