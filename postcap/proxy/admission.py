"""Who may open a proxy connection: ``--allow``, the per-address cap
(``--max-client-connections``) and the global cap (``--max-connections``).

The global cap keeps the proxy below the process's file-descriptor limit with a
reserve for the control channel, the history database and the spool (see
:func:`postcap.limits.default_max_connections`): past it a new client gets a
``503`` and the control channel keeps answering.  Refusals are counted; a flood
of them is logged once per :attr:`Admission.busy_log_interval`, not once each.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection is refused, as the proxy answers it."""

    status: int
    kind: str
    message: str


class Admission:
    """Counts open connections per client address and decides on new ones."""

    _log = Logger()
    #: Seconds between two "at the connection limit" warnings.
    busy_log_interval = 10.0

    def __init__(self, reactor: Any, settings: Any) -> None:
        self.reactor = reactor
        self.settings = settings
        self.per_client: Counter[str] = Counter()
        self._busy_logged_at: float | None = None
        self._busy_since_log = 0

    def refusal(self, host: str, open_connections: int) -> Refusal | None:
        """None to accept a client at ``host`` while ``open_connections`` are open."""
        settings = self.settings
        if not settings.allows(host):
            self._log.warn("refused proxy client {client}: not in --allow", client=host)
            return Refusal(403, "client-refused", "your address is not allowed to use this proxy")
        if self.per_client[host] >= settings.max_client_connections:
            self._log.warn(
                "refused proxy client {client}: {count} connections already open "
                "(--max-client-connections {limit})",
                client=host, count=self.per_client[host], limit=settings.max_client_connections,
            )
            return Refusal(
                503, "too-many-connections",
                f"too many connections from your address (limit {settings.max_client_connections})",
            )
        limit = settings.max_connections
        if limit is not None and open_connections >= limit:
            self._log_busy(limit)
            return Refusal(503, "server-busy",
                           f"the proxy is at its connection limit ({limit}); try again shortly")
        return None

    def opened(self, host: str) -> None:
        self.per_client[host] += 1

    def closed(self, host: str) -> None:
        self.per_client[host] -= 1
        if self.per_client[host] <= 0:
            del self.per_client[host]

    def _log_busy(self, limit: int) -> None:
        self._busy_since_log += 1
        now = self.reactor.seconds()
        if self._busy_logged_at is not None and now - self._busy_logged_at < self.busy_log_interval:
            return
        self._log.warn(
            "proxy at its connection limit ({limit}, --max-connections): refused {count} "
            "connection(s) with 503", limit=limit, count=self._busy_since_log,
        )
        self._busy_logged_at = now
        self._busy_since_log = 0
