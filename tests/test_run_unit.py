"""Unit tests of ``postcap run``'s pure parts (postcap/run.py): the environment, the
proxy address, the CA bundle, session names."""

from __future__ import annotations

import os
from typing import Any

import pytest

from postcap.run import (
    CA_VARIABLES,
    RunError,
    child_environment,
    proxy_url,
    session_name,
    system_roots,
    write_bundle,
)

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_environment_sets_proxies_and_ca_and_empties_no_proxy() -> None:
    env = child_environment({"PATH": "/bin", "NO_PROXY": "localhost,.internal", "no_proxy": "*",
                             "https_proxy": "http://other:3128"}, "http://127.0.0.1:5555", "/b.pem")
    assert env["PATH"] == "/bin"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == "http://127.0.0.1:5555"
    assert env["NO_PROXY"] == env["no_proxy"] == ""
    assert all(env[name] == "/b.pem" for name in CA_VARIABLES)
    assert env["NODE_USE_ENV_PROXY"] == "1"


PROXY = {"port": 5555, "enabled": True}


@pytest.mark.parametrize("info, expected", [
    ({"proxy": PROXY, "interface": "0.0.0.0"}, "http://127.0.0.1:5555"),
    ({"proxy": PROXY, "interface": "10.0.0.2"}, "http://10.0.0.2:5555"),
    ({"proxy": PROXY, "interface": "::1"}, "http://[::1]:5555"),
    ({"proxy": PROXY}, "http://127.0.0.1:5555"),
])
def test_proxy_url(info: dict[str, Any], expected: str) -> None:
    assert proxy_url(info, "http://127.0.0.1:5556") == expected


@pytest.mark.parametrize("info, message", [
    ({"proxy": {"port": 5555, "enabled": False}}, "disabled"),
    ({"proxy": PROXY, "mode": "reverse:http://x/"}, "reverse"),
])
def test_proxy_url_refuses(info: dict[str, Any], message: str) -> None:
    with pytest.raises(RunError, match=message):
        proxy_url(info, "http://127.0.0.1:5556")


def test_bundle_holds_system_roots_then_postcaps_ca(tmp_path: Any) -> None:
    path = write_bundle(CA, str(tmp_path))
    text = open(path, encoding="utf-8").read()
    assert text.endswith("# postcap CA\n" + CA)
    roots = system_roots()
    if roots is not None:
        assert text.count("BEGIN CERTIFICATE") > 1
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_session_name_leaves_arguments_out() -> None:
    assert session_name(["/usr/bin/curl", "-H", "Authorization: Bearer secret"]) == "run: curl"


def test_open_client_takes_a_given_control_endpoint_without_server_json(tmp_path) -> None:
    from postcap.discovery import ServerNotRunning
    from postcap.run import open_client

    (tmp_path / "control.token").write_text("t0ken")
    client = open_client(str(tmp_path), "unix:/run/postcap.sock", None)
    assert client.control_url == "unix:/run/postcap.sock" and client.token == "t0ken"
    try:
        open_client(str(tmp_path), None, None)
    except ServerNotRunning as exc:
        assert "server.json is missing" in str(exc)
    else:
        raise AssertionError("found a server where none runs")
