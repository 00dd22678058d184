"""What trio-chat counts, for Prometheus: the prometheus-client library, one registry per
server, and a small HTTP responder on a port of its own.

The metrics are prometheus-client's ``Counter``, ``Gauge`` and ``Histogram``, so code
updates them the library's way::

    metrics = Metrics()
    metrics.frames_rejected_total.labels("bad_json").inc()
    metrics.connections.labels("websocket").inc()  # a HotLabelled: the same calls
    metrics.connections_by["websocket"].inc()  # the same child, without the call
    metrics.fanout_seconds.observe(seconds)
    body = metrics.render()  # serve with Content-Type: CONTENT_TYPE

Why the library and how it is used:

- **One registry per** :class:`Metrics` (so per server): several servers in one process
  (tests) neither share nor clash, and nothing is put in prometheus-client's global default
  registry. The registry also holds the library's process collector (CPU seconds, resident
  and virtual memory, open and max fds, start time), its GC collector (collections and
  collected objects per generation) and ``python_info``: a scrape shows them for free.
- **Cost**: a library update takes the metric's lock: ``inc`` about 0.5-0.9 µs,
  ``observe`` 1.1-1.5 µs, ``.labels(value).inc()`` 2 µs. That is fine per connection or
  per refused frame, not on the message path: in a room of ten, the three updates per
  message (frames in, events out, fan-out time) were 8% of a message's CPU. Those three
  are :class:`HotCounter` and :class:`HotHistogram`: plain numbers updated in the trio
  thread (0.1 and 0.3 µs) and turned into the same exposition when scraped. The hub
  updates once per fan-out, never once per receiver: keep it so. A scrape (``render``)
  takes about a millisecond, reading ``/proc`` included.
- **A connection's counts are plain numbers**: every connection updated the connections
  gauge by transport twice, the total, the disconnects by reason and (parking) the parked
  gauge twice, each under the metric's lock, about 30 calls of the library's a connection
  (bench/README.md, "Seventh round"). Those are :class:`HotGauge`, :class:`HotCounter`
  and :class:`HotLabelled` (a child per label value, kept by value: ``labels`` the first
  time, a dict lookup after, :attr:`Metrics.connections_by`), exposed as the library's
  (tests/test_metrics.py compares the text with theirs).
- **``_created`` series** (a gauge per counter and histogram child holding its creation
  time, which prometheus-client adds for OpenMetrics) are left out of :meth:`Metrics.render`:
  in this text format they are only extra series nobody asked for, and
  ``prometheus_client.disable_created_metrics()`` would switch them off for the whole
  process, other libraries' registries included, so they are filtered out per registry.
- **Values kept elsewhere** (the store's health) come from a custom collector that reads
  them at scrape time (:meth:`Metrics.watch_store`), the library's way, rather than being
  copied in.

The text is the Prometheus text exposition format 0.0.4, from ``generate_latest``.
:func:`~trio_chat.transports.scrape.serve_metrics` answers ``GET /metrics`` on a port of
its own (so the chat ports never show them): serving is the transport layer's business,
and this module, which the hub imports, stays below it.

Label values should come from small fixed sets (transport names, error codes): each distinct
value is a time series kept forever. Never label with nicks, rooms or free-text reasons.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable, Iterable, Iterator
from typing import ClassVar, Literal, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

#: The ``Content-Type`` of :meth:`Metrics.render`'s text (what ``generate_latest`` writes).
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

#: Transports whose connection gauges are shown (as 0) before anyone connects.
TRANSPORTS = ("tcp-json", "tcp-text", "websocket")


class StoreHealth(Protocol):
    """What the database reports about itself (``trio_chat.store.StoreStats`` has it)."""

    healthy: bool
    write_failures: int
    checkpoint_failures: int
    wal_frames: int


class Metrics:
    """What trio-chat counts. One per server; :meth:`render` answers a scrape."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        # prometheus-client refuses this gauge beside the counter trio_chat_connections_total:
        # in OpenMetrics both would be the family "trio_chat_connections". The text format
        # served here keeps them apart (as this server always named them), so the gauge is
        # registered through a wrapper that the registry's name check does not look into.
        self.connections = HotLabelled(
            "trio_chat_connections",
            "Chat connections open now, by transport.",
            "transport",
            "gauge",
            None,
        )
        r.register(_Unchecked(self.connections))
        #: The connections gauge's child for each transport (see the module's notes).
        self.connections_by = self.connections.children
        for transport in TRANSPORTS:
            self.connections.labels(transport)
        self.parked = HotGauge(
            "trio_chat_parked_connections",
            "Idle connections parked: held without tasks until they have something to do.",
            r,
        )
        self.connections_total = HotCounter(
            "trio_chat_connections_total",
            "Chat connections accepted since the server started.",
            r,
        )
        self.messages_in_total = HotCounter(
            "trio_chat_messages_in_total", "Frames received from logged-in clients.", r
        )
        self.messages_out_total = HotCounter(
            "trio_chat_messages_out_total",
            "Events queued for delivery to sessions (one per receiver).",
            r,
        )
        self.queue_drops_total: Counter = Counter(
            "trio_chat_queue_drops_total",
            "Sessions disconnected because their send queue was full (slow consumers).",
            registry=r,
        )
        self.disconnects_total = HotLabelled(
            "trio_chat_disconnects_total",
            "Connections ended, by reason code.",
            "reason",
            "counter",
            r,
        )
        #: The disconnects counter's child for each reason code (see the module's notes).
        self.disconnects_by = self.disconnects_total.children
        self.fanout_seconds = HotHistogram(
            "trio_chat_fanout_seconds",
            "Seconds taken to queue one room event for every member.",
            LATENCY_BUCKETS,
            r,
        )
        self.frames_rejected_total: Counter = Counter(
            "trio_chat_frames_rejected_total",
            "Client frames refused as malformed, by error code.",
            ("code",),
            registry=r,
        )
        self._store = _StoreCollector()
        r.register(self._store)
        self.messages_not_saved_total: Counter = Counter(
            "trio_chat_messages_not_saved_total",
            "Chat lines and private messages refused with not_saved (the database could "
            "not store them), each counted once.",
            registry=r,
        )
        self.tls_cert_not_after: Gauge = Gauge(
            "trio_chat_tls_cert_not_after_seconds",
            "Unix time at which the server's TLS certificate expires (0 without TLS).",
            registry=r,
        )
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        PlatformCollector(registry=r)
        self._exposed = _WithoutCreated(r)

    def watch_store(self, stats: Callable[[], StoreHealth]) -> None:
        """Show the database's health, read from ``stats()`` at each scrape. Until this is
        called (a server without a database) the store's metrics have no samples."""
        self._store.stats = stats

    def render(self) -> str:
        """Every metric in the text exposition format (see :data:`CONTENT_TYPE`)."""
        return generate_latest(self._exposed).decode()

    def value(self, name: str, **labels: str) -> float:
        """One sample's value, by its name as exposed (``trio_chat_connections_total``) and
        labels: for tests and checks, as it collects every metric (reading ``/proc``)."""
        found = self.registry.get_sample_value(name, labels)
        if found is None:
            raise KeyError(f"no sample {name} {labels}")
        return found


