"""Crash safety with the real ``twistd -n postcap``: SIGKILL in the middle of traffic,
and data dirs that cannot be written at start (read-only, disk full)."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import threading
import time
from typing import Any, Iterator

import pytest

from tests.harness import start_origin
from tests.postcap_process import PostcapProcess


def _traffic(server: PostcapProcess, origin_url: str, stop: threading.Event,
             completed: list[tuple[str, float]]) -> None:
    """Keep-alive GETs with unique paths until ``stop``; records (path, completion time)."""
    number = 0
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                stream = sock.makefile("rb")
                while not stop.is_set():
                    path = f"/status/200?n={number}"
                    number += 1
                    sock.sendall(f"GET {origin_url}{path} HTTP/1.1\r\n\r\n".encode())
                    assert stream.readline().startswith(b"HTTP/1.1 200")
                    length = 0
                    while (line := stream.readline()) not in (b"\r\n", b""):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    stream.read(length)
                    completed.append((path, time.monotonic()))
        except (OSError, AssertionError):
            time.sleep(0.05)


def test_sigkill_during_traffic_loses_nothing_completed_a_second_before(tmp_path: Any) -> None:
    data_dir = tmp_path / "data"
    origin = start_origin()
    try:
        first = PostcapProcess(data_dir).start()
        session = first.rpc("session.start", name="crash")
        stop, completed = threading.Event(), []  # type: ignore[var-annotated]
        workers = [threading.Thread(target=_traffic, args=(first, f"http://{origin.authority}", stop, completed))
                   for _ in range(4)]
        for worker in workers:
            worker.start()
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and (len(completed) < 150 or time.monotonic() < deadline - 12):
                time.sleep(0.1)
            killed_at = time.monotonic()
            first.kill()
        finally:
            stop.set()
            for worker in workers:
                worker.join(10)
        durable = {path for path, at in completed if at < killed_at - 1.0}
        assert len(durable) >= 10, "not enough traffic before the kill"
        database = os.path.join(data_dir, "history.sqlite3")
        with contextlib.closing(sqlite3.connect(database)) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        second = PostcapProcess(data_dir).start()
        try:
            assert second.rpc("session.get", id=session["id"])["state"] == "stopped"
            urls: set[str] = set()
            offset = 0
            while True:
                page = second.rpc("request.list", session_id=session["id"], limit=1000, offset=offset)
                urls.update(item["url"] for item in page["items"])
                offset += 1000
                if offset >= page["total"]:
                    break
            recorded = {url[len(f"http://{origin.authority}"):] for url in urls}
            missing = durable - recorded
            assert not missing, f"{len(missing)} of {len(durable)} completed transactions lost"
        finally:
            second.stop()
    finally:
        origin.stop()


# -- data dirs that cannot be written -----------------------------------------------------------


def _run_expecting_failure(data_dir: str) -> str:
    process = PostcapProcess(data_dir)
    command = [part for part in process.command() if part != process.log_path]
    command.remove("--logfile")
    result = subprocess.run(command, capture_output=True, timeout=60)
    output = (result.stdout + result.stderr).decode()
    assert result.returncode != 0
    assert "Traceback" not in output
    return output


@contextlib.contextmanager
def read_only(path: str) -> Iterator[None]:
    """``path`` read-only: a read-only bind mount as root (who ignores modes), else chmod."""
    if os.geteuid() != 0:
        os.chmod(path, 0o500)
        try:
            yield
        finally:
            os.chmod(path, 0o700)
        return
    if subprocess.run(["mount", "--bind", path, path], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", path], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", path], capture_output=True)


def test_read_only_data_dir_fails_with_one_line(tmp_path: Any) -> None:
    data_dir = str(tmp_path / "data")
    with PostcapProcess(data_dir):
        pass  # a real data dir: token, CA, history
    with read_only(data_dir):
        output = _run_expecting_failure(data_dir)
    assert f"postcap: data dir {data_dir} is not usable: " in output
    assert ("Read-only file system" in output) or ("Permission denied" in output)
    assert len([line for line in output.splitlines() if line.strip()]) == 1, output


def test_full_disk_fails_with_one_line(tmp_path: Any) -> None:
    mount_point = str(tmp_path / "tiny")
    os.makedirs(mount_point)
    if os.geteuid() != 0 or subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mount_point], capture_output=True
    ).returncode != 0:
        pytest.skip("needs root to mount a tiny tmpfs")
    try:
        data_dir = os.path.join(mount_point, "data")
        os.makedirs(data_dir, mode=0o700)
        filler = os.open(os.path.join(mount_point, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with contextlib.suppress(OSError):
                while True:
                    os.write(filler, b"\0" * 4096)
        finally:
            os.close(filler)
        output = _run_expecting_failure(data_dir)
        assert f"postcap: data dir {data_dir} is not usable: No space left on device" in output, output
        assert len([line for line in output.splitlines() if line.strip()]) == 1, output
    finally:
        subprocess.run(["umount", mount_point], capture_output=True)
