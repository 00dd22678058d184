"""/metrics: our metrics in the Prometheus text format (0.0.4) through prometheus-client,
with its process and GC metrics, served over HTTP."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

import pytest
import trio
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric

from trio_chat.metrics import CONTENT_TYPE, LATENCY_BUCKETS, Metrics
from trio_chat.store import StoreStats
from trio_chat.transports.scrape import serve_metrics

# A small parser for the text format, as a scraper reads it.
SAMPLE = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)\Z")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|\Z)')
ESCAPE = re.compile(r"\\([\\\"n])")

Labels = tuple[tuple[str, str], ...]


def unescape(text: str) -> str:
    return ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def parse_labels(text: str | None) -> Labels:
    labels: list[tuple[str, str]] = []
    pos = 0
    while text and pos < len(text):
        match = LABEL.match(text, pos)
        assert match is not None, f"bad labels {text!r} at {pos}"
        labels.append((match.group(1), unescape(match.group(2))))
        pos = match.end()
    return tuple(labels)


def parse(text: str) -> tuple[dict[str, str], dict[tuple[str, Labels], float]]:
    """Types by metric name, and sample values by (sample name, labels). Checks the layout."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: dict[tuple[str, Labels], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in helps
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helps and name not in types  # HELP, then TYPE, then samples
            types[name] = kind
        else:
            match = SAMPLE.match(line)
            assert match is not None, line
            name = match.group("name")
            family = re.sub(r"_(bucket|sum|count)\Z", "", name)
            assert name in types or (family in types and types[family] == "histogram"), line
            key = (name, parse_labels(match.group("labels")))
            assert key not in samples, line
            samples[key] = float(match.group("value"))
    return types, samples


# ------------------------------------------------------------------------ the trio-chat set

#: Every metric of ours, by its type: names, types and help texts are what Prometheus
#: dashboards and alerts are written against, so they only ever change on purpose.
OUR_TYPES = {
    "trio_chat_connections": "gauge",
    "trio_chat_parked_connections": "gauge",
    "trio_chat_connections_total": "counter",
    "trio_chat_messages_in_total": "counter",
    "trio_chat_messages_out_total": "counter",
    "trio_chat_queue_drops_total": "counter",
    "trio_chat_disconnects_total": "counter",
    "trio_chat_fanout_seconds": "histogram",
    "trio_chat_frames_rejected_total": "counter",
    "trio_chat_tls_cert_not_after_seconds": "gauge",
    "trio_chat_store_healthy": "gauge",
    "trio_chat_store_write_failures_total": "counter",
    "trio_chat_messages_not_saved_total": "counter",
    "trio_chat_store_checkpoint_failures_total": "counter",
    "trio_chat_store_wal_frames": "gauge",
}


def ours(types: dict[str, str]) -> dict[str, str]:
    return {name: kind for name, kind in types.items() if name.startswith("trio_chat_")}


def test_trio_chat_metrics_render_and_parse() -> None:
    metrics = Metrics()
    metrics.connections.labels("websocket").inc()
    metrics.connections.labels("tcp-json").inc()
    metrics.connections.labels("tcp-json").dec()
    metrics.connections_total.inc()
    metrics.connections_total.inc()
    metrics.messages_in_total.inc()
    metrics.messages_out_total.inc(3)
    metrics.queue_drops_total.inc()
    metrics.disconnects_total.labels("slow_consumer").inc()
    metrics.frames_rejected_total.labels("bad_json").inc()
    metrics.fanout_seconds.observe(0.0002)
    types, samples = parse(metrics.render())
    assert ours(types) == OUR_TYPES
    assert samples[("trio_chat_connections", (("transport", "websocket"),))] == 1
    assert samples[("trio_chat_connections", (("transport", "tcp-json"),))] == 0
    assert samples[("trio_chat_connections", (("transport", "tcp-text"),))] == 0  # pre-made
    assert samples[("trio_chat_connections_total", ())] == 2
    assert samples[("trio_chat_messages_out_total", ())] == 3
    assert samples[("trio_chat_disconnects_total", (("reason", "slow_consumer"),))] == 1
    assert samples[("trio_chat_frames_rejected_total", (("code", "bad_json"),))] == 1
    assert samples[("trio_chat_fanout_seconds_bucket", (("le", "0.00025"),))] == 1
    assert samples[("trio_chat_fanout_seconds_bucket", (("le", "0.0001"),))] == 0
    assert samples[("trio_chat_fanout_seconds_bucket", (("le", "+Inf"),))] == 1
    assert samples[("trio_chat_fanout_seconds_count", ())] == 1


