"""The spooler and bounded body capture."""

from __future__ import annotations

import os
import shutil
import tempfile

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
