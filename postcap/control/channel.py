"""The control channel's connections: deadlines and a cap, against slow clients.

Twisted's ``Site`` only has an idle timeout (12 hours by default), which every byte
resets: a client dribbling one header byte a minute holds its connection for ever,
and a few thousand of them hold the process's file descriptors.
:class:`ControlChannel` adds, on top of a short idle timeout:

- a **header deadline**: a request's line and headers must arrive within
  ``header_timeout`` seconds of its first byte (or of the connection, for the
  first request);
- a **body deadline**: the body must arrive within ``body_timeout`` seconds of the
  headers.

Past either, the client gets ``408`` and the connection is closed.  Once a request
is complete no deadline runs, so streamed answers (``/events``, HAR exports) last
as long as they need.  :class:`ControlSite` (``postcap.control.guard``) caps the
open connections at ``max_connections``: past it a new one is answered ``503`` and
closed, so the cap holds whatever clients do.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.http import HTTPChannel

_log = Logger(namespace="postcap.control.channel")

TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: 27\r\nConnection: close\r\n\r\n"
                  b"postcap: request too slow\r\n")
BUSY_ANSWER = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
               b"Content-Length: 49\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"
               b"postcap: too many control connections; try again\n")


class ControlChannel(HTTPChannel):
    """An ``HTTPChannel`` with header and body deadlines (see the module docstring)."""

    site: Any
    _deadline: IDelayedCall | None = None
    #: ``idle`` (between requests), ``headers``, ``body`` or ``handling``.
    phase = "idle"

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.channel_opened(self)
        self._start_phase("headers", self.site.header_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self.phase == "idle":
            self._start_phase("headers", self.site.header_timeout)
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        super().allHeadersReceived()
        if self.phase == "headers":
            self._start_phase("body", self.site.body_timeout)

    def allContentReceived(self) -> None:
        self._start_phase("handling", None)
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        # A pipelined next request already (partly) buffered starts its header deadline
        # now; Twisted parses it inside requestDone, moving the phase on if it is whole.
        if any(self._dataBuffer):
            self._start_phase("headers", self.site.header_timeout)
        else:
            self._start_phase("idle", None)
        super().requestDone(request)

    def connectionLost(self, reason: Any) -> None:
        self._cancel()
        self.site.channel_closed(self)
        super().connectionLost(reason)

    def _start_phase(self, phase: str, deadline: float | None) -> None:
        self._cancel()
        self.phase = phase
        if deadline is not None:
            self._deadline = self.callLater(deadline, self._too_slow, phase)

    def _cancel(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self, phase: str) -> None:
        self._deadline = None
        _log.info("closed a slow control connection from {peer}: {phase} not received in time",
                  peer=getattr(self.transport.getPeer(), "host", "?"), phase=phase)
        self.site.slow_clients += 1
        self.transport.write(TIMEOUT_ANSWER)
        self.timeoutConnection()


class BusyProtocol(Protocol):
    """Answers a connection past the cap with 503 and closes it."""

    def connectionMade(self) -> None:
        self.transport.write(BUSY_ANSWER)
        self.transport.loseConnection()
