"""HTTPS interception benchmark: postcap and mitmdump side by side with the direct path.

    python tests/benchmarks/bench_https.py [--duration S] [--workers N] [--json out.json]

In one run on this machine, everything on 127.0.0.1:

- a TLS origin (Debian nginx with its own config and prefix in a temp dir, else
  ``tests/origin.py --tls``) serving a fixed 1 KiB body, with a certificate from
  :func:`tests.certs.make_test_pki`;
- postcap (``twistd -n postcap``, SSL_CERT_FILE = the test CA so it verifies the
  origin) with a capture session running;
- mitmdump (pip ``mitmproxy`` in its own venv under ~/.cache/postcap-bench,
  created on first use) writing flows with ``-w FILE`` and verifying the origin
  against the same test CA.

The load client is this script's own: N worker processes, raw sockets and the
``ssl`` module.  Through a proxy each connection sends ``CONNECT``, reads the
200, then speaks TLS trusting the proxy's CA.  Two loads, each bounded in time:

- keep-alive: one tunnel per worker, GET after GET on it;
- new-connection: a new CONNECT + TLS handshake per request (two handshakes
  per request through a proxy: client-proxy and proxy-origin).

The same client also goes straight to the origin (the direct path).  Finally
postcap's leaf minting is timed in-process.  One table is printed (and written
as JSON with ``--json``); every process started is stopped.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.certs import OriginPKI, make_test_pki  # noqa: E402
from tests.harness import free_port, start_origin  # noqa: E402
from tests.postcap_process import PostcapProcess  # noqa: E402

BODY_SIZE = 1024
CACHE_DIR = Path.home() / ".cache" / "postcap-bench"
MITM_VENV = CACHE_DIR / "mitm-venv"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
SOCKET_TIMEOUT = 10.0
HOST = "127.0.0.1"


# -- load client (runs in worker processes) ---------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a worker connects: the origin directly, or a proxy that CONNECTs to it."""

    origin_port: int
    path: str  # the origin's 1 KiB resource
    cafile: str  # the CA the client trusts for the TLS it sees
    proxy_port: int | None = None


@dataclass
class WorkerResult:
    requests: int = 0
    errors: int = 0
    first_error: str = ""
    latencies: list[float] = field(default_factory=list)


def _read_until(sock: socket.socket | ssl.SSLSocket, buffer: bytearray, marker: bytes) -> int:
    while True:
        end = buffer.find(marker)
        if end >= 0:
            return end
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before " + repr(marker))
        buffer += chunk


