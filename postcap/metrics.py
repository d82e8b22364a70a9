"""Operational metrics: plain counters on the hot path, Prometheus at scrape time.

The layers that see traffic (proxy, sessions, the JSON-RPC dispatcher) are given
one :class:`Tally` and bump plain integers in it: an attribute add or one dict
update, no lock, no label lookup.  The history store keeps its own
:class:`StorageStats`.  :class:`PostcapCollector` turns both into Prometheus
metric families only when ``/metrics`` is scraped, and
:class:`ReactorLagMonitor` measures how late the reactor runs a periodic call.

Label values come from the small fixed sets below; anything else is counted
as ``"other"``, so no host, URL or method name a client made up ever becomes a
label.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable, Iterable, Iterator

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from postcap._version import __version__

#: ``status_class`` values of ``postcap_proxy_requests_total``; ``none``: the client got
#: no status line (it left, or the response was cut before its head).
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "none")
#: ``http_version`` values (the client's side of the exchange).
HTTP_VERSIONS = ("HTTP/1.0", "HTTP/1.1", "HTTP/2", "other")
#: ``kind`` values of ``postcap_proxy_connections``.
CONNECTION_KINDS = ("client", "tunnel", "websocket")
#: ``cause`` values of ``postcap_upstream_errors_total`` (the proxy's error kinds).
UPSTREAM_ERROR_CAUSES = (
    "dns", "refused", "connect", "connect-timeout", "timeout", "tls", "closed",
    "bad-response", "upgrade", "reset", "goaway", "other",
)
#: ``outcome`` values of ``postcap_capture_transactions_total``.
CAPTURE_OUTCOMES = ("stored", "filtered", "dropped")

_CLASS_OF = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")

#: Bucket bounds (seconds) of the latency histograms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def status_class(status: int | None) -> str:
    """``"2xx"`` for 204, ``"none"`` for no status."""
    if status is None or not 100 <= status <= 599:
        return "none"
    return _CLASS_OF[status // 100]


class Histogram:
    """Observations counted per bucket; cumulative only when exported."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        #: One count per bound, plus one for +Inf.
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, count), ..., ("+Inf", total)]`` as Prometheus exports buckets."""
        counts = list(self.counts)
        running, buckets = 0, []
        for bound, count in zip(self.bounds + (float("inf"),), counts):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return buckets

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding quantile ``q`` (None when empty; the
        largest finite bound when it falls in +Inf)."""
        total = self.count
        if total == 0:
            return None
        rank, running = q * total, 0
        for bound, count in zip(self.bounds, self.counts):
            running += count
            if running >= rank:
                return bound
        return self.bounds[-1]


class StorageStats:
    """What a history store reports about itself (kept by the store, read at scrape time)."""

    __slots__ = ("available", "reason", "pending", "written", "dropped", "write_seconds")

    def __init__(self) -> None:
        #: False while writes fail; ``reason`` then says why.
        self.available = True
        self.reason: str | None = None
        #: Transactions handed to the store and not yet committed.
        self.pending = 0
        self.written = 0
        #: Transactions the store was given and could not keep.
        self.dropped = 0
        self.write_seconds = Histogram()

    def to_json(self) -> dict[str, Any]:
        """``server.info``'s ``storage`` and the ``storage`` event's payload."""
        return {"ok": self.available, "error": self.reason, "pending": self.pending,
                "written": self.written, "dropped": self.dropped}


class Tally:
    """The running totals the proxy, sessions and control channel bump.

    The hot path touches plain attributes (``bytes_upstream += n``) or calls one
    of the small methods below; nothing here locks, allocates labels or formats.
    """

    __slots__ = ("requests", "bytes_upstream", "bytes_downstream", "connections",
                 "upstream_errors", "captures_filtered", "rpc_calls", "reactor_lag")

    def __init__(self) -> None:
        #: ``(status_class, http_version)`` → requests answered.
        self.requests: dict[tuple[str, str], int] = {}
        #: Bytes received from clients (travelling upstream) and from upstream servers
        #: (travelling downstream), as they came off the wire, heads included.
        self.bytes_upstream = 0
        self.bytes_downstream = 0
        #: Open connections by kind (see :data:`CONNECTION_KINDS`).
        self.connections = dict.fromkeys(CONNECTION_KINDS, 0)
        self.upstream_errors: dict[str, int] = {}
        #: Requests a running session's filters left out.
        self.captures_filtered = 0
        #: ``(method, code)`` → JSON-RPC calls answered.
        self.rpc_calls: dict[tuple[str, str], int] = {}
        #: How late the reactor ran :class:`ReactorLagMonitor`'s call.
        self.reactor_lag = Histogram()

    def request_answered(self, status: int | None, http_version: str) -> None:
        """One request answered with ``status`` (None: no status reached the client)."""
        if http_version not in HTTP_VERSIONS:
            http_version = "other"
        key = (status_class(status), http_version)
        self.requests[key] = self.requests.get(key, 0) + 1

    def connection_opened(self, kind: str) -> None:
        self.connections[kind] += 1

    def connection_closed(self, kind: str) -> None:
        self.connections[kind] -= 1

    def upstream_error(self, cause: str) -> None:
        if cause not in UPSTREAM_ERROR_CAUSES:
            cause = "other"
        self.upstream_errors[cause] = self.upstream_errors.get(cause, 0) + 1

    def capture_filtered(self) -> None:
        self.captures_filtered += 1

    def rpc_call(self, method: str, code: int | None) -> None:
        """One JSON-RPC call of a known ``method`` (else give ``"other"``) ended with
        ``code`` (None: a result)."""
        key = (method, "ok" if code is None else str(code))
        self.rpc_calls[key] = self.rpc_calls.get(key, 0) + 1


