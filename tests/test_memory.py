"""Freed memory goes back to the operating system (postcap.memory)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from postcap.memory import MemoryReturner, _find_malloc_trim


class MemoryReturnerTests(SynchronousTestCase):
    def test_trims_every_interval_while_started(self) -> None:
        clock, calls = Clock(), []
        returner = MemoryReturner(clock, interval=5.0, trim=lambda pad: calls.append(pad) or 1)
        returner.start()
        clock.advance(4.9)
        self.assertEqual(calls, [])
        clock.advance(0.1)
        clock.advance(5.0)
        self.assertEqual(calls, [0, 0])
        returner.stop()
        clock.advance(50.0)
        self.assertEqual(calls, [0, 0])
        returner.stop()  # twice is fine

    def test_without_malloc_trim_nothing_runs(self) -> None:
        clock = Clock()
        returner = MemoryReturner(clock)
        returner._trim = None
        returner.start()
        self.assertEqual(clock.getDelayedCalls(), [])
        returner.stop()

    def test_glibc_trim_is_found_and_callable(self) -> None:
        trim = _find_malloc_trim()
        if trim is None:
            self.skipTest("this C library has no malloc_trim")
        self.assertIn(trim(0), (0, 1))
