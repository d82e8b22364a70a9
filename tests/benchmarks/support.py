"""Shared pieces of the benchmarks: tools, the nginx origin, the systems under test, process stats.

Everything listens on 127.0.0.1 and every process started here is stopped by
its ``stop()`` (SIGTERM, then SIGKILL after a bound), also on errors (use them
as context managers).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness import free_port  # noqa: E402
from tests.postcap_process import PostcapProcess  # noqa: E402

CACHE = Path(os.environ.get("POSTCAP_BENCH_CACHE", Path.home() / ".cache" / "postcap-bench"))
MITM_VENV = CACHE / "mitm-venv"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KIB = 1024
MIB = 1024 * 1024
BODY_SIZES = {"1k": KIB, "100k": 100 * KIB, "10m": 10 * MIB}


# -- tools ---------------------------------------------------------------------------------


def ensure_apt(*binaries: str) -> None:
    """apt-get install the Debian packages named like the missing binaries (nginx, wrk)."""
    missing = [
        name
        for name in binaries
        if not shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin")
    ]
    if not missing:
        return
    print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", *missing],
        check=True,
        timeout=600,
        stdout=subprocess.DEVNULL,
    )


def ensure_postcap_python() -> None:
    """Re-run this script under a venv with postcap installed when this Python lacks it (or twistd).

    The venv (``~/.cache/postcap-bench/postcap-venv``) gets this checkout installed editable.
    """
    import importlib.metadata

    try:
        importlib.metadata.version("postcap")  # installed (so twistd finds the plugin)
        installed = shutil.which("twistd", path=os.path.dirname(sys.executable)) is not None
    except importlib.metadata.PackageNotFoundError:
        installed = False
    if installed:
        return
    if os.environ.get("POSTCAP_BENCH_REEXEC"):
        raise RuntimeError("postcap is not installed in the benchmark venv")
    venv = CACHE / "postcap-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with this postcap checkout", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "-e",
                f"{REPO}[test]",
                "--config-settings",
                "editable_mode=compat",
            ],
            check=True,
            timeout=900,
        )
    os.environ["POSTCAP_BENCH_REEXEC"] = "1"
    os.execv(str(python), [str(python), *sys.argv])


def ensure_mitmdump() -> str:
    """mitmdump from the benchmark's own venv (newest ``mitmproxy`` on PyPI), made on first use."""
    mitmdump = MITM_VENV / "bin" / "mitmdump"
    if not mitmdump.exists():
        print(f"creating {MITM_VENV} with pip install mitmproxy", file=sys.stderr)
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(MITM_VENV)], check=True, timeout=300)
        subprocess.run(
            [str(MITM_VENV / "bin" / "pip"), "install", "-q", "--upgrade", "mitmproxy"],
            check=True,
            timeout=900,
        )
    return str(mitmdump)