def open_tls(target: Target, context: ssl.SSLContext) -> ssl.SSLSocket:
    """A TLS connection to the origin, through ``CONNECT`` when there is a proxy."""
    port = target.proxy_port or target.origin_port
    sock = socket.create_connection((HOST, port), timeout=SOCKET_TIMEOUT)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.proxy_port is not None:
            authority = f"{HOST}:{target.origin_port}".encode()
            sock.sendall(b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n\r\n")
            buffer = bytearray()
            end = _read_until(sock, buffer, b"\r\n\r\n")
            status_line = bytes(buffer[: buffer.find(b"\r\n")])
            if status_line.split(b" ", 2)[1:2] != [b"200"]:
                raise ConnectionError(f"CONNECT answered {status_line!r}")
            if len(buffer) != end + 4:
                raise ConnectionError("bytes after the CONNECT response")
        return context.wrap_socket(sock, server_hostname=HOST)
    except BaseException:
        sock.close()
        raise


def request_once(tls: ssl.SSLSocket, request: bytes, buffer: bytearray) -> None:
    """Send one GET, read one Content-Length response; ``buffer`` keeps leftover bytes."""
    tls.sendall(request)
    end = _read_until(tls, buffer, b"\r\n\r\n")
    head = bytes(buffer[:end]).split(b"\r\n")
    if head[0].split(b" ", 2)[1:2] != [b"200"]:
        raise ConnectionError(f"response {head[0]!r}")
    length = None
    for line in head[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise ConnectionError("response without Content-Length")
    total = end + 4 + length
    while len(buffer) < total:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed mid-body")
        buffer += chunk
    del buffer[:total]
    if length != BODY_SIZE:
        raise ConnectionError(f"body of {length} bytes, expected {BODY_SIZE}")


def _request_bytes(target: Target, close: bool) -> bytes:
    lines = [
        f"GET {target.path} HTTP/1.1", f"Host: {HOST}:{target.origin_port}", "User-Agent: bench"
    ]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _close(tls: ssl.SSLSocket | None) -> None:
    if tls is not None:
        try:
            tls.close()
        except OSError:
            pass


def run_worker(target: Target, mode: str, start_at: float, stop_at: float) -> WorkerResult:
    """Requests in a loop from ``start_at`` until ``stop_at`` (wall-clock, shared by workers)."""
    context = ssl.create_default_context(cafile=target.cafile)
    result = WorkerResult()
    keep_alive = mode == "keepalive"
    request = _request_bytes(target, close=not keep_alive)
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    tls: ssl.SSLSocket | None = None
    buffer = bytearray()
    while time.time() < stop_at:
        began = time.perf_counter()
        try:
            if tls is None:
                tls = open_tls(target, context)
                buffer.clear()
            request_once(tls, request, buffer)
            result.requests += 1
            result.latencies.append(time.perf_counter() - began)
        except (OSError, ValueError, ConnectionError) as error:
            result.errors += 1
            result.first_error = result.first_error or f"{type(error).__name__}: {error}"
            _close(tls)
            tls = None
            if result.errors > 1000:
                break
            continue
        if not keep_alive:
            _close(tls)
            tls = None
    _close(tls)
    return result


def _worker_entry(target: Target, mode: str, start_at: float, stop_at: float, queue: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = run_worker(target, mode, start_at, stop_at)
    except BaseException as error:  # reported, never hangs the parent
        result = WorkerResult(errors=1, first_error=f"{type(error).__name__}: {error}")
    queue.put(result)


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    first_error: str
    p50_ms: float | None
    p99_ms: float | None
    cpu_percent: float | None = None  # the server's CPU, % of one core, over the load
    loadavg_1m: float | None = None  # the machine's 1-minute load average as the load began

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def run_load(target: Target, mode: str, workers: int, duration: float) -> LoadResult:
    """``workers`` processes running ``mode`` against ``target`` for ``duration`` seconds."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.5  # let every worker fork before the clock starts
    stop_at = start_at + duration
    processes = [
        ctx.Process(target=_worker_entry, args=(target, mode, start_at, stop_at, queue))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    results: list[WorkerResult] = []
    try:
        for _ in processes:
            results.append(queue.get(timeout=duration + 60))
    finally:
        for process in processes:
            process.join(STOP_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join(STOP_TIMEOUT)
    latencies = sorted(value for result in results for value in result.latencies)
    return LoadResult(
        requests=sum(result.requests for result in results),
        errors=sum(result.errors for result in results),
        seconds=duration,
        first_error=next((result.first_error for result in results if result.first_error), ""),
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
    )


def _percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index] * 1000.0


# -- processes under test -------------------------------------------------------------------


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {READY_TIMEOUT} s")


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


class NginxOrigin:
    """Debian nginx serving ``/1k`` over TLS from its own prefix in a temp dir."""

    name = "nginx"
    path = "/1k"

    def __init__(self, binary: str, workdir: Path, pki: OriginPKI) -> None:
        self.binary = binary
        self.prefix = workdir / "nginx"
        self.pki = pki
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        prefix = self.prefix
        temps = "\n".join(
            f"    {kind}_temp_path {prefix}/tmp/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return f"""
user root;
worker_processes auto;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temps}
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    default_type application/octet-stream;
    server {{
        listen {HOST}:{self.port} ssl;
        ssl_certificate {self.pki.good.cert};
        ssl_certificate_key {self.pki.good.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {prefix}/www;
    }}
}}
"""

    def start(self) -> None:
        (self.prefix / "www").mkdir(parents=True)
        (self.prefix / "tmp").mkdir()
        (self.prefix / "www" / self.path.lstrip("/")).write_bytes(b"x" * BODY_SIZE)
        conf = self.prefix / "nginx.conf"
        conf.write_text(self.config())
        command = [
            self.binary, "-p", str(self.prefix), "-c", str(conf),
            "-e", str(self.prefix / "error.log"),
        ]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for_port(self.port, self.process, "nginx")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        _stop(self.process)


class PythonOrigin:
    """The project's ``tests/origin.py --tls``, when nginx is not installed."""

    name = "tests/origin.py"
    path = f"/bytes/{BODY_SIZE}"

    def __init__(self, pki: OriginPKI) -> None:
        self.pki = pki
        self.origin: Any = None
        self.port = 0

    def start(self) -> None:
        self.origin = start_origin(tls=(self.pki.good.cert, self.pki.good.key))
        self.port = self.origin.port

    @property
    def pid(self) -> int:
        return int(self.origin.process.pid)

    def stop(self) -> None:
        if self.origin is not None:
            self.origin.stop()


def make_origin(workdir: Path, pki: OriginPKI) -> NginxOrigin | PythonOrigin:
    binary = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None
    )
    return NginxOrigin(binary, workdir, pki) if binary else PythonOrigin(pki)


