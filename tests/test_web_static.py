"""The control root's guard with the web page installed: ``/`` and ``/static/*`` are
public, everything else still needs the token (no server, DummyRequest)."""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from postcap.control.web import ControlRoot, UnauthorizedResource
from postcap.web import CONTENT_SECURITY_POLICY, install_web_app

TOKEN = "secret-token"


class Guarded(Resource):
    isLeaf = True

    def render_GET(self, request: DummyRequest) -> bytes:
        return b"guarded"


def root() -> ControlRoot:
    control = ControlRoot(lambda: TOKEN)
    control.putChild(b"rpc", Guarded())
    install_web_app(control)
    return control


def render(path: list[bytes], token: str | None = None) -> tuple[Resource, DummyRequest, bytes]:
    request = DummyRequest(path)
    if token is not None:
        request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {token}".encode()])
    resource = root()
    while request.postpath and not resource.isLeaf:
        segment = request.postpath.pop(0)
        request.prepath.append(segment)
        resource = resource.getChildWithDefault(segment, request)
    body = resource.render(request)
    return resource, request, body if isinstance(body, bytes) else b"".join(request.written)


def test_page_and_static_files_need_no_token() -> None:
    _, request, body = render([b""])
    assert b'id="signin-form"' in body
    assert request.responseHeaders.getRawHeaders(b"content-security-policy") == [
        CONTENT_SECURITY_POLICY
    ]
    assert request.responseHeaders.getRawHeaders(b"x-content-type-options") == [b"nosniff"]
    for name, kind in ((b"app.js", b"text/javascript"), (b"app.css", b"text/css")):
        _, request, body = render([b"static", name])
        assert body and request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(kind)


def test_everything_else_still_needs_the_token() -> None:
    resource, _, _ = render([b"rpc"])
    assert isinstance(resource, UnauthorizedResource)
    resource, _, _ = render([b"rpc"], token="wrong")
    assert isinstance(resource, UnauthorizedResource)
    _, _, body = render([b"rpc"], token=TOKEN)
    assert body == b"guarded"


def test_unknown_static_names_and_sub_paths_are_404() -> None:
    _, request, _ = render([b"static", b"secrets.txt"])
    assert request.responseCode == 404
    _, request, _ = render([b"", b"extra"])
    assert request.responseCode == 404


def test_package_data_ships_every_static_file() -> None:
    """A non-editable ``pip install .`` must carry the page: setup.cfg's package_data
    glob covers every file of postcap/web/static (there are no subdirectories)."""
    import configparser
    import fnmatch
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    config = configparser.ConfigParser()
    config.read(repo / "setup.cfg")
    patterns = config["options.package_data"]["postcap.web"].split()
    static = repo / "postcap" / "web" / "static"
    files = sorted(path.relative_to(static.parent).as_posix() for path in static.iterdir())
    assert {"static/index.html", "static/app.js", "static/app.css"} <= set(files)
    assert all(path.is_file() for path in static.iterdir())
    assert all(any(fnmatch.fnmatch(name, p) for p in patterns) for name in files)
