"""The HTTP/1.1 client side of an exchange: responses written as HTTP/1.1 bytes.

:class:`HTTP11Responder` is the :class:`~postcap.proxy.interfaces.IDownstream` half of
:class:`~postcap.proxy.server.ProxyServerProtocol` (which adds the pauser, the errors
and the end of an exchange): it frames each response for the client, chunked when the
length is unknown, and says whether the connection persists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from postcap.proxy.framing import RawHeaders, RequestHead, ResponseHead, end_to_end
from postcap.proxy.wire import chunk, format_headers, last_chunk

if TYPE_CHECKING:
    from postcap.proxy.exchange import Exchange


class HTTP11Responder:
    """Writes one exchange's response at a time to ``self.transport``."""

    transport: Any
    _response_chunked = False

    def send_informational(self, request_head: RequestHead, head: ResponseHead) -> None:
        if request_head.version == b"HTTP/1.1":
            self.transport.write(
                b"HTTP/1.1 %d %s\r\n%s\r\n"
                % (head.status, head.reason, format_headers(end_to_end(head.headers)))
            )

    def send_response_head(self, exchange: Exchange, head: ResponseHead, headers: RawHeaders) -> None:
        """Frame the response for this client: chunked when the length is unknown
        (HTTP/1.1), else close-delimited; say whether the connection persists."""
        http11 = exchange.head.version == b"HTTP/1.1"
        self._response_chunked = False
        if head.framing in ("chunked", "close"):
            if http11:
                self._response_chunked = True
                headers.append((b"Transfer-Encoding", b"chunked"))
            else:
                exchange.client_keep_alive = False
        if not exchange.request_done:
            # The upstream answered before the request ended: do not try to read on.
            exchange.client_keep_alive = False
        if not exchange.client_keep_alive:
            headers.append((b"Connection", b"close"))
        elif not http11:
            headers.append((b"Connection", b"keep-alive"))
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n%s\r\n" % (head.status, head.reason, format_headers(headers))
        )

    def send_data(self, data: bytes) -> None:
        self.transport.write(chunk(data) if self._response_chunked else data)

    def send_end(self, trailers: RawHeaders) -> None:
        if self._response_chunked:
            self.transport.write(last_chunk(trailers))

    def register_producer(self, producer: object) -> None:
        self.transport.registerProducer(producer, True)

    def unregister_producer(self) -> None:
        self.transport.unregisterProducer()

    def cut(self) -> None:
        self.close()
