"""postcap's own listening endpoints, which proxy clients may not reach through the proxy.

A client of the proxy (a phone on the LAN, say) must not get at the control channel
(or the metrics endpoint) by asking the proxy for ``http://127.0.0.1:5556/``: the
control port trusts the loopback it listens on.  :class:`OwnEndpoints` knows those
ports and this machine's addresses; requests and ``CONNECT`` s naming them are
refused before any connection is made, and :class:`GuardedFactory` refuses an
upstream connection whose peer turns out to be one of them after name resolution
(``localtest.me``, a LAN name of this host).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Iterable

from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import Protocol
from zope.interface import implementer

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Names that always mean this machine.
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class OwnEndpointRefused(ConnectError):
    """The upstream address is one of postcap's own listening endpoints."""


def _ip(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def machine_addresses() -> set[IPAddress]:
    """Addresses of this machine, found without touching the network: those its host
    name resolves to, and the source address of the default route (v4 and v6)."""
    found: set[IPAddress] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            address = _ip(str(info[4][0]))
            if address is not None:
                found.add(address)
    except OSError:
        pass
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                udp.connect((probe, 9))  # UDP connect sends nothing; it picks a route
                address = _ip(udp.getsockname()[0])
        except OSError:
            continue
        if address is not None:
            found.add(address)
    return found


class OwnEndpoints:
    """The ports postcap listens on (besides the proxy's own) and the addresses that
    reach them."""

    def __init__(self, addresses: Iterable[IPAddress] = ()) -> None:
        self.ports: set[int] = set()
        self.addresses: set[IPAddress] = set(addresses)

    def add(self, port: int | None, interface: str | None = None) -> None:
        """A listening port (``interface`` it is bound to, if any, counts as local)."""
        if port:
            self.ports.add(int(port))
        address = _ip(interface or "")
        if address is not None and not address.is_unspecified:
            self.addresses.add(address)

    def is_local_address(self, address: IPAddress) -> bool:
        return address.is_loopback or address.is_unspecified or address in self.addresses

    def names(self, host: str, port: int) -> bool:
        """Whether ``host:port`` (a name or an IP literal) is one of the own endpoints."""
        if port not in self.ports:
            return False
        name = host.strip("[]").rstrip(".").lower()
        if name in LOCAL_NAMES or name.endswith(".localhost"):
            return True
        address = _ip(name)
        return address is not None and self.is_local_address(address)

    def reached(self, peer: Any) -> bool:
        """Whether a connected peer address is one of the own endpoints."""
        address = _ip(str(getattr(peer, "host", "")))
        return (
            address is not None
            and getattr(peer, "port", None) in self.ports
            and self.is_local_address(address)
        )


@implementer(IProtocolFactory)
class GuardedFactory:
    """Wraps an upstream client factory: a connection whose peer is one of postcap's
    own endpoints gets no protocol, and its connect fails with :class:`OwnEndpointRefused`."""

    def __init__(self, wrapped: Any, own: OwnEndpoints) -> None:
        self.wrapped = wrapped
        self.own = own

    def buildProtocol(self, addr: Any) -> Protocol | None:
        if self.own.reached(addr):
            raise OwnEndpointRefused(
                f"{getattr(addr, 'host', '?')}:{getattr(addr, 'port', '?')} is postcap's own "
                "control endpoint")
        return self.wrapped.buildProtocol(addr)

    def doStart(self) -> None:
        self.wrapped.doStart()

    def doStop(self) -> None:
        self.wrapped.doStop()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)
