"""Counters for Prometheus, in its text exposition format (version 0.0.4), with no dependency.

Updating a metric is meant for the hot path: :meth:`Counter.inc` is one attribute addition,
:meth:`Family.labels` one dict lookup (keep the child when the label is known in advance),
:meth:`Histogram.observe` a binary search over a dozen bounds. Nothing is locked: trio runs
one task at a time. The text is only built when scraped, by :meth:`Registry.render`.

A :class:`Metrics` belongs to one server (no module globals), so tests build their own::

    metrics = Metrics()
    metrics.connections.labels("websocket").inc()
    metrics.disconnects_total.labels("slow_consumer").inc()
    with metrics.fanout_seconds.time():
        ...
    body = metrics.render()  # serve with Content-Type: CONTENT_TYPE

:func:`serve_metrics` answers Prometheus's ``GET /metrics`` on a port of its own, so the
chat ports never show them.

Label values should come from small fixed sets (transport names, error codes): each distinct
value is a time series kept forever. Never label with nicks, rooms or free-text reasons.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import ClassVar, Generic, TypeVar

import trio

from .transports.streams import open_listeners

log = logging.getLogger("trio_chat.metrics")

#: The ``Content-Type`` of :meth:`Registry.render`'s text.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Upper bounds, in seconds, for latencies from 100 µs to 1 s (``+Inf`` is always added).
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


class Counter:
    """A count that only goes up. ``inc`` does not check the amount: pass one >= 0."""

    __slots__ = ("value",)
    kind: ClassVar[str] = "counter"

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def samples(self, name: str, labels: str) -> Iterator[str]:
        yield f"{name}{_braces(labels)} {format_number(self.value)}"


class Gauge:
    """A value that goes up and down (open connections)."""

    __slots__ = ("value",)
    kind: ClassVar[str] = "gauge"

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value

    def samples(self, name: str, labels: str) -> Iterator[str]:
        yield f"{name}{_braces(labels)} {format_number(self.value)}"


class Histogram:
    """Observations counted in buckets by upper bound, with their sum and count.

    Each observation is counted once, in the first bucket that holds it; the exposition's
    cumulative ``_bucket{le=...}`` counts are added up when rendering.
    """

    __slots__ = ("bounds", "count", "counts", "sum")
    kind: ClassVar[str] = "histogram"

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        bounds = [float(b) for b in buckets if b != math.inf]
        if any(math.isnan(b) for b in bounds) or any(a >= b for a, b in itertools.pairwise(bounds)):
            raise ValueError(f"histogram buckets must increase strictly: {list(buckets)}")
        self.bounds: tuple[float, ...] = tuple(bounds)
        self.counts: list[int] = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum: float = 0.0
        self.count: int = 0

    def observe(self, value: float) -> None:
        # bisect_left finds the first bound >= value: Prometheus buckets are "less or equal".
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def time(self) -> Timer:
        """``with histogram.time(): ...`` observes the seconds the block took."""
        return Timer(self)

    def samples(self, name: str, labels: str) -> Iterator[str]:
        prefix = labels + "," if labels else ""
        cumulative = 0
        for bound, count in zip(self.bounds, self.counts[:-1], strict=True):
            cumulative += count
            yield f'{name}_bucket{{{prefix}le="{format_number(bound)}"}} {cumulative}'
        cumulative += self.counts[-1]
        yield f'{name}_bucket{{{prefix}le="+Inf"}} {cumulative}'
        yield f"{name}_sum{_braces(labels)} {format_number(self.sum)}"
        yield f"{name}_count{_braces(labels)} {self.count}"


class Timer:
    """Context manager observing elapsed ``time.perf_counter`` seconds into a histogram."""

    __slots__ = ("_histogram", "_start")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._start = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._histogram.observe(time.perf_counter() - self._start)


M = TypeVar("M", Counter, Gauge, Histogram)


class Family(Generic[M]):
    """One metric name with labels: a child metric per combination of label values."""

    __slots__ = ("_children", "_factory", "help", "kind", "labelnames", "name")

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str], factory: Callable[[], M]
    ) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._factory: Callable[[], M] = factory
        self._children: dict[tuple[str, ...], M] = {}
        self.kind = factory().kind

    def labels(self, *values: str) -> M:
        """The child for these label values (in ``labelnames`` order), made on first use."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} has labels {self.labelnames}, got values {values!r}")
            child = self._children[values] = self._factory()
        return child

    def render(self) -> Iterator[str]:
        yield f"# HELP {self.name} {escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        for values in sorted(self._children):
            labels = ",".join(
                f'{label}="{escape_label_value(value)}"'
                for label, value in zip(self.labelnames, values, strict=True)
            )
            yield from self._children[values].samples(self.name, labels)


