"""``postcap run [--name NAME] -- COMMAND [ARGS…]``: one command, its traffic through postcap.

The command runs with the running postcap as its HTTP and HTTPS proxy and a CA
bundle (the system's roots plus postcap's CA) named by the variables the common
runtimes read.  Nothing outside the command's environment changes: no system
proxy, no trust store.  A session named after the command captures it unless one
is already active; the session it started is stopped when the command exits.

Exit status: the command's (128 + N when a signal N ended it); 125 when postcap
cannot be reached or refuses; 126 when the command cannot be run; 127 when it is
not found; 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from typing import Any, Mapping, Sequence

from postcap.client import BlockingClient, PostcapError, connect

EXIT_USAGE = 2
EXIT_POSTCAP = 125
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
NO_PROXY_VARIABLES = ("NO_PROXY", "no_proxy")
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
                "GIT_SSL_CAINFO", "AWS_CA_BUNDLE")
#: Where system roots are looked for when Python's OpenSSL names no CA file.
SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                  "/etc/ssl/cert.pem")
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class RunError(Exception):
    """``postcap run`` cannot go on; the message is one line for stderr."""

    def __init__(self, message: str, status: int = EXIT_POSTCAP) -> None:
        super().__init__(message)
        self.status = status


def system_roots() -> str | None:
    """The system's CA bundle file (else certifi's), or None when there is none."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, *SYSTEM_BUNDLES):
        if candidate and os.path.isfile(candidate):
            return candidate
    try:
        import certifi
    except ImportError:
        return None
    return str(certifi.where())


def write_bundle(ca_pem: str, directory: str | None = None) -> str:
    """A temporary PEM file: the system roots, then postcap's CA."""
    roots = system_roots()
    descriptor, path = tempfile.mkstemp(prefix="postcap-run-", suffix=".pem", dir=directory)
    with os.fdopen(descriptor, "w", encoding="utf-8") as bundle:
        if roots is not None:
            with open(roots, encoding="utf-8", errors="replace") as system:
                bundle.write(system.read().rstrip("\n") + "\n")
        bundle.write("# postcap CA\n" + ca_pem.strip() + "\n")
    os.chmod(path, 0o644)
    return path


def proxy_url(info: Mapping[str, Any], control_url: str) -> str:
    """The proxy as a client on this machine reaches it."""
    proxy = info.get("proxy") or {}
    if not proxy.get("enabled", True) or not proxy.get("port"):
        raise RunError("the proxy is disabled (postcapctl proxy enable, or proxy.enable)")
    mode = info.get("mode", "regular")
    if mode != "regular":
        raise RunError(f"postcap runs in {mode} mode, not as a forward proxy")
    host = info.get("interface") or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1" if "[" not in control_url else "::1"
    return f"http://[{host}]:{proxy['port']}" if ":" in host else f"http://{host}:{proxy['port']}"


def child_environment(environ: Mapping[str, str], proxy: str, bundle: str) -> dict[str, str]:
    """The command's environment: proxy and CA variables set, ``NO_PROXY`` emptied."""
    env = dict(environ)
    for name in PROXY_VARIABLES:
        env[name] = proxy
    for name in NO_PROXY_VARIABLES:
        env[name] = ""  # every listed host would bypass the capture
    for name in CA_VARIABLES:
        env[name] = bundle
    env["NODE_USE_ENV_PROXY"] = "1"
    return env


def session_name(command: Sequence[str]) -> str:
    """``run: PROGRAM`` (arguments can hold secrets, so they are left out)."""
    return f"run: {os.path.basename(command[0])}"[:200]


def start_session(client: BlockingClient, name: str, info: Mapping[str, Any]) -> str | None:
    """Start a session unless one is active; the id of the one started, or None."""
    if info.get("active_session"):
        return None
    try:
        return str(client.session_start(name=name)["id"])
    except PostcapError as exc:
        if exc.code == -32001:  # another client started one meanwhile: capture into it
            return None
        raise


def run_command(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``command``, forwarding SIGINT/SIGTERM/SIGHUP to it; its exit status."""
    try:
        child = subprocess.Popen(list(command), env=dict(env))
    except FileNotFoundError:
        raise RunError(f"{command[0]}: command not found", EXIT_NOT_FOUND) from None
    except PermissionError as exc:
        raise RunError(f"{command[0]}: {exc.strerror}", EXIT_CANNOT_RUN) from None
    except OSError as exc:
        raise RunError(f"{command[0]}: {exc.strerror or exc}", EXIT_CANNOT_RUN) from None

    def forward(signum: int, _frame: Any) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    try:
        status = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 - status if status < 0 else status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postcap run",
        description="Run one command with its HTTP(S) traffic going through the running postcap.",
        epilog="exit status: the command's; 125 postcap unreachable or refusing, "
               "126 command not runnable, 127 command not found",
    )
    parser.add_argument("--name", help="session name (default: run: PROGRAM)")
    parser.add_argument("--data-dir", help="postcap's data dir [default: $POSTCAP_HOME or ~/.postcap]")
    parser.add_argument("--control", metavar="ENDPOINT",
                        help="control endpoint, any form postcapctl takes (default: from the data dir)")
    parser.add_argument("--token-file", metavar="FILE", help="token file (default: DATA_DIR/control.token)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS…]")
    return parser


def open_client(data_dir: str | None, control: str | None, token_file: str | None) -> BlockingClient:
    """The server as ``postcapctl`` finds it (``--data-dir``, ``POSTCAP_HOME``, ``--control``)."""
    return connect(control, token_file=token_file,
                   home=os.path.abspath(data_dir) if data_dir else None)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[2:] if argv is None else argv))
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("postcap run: give the command after --, e.g. postcap run -- curl https://example.com",
              file=sys.stderr)
        return EXIT_USAGE
    if shutil.which(command[0]) is None and os.sep not in command[0]:
        print(f"postcap run: {command[0]}: command not found", file=sys.stderr)
        return EXIT_NOT_FOUND
    bundle = None
    started: str | None = None
    client: BlockingClient | None = None
    try:
        client = open_client(args.data_dir, args.control, args.token_file)
        info = client.server_info()
        proxy = proxy_url(info, client.control_url)
        bundle = write_bundle(client.ca_get()["pem"])
        started = start_session(client, args.name or session_name(command), info)
        return run_command(command, child_environment(os.environ, proxy, bundle))
    except RunError as exc:
        print(f"postcap run: {exc}", file=sys.stderr)
        return exc.status
    except PostcapError as exc:
        print(f"postcap run: {exc}", file=sys.stderr)
        return EXIT_POSTCAP
    finally:
        if started is not None and client is not None:
            try:
                client.session_stop(started)
            except PostcapError as exc:
                if exc.code != -32002:  # already stopped by someone else
                    print(f"postcap run: could not stop session {started}: {exc}", file=sys.stderr)
        if bundle is not None:
            os.unlink(bundle)


__all__ = ["child_environment", "main", "proxy_url", "run_command", "write_bundle"]
