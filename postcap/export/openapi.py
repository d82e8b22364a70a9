"""OpenAPI from a session's history: transactions streamed a page at a time into an
:class:`~postcap.apispec.model.ApiModel` (bounded memory, the reactor free between
pages), then the document or the drift against a given spec.

The store's database process turns each page of details into observations
(:func:`observations_after`: detail JSON, URLs and body decoding there, on its own core;
bodies cross as bytes) while this process parses the bodies of the previous page and
folds it in.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from postcap.apispec.document import openapi_document
from postcap.apispec.drift import api_diff
from postcap.apispec.model import ApiModel
from postcap.apispec.spec import load_spec
from postcap.apispec.traffic import Observation, observe
from postcap.sinks.history import SQLiteHistoryStore, _select_details_after

PAGE = 500

#: ``fetch_page(after, limit)`` → ``(next_after, items)``; items are transaction details
#: or :class:`~postcap.apispec.traffic.Observation` (None for what describes no API)
FetchPage = Callable[[int, int], Awaitable[tuple[int, list[Any]]]]


def observations_after(cursor: Any, session_id: str, after: int, limit: int
                       ) -> tuple[int, list[Observation | None]]:
    """A page of the session's transactions as observations (runs in the store's process)."""
    after, details = _select_details_after(cursor, session_id, after, limit)
    return after, [observe(detail, parse=False) for detail in details]


def store_pages(store: Any, session_id: str) -> FetchPage:
    """Pages of observations made in the database process of a
    :class:`~postcap.sinks.history.SQLiteHistoryStore`; pages of details
    (``details_after``) from any other store."""
    if isinstance(store, SQLiteHistoryStore):
        return lambda after, limit: store.run(observations_after, session_id, after, limit)
    return lambda after, limit: store.details_after(session_id, after, limit)


async def model_from_pages(fetch_page: FetchPage, page: int = PAGE) -> ApiModel:
    """Every item ``fetch_page`` yields, folded in capture order; the next page is
    asked for before the current one is folded."""
    model = ApiModel()
    pending = fetch_page(0, page)
    while True:
        after, items = await pending
        if not items:
            return model
        pending = fetch_page(after, page)
        for item in items:
            if isinstance(item, dict):
                model.add(item)
            else:
                model.add_observation(item)


async def openapi_export(fetch_page: FetchPage, title: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of everything the pages hold."""
    return openapi_document(await model_from_pages(fetch_page), title)


async def drift_report(fetch_page: FetchPage, spec: Any) -> dict[str, list[dict[str, Any]]]:
    """``api.diff``'s answer (raises :class:`postcap.apispec.spec.SpecError` for a bad spec,
    before any page is read)."""
    document = load_spec(spec)
    return api_diff(await model_from_pages(fetch_page), document)


__all__ = ["drift_report", "model_from_pages", "observations_after", "openapi_export", "store_pages"]
