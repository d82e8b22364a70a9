"""End to end: ``postcap run -- COMMAND`` with curl, Python (urllib, httpx), Node.js and
git over HTTPS to local origins; sessions, exit statuses and signals."""

from __future__ import annotations

import http.server
import importlib.util
import os
import shutil
import signal
import ssl
import subprocess
import sys
import textwrap
import threading
from typing import Any, Iterator

import pytest

from tests.certs import OriginPKI
from tests.harness import Origin, requires_curl
from tests.postcap_process import PostcapProcess

pytestmark = requires_curl


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki: OriginPKI) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("run"), env={"SSL_CERT_FILE": pki.ca_cert}) as running:
        yield running


def postcap_run(server: PostcapProcess, *command: str, name: str | None = None,
                **popen: Any) -> subprocess.CompletedProcess[bytes]:
    """``postcap run`` as a user types it; the environment has no trace of the test PKI."""
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "NO_PROXY", "no_proxy")}
    env["NO_PROXY"] = "127.0.0.1,localhost"  # would bypass postcap; postcap run empties it
    args = [sys.executable, "-m", "postcap", "run", "--data-dir", server.data_dir]
    if name:
        args += ["--name", name]
    return subprocess.run([*args, "--", *command], capture_output=True, env=env, timeout=60, **popen)


def only_session(server: PostcapProcess, name: str) -> dict[str, Any]:
    (session,) = [s for s in server.rpc("session.list", limit=100)["items"] if s["name"] == name]
    return session


def test_curl_over_https_in_its_own_session(server: PostcapProcess, tls_origin: Origin) -> None:
    result = postcap_run(server, "curl", "-sS", tls_origin.url("/hello"), name="curl-https")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello from origin\n"
    session = only_session(server, "curl-https")
    assert session["state"] == "stopped" and session["request_count"] == 1
    (item,) = server.requests(session["id"])
    assert item["url"] == tls_origin.url("/hello")
    assert server.rpc("server.info")["active_session"] is None


def test_default_session_name_and_exit_status(server: PostcapProcess, origin: Origin) -> None:
    result = postcap_run(server, "sh", "-c", f"curl -sS {origin.url('/hello')} && exit 7")
    assert result.returncode == 7
    assert result.stdout == b"hello from origin\n"
    assert only_session(server, "run: sh")["request_count"] == 1


def test_an_active_session_is_used_and_left_running(server: PostcapProcess, origin: Origin) -> None:
    active = server.rpc("session.start", name="already")
    try:
        assert postcap_run(server, "curl", "-sS", origin.url("/hello")).returncode == 0
        assert server.rpc("server.info")["active_session"]["id"] == active["id"]
        assert len(server.requests(active["id"])) == 1
    finally:
        server.rpc("session.stop")


