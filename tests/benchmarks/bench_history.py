"""History at 100k transactions: request.list with search and deep offset,
session.overview, and a full export-style scan, with latency and peak memory.

    python tests/benchmarks/bench_history.py [--count 100000] [--json out.json]

Seeds a temporary history through the store's own batch insert (see
tests/history_seed.py), then times the store calls the JSON-RPC methods make.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from twisted.internet import defer, task  # noqa: E402

from postcap.sinks.history import SQLiteHistoryStore  # noqa: E402
from tests.history_seed import SEEDED_SESSION, seed_history  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def timed(label: str, results: dict[str, Any], call: Any, repeat: int = 5) -> Any:
    best = float("inf")
    value = None
    for _ in range(repeat):
        started = time.perf_counter()
        value = await call()
        best = min(best, time.perf_counter() - started)
    results[label] = round(best * 1000, 2)
    return value


async def run(reactor: Any, count: int, out: str | None) -> None:
    directory = tempfile.mkdtemp(prefix="postcap-bench-history-")
    try:
        path = os.path.join(directory, "history.sqlite3")
        started = time.perf_counter()
        seed_history(path, count)
        results: dict[str, Any] = {"transactions": count,
                                   "seed_s": round(time.perf_counter() - started, 2)}
        store = SQLiteHistoryStore(path)
        await store.open()
        await timed("list_query_method_offset_90000_ms", results, lambda: store.list_transactions(
            SEEDED_SESSION, 50, int(count * 0.9), query="example.test", method="GET"))
        await timed("list_plain_offset_90000_ms", results, lambda: store.list_transactions(
            SEEDED_SESSION, 50, int(count * 0.9)))
        await timed("list_status_class_domain_ms", results, lambda: store.list_transactions(
            SEEDED_SESSION, 50, 0, status="4xx", domain="host3.example.test"))
        await timed("overview_ms", results, lambda: store.overview(SEEDED_SESSION))
        rss_before = peak_rss_mib()

        async def scan() -> int:
            seen, after = 0, 0
            while True:
                after, details = await store.details_after(SEEDED_SESSION, after, 500)
                if not details:
                    return seen
                seen += len(details)

        seen = await timed("full_detail_scan_ms", results, scan, repeat=1)
        results["full_detail_scan_rows"] = seen
        results["peak_rss_growth_during_scan_mib"] = round(peak_rss_mib() - rss_before, 1)
        results["peak_rss_mib"] = round(peak_rss_mib(), 1)
        await store.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    if out:
        Path(out).write_text(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--json", dest="out")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args.count, args.out)))


if __name__ == "__main__":
    main()
