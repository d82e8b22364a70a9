"""``postcapctl`` as a subprocess against the real server: every command, ``--json``
parsed, and one-line errors with the documented exit codes."""

from __future__ import annotations

import io
import json
import os
import select
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.harness import Origin, free_port
from tests.postcap_process import PostcapProcess

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None, reason="curl is required (apt-get install curl)"
)

POSTCAPCTL = shutil.which("postcapctl", path=os.path.dirname(sys.executable))
COMMAND = [POSTCAPCTL] if POSTCAPCTL else [sys.executable, "-m", "postcap.ctl"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostcapProcess]:
    with PostcapProcess(tmp_path_factory.mktemp("postcapctl")) as running:
        yield running


@pytest.fixture
def stopped(server: PostcapProcess) -> Iterator[None]:
    """Stop whatever session a test left running."""
    yield
    active = server.rpc("server.info")["active_session"]
    if active:
        server.rpc("session.stop", id=active["id"])


def ctl(
    server: PostcapProcess | None, *args: str, home: str | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run postcapctl; with POSTCAP_HOME pointing at the server's data dir so that
    discovery (server.json, control.token) is what is exercised."""
    env = dict(os.environ, POSTCAP_HOME=home or (server.data_dir if server else "/nonexistent"))
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, env=env, timeout=60, cwd=cwd
    )


def ok_json(server: PostcapProcess, *args: str) -> Any:
    result = ctl(server, *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_status_human_and_json_before_or_after_the_command(server: PostcapProcess) -> None:
    human = ctl(server, "status")
    assert human.returncode == 0
    assert f"proxy: port {server.port}, enabled" in human.stdout
    before = ok_json(server, "--json", "status")
    after = ok_json(server, "status", "--json")
    assert before["proxy"] == after["proxy"] == {"port": server.port, "enabled": True}
    assert before["data_dir"] == server.data_dir


def test_explicit_control_and_token_file_override_discovery(
    server: PostcapProcess, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(server.token + "\n")
    result = ctl(
        None,
        "status",
        "--control",
        server.control_url,
        f"--token-file={token_file}",
        "--json",
        home=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["proxy"]["port"] == server.port


def test_session_lifecycle(server: PostcapProcess, origin: Origin, stopped: None) -> None:
    started = ok_json(
        server,
        "session",
        "start",
        "--name",
        "cli",
        "--capture-cookies",
        "--filter-method",
        "get",
        "--json",
    )
    assert started["name"] == "cli" and started["state"] == "running"
    assert started["options"]["capture_cookies"] is True
    assert started["options"]["filters"]["methods"] == ["GET"]
    session_id = started["id"]
    again = ctl(server, "session", "start")
    assert "already" in one_line_error(again, 1)

    server.curl(origin.url("/hello"))
    assert ok_json(server, "--json", "session", "pause")["state"] == "paused"
    assert ok_json(server, "--json", "session", "resume", session_id)["state"] == "running"
    renamed = ok_json(server, "--json", "session", "update", session_id, "--name", "renamed")
    assert renamed["name"] == "renamed"
    shown = ok_json(server, "--json", "session", "show", session_id)
    assert shown["request_count"] == 1
    overview = ok_json(server, "--json", "session", "overview", session_id)
    assert overview["by_method"] == {"GET": 1}
    human_overview = ctl(server, "session", "overview", session_id).stdout
    assert "METHOD" in human_overview and "GET" in human_overview

    table = ctl(server, "session", "list").stdout
    assert "renamed" in table and "running" in table
    listed = ok_json(server, "--json", "session", "list", "--limit", "1")
    assert listed["items"][0]["id"] == session_id
    assert "cannot" in one_line_error(ctl(server, "session", "delete", session_id), 1)
    assert ok_json(server, "--json", "session", "stop")["state"] == "stopped"
    assert "deleted session" in ctl(server, "session", "delete", session_id).stdout
    missing = one_line_error(ctl(server, "session", "show", session_id), 1)
    assert session_id in missing and "-32004" in missing


def test_requests_table_filters_show_replay_delete(
    server: PostcapProcess, origin: Origin, stopped: None
) -> None:
    session = ok_json(server, "--json", "session", "start", "--name", "requests")
    server.curl(origin.url("/hello"), origin.url("/status/404"))
    server.curl("-X", "POST", "--data", "a=1", origin.url("/echo"))
    table = ctl(server, "requests", "--session", session["id"])
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "METHOD", "STATUS", "TIME", "SIZE", "URL"]
    assert lines[-1] == "3 of 3 requests"
    posts = ok_json(server, "requests", "--session", session["id"], "--method", "post", "--json")
    assert [item["url"] for item in posts["items"]] == [origin.url("/echo")]
    errors = ok_json(server, "--json", "requests", "--session", session["id"], "--status", "4xx")
    assert [item["status"] for item in errors["items"]] == [404]
    queried = ok_json(
        server,
        "--json",
        "requests",
        "--session",
        session["id"],
        "--query",
        "HELLO",
        "--domain",
        "127.0.0.1",
        "--limit",
        "5",
        "--offset",
        "0",
    )
    assert queried["total"] == 1
    hello_id = queried["items"][0]["id"]

    shown = ctl(server, "request", "show", hello_id)
    assert shown.returncode == 0 and f"GET {origin.url('/hello')}" in shown.stdout
    assert "hello from origin" in shown.stdout
    detail = ok_json(server, "--json", "request", "show", hello_id)
    assert detail["response"]["status"] == 200
    replayed = ok_json(server, "--json", "request", "replay", hello_id)
    assert replayed["id"] != hello_id and replayed["status"] == 200
    deleted = ok_json(server, "--json", "request", "delete", hello_id, replayed["id"])
    assert deleted == 2
    assert ok_json(server, "--json", "requests", "--session", session["id"])["total"] == 2
    assert "-32004" in one_line_error(ctl(server, "request", "show", hello_id), 1)


def test_ca_path_and_output(server: PostcapProcess, tmp_path: Path) -> None:
    printed = ctl(server, "ca")
    assert printed.returncode == 0 and printed.stdout.strip() == server.ca_path
    assert Path(printed.stdout.strip()).exists()
    target = tmp_path / "ca.pem"
    written = ok_json(server, "ca", "-o", str(target), "--json")
    assert written["path"] == str(target)
    assert target.read_text() == Path(server.ca_path).read_text()


def test_export_har(server: PostcapProcess, origin: Origin, tmp_path: Path, stopped: None) -> None:
    session = ok_json(server, "--json", "session", "start", "--name", "har")
    server.curl(origin.url("/hello"))
    ok_json(server, "--json", "session", "stop")
    target = tmp_path / "out.har"
    result = ok_json(server, "export", "har", session["id"], "-o", str(target), "--json")
    assert result["bytes"] == target.stat().st_size > 0
    har = json.loads(target.read_bytes())
    assert [entry["request"]["url"] for entry in har["log"]["entries"]] == [origin.url("/hello")]
    validator = Path("/work/shared/reference/validate.py")
    if validator.exists():
        checked = subprocess.run(
            [sys.executable, str(validator), "har", str(target)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    # Not a TTY: no progress bar on stderr.
    plain = ctl(server, "export", "har", session["id"], "-o", str(tmp_path / "again.har"))
    assert plain.returncode == 0 and plain.stderr == ""
    missing = one_line_error(ctl(server, "export", "har", "nope", "-o", str(tmp_path / "x.har")), 1)
    assert "404" in missing
    assert not (tmp_path / "x.har").exists() and not (tmp_path / "x.har.part").exists()


def test_collections(server: PostcapProcess, origin: Origin, tmp_path: Path, stopped: None) -> None:
    session = ok_json(server, "--json", "session", "start", "--name", "coll")
    server.curl(origin.url("/hello"))
    ids = [
        item["id"]
        for item in ok_json(server, "--json", "requests", "--session", session["id"])["items"]
    ]
    created = ok_json(server, "--json", "collection", "create", "My API")
    assert created["name"] == "My API"
    assert (
        ok_json(
            server, "--json", "collection", "add", created["id"], *ids, "--organize-by", "domain"
        )
        == 1
    )
    listed = ok_json(server, "--json", "collection", "list")
    assert {"id": created["id"], "name": "My API", "request_count": 1} in listed["items"]
    assert created["id"] in ctl(server, "collection", "list").stdout
    postman = ok_json(server, "--json", "collection", "get", created["id"])
    assert postman["info"]["name"] == "My API"
    target = tmp_path / "c.json"
    assert ctl(server, "collection", "get", created["id"], "-o", str(target)).returncode == 0
    assert json.loads(target.read_text())["info"]["name"] == "My API"
    assert ok_json(server, "--json", "collection", "delete", created["id"]) is True
    assert "-32004" in one_line_error(ctl(server, "collection", "get", created["id"]), 1)


def test_cookies_and_jar(
    server: PostcapProcess, origin: Origin, tmp_path: Path, stopped: None
) -> None:
    session = ok_json(
        server, "--json", "session", "start", "--name", "cookies", "--capture-cookies"
    )
    server.curl(origin.url("/cookies/set?sid=abc"), check=False)
    cookies = ok_json(server, "--json", "cookies", "list", "--session", session["id"])
    assert cookies["total"] >= 1
    assert "sid" in ctl(server, "cookies", "list", "--session", session["id"]).stdout
    added = ok_json(server, "--json", "cookies", "jar", "add", cookies["items"][0]["id"])
    assert added == 1
    jar = ok_json(server, "--json", "jar", "list")
    assert any(cookie["name"] == cookies["items"][0]["name"] for cookie in jar["items"])
    netscape = tmp_path / "cookies.txt"
    assert ctl(server, "jar", "export", "-o", str(netscape)).returncode == 0
    assert cookies["items"][0]["name"] in netscape.read_text()
    exported = ok_json(server, "--json", "cookies", "jar", "export", "--format", "json")
    assert isinstance(exported, list) and exported
    deleted = ok_json(server, "--json", "jar", "delete", "--name", cookies["items"][0]["name"])
    assert deleted >= 1


def test_bad_token_is_a_one_line_error_exit_3(server: PostcapProcess, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    line = one_line_error(ctl(server, "status", "--token-file", str(wrong)), 3)
    assert "refused the token" in line
    missing = one_line_error(ctl(server, "--token-file", str(tmp_path / "none"), "status"), 3)
    assert "cannot read token file" in missing


def test_unreachable_server_is_a_one_line_error_exit_3(server: PostcapProcess) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(ctl(server, "--control", url, "session", "list"), 3)
    assert f"cannot reach postcap at {url}" in line


def test_usage_errors_exit_2(server: PostcapProcess) -> None:
    assert "postcapctl" in one_line_error(ctl(server), 2)
    assert "invalid choice" in one_line_error(ctl(server, "sessions"), 2)
    assert "--control needs a value" in one_line_error(ctl(server, "status", "--control"), 2)
    assert "at least one option" in one_line_error(ctl(server, "session", "update", "x"), 2)
    helped = ctl(server, "--help")
    assert helped.returncode == 0 and "exit codes" in helped.stdout


def test_invalid_option_shows_the_server_message(server: PostcapProcess, stopped: None) -> None:
    line = one_line_error(ctl(server, "session", "start", "--url-contains", "(unclosed"), 1)
    assert "-32005" in line and "url_contains" in line


def test_global_options_anywhere_and_progress_only_on_a_tty() -> None:
    from postcap.ctl import Progress, split_global_options

    front, rest = split_global_options(
        ["session", "list", "--json", "--control=http://h:1", "--limit", "2", "--token-file", "t"]
    )
    assert front == ["--json", "--control=http://h:1", "--token-file", "t"]
    assert rest == ["session", "list", "--limit", "2"]

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(stream)
        progress(512, 1024)
        progress(1024, None)
        progress.finish()
    assert "[###############...............] 512 B / 1.0 KiB" in terminal.getvalue()
    assert "1.0 KiB received" in terminal.getvalue()
    assert pipe.getvalue() == ""
    counted = Terminal()
    Progress(counted, noun="requests")(1000, 1564)
    assert counted.getvalue().endswith("] 1,000 / 1,564 requests")


def test_search_time_bounds_order_and_replay_overrides(
    server: PostcapProcess, origin: Origin, stopped: None
) -> None:
    session = ok_json(server, "--json", "session", "start", "--name", "search")
    server.curl("-H", "X-Needle: haystack-7", origin.url("/hello"))
    server.curl("-X", "POST", "--data", "needle-in-body", origin.url("/echo"))
    sid = session["id"]
    in_headers = ok_json(server, "--json", "requests", "--session", sid,
                         "--query", "haystack-7", "--in", "headers")
    assert [item["url"] for item in in_headers["items"]] == [origin.url("/hello")]
    in_body = ok_json(server, "--json", "requests", "--session", sid,
                      "--query", "needle-in-body", "--in", "headers,body")
    assert [item["url"] for item in in_body["items"]] == [origin.url("/echo")]
    assert ok_json(server, "--json", "requests", "--session", sid, "--query", "needle-in-body")[
        "total"] == 0
    newest = ok_json(server, "--json", "requests", "--session", sid, "--order", "desc")
    assert [item["url"] for item in newest["items"]] == [origin.url("/echo"), origin.url("/hello")]
    first = newest["items"][1]["started_at"]
    assert ok_json(server, "--json", "requests", "--session", sid, "--since", "2000-01-01T00:00:00Z",
                   "--until", first)["total"] == 1
    assert ok_json(server, "--json", "requests", "--session", sid, "--since", "4000000000")[
        "total"] == 0

    echo_id = newest["items"][0]["id"]
    replayed = ok_json(server, "--json", "request", "replay", echo_id, "--header", "X-Trace: other",
                       "--body", "plain", "--method", "PUT", "--url", origin.url("/echo?r=1"))
    assert replayed["replay_of"] == echo_id and replayed["method"] == "PUT"
    assert replayed["url"] == origin.url("/echo?r=1")
    assert ["X-Trace", "other"] in replayed["request"]["headers"]
    assert replayed["request"]["body"]["text"] == "plain"
    assert "'Name: value'" in one_line_error(
        ctl(server, "request", "replay", echo_id, "--header", "nocolon"), 2)


def test_session_clear_proxy_toggle_and_cli_words(
    server: PostcapProcess, origin: Origin, stopped: None
) -> None:
    assert "no active session" in one_line_error(ctl(server, "session", "clear"), 1)
    assert "no active session" in one_line_error(ctl(server, "requests"), 1)
    session = ok_json(server, "--json", "session", "start", "--name", "clear-me")
    server.curl(origin.url("/hello"))
    cleared = ok_json(server, "--json", "session", "clear")
    assert cleared["id"] == session["id"] and cleared["request_count"] == 0
    assert "cleared session" in ctl(server, "session", "clear", session["id"]).stdout
    assert ok_json(server, "--json", "proxy", "disable")["enabled"] is False
    assert "disabled" in ctl(server, "proxy", "status").stdout
    assert ok_json(server, "--json", "proxy", "enable") == ok_json(server, "--json", "proxy", "status")
    assert server.rpc("proxy.status")["enabled"] is True
    bad = one_line_error(ctl(server, "requests", "--limit", "5000"), 1)
    assert "invalid --limit: must be" in bad


def test_cookie_delete_sync_and_hand_made_jar_cookie(
    server: PostcapProcess, origin: Origin, stopped: None
) -> None:
    session = ok_json(server, "--json", "session", "start", "--name", "c2", "--capture-cookies")
    server.curl(origin.url("/cookies/set?gone=1"), check=False)
    cookies = ok_json(server, "--json", "cookies", "list", "--session", session["id"])
    ids = [cookie["id"] for cookie in cookies["items"]]
    assert ok_json(server, "--json", "cookies", "delete", *ids) == len(ids) >= 1
    assert ok_json(server, "--json", "cookies", "list", "--session", session["id"])["total"] == 0
    assert ok_json(server, "--json", "jar", "add", "--name", "made", "--value", "v",
                   "--domain", "example.test") == 1
    jar = ok_json(server, "--json", "jar", "list", "--domain", "example.test")
    assert [(c["name"], c["value"]) for c in jar["items"]] == [("made", "v")]
    assert "--domain" in one_line_error(ctl(server, "jar", "add", "--name", "x"), 2)
    synced = ok_json(server, "--json", "cookies", "sync", "--enable", "--domains", "a.test,b.test")
    assert synced == {"enabled": True, "domains": ["a.test", "b.test"]}
    assert "a.test, b.test" in ctl(server, "cookies", "sync").stdout
    assert ok_json(server, "--json", "cookies", "sync", "--disable")["enabled"] is False


def test_requests_follow_prints_new_captures(
    server: PostcapProcess, origin: Origin, stopped: None
) -> None:
    session = ok_json(server, "--json", "session", "start", "--name", "follow")
    assert "--method" in one_line_error(ctl(server, "requests", "--follow", "--method", "GET"), 2)
    env = dict(os.environ, POSTCAP_HOME=server.data_dir)
    tail = subprocess.Popen([*COMMAND, "requests", "--follow", "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        for _ in range(20):  # the tail may connect after the first curl: bounded retries
            server.curl(origin.url("/hello?follow"))
            ready, _, _ = select.select([tail.stdout], [], [], 0.5)
            if ready:
                line = tail.stdout.readline()
                break
        summary = json.loads(line)
        assert summary["session_id"] == session["id"]
        assert summary["url"] == origin.url("/hello?follow")
    finally:
        tail.terminate()
        tail.wait(timeout=10)
        tail.stdout.close()
        tail.stderr.close()


def test_export_collection_in_one_step_reuses_the_collection(
    server: PostcapProcess, origin: Origin, tmp_path: Path, stopped: None
) -> None:
    session = ok_json(server, "--json", "session", "start", "--name", "shop")
    server.curl(origin.url("/hello"), origin.url("/status/404"))
    target = tmp_path / "shop.json"
    first = ok_json(server, "--json", "export", "collection", session["id"],
                    "--organize-by", "domain,endpoint", "-o", str(target))
    assert first["name"] == "shop" and first["added"] == 2 and first["reused"] is False
    document = json.loads(target.read_text())
    assert document["info"]["name"] == "shop"
    reference = Path("/work/shared/reference/validate.py")
    if reference.exists():
        checked = subprocess.run([sys.executable, str(reference), "collection", str(target)],
                                 capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    again = ok_json(server, "--json", "export", "collection", session["id"], "-o", str(target))
    assert again["reused"] is True and again["collection_id"] == first["collection_id"]
    names = [c["name"] for c in server.rpc("collection.list")["items"]]
    assert names.count("shop") == 1


def test_version_and_missing_token_names_postcap_home(tmp_path: Path) -> None:
    version = subprocess.run([*COMMAND, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("postcapctl ")
    line = one_line_error(ctl(None, "--control", f"http://127.0.0.1:{free_port()}",
                              "--data-dir", str(tmp_path), "status"), 3)
    assert "POSTCAP_HOME" in line and "--data-dir" in line
    line = one_line_error(ctl(None, "--data-dir", str(tmp_path), "status"), 3)
    assert "POSTCAP_HOME" in line and str(tmp_path) in line


def test_output_short_lists_show_detail_and_colours(
    server: PostcapProcess, origin: Origin, stopped: None
) -> None:
    from postcap import ctl_output
    from postcap.ctl_output import colour_wanted, show_detail, table, status_colour

    session = ok_json(server, "--json", "session", "start", "--name", "output")
    server.curl(origin.url("/hello"), origin.url("/status/404"), origin.url("/hello?x"))
    short = ctl(server, "requests", "--session", session["id"], "--limit", "2").stdout
    assert short.splitlines()[-1] == "2 of 3 requests shown; see more with --limit and --offset"
    assert "\x1b[" not in short  # not a terminal: no colours
    hello = ok_json(server, "--json", "requests", "--session", session["id"])["items"][0]
    shown = ctl(server, "request", "show", hello["id"]).stdout
    assert "HTTP/HTTP/" not in shown and "request: HTTP/1.1\n" in shown
    assert "-1" not in shown.split("timings:")[1]
    detail = server.rpc("request.get", id=hello["id"])
    detail["timings"] = {**detail["timings"], "blocked_ms": -1.0, "dns_ms": None}
    text = show_detail(detail)
    assert "blocked not measured" in text and "dns not measured" in text and "-1.0" not in text

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    os.environ.pop("NO_COLOR", None)
    assert colour_wanted(Terminal(), json_output=False) is True
    assert colour_wanted(Terminal(), json_output=True) is False
    assert colour_wanted(io.StringIO(), json_output=False) is False
    os.environ["NO_COLOR"] = "1"
    try:
        assert colour_wanted(Terminal(), json_output=False) is False
    finally:
        del os.environ["NO_COLOR"]
    ctl_output.COLOUR = True
    try:
        painted = table([["404"], ["200"]], ["STATUS"], {0: status_colour})
    finally:
        ctl_output.COLOUR = False
    assert "\x1b[33m404" in painted and "\x1b[32m200" in painted
    assert painted.splitlines()[0] == "STATUS"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_need_no_server(shell: str) -> None:
    result = ctl(None, "completion", shell)
    assert result.returncode == 0, result.stderr
    assert "postcapctl" in result.stdout and "requests" in result.stdout
    if shell == "bash" and shutil.which("bash"):
        checked = subprocess.run(["bash", "-n"], input=result.stdout, text=True,
                                 capture_output=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
    if shell == "fish":
        assert "complete -c postcapctl" in result.stdout


class ServedProcess(PostcapProcess):
    """The server started as ``postcap serve OPTIONS`` from the directory ``cwd``."""

    def __init__(self, data_dir: Path, cwd: Path) -> None:
        super().__init__(data_dir)
        self.cwd = cwd

    def command(self) -> list[str]:
        options = super().command()[super().command().index("postcap") + 1:]
        return ["/bin/sh", "-c", 'cd "$0" && exec "$@"', str(self.cwd),
                sys.executable, "-m", "postcap", "serve", *options]


def test_postcap_serve_runs_the_server_without_a_pid_file(tmp_path: Path) -> None:
    helped = subprocess.run([sys.executable, "-m", "postcap", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert helped.returncode == 0 and "postcap serve" in helped.stdout
    served_help = subprocess.run([sys.executable, "-m", "postcap", "serve", "--help"],
                                 capture_output=True, text=True, timeout=60)
    assert served_help.returncode == 0 and "--max-client-connections" in served_help.stdout
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    with ServedProcess(tmp_path / "data", cwd) as served:
        assert ok_json(served, "--json", "status")["proxy"]["port"] == served.port
    assert not (cwd / "twistd.pid").exists()


def test_interceptor_status_and_key(server: PostcapProcess) -> None:
    assert "browser extension: not connected, default key" in ctl(server, "interceptor", "status").stdout
    custom = ok_json(server, "--json", "interceptor", "set-key", "abcdefghij12")
    assert custom["custom_key"] is True
    assert "invalid" in one_line_error(ctl(server, "interceptor", "set-key", "short"), 1)
    assert ok_json(server, "--json", "interceptor", "clear-key")["custom_key"] is False
