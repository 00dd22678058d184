"""Prometheus text exposition (0.0.4): exact output, escaping, histogram buckets."""

from __future__ import annotations

import re

import pytest
import trio

from trio_chat.metrics import (
    CONTENT_TYPE,
    Counter,
    Gauge,
    Histogram,
    Metrics,
    Registry,
    serve_metrics,
)

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


# ---------------------------------------------------------------------------- exact output


def test_render_exact_text() -> None:
    registry = Registry()
    hits = registry.counter("hits_total", "Requests served.")
    temperature = registry.gauge("temperature", "Degrees.")
    by_code = registry.family("errors_total", "Errors, by code.", ("code", "where"), Counter)
    latency = registry.histogram("latency_seconds", "Latency.", buckets=(0.1, 1.0))
    hits.inc()
    hits.inc(2)
    temperature.set(21.5)
    temperature.dec(0.5)
    by_code.labels("bad_json", "tcp").inc()
    by_code.labels("bad_field", "ws").inc(3)
    latency.observe(0.05)
    latency.observe(0.5)
    latency.observe(7.0)
    assert registry.render() == (
        "# HELP hits_total Requests served.\n"
        "# TYPE hits_total counter\n"
        "hits_total 3\n"
        "# HELP temperature Degrees.\n"
        "# TYPE temperature gauge\n"
        "temperature 21.0\n"
        "# HELP errors_total Errors, by code.\n"
        "# TYPE errors_total counter\n"
        'errors_total{code="bad_field",where="ws"} 3\n'
        'errors_total{code="bad_json",where="tcp"} 1\n'
        "# HELP latency_seconds Latency.\n"
        "# TYPE latency_seconds histogram\n"
        'latency_seconds_bucket{le="0.1"} 1\n'
        'latency_seconds_bucket{le="1.0"} 2\n'
        'latency_seconds_bucket{le="+Inf"} 3\n'
        "latency_seconds_sum 7.55\n"
        "latency_seconds_count 3\n"
    )


def test_labelled_histogram_puts_le_last() -> None:
    registry = Registry()
    family = registry.family("h", "H.", ("room",), lambda: Histogram((1.0,)))
    family.labels("#a").observe(2.0)
    assert registry.render().splitlines()[2:] == [
        'h_bucket{room="#a",le="1.0"} 0',
        'h_bucket{room="#a",le="+Inf"} 1',
        'h_sum{room="#a"} 2.0',
        'h_count{room="#a"} 1',
    ]


def test_empty_family_has_help_and_type_only() -> None:
    registry = Registry()
    registry.family("x_total", "X.", ("reason",), Counter)
    assert registry.render() == "# HELP x_total X.\n# TYPE x_total counter\n"
    assert Registry().render() == ""


def test_content_type_is_version_0_0_4() -> None:
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


# -------------------------------------------------------------------------------- escaping


def test_label_values_are_escaped() -> None:
    registry = Registry()
    family = registry.family("x_total", "X.", ("reason",), Counter)
    nasty = 'back\\slash "quoted"\nnext line'
    family.labels(nasty).inc()
    assert registry.render().splitlines()[-1] == (
        'x_total{reason="back\\\\slash \\"quoted\\"\\nnext line"} 1'
    )
    _, samples = parse(registry.render())
    assert samples == {("x_total", (("reason", nasty),)): 1.0}


def test_help_text_is_escaped() -> None:
    registry = Registry()
    registry.counter("x_total", 'a \\ b\nc "d"')
    assert registry.render().splitlines()[0] == '# HELP x_total a \\\\ b\\nc "d"'


# ------------------------------------------------------------------------------ histograms


def test_histogram_buckets_are_cumulative_and_inf_is_the_count() -> None:
    registry = Registry()
    histogram = registry.histogram("h_seconds", "H.", buckets=(0.001, 0.01, 0.1))
    values = [0.0, 0.001, 0.0010001, 0.005, 0.01, 0.05, 0.1, 0.2, 3.0]
    for value in values:
        histogram.observe(value)
    _, samples = parse(registry.render())
    buckets = {labels[0][1]: count for (name, labels), count in samples.items() if "bucket" in name}
    # "le" means less than or equal: a value on a bound is in that bound's bucket.
    assert buckets == {"0.001": 2, "0.01": 5, "0.1": 7, "+Inf": 9}
    assert samples[("h_seconds_count", ())] == len(values) == buckets["+Inf"]
    assert samples[("h_seconds_sum", ())] == pytest.approx(sum(values))


def test_histogram_bounds_must_increase() -> None:
    with pytest.raises(ValueError, match="increase"):
        Histogram((0.1, 0.1))
    with pytest.raises(ValueError, match="increase"):
        Histogram((1.0, 0.5))
    assert Histogram((0.5, float("inf"))).bounds == (0.5,)  # +Inf is always there


def test_timer_observes_elapsed_seconds() -> None:
    histogram = Histogram()
    with histogram.time():
        pass
    assert histogram.count == 1
    assert 0 <= histogram.sum < 1


# ---------------------------------------------------------------------------- registration


def test_labels_are_cached_and_counted() -> None:
    registry = Registry()
    family = registry.family("g", "G.", ("transport",), Gauge)
    assert family.labels("tcp") is family.labels("tcp")
    with pytest.raises(ValueError, match="labels"):
        family.labels("tcp", "extra")


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("1bad", ()),
        ("bad-name", ()),
        ("ok", ("bad-label",)),
        ("ok", ("__reserved",)),
        ("ok", ("a", "a")),
    ],
)
def test_bad_names_are_refused(name: str, labels: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        Registry().family(name, "X.", labels, Counter)


def test_le_is_reserved_for_histograms_and_names_are_unique() -> None:
    registry = Registry()
    with pytest.raises(ValueError):
        registry.family("h", "H.", ("le",), Histogram)
    registry.family("c_total", "C.", ("le",), Counter)  # fine on a counter
    with pytest.raises(ValueError, match="already"):
        registry.counter("c_total", "again")


# ------------------------------------------------------------------------ the trio-chat set


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
    assert types == {
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


def test_each_server_has_its_own_metrics() -> None:
    first, second = Metrics(), Metrics()
    first.connections_total.inc()
    assert second.connections_total.value == 0


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
    assert body.decode() == metrics.render()
    _, samples = parse(body.decode())
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
        assert 'trio_chat_connections{transport="tcp-json"} 2' in text
        assert "trio_chat_messages_in_total 1" in text
        assert 'trio_chat_frames_rejected_total{code="bad_json"} 1' in text
        assert "trio_chat_fanout_seconds_count" in text
