"""A large seeded history, written straight through the history store's own batch
insert (no network): for the 100k-transaction tests and benchmark.

Transaction ``i`` of the seeded session has method ``METHODS[i % 4]``, URL
``http://host{i % 10}.example.test/api/items/{i}?page={i % 50}``, status
``STATUSES[i % 5]`` and a small JSON request body for POST/PUT.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any

from postcap.filters import default_options
from postcap.model import Address, Body, SessionRecord
from postcap.sinks import history
from postcap.testing import make_transaction

SEEDED_SESSION = "seeded-session"
METHODS = ("GET", "POST", "GET", "PUT")
STATUSES = (200, 201, 404, 500, 200)
STARTED = 1_780_000_000.0


def seeded_transactions(count: int, session_id: str = SEEDED_SESSION):  # type: ignore[no-untyped-def]
    """``count`` transactions of the documented shape, made from one template."""
    template = make_transaction(session_id=session_id)
    json_body = Body(size=13, captured=True, content=b'{"item": 1}\n')
    for i in range(count):
        method = METHODS[i % 4]
        host = f"host{i % 10}.example.test"
        yield dataclasses.replace(
            template,
            id=f"seed-{i:07d}",
            started_at=STARTED + i * 0.01,
            url=f"http://{host}/api/items/{i}?page={i % 50}",
            server=Address(host, 80),
            request=dataclasses.replace(
                template.request,
                method=method,
                body=json_body if method in ("POST", "PUT") else template.request.body,
                headers=template.request.headers
                + (((b"Content-Type", b"application/json"),) if method in ("POST", "PUT") else ()),
            ),
            response=dataclasses.replace(template.response, status=STATUSES[i % 5]),
        )


def seed_history(path: str, count: int = 100_000) -> None:
    """Create ``path`` at the current schema with one stopped session of ``count``
    transactions of the documented shape.

    Four template transactions (one per method of :data:`METHODS`) go through the
    store's own row builder (:func:`postcap.sinks.history._transaction_row`); each
    seeded row is a template row with its id, time, URL, host and status changed, so
    100,000 rows take seconds, not minutes.  (Their stored detail JSON keeps the
    template's URL: these rows are for list and overview queries.)
    """
    templates = list(seeded_transactions(4))
    rows = [history._transaction_row(txn) for txn in templates]
    columns = list(history._TRANSACTION_COLUMNS)
    at = {name: columns.index(name) for name in ("id", "started_at", "url", "host", "status")}
    connection, cursor = _open_with_session(path, SEEDED_SESSION, "seeded", count, request_count=count)
    try:

        def generated():  # type: ignore[no-untyped-def]
            for i in range(count):
                row = list(rows[i % 4])
                host = f"host{i % 10}.example.test"
                row[at["id"]] = f"seed-{i:07d}"
                row[at["started_at"]] = STARTED + i * 0.01
                row[at["url"]] = f"http://{host}/api/items/{i}?page={i % 50}"
                row[at["host"]] = host
                row[at["status"]] = STATUSES[i % 5]
                yield row

        cursor.executemany(
            f"INSERT INTO transactions ({', '.join(columns)}) VALUES ({history._marks(len(columns))})",
            generated(),
        )
        connection.execute("COMMIT")
    finally:
        connection.close()


API_SESSION = "api-session"


def api_transactions(count: int, session_id: str = API_SESSION):  # type: ignore[no-untyped-def]
    """``count`` varied JSON API transactions on two hosts: user reads by numeric id
    (optional ``nickname``), order reads by UUID with nested items, user creation with a
    JSON body, a paged list with a query, 404s and 204 deletes; bearer auth throughout."""
    import json
    import uuid

    template = make_transaction(session_id=session_id)
    auth = ((b"Authorization", b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"),
            (b"Accept", b"application/json"))
    json_type = ((b"Content-Type", b"application/json"),)
    for i in range(count):
        kind = i % 6
        host = "api.example.test" if kind < 4 else "orders.example.test"
        method, status, request_body, headers = "GET", 200, b"", auth
        if kind in (0, 1):
            path = f"/v1/users/{i}"
            user: dict[str, object] = {"id": i, "name": f"user {i}", "email": f"u{i}@example.test",
                                       "created_at": "2026-01-02T03:04:05Z", "active": i % 2 == 0}
            if i % 3 == 0:
                user["nickname"] = None if i % 9 == 0 else f"n{i}"
            body = json.dumps(user).encode()
        elif kind == 2:
            method, status, path = "POST", 201, "/v1/users"
            request_body = json.dumps({"name": f"user {i}", "email": f"u{i}@example.test",
                                       "password": "correct-horse"}).encode()
            headers = auth + json_type
            body = json.dumps({"id": i, "name": f"user {i}"}).encode()
        elif kind == 3:
            path = f"/v1/users?page={i % 50}&per_page=20"
            body = json.dumps([{"id": n, "name": f"user {n}"} for n in range(3)]).encode()
        elif kind == 4:
            order = uuid.UUID(int=i)
            path = f"/v2/orders/{order}"
            body = json.dumps({"id": str(order), "total": i / 10, "placed_on": "2026-03-04",
                               "items": [{"sku": f"S-{n}", "quantity": n + 1} for n in range(2)]}).encode()
        else:
            order = uuid.UUID(int=i)
            method, path = ("DELETE", f"/v2/orders/{order}") if i % 4 else ("GET", f"/v2/orders/{order}")
            status = 204 if method == "DELETE" else 404
            body = b"" if status == 204 else b'{"error": "no such order"}'
        yield dataclasses.replace(
            template,
            id=f"api-{i:07d}",
            started_at=STARTED + i * 0.01,
            url=f"https://{host}{path}",
            server=Address(host, 443),
            request=dataclasses.replace(
                template.request, method=method, headers=headers,
                body=Body(size=len(request_body), captured=True, content=request_body)),
            response=dataclasses.replace(
                template.response, status=status,
                headers=json_type if body else (),
                body=Body(size=len(body), captured=True, content=body)),
        )


def _open_with_session(path: str, session_id: str, name: str, count: int, **fields: Any
                       ) -> tuple[sqlite3.Connection, sqlite3.Cursor]:
    """``path`` opened at the current schema, inside a transaction that has written one
    stopped session spanning ``count`` requests 10 ms apart."""
    connection = sqlite3.connect(path, isolation_level=None)
    history._configure_connection(connection)
    cursor = connection.cursor()
    history._migrate(cursor, list(history.MIGRATIONS))
    if connection.in_transaction:
        connection.execute("COMMIT")
    options = default_options()
    options["name"] = name
    connection.execute("BEGIN")
    history._upsert_session(cursor, SessionRecord(
        id=session_id, name=name, source="proxy", state="stopped",
        started_at=STARTED, stopped_at=STARTED + count * 0.01, options=options, **fields))
    return connection, cursor


def seed_api_history(path: str, count: int = 100_000) -> None:
    """Create ``path`` at the current schema with one stopped session
    (:data:`API_SESSION`) of ``count`` :func:`api_transactions`, through the store's own
    batch insert."""
    connection, cursor = _open_with_session(path, API_SESSION, "api", count)
    try:
        connection.execute("COMMIT")
        batch = []
        for txn in api_transactions(count):
            batch.append(txn)
            if len(batch) == 5000:
                history._insert_batch(cursor, batch)
                connection.execute("COMMIT")
                batch = []
        if batch:
            history._insert_batch(cursor, batch)
            connection.execute("COMMIT")
    finally:
        connection.close()
