"""The two narrow seams of an :class:`~postcap.proxy.exchange.Exchange`.

An exchange talks to the client side through :class:`IDownstream` and to the
origin through :class:`IUpstreamChannel`.  HTTP/1.1 connections and HTTP/2
streams implement both, so one exchange serves any pairing of wire versions.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IDownstream(Interface):
    """Where an exchange's response goes: an HTTP/1.1 client connection or one
    HTTP/2 stream."""

    factory = Attribute("The ProxyFactory: settings, reactor, pool, spooler, recorder, counters.")
    pauser = Attribute("Pauses reading the request (pause/resume by reason); an IPushProducer.")
    client_address = Attribute("postcap.model.Address of the client.")
    tls_info = Attribute("postcap.model.TLSInfo of the client's TLS, or None.")

    def send_informational(request_head, head):  # type: ignore[no-untyped-def]
        """Forward a 1xx response where the client's protocol can carry it."""

    def send_response_head(exchange, head, headers):  # type: ignore[no-untyped-def]
        """Send the final response head: ``headers`` are end to end, with Via."""

    def send_data(data):  # type: ignore[no-untyped-def]
        """Send a piece of the response body."""

    def send_end(trailers):  # type: ignore[no-untyped-def]
        """End the response, with trailers where the protocol can carry them."""

    def register_producer(producer):  # type: ignore[no-untyped-def]
        """Pause ``producer`` (an IPushProducer) while the client cannot take more."""

    def unregister_producer():  # type: ignore[no-untyped-def]
        """Forget the producer."""

    def send_error(status, kind, message, keep_alive, url=None):  # type: ignore[no-untyped-def]
        """Answer with a proxy-made error response."""

    def cut():  # type: ignore[no-untyped-def]
        """Abort a response already under way (close the connection, or reset the stream)."""

    def exchange_finished(exchange):  # type: ignore[no-untyped-def]
        """The exchange ended (exactly once)."""


class IUpstreamChannel(Interface):
    """Where an exchange's request goes: an HTTP/1.1 connection or one HTTP/2 stream."""

    connected_at = Attribute("When the underlying connection was made (reactor seconds) or None.")
    handshake_at = Attribute("When its TLS handshake ended, or None.")
    is_stream = Attribute("True for a stream of a shared (multiplexed) connection.")

    def attach(listener, method):  # type: ignore[no-untyped-def]
        """Serve ``listener`` (upstream_events / upstream_failed); returns the pauser
        that stops reading the response."""

    def send_head(method, target, headers, framing):  # type: ignore[no-untyped-def]
        """Send the request head; ``headers`` are end to end with Host and Via."""

    def send_body(data):  # type: ignore[no-untyped-def]
        """Send a piece of the request body."""

    def send_end(trailers):  # type: ignore[no-untyped-def]
        """End the request, with trailers where the framing can carry them."""

    def register_producer(producer):  # type: ignore[no-untyped-def]
        """Pause ``producer`` while the upstream cannot take more."""

    def unregister_producer():  # type: ignore[no-untyped-def]
        """Forget the producer."""

    def continue_after_informational():  # type: ignore[no-untyped-def]
        """Events after a 1xx response has been handled."""
