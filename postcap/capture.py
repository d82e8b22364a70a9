"""Bounded body capture: a copy of what streams through, never the whole of it.

:class:`BodyCapture` counts every byte that passes and keeps a copy of at most
``limit`` bytes (``--max-capture-body``), flagging truncation.  Small copies stay
in memory; past ``spill_threshold`` the copy moves to a spool file written by a
single-thread :class:`Spooler` off the reactor thread, so RAM does not grow with
body size.  The spool file is deleted once every sink is done with it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Protocol as TypingProtocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from postcap.model import Body, Transaction, WebSocketMessage


#: Spool files start with this; anything else in the directory is left alone.
SPOOL_PREFIX = "body-"


class Spooler:
    """Writes spooled body copies in one worker thread, in submission order.

    It counts the bytes handed over and not yet written: past ``high_water`` it is
    :attr:`congested` (the disk is slower than the traffic), and the proxy stops
    reading the connections whose copies it spools until :meth:`when_drained`
    fires, at ``low_water``.  Memory stays bounded whatever the disk does.
    """

    high_water = 16 * 1024 * 1024
    low_water = 4 * 1024 * 1024

    def __init__(self, reactor: IReactorThreads, directory: str) -> None:
        self._reactor = reactor
        self.directory = directory
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="postcap-spool")
        #: Bytes handed to :meth:`write` and not written yet.
        self.queued = 0
        self._drained: list[Deferred[None]] = []

    def start(self) -> None:
        """Create the spool directory and remove copies a crashed run left behind."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        for name in os.listdir(self.directory):
            if name.startswith(SPOOL_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.directory, name))
        self._pool.start()

    def stop(self) -> None:
        self._pool.stop()

    def open(self) -> tuple[IO[bytes], str]:
        handle, path = tempfile.mkstemp(prefix=SPOOL_PREFIX, dir=self.directory)
        return os.fdopen(handle, "wb"), path

    @property
    def congested(self) -> bool:
        return self.queued > self.high_water

    def when_drained(self) -> Deferred[None]:
        """Fires once the unwritten bytes are down to ``low_water``."""
        if self.queued <= self.low_water:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._drained.append(waiter)
        return waiter

    def write(self, spool: IO[bytes], data: bytes) -> None:
        self.queued += len(data)
        self._pool.callInThread(self._write, spool, data)

    def _write(self, spool: IO[bytes], data: bytes) -> None:
        try:
            spool.write(data)
        finally:
            self._reactor.callFromThread(self._written, len(data))

    def _written(self, size: int) -> None:
        self.queued -= size
        if self._drained and self.queued <= self.low_water:
            waiters, self._drained = self._drained, []
            for waiter in waiters:
                waiter.callback(None)

    def close(self, spool: IO[bytes]) -> Deferred[None]:
        """Fires once every earlier write to ``spool`` is done and the file is closed."""
        return deferToThreadPool(self._reactor, self._pool, spool.close)


