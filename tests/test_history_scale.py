"""A history of 100,000 transactions: deep paging with search and filters, and the
overview, answer correctly (latency is printed by tests/benchmarks/bench_history.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.trial.unittest import TestCase

from postcap.sinks.history import SQLiteHistoryStore
from tests.history_seed import METHODS, SEEDED_SESSION, STATUSES, seed_history

COUNT = 100_000


class LargeHistoryTests(TestCase):
    directory: str
    path: str

    @classmethod
    def setUpClass(cls) -> None:
        cls.directory = tempfile.mkdtemp(prefix="postcap-100k-")
        cls.path = os.path.join(cls.directory, "history.sqlite3")
        seed_history(cls.path, COUNT)

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.directory, ignore_errors=True)

    async def open_store(self) -> SQLiteHistoryStore:
        store = SQLiteHistoryStore(self.path)
        await store.open()
        self.addCleanup(store.close)
        return store

    async def test_query_method_filter_and_deep_offset(self) -> None:
        store = await self.open_store()
        # URLs containing "/items/1": i == 1, 10-19, 100-199, 1000-1999, 10000-19999.
        matching = [i for i in range(COUNT) if f"/items/{i}".startswith("/items/1")
                    and METHODS[i % 4] == "GET"]
        total, page = await store.list_transactions(
            SEEDED_SESSION, 10, 4000, query="/items/1", method="GET"
        )
        self.assertEqual(total, len(matching))
        self.assertEqual([item["id"] for item in page],
                         [f"seed-{i:07d}" for i in matching[4000:4010]])

    async def test_offset_ninety_thousand(self) -> None:
        store = await self.open_store()
        total, page = await store.list_transactions(
            SEEDED_SESSION, 5, 90_000, query="example.test", method=["GET", "PUT", "POST"]
        )
        self.assertEqual(total, COUNT)
        self.assertEqual([item["id"] for item in page],
                         [f"seed-{i:07d}" for i in range(90_000, 90_005)])
        total, page = await store.list_transactions(
            SEEDED_SESSION, 3, 9_000, query="host3.", method="GET", status="2xx"
        )
        expected = [i for i in range(COUNT) if i % 10 == 3 and METHODS[i % 4] == "GET"
                    and 200 <= STATUSES[i % 5] < 300]
        self.assertEqual(total, len(expected))
        self.assertEqual([item["id"] for item in page], [f"seed-{i:07d}" for i in expected[9000:9003]])

    async def test_overview_counts(self) -> None:
        store = await self.open_store()
        overview: dict[str, Any] = await store.overview(SEEDED_SESSION)
        self.assertEqual(overview["by_method"], {"GET": 50_000, "POST": 25_000, "PUT": 25_000})
        self.assertEqual(overview["by_status"], {"200": 40_000, "201": 20_000, "404": 20_000,
                                                 "500": 20_000})
        self.assertEqual(overview["by_data_mode"], {"none": 50_000, "raw-json": 50_000})
        self.assertEqual(len(overview["by_domain"]), 10)
        self.assertEqual(overview["totals"]["requests"], COUNT)