def test_help_texts_are_kept() -> None:
    """A few help lines, exactly (escaping included: one has an apostrophe)."""
    lines = Metrics().render().splitlines()
    for line in (
        "# HELP trio_chat_connections Chat connections open now, by transport.",
        "# HELP trio_chat_connections_total Chat connections accepted since the server started.",
        "# HELP trio_chat_fanout_seconds Seconds taken to queue one room event for every member.",
        "# HELP trio_chat_tls_cert_not_after_seconds Unix time at which the server's TLS "
        "certificate expires (0 without TLS).",
    ):
        assert line in lines


def test_process_and_gc_metrics_come_with_ours() -> None:
    types, samples = parse(Metrics().render())
    assert types["process_resident_memory_bytes"] == "gauge"
    assert types["process_cpu_seconds_total"] == "counter"
    assert types["process_open_fds"] == "gauge"
    assert types["process_start_time_seconds"] == "gauge"
    assert types["python_gc_collections_total"] == "counter"
    assert samples[("process_resident_memory_bytes", ())] > 0
    assert samples[("process_open_fds", ())] >= 3


def test_no_created_series_and_the_library_default_is_untouched() -> None:
    """prometheus-client's ``_created`` samples are left out of our text only: turning
    them off with ``disable_created_metrics()`` would do it for the whole process."""
    metrics = Metrics()
    metrics.connections_total.inc()
    metrics.queue_drops_total.inc()  # (a library counter: the connections' are plain)
    metrics.disconnects_total.labels("quit").inc()
    metrics.fanout_seconds.observe(0.1)
    text = metrics.render()
    assert "_created" not in text
    if "PROMETHEUS_DISABLE_CREATED_SERIES" not in os.environ:  # the library's own switch
        assert metrics.registry.get_sample_value("trio_chat_queue_drops_created") is not None
    assert "trio_chat_connections_total 1.0\n" in text
    assert "trio_chat_queue_drops_total 1.0\n" in text


def test_histogram_buckets_are_cumulative_and_inf_is_the_count() -> None:
    metrics = Metrics()
    values = [0.0, 0.0001, 0.00010001, 0.0003, 0.001, 0.05, 1.0, 3.0]
    for value in values:
        metrics.fanout_seconds.observe(value)
    _, samples = parse(metrics.render())
    buckets = {
        labels[0][1]: count
        for (name, labels), count in samples.items()
        if name == "trio_chat_fanout_seconds_bucket"
    }
    # "le" means less than or equal: a value on a bound is in that bound's bucket.
    assert buckets["0.0001"] == 2
    assert buckets["0.00025"] == 3
    assert buckets["0.0005"] == 4
    assert buckets["0.001"] == 5
    assert buckets["0.05"] == 6
    assert buckets["1.0"] == 7
    assert buckets["+Inf"] == len(values)
    assert samples[("trio_chat_fanout_seconds_count", ())] == len(values)
    assert samples[("trio_chat_fanout_seconds_sum", ())] == pytest.approx(sum(values))
    assert list(buckets) == [*(format(b, "") for b in LATENCY_BUCKETS), "+Inf"]


def test_the_store_is_read_when_scraped() -> None:
    """Without a database the store's metrics have help and type but no sample; with one,
    each scrape reads its current stats."""
    metrics = Metrics()
    types, samples = parse(metrics.render())
    assert types["trio_chat_store_healthy"] == "gauge"
    assert not [key for key in samples if key[0].startswith("trio_chat_store_")]

    stats = StoreStats()
    metrics.watch_store(lambda: stats)
    stats.healthy, stats.write_failures, stats.checkpoint_failures = False, 4, 2
    stats.wal_frames = 17
    _, samples = parse(metrics.render())
    assert samples[("trio_chat_store_healthy", ())] == 0
    assert samples[("trio_chat_store_write_failures_total", ())] == 4
    assert samples[("trio_chat_store_checkpoint_failures_total", ())] == 2
    assert samples[("trio_chat_store_wal_frames", ())] == 17
    stats.healthy = True
    assert metrics.value("trio_chat_store_healthy") == 1


