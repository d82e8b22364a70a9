"""``request.export`` and ``request.diff``: captured requests as code, and what
differs between two of them (extensions over the history methods)."""

from __future__ import annotations

from typing import Any, Callable

from postcap.control import params
from postcap.control.dispatch import InvalidParams, NotFound
from postcap.control.method_group import MethodGroup
from postcap.diffing import diff_transactions
from postcap.requests_as_code import FORMATS, ExportError, export_request
from postcap.session import SessionManager


class RequestToolMethods(MethodGroup):
    """Read-only views of captured requests."""

    def __init__(self, sessions: SessionManager) -> None:
        self.sessions = sessions

    def methods(self) -> dict[str, Callable[..., Any]]:
        return {"request.export": self.request_export, "request.diff": self.request_diff}

    async def _detail(self, name: str, value: Any) -> dict[str, Any]:
        transaction_id = params.string(name, value)
        detail = await self.sessions.store.get_transaction(transaction_id)
        if detail is None:
            raise NotFound("request", transaction_id)
        return detail

    async def request_export(self, id: Any, format: Any = "curl") -> str:
        chosen = params.one_of("format", format, list(FORMATS), optional=True, default="curl")
        detail = await self._detail("id", id)
        try:
            return export_request(detail, chosen)
        except ExportError as exc:
            raise InvalidParams("id", str(exc)) from exc

    async def request_diff(self, a: Any, b: Any) -> dict[str, Any]:
        return diff_transactions(await self._detail("a", a), await self._detail("b", b))


__all__ = ["RequestToolMethods"]
