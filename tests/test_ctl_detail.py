"""postcapctl's text view of one transaction: version and trailers as captured."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from postcap.ctl import show_detail
from postcap.testing import make_transaction


class ShowDetailTests(SynchronousTestCase):
    def test_http2_version_and_trailers_are_shown(self) -> None:
        detail = make_transaction(
            url="https://grpc.example.test/pkg.Service/Call", method="POST", http_version="HTTP/2",
            response_trailers=((b"grpc-status", b"0"),),
        ).detail()
        text = show_detail(detail)
        self.assertIn("request: HTTP/2\n", text)
        self.assertIn("response: HTTP/2 200 OK\n", text)
        self.assertIn("  trailers:\n    grpc-status: 0", text)
        self.assertNotIn("HTTP/HTTP", text)
