"""The web page on the control port: a single-page app served from package data.

``GET /`` is the page (its sign-in form needs no token) and ``GET /static/NAME`` its
script and style sheet; every API call the page makes carries the bearer token.
The files ship in the package (``postcap/web/static``), so nothing is built at
install time and the page works offline.
"""

from __future__ import annotations

from importlib import resources

from twisted.web.resource import Resource
from twisted.web.server import Request

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
}

#: No inline script, nothing from elsewhere; images may be data: or blob: URLs (stored bodies).
CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def secure_headers(request: Request, content_type: bytes) -> None:
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")
    request.setHeader(b"x-frame-options", b"DENY")
    request.setHeader(b"cache-control", b"no-cache")


def _load_static() -> dict[bytes, tuple[bytes, bytes]]:
    """Every file of the static directory: name → (content type, bytes).  They are
    a few tens of KiB, read once at start-up."""
    files: dict[bytes, tuple[bytes, bytes]] = {}
    for entry in resources.files(__package__).joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in CONTENT_TYPES:
            files[entry.name.encode()] = (CONTENT_TYPES[suffix], entry.read_bytes())
    return files


class _Document(Resource):
    isLeaf = True

    def __init__(self, content_type: bytes, body: bytes) -> None:
        super().__init__()
        self.content_type = content_type
        self.body = body

    def render_GET(self, request: Request) -> bytes:
        if request.postpath not in ([], [b""]):
            return _NotFound().render(request)
        secure_headers(request, self.content_type)
        return self.body

    render_HEAD = render_GET


class _NotFound(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        secure_headers(request, b"text/plain; charset=utf-8")
        return b"not found\n"


class StaticDirectory(Resource):
    """``/static/NAME`` for the page's own files only."""

    def __init__(self, files: dict[bytes, tuple[bytes, bytes]]) -> None:
        super().__init__()
        for name, (content_type, body) in files.items():
            self.putChild(name, _Document(content_type, body))

    def getChild(self, path: bytes, request: Request) -> Resource:
        return _NotFound()

    def render(self, request: Request) -> bytes:
        return _NotFound().render(request)


def install_web_app(root: Resource) -> None:
    """Put the page at ``/`` and its files under ``/static/`` of ``root``."""
    files = _load_static()
    content_type, page = files[b"index.html"]
    root.putChild(b"", _Document(content_type, page))
    root.putChild(b"static", StaticDirectory(files))


__all__ = ["CONTENT_SECURITY_POLICY", "StaticDirectory", "install_web_app"]