class _HotNumber:
    """A plain number on a hot path, read by the registry when scraped (see
    :class:`HotCounter` and :class:`HotGauge`). Trio thread only."""

    __slots__ = ("documentation", "name", "value")

    #: The library's family it is exposed as.
    _family: ClassVar[type[CounterMetricFamily] | type[GaugeMetricFamily]]

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.value: float = 0
        registry.register(self)

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def describe(self) -> list[Metric]:
        return [self._family(self.name, self.documentation)]

    def collect(self) -> list[Metric]:
        return [self._family(self.name, self.documentation, value=self.value)]


class HotGauge(_HotNumber):
    """A gauge updated by every connection (the parked connections), in the manner of
    :class:`HotCounter`: a plain number, exposed as the library's ``Gauge``. Trio thread
    only."""

    __slots__ = ()
    _family = GaugeMetricFamily

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class HotChild:
    """One label value's number of a :class:`HotLabelled` (what the library's
    ``labels(value)`` returns, for what a connection does with it)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        """(A gauge's: a counter's child is only ever added to.)"""
        self.value -= amount


class HotChildren(dict[str, HotChild]):
    """A :class:`HotLabelled`'s children by label value, one made the first time a value
    is asked for: ``children[value].inc()`` is a dict lookup. Label values come from small
    fixed sets, as everywhere."""

    __slots__ = ()

    def __missing__(self, value: str) -> HotChild:
        child = self[value] = HotChild()
        return child


class HotLabelled:
    """A counter or gauge with one label, updated by every connection: a plain number per
    label value (:class:`HotChild`), exposed as the library's labelled metric of the same
    kind (its samples in the order their values were first asked for, as the library
    has them). ``registry`` ``None``: registered by the caller. Trio thread only."""

    __slots__ = ("children", "documentation", "kind", "label", "name")

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        kind: Literal["counter", "gauge"],
        registry: CollectorRegistry | None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.kind = kind
        #: The child of each label value asked for so far.
        self.children = HotChildren()
        if registry is not None:
            registry.register(self)

    def labels(self, value: str) -> HotChild:
        """The child of ``value`` (made the first time), as the library's ``labels``."""
        return self.children[value]

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.documentation, labels=(self.label,))
        return GaugeMetricFamily(self.name, self.documentation, labels=(self.label,))

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> list[Metric]:
        family = self._family()
        for value, child in self.children.items():
            family.add_metric((value,), child.value)
        return [family]


