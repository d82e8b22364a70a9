"""Small wire helpers shared by the HTTP/1.1 client and upstream sides: header and
chunk encoding, and :class:`TransportPauser`."""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from postcap.proxy.framing import RawHeaders


@implementer(IPushProducer)
class ReasonedPause:
    """Paused while any of several reasons holds (``pause``/``resume`` by name); an
    IPushProducer whose own reason is ``"backpressure"``.  Subclasses say what
    stopping and starting mean."""

    def __init__(self) -> None:
        self._reasons: set[str] = set()

    def _stop(self) -> None:
        """The first reason arrived."""

    def _start(self) -> None:
        """The last reason went."""

    def pause(self, reason: str) -> None:
        if not self._reasons:
            self._stop()
        self._reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self._reasons:
            return
        self._reasons.discard(reason)
        if not self._reasons:
            self._start()

    def pauseProducing(self) -> None:
        self.pause("backpressure")

    def resumeProducing(self) -> None:
        self.resume("backpressure")

    def stopProducing(self) -> None:
        """The consumer went away; the exchange handles that itself (connectionLost)."""

    @property
    def paused(self) -> bool:
        return bool(self._reasons)

    def paused_for(self, reason: str) -> bool:
        return reason in self._reasons


class TransportPauser(ReasonedPause):
    """Pauses a transport while any of several reasons holds; an IPushProducer for
    registering one transport as the producer feeding another."""

    def __init__(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.transport = transport

    def _stop(self) -> None:
        self.transport.pauseProducing()

    def _start(self) -> None:
        self.transport.resumeProducing()


def format_headers(headers: RawHeaders) -> bytes:
    return b"".join(b"%s: %s\r\n" % pair for pair in headers)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def last_chunk(trailers: RawHeaders) -> bytes:
    """The end of a chunked body, with its trailer section."""
    return b"0\r\n" + format_headers(trailers) + b"\r\n"
