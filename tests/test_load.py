"""Load and soak through the real ``twistd -n postcap``: many keep-alive clients at
once, every answer checked and every exchange captured; RSS flat over many requests.

The soak runs 10k requests here; ``POSTCAP_SOAK=1`` makes it 100k (minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.harness import Origin, start_origin
from tests.postcap_process import PostcapProcess, rss_kib

LOAD_CLIENT = Path(__file__).with_name("load_client.py")


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    with start_origin() as running:
        yield running


def run_load(server: PostcapProcess, origin: Origin, clients: int, requests: int, tag: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(LOAD_CLIENT), str(server.port), origin.authority, str(clients), str(requests), tag],
        capture_output=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def captured_total(server: PostcapProcess, session_id: str, expected: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        total = server.rpc("request.list", session_id=session_id, limit=1)["total"]
        if total >= expected or time.monotonic() > deadline:
            return total
        time.sleep(0.2)


def test_200_keep_alive_clients_by_20_requests(tmp_path: Any, origin: Origin) -> None:
    with PostcapProcess(tmp_path / "load") as server:
        session = server.rpc("session.start", name="load")
        outcome = run_load(server, origin, clients=200, requests=20, tag="load")
        print(f"\n200 clients x 20 requests: {outcome['elapsed_s']:.2f} s "
              f"({4000 / outcome['elapsed_s']:.0f} requests/s)")
        assert outcome["failures"] == [] and outcome["ok"] == 4000
        assert outcome["elapsed_s"] < 120  # ~10 s on an idle 2-core machine
        assert captured_total(server, session["id"], 4000) == 4000
        urls = set()
        for offset in range(0, 4000, 1000):
            page = server.rpc("request.list", session_id=session["id"], limit=1000, offset=offset)
            urls.update(item["url"] for item in page["items"] if item["status"] == 200 and item["error"] is None)
        assert urls == {f"http://{origin.authority}/echo?tag=load&c={c}&r={r}" for c in range(200) for r in range(20)}
        counters = server.rpc("server.info")["counters"]
        assert counters["transactions"] == 4000 and counters["errors"] == {}


def test_soak_rss_stays_flat(tmp_path: Any, origin: Origin) -> None:
    total = 100_000 if os.environ.get("POSTCAP_SOAK") == "1" else 10_000
    phases = 10
    per_phase = total // phases
    clients = 50
    with PostcapProcess(tmp_path / "soak") as server:
        session = server.rpc("session.start", name="soak")
        # Warm-up: the live-event buffer (the last 10,000 events, for SSE resume) fills up.
        warm_up = run_load(server, origin, clients=clients, requests=10_000 // clients, tag="warm")
        assert warm_up["failures"] == []
        samples = []
        started = time.monotonic()
        for phase in range(phases):
            outcome = run_load(server, origin, clients=clients, requests=per_phase // clients, tag=f"p{phase}")
            assert outcome["failures"] == [] and outcome["ok"] == per_phase
            samples.append(rss_kib(server.pid))
        elapsed = time.monotonic() - started
        assert captured_total(server, session["id"], total + 10_000, timeout=60) == total + 10_000
        print(f"\nsoak {total} requests in {elapsed:.1f} s; RSS KiB per phase: {samples}")
        # After warm-up the RSS must not trend up: the last phases may not exceed the
        # early plateau by more than a small allowance.
        plateau = max(samples[1:4])
        growth_mib = (max(samples[-3:]) - plateau) / 1024
        assert growth_mib < 8, f"RSS grew {growth_mib:.1f} MiB over {total} requests: {samples}"