class HotCounter(_HotNumber):
    """A counter on the message path: a plain number added to, read by the registry when
    scraped. ``inc`` costs ~0.05 µs where the library's ``Counter`` takes its lock (~0.9
    µs on the bench machine): twice per message, that was 6% of a message's CPU in a room
    of ten. The same exposition as a ``Counter`` (without ``_created``). Trio thread only."""

    __slots__ = ()
    _family = CounterMetricFamily


class HotHistogram:
    """A histogram on the message path, in the manner of :class:`HotCounter`: ``observe``
    is a bisect and two additions (~0.3 µs; the library's takes ~1.1 µs), and the
    cumulative buckets are made when scraped. Trio thread only."""

    __slots__ = ("_bounds", "_counts", "_sum", "documentation", "name")

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Iterable[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = sorted(buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last: above every bound
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        # A bucket's bound is inclusive (le): bisect_left finds the first bound >= value.
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self) -> list[Metric]:
        buckets, total = [], 0
        for bound, count in zip([*self._bounds, float("inf")], self._counts, strict=True):
            total += count
            buckets.append((floatToGoString(bound), total))  # type: ignore[no-untyped-call]
        family = HistogramMetricFamily(
            self.name, self.documentation, buckets=buckets, sum_value=self._sum
        )
        return [family]


class _Unchecked:
    """A collector the registry does not name-check (it has no ``describe``)."""

    def __init__(self, metric: HotLabelled) -> None:
        self._metric = metric

    def collect(self) -> Iterable[Metric]:
        return self._metric.collect()


class _StoreCollector:
    """The store's metrics, read from its stats when scraped. Without a store, each is
    shown (help and type) with no sample."""

    def __init__(self) -> None:
        self.stats: Callable[[], StoreHealth] | None = None

    def describe(self) -> list[Metric]:
        """The names, for the registry's clash check (without reading any stats)."""
        return self._families(None)

    def collect(self) -> list[Metric]:
        return self._families(None if self.stats is None else self.stats())

    @staticmethod
    def _families(stats: StoreHealth | None) -> list[Metric]:
        healthy = GaugeMetricFamily(
            "trio_chat_store_healthy",
            "1 while the database takes writes; 0 after a write failed for the database's "
            "sake (disk full, I/O error, locked), until a write succeeds again.",
        )
        write_failures = CounterMetricFamily(
            "trio_chat_store_write_failures_total",
            "Writes the database refused, counted per message and per other write (id "
            "reservation, account); a message retried alone after its batch failed counts "
            "twice.",
        )
        checkpoint_failures = CounterMetricFamily(
            "trio_chat_store_checkpoint_failures_total",
            "WAL checkpoints that failed (the write-ahead log then keeps growing).",
        )
        wal_frames = GaugeMetricFamily(
            "trio_chat_store_wal_frames",
            "Frames left in the write-ahead log after the last checkpoint (0: caught up).",
        )
        if stats is not None:
            healthy.add_metric([], 1 if stats.healthy else 0)
            write_failures.add_metric([], stats.write_failures)
            checkpoint_failures.add_metric([], stats.checkpoint_failures)
            wal_frames.add_metric([], stats.wal_frames)
        return [healthy, write_failures, checkpoint_failures, wal_frames]


class _WithoutCreated:
    """A view of a registry without the ``_created`` samples (see the module's notes)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            created = metric.name + "_created"
            if any(sample.name == created for sample in metric.samples):
                metric = copy.copy(metric)
                metric.samples = [s for s in metric.samples if s.name != created]
            yield metric


__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "TRANSPORTS",
    "HotChild",
    "HotCounter",
    "HotGauge",
    "HotLabelled",
    "Metrics",
    "StoreHealth",
]