def test_each_server_has_its_own_metrics() -> None:
    first, second = Metrics(), Metrics()  # the same names twice: no clash
    first.connections_total.inc()
    assert first.value("trio_chat_connections_total") == 1
    assert second.value("trio_chat_connections_total") == 0
    assert "trio_chat" not in generate_latest(REGISTRY).decode()  # not the library's global
    with pytest.raises(KeyError):
        first.value("trio_chat_disconnects_total", reason="never")


def test_content_type_is_version_0_0_4() -> None:
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


# ------------------------------------------------------------------------------- scraping


async def scrape(port: int, request: bytes) -> bytes:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request)
            response = b""
            while chunk := await stream.receive_some(65536):
                response += chunk
    return response


async def test_serve_metrics_answers_get_metrics(nursery: trio.Nursery) -> None:
    metrics = Metrics()
    metrics.connections_total.inc()
    addresses = await nursery.start(serve_metrics, metrics.render, "127.0.0.1", 0)
    assert len(addresses) == 1 and addresses[0].startswith("http://127.0.0.1:")
    assert addresses[0].endswith("/metrics")
    port = int(addresses[0].rsplit(":", 1)[1].split("/")[0])

    response = await scrape(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"Content-Type: {CONTENT_TYPE}".encode() in head
    assert f"Content-Length: {len(body)}".encode() in head
    types, samples = parse(body.decode())
    assert ours(types) == OUR_TYPES
    assert samples[("trio_chat_connections_total", ())] == 1

    head_only = await scrape(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert head_only.startswith(b"HTTP/1.1 200 OK") and head_only.endswith(b"\r\n\r\n")
    assert (await scrape(port, b"GET / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
    assert (await scrape(port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
    assert (await scrape(port, b"nonsense\r\n\r\n")).startswith(b"HTTP/1.1 400")


async def test_a_silent_scraper_is_dropped(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    addresses = await nursery.start(serve_metrics, Metrics().render, "127.0.0.1", 0)
    port = int(addresses[0].rsplit(":", 1)[1].split("/")[0])
    with trio.fail_after(60):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            response = await stream.receive_some(65536)  # we never sent anything
    assert response.startswith(b"HTTP/1.1 400")


async def test_a_running_server_counts_what_happens() -> None:
    from trio_chat.testing import local_config, open_client, open_test_server

    async def scrape(host: str, port: int) -> str:
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(65536):
                    data += chunk
        return data.decode()

    async with open_test_server(config=local_config(metrics_port=0)) as chat:
        metrics = next(a for a in chat.addresses if "/metrics" in a or a.startswith("http"))
        host, port = metrics.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
        async with open_client(chat, "alice") as alice, open_client(chat, "bob") as bob:
            await alice.say("counted")
            await bob.expect("message")
            await alice.send_raw(b"{broken")
            await alice.expect("error")
            text = await scrape(host, int(port))
        head, _, body = text.partition("\r\n\r\n")
        assert head.startswith("HTTP/1.1 200 OK\r\n")
        types, samples = parse(body)
        assert samples[("trio_chat_connections", (("transport", "tcp-json"),))] == 2
        assert samples[("trio_chat_messages_in_total", ())] == 1
        assert samples[("trio_chat_frames_rejected_total", (("code", "bad_json"),))] == 1
        assert samples[("trio_chat_fanout_seconds_count", ())] >= 1
        assert samples[("trio_chat_store_healthy", ())] == 1  # the test server has a database
        # The library's process metrics, of this very process (the server runs in it).
        assert types["process_resident_memory_bytes"] == "gauge"
        assert samples[("process_resident_memory_bytes", ())] > 0
        assert samples[("process_open_fds", ())] >= 4  # at least the three sockets here
        assert ("python_gc_collections_total", (("generation", "0"),)) in samples


def test_children_are_kept_by_label_value() -> None:
    """``connections_by`` and ``disconnects_by`` hold the children ``labels`` hands out,
    one per value, made the first time it is asked for: what a connection updates costs a
    dict lookup."""
    metrics = Metrics()
    for _ in range(3):
        metrics.disconnects_by["quit"].inc()
    metrics.disconnects_by["flooding"].inc()
    assert list(metrics.disconnects_by) == ["quit", "flooding"]
    assert metrics.disconnects_by["quit"] is metrics.disconnects_total.labels("quit")
    assert metrics.connections_by["tcp-json"] is metrics.connections.labels("tcp-json")
    assert list(metrics.connections_by) == ["tcp-json", "tcp-text", "websocket"]  # pre-made
    metrics.connections_by["websocket"].inc()
    _, samples = parse(metrics.render())
    assert samples[("trio_chat_disconnects_total", (("reason", "quit"),))] == 3
    assert samples[("trio_chat_disconnects_total", (("reason", "flooding"),))] == 1
    assert samples[("trio_chat_connections", (("transport", "websocket"),))] == 1
    assert metrics.value("trio_chat_disconnects_total", reason="quit") == 3


def ours_in_text(text: str, names: set[str]) -> list[str]:
    """The lines of ``text`` about the metrics named (HELP, TYPE and samples)."""
    kept = []
    for line in text.splitlines():
        name = line.split(" ")[2] if line.startswith("# ") else re.split(r"[{ ]", line)[0]
        if name in names:
            kept.append(line)
    return kept


def test_a_connections_counts_are_exposed_as_the_librarys() -> None:
    """The connections gauge, the parked gauge, the total and the disconnects are plain
    numbers (what every connection updates), exposed byte for byte as the library's
    ``Gauge`` and ``Counter`` of the same names, labels and updates would be: before any
    update and after a few, a counter's label asked for without an update included."""
    reference = CollectorRegistry()
    connections = Gauge(
        "trio_chat_connections",
        "Chat connections open now, by transport.",
        ("transport",),
        registry=None,
    )
    reference.register(_Only(connections))  # (beside the total: as Metrics does)
    parked = Gauge(
        "trio_chat_parked_connections",
        "Idle connections parked: held without tasks until they have something to do.",
        registry=reference,
    )
    total = Counter(
        "trio_chat_connections_total",
        "Chat connections accepted since the server started.",
        registry=reference,
    )
    disconnects = Counter(
        "trio_chat_disconnects_total",
        "Connections ended, by reason code.",
        ("reason",),
        registry=reference,
    )
    for transport in ("tcp-json", "tcp-text", "websocket"):
        connections.labels(transport)
    names = {
        "trio_chat_connections",
        "trio_chat_parked_connections",
        "trio_chat_connections_total",
        "trio_chat_disconnects_total",
    }

    def library_text() -> list[str]:
        return ours_in_text(generate_latest(reference).decode(), names)

    metrics = Metrics()
    assert ours_in_text(metrics.render(), names) == library_text()
    assert len(library_text()) == 2 * 4 + 3 + 1 + 1  # (HELP and TYPE each, the samples)
    for _ in range(3):
        metrics.connections_by["websocket"].inc()
        connections.labels("websocket").inc()
    metrics.connections_by["tcp-json"].inc()
    metrics.connections_by["tcp-json"].dec()
    connections.labels("tcp-json").inc()
    connections.labels("tcp-json").dec()
    metrics.connections_by["websocket"].dec()
    connections.labels("websocket").dec()
    metrics.parked.inc()
    metrics.parked.inc()
    metrics.parked.dec()
    parked.inc()
    parked.inc()
    parked.dec()
    metrics.connections_total.inc()
    metrics.connections_total.inc()
    total.inc()
    total.inc()
    metrics.disconnects_by["quit"].inc()
    metrics.disconnects_by["closed"].inc(2)
    metrics.disconnects_total.labels("flooding")
    disconnects.labels("quit").inc()
    disconnects.labels("closed").inc(2)
    disconnects.labels("flooding")
    text = metrics.render()
    assert ours_in_text(text, names) == library_text()
    assert 'trio_chat_connections{transport="websocket"} 2.0' in text
    assert 'trio_chat_disconnects_total{reason="flooding"} 0.0' in text
    assert "trio_chat_parked_connections 1.0" in text


class _Only:
    """One metric, registered without the registry's name check (it has no
    ``describe``): a gauge beside a counter of its name and ``_total``, as in Metrics."""

    def __init__(self, metric: Gauge) -> None:
        self._metric = metric

    def collect(self) -> Iterable[Metric]:
        return self._metric.collect()
