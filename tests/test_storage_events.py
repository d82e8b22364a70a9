"""The ``storage`` event: the history store's availability, as /events subscribers see it."""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from postcap.events import EventHub
from postcap.metrics import StorageStats
from postcap.sinks.availability import WriteHealth


class StorageEventTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.stats = StorageStats()
        self.probe_results: list[Deferred[None]] = []
        self.health = WriteHealth(self.clock, self._probe, self.stats, "history.sqlite3")
        self.hub = EventHub()
        self.events: list[tuple[str, object]] = []
        self.hub.subscribe(lambda event: self.events.append((event.kind, json.loads(event.data))))
        self.health.listeners.append(
            lambda available, reason: self.hub.storage_changed(self.stats.to_json()))

    def _probe(self) -> Deferred[None]:
        return self.probe_results.pop(0) if self.probe_results else succeed(None)

    def test_unavailable_then_recovered(self) -> None:
        self.stats.pending, self.stats.dropped = 3, 2
        self.health.write_failed("database or disk is full")
        self.assertEqual(self.events, [("storage", {
            "ok": False, "error": "database or disk is full", "pending": 3, "written": 0,
            "dropped": 2})])
        self.probe_results.append(fail(OSError("still full")))
        self.clock.advance(WriteHealth.probe_interval)
        self.assertEqual(len(self.events), 1)  # no news while it stays unavailable
        self.clock.advance(WriteHealth.probe_interval)
        self.assertEqual(self.events[-1][0], "storage")
        self.assertEqual(self.events[-1][1]["ok"], True)
        self.assertIsNone(self.events[-1][1]["error"])
        self.assertEqual(len(self.events), 2)

    def test_a_second_failure_does_not_repeat_the_event(self) -> None:
        self.health.write_failed("disk I/O error")
        self.health.write_failed("disk I/O error")
        self.assertEqual([kind for kind, _ in self.events], ["storage"])