class ReactorLagMonitor:
    """Runs a call every ``interval`` seconds and records how late the reactor ran it.

    A reactor blocked for 200 ms runs the next call up to 200 ms late; with an
    interval shorter than the block, at least ``block - interval`` shows.
    """

    def __init__(self, clock: IReactorTime, histogram: Histogram, interval: float = 0.1) -> None:
        self._clock = clock
        self.histogram = histogram
        self.interval = interval
        self._ticks = 0
        self._loop = LoopingCall.withCount(self._tick)
        self._loop.clock = clock

    def start(self) -> None:
        self._ticks = 0
        self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _tick(self, count: int) -> None:
        # The call was due one interval after the previous one; ``count`` says how many
        # intervals have passed since (more than one when the reactor was late).
        due = self._loop.starttime + (self._ticks + 1) * self.interval
        self._ticks += count
        self.histogram.observe(max(0.0, self._clock.seconds() - due))


# -- the Prometheus side (imported lazily: only scrapes need prometheus_client) ----------


def _counter(name: str, doc: str, labels: list[str], samples: Iterable[tuple[list[str], float]]) -> Any:
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _gauge(name: str, doc: str, labels: list[str], samples: Iterable[tuple[list[str], float]]) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _histogram(name: str, doc: str, histogram: Histogram) -> Any:
    from prometheus_client.core import HistogramMetricFamily

    return HistogramMetricFamily(name, doc, buckets=histogram.cumulative(),
                                 sum_value=histogram.sum)


class PostcapCollector:
    """A prometheus_client collector reading a :class:`Tally` and a store's
    :class:`StorageStats` when scraped (the scrape may run in a thread: every dict
    is copied in one C-level step before it is read)."""

    def __init__(self, tally: Tally, storage: Callable[[], StorageStats]) -> None:
        self.tally = tally
        self.storage = storage

    def collect(self) -> Iterator[Any]:
        tally, storage = self.tally, self.storage()
        requests = tally.requests.copy()
        yield _counter(
            "postcap_proxy_requests", "Requests the proxy answered, by status class and the "
            "client's HTTP version.", ["status_class", "http_version"],
            (([cls, version], requests.get((cls, version), 0))
             for cls in STATUS_CLASSES for version in HTTP_VERSIONS))
        yield _counter(
            "postcap_proxy_bytes", "Bytes received from clients (upstream) and from upstream "
            "servers (downstream), heads included.", ["direction"],
            [(["upstream"], tally.bytes_upstream), (["downstream"], tally.bytes_downstream)])
        connections = tally.connections.copy()
        yield _gauge(
            "postcap_proxy_connections", "Open proxy connections by kind.", ["kind"],
            (([kind], connections.get(kind, 0)) for kind in CONNECTION_KINDS))
        errors = tally.upstream_errors.copy()
        yield _counter(
            "postcap_upstream_errors", "Exchanges that failed on the upstream side, by cause.",
            ["cause"], (([cause], errors.get(cause, 0)) for cause in UPSTREAM_ERROR_CAUSES))
        yield _counter(
            "postcap_capture_transactions", "Transactions of a running session: stored in the "
            "history, left out by its filters, or dropped because the store could not keep them.",
            ["outcome"], [(["stored"], storage.written), (["filtered"], tally.captures_filtered),
                          (["dropped"], storage.dropped)])
        yield _gauge("postcap_storage_available", "1 while the history store accepts writes.",
                     [], [([], 1 if storage.available else 0)])
        yield _gauge("postcap_storage_pending", "Transactions waiting to be written to the "
                     "history store.", [], [([], storage.pending)])
        yield _histogram("postcap_storage_write_seconds", "Time to commit one batch of "
                         "transactions to the history store.", storage.write_seconds)
        yield _histogram("postcap_reactor_lag_seconds", "How late the reactor ran a call "
                         "scheduled every 100 ms (time the event loop was blocked).",
                         tally.reactor_lag)
        yield _gauge("postcap_build_info", "Always 1; the version of this postcap.", ["version"],
                     [([__version__], 1)])
        calls = tally.rpc_calls.copy()
        yield _counter(
            "postcap_rpc_calls", "JSON-RPC calls by method and result (ok or the error code).",
            ["method", "code"], (([method, code], count)
                                 for (method, code), count in sorted(calls.items())))


def build_registry(tally: Tally, storage: Callable[[], StorageStats]) -> Any:
    """A private CollectorRegistry with postcap's metrics and the ``process_*`` ones."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry()
    registry.register(PostcapCollector(tally, storage))
    ProcessCollector(registry=registry)
    return registry


def metrics_resource(registry: Any) -> Any:
    """prometheus_client's Twisted resource serving ``registry`` (text or OpenMetrics)."""
    from prometheus_client.twisted import MetricsResource

    return MetricsResource(registry)


def metrics_site(registry: Any) -> Any:
    """The Site of ``--metrics``: ``GET /metrics`` and nothing else."""
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    root = Resource()
    root.putChild(b"metrics", metrics_resource(registry))
    site = Site(root)
    site.displayTracebacks = False
    return site
