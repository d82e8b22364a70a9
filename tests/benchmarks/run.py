"""The benchmark suite: postcap vs mitmdump vs the direct path, in one run.

    python tests/benchmarks/run.py [--quick] [--soak N] [--history N] [--json FILE]

One nginx origin on 127.0.0.1; the systems one after the other: ``direct``
(nginx itself), ``postcap`` (capture session running, history on),
``postcap-nosession``, ``mitmdump`` (``-w FILE``).  Per system: wrk with
absolute-form targets (1 KiB and 100 KiB, 10 and 100 connections), HTTPS
through CONNECT (keep-alive and new connections, tests/benchmarks/bench_https.py),
50 sequential 10 MiB downloads, one slow reader of 10 MiB.  postcap only: the
soak of small requests with a session, and the history at 100k transactions.
Prints one table (postcap's ratios to mitmdump and direct) and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks import bench_https  # noqa: E402
from tests.benchmarks.history import measure_history  # noqa: E402
from tests.benchmarks.loads import downloads, slow_reader, soak, wrk  # noqa: E402
from tests.benchmarks.support import (  # noqa: E402
    ensure_postcap_python,
    MitmdumpSystem,
    NginxOrigin,
    PostcapSystem,
    System,
    ensure_apt,
    ensure_mitmdump,
    machine,
    fmt,
    mitmproxy_version,
    print_table,
    write_json,
)

SYSTEMS = ["direct", "postcap", "postcap-nosession", "mitmdump"]
WRK_LOADS = [("/1k", 10), ("/1k", 100), ("/100k", 10), ("/100k", 100)]


def _guarded(name: str, errors: dict[str, str], function: Callable[[], Any]) -> Any:
    """Run one measurement; a failure is recorded (and printed), the suite goes on."""
    try:
        return function()
    except Exception:
        errors[name] = traceback.format_exc(limit=3)
        print(f"  {name} FAILED:\n{errors[name]}", file=sys.stderr)
        return None


def measure(
    system: System, origin: NginxOrigin, args: argparse.Namespace, errors: dict[str, str]
) -> dict[str, Any]:
    figures: dict[str, Any] = {"wrk": {}}
    # first, from the lowest RSS baseline: later loads leave the allocator holding memory
    figures["slow_reader"] = _guarded(
        f"{system.name} slow reader", errors, lambda: slow_reader(system, origin.http_port)
    )
    print(f"  {system.name:18} slow reader {figures['slow_reader']}", file=sys.stderr)
    for path, connections in WRK_LOADS:
        key = f"{path[1:]}_c{connections}"
        result = _guarded(
            f"{system.name} wrk {key}",
            errors,
            lambda: wrk(system, origin.http_port, path, connections, args.duration),
        )
        figures["wrk"][key] = result
        print(f"  {system.name:18} wrk {key:9} {result}", file=sys.stderr)
    figures["https"] = _guarded(
        f"{system.name} https",
        errors,
        lambda: bench_https.measure_system(
            system, origin, args.https_duration, args.https_workers, args.https_workers
        ),
    )
    figures["downloads"] = _guarded(
        f"{system.name} downloads",
        errors,
        lambda: downloads(system, origin.http_port, args.downloads),
    )
    print(f"  {system.name:18} downloads {figures['downloads']}", file=sys.stderr)
    return figures


def _get(figures: dict[str, Any], *keys: str) -> Any:
    value: Any = figures
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def table_rows(
    results: dict[str, Any], soak_figures: Any, history_figures: Any
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def row(figure: str, unit: str, *keys: str) -> None:
        rows.append(
            {
                "figure": figure,
                "unit": unit,
                "values": {name: _get(figures, *keys) for name, figures in results.items()},
            }
        )

    for path, connections in WRK_LOADS:
        key = f"{path[1:]}_c{connections}"
        label = f"HTTP {path[1:].upper().replace('K', ' KiB')} c={connections}"
        row(f"{label} req/s", "req/s", "wrk", key, "req_per_s")
        row(f"{label} p50", "ms", "wrk", key, "p50_ms")
        row(f"{label} p99", "ms", "wrk", key, "p99_ms")
        row(f"{label} proxy CPU", "%", "wrk", key, "cpu_percent")
        row(f"{label} proxy peak RSS", "MiB", "wrk", key, "rss_peak_mib")
    for mode, label in (("keepalive", "HTTPS keep-alive"), ("newconn", "HTTPS new connection")):
        row(f"{label} req/s", "req/s", "https", mode, "req_per_s")
        row(f"{label} p50", "ms", "https", mode, "p50_ms")
        row(f"{label} proxy CPU", "%", "https", mode, "cpu_percent")
    count = next(
        (
            figures["downloads"]["downloads"]
            for figures in results.values()
            if isinstance(figures.get("downloads"), dict)
        ),
        50,
    )
    row(f"{count} x 10 MiB sequential, total", "s", "downloads", "total_s")
    row(f"{count} x 10 MiB sequential, peak proxy RSS", "MiB", "downloads", "rss_peak_mib")
    row("slow reader of 10 MiB, proxy RSS growth", "MiB", "slow_reader", "rss_growth_mib")
    if soak_figures:
        rows.append(
            {
                "figure": f"soak {soak_figures['requests']:,} requests, RSS start",
                "unit": "MiB",
                "values": {"postcap": soak_figures["rss_start_mib"]},
            }
        )
        rows.append(
            {
                "figure": "soak RSS after first step",
                "unit": "MiB",
                "values": {"postcap": soak_figures["rss_after_first_step_mib"]},
            }
        )
        rows.append(
            {
                "figure": "soak RSS end",
                "unit": "MiB",
                "values": {"postcap": soak_figures["rss_end_mib"]},
            }
        )
    for key, label, unit in (
        ("list_deep_offset_ms", "request.list, deep offset", "ms"),
        ("list_query_offset_ms", "request.list, query + offset", "ms"),
        ("store_list_query_offset_ms", "store list, query + offset (no RPC)", "ms"),
        ("overview_ms", "session.overview", "ms"),
        ("har_export_s", "HAR export", "s"),
        ("har_export_rss_growth_mib", "HAR export, proxy RSS growth", "MiB"),
    ):
        if history_figures and history_figures.get(key) is not None:
            rows.append(
                {
                    "figure": f"history {history_figures['transactions']:,}: {label}",
                    "unit": unit,
                    "values": {"postcap": history_figures[key]},
                }
            )
    return rows


def goals(results: dict[str, Any], soak_figures: Any, history_figures: Any) -> list[dict[str, Any]]:
    """The goals with the measured figure and whether it is met (None: not measured)."""

    def value(system: str, *keys: str) -> Any:
        return _get(results.get(system, {}), *keys)

    def ratio(a: Any, b: Any) -> float | None:
        return round(a / b, 2) if a and b else None

    def added(a: Any, b: Any) -> float | None:
        return round(a - b, 3) if a is not None and b is not None else None

    checks = [
        (
            "HTTP 1 KiB c=100, capture on: >= 10x mitmdump req/s",
            "x",
            ratio(
                value("postcap", "wrk", "1k_c100", "req_per_s"),
                value("mitmdump", "wrk", "1k_c100", "req_per_s"),
            ),
            lambda v: v >= 10,
        ),
        (
            "added p50 latency at c=10 (1 KiB): < 1 ms over direct",
            "ms",
            added(
                value("postcap", "wrk", "1k_c10", "p50_ms"),
                value("direct", "wrk", "1k_c10", "p50_ms"),
            ),
            lambda v: v < 1,
        ),
        (
            "HTTPS keep-alive: >= 5x mitmdump",
            "x",
            ratio(
                value("postcap", "https", "keepalive", "req_per_s"),
                value("mitmdump", "https", "keepalive", "req_per_s"),
            ),
            lambda v: v >= 5,
        ),
        (
            "HTTPS new connections: >= 3x mitmdump",
            "x",
            ratio(
                value("postcap", "https", "newconn", "req_per_s"),
                value("mitmdump", "https", "newconn", "req_per_s"),
            ),
            lambda v: v >= 3,
        ),
        (
            "sequential 10 MiB downloads: within 1.5x of direct",
            "x",
            ratio(
                value("postcap", "downloads", "total_s"), value("direct", "downloads", "total_s")
            ),
            lambda v: v <= 1.5,
        ),
        (
            "slow reader RSS growth < 2 MB",
            "MiB",
            value("postcap", "slow_reader", "rss_growth_mib"),
            lambda v: v < 2 / 1.048576,
        ),
        (
            "soak: RSS at the end < 100 MB",
            "MiB",
            (soak_figures or {}).get("rss_end_mib"),
            lambda v: v < 100 / 1.048576,
        ),
        (
            "soak: no upward trend (end - after first step)",
            "MiB",
            added(
                (soak_figures or {}).get("rss_end_mib"),
                (soak_figures or {}).get("rss_after_first_step_mib"),
            ),
            lambda v: v < 10,
        ),
        (
            "history: request.list < 100 ms",
            "ms",
            (history_figures or {}).get("list_deep_offset_ms"),
            lambda v: v < 100,
        ),
        (
            "history: session.overview < 100 ms",
            "ms",
            (history_figures or {}).get("overview_ms"),
            lambda v: v < 100,
        ),
    ]
    return [
        {
            "goal": goal,
            "unit": unit,
            "measured": measured,
            "met": None if measured is None else bool(test(measured)),
        }
        for goal, unit, measured, test in checks
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short loads for development: 3 s wrk/HTTPS, 10 downloads, soak 50k, history 20k",
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk load (default 10)")
    parser.add_argument("--https-duration", type=float, help="seconds per HTTPS load (default 10)")
    parser.add_argument(
        "--https-workers", type=int, default=8, help="HTTPS client processes (default 8)"
    )
    parser.add_argument("--downloads", type=int, help="sequential 10 MiB downloads (default 50)")
    parser.add_argument("--soak", type=int, help="soak requests (default 1,000,000; 0 skips)")
    parser.add_argument(
        "--history", type=int, help="history transactions (default 100,000; 0 skips)"
    )
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated subset of " + ",".join(SYSTEMS),
    )
    parser.add_argument("--json", default=str(Path.home() / ".cache" / "postcap-bench" / "benchmarks.json"), help="where to write the figures")
    args = parser.parse_args(argv)
    ensure_postcap_python()
    quick = args.quick
    args.duration = args.duration or (3.0 if quick else 10.0)
    args.https_duration = args.https_duration or (3.0 if quick else 10.0)
    args.downloads = args.downloads if args.downloads is not None else (10 if quick else 50)
    args.soak = args.soak if args.soak is not None else (50_000 if quick else 1_000_000)
    args.history = args.history if args.history is not None else (20_000 if quick else 100_000)
    systems = [name for name in args.systems.split(",") if name in SYSTEMS]

    ensure_apt("nginx", "wrk")
    ensure_mitmdump()
    before = machine()
    errors: dict[str, str] = {}
    results: dict[str, Any] = {}
    soak_figures = history_figures = None
    minting = bench_https.measure_leaf_minting()
    with NginxOrigin() as origin:
        for name in systems:
            print(f"{name}:", file=sys.stderr)
            if name == "direct":
                results[name] = measure(
                    System("direct", None, None, origin.ca_cert), origin, args, errors
                )
            elif name in ("postcap", "postcap-nosession"):
                with PostcapSystem(name, origin, with_session=name == "postcap") as system:
                    results[name] = measure(system, origin, args, errors)
                    if name == "postcap" and args.soak:
                        soak_figures = _guarded(
                            "soak",
                            errors,
                            lambda: soak(
                                system, origin.http_port, args.soak, max(args.soak // 10, 1000)
                            ),
                        )
                        print(f"  soak {soak_figures}", file=sys.stderr)
            elif name == "mitmdump":
                with MitmdumpSystem(origin) as system:
                    results[name] = measure(system, origin, args, errors)
        if args.history:
            history_figures = _guarded(
                "history", errors, lambda: measure_history(args.history, origin)
            )
            print(f"  history {history_figures}", file=sys.stderr)
    rows = table_rows(results, soak_figures, history_figures)
    rows.append(
        {
            "figure": "leaf mint (cert + TLS context), new host",
            "unit": "ms",
            "values": {"postcap": minting["leaf_context_ms"]},
        }
    )
    after = machine()
    print(
        f"\npostcap benchmarks ({'quick' if quick else 'full'}: wrk {args.duration:g} s, HTTPS "
        f"{args.https_duration:g} s, load average before {before['loadavg']}, "
        f"after {after['loadavg']}, "
        f"{before['cpus']} CPUs; mitmdump {mitmproxy_version()})"
    )
    print_table(rows, [name for name in SYSTEMS if name in results or name == "postcap"])
    goal_rows = goals(results, soak_figures, history_figures)
    print("\nthe goals:")
    for goal in goal_rows:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[goal["met"]]
        print(f"  {goal['goal']:55} {fmt(goal['measured']):>8} {goal['unit']:4} {verdict}")
    if errors:
        print(f"\nfailed measurements: {', '.join(errors)}")
    write_json(
        args.json,
        {
            "machine_before": before,
            "machine_after": after,
            "quick": quick,
            "settings": vars(args),
            "mitmproxy": mitmproxy_version(),
            "results": results,
            "soak": soak_figures,
            "history": history_figures,
            "leaf_minting": minting,
            "errors": errors,
            "table": rows,
            "goals": goal_rows,
        },
    )
    print(f"JSON: {args.json}")
    return 0 if not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
