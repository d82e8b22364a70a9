"""``GET /readyz`` (no token), and the ``server.stats`` method: what an operator's
probes and ``postcapctl stats`` read of the running server."""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.web.resource import Resource
from twisted.web.server import Request

from postcap.control.method_group import MethodGroup
from postcap.metrics import StorageStats, Tally


class ReadinessResource(Resource):
    """200 ``{"ready": true}``, or 503 ``{"ready": false, "reasons": [...]}`` while
    ``reasons()`` names anything that keeps the server from doing its job."""

    isLeaf = True

    def __init__(self, reasons: Callable[[], list[str]]) -> None:
        super().__init__()
        self._reasons = reasons

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        reasons = self._reasons()
        if reasons:
            request.setResponseCode(503)
            return json.dumps({"ready": False, "reasons": reasons}).encode("utf-8")
        return b'{"ready": true}'

    render_HEAD = render_GET


def _counts(mapping: dict[Any, int], index: int) -> dict[str, int]:
    """Sum a dict keyed by label tuples over the label at ``index``."""
    totals: dict[str, int] = {}
    for key, count in mapping.items():
        if count:
            totals[key[index]] = totals.get(key[index], 0) + count
    return dict(sorted(totals.items()))


class StatsMethods(MethodGroup):
    """``server.stats`` (an extension): the running totals behind ``/metrics`` as JSON."""

    def __init__(self, tally: Tally, storage: Callable[[], StorageStats],
                 uptime_s: Callable[[], float]) -> None:
        self.tally = tally
        self.storage = storage
        self.uptime_s = uptime_s

    def methods(self) -> dict[str, Callable[..., Any]]:
        return {"server.stats": self.server_stats}

    def server_stats(self) -> dict[str, Any]:
        tally, storage = self.tally, self.storage()
        requests = tally.requests.copy()
        lag = tally.reactor_lag
        return {
            "uptime_s": round(self.uptime_s(), 3),
            "requests": {"total": sum(requests.values()),
                         "by_status_class": _counts(requests, 0),
                         "by_http_version": _counts(requests, 1)},
            "bytes": {"upstream": tally.bytes_upstream, "downstream": tally.bytes_downstream},
            "connections": dict(tally.connections),
            "upstream_errors": {"total": sum(tally.upstream_errors.values()),
                                "by_cause": dict(sorted(tally.upstream_errors.items()))},
            "captures": {"stored": storage.written, "filtered": tally.captures_filtered,
                         "dropped": storage.dropped},
            "storage": {"available": storage.available, "reason": storage.reason,
                        "pending": storage.pending,
                        "write_p99_s": storage.write_seconds.quantile(0.99)},
            "reactor_lag": {"p50_s": lag.quantile(0.5), "p99_s": lag.quantile(0.99),
                            "samples": lag.count},
            "rpc_calls": sum(tally.rpc_calls.values()),
        }