def ensure_mitmdump() -> str:
    """The mitmdump of the benchmark's own venv, created (newest installable release) if missing."""
    mitmdump = MITM_VENV / "bin" / "mitmdump"
    if mitmdump.exists():
        return str(mitmdump)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    print(f"creating {MITM_VENV} and installing mitmproxy (first run only) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(MITM_VENV)], check=True)
    with open(CACHE_DIR / "install.log", "wb") as log:
        subprocess.run(
            [str(MITM_VENV / "bin" / "pip"), "install", "-q", "--upgrade", "mitmproxy"],
            check=True, stdout=log, stderr=subprocess.STDOUT,
        )
    return str(mitmdump)


def mitmproxy_version(mitmdump: str) -> str:
    python = str(Path(mitmdump).with_name("python"))
    result = subprocess.run(
        [python, "-c", "import mitmproxy.version as v; print(v.VERSION)"],
        capture_output=True, text=True, timeout=60,
    )
    return result.stdout.strip() or "unknown"


class Mitmdump:
    """mitmdump with flow capture (``-w``) and upstream verification against the test CA."""

    def __init__(self, binary: str, workdir: Path, pki: OriginPKI) -> None:
        self.binary = binary
        self.confdir = workdir / "mitm-conf"
        self.flows = workdir / "mitm-flows.bin"
        self.log = workdir / "mitmdump.log"
        self.pki = pki
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ca_path(self) -> str:
        return str(self.confdir / "mitmproxy-ca-cert.pem")

    def start(self) -> None:
        self.confdir.mkdir()
        command = [
            self.binary, "-q",
            "--listen-host", HOST, "-p", str(self.port),
            "-w", str(self.flows),
            "--set", f"confdir={self.confdir}",
            "--set", f"ssl_verify_upstream_trusted_ca={self.pki.ca_cert}",
        ]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        _wait_for_port(self.port, self.process, "mitmdump")
        deadline = time.monotonic() + READY_TIMEOUT
        while not os.path.exists(self.ca_path) and time.monotonic() < deadline:
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        _stop(self.process)


# -- minting ---------------------------------------------------------------------------------


def measure_minting(hosts: int, lookups: int = 20000) -> dict[str, float]:
    """postcap's LeafMinter in-process: ms per new host (cert + context), µs per cached lookup."""
    from postcap.tls.ca import create_ca
    from postcap.tls.minting import LeafMinter

    minter = LeafMinter(create_ca(), cache_size=hosts + 10)
    names = [f"host{index}.bench.test" for index in range(hosts)]
    began = time.perf_counter()
    for name in names:
        minter.context_for(name)
    mint_seconds = time.perf_counter() - began
    began = time.perf_counter()
    for index in range(lookups):
        minter.context_for(names[index % hosts])
    lookup_seconds = time.perf_counter() - began
    return {
        "hosts": hosts,
        "mint_ms_per_host": mint_seconds * 1000.0 / hosts,
        "cached_lookup_us": lookup_seconds * 1e6 / lookups,
    }


# -- the run ---------------------------------------------------------------------------------

LOADS = (("keepalive", "keep-alive req/s"), ("newconn", "new-connection req/s"))
SYSTEMS = ("direct", "postcap", "mitmdump")


def _session_request_count(server: PostcapProcess, session_id: str) -> int:
    return int(server.rpc("session.get", id=session_id)["request_count"])


def _smoke(target: Target) -> None:
    """One request through the path, so a broken setup fails before the timed loads."""
    context = ssl.create_default_context(cafile=target.cafile)
    tls = open_tls(target, context)
    try:
        request_once(tls, _request_bytes(target, close=True), bytearray())
    finally:
        _close(tls)


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (nginx's workers), from /proc."""
    pids, index = [pid], 0
    while index < len(pids):
        try:
            tasks = os.listdir(f"/proc/{pids[index]}/task")
        except OSError:
            tasks = []
        for task in tasks:
            try:
                children = Path(f"/proc/{pids[index]}/task/{task}/children").read_text().split()
            except OSError:
                continue
            pids.extend(int(child) for child in children)
        index += 1
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants so far (Linux /proc)."""
    ticks = 0
    for member in _process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _measure(
    target: Target, args: argparse.Namespace, system: str, pid: int
) -> dict[str, LoadResult]:
    """Both loads against ``target``; ``pid`` is the server whose CPU use is recorded."""
    _smoke(target)
    results = {}
    for mode, label in LOADS:
        print(f"  {system}: {label} for {args.duration:g} s, {args.workers} workers", flush=True)
        loadavg = os.getloadavg()[0]
        cpu_before = cpu_seconds(pid)
        result = run_load(target, mode, args.workers, args.duration)
        result.cpu_percent = 100.0 * (cpu_seconds(pid) - cpu_before) / (args.duration + 0.5)
        result.loadavg_1m = loadavg
        if result.errors:
            print(f"    {result.errors} errors; first: {result.first_error}", flush=True)
        results[mode] = result
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    loadavg_before = os.getloadavg()
    mitmdump_binary = ensure_mitmdump()
    workdir = Path(tempfile.mkdtemp(prefix="postcap-bench-https-"))
    results: dict[str, dict[str, LoadResult]] = {}
    info: dict[str, Any] = {}
    origin = None
    try:
        pki = make_test_pki(str(workdir / "pki"))
        origin = make_origin(workdir, pki)
        origin.start()
        info["origin"] = origin.name
        print(f"origin: {origin.name} on {HOST}:{origin.port}, TLS, {BODY_SIZE} B", flush=True)

        results["direct"] = _measure(
            Target(origin.port, origin.path, pki.ca_cert), args, "direct", origin.pid
        )

        env = {"SSL_CERT_FILE": pki.ca_cert}
        server = PostcapProcess(workdir / "postcap-data", env=env)
        server.start()
        try:
            session = server.rpc("session.start", name="bench-https")
            target = Target(origin.port, origin.path, server.ca_path, proxy_port=server.port)
            results["postcap"] = _measure(target, args, "postcap", server.pid)
            time.sleep(1.0)  # let the history writer catch up before counting
            info["postcap_captured"] = _session_request_count(server, session["id"])
            server.rpc("session.stop", id=session["id"])
        finally:
            server.stop()

        mitm = Mitmdump(mitmdump_binary, workdir, pki)
        mitm.start()
        try:
            target = Target(origin.port, origin.path, mitm.ca_path, proxy_port=mitm.port)
            results["mitmdump"] = _measure(target, args, "mitmdump", mitm.pid)
        finally:
            mitm.stop()
        info["mitmdump_flow_file_bytes"] = mitm.flows.stat().st_size if mitm.flows.exists() else 0
        info["mitmproxy_version"] = mitmproxy_version(mitmdump_binary)
    finally:
        if origin is not None:
            origin.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    minting = measure_minting(args.hosts)
    return _report(args, results, minting, info, loadavg_before)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _report(
    args: argparse.Namespace,
    results: dict[str, dict[str, LoadResult]],
    minting: dict[str, float],
    info: dict[str, Any],
    loadavg_before: tuple[float, float, float],
) -> dict[str, Any]:
    rows = []
    for mode, label in LOADS:
        rates = {system: results[system][mode].rate for system in SYSTEMS}
        rows.append({"load": label, **rates})
        p50 = {system: results[system][mode].p50_ms for system in SYSTEMS}
        rows.append({"load": f"{label.split(' req/s')[0]} p50 ms", **p50})
        p99 = {system: results[system][mode].p99_ms for system in SYSTEMS}
        rows.append({"load": f"{label.split(' req/s')[0]} p99 ms", **p99})
        cpu = {system: results[system][mode].cpu_percent for system in SYSTEMS}
        rows.append({"load": f"{label.split(' req/s')[0]} server CPU %", **cpu})
    rows.append({"load": f"leaf mint ms/host ({minting['hosts']} hosts)", "direct": None,
                 "postcap": minting["mint_ms_per_host"], "mitmdump": None})
    rows.append({"load": "cached leaf lookup µs", "direct": None,
                 "postcap": minting["cached_lookup_us"], "mitmdump": None})
    for row in rows:
        row["postcap/mitmdump"] = _ratio(row["postcap"], row["mitmdump"])
        row["postcap/direct"] = _ratio(row["postcap"], row["direct"])
    loads = {
        system: {
            mode: {
                "requests": result.requests, "errors": result.errors, "seconds": result.seconds,
                "req_per_s": result.rate, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
                "cpu_percent": result.cpu_percent, "loadavg_1m": result.loadavg_1m,
                "first_error": result.first_error,
            }
            for mode, result in by_mode.items()
        }
        for system, by_mode in results.items()
    }
    return {
        "benchmark": "https",
        "duration_s": args.duration,
        "workers": args.workers,
        "body_bytes": BODY_SIZE,
        "cpu_count": os.cpu_count(),
        "loadavg_before": list(loadavg_before),
        "loadavg_after": list(os.getloadavg()),
        "python": sys.version.split()[0],
        **info,
        "minting": minting,
        "loads": loads,
        "table": rows,
    }


def _cell(value: float | None, ratio: bool = False) -> str:
    if value is None:
        return "—"
    if ratio:
        return f"{value:.2f}×"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def format_table(report: dict[str, Any]) -> str:
    columns = ("direct", "postcap", "mitmdump", "postcap/mitmdump", "postcap/direct")
    header = ["load", "direct", "postcap", "mitmdump", "postcap÷mitmdump", "postcap÷direct"]
    lines = [
        [row["load"], *(_cell(row[c], ratio="/" in c) for c in columns)]
        for row in report["table"]
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        return "| " + " | ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ) + " |"

    out = [render(header), "|" + "|".join(("-" * (w + 1) + ":") if i else "-" * (w + 2)
                                         for i, w in enumerate(widths)) + "|"]
    out += [render(line) for line in lines]
    before = ", ".join(f"{v:.2f}" for v in report["loadavg_before"])
    after = ", ".join(f"{v:.2f}" for v in report["loadavg_after"])
    out.append("")
    out.append(
        f"{report['cpu_count']} CPUs; load average before {before}, after {after}; "
        f"{report['workers']} client workers, {report['duration_s']:g} s per load, "
        f"{report['body_bytes']} B body; origin {report.get('origin')}; "
        f"mitmproxy {report.get('mitmproxy_version')}; Python {report['python']}"
    )
    out.append(
        f"postcap captured {report.get('postcap_captured')} transactions in its session; "
        f"mitmdump flow file {report.get('mitmdump_flow_file_bytes')} bytes"
    )
    out.append("1-minute load average as each load began: " + "; ".join(
        f"{system} " + ", ".join(f"{load['loadavg_1m']:.1f}" for load in by_mode.values())
        for system, by_mode in report["loads"].items()
    ))
    errors = [
        f"{system} {mode}: {load['errors']} errors ({load['first_error']})"
        for system, by_mode in report["loads"].items()
        for mode, load in by_mode.items()
        if load["errors"]
    ]
    out.extend(errors)
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load (10)")
    parser.add_argument("--workers", type=int, default=4, help="client processes (4)")
    parser.add_argument("--hosts", type=int, default=200, help="new hosts to mint (200)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, flows)")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.workers < 1 or args.hosts < 1:
        parser.error("--duration, --workers and --hosts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print()
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
