"""Start and stop as operators see them, with the real twistd: one-line start errors
(foreground and daemonised), no stale pidfile, permissions of everything postcap
writes, and a daemon on a UNIX control socket that postcapctl finds and that stops
cleanly."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.harness import free_port
from tests.postcap_process import TWISTD, PostcapProcess

CTL = [sys.executable, "-m", "postcap.ctl"]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def _twistd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TWISTD, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _postcap_args(data_dir: Path, port: int | str = 0, control: str = "tcp:0:interface=127.0.0.1"
                  ) -> list[str]:
    return ["postcap", "--port", str(port), "--interface", "127.0.0.1", "--control", control,
            "--data-dir", str(data_dir)]


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "Usage:" not in stderr
    return lines[0]


def _exited(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_daemonised_start_with_the_control_port_taken_fails_with_one_line(
    tmp_path: Path, taken_port: int
) -> None:
    pidfile = tmp_path / "postcap.pid"
    result = _twistd("--pidfile", str(pidfile), "--logfile", str(tmp_path / "twistd.log"),
                     *_postcap_args(tmp_path / "data", control=f"tcp:{taken_port}:interface=127.0.0.1"))
    assert result.returncode != 0
    line = _one_line(result.stderr)
    assert f"--control tcp:{taken_port}" in line and "in use" in line
    assert not pidfile.exists()


def test_proxy_port_taken_in_the_foreground_is_one_line(tmp_path: Path, taken_port: int) -> None:
    result = _twistd("-n", "--pidfile", str(tmp_path / "p.pid"), "--logfile",
                     str(tmp_path / "twistd.log"), *_postcap_args(tmp_path / "data", taken_port))
    assert result.returncode != 0
    assert f"--port {taken_port}" in _one_line(result.stderr)
    assert not (tmp_path / "p.pid").exists()


@pytest.mark.parametrize("option, value, named", [
    ("--upstream-timeout", "-1", "--upstream-timeout '-1': must be a positive number"),
    ("--port", "http", "--port 'http': must be a number"),
    ("--max-connections", "0", "--max-connections '0': must be >= 1"),
    ("--no-such-option", None, "--no-such-option not recognized"),
])
def test_a_bad_option_is_one_line_naming_it(
    tmp_path: Path, option: str, value: str | None, named: str
) -> None:
    extra = [option] if value is None else [option, value]
    result = _twistd("-n", "--pidfile=", *_postcap_args(tmp_path / "data"), *extra)
    assert result.returncode == 2
    assert named in _one_line(result.stderr)


def test_a_looser_data_dir_is_tightened_and_every_file_is_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    old_log = data / "twistd.log"
    old_log.write_text("an earlier run\n")
    old_log.chmod(0o644)
    with PostcapProcess(data) as server:
        server.rpc("session.start", name="modes")
        server.curl("http://postcap.cert/ca.pem")
        server.rpc("session.stop")
        deadline = time.monotonic() + 10
        while not (data / "history.sqlite3-wal").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        written = [Path(root, name) for root, _, names in os.walk(data) for name in names]
        names = {path.name for path in written}
        assert {"history.sqlite3", "history.sqlite3-wal", "history.sqlite3-shm", "twistd.log",
                "control.token", "server.json", "postcap-ca-key.pem"} <= names
        loose = {str(path): oct(stat.S_IMODE(path.stat().st_mode)) for path in written
                 if stat.S_IMODE(path.stat().st_mode) & 0o077}
        assert loose == {}
        assert f"tightened permissions of {data} from 0755 to 0700" in server.log()


def test_daemon_on_a_unix_control_socket(tmp_path: Path) -> None:
    """Daemonised with ``--control unix:PATH``: postcapctl finds it through the data dir
    and through every form of --control; the socket is owner-only; SIGTERM stops it
    cleanly and leaves no pidfile and no server.json."""
    data, socket_path, pidfile = tmp_path / "data", tmp_path / "control.sock", tmp_path / "p.pid"
    port = free_port()
    started = _twistd("--pidfile", str(pidfile), "--logfile", str(tmp_path / "twistd.log"),
                      *_postcap_args(data, port, f"unix:{socket_path}"))
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 20
        while not (data / "server.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
        env = dict(os.environ, POSTCAP_HOME=str(tmp_path / "elsewhere"))
        for options in (["--data-dir", str(data)],
                        ["--control", f"unix:{socket_path}", "--data-dir", str(data)],
                        ["--control", f"unix:{socket_path}",
                         "--token-file", str(data / "control.token")]):
            status = subprocess.run([*CTL, *options, "--json", "status"], capture_output=True,
                                    text=True, timeout=60, env=env)
            assert status.returncode == 0, status.stderr
            assert f'"port": {port}' in status.stdout
        pid = int(pidfile.read_text())
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
    deadline = time.monotonic() + 20
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pidfile.exists()
    assert not (data / "server.json").exists()
    assert not socket_path.exists()
    assert "postcap stopped; history flushed" in (tmp_path / "twistd.log").read_text()
    assert _exited(pid)
    # Stopped: no server.json, so postcapctl sends its token nowhere.
    gone = subprocess.run([*CTL, "--data-dir", str(data), "status"], capture_output=True,
                          text=True, timeout=60)
    assert gone.returncode == 3 and "no running postcap found" in gone.stderr


class LowLimitProcess(PostcapProcess):
    """postcap started with a soft descriptor limit of 256 (the hard one unchanged)."""

    def command(self) -> list[str]:
        wrapper = ("import os, resource, sys; hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
                   "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)); "
                   "os.execv(sys.argv[1], sys.argv[1:])")
        return [sys.executable, "-c", wrapper, *super().command()]


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one_and_logged(tmp_path: Path) -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip("needs a finite hard limit above 256")
    with LowLimitProcess(tmp_path / "data") as server:
        limits = Path(f"/proc/{server.pid}/limits").read_text()
        line = next(row for row in limits.splitlines() if row.startswith("Max open files"))
        assert line.split()[3:5] == [str(hard), str(hard)]
        assert f"raised the file descriptor limit from 256 to {hard}" in server.log()
        assert server.rpc("server.info")["proxy"]["port"] == server.port
