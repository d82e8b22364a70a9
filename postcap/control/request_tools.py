"""``request.export`` and ``request.diff``: captured requests as code, and what
differs between two of them (extensions over the history methods)."""

from __future__ import annotations

from typing import Any, Callable

from postcap.control.dispatch import InvalidParams, NotFound
from postcap.control.method_group import MethodGroup
from postcap.control.methods import ID
from postcap.control.params import Enum, takes
from postcap.diffing import diff_transactions
from postcap.requests_as_code import FORMATS, ExportError, export_request
from postcap.session import SessionManager


class RequestToolMethods(MethodGroup):
    """Read-only views of captured requests."""

    def __init__(self, sessions: SessionManager) -> None:
        self.sessions = sessions

    def methods(self) -> dict[str, Callable[..., Any]]:
        return {"request.export": self.request_export, "request.diff": self.request_diff}

    async def _detail(self, transaction_id: str) -> dict[str, Any]:
        detail = await self.sessions.store.get_transaction(transaction_id)
        if detail is None:
            raise NotFound("request", transaction_id)
        return detail

    @takes(id=ID, format=Enum(tuple(FORMATS), optional=True, default="curl"))
    async def request_export(self, id: str, format: str = "curl") -> str:
        detail = await self._detail(id)
        try:
            return export_request(detail, format)
        except ExportError as exc:
            raise InvalidParams("id", str(exc)) from exc

    @takes(a=ID, b=ID)
    async def request_diff(self, a: str, b: str) -> dict[str, Any]:
        return diff_transactions(await self._detail(a), await self._detail(b))


__all__ = ["RequestToolMethods"]