@pytest.mark.parametrize("client", ["urllib", "httpx", "requests"])
def test_python_clients(server: PostcapProcess, tls_origin: Origin, client: str) -> None:
    if importlib.util.find_spec(client) is None:
        pytest.skip(f"{client} is not installed")
    code = {
        "requests": "import requests; print(requests.get({url!r}).text, end='')",
        "urllib": "import urllib.request as u; print(u.urlopen({url!r}).read().decode(), end='')",
        "httpx": "import httpx; print(httpx.get({url!r}).text, end='')",
    }[client].format(url=tls_origin.url("/hello"))
    result = postcap_run(server, sys.executable, "-c", code, name=f"py-{client}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello from origin\n"
    assert only_session(server, f"py-{client}")["request_count"] == 1


NODE_CLIENT = textwrap.dedent("""
    // Node.js 24+ (and 22.21+) fetch honours NODE_USE_ENV_PROXY; older Node needs the
    // proxy spoken by hand.  Either way the CA comes from NODE_EXTRA_CA_CERTS.
    const http = require('http'), tls = require('tls');
    const target = new URL(process.argv[2]);
    const [major, minor] = process.versions.node.split('.').map(Number);
    if (major >= 24 || (major === 22 && minor >= 21)) {
      fetch(target).then(r => r.text()).then(t => process.stdout.write(t));
    } else {
      const proxy = new URL(process.env.HTTPS_PROXY);
      http.request({host: proxy.hostname, port: proxy.port, method: 'CONNECT',
                    path: `${target.hostname}:${target.port}`})
        .on('connect', (res, socket) => {
          if (res.statusCode !== 200) { console.error('CONNECT', res.statusCode); process.exit(3); }
          const secure = tls.connect({socket, servername: target.hostname}, () => {
            secure.write(`GET ${target.pathname} HTTP/1.1\\r\\nHost: ${target.host}\\r\\n` +
                         'Connection: close\\r\\n\\r\\n');
          });
          let answer = '';
          secure.on('data', d => answer += d).on('end', () =>
            process.stdout.write(answer.split('\\r\\n\\r\\n').slice(1).join('\\r\\n\\r\\n')));
          secure.on('error', e => { console.error(e.message); process.exit(4); });
        }).end();
    }
""")


def test_node(server: PostcapProcess, tls_origin: Origin, tmp_path: Any) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    script = tmp_path / "client.js"
    script.write_text(NODE_CLIENT)
    url = tls_origin.url("/hello").replace("127.0.0.1", "localhost")
    result = postcap_run(server, "node", str(script), url, name="node")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello from origin\n"
    assert only_session(server, "node")["request_count"] == 1


@pytest.fixture
def git_origin(tmp_path: Any, pki: OriginPKI) -> Iterator[str]:
    """A dumb-HTTP git repository served over TLS (the test PKI) on 127.0.0.1."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "served"
    work = tmp_path / "work"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", "--bare", str(root / "repo.git")], check=True)
    subprocess.run([*git, "init", "-q", str(work)], check=True)
    (work / "README").write_text("captured by postcap\n")
    subprocess.run([*git, "-C", str(work), "add", "README"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "first"], check=True)
    subprocess.run([*git, "-C", str(work), "push", "-q", str(root / "repo.git"), "HEAD:main"], check=True)
    subprocess.run(["git", "-C", str(root / "repo.git"), "update-server-info"], check=True)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.good.cert, pki.good.key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}/repo.git"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_git_clone_over_https(server: PostcapProcess, git_origin: str, tmp_path: Any) -> None:
    clone = tmp_path / "clone"
    result = postcap_run(server, "git", "clone", "-q", git_origin, str(clone), name="git")
    assert result.returncode == 0, result.stderr
    assert (clone / "README").read_text() == "captured by postcap\n"
    urls = [item["url"] for item in server.requests(only_session(server, "git")["id"], limit=1000)]
    assert f"{git_origin}/info/refs?service=git-upload-pack" in urls
    assert any(url.startswith(f"{git_origin}/objects/") for url in urls)


def test_signals_are_forwarded(server: PostcapProcess) -> None:
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
            "print('ready', flush=True)\ntime.sleep(30)\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "postcap", "run", "--data-dir", server.data_dir, "--name", "signal",
         "--", sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 42
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()  # type: ignore[union-attr]
    assert only_session(server, "signal")["state"] == "stopped"


def test_errors_are_one_line(server: PostcapProcess, tmp_path: Any) -> None:
    missing = postcap_run(server, "no-such-command-postcap")
    assert missing.returncode == 127 and missing.stderr.count(b"\n") == 1
    env = dict(os.environ)
    unreachable = subprocess.run(
        [sys.executable, "-m", "postcap", "run", "--data-dir", str(tmp_path), "--control",
         "http://127.0.0.1:9", "--", "true"], capture_output=True, env=env, timeout=60)
    assert unreachable.returncode == 125
    assert unreachable.stderr.startswith(b"postcap run: ") and unreachable.stderr.count(b"\n") == 1


def test_control_as_an_endpoint_string(server: PostcapProcess, origin: Origin, tmp_path: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "postcap", "run", "--data-dir", str(tmp_path),
         "--control", f"tcp:{server.control_port}:interface=127.0.0.1",
         "--token-file", os.path.join(server.data_dir, "control.token"), "--name", "by-endpoint",
         "--", "curl", "-sS", origin.url("/hello")], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert only_session(server, "by-endpoint")["request_count"] == 1
