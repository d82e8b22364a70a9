"""A small JSON API for the API-discovery end-to-end tests, run as a subprocess.

    python tests/api_origin.py [--tls CERT KEY] [--port N]

Same command line and ``READY <port>`` line as tests/origin.py.  Its true description
is tests/api_origin_openapi.yaml.  Endpoints (all JSON):

- ``POST /login`` (form ``username``, ``password``): 200 ``{token, expires_at}`` and a
  ``session`` cookie; 401 ``{error}`` for a wrong password
- ``GET /users[?limit=N]``: 200 list of users
- ``POST /users`` (JSON ``{name, email, nickname?}``): 201 the user
- ``GET /users/{userId}``: 200 the user or 404 ``{error}``; ``DELETE``: 204
- ``GET /orders/{orderId}`` (a UUID): 200 the order or 404 ``{error}``
- ``GET /orders/{orderId}/items/{itemId}``: 200 the item

Everything but ``/login`` needs ``Authorization: Bearer TOKEN`` (else 401).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any
from urllib.parse import parse_qsl

from twisted.web.resource import Resource
from twisted.web.server import Request

try:
    from tests.origin import main
except ImportError:  # run as a script: tests/ is on sys.path, the repository may not be
    from origin import main  # type: ignore[no-redef]

PASSWORD = "correct-horse-battery-staple-77"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
SESSION = "s3ss10n-cookie-value-0123456789abcdef"
ORDER = "9b2f6c1e-3d4a-4f5b-8c7d-1e2f3a4b5c6d"
USERS: dict[int, dict[str, Any]] = {
    1: {"id": 1, "name": "Alice", "email": "alice@example.com", "created_at": "2026-01-02T03:04:05Z",
        "nickname": "al"},
    2: {"id": 2, "name": "Bob", "email": "bob@example.com", "created_at": "2026-02-03T04:05:06Z"},
}
ORDERS = {ORDER: {"id": ORDER, "user_id": 1, "total": 12.5, "placed_on": "2026-03-04",
                  "items": [{"id": 1, "sku": "A-1", "quantity": 2}, {"id": 2, "sku": "B-2", "quantity": 1}]}}


class ApiResource(Resource):
    isLeaf = True

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self.next_id = 3

    def render(self, request: Request) -> bytes:
        path = request.path.decode("latin-1")
        method = request.method.decode("latin-1")
        if (method, path) == ("POST", "/login"):
            return self.login(request)
        if request.getHeader("authorization") != f"Bearer {TOKEN}":
            return reply(request, 401, {"error": "unauthorized"})
        if path == "/users" and method in ("GET", "POST"):
            return self.users(request) if method == "GET" else self.create_user(request)
        match = re.fullmatch(r"/users/(\d+)", path)
        if match and method in ("GET", "DELETE"):
            user = USERS.get(int(match.group(1)))
            if user is None:
                return reply(request, 404, {"error": "no such user"})
            return reply(request, 204, None) if method == "DELETE" else reply(request, 200, user)
        match = re.fullmatch(r"/orders/([0-9a-f-]{36})(?:/items/(\d+))?", path)
        if match and method == "GET":
            order = ORDERS.get(match.group(1))
            if order is None:
                return reply(request, 404, {"error": "no such order"})
            if match.group(2) is None:
                return reply(request, 200, order)
            item = next((i for i in order["items"] if i["id"] == int(match.group(2))), None)
            return reply(request, 200, item) if item else reply(request, 404, {"error": "no such item"})
        return reply(request, 404, {"error": "no such endpoint"})

    def login(self, request: Request) -> bytes:
        form = dict(parse_qsl(request.content.read().decode("utf-8")))
        if form.get("password") != PASSWORD:
            return reply(request, 401, {"error": "wrong password"})
        request.setHeader("Set-Cookie", f"session={SESSION}; Path=/; HttpOnly")
        return reply(request, 200, {"token": TOKEN, "expires_at": "2026-12-31T23:59:59Z"})

    def users(self, request: Request) -> bytes:
        limit = int(request.args.get(b"limit", [b"100"])[0])
        return reply(request, 200, list(USERS.values())[:limit])

    def create_user(self, request: Request) -> bytes:
        given = json.loads(request.content.read())
        user = {"id": self.next_id, "name": given["name"], "email": given["email"],
                "created_at": "2026-04-05T06:07:08Z"}
        if "nickname" in given:
            user["nickname"] = given["nickname"]
        self.next_id += 1
        return reply(request, 201, user)


def reply(request: Request, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    if body is None:
        return b""
    request.setHeader("Content-Type", "application/json")
    return json.dumps(body).encode("utf-8")


if __name__ == "__main__":
    sys.exit(main(resource=ApiResource))
