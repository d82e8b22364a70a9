"""Searching the history: the filter of ``request.list`` and the session overview.

:class:`TransactionFilter` turns the request-list parameters into one SQL
``WHERE`` clause over the ``transactions`` table (see
:mod:`postcap.sinks.history` for the schema and its indexes).  The URL search is
case-insensitive for ASCII; with ``search_in`` it also looks into the request and
response headers (case-insensitive) and the stored body copies (exact bytes), decoded
when they were sent with a ``Content-Encoding``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

#: Where ``query`` may look besides the URL.
SEARCH_PLACES = ("headers", "body")

Cursor = Any


def status_range(status: int | str) -> tuple[int, int]:
    """``404`` or ``"404"`` → (404, 404); ``"4xx"`` → (400, 499)."""
    if isinstance(status, int) and not isinstance(status, bool):
        return status, status
    if not isinstance(status, str):
        raise ValueError(f"status must be a code or a class like '2xx', not {status!r}")
    text = status.strip().lower()
    if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
        low = int(text[0]) * 100
        return low, low + 99
    if text.isdigit() and len(text) == 3:
        return int(text), int(text)
    raise ValueError(f"status must be a code or a class like '2xx', not {status!r}")


def like_pattern(text: str, prefix: str = "%", suffix: str = "%") -> str:
    """A LIKE pattern matching ``text`` literally (with ``ESCAPE '\\'``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{prefix}{escaped}{suffix}"


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


@dataclass(frozen=True, slots=True)
class TransactionFilter:
    """Optional narrowing of a transaction list; every given field must match.

    ``query``: substring of the URL (and of headers/bodies per ``search_in``);
    ``method``: one method or several (exact, case-insensitive); ``status``: a
    code, a class such as ``"4xx"``, or several of them; ``domain``: the host or any
    subdomain of it; ``since``/``until``: start time bounds (epoch seconds,
    inclusive; ``until`` covers its whole millisecond, as times are shown).
    """

    session_id: str | None = None
    query: str | None = None
    method: str | Sequence[str] | None = None
    status: int | str | Sequence[int | str] | None = None
    domain: str | None = None
    since: float | None = None
    until: float | None = None
    search_in: Sequence[str] = ()

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(m for m in _as_tuple(self.method) if m)

    @property
    def status_ranges(self) -> tuple[tuple[int, int], ...]:
        """The status bounds (raises ValueError on a bad status)."""
        return tuple(status_range(s) for s in _as_tuple(self.status))

    def where(self, table: str = "") -> tuple[str, list[Any]]:
        """``(" WHERE …", params)``, or ``("", [])`` when nothing narrows the list.

        ``table`` prefixes the column names (e.g. ``"t."``).
        """
        clauses: list[str] = []
        params: list[Any] = []
        if self.session_id is not None:
            clauses.append(f"{table}session_id = ?")
            params.append(self.session_id)
        if self.query:
            clauses.append(self._query_clause(table, params))
        if self.methods:
            clauses.append(f"{table}method COLLATE NOCASE IN ({_marks(len(self.methods))})")
            params.extend(self.methods)
        if self.status is not None:
            ranges = self.status_ranges
            if ranges:
                clauses.append(
                    "(" + " OR ".join(f"{table}status BETWEEN ? AND ?" for _ in ranges) + ")"
                )
                for low, high in ranges:
                    params.extend((low, high))
        if self.domain:
            domain = self.domain.strip(".")
            clauses.append(
                f"({table}host = ? COLLATE NOCASE OR {table}host LIKE ? ESCAPE '\\')"
            )
            params.extend([domain, like_pattern(domain, prefix="%.", suffix="")])
        if self.since is not None:
            clauses.append(f"{table}started_at >= ?")
            params.append(self.since)
        if self.until is not None:
            # Inclusive at the millisecond precision that times are shown with.
            clauses.append(f"{table}started_at < ?")
            params.append(self.until + 0.001)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def _query_clause(self, table: str, params: list[Any]) -> str:
        assert self.query
        places = [f"{table}url LIKE ? ESCAPE '\\'"]
        params.append(like_pattern(self.query))
        if "headers" in self.search_in:
            # Headers live in the detail JSON: match the query as JSON would spell it.
            places.append(f"{table}detail LIKE ? ESCAPE '\\'")
            params.append(like_pattern(json.dumps(self.query)[1:-1]))
        if "body" in self.search_in:
            # The bodies as sent, and the decoded copies of those sent with a coding.
            for bodies in ("bodies", "decoded_bodies"):
                places.append(
                    f"EXISTS (SELECT 1 FROM {bodies} b WHERE b.transaction_id = {table}id"
                    " AND instr(b.data, ?) > 0)"
                )
                params.append(self.query.encode("utf-8"))
        return "(" + " OR ".join(places) + ")"


def _marks(count: int) -> str:
    return ",".join("?" * count)


#: The columns of the contract's Summary, in its order.
SUMMARY_COLUMNS = (
    "id",
    "session_id",
    "started_at",
    "method",
    "url",
    "host",
    "status",
    "duration_ms",
    "request_bytes",
    "response_bytes",
    "content_type",
    "error",
)


def select_summary_rows(
    cursor: Cursor, where: TransactionFilter, limit: int, offset: int, descending: bool = False
) -> tuple[int, list[Sequence[Any]]]:
    """``(total, rows of the summary columns)``, in capture order (or its reverse)."""
    clause, params = where.where()
    cursor.execute(f"SELECT COUNT(*) FROM transactions{clause}", params)
    total = int(cursor.fetchone()[0])
    order = "DESC" if descending else "ASC"
    cursor.execute(
        f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM transactions{clause}"
        f" ORDER BY seq {order} LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return total, cursor.fetchall()


def select_overview(cursor: Cursor, session_id: str) -> dict[str, Any]:
    """Counts by method, domain, data mode, status and status class, and totals,
    from one scan of the ``transactions_overview`` index."""
    cursor.execute(
        "SELECT method, host, status, data_mode, COUNT(*),"
        " SUM(request_bytes + response_bytes), SUM(duration_ms), COUNT(error),"
        " MIN(started_at), MAX(started_at + duration_ms / 1000.0)"
        " FROM transactions WHERE session_id = ? GROUP BY method, host, status, data_mode",
        (session_id,),
    )
    by: dict[str, dict[str, int]] = {
        "by_method": {}, "by_domain": {}, "by_data_mode": {}, "by_status": {},
        "by_status_class": {},
    }
    requests = size = errors = 0
    busy_ms = 0.0
    first: float | None = None
    last: float | None = None
    for method, host, status, mode, count, group_bytes, group_ms, group_errors, start, end \
            in cursor.fetchall():
        code = "none" if status is None else str(status)
        keys = (("by_method", method), ("by_domain", host), ("by_data_mode", mode),
                ("by_status", code), ("by_status_class", "none" if status is None else f"{code[0]}xx"))
        for table, key in keys:
            by[table][key] = by[table].get(key, 0) + count
        requests += count
        size += group_bytes
        busy_ms += group_ms
        errors += group_errors
        first = start if first is None else min(first, start)
        last = end if last is None else max(last, end)
    result: dict[str, Any] = {
        name: dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
        for name, counts in by.items()
    }
    result["totals"] = {
        "requests": requests,
        "bytes": size,
        "duration_ms": round(0.0 if first is None or last is None else (last - first) * 1000.0, 3),
        "busy_ms": round(busy_ms, 3),
        "errors": errors,
    }
    return result


__all__ = [
    "SEARCH_PLACES",
    "TransactionFilter",
    "like_pattern",
    "select_overview",
    "select_summary_rows",
    "status_range",
]
