"""The spooler and bounded body capture."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from postcap.capture import SPOOL_PREFIX, BodyCapture, Spooler


class SpoolerTests(TestCase):
    def scratch(self) -> str:
        """A fresh directory outside the checkout (trial's mktemp writes under the cwd)."""
        directory = tempfile.mkdtemp(prefix="postcap-test-")
        self.addCleanup(shutil.rmtree, directory, True)
        return directory

    def test_start_removes_spool_files_left_by_a_crash(self) -> None:
        directory = self.scratch()
        leftover = os.path.join(directory, SPOOL_PREFIX + "crashed")
        unrelated = os.path.join(directory, "notes.txt")
        for path in (leftover, unrelated):
            with open(path, "wb") as handle:
                handle.write(b"x")
        spooler = Spooler(reactor, directory)
        spooler.start()
        self.addCleanup(spooler.stop)
        self.assertEqual(os.listdir(directory), ["notes.txt"])

    async def test_large_copy_is_spilled_to_a_file_and_truncated(self) -> None:
        spooler = Spooler(reactor, os.path.join(self.scratch(), "spool"))
        spooler.start()
        self.addCleanup(spooler.stop)
        capture = BodyCapture(limit=1000, spooler=spooler)
        capture.spill_threshold = 100
        for _ in range(30):
            capture.feed(b"y" * 50)
        body = await capture.finish()
        self.assertEqual(body.size, 1500)
        self.assertTrue(body.truncated)
        assert body.spool_path is not None
        self.assertEqual(body.read(), b"y" * 1000)


class Gate:
    """A spool "file" whose write holds the spooler's thread until the test opens it."""

    def __init__(self) -> None:
        self.opened = threading.Event()

    def write(self, data: bytes) -> None:
        self.opened.wait(30)


class SpoolerBackPressureTests(TestCase):
    """The spooler counts what waits for the disk; the proxy pauses on it."""

    def started_spooler(self) -> tuple[Spooler, Gate]:
        """A running spooler whose thread is held by a gate, so that writes queue."""
        directory = tempfile.mkdtemp(prefix="postcap-test-")
        self.addCleanup(shutil.rmtree, directory, True)
        spooler = Spooler(reactor, directory)
        spooler.start()
        self.addCleanup(spooler.stop)
        gate = Gate()
        self.addCleanup(gate.opened.set)
        spooler.write(gate, b"")  # type: ignore[arg-type]
        return spooler, gate

    async def test_congested_past_high_water_until_drained_to_low_water(self) -> None:
        spooler, gate = self.started_spooler()
        spool, path = spooler.open()
        piece = b"z" * (1024 * 1024)
        for _ in range(spooler.high_water // len(piece) + 1):
            spooler.write(spool, piece)
        self.assertTrue(spooler.congested)
        drained = spooler.when_drained()
        self.assertFalse(drained.called)
        gate.opened.set()
        await drained
        self.assertLessEqual(spooler.queued, spooler.low_water)
        await spooler.close(spool)
        self.assertEqual(spooler.queued, 0)
        self.assertFalse(spooler.congested)
        self.assertEqual(os.path.getsize(path), spooler.high_water + len(piece))
        self.assertTrue(spooler.when_drained().called)

    async def test_a_spooled_copy_is_handed_over_in_pieces(self) -> None:
        spooler, gate = self.started_spooler()
        capture = BodyCapture(limit=10 * 1024 * 1024, spooler=spooler)
        read = 64 * 1024
        data = [bytes([n]) * read for n in range(40)]
        for chunk in data:
            capture.feed(chunk)
        # Spilled after 9 reads (over 512 KiB), then one hand-over per 1 MiB (16 reads).
        self.assertEqual(spooler.queued, (9 + 16) * read)
        self.assertIsNone(capture.body_now())
        gate.opened.set()
        body = await capture.finish()
        self.assertEqual((body.size, body.truncated), (40 * read, False))
        self.assertEqual(body.read(), b"".join(data))
        body.discard()
