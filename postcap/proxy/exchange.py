"""One request/response exchange through the proxy, streamed both ways.

An :class:`Exchange` takes request events from the client side, opens
(or reuses) an upstream, streams the request body up and the response body
down with back-pressure, keeps bounded copies of both for the capture, and
ends exactly once: with the response complete, or with an error the proxy
answers itself (502, 504) or that cuts the exchange short.

It neither knows nor cares which wire either side speaks: the client side is
an :class:`~postcap.proxy.interfaces.IDownstream` (an HTTP/1.1 connection or
one HTTP/2 stream) and the upstream an
:class:`~postcap.proxy.interfaces.IUpstreamChannel` (an HTTP/1.1 connection
or one stream of a shared HTTP/2 connection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import gatherResults
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from postcap.capture import BodyCapture, CaptureTicket
from postcap.model import (
    Address,
    Body,
    Request,
    Response,
    Timings,
    TLSInfo,
    Transaction,
    is_media_type,
    media_type,
    new_id,
)
from postcap.proxy.framing import (
    Data,
    EndOfMessage,
    Event,
    RawHeaders,
    RequestHead,
    ResponseHead,
    end_to_end,
    header_values,
    wants_keep_alive,
)
from postcap.proxy.targets import Target
from postcap.proxy.upgrade import forwarded_upgrade, hand_over, upgrade_token
from postcap.proxy.upstream import Channel, UpstreamError, describe_connect_failure
from postcap.proxy.wire import TransportPauser, format_headers

if TYPE_CHECKING:
    from postcap.proxy.interfaces import IDownstream


def _not_before(moment: float | None, floor: float | None) -> float | None:
    """``moment``, moved forward to ``floor`` when it is earlier."""
    if moment is None or floor is None:
        return moment
    return max(moment, floor)


def _ms(start: float | None, end: float | None) -> float:
    if start is None or end is None:
        return -1.0
    return max(0.0, (end - start) * 1000.0)


class Exchange:
    """A single proxied request and its response."""

    _log = Logger()

    def __init__(
        self,
        client: "IDownstream",
        head: RequestHead,
        target: Target,
        ticket: CaptureTicket | None,
    ) -> None:
        self.client = client
        self.head = head
        self.target = target
        self.ticket = ticket
        self.settings = client.factory.settings
        self.reactor = client.factory.reactor
        self.id = new_id()
        self.started_at = self.reactor.seconds()
        spooler = client.factory.spooler
        limit = self.settings.max_capture_body
        self.request_capture = BodyCapture(limit, spooler, enabled=ticket is not None)
        self.response_capture = BodyCapture(limit, spooler, enabled=ticket is not None)
        self.upstream: Channel | None = None
        self.upstream_reused = False
        self.upstream_pauser: TransportPauser | None = None
        self.request_done = False
        self.response_head: ResponseHead | None = None
        self.response_done = False
        self.request_trailers: RawHeaders = []
        self.response_trailers: RawHeaders = []
        self.finished = False
        #: The status of a proxy-made answer (the response's own is in response_head).
        self.error_status: int | None = None
        self.client_keep_alive = wants_keep_alive(head.version, head.headers)
        self._pending_body: list[bytes] = []
        self._pending_end: RawHeaders | None = None
        self._timer: IDelayedCall | None = None
        self._connection: Channel | None = None
        self._t_connect_start: float | None = None
        self._t_head_sent: float | None = None
        self._t_request_sent: float | None = None
        self._t_response_head: float | None = None
        self._feeding_upstream = False  # client pauser registered on the upstream
        self._feeding_client = False  # upstream pauser registered on the client
        # -- Upgrade (proxy/upgrade.py): the protocol asked for, the kind recorded,
        # and the ticket the recorded transaction kept (None when filtered out).
        self.upgrade = upgrade_token(head.headers) if _may_upgrade(head.headers) else None
        self.kind = "http"
        self.recorded_ticket: CaptureTicket | None = None

    # -- request side ----------------------------------------------------------

    def start(self) -> None:
        self.client.pauser.pause("connecting")
        self._t_connect_start = self.reactor.seconds()
        connecting = self.client.factory.pool.acquire(
            self.target.origin, http11_only=self.upgrade is not None)
        connecting.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, result: tuple[Channel, bool]) -> None:
        upstream, reused = result
        if self.finished:
            self.client.factory.pool.release(upstream)
            return
        self.upstream, self.upstream_reused = upstream, reused
        self._connection = upstream  # kept after release, for its connect/TLS times
        self.upstream_pauser = upstream.attach(self, self.head.method)
        self._send_request_head(upstream)
        if self.finished:  # the channel failed at once (an HTTP/2 connection going away)
            self.client.pauser.resume("connecting")
            return
        self._t_head_sent = self.reactor.seconds()
        self._arm_timer()
        if not self.request_done:
            upstream.register_producer(self.client.pauser)
            self._feeding_upstream = True
        for data in self._pending_body:
            self._send_body(data)
        self._pending_body = []
        if self._pending_end is not None:
            self._send_end(self._pending_end)
        self.client.pauser.resume("connecting")

    def _connect_failed(self, failure: Failure) -> None:
        self.client.pauser.resume("connecting")
        if self.finished:
            return
        if failure.check(UpstreamError):
            self.fail_with(failure.value)
            return
        self.fail_with(describe_connect_failure(self.target.origin, failure))

    def _send_request_head(self, upstream: Channel) -> None:
        head = self.head
        headers: RawHeaders = []
        host_seen = False
        host = self.target.host_header or self.target.origin.authority().encode("ascii")
        for name, value in end_to_end(head.headers):
            if name.lower() == b"host":
                if host_seen:
                    continue
                host_seen, value = True, host
            headers.append((name, value))
        if not host_seen:
            headers.insert(0, (b"Host", host))
        headers.append((b"Via", self.settings.via))
        if upstream.is_stream and b"trailers" in header_values(head.headers, b"te"):
            headers.append((b"te", b"trailers"))  # gRPC servers insist on it
        if self.upgrade is not None:
            headers = forwarded_upgrade(headers, head.headers, self.upgrade)
        request_target = self.target.path
        if self.settings.upstream_proxy is not None and self.target.origin.scheme == "http":
            request_target = self.target.url.encode("latin-1")
        upstream.send_head(head.method, request_target, headers, head.framing)

    def request_data(self, data: bytes) -> None:
        self.request_capture.feed(data)
        if self.request_capture.congested:
            self._wait_for_spooler(self.client.pauser)
        if self.finished:
            return
        if self.upstream is None:
            self._pending_body.append(data)
        else:
            self._send_body(data)

    def request_end(self, trailers: RawHeaders) -> None:
        self.request_done = True
        self.request_trailers = trailers
        if self.finished:
            return
        if self.upstream is None:
            self._pending_end = trailers
        else:
            self._send_end(trailers)

    def _send_body(self, data: bytes) -> None:
        assert self.upstream is not None
        self.upstream.send_body(data)
        # Upload progress: the upstream is not silent while it still receives the body.
        self._arm_timer()

    def _send_end(self, trailers: RawHeaders) -> None:
        assert self.upstream is not None
        self.upstream.send_end(trailers)
        self._t_request_sent = self.reactor.seconds()
        self._stop_feeding_upstream(self.upstream)

    def _wait_for_spooler(self, source: TransportPauser) -> None:
        """Stop reading ``source`` until the spooler has caught up with the disk."""
        if source.paused_for("spool"):
            return
        source.pause("spool")
        self.client.factory.spooler.when_drained().addCallback(lambda _: source.resume("spool"))

    def _stop_feeding_upstream(self, upstream: Channel) -> None:
        if self._feeding_upstream:
            self._feeding_upstream = False
            upstream.unregister_producer()
        self.client.pauser.resume("backpressure")

    # -- response side -----------------------------------------------------------

    def upstream_events(self, events: list[Event]) -> None:
        self._arm_timer()
        for event in events:
            if self.finished:
                return
            if isinstance(event, ResponseHead):
                self._response_head(event)
            elif isinstance(event, Data):
                self._response_data(event.data)
            elif isinstance(event, EndOfMessage):
                self._response_end(event.trailers)

    def _response_head(self, head: ResponseHead) -> None:
        if head.status == 101:
            self._switch_protocols(head)
            return
        if head.informational:
            self.client.send_informational(self.head, head)
            assert self.upstream is not None
            self.upstream_events(self.upstream.continue_after_informational())
            return
        self.response_head = head
        self._t_response_head = self.reactor.seconds()
        content_type = media_type(head.headers)
        if self.ticket is not None and (
            not self.ticket.save_responses or is_media_type(content_type)
        ):
            self.response_capture.drop()
        headers = end_to_end(head.headers)
        if head.framing in ("chunked", "close"):
            # The body is not framed by any Content-Length the upstream also sent.
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        headers.append((b"Via", self.settings.via))
        self.client.send_response_head(self, head, headers)
        if head.framing != "none" and self.upstream_pauser is not None:
            self.client.register_producer(self.upstream_pauser)
            self._feeding_client = True

    def _switch_protocols(self, head: ResponseHead) -> None:
        """A 101: the exchange ends here and a relay takes both connections over."""
        upstream = self.upstream
        if self.upgrade is None or not self.request_done or upstream is None:
            self.fail_with(UpstreamError(502, "upgrade", "upstream switched protocols unasked"))
            return
        self.upstream = None  # never back to the pool
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.response_head = head
        self._t_response_head = self.reactor.seconds()
        self.response_done = True
        hand_over(self, upstream, head)

    def finish_handshake(self) -> None:
        """Record the upgraded exchange (the relay calls this)."""
        self._finish(None)

    def _response_data(self, data: bytes) -> None:
        self.response_capture.feed(data)
        if self.response_capture.congested and self.upstream_pauser is not None:
            self._wait_for_spooler(self.upstream_pauser)
        self.client.send_data(data)

    def _response_end(self, trailers: RawHeaders) -> None:
        assert self.response_head is not None
        self.response_trailers = trailers
        self.client.send_end(trailers)
        self.response_done = True
        head = self.response_head
        reusable = (
            self.request_done
            and head.framing != "close"
            and wants_keep_alive(head.version, head.headers)
        )
        self._release_upstream(reusable)
        self._finish(None)

    def upstream_failed(self, error: UpstreamError) -> None:
        if self.finished:
            return
        self.fail_with(error)

    def _timed_out(self) -> None:
        self._timer = None
        if self.upstream_pauser is not None and self.upstream_pauser.paused:
            # The upstream is silent because the proxy stopped reading it for a slow client.
            self._arm_timer()
            return
        if self.response_head is None:
            self.fail_with(
                UpstreamError(504, "timeout", f"upstream {self.target.origin.authority()} "
                              f"did not answer within {self.settings.upstream_timeout:g} s")
            )
        else:
            self.fail_with(UpstreamError(504, "timeout", "upstream stalled in the middle of the response"))

    def _arm_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.settings.upstream_timeout)
        else:
            self._timer = self.reactor.callLater(self.settings.upstream_timeout, self._timed_out)

    # -- ending ------------------------------------------------------------------

    def fail_with(self, error: UpstreamError) -> None:
        """End with a proxy-made error: answer it if no response has started yet,
        else cut the client connection so it cannot mistake a short body for a whole one."""
        self._release_upstream(False)
        self.client.factory.tally.upstream_error(error.kind)
        if self.response_head is None:
            self.error_status = error.status
            self.client.send_error(
                error.status, error.kind, error.message,
                keep_alive=self.request_done and self.client_keep_alive, url=self.target.url,
            )
        else:
            self.client_keep_alive = False
            self.client.cut()
            self.client.factory.count_error(error.kind)
            self._log.info(
                "{status} {kind} for {method} {url}, response cut short: {message}",
                status=error.status,
                method=self.head.method.decode("latin-1"),
                url=self.target.url,
                message=error.message,
                kind=error.kind,
                txn_id=self.id,
            )
        self._finish(error.message)

    def fail_with_client_error(self, reason: str) -> None:
        """The request body turned out malformed after its head went upstream."""
        self._release_upstream(False)
        self.client_keep_alive = False
        if self.response_head is None:
            self.error_status = 400
            self.client.send_error(400, "bad-request", reason, keep_alive=False, url=self.target.url)
        else:
            self.client.factory.count_error("bad-request")
            self._log.info("400 bad-request from client {client} for {url}: {reason}",
                           client=self.client.client_address.host, url=self.target.url, reason=reason)
            self.client.cut()
        self._finish(f"malformed request: {reason}")

    def client_gone(self) -> None:
        """The client disconnected: drop the upstream side and record the loss."""
        if self.finished:
            return
        self._release_upstream(False)
        self._finish("client disconnected before the exchange ended")

    def _release_upstream(self, reusable: bool) -> None:
        upstream, self.upstream = self.upstream, None
        if self._feeding_client:
            self._feeding_client = False
            self.client.unregister_producer()
        if upstream is None:
            return
        self._stop_feeding_upstream(upstream)
        if self.upstream_pauser is not None:
            self.upstream_pauser.resume("backpressure")
            self.upstream_pauser.resume("spool")
        pool = self.client.factory.pool
        if reusable:
            pool.release(upstream)
        else:
            pool.discard(upstream)

    def _finish(self, error: str | None) -> None:
        if self.finished:
            return
        self.finished = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        end = self.reactor.seconds()
        factory = self.client.factory
        factory.transactions += 1
        head = self.response_head
        factory.tally.request_answered(
            self.error_status if head is None else head.status, self.head.version.decode("latin-1"))
        if self.ticket is not None or factory.recorder.observes_all:
            self._record(end, error)
        self.client.exchange_finished(self)

    def _record(self, end: float, error: str | None) -> None:
        ticket = self.ticket
        response_head = self.response_head
        if ticket is not None and ticket.filters_responses and not ticket.wants_response(
            None if response_head is None else response_head.status,
            "" if response_head is None else media_type(response_head.headers),
        ):
            ticket = None
            self.client.factory.tally.capture_filtered()
            self.request_capture.drop()
            self.response_capture.drop()
        self.recorded_ticket = ticket
        connection = None if self.upstream_reused else self._connection
        connected_at = None if connection is None else connection.connected_at
        handshake_at = None if connection is None else connection.handshake_at
        # The head may be written while the upstream TLS handshake is still running
        # (TLS buffers it): sending starts when the handshake ends, not before.
        send_start = _not_before(self._t_head_sent, handshake_at)
        send_end = _not_before(self._t_request_sent or self._t_head_sent, handshake_at)
        timings = Timings(
            _ms(self._t_connect_start, connected_at),
            _ms(connected_at, handshake_at),
            _ms(send_start, send_end),
            _ms(send_end, self._t_response_head),
            _ms(self._t_response_head, end if self.response_done else None),
        )
        parts = (ticket, _ms(self.started_at, end), error, timings)
        request_body = self.request_capture.body_now()
        response_body = self.response_capture.body_now()
        if request_body is not None and response_body is not None:
            try:
                self._complete(parts, request_body, response_body)
            except Exception:
                self._log.failure("recording transaction {txn_id} failed", txn_id=self.id)
            return
        # A spooled copy is complete once the spooler has written it all.
        bodies = [self.request_capture.finish(), self.response_capture.finish()]
        gatherResults(bodies, consumeErrors=True).addCallback(
            lambda results: self._complete(parts, *results)
        ).addErrback(
            lambda failure: self._log.failure("recording transaction {txn_id} failed", failure, txn_id=self.id)
        )

    def _complete(
        self,
        parts: tuple[CaptureTicket | None, float, str | None, Timings],
        request_body: Body,
        response_body: Body,
    ) -> None:
        """Build the :class:`Transaction` and hand it to the recorder."""
        ticket, duration_ms, error, timings = parts
        head = self.head
        rh = self.response_head
        response = None if rh is None else Response(
            rh.status, rh.reason.decode("latin-1"),
            # An HTTP/2 stream is recorded as HTTP/2 whichever version the origin spoke.
            (head.version if head.version == b"HTTP/2" else rh.version).decode("ascii"),
            tuple(rh.headers), response_body, tuple(self.response_trailers),
        )
        origin = self.target.origin
        transaction = Transaction(
            self.id,
            None if ticket is None else ticket.session_id,
            self.started_at,
            duration_ms,
            self.target.url,
            origin.scheme,
            self.client.client_address,
            Address(origin.host, origin.port),
            Request(
                head.method.decode("latin-1"), head.target, head.version.decode("ascii"),
                tuple(head.headers), request_body, tuple(self.request_trailers),
            ),
            response,
            error,
            timings,
            self.client.tls_info,
            self.kind,
        )
        self.client.factory.recorder.complete(ticket, transaction)


def _may_upgrade(headers: RawHeaders) -> bool:
    """Whether any header is an ``Upgrade`` (a cheap test before the full one)."""
    return any(len(name) == 7 and name.lower() == b"upgrade" for name, _ in headers)


__all__ = ["Exchange", "TransportPauser", "TLSInfo", "format_headers"]
