"""Reverse mode (``--mode reverse:URL``): postcap stands in front of one server.

Clients send origin-form requests (``GET /path``) to the proxy port as if it were
that server; :meth:`ReverseTarget.target` is the hook that decides where each
request goes (the one upstream, its path prefix joined to the request's path).
Absolute-form targets and ``CONNECT`` are refused with 400: a reverse proxy is
not a forward proxy.  Towards clients the port speaks plain HTTP, or TLS with the
operator's certificate (``--certs``) or a leaf minted by postcap's CA for the name
the client asks for (``--reverse-tls``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from postcap.proxy.framing import ProtocolError, RequestHead
from postcap.proxy.targets import Target, parse_absolute_target
from postcap.tls.minting import InterceptingServerCreator, LeafMinter, _select_alpn

REGULAR = "regular"
_REVERSE_PREFIX = "reverse:"


class ModeError(ValueError):
    """A ``--mode`` value postcap does not understand (the message says why)."""


@dataclass(frozen=True, slots=True)
class ReverseTarget:
    """The one server a reverse-mode postcap stands in front of."""

    target: Target
    #: Forward the client's ``Host`` instead of the upstream's (``--keep-host``).
    keep_host: bool = False
    #: TLS towards clients: None (plain), ``"certs"`` (``certs_file``) or ``"minted"``.
    client_tls: str | None = None
    certs_file: str | None = None

    @property
    def url(self) -> str:
        return self.target.url

    def resolve(self, head: RequestHead) -> Target:
        """Where a client's request goes; 400 for CONNECT and absolute-form targets."""
        if head.method == b"CONNECT":
            raise ProtocolError(400, "CONNECT is not accepted: postcap runs as a reverse proxy")
        if not head.target.startswith(b"/"):
            if head.method == b"OPTIONS" and head.target == b"*":
                return Target(self.target.origin, b"*")
            raise ProtocolError(
                400, "absolute-form request targets are not accepted: postcap runs as a "
                "reverse proxy (send origin-form requests such as GET /path)"
            )
        prefix = self.target.path.rstrip(b"/")
        host = None
        if self.keep_host:
            host = next((v for n, v in head.headers if n.lower() == b"host"), None)
        return Target(self.target.origin, prefix + head.target, host)


def parse_mode(text: str) -> ReverseTarget | None:
    """``regular`` → None; ``reverse:http(s)://host[:port][/prefix]`` → :class:`ReverseTarget`."""
    if text == REGULAR:
        return None
    if not text.startswith(_REVERSE_PREFIX):
        raise ModeError(f"must be 'regular' or 'reverse:URL', not {text!r}")
    url = text[len(_REVERSE_PREFIX):]
    try:
        target = parse_absolute_target(url.encode("ascii"))
    except (ProtocolError, UnicodeEncodeError) as exc:
        reason = getattr(exc, "reason", "non-ASCII URL")
        raise ModeError(f"reverse:{url}: not an http:// or https:// URL ({reason})") from None
    if b"?" in target.path:
        raise ModeError(f"reverse:{url}: the URL may carry a path prefix but no query")
    return ReverseTarget(target)


@implementer(IOpenSSLServerConnectionCreator)
class CertificateServerCreator:
    """Serves TLS with the operator's certificate chain and key from one PEM file."""

    def __init__(self, pem_path: str) -> None:
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
        try:
            context.use_certificate_chain_file(pem_path)
            context.use_privatekey_file(pem_path)
            context.check_privatekey()
        except SSL.Error as exc:
            raise ValueError(f"{pem_path} does not hold a certificate and its key ({exc})") from None
        context.set_alpn_select_callback(_select_alpn)
        self.context = context

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self.context, None)


def client_tls_creator(
    reverse: ReverseTarget | None, minter: LeafMinter | None, listen_host: str
) -> Any:
    """The TLS server creator for reverse-mode clients, or None for plain HTTP."""
    if reverse is None or reverse.client_tls is None:
        return None
    if reverse.client_tls == "certs":
        assert reverse.certs_file is not None
        return CertificateServerCreator(reverse.certs_file)
    if minter is None:
        raise ValueError("--reverse-tls needs postcap's CA")
    default_host = listen_host if listen_host not in ("0.0.0.0", "::", "") else "localhost"
    return InterceptingServerCreator(minter, default_host)


__all__ = ["CertificateServerCreator", "ModeError", "REGULAR", "ReverseTarget",
           "client_tls_creator", "parse_mode"]
