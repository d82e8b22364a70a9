"""The history at N transactions: request.list with query and deep offset, overview, HAR export.

A real postcap makes a session; it is stopped; N realistic transactions are
seeded into its SQLite file through :class:`postcap.sinks.history.SQLiteHistoryStore`
(a subprocess, like the proxy would write them, in batches); postcap is
started again and the control channel is timed.  ``session.overview`` and the
HAR export are measured only when this postcap has them (they come from
another issue): a missing one is reported as ``None``.
"""

from __future__ import annotations

import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from tests.benchmarks.support import REPO, NginxOrigin, rss_kib
from tests.postcap_process import PostcapProcess, RPCError

REPEAT = 5
SEED_SCRIPT = """
import statistics
import sys
import time
from twisted.internet.defer import Deferred
from twisted.internet.task import react
from postcap.sinks.history import SQLiteHistoryStore
from postcap.testing import make_transaction

path, session_id, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def seed(reactor):
    store = SQLiteHistoryStore(path, reactor, batch_size=1000)
    await store.open()
    for index in range(count):
        store.transactionCompleted(make_transaction(
            session_id=session_id,
            method="POST" if index % 7 == 0 else "GET",
            url=f"http://host{index % 50}.example/api/v1/items/{index}?page={index % 13}",
            status=404 if index % 11 == 0 else 200,
            started_at=1_700_000_000 + index * 0.01,
            response_body=b'{"ok": true, "item": %d}' % index,
        ))
        if index % 5000 == 4999:
            await store.flush()
    await store.flush()
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        offset = max(0, count // 50 - 100)
        await store.list_transactions(session_id, 50, offset, query="host7.example")
        samples.append((time.perf_counter() - started) * 1000)
    print("STORE_QUERY_MS", round(statistics.median(samples), 2))
    await store.close()

react(lambda reactor: Deferred.fromCoroutine(seed(reactor)))
"""


def _timed(call: Any) -> float:
    """Median milliseconds of REPEAT calls."""
    samples = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 2)


def _optional(call: Any) -> float | None:
    try:
        return _timed(call)
    except RPCError as error:
        if error.code == -32601 or (
            error.code == -32602 and "unknown parameter" in str(error.message)
        ):
            return None  # a method or parameter this postcap does not have yet
        raise


def _har_export(server: Any, session_id: str) -> dict[str, Any] | None:
    connection = http.client.HTTPConnection("127.0.0.1", server.control_port, timeout=600)
    before = peak = rss_kib(server.pid)
    started = time.perf_counter()
    size = 0
    try:
        connection.request(
            "GET",
            f"/sessions/{session_id}.har",
            headers={"Authorization": f"Bearer {server.token}"},
        )
        response = connection.getresponse()
        if response.status != 200:
            response.read()
            return None
        while chunk := response.read(1 << 16):
            size += len(chunk)
            peak = max(peak, rss_kib(server.pid))
    finally:
        connection.close()
    return {
        "har_export_s": round(time.perf_counter() - started, 2),
        "har_bytes": size,
        "har_export_rss_growth_mib": round((peak - before) / 1024, 1),
    }


def measure_history(count: int, origin: NginxOrigin) -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(prefix="postcap-bench-history-")
    env = {"SSL_CERT_FILE": origin.ca_cert}
    try:
        with PostcapProcess(data_dir, env=env) as server:
            session_id = server.rpc("session.start", name="history benchmark")["id"]
            server.rpc("session.stop", id=session_id)
        started = time.perf_counter()
        seeded = subprocess.run(
            [
                sys.executable,
                "-c",
                SEED_SCRIPT,
                os.path.join(data_dir, "history.sqlite3"),
                session_id,
                str(count),
            ],
            check=True,
            timeout=1800,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        figures: dict[str, Any] = {
            "transactions": count,
            "seed_s": round(time.perf_counter() - started, 1),
        }
        for line in seeded.stdout.splitlines():
            if line.startswith("STORE_QUERY_MS "):
                figures["store_list_query_offset_ms"] = float(line.split()[1])
        with PostcapProcess(data_dir, env=env) as server:
            total = server.rpc("request.list", session_id=session_id, limit=1)["total"]
            figures["listed_total"] = total
            figures["list_deep_offset_ms"] = _timed(
                lambda: server.rpc(
                    "request.list", session_id=session_id, limit=50, offset=max(0, count - 1000)
                )
            )
            figures["list_query_offset_ms"] = _optional(
                lambda: server.rpc(
                    "request.list",
                    session_id=session_id,
                    query="host7.example",
                    limit=50,
                    offset=max(0, count // 50 - 100),
                )
            )
            figures["overview_ms"] = _optional(
                lambda: server.rpc("session.overview", id=session_id)
            )
            figures.update(_har_export(server, session_id) or {})
        return figures
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