def mitmproxy_version() -> str:
    result = subprocess.run(
        [
            str(MITM_VENV / "bin" / "python"),
            "-c",
            "import mitmproxy.version as v; print(v.VERSION)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.strip()


def wait_for_port(
    port: int,
    process: subprocess.Popen[Any] | None,
    timeout: float = READY_TIMEOUT,
    also: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before listening on {port}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if also is None or also.exists():
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def stop_process(process: subprocess.Popen[Any] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


# -- process statistics ----------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (its own, not its children's)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class ProcessWatch:
    """CPU used and RSS (start, peak, end) of one process over a measured interval."""

    pid: int | None
    cpu_start: float = 0.0
    wall_start: float = 0.0
    rss_start_kib: int = 0
    rss_peak_kib: int = 0
    samples: int = 0

    def start(self) -> "ProcessWatch":
        if self.pid is not None:
            self.cpu_start = cpu_seconds(self.pid)
            self.rss_start_kib = self.rss_peak_kib = rss_kib(self.pid)
        self.wall_start = time.monotonic()
        return self

    def sample(self) -> None:
        if self.pid is not None:
            self.rss_peak_kib = max(self.rss_peak_kib, rss_kib(self.pid))
            self.samples += 1

    def result(self) -> dict[str, float]:
        if self.pid is None:
            return {}
        self.sample()
        wall = max(time.monotonic() - self.wall_start, 1e-9)
        return {
            "cpu_percent": round(100 * (cpu_seconds(self.pid) - self.cpu_start) / wall, 1),
            "rss_start_mib": round(self.rss_start_kib / KIB, 1),
            "rss_peak_mib": round(self.rss_peak_kib / KIB, 1),
            "rss_end_mib": round(rss_kib(self.pid) / KIB, 1),
        }


# -- the origin -----------------------------------------------------------------------------

NGINX_CONF = """\
{user}
worker_processes 1;
error_log {prefix}/error.log error;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    types {{ application/octet-stream bin; text/plain txt; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path {prefix}/tmp;
    proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp;
    uwsgi_temp_path {prefix}/tmp;
    scgi_temp_path {prefix}/tmp;
    ssl_session_cache off;
    ssl_session_tickets off;
    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {prefix}/www;
        location / {{ }}
    }}
}}
"""


class NginxOrigin:
    """Debian nginx, own prefix and config in a temp dir: /1k, /100k, /10m over HTTP and TLS.

    TLS sessions are not resumed (no cache, no tickets), so every new
    connection pays a full handshake, whoever the client is.
    """

    def __init__(self, workdir: str | None = None) -> None:
        self.prefix = tempfile.mkdtemp(prefix="postcap-bench-nginx-", dir=workdir)
        os.chmod(self.prefix, 0o755)
        self.http_port = free_port()
        self.https_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.pki: Any = None  # tests.certs.OriginPKI

    def start(self) -> "NginxOrigin":
        ensure_apt("nginx")
        prefix = Path(self.prefix)
        (prefix / "tmp").mkdir()
        www = prefix / "www"
        www.mkdir()
        for name, size in BODY_SIZES.items():
            with open(www / name, "wb") as handle:
                chunk = (b"postcap-benchmark-" * (MIB // 18 + 1))[:MIB]
                remaining = size
                while remaining:
                    handle.write(chunk[: min(remaining, MIB)])
                    remaining -= min(remaining, MIB)
        for path in (www, *www.iterdir()):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        from tests.certs import (
            make_test_pki,
        )  # needs cryptography: imported once postcap's venv runs

        self.pki = make_test_pki(str(prefix / "pki"))
        os.chmod(prefix / "pki", 0o755)
        for path in (prefix / "pki").iterdir():
            os.chmod(path, 0o644)
        conf = prefix / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                user="user root;" if os.geteuid() == 0 else "",
                prefix=self.prefix,
                http_port=self.http_port,
                https_port=self.https_port,
                cert=self.pki.good.cert,
                key=self.pki.good.key,
            )
        )
        nginx = (
            shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")
            or "/usr/sbin/nginx"
        )
        self.process = subprocess.Popen(
            [nginx, "-p", self.prefix, "-c", str(conf), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_for_port(self.http_port, self.process)
        wait_for_port(self.https_port, self.process)
        return self

    @property
    def ca_cert(self) -> str:
        assert self.pki is not None
        return self.pki.ca_cert

    def stop(self) -> None:
        stop_process(self.process)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> "NginxOrigin":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the systems under test -------------------------------------------------------------------


@dataclass
class System:
    """A way to reach the origin: ``direct`` (no proxy) or a proxy on 127.0.0.1:port."""

    name: str
    port: int | None = None  # None: direct
    pid: int | None = None
    ca_cert: str | None = None  # the CA a client trusts for intercepted TLS (proxy) or the origin's
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def is_proxy(self) -> bool:
        return self.port is not None


class PostcapSystem:
    """The real ``twistd -n postcap`` trusting the origin's CA (SSL_CERT_FILE); optional session."""

    def __init__(
        self,
        name: str,
        origin: NginxOrigin,
        with_session: bool,
        workdir: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.data_dir = tempfile.mkdtemp(prefix="postcap-bench-data-", dir=workdir)
        self.server = PostcapProcess(
            self.data_dir, *extra_args, env={"SSL_CERT_FILE": origin.ca_cert}
        )
        self.with_session = with_session
        self.session: dict[str, Any] | None = None

    def start(self) -> System:
        self.server.start()
        if self.with_session:
            self.session = self.server.rpc("session.start", name="benchmark")
        return System(
            self.name,
            self.server.port,
            self.server.pid,
            self.server.ca_path,
            {"session": bool(self.session)},
        )

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MitmdumpSystem:
    """mitmdump with flow capture on (``-w FILE``), trusting the origin's CA, output quiet."""

    def __init__(self, origin: NginxOrigin, workdir: str | None = None) -> None:
        self.origin = origin
        self.dir = tempfile.mkdtemp(prefix="postcap-bench-mitm-", dir=workdir)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> System:
        mitmdump = ensure_mitmdump()
        confdir = Path(self.dir, "conf")
        self.flows = Path(self.dir, "flows.mitm")
        self.process = subprocess.Popen(
            [
                mitmdump,
                "--listen-host",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-q",
                "-w",
                str(self.flows),
                "--set",
                f"confdir={confdir}",
                "--set",
                f"ssl_verify_upstream_trusted_ca={self.origin.ca_cert}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ca = confdir / "mitmproxy-ca-cert.pem"
        wait_for_port(self.port, self.process, also=ca)
        return System(
            "mitmdump",
            self.port,
            self.process.pid,
            str(ca),
            {"version": mitmproxy_version(), "capture": "-w"},
        )

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- output ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "loadavg": [round(value, 2) for value in os.getloadavg()],
        "python": sys.version.split()[0],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def print_table(rows: list[dict[str, Any]], systems: list[str], out: Any = sys.stdout) -> None:
    """rows: {"figure", "unit", "values": {system: value}}; ratios to mitmdump and direct."""
    headers = ["figure", *systems, "postcap/mitmdump", "postcap/direct"]
    table = []
    for row in rows:
        values = row["values"]
        postcap = values.get("postcap")
        table.append(
            [
                f"{row['figure']} [{row['unit']}]",
                *(fmt(values.get(name)) for name in systems),
                ratio(postcap, values.get("mitmdump")),
                ratio(postcap, values.get("direct")),
            ]
        )
    widths = [max(len(str(line[i])) for line in [headers, *table]) for i in range(len(headers))]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for line in table:
        print(
            "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(line, widths))
            ),
            file=out,
        )


def write_json(path: str, data: Any) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")
