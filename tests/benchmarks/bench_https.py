"""HTTPS through CONNECT with interception: postcap vs mitmdump vs direct, in one run.

    python tests/benchmarks/bench_https.py [--quick] [--duration S] [--workers N] [--json FILE]

Starts an nginx TLS origin on 127.0.0.1 (test certificate from tests/certs.py),
then, one after the other: direct to nginx, postcap with a capture session
running (history on), mitmdump with flow capture (``-w FILE``).  For each:
keep-alive req/s and new-connection req/s (a new TCP connection, CONNECT and
TLS handshake per request: two handshakes through a proxy), with p50/p99
latency, proxy CPU and peak RSS.  Also postcap's leaf-minting cost.
Prints a table with postcap's ratios and writes the same as JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.httpsload import Target, run_load  # noqa: E402
from tests.benchmarks.support import (  # noqa: E402
    ensure_postcap_python,
    MitmdumpSystem,
    NginxOrigin,
    PostcapSystem,
    ProcessWatch,
    System,
    ensure_mitmdump,
    machine,
    print_table,
    write_json,
)

HOST = "localhost"
PATH = "/1k"
MINT_HOSTS = 200
SYSTEMS = ["direct", "postcap", "mitmdump"]


def measure_leaf_minting(count: int = MINT_HOSTS) -> dict[str, float]:
    """postcap's cost to mint a leaf for a new host: the certificate, and the full TLS context."""
    from postcap.tls.ca import create_ca
    from postcap.tls.minting import LeafMinter

    minter = LeafMinter(create_ca())
    started = time.perf_counter()
    for index in range(count):
        minter.certificate_for(f"cert{index}.bench.example")
    certificate_s = (time.perf_counter() - started) / count
    started = time.perf_counter()
    for index in range(count):
        minter.context_for(f"context{index}.bench.example")
    context_s = (time.perf_counter() - started) / count
    started = time.perf_counter()
    for index in range(count):
        minter.context_for(f"context{index}.bench.example")
    cached_s = (time.perf_counter() - started) / count
    return {
        "hosts": count,
        "leaf_certificate_ms": round(certificate_s * 1000, 3),
        "leaf_context_ms": round(context_s * 1000, 3),
        "cached_context_us": round(cached_s * 1e6, 2),
        "leaves_per_s": round(1 / context_s, 1),
    }


def target_for(system: System, origin: NginxOrigin, path: str = PATH) -> Target:
    if system.is_proxy:
        return Target(HOST, origin.https_port, path, system.ca_cert or "", system.port)
    return Target(HOST, origin.https_port, path, origin.ca_cert)


def measure_system(
    system: System, origin: NginxOrigin, duration: float, workers: int, newconn_workers: int
) -> dict[str, Any]:
    target = target_for(system, origin)
    run_load(
        target, "keepalive", min(workers, 2), min(1.0, duration)
    )  # warm-up: leaf minted, code paths hot
    figures: dict[str, Any] = {}
    for mode, count in (("keepalive", workers), ("newconn", newconn_workers)):
        watch = ProcessWatch(system.pid).start()
        result = run_load(target, mode, count, duration, on_tick=watch.sample)
        result.update(watch.result())
        figures[mode] = result
        print(
            f"  {system.name:10} {mode:9} {result['req_per_s']:>9,.0f} req/s"
            f"  p50 {result['p50_ms']} ms"
            f"  p99 {result['p99_ms']} ms  errors {sum(result['errors'].values())}"
            f"  {('cpu ' + str(result.get('cpu_percent')) + '%') if system.is_proxy else ''}",
            file=sys.stderr,
        )
    return figures


def run(
    duration: float,
    workers: int,
    newconn_workers: int,
    systems: list[str] = SYSTEMS,
    origin: NginxOrigin | None = None,
) -> dict[str, Any]:
    """The HTTPS figures per system (reused by run.py with its own origin)."""
    ensure_mitmdump()
    results: dict[str, Any] = {}
    own_origin = origin is None
    origin = origin or NginxOrigin().start()
    try:
        for name in systems:
            if name == "direct":
                results[name] = measure_system(
                    System("direct", None, None, origin.ca_cert),
                    origin,
                    duration,
                    workers,
                    newconn_workers,
                )
            elif name == "postcap":
                with PostcapSystem("postcap", origin, with_session=True) as system:
                    results[name] = measure_system(
                        system, origin, duration, workers, newconn_workers
                    )
            elif name == "postcap-nosession":
                with PostcapSystem("postcap-nosession", origin, with_session=False) as system:
                    results[name] = measure_system(
                        system, origin, duration, workers, newconn_workers
                    )
            elif name == "mitmdump":
                with MitmdumpSystem(origin) as system:
                    results[name] = measure_system(
                        system, origin, duration, workers, newconn_workers
                    )
                    results[name]["version"] = system.info["version"]
    finally:
        if own_origin:
            origin.stop()
    return results


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for mode, label in (("keepalive", "HTTPS keep-alive"), ("newconn", "HTTPS new connection")):
        for key, unit, figure in (
            ("req_per_s", "req/s", ""),
            ("p50_ms", "ms", " p50"),
            ("p99_ms", "ms", " p99"),
            ("cpu_percent", "% CPU", " proxy CPU"),
            ("rss_peak_mib", "MiB", " proxy peak RSS"),
        ):
            rows.append(
                {
                    "figure": label + figure,
                    "unit": unit,
                    "values": {
                        name: figures[mode].get(key)
                        for name, figures in results.items()
                        if isinstance(figures, dict) and mode in figures
                    },
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 s per load instead of 10 s")
    parser.add_argument("--duration", type=float, help="seconds per load (default 10, --quick 3)")
    parser.add_argument(
        "--workers", type=int, default=8, help="keep-alive client processes (default 8)"
    )
    parser.add_argument(
        "--newconn-workers", type=int, default=8, help="new-connection client processes"
    )
    parser.add_argument("--json", default=str(Path.home() / ".cache" / "postcap-bench" / "bench_https.json"), help="where to write the figures")
    args = parser.parse_args(argv)
    ensure_postcap_python()
    duration = args.duration or (3.0 if args.quick else 10.0)
    before = machine()
    minting = measure_leaf_minting()
    print(f"  leaf minting: {minting}", file=sys.stderr)
    results = run(duration, args.workers, args.newconn_workers)
    rows = table_rows(results)
    rows.append(
        {
            "figure": "leaf mint (cert + TLS context), new host",
            "unit": "ms",
            "values": {"postcap": minting["leaf_context_ms"]},
        }
    )
    print(
        f"\nHTTPS through CONNECT with interception ({duration:g} s per load, "
        f"{args.workers} keep-alive "
        f"/ {args.newconn_workers} new-connection client processes; load {before['loadavg']})"
    )
    print_table(rows, SYSTEMS)
    print(f"mitmdump {results.get('mitmdump', {}).get('version', '?')}; leaf minting {minting}")
    write_json(
        args.json,
        {
            "machine_before": before,
            "machine_after": machine(),
            "duration_s": duration,
            "https": results,
            "leaf_minting": minting,
            "table": rows,
        },
    )
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
