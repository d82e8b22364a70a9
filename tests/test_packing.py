"""Batches packed for the history's database process come back equal."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from postcap.model import Address, Body, Timings, TLSInfo
from postcap.sinks.packing import pack, unpack
from postcap.testing import make_transaction
from tests.history_conformance import ExplodingBody


class PackingTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        batch = [
            make_transaction(),
            make_transaction(url="https://secure.test/a?b=ü",
                             tls=TLSInfo("secure.test", "TLSv1.3", "X")),
            make_transaction(url="http://plain.test/", tls=None),
            make_transaction(error="upstream refused", session_id=None),
            make_transaction(error="cut short", with_response=True),
            make_transaction(kind="tunnel", response_body=b""),
            make_transaction(request_body=b"\x00\xff" * 10, response_body=Body(
                size=2_000_000, captured=True, truncated=True, spool_path="/spool/body-1")),
            make_transaction(request_headers=((b"X-\xff", b"\x00"),), duration_ms=float("inf"),
                             timings=Timings(-1.0, -1.0, 0.25, 1.5, 2.0),
                             client=Address("::1", 5), server=Address("h.test", 8080)),
        ]
        self.assertEqual(unpack(pack(batch)), batch)
        self.assertEqual(unpack(pack([])), [])

    def test_a_body_of_another_class_travels_as_itself(self) -> None:
        (txn,) = unpack(pack([make_transaction(response_body=ExplodingBody(3, True))]))
        assert txn.response is not None
        self.assertIs(type(txn.response.body), ExplodingBody)
        self.assertEqual((txn.response.body.size, txn.response.body.captured), (3, True))
