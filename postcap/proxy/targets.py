"""Sans-IO parsing of request targets: absolute-form URLs and CONNECT authorities."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from postcap.proxy.framing import ProtocolError
from postcap.proxy.upstream import Origin

_ABSOLUTE = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)([^#]*)\Z")
_REG_NAME = re.compile(r"[A-Za-z0-9\-._~%!$&'()*+,;=]+\Z")
_PATH = re.compile(rb"[/?][\x21-\x7e]*\Z")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes and the request-target to send there (origin-form)."""

    origin: Origin
    path: bytes
    #: The ``Host`` header to send upstream; None: the origin's authority.
    host_header: bytes | None = None

    @property
    def url(self) -> str:
        return f"{self.origin.scheme}://{self.origin.authority()}{self.path.decode('latin-1')}"


def parse_authority(authority: bytes, default_port: int | None) -> tuple[str, int]:
    """``host[:port]`` (IPv6 in brackets) → (host without brackets, port); else 400."""
    try:
        text = authority.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(400, "non-ASCII host in request target")
    if not text or "@" in text:
        raise ProtocolError(400, "request target has no host or carries user information")
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise ProtocolError(400, "malformed IPv6 address in request target")
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ProtocolError(400, "malformed IPv6 address in request target")
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            raise ProtocolError(400, "malformed authority in request target")
    else:
        host, colon, port_text_raw = text.rpartition(":")
        if not colon:
            host, port_text = text, None
        else:
            port_text = port_text_raw
        if not _REG_NAME.match(host):
            raise ProtocolError(400, "malformed host in request target")
    if port_text is None or port_text == "":
        if default_port is None:
            raise ProtocolError(400, "CONNECT target needs a port")
        return host.lower(), default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ProtocolError(400, "invalid port in request target")
    return host.lower(), int(port_text)


def parse_absolute_target(target: bytes) -> Target:
    """An absolute-form target (``http://host:port/path?query``) → :class:`Target`."""
    match = _ABSOLUTE.match(target)
    if match is None:
        raise ProtocolError(
            400, "request target must be an absolute URL (configure postcap as an HTTP proxy)"
        )
    scheme = match.group(1).decode("ascii").lower()
    if scheme not in ("http", "https"):
        raise ProtocolError(400, f"unsupported URL scheme {scheme!r}")
    default_port = 443 if scheme == "https" else 80
    host, port = parse_authority(match.group(2), default_port)
    path = match.group(3) or b"/"
    if path.startswith(b"?"):
        path = b"/" + path
    if not _PATH.match(path):
        raise ProtocolError(400, "malformed path in request target")
    return Target(Origin(scheme, host, port), path)


def parse_connect_target(target: bytes) -> Origin:
    """A CONNECT ``host:port`` target → the origin to tunnel to."""
    host, port = parse_authority(target, None)
    return Origin("https", host, port)
