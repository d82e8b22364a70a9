"""``postcapctl stats``: the key figures of a running server (``server.stats``).

Two samples ``--interval`` seconds apart give the rates.  On a terminal the
figures refresh every interval until Ctrl-C; piped, or with ``--json`` or
``--once``, they are printed once.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

#: Rates computed from two samples: name → path of the running total in the sample.
RATES: dict[str, tuple[str, ...]] = {
    "requests_per_s": ("requests", "total"),
    "upstream_errors_per_s": ("upstream_errors", "total"),
    "bytes_upstream_per_s": ("bytes", "upstream"),
    "bytes_downstream_per_s": ("bytes", "downstream"),
    "stored_per_s": ("captures", "stored"),
}


def _at(sample: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = sample
    for key in path:
        value = value[key]
    return float(value)


def with_rates(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``after`` plus ``rates``: per-second changes of its running totals since ``before``."""
    elapsed = after["uptime_s"] - before["uptime_s"]
    rates = {name: (round((_at(after, path) - _at(before, path)) / elapsed, 2) if elapsed > 0 else 0.0)
             for name, path in RATES.items()}
    return {**after, "rates": rates}


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"≤{seconds * 1000:g} ms"


def show_stats(stats: dict[str, Any]) -> str:
    rates, storage, lag = stats["rates"], stats["storage"], stats["reactor_lag"]
    requests, errors, captures = stats["requests"], stats["upstream_errors"], stats["captures"]
    classes = ", ".join(f"{cls} {count}" for cls, count in requests["by_status_class"].items())
    causes = ", ".join(f"{cause} {count}" for cause, count in errors["by_cause"].items())
    connections = ", ".join(f"{kind} {count}" for kind, count in stats["connections"].items())
    state = "available" if storage["available"] else f"UNAVAILABLE ({storage['reason']})"
    return "\n".join([
        f"requests      {rates['requests_per_s']:.1f}/s   total {requests['total']}"
        + (f"   ({classes})" if classes else ""),
        f"errors        {rates['upstream_errors_per_s']:.1f}/s   upstream total {errors['total']}"
        + (f"   ({causes})" if causes else ""),
        f"traffic       up {rates['bytes_upstream_per_s'] / 1024:.1f} KiB/s,"
        f" down {rates['bytes_downstream_per_s'] / 1024:.1f} KiB/s",
        f"connections   {connections}",
        f"captures      stored {captures['stored']}, filtered {captures['filtered']},"
        f" dropped {captures['dropped']}",
        f"storage       {state}, {storage['pending']} pending, write p99 {_ms(storage['write_p99_s'])}",
        f"reactor lag   p50 {_ms(lag['p50_s'])}, p99 {_ms(lag['p99_s'])}",
    ])


def cmd_stats(client: Any, args: argparse.Namespace, stdout: Any = None,
              sleep: Callable[[float], None] = time.sleep) -> Any:
    stdout = stdout or sys.stdout
    before = client.call("server.stats")
    sleep(args.interval)
    after = with_rates(before, client.call("server.stats"))
    if args.json or args.once or not stdout.isatty():
        return after, show_stats
    try:
        while True:
            stdout.write("\x1b[H\x1b[2J" + show_stats(after) + "\n\n(Ctrl-C to quit)\n")
            stdout.flush()
            sleep(args.interval)
            before, after = after, with_rates(after, client.call("server.stats"))
    except KeyboardInterrupt:
        return after, show_stats


def _interval(text: str) -> float:
    value = float(text)
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be between 0.1 and 3600 seconds")
    return value


def add_stats_parser(commands: Any) -> None:
    stats = commands.add_parser(
        "stats", help="key figures: requests/s, errors, storage, reactor lag (refreshed on a TTY)")
    stats.add_argument("--interval", type=_interval, default=1.0, metavar="S",
                       help="seconds between samples (default 1)")
    stats.add_argument("--once", action="store_true", help="print once, even on a terminal")
    stats.set_defaults(handler=cmd_stats)