class Registry:
    """Metrics by name, rendered together in the order they were made."""

    def __init__(self) -> None:
        self._families: dict[str, Family[Counter] | Family[Gauge] | Family[Histogram]] = {}

    def counter(self, name: str, help: str) -> Counter:
        return self.family(name, help, (), Counter).labels()

    def gauge(self, name: str, help: str) -> Gauge:
        return self.family(name, help, (), Gauge).labels()

    def histogram(
        self, name: str, help: str, buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> Histogram:
        return self.family(name, help, (), lambda: Histogram(buckets)).labels()

    def family(
        self, name: str, help: str, labelnames: Sequence[str], factory: Callable[[], M]
    ) -> Family[M]:
        """A labelled metric, e.g. ``family("x_total", "...", ("reason",), Counter)``.

        For histograms pass a factory such as ``lambda: Histogram(buckets)``.
        """
        if not _METRIC_NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        if name in self._families:
            raise ValueError(f"metric {name!r} is already registered")
        family = Family(name, help, labelnames, factory)
        reserved = {"le"} if family.kind == "histogram" else set()
        for label in family.labelnames:
            if not _LABEL_NAME.match(label) or label.startswith("__") or label in reserved:
                raise ValueError(f"invalid label name {label!r} for {name}")
        if len(set(family.labelnames)) != len(family.labelnames):
            raise ValueError(f"repeated label name in {family.labelnames} for {name}")
        self._families[name] = family
        return family

    def render(self) -> str:
        """Every metric in the text exposition format, ending with a newline."""
        lines: list[str] = []
        for family in self._families.values():
            lines.extend(family.render())
        return "\n".join(lines) + "\n" if lines else ""


#: Transports whose connection gauges are shown (as 0) before anyone connects.
TRANSPORTS = ("tcp-json", "tcp-text", "websocket")


class Metrics:
    """What trio-chat counts. One per server; :meth:`render` answers a scrape."""

    def __init__(self) -> None:
        self.registry = r = Registry()
        self.connections: Family[Gauge] = r.family(
            "trio_chat_connections",
            "Chat connections open now, by transport.",
            ("transport",),
            Gauge,
        )
        for transport in TRANSPORTS:
            self.connections.labels(transport)
        self.parked: Gauge = r.gauge(
            "trio_chat_parked_connections",
            "Idle connections parked: held without tasks until they have something to do.",
        )
        self.connections_total: Counter = r.counter(
            "trio_chat_connections_total", "Chat connections accepted since the server started."
        )
        self.messages_in_total: Counter = r.counter(
            "trio_chat_messages_in_total", "Frames received from logged-in clients."
        )
        self.messages_out_total: Counter = r.counter(
            "trio_chat_messages_out_total",
            "Events queued for delivery to sessions (one per receiver).",
        )
        self.queue_drops_total: Counter = r.counter(
            "trio_chat_queue_drops_total",
            "Sessions disconnected because their send queue was full (slow consumers).",
        )
        self.disconnects_total: Family[Counter] = r.family(
            "trio_chat_disconnects_total",
            "Connections ended, by reason code.",
            ("reason",),
            Counter,
        )
        self.fanout_seconds: Histogram = r.histogram(
            "trio_chat_fanout_seconds",
            "Seconds taken to queue one room event for every member.",
        )
        self.frames_rejected_total: Family[Counter] = r.family(
            "trio_chat_frames_rejected_total",
            "Client frames refused as malformed, by error code.",
            ("code",),
            Counter,
        )
        # The store's: families without labels whose one sample exists only once a
        # database is attached (a server without one shows no store samples at all).
        self.store_healthy: Family[Gauge] = r.family(
            "trio_chat_store_healthy",
            "1 while the database takes writes; 0 after a write failed for the database's "
            "sake (disk full, I/O error, locked), until a write succeeds again.",
            (),
            Gauge,
        )
        self.store_write_failures_total: Family[Counter] = r.family(
            "trio_chat_store_write_failures_total",
            "Writes the database refused, counted per message and per other write (id "
            "reservation, account); a message retried alone after its batch failed counts "
            "twice.",
            (),
            Counter,
        )
        self.messages_not_saved_total: Counter = r.counter(
            "trio_chat_messages_not_saved_total",
            "Chat lines and private messages refused with not_saved (the database could "
            "not store them), each counted once.",
        )
        self.store_checkpoint_failures_total: Family[Counter] = r.family(
            "trio_chat_store_checkpoint_failures_total",
            "WAL checkpoints that failed (the write-ahead log then keeps growing).",
            (),
            Counter,
        )
        self.store_wal_frames: Family[Gauge] = r.family(
            "trio_chat_store_wal_frames",
            "Frames left in the write-ahead log after the last checkpoint (0: caught up).",
            (),
            Gauge,
        )
        #: Called before each render, to copy in values kept elsewhere (the store's stats).
        self.collectors: list[Callable[[], None]] = []

        self.tls_cert_not_after: Gauge = r.gauge(
            "trio_chat_tls_cert_not_after_seconds",
            "Unix time at which the server's TLS certificate expires (0 without TLS).",
        )

    def render(self) -> str:
        for collect in self.collectors:
            collect()
        return self.registry.render()


# ------------------------------------------------------------------------------ scraping

#: Seconds a scraper has to send its request head, and the most of it that is read.
SCRAPE_TIMEOUT = 5.0
MAX_REQUEST_HEAD = 8 * 1024


async def serve_metrics(
    render: Callable[[], str],
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer ``GET /metrics`` with ``render()`` on ``host:port`` (0 picks a free port), forever.

    ``task_status.started`` gets the bound ``http://host:port/metrics`` addresses, so
    ``await nursery.start(serve_metrics, metrics.render, host, port)`` returns them.
    """
    listeners = await open_listeners(host, port)
    addresses = []
    for listener in listeners:
        bound_host, bound_port, *_ = listener.socket.getsockname()
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        addresses.append(f"http://{shown}:{bound_port}/metrics")
    task_status.started(addresses)

    async def handler(stream: trio.SocketStream) -> None:
        await answer_scrape(render, stream)

    await trio.serve_listeners(handler, listeners)


async def answer_scrape(render: Callable[[], str], stream: trio.abc.Stream) -> None:
    """One HTTP/1.x request and its answer, then close. Never raises (it would end the
    listener): a peer that is slow, gone or talking nonsense is just dropped or refused."""
    try:
        async with stream:
            head = b""
            with trio.move_on_after(SCRAPE_TIMEOUT):
                while b"\r\n\r\n" not in head and len(head) < MAX_REQUEST_HEAD:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    head += chunk
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                status, body, ctype = "400 Bad Request", b"bad request\n", _PLAIN
            elif parts[0] not in (b"GET", b"HEAD"):
                status, body, ctype = "405 Method Not Allowed", b"method not allowed\n", _PLAIN
            elif parts[1].split(b"?")[0] != b"/metrics":
                status, body, ctype = "404 Not Found", b"not found: try /metrics\n", _PLAIN
            else:
                status, body, ctype = "200 OK", render().encode(), CONTENT_TYPE
            response = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            await stream.send_all(response if parts[:1] == [b"HEAD"] else response + body)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception:
        log.exception("answering a metrics scrape failed")


_PLAIN = "text/plain; charset=utf-8"


def format_number(value: float) -> str:
    """A sample value or bucket bound as the exposition format writes it."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _braces(labels: str) -> str:
    return "{" + labels + "}" if labels else ""


__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "Metrics",
    "Registry",
    "Timer",
    "answer_scrape",
    "serve_metrics",
]
