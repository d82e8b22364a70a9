"""HTTPS through CONNECT with interception: postcap vs mitmdump vs direct, in one run.

    python tests/benchmarks/bench_https.py [--duration 10] [--workers 2] [--json out.json]

What it starts (all on 127.0.0.1, all stopped at the end):

- a TLS origin serving a 1 KiB body: Debian's nginx when installed (own config and
  prefix in a temp dir), else the test suite's Twisted origin;
- postcap (``twistd -n postcap``) with a capture session running (history on),
  trusting the origin's test CA through ``SSL_CERT_FILE``;
- mitmdump (newest ``mitmproxy`` from PyPI, installed once into
  ``~/.cache/postcap-bench/mitm-venv``) with flow capture on (``-w FILE``) and the
  origin's CA as its upstream trust.

Loads, each for ``--duration`` seconds with ``--workers`` client processes of our own
(raw sockets + ``ssl``):

- ``keep-alive``: one CONNECT + TLS handshake per worker, then GETs on it;
- ``new-connection``: a new TCP connection, CONNECT, and TLS handshake per request
  (two handshakes each through a proxy: client-proxy and proxy-origin);
- the same against the origin directly (no proxy).

Also: postcap's cost to mint a leaf certificate for a new host, and a cached lookup.
Prints a table (req/s and ratios) and writes the figures as JSON with ``--json``.
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
import urllib.request
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.certs import make_test_pki  # noqa: E402
from tests.harness import free_port, start_origin  # noqa: E402

MITM_VENV = Path.home() / ".cache" / "postcap-bench" / "mitm-venv"
BODY = b"x" * 1024


# -- processes -----------------------------------------------------------------------------


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_nginx(workdir: Path, cert: str, key: str) -> tuple[subprocess.Popen[bytes], int] | None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        return None
    port = free_port()
    (workdir / "logs").mkdir(exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/tmp_body;
    proxy_temp_path {workdir}/tmp_proxy;
    fastcgi_temp_path {workdir}/tmp_fastcgi;
    uwsgi_temp_path {workdir}/tmp_uwsgi;
    scgi_temp_path {workdir}/tmp_scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ default_type application/octet-stream; return 200 "{BODY.decode()}"; }}
    }}
}}
""")
    process = subprocess.Popen([nginx, "-p", str(workdir), "-c", str(conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process, port


def ensure_mitmdump() -> Path:
    mitmdump = MITM_VENV / "bin" / "mitmdump"
    if not mitmdump.exists():
        print("installing mitmproxy into", MITM_VENV, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(MITM_VENV)], check=True)
        subprocess.run([str(MITM_VENV / "bin" / "pip"), "install", "-q", "mitmproxy"], check=True)
    return mitmdump


def mitm_version(mitmdump: Path) -> str:
    out = subprocess.run([str(mitmdump), "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "?"


# -- the load client -------------------------------------------------------------------------


def _read_response(tls: ssl.SSLSocket, pending: bytearray) -> bytearray:
    """Read one response with Content-Length; returns what was read past it."""
    while b"\r\n\r\n" not in pending:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        pending += chunk
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head.split(b"\r\n")[0].decode("latin-1"))
    body = bytearray(rest)
    while len(body) < length:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return body[length:]


def _open(proxy_port: int | None, origin_port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    if proxy_port is None:
        raw = socket.create_connection(("127.0.0.1", origin_port), timeout=10)
    else:
        raw = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
        raw.sendall(f"CONNECT 127.0.0.1:{origin_port} HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = raw.recv(4096)
            if not chunk:
                raise ConnectionError("proxy closed during CONNECT")
            answer += chunk
        if not answer.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
            raise ConnectionError(answer.split(b"\r\n")[0].decode("latin-1"))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _worker(mode: str, proxy_port: int | None, origin_port: int, ca: str, duration: float,
            results: Any) -> None:
    context = ssl.create_default_context(cafile=ca)
    request = f"GET /body HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n\r\n".encode()
    closing = f"GET /body HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\nConnection: close\r\n\r\n".encode()
    done = errors = 0
    first_error = ""
    deadline = time.monotonic() + duration
    tls: ssl.SSLSocket | None = None
    pending = bytearray()
    while time.monotonic() < deadline:
        try:
            if mode == "keep-alive":
                if tls is None:
                    tls, pending = _open(proxy_port, origin_port, context), bytearray()
                tls.sendall(request)
                pending = _read_response(tls, pending)
            else:
                with _open(proxy_port, origin_port, context) as once:
                    once.sendall(closing)
                    _read_response(once, bytearray())
            done += 1
        except (OSError, ConnectionError, ssl.SSLError) as problem:
            errors += 1
            first_error = first_error or repr(problem)
            if tls is not None:
                tls.close()
                tls = None
            if errors > 1000:
                break
    if tls is not None:
        tls.close()
    results.put((done, errors, first_error))


def run_load(mode: str, proxy_port: int | None, origin_port: int, ca: str, duration: float,
             workers: int) -> dict[str, Any]:
    results: Any = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=_worker,
                                         args=(mode, proxy_port, origin_port, ca, duration, results))
                 for _ in range(workers)]
    started = time.monotonic()
    for process in processes:
        process.start()
    counts = [results.get(timeout=duration + 60) for _ in processes]
    for process in processes:
        process.join(timeout=10)
    elapsed = time.monotonic() - started
    done = sum(c[0] for c in counts)
    figures: dict[str, Any] = {"requests": done, "errors": sum(c[1] for c in counts),
                               "rps": round(done / elapsed, 1)}
    problems = [c[2] for c in counts if c[2]]
    if problems:
        figures["first_error"] = problems[0]
    return figures


# -- leaf minting ----------------------------------------------------------------------------


def minting_cost(count: int = 200) -> dict[str, float]:
    from postcap.tls.ca import load_or_create_ca
    from postcap.tls.minting import LeafMinter

    with tempfile.TemporaryDirectory() as directory:
        minter = LeafMinter(load_or_create_ca(directory))
        started = time.perf_counter()
        for n in range(count):
            minter.context_for(f"host{n}.bench.test")
        new_ms = (time.perf_counter() - started) * 1000 / count
        started = time.perf_counter()
        for _ in range(10_000):
            minter.context_for("host1.bench.test")
        cached_us = (time.perf_counter() - started) * 1e6 / 10_000
    return {"new_host_ms": round(new_ms, 3), "cached_host_us": round(cached_us, 3)}


# -- main ------------------------------------------------------------------------------------


def rpc(control_port: int, token: str, method: str, **params: Any) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{control_port}/rpc",
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())["result"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", dest="out")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="postcap-bench-https-"))
    processes: list[subprocess.Popen[bytes]] = []
    origin = None
    try:
        pki = make_test_pki(str(work / "pki"))
        nginx = start_nginx(work, pki.good.cert, pki.good.key)
        if nginx is not None:
            processes.append(nginx[0])
            origin_port, origin_kind = nginx[1], "nginx"
        else:
            origin = start_origin(tls=(pki.good.cert, pki.good.key))
            origin_port, origin_kind = origin.port, "tests/origin.py (Twisted)"

        twistd = shutil.which("twistd", path=os.path.dirname(sys.executable)) or "twistd"
        data = work / "postcap"
        postcap_port, control_port = free_port(), free_port()
        postcap = subprocess.Popen(
            [twistd, "-n", "--pidfile=", "--logfile", str(work / "postcap.log"), "postcap",
             "--port", str(postcap_port), "--interface", "127.0.0.1",
             "--control", f"tcp:{control_port}:interface=127.0.0.1", "--data-dir", str(data)],
            env=dict(os.environ, SSL_CERT_FILE=pki.ca_cert),
        )
        processes.append(postcap)
        wait_for_port(control_port)
        wait_for_port(postcap_port)
        token = (data / "control.token").read_text().strip()
        session = rpc(control_port, token, "session.start", name="bench-https")

        mitmdump = ensure_mitmdump()
        mitm_port = free_port()
        mitm_conf = work / "mitm"
        mitm = subprocess.Popen(
            [str(mitmdump), "-q", "--listen-host", "127.0.0.1", "--listen-port", str(mitm_port),
             "--set", f"confdir={mitm_conf}", "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
             "-w", str(work / "flows.mitm")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        processes.append(mitm)
        wait_for_port(mitm_port)
        mitm_ca = mitm_conf / "mitmproxy-ca-cert.pem"

        systems: dict[str, tuple[int | None, str]] = {
            "direct": (None, pki.ca_cert),
            "postcap": (postcap_port, str(data / "ca" / "postcap-ca.pem")),
            "mitmdump": (mitm_port, str(mitm_ca)),
        }
        figures: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg()},
            "origin": origin_kind,
            "mitmproxy": mitm_version(mitmdump),
            "duration_s": args.duration,
            "workers": args.workers,
        }
        for mode in ("keep-alive", "new-connection"):
            for name, (port, ca) in systems.items():
                figures[f"{mode}/{name}"] = run_load(mode, port, origin_port, ca, args.duration, args.workers)
                print(f"{mode:15} {name:9} {figures[f'{mode}/{name}']}", flush=True)
        figures["postcap_captured"] = rpc(control_port, token, "session.get", id=session["id"])["request_count"]
        figures["leaf_minting"] = minting_cost()
        figures["machine"]["loadavg_after"] = os.getloadavg()
    finally:
        for process in reversed(processes):
            stop(process)
        if origin is not None:
            origin.stop()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"HTTPS through CONNECT with interception, {args.workers} client processes, "
          f"{args.duration:g} s each; origin: {figures['origin']}; {figures['mitmproxy']}")
    print(f"{'load':16}{'direct':>10}{'postcap':>10}{'mitmdump':>10}{'pc/mitm':>9}{'pc/direct':>11}")
    for mode in ("keep-alive", "new-connection"):
        direct, ours, theirs = (figures[f"{mode}/{n}"]["rps"] for n in ("direct", "postcap", "mitmdump"))
        print(f"{mode + ' req/s':16}{direct:>10.0f}{ours:>10.0f}{theirs:>10.0f}"
              f"{ours / theirs if theirs else float('nan'):>9.2f}{ours / direct if direct else float('nan'):>11.2f}")
    errors = {k: v["errors"] for k, v in figures.items() if isinstance(v, dict) and "errors" in v}
    print(f"errors: {errors}")
    print(f"postcap captured {figures['postcap_captured']} transactions in its session")
    minting = figures["leaf_minting"]
    print(f"leaf minting: {minting['new_host_ms']} ms per new host, {minting['cached_host_us']} µs cached")
    print(f"load average before/after: {figures['machine']['loadavg_before']} / {figures['machine']['loadavg_after']}")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
