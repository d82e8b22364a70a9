"""HTTP/2 through CONNECT with interception: postcap vs mitmdump, in one run.

    python tests/benchmarks/bench_h2.py [--duration S] [--connections N] [--streams N] [--json FILE]

Starts an nginx TLS origin on 127.0.0.1 (HTTP/1.1 upstream), then, one after the
other, postcap with a capture session running (history on) and mitmdump with
flow capture (``-w FILE``).  For each: HTTP/2 keep-alive req/s with
``connections`` × ``streams`` requests in flight (tests/benchmarks/h2load.py),
p50/p99 latency, proxy CPU and peak RSS.  Prints a table with postcap's ratio
and writes the same as JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.h2load import H2Target, run_h2_load  # noqa: E402
from tests.benchmarks.support import (  # noqa: E402
    MitmdumpSystem,
    NginxOrigin,
    PostcapSystem,
    ProcessWatch,
    System,
    ensure_mitmdump,
    ensure_postcap_python,
    machine,
    print_table,
    write_json,
)

HOST = "localhost"
PATH = "/1k"


def measure(system: System, origin: NginxOrigin, args: argparse.Namespace) -> dict[str, Any]:
    assert system.port is not None
    target = H2Target(HOST, origin.https_port, PATH, system.ca_cert or "", system.port)
    run_h2_load(target, 2, 2, min(1.0, args.duration), processes=1)  # warm-up: leaf minted
    watch = ProcessWatch(system.pid).start()
    result = run_h2_load(target, args.connections, args.streams, args.duration, args.processes)
    result.update(watch.result())
    cpu = result.get("cpu_percent") or 0
    # On a shared machine the proxy gets a share of a core: requests per CPU-second compare fairly.
    result["req_per_cpu_s"] = round(result["req_per_s"] / (cpu / 100), 1) if cpu else None
    print(f"  {system.name:10} {result['req_per_s']:>9,.0f} req/s  p50 {result['p50_ms']} ms"
          f"  p99 {result['p99_ms']} ms  cpu {result.get('cpu_percent')}%  errors {result['errors']}",
          file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2, help="load client processes")
    parser.add_argument("--json", default=str(Path.home() / ".cache" / "postcap-bench" / "h2.json"))
    args = parser.parse_args()
    ensure_postcap_python()
    ensure_mitmdump()
    results: dict[str, Any] = {}
    with NginxOrigin() as origin:
        with PostcapSystem("postcap", origin, with_session=True) as system:
            results["postcap"] = measure(system, origin, args)
        with MitmdumpSystem(origin) as system:
            results["mitmdump"] = measure(system, origin, args)
            results["mitmdump"]["version"] = system.info["version"]
    rows = [
        {"figure": f"h2 keep-alive {args.connections}x{args.streams} 1k", "unit": "req/s",
         "values": {name: figures.get("req_per_s") for name, figures in results.items()}},
        {"figure": "h2 requests per proxy CPU-second", "unit": "req",
         "values": {n: f.get("req_per_cpu_s") for n, f in results.items()}},
        {"figure": "h2 p50", "unit": "ms", "values": {n: f.get("p50_ms") for n, f in results.items()}},
        {"figure": "h2 p99", "unit": "ms", "values": {n: f.get("p99_ms") for n, f in results.items()}},
        {"figure": "proxy peak RSS", "unit": "MiB", "values": {n: f.get("rss_peak_mib") for n, f in results.items()}},
    ]
    print_table(rows, ["postcap", "mitmdump"])
    write_json(args.json, {"machine": machine(), "args": vars(args), "results": results})
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
