"""postcap-bridge: install/uninstall/doctor in a temp HOME, and the real host process
between framed stdin/stdout and a real server."""

from __future__ import annotations

import base64
import json
import os
import struct
import sys
import time
from pathlib import Path


from postcap.interceptor import crypto
from postcap.interceptor.extension_id import EXTENSION_ID, HOST_NAME
from postcap.interceptor.framing import MAX_INBOUND, encode_frame
from tests.bridge_process import HostProcess, bridge, env_for
from tests.postcap_process import PostcapProcess



def test_install_writes_an_executable_host_and_a_manifest_uninstall_removes_it(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    done = bridge(env, "install", "--browser", "chrome", "--extension-id", "a" * 32,
                  "--extension-id", EXTENSION_ID)
    assert done.returncode == 0, done.stderr
    path = tmp_path / ".config" / "google-chrome" / "NativeMessagingHosts" / f"{HOST_NAME}.json"
    manifest = json.loads(path.read_text())
    assert manifest["name"] == HOST_NAME and manifest["type"] == "stdio"
    assert manifest["allowed_origins"] == [f"chrome-extension://{'a' * 32}/",
                                           f"chrome-extension://{EXTENSION_ID}/"]
    host = Path(manifest["path"])
    assert host.is_absolute() and os.access(host, os.X_OK)
    assert sys.executable in host.read_text()
    other = tmp_path / "profile"
    assert bridge(env, "install", "--browser", "chromium", "--user-data-dir", str(other)).returncode == 0
    assert (other / "NativeMessagingHosts" / f"{HOST_NAME}.json").exists()
    assert bridge(env, "uninstall", "--browser", "chrome").stdout.startswith("removed")
    assert not path.exists()
    assert bridge(env, "uninstall", "--browser", "chrome").stdout.startswith("nothing to remove")
    bad = bridge(env, "install", "--browser", "chrome", "--extension-id", "xyz")
    assert bad.returncode == 2 and "--extension-id" in bad.stderr


def test_uninstall_without_browser_removes_the_manifest_from_every_browser(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    for browser in ("chrome", "chromium", "brave"):
        assert bridge(env, "install", "--browser", browser).returncode == 0
    manifests = [tmp_path / base / "NativeMessagingHosts" / f"{HOST_NAME}.json"
                 for base in (".config/google-chrome", ".config/chromium",
                              ".config/BraveSoftware/Brave-Browser")]
    assert all(path.exists() for path in manifests)
    done = bridge(env, "uninstall")
    assert done.returncode == 0, done.stderr
    assert not any(path.exists() for path in manifests)
    assert done.stdout.count("removed ") == 3
    assert "nothing to remove at" in done.stdout  # edge: not installed, not an error
    assert bridge(env, "uninstall").stdout.count("removed ") == 0


def test_doctor_names_each_problem(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = env_for(tmp_path, PATH="/nonexistent", POSTCAP_HOME=str(data))
    report = bridge(env, "doctor", "--browser", "chrome")
    assert report.returncode == 1
    assert "PROBLEM CHROME_NOT_INSTALLED" in report.stdout
    assert "PROBLEM SERVER_NOT_RUNNING" in report.stdout
    (tmp_path / ".config" / "google-chrome").mkdir(parents=True)
    report = bridge(env, "doctor", "--browser", "chrome", "--json")
    codes = [p["code"] for p in json.loads(report.stdout)["problems"]]
    assert codes == ["MANIFEST_MISSING", "SERVER_NOT_RUNNING"]
    assert bridge(env, "install", "--browser", "chrome").returncode == 0
    manifest_path = tmp_path / ".config" / "google-chrome" / "NativeMessagingHosts" / f"{HOST_NAME}.json"
    Path(json.loads(manifest_path.read_text())["path"]).chmod(0o644)
    (data / "server.json").write_text(json.dumps({"control": {"host": "127.0.0.1", "port": 9}}))
    report = bridge(env, "doctor", "--browser", "chrome", "--json")
    codes = [p["code"] for p in json.loads(report.stdout)["problems"]]
    assert codes == ["HOST_NOT_EXECUTABLE", "TOKEN_UNREADABLE"]
    (data / "control.token").write_text("t")
    report = bridge(env, "doctor", "--browser", "chrome", "--json")
    assert [p["code"] for p in json.loads(report.stdout)["problems"]][-1] == "SERVER_UNREACHABLE"


def test_host_relays_between_framed_stdio_and_the_server(tmp_path: Path) -> None:
    with PostcapProcess(tmp_path / "data") as server:
        host = HostProcess(env_for(tmp_path, POSTCAP_HOME=server.data_dir))
        try:
            key = crypto.derive_key(crypto.DEFAULT_KEY)
            extension = crypto.LinkCounter()
            config = host.read()  # pushed by the bridge on start
            assert crypto.open_sealed(key, config, crypto.TO_EXTENSION)["type"] == "config"
            host.send(struct.pack("=I", 5) + b"\xff\xfe\xfd{}")
            assert host.read()["code"] == "bad_utf8"
            host.send(encode_frame({"type": "hello"}))
            assert host.read()["code"] == "unexpected_message"
            host.send(encode_frame(extension.seal(key, {"type": "hello", "extension_version": "t"},
                                                  crypto.TO_SERVER)))
            reply = host.read_until(lambda m: m.get("type") == "sealed")
            assert crypto.open_sealed(key, reply, crypto.TO_EXTENSION)["session_active"] is False
            big = {"type": "request", "record": {"method": "POST", "url": "http://x.test/",
                   "body": {"base64": base64.b64encode(os.urandom(256 * 1024)).decode()}}}
            sealed = encode_frame(extension.seal(key, big, crypto.TO_SERVER))
            assert len(sealed) < MAX_INBOUND
            host.send(sealed)  # the largest body the extension sends still fits the control channel
            host.send(sealed)  # a replay through the bridge is refused by the server
            assert host.read_until(lambda m: m.get("type") == "error")["code"] == "replayed_frame"
            host.send(struct.pack("=I", MAX_INBOUND + 1) + b"z" * (MAX_INBOUND + 1))
            assert host.read()["code"] == "frame_too_large"
            deadline = time.monotonic() + 20
            while server.rpc("interceptor.status")["authenticated_frames"] < 2:
                assert time.monotonic() < deadline, "the large frame did not reach the server"
                time.sleep(0.1)
            status = server.rpc("interceptor.status")
            assert status["connected"] and status["secure"] and status["bridges"] == 1
            assert status["authenticated_frames"] == 2 and status["ignored_requests"] == 1
            assert status["replayed_frames"] == 1
            assert host.process.poll() is None
        finally:
            assert host.close() == 0
        assert server.rpc("interceptor.status")["connected"] is False


def test_host_reports_an_unreachable_server_and_keeps_running(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    host = HostProcess(env_for(tmp_path, POSTCAP_HOME=str(data)))
    try:
        assert host.read()["code"] == "server_not_running"
        key = crypto.derive_key(crypto.DEFAULT_KEY)
        extension = crypto.LinkCounter()
        host.send(encode_frame(extension.seal(key, {"type": "ping"}, crypto.TO_SERVER)))
        assert host.read()["code"] == "server_not_running"
        assert host.process.poll() is None
    finally:
        assert host.close() == 0
