"""Whether a history store accepts writes, as the store itself sees it.

A store reports each write's outcome to its :class:`WriteHealth`.  The first
failure makes the store *unavailable* (with the reason); from then on, with or
without traffic, the store is probed every ``probe_interval`` seconds until a
probe or a write succeeds again.  The figures live in the store's
:class:`~postcap.metrics.StorageStats`, which ``/readyz`` and ``/metrics`` read.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from postcap.metrics import StorageStats


def probe_writes(connection: Any) -> None:
    """Take SQLite's write lock and let it go: fails while the file cannot be written
    (locked by another process, read-only, gone)."""
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("ROLLBACK")


class WriteHealth:
    """Availability of one store, and the probe that notices its return."""

    _log = Logger()
    #: Seconds between probes while the store is unavailable.
    probe_interval = 2.0

    def __init__(self, clock: IReactorTime, probe: Callable[[], Deferred[Any]],
                 stats: StorageStats, name: str) -> None:
        self._clock = clock
        self._probe = probe
        self.stats = stats
        self.name = name
        self._timer: IDelayedCall | None = None
        self._probing = False
        self._closed = False
        #: Called with ``(available, reason)`` whenever availability changes.
        self.listeners: list[Callable[[bool, str | None], None]] = []

    def write_succeeded(self) -> None:
        if not self.stats.available and not self._closed:
            self._log.info("history store {name} accepts writes again", name=self.name)
            self._set(True, None)

    def write_failed(self, reason: str) -> None:
        if self._closed:
            return
        if self.stats.available:
            self._log.error("history store {name} is unavailable: {reason}",
                            name=self.name, reason=reason)
            self._set(False, reason)
        else:
            self.stats.reason = reason
        self._schedule()

    def close(self) -> None:
        """The store closed: no more probes; unavailable from now on."""
        self._closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.stats.available, self.stats.reason = False, "the history store is closed"

    def _set(self, available: bool, reason: str | None) -> None:
        self.stats.available, self.stats.reason = available, reason
        for listener in list(self.listeners):
            with self._log.failuresHandled("storage availability listener failed"):
                listener(available, reason)

    def _schedule(self) -> None:
        if self._timer is None and not self._probing and not self._closed:
            self._timer = self._clock.callLater(self.probe_interval, self._run_probe)

    def _run_probe(self) -> None:
        self._timer = None
        if self._closed or self.stats.available:
            return
        self._probing = True
        self._probe().addCallbacks(self._probe_passed, self._probe_failed)

    def _probe_passed(self, _: object) -> None:
        self._probing = False
        self.write_succeeded()

    def _probe_failed(self, failure: Failure) -> None:
        self._probing = False
        if not self.stats.available:
            self.stats.reason = failure.getErrorMessage() or failure.type.__name__
        self._schedule()