class BodyCapture:
    """Counts a streaming body and keeps a bounded copy of it.

    A spooled copy goes to the :class:`Spooler` in pieces of ``spool_piece`` bytes
    (one thread hand-over per piece, not per network read).
    """

    spill_threshold = 512 * 1024
    spool_piece = 1024 * 1024

    def __init__(self, limit: int, spooler: Spooler | None, enabled: bool = True) -> None:
        self.limit = limit
        self.enabled = enabled
        self.size = 0
        self._spooler = spooler
        self._chunks: list[bytes] = []
        self._kept = 0
        self._unspooled = 0  # bytes in _chunks while spooling
        self._spool: IO[bytes] | None = None
        self._spool_path: str | None = None

    @property
    def truncated(self) -> bool:
        return self.enabled and self.size > self.limit

    @property
    def congested(self) -> bool:
        """Whether the spooler is behind and the body's source should pause."""
        return self._spool is not None and self._spooler is not None and self._spooler.congested

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if not self.enabled or self._kept >= self.limit:
            return
        piece = data[: self.limit - self._kept]
        self._kept += len(piece)
        self._chunks.append(piece)
        if self._spool is not None:
            self._unspooled += len(piece)
            if self._unspooled >= self.spool_piece:
                self._hand_over()
            return
        if self._kept > self.spill_threshold and self._spooler is not None:
            self._spool, self._spool_path = self._spooler.open()
            self._hand_over()

    def _hand_over(self) -> None:
        assert self._spooler is not None and self._spool is not None
        if self._chunks:
            self._spooler.write(self._spool, b"".join(self._chunks))
        self._chunks, self._unspooled = [], 0

    def drop(self) -> None:
        """Stop keeping a copy (e.g. a media response) and forget what was kept."""
        self.enabled = False
        self._chunks = []
        self._kept = self._unspooled = 0
        if self._spool is not None:
            assert self._spooler is not None and self._spool_path is not None
            path = self._spool_path
            self._spooler.close(self._spool).addCallback(lambda _: os.unlink(path))
            self._spool = self._spool_path = None

    def body_now(self) -> Body | None:
        """The captured :class:`Body` when it is all in memory (no spool file), else None."""
        if not self.enabled:
            return Body(self.size, False)
        if self._spool is not None:
            return None
        chunks = self._chunks
        content = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return Body(self.size, True, self.size > self.limit, content)

    def finish(self) -> Deferred[Body]:
        """The captured :class:`Body`, once any spool file is complete."""
        body = self.body_now()
        if body is not None:
            return succeed(body)
        assert self._spooler is not None and self._spool is not None
        self._hand_over()
        path, size, truncated = self._spool_path, self.size, self.truncated
        spool, self._spool = self._spool, None
        return self._spooler.close(spool).addCallback(
            lambda _: Body(size=size, captured=True, truncated=truncated, spool_path=path)
        )


class ResponseFilter(TypingProtocol):
    def wants_response(self, status: int | None, content_type: str) -> bool: ...


class CaptureTicket:
    """What the active session asked of one exchange when its request began."""

    __slots__ = ("session_id", "save_responses", "filter", "filters_responses")

    def __init__(self, session_id: str, save_responses: bool, filter: ResponseFilter,
                 filters_responses: bool = True) -> None:
        self.session_id = session_id
        self.save_responses = save_responses
        self.filter = filter
        #: False when :meth:`wants_response` always says yes (no response filter set).
        self.filters_responses = filters_responses

    def wants_response(self, status: int | None, content_type: str) -> bool:
        return not self.filters_responses or self.filter.wants_response(status, content_type)


class Recorder(TypingProtocol):
    """What the proxy needs of the session layer."""

    #: True when some sink wants every transaction, even with no session capturing.
    observes_all: bool

    def begin(self, method: str, url: str) -> CaptureTicket | None:
        """A ticket when the active session captures this request, else None."""

    def complete(self, ticket: CaptureTicket | None, transaction: Transaction) -> None:
        """Hand over a finished transaction (``ticket`` as returned by ``begin``)."""

    @property
    def congested(self) -> bool:
        """True while captures arrive faster than the history stores them."""

    def when_drained(self) -> Deferred[None]:
        """Fires once the history has caught up (at once when it is not behind)."""


class MessageRecorder(TypingProtocol):
    """What a WebSocket relay needs of the session layer, beyond :class:`Recorder`."""

    def message_capture(self, ticket: CaptureTicket) -> str:
        """``"running"`` (capture messages), ``"paused"`` (not now) or ``"ended"`` (the
        ticket's session stopped: never again)."""

    def message_captured(self, ticket: CaptureTicket, message: WebSocketMessage) -> None:
        """Store and publish one message of a recorded WebSocket transaction."""

    def websocket_closed(self, ticket: CaptureTicket, transaction_id: str,
                         closed_by: str | None, close_code: int | None) -> None:
        """The WebSocket connection of a recorded transaction ended."""
