"""The web page on a 100,000-request session: time to the first row, to a deep
scroll position, and to a search result, in headless Debian Chromium.

    python tests/benchmarks/bench_web_page.py [--count 100000] [--runs 5] [--json out.json]

Seeds a temporary data directory through the history store's batch insert (see
tests/history_seed.py), starts postcap on it, signs in once, then for each run reloads
the page and clicks the seeded session in the sessions list; the clock stops when the
first row of the table is visible.  Best and median of the runs are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser import CHROMIUM  # noqa: E402
from tests.history_seed import SEEDED_SESSION, seed_history  # noqa: E402
from tests.postcap_process import PostcapProcess  # noqa: E402

ROW = "#requests-table tbody tr[data-id]"


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def measure(page: Any, server: PostcapProcess, count: int) -> dict[str, float]:
    page.reload()  # a cold page each run (the token stays in sessionStorage)
    link = f"#sessions-table tr[data-id='{SEEDED_SESSION}'] td.name a"
    page.wait_for_selector(link)
    started = time.perf_counter()
    page.click(link)
    page.wait_for_selector(f"{ROW}:has-text('/api/items/{count - 1}?')", state="visible")
    first_row = elapsed_ms(started)

    started = time.perf_counter()
    page.evaluate("() => { const s = document.querySelector('#table-scroll'); s.scrollTop = s.scrollHeight / 2; }")
    page.wait_for_function(
        """half => !document.querySelector('#requests-table tbody tr.loading') &&
                  [...document.querySelectorAll('#requests-table tbody tr[data-id]')]
                    .some(row => Number(row.dataset.index) >= half - 100)""",
        arg=count // 2,
    )
    middle = elapsed_ms(started)

    started = time.perf_counter()
    page.fill("#search", "/api/items/0?")
    page.wait_for_function(
        "() => document.querySelectorAll('#requests-table tbody tr[data-id]').length === 1"
    )
    search = elapsed_ms(started)  # includes the 250 ms typing debounce
    page.fill("#search", "")
    return {"first_row_ms": first_row, "scroll_to_middle_ms": middle, "search_oldest_ms": search}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json")
    options = parser.parse_args()
    if CHROMIUM is None:
        raise SystemExit("Debian chromium is required (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="postcap-bench-web-") as directory:
        started = time.perf_counter()
        seed_history(os.path.join(directory, "history.sqlite3"), options.count)
        seed_s = round(time.perf_counter() - started, 2)
        with PostcapProcess(directory) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            page.goto(server.control_url + "/")
            page.fill("#token-input", server.token)
            page.click("#signin-button")
            page.wait_for_selector("#view-sessions:not([hidden])")
            runs = [measure(page, server, options.count) for _ in range(options.runs)]
            browser.close()
    results: dict[str, Any] = {"transactions": options.count, "seed_s": seed_s, "runs": options.runs}
    for key in runs[0]:
        values = [run[key] for run in runs]
        results[f"{key}_best"] = min(values)
        results[f"{key}_median"] = statistics.median(values)
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
