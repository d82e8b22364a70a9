"""OpenAPI inference over a 100k-transaction history: ``session.export`` with
``format: "openapi"`` and ``api.diff`` as the server runs them (details paged from the
store, folded into the API model), with time and peak memory.

    python tests/benchmarks/bench_openapi.py [--count 100000] [--json out.json]

Seeds a temporary history with varied JSON API traffic (tests/history_seed.py
``seed_api_history``) through the store's own batch insert, then times the export on a
store whose database runs in its own process, as in the server.
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

from postcap.export.openapi import drift_report, model_from_pages, openapi_export, store_pages  # noqa: E402
from postcap.sinks.history import SQLiteHistoryStore  # noqa: E402
from tests.history_seed import API_SESSION, seed_api_history  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(reactor: Any, count: int, out: str | None, repeat: int) -> None:
    directory = tempfile.mkdtemp(prefix="postcap-bench-openapi-")
    try:
        path = os.path.join(directory, "history.sqlite3")
        started = time.perf_counter()
        seed_api_history(path, count)
        results: dict[str, Any] = {"transactions": count, "seed_s": round(time.perf_counter() - started, 2)}
        store = SQLiteHistoryStore(path, separate_process=True)
        await store.open()

        pages = store_pages(store, API_SESSION)

        rss_before = peak_rss_mib()
        results["load_average_1m"] = os.getloadavg()[0]
        cpu = time.process_time()
        started = time.perf_counter()
        model = await model_from_pages(pages)
        results["fold_s"] = round(time.perf_counter() - started, 2)
        results["fold_cpu_s_this_process"] = round(time.process_time() - cpu, 2)
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            document = await openapi_export(pages, "bench")
            best = min(best, time.perf_counter() - started)
        results[f"export_s_best_of_{repeat}"] = round(best, 2)
        results["paths"] = sorted(document["paths"])
        results["provisional_endpoints"] = len(model._provisional)
        started = time.perf_counter()
        report = await drift_report(pages, document)
        results["diff_s"] = round(time.perf_counter() - started, 2)
        results["diff_findings"] = sum(len(v) for v in report.values())
        results["document_bytes"] = len(json.dumps(document))
        results["peak_rss_mib_before"] = round(rss_before, 1)
        results["peak_rss_mib"] = round(peak_rss_mib(), 1)
        await store.close()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        results["cpu_s_database_process_per_pass"] = round(
            (children.ru_utime + children.ru_stime) / (repeat + 2), 2)
        print(json.dumps(results, indent=2))
        if out:
            Path(out).write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--repeat", type=int, default=3, help="exports timed (the best is shown)")
    args = parser.parse_args()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor, args.count, args.json, args.repeat)))


if __name__ == "__main__":
    main()
