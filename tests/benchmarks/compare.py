"""Two postcap builds in one run: the same wrk loads against each, alternating.

    python tests/benchmarks/compare.py --before OLD/bin/twistd [--after NEW/bin/twistd]
        [--rounds 2] [--duration 5] [--json FILE]
        [--after-args "--metrics tcp:0:interface=127.0.0.1"] [--scrape-interval 1]

For before/after figures of a change on a machine whose speed drifts: install the
old commit in a venv of its own (``git worktree add /tmp/old COMMIT`` and
``python -m venv /tmp/old-venv && /tmp/old-venv/bin/pip install /tmp/old``) and
pass its ``twistd``.  ``--after`` defaults to the twistd beside this Python.  Each
round runs both builds, with a session and without, at 1 KiB c=10 and c=100 and
100 KiB c=10; the table shows the best round of each (req/s, p50, p99, peak RSS).
``--after-args`` adds twistd postcap options to the new build only;
``--scrape-interval`` scrapes its ``/metrics`` (control channel) that often during
the loads, as Prometheus would (metrics on vs off).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tests.postcap_process as postcap_process  # noqa: E402
from tests.benchmarks.loads import wrk  # noqa: E402
from tests.benchmarks.support import (  # noqa: E402
    NginxOrigin,
    PostcapSystem,
    ensure_apt,
    write_json,
)

LOADS = [("/1k", 10), ("/1k", 100), ("/100k", 10)]


class Scraper:
    """GETs a server's ``/metrics`` every ``interval`` seconds in a thread (0: never)."""

    def __init__(self, server: postcap_process.PostcapProcess, interval: float) -> None:
        self.server, self.interval = server, interval
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        request = urllib.request.Request(self.server.control_url + "/metrics",
                                         headers={"Authorization": f"Bearer {self.server.token}"})
        while not self._stop.wait(self.interval):
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
            self.scrapes += 1

    def __enter__(self) -> "Scraper":
        if self.interval > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="the twistd of the old build")
    parser.add_argument(
        "--after", default=shutil.which("twistd", path=os.path.dirname(sys.executable))
    )
    parser.add_argument("--after-args", default="", help="extra twistd postcap options (new build)")
    parser.add_argument("--scrape-interval", type=float, default=0.0,
                        help="scrape the new build's /metrics this often (seconds; 0: never)")
    parser.add_argument("--load", action="append", metavar="PATH:C",
                        help="only these loads, e.g. /1k:100 (repeatable; default: all three)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument(
        "--json", default=str(Path.home() / ".cache" / "postcap-bench" / "compare.json")
    )
    args = parser.parse_args()
    loads = [(path, int(c)) for path, c in (item.rsplit(":", 1) for item in args.load)] \
        if args.load else LOADS
    ensure_apt("nginx", "wrk")
    builds = {"before": args.before, "after": args.after}
    runs: dict[str, list[dict[str, Any]]] = {}
    with NginxOrigin() as origin:
        for round_number in range(args.rounds):
            for build, twistd in builds.items():
                for session in (True, False):
                    postcap_process.TWISTD = twistd
                    name = f"{build} {'session' if session else 'no session'}"
                    after = build == "after"
                    postcap = PostcapSystem(name, origin, session, extra_args=tuple(
                        shlex.split(args.after_args) if after else ()))
                    with postcap as system, Scraper(
                            postcap.server, args.scrape_interval if after else 0):
                        for path, connections in loads:
                            result = wrk(
                                system, origin.http_port, path, connections, args.duration
                            )
                            key = f"{name:18} {path[1:]:>4} c={connections}"
                            runs.setdefault(key, []).append(result)
                            print(f"round {round_number + 1}  {key}  "
                                  f"{result.get('req_per_s')} req/s", file=sys.stderr, flush=True)
    print(f"{'build':18} {'load':>10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'peak RSS MiB':>13}")
    for key, results in runs.items():
        best = max(results, key=lambda result: result.get("req_per_s") or 0)
        print(f"{key[:18]} {key[19:]:>10} {best.get('req_per_s') or 0:>9,.0f} "
              f"{best.get('p50_ms') or 0:>8.2f} {best.get('p99_ms') or 0:>8.2f} "
              f"{best.get('rss_peak_mib') or 0:>13}")
    write_json(args.json, {"builds": builds, "rounds": args.rounds, "runs": runs})
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
