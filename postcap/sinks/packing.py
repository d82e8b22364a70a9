"""Batches of transactions packed for the history's database process.

Pickling a :class:`~postcap.model.Transaction` costs ~10 µs on the reactor thread
(a dozen objects, every header pair memoised); :func:`pack` flattens each one to
a tuple of plain values and ``marshal``\\ s the batch in ~1 µs a transaction.
Both ends run the same interpreter, which is all ``marshal`` asks.  A body of a
class other than :class:`~postcap.model.Body` travels pickled, as itself.
"""

from __future__ import annotations

import marshal
import pickle
from typing import Any, Sequence

from postcap.model import Address, Body, Request, Response, Timings, TLSInfo, Transaction


def _body(body: Body) -> Any:
    if type(body) is Body:
        return (body.size, body.captured, body.truncated, body.content, body.spool_path)
    return pickle.dumps(body)


def _unbody(packed: Any) -> Body:
    if isinstance(packed, bytes):
        body: Body = pickle.loads(packed)
        return body
    return Body(*packed)


def _flat(txn: Transaction) -> tuple[Any, ...]:
    request, response, timings, tls = txn.request, txn.response, txn.timings, txn.tls
    return (
        txn.id, txn.session_id, txn.started_at, txn.duration_ms, txn.url, txn.scheme,
        txn.client.host, txn.client.port, txn.server.host, txn.server.port,
        request.method, request.target, request.http_version, request.headers,
        _body(request.body), request.trailers,
        None if response is None else (
            response.status, response.reason, response.http_version, response.headers,
            _body(response.body), response.trailers,
        ),
        txn.error,
        (timings.connect_ms, timings.tls_ms, timings.send_ms, timings.wait_ms,
         timings.receive_ms),
        None if tls is None else (tls.sni, tls.version, tls.cipher),
        txn.kind, txn.schema_version,
    )


def _transaction(flat: tuple[Any, ...]) -> Transaction:
    (txn_id, session_id, started_at, duration_ms, url, scheme, client_host, client_port,
     server_host, server_port, method, target, http_version, headers, request_body,
     request_trailers, response, error, timings, tls, kind, schema_version) = flat
    return Transaction(
        txn_id, session_id, started_at, duration_ms, url, scheme,
        Address(client_host, client_port), Address(server_host, server_port),
        Request(method, target, http_version, headers, _unbody(request_body), request_trailers),
        None if response is None else Response(*response[:4], _unbody(response[4]), response[5]),
        error, Timings(*timings), None if tls is None else TLSInfo(*tls), kind,
        schema_version,
    )


def pack(transactions: Sequence[Transaction]) -> bytes:
    """``transactions`` as bytes for :func:`unpack`."""
    return marshal.dumps([_flat(txn) for txn in transactions])


def unpack(data: bytes) -> list[Transaction]:
    """The transactions :func:`pack` was given, equal to them."""
    return [_transaction(flat) for flat in marshal.loads(data)]
