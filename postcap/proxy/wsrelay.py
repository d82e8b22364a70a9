"""The WebSocket relay: :class:`~postcap.proxy.websocket.WebSocketBridge` wired to two transports.

Each side's :class:`~postcap.proxy.exchange.TransportPauser` is registered as the
producer of the other side's transport, so a slow reader pauses the sender and
memory does not grow with the traffic.  Captured messages go to the recorder
while the handshake's session runs (pause skips them, stop ends their capture
for good); the close facts go to it once both connections are gone.  A close
handshake that the other side never finishes is cut after ``close_timeout``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from postcap.capture import CaptureTicket
from postcap.proxy.exchange import TransportPauser
from postcap.proxy.upgrade import close_transport
from postcap.proxy.websocket import Step, WebSocketBridge

if TYPE_CHECKING:
    from postcap.proxy.server import ProxyServerProtocol
    from postcap.proxy.upstream import UpstreamProtocol


class WebSocketRelay:
    """One upgraded WebSocket connection, client ⇄ origin."""

    _log = Logger()
    #: Seconds a started close handshake may take before both connections are cut.
    close_timeout = 10.0

    def __init__(self, client: "ProxyServerProtocol", upstream: "UpstreamProtocol",
                 transaction_id: str) -> None:
        self.client = client
        self.upstream = upstream
        self.transaction_id = transaction_id
        factory = client.factory
        self.reactor = factory.reactor
        self.recorder: Any = factory.recorder
        self.settings = factory.settings
        self.ticket: CaptureTicket | None = None
        self.bridge: WebSocketBridge | None = None
        self.upstream_pauser = TransportPauser(upstream.transport)
        self._client_open = True
        self._upstream_open = True
        self._closing_client = False
        self._closing_upstream = False
        self._timer: IDelayedCall | None = None
        self._ended = False

    def start(self, ticket: CaptureTicket | None, client_early: bytes, upstream_early: bytes) -> None:
        """Begin relaying (``ticket``: the recorded handshake's, or None: capture nothing)."""
        self.ticket = ticket
        self.client.factory.tally.connection_opened("websocket")
        limit = None if ticket is None else self.settings.max_capture_body
        self.bridge = WebSocketBridge(self.transaction_id, self.reactor.seconds, limit,
                                      self.settings.max_websocket_message)
        self.upstream.transport.registerProducer(self.client.pauser, True)
        self.client.transport.registerProducer(self.upstream_pauser, True)
        if client_early:
            self.from_client(client_early)
        if upstream_early:
            self.from_upstream(upstream_early)

    # -- the two connections --------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        if self.bridge is not None and self._client_open:
            self._run(self.bridge.from_client, data)

    def from_upstream(self, data: bytes) -> None:
        if self.bridge is not None and self._upstream_open:
            self._run(self.bridge.from_server, data)

    def client_lost(self) -> None:
        self._client_open = False
        if self.bridge is not None:
            self._run(self.bridge.client_lost)
        self._maybe_end()

    def upstream_lost(self) -> None:
        self._upstream_open = False
        if self.bridge is not None:
            self._run(self.bridge.server_lost)
        self._maybe_end()

    def going_away(self) -> None:
        """The proxy is draining: close both sides with 1001."""
        if self.bridge is not None:
            self._run(self.bridge.going_away)
            self._arm_close_timer()

    # -- applying what the bridge decided -------------------------------------------------

    def _run(self, action: Any, *args: Any) -> None:
        try:
            step = action(*args)
        except Exception:
            self._log.failure("WebSocket relay of {txn_id} failed; closing both sides",
                              txn_id=self.transaction_id)
            self._abort()
            return
        self._apply(step)

    def _apply(self, step: Step) -> None:
        if step.to_client and self._client_open:
            self.client.transport.writeSequence(step.to_client)
        if step.to_server and self._upstream_open:
            self.upstream.transport.writeSequence(step.to_server)
        if step.messages:
            self._record(step)
        if step.close_client and not self._closing_client and self._client_open:
            self._closing_client = True
            close_transport(self.client.transport)
        if step.close_server and not self._closing_upstream and self._upstream_open:
            self._closing_upstream = True
            close_transport(self.upstream.transport)
        if self.bridge is not None and self.bridge.close_code is not None:
            self._arm_close_timer()

    def _record(self, step: Step) -> None:
        ticket, bridge = self.ticket, self.bridge
        if ticket is None or bridge is None:
            return
        state = self.recorder.message_capture(ticket)
        if state == "running":
            for message in step.messages:
                self.recorder.message_captured(ticket, message)
            if self.recorder.congested and not self.client.pauser.paused_for("history"):
                # The history is behind: read neither side until it has caught up.
                self.client.pauser.pause("history")
                self.upstream_pauser.pause("history")
                self.recorder.when_drained().addCallback(self._history_caught_up)
        elif state == "ended":
            bridge.stop_capturing()

    def _history_caught_up(self, _: object) -> None:
        self.client.pauser.resume("history")
        self.upstream_pauser.resume("history")

    # -- ending ------------------------------------------------------------------------

    def _arm_close_timer(self) -> None:
        if self._timer is None and not self._ended:
            self._timer = self.reactor.callLater(self.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._timer = None
        self._abort()

    def _abort(self) -> None:
        if self._client_open:
            self.client.transport.abortConnection()
        if self._upstream_open:
            self.upstream.transport.abortConnection()

    def _maybe_end(self) -> None:
        if self._ended or self._client_open or self._upstream_open:
            return
        self._ended = True
        if self.bridge is not None:
            self.client.factory.tally.connection_closed("websocket")
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        bridge, ticket = self.bridge, self.ticket
        if bridge is None or ticket is None:
            return
        try:
            self.recorder.websocket_closed(ticket, self.transaction_id, bridge.closed_by,
                                           bridge.close_code)
        except Exception:
            self._log.failure("recording the close of {txn_id} failed", txn_id=self.transaction_id)
