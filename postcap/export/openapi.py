"""OpenAPI from a session's history: details streamed a page at a time into an
:class:`~postcap.apispec.model.ApiModel` (bounded memory, the reactor free between
pages), then the document or the drift against a given spec."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from postcap.apispec.document import openapi_document
from postcap.apispec.drift import api_diff
from postcap.apispec.model import ApiModel

PAGE = 500

FetchPage = Callable[[int, int], Awaitable[tuple[int, list[dict[str, Any]]]]]


async def model_from_pages(fetch_page: FetchPage, page: int = PAGE) -> ApiModel:
    """Every detail ``fetch_page(after, limit)`` yields, folded in capture order
    (see :meth:`postcap.sinks.history.SQLiteHistoryStore.details_after`)."""
    model = ApiModel()
    after = 0
    while True:
        after, details = await fetch_page(after, page)
        if not details:
            return model
        for detail in details:
            model.add(detail)


async def openapi_export(fetch_page: FetchPage, title: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of everything the pages hold."""
    return openapi_document(await model_from_pages(fetch_page), title)


async def drift_report(fetch_page: FetchPage, spec: Any) -> dict[str, list[dict[str, Any]]]:
    """``api.diff``'s answer (raises :class:`postcap.apispec.spec.SpecError` for a bad spec,
    before any page is read)."""
    from postcap.apispec.spec import load_spec

    document = load_spec(spec)
    return api_diff(await model_from_pages(fetch_page), document)


__all__ = ["drift_report", "model_from_pages", "openapi_export"]
