"""How ``postcapctl`` prints results for a person: tables, sizes, durations, request
details, status colours (only on a terminal, never with ``NO_COLOR``) and progress."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Sequence

#: Whether output may carry ANSI colours; ``main`` sets it from :func:`colour_wanted`.
COLOUR = False

#: ANSI colour per status class: 2xx green, 3xx cyan, 4xx yellow, 5xx and errors red.
STATUS_COLOURS = {"1": "37", "2": "32", "3": "36", "4": "33", "5": "31"}


def colour_wanted(stream: Any, json_output: bool) -> bool:
    """Colours only on a terminal, never for ``--json`` nor with ``NO_COLOR`` set
    (https://no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not json_output and not os.environ.get("NO_COLOR")


def status_colour(text: str) -> str | None:
    """The ANSI code for a status cell: its class, or red for an error text."""
    value = text.strip()
    if not value:
        return None
    return STATUS_COLOURS.get(value[0], "31") if value[0].isdigit() else "31"


def paint(text: str, code: str | None) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if COLOUR and code else text


def table(
    rows: Sequence[Sequence[Any]],
    headers: Sequence[str],
    colours: dict[int, Callable[[str], str | None]] | None = None,
) -> str:
    """Aligned columns; ``colours`` maps a column to a function choosing a cell's colour."""
    cells = [[("" if value is None else str(value)) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, value in enumerate(row):
            widths[index] = min(max(widths[index], len(value)), 80)

    def line(values: Sequence[str], painted: bool = True) -> str:
        out = []
        for index, (value, width) in enumerate(zip(values, widths)):
            cell = value[:80].ljust(width)
            chooser = (colours or {}).get(index) if painted else None
            out.append(paint(cell, chooser(value)) if chooser else cell)
        return "  ".join(out).rstrip()

    return "\n".join([line(headers, painted=False), *(line(row) for row in cells)])


def shown_of(shown: int, total: int, noun: str) -> str:
    """The footer of a list: says when it stops short and how to see more."""
    if shown < total:
        return f"{shown} of {total} {noun} shown; see more with --limit and --offset"
    return f"{shown} of {total} {noun}"


def human_bytes(size: Any) -> str:
    if not isinstance(size, (int, float)):
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def human_ms(ms: Any) -> str:
    if not isinstance(ms, (int, float)):
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def timing(ms: Any) -> str:
    """A phase's duration; a missing or negative one (HAR's -1) was not measured."""
    if not isinstance(ms, (int, float)) or ms < 0:
        return "not measured"
    return f"{ms:.1f} ms" if ms < 1000 else human_ms(ms)


def session_rows(sessions: list[dict[str, Any]]) -> str:
    return table(
        [
            [
                s["id"],
                s["name"],
                s["source"],
                s["state"],
                s["started_at"],
                human_ms(s["duration_ms"]),
                s["request_count"],
                human_bytes(s["total_bytes"]),
            ]
            for s in sessions
        ],
        ["ID", "NAME", "SOURCE", "STATE", "STARTED", "DURATION", "REQUESTS", "SIZE"],
    )


def show_session(session: dict[str, Any]) -> str:
    return session_rows([session])


def request_row(r: dict[str, Any]) -> list[Any]:
    return [
        r["id"],
        r["method"],
        r["status"] if r["status"] is not None else (r.get("error") or "-"),
        human_ms(r["duration_ms"]),
        human_bytes(r["response_bytes"]),
        r["url"],
    ]


def request_line(summary: dict[str, Any]) -> str:
    """One captured request on one line (``requests --follow``)."""
    cells = [str(value) for value in request_row(summary)]
    cells[2] = paint(cells[2], status_colour(cells[2]))
    return "  ".join(cells)


def show_requests(result: dict[str, Any]) -> str:
    rows = [request_row(r) for r in result["items"]]
    footer = "\n" + shown_of(len(rows), result["total"], "requests")
    return table(rows, ["ID", "METHOD", "STATUS", "TIME", "SIZE", "URL"],
                 {2: status_colour}) + footer


def show_messages(result: dict[str, Any]) -> str:
    """WebSocket messages as a table: time, direction, type, size, the payload's start."""
    rows = []
    for message in result["items"]:
        arrow = "->" if message["direction"] == "client" else "<-"
        text = message["text"] if message["encoding"] == "utf-8" else f"[base64] {message['text']}"
        if "code" in message:
            text = f"{message['code']} {text}".strip()
        rows.append([message["at"], arrow, message["type"], message["size"],
                     text[:80].replace("\n", " ") + ("…" if message["truncated"] or len(text) > 80 else "")])
    return (table(rows, ["AT", "DIR", "TYPE", "SIZE", "DATA"])
            + "\n" + shown_of(len(rows), result["total"], "message(s)"))


def show_detail(detail: dict[str, Any]) -> str:
    lines = [
        f"{detail['method']} {detail['url']}",
        f"id {detail['id']}  session {detail['session_id']}  started {detail['started_at']}",
    ]
    response = detail.get("response")
    for title, part in (("request", detail.get("request")), ("response", response)):
        if not part:
            continue
        version = str(part.get("http_version") or "")
        head = f"{title}: {version if version.startswith('HTTP/') else 'HTTP/' + version}"
        if title == "response":
            head += f" {part.get('status')} {part.get('reason', '')}"
        lines += ["", head]
        lines += [f"  {name}: {value}" for name, value in part.get("headers", [])]
        body = part.get("body") or {}
        if body.get("size"):
            lines.append(
                f"  [body {body['size']} bytes"
                + (", truncated" if body.get("truncated") else "")
                + ("" if body.get("captured", True) else ", not stored")
                + "]"
            )
            if body.get("encoding") == "utf-8" and body.get("text"):
                lines.append("  " + body["text"][:2000].replace("\n", "\n  "))
        if part.get("trailers"):
            lines.append("  trailers:")
            lines += [f"    {name}: {value}" for name, value in part["trailers"]]
    websocket = detail.get("websocket")
    if websocket:
        ended = "open" if websocket["close_code"] is None else (
            f"closed by {websocket['closed_by'] or 'postcap'} with {websocket['close_code']}")
        lines += ["", f"websocket: {websocket['message_count']} message(s), {ended}"
                      f" (postcapctl request messages {detail['id']})"]
    if detail.get("error"):
        lines += ["", f"error: {detail['error']}"]
    timings = detail.get("timings") or {}
    if timings:
        lines += [
            "",
            "timings: "
            + ", ".join(f"{k.removesuffix('_ms')} {timing(v)}" for k, v in timings.items()),
        ]
    return "\n".join(lines)


def show_diff(diff: dict[str, Any]) -> str:
    """``request diff``: one line per difference, bodies last."""
    if diff.get("same"):
        return f"{diff['a']} and {diff['b']} do not differ"
    lines = [f"--- {diff['a']}", f"+++ {diff['b']}"]
    for key in ("method", "status"):
        if diff.get(key):
            lines.append(f"{key}: {diff[key]['a']} -> {diff[key]['b']}")
    url = diff.get("url")
    if url:
        lines += [f"url: {url['a']}", f"  -> {url['b']}"]
        lines += [f"  {name}: {part['a']} -> {part['b']}" for name, part in url["parts"].items()]
        lines += [f"  query {q['name']} {q['change']}: {q['a']} -> {q['b']}" for q in url["query"]]
    for key in ("request_headers", "response_headers"):
        for change in diff.get(key) or []:
            lines.append(f"{key.replace('_', ' ')[:-1]} {change['name']} {change['change']}: "
                         f"{', '.join(change['a']) or '-'} -> {', '.join(change['b']) or '-'}")
    for key in ("request_body", "response_body"):
        body = diff.get(key)
        if not body:
            continue
        title = key.replace("_", " ")
        if body["kind"] == "json":
            lines.append(f"{title} (JSON):")
            lines += [f"  {c['path']} {c['change']}: {json.dumps(c['a'])} -> {json.dumps(c['b'])}"
                      for c in body["changes"]]
        elif body["kind"] == "text":
            lines += [f"{title} (text):", body["unified"].rstrip("\n")]
        else:
            lines.append(f"{title} (binary): {body['a']['size']} bytes sha256 "
                         f"{body['a']['sha256'][:16]} -> {body['b']['size']} bytes sha256 "
                         f"{body['b']['sha256'][:16]}")
    return "\n".join(lines)


def show_overview(overview: dict[str, Any]) -> str:
    blocks = []
    for key, title in (
        ("by_method", "METHOD"),
        ("by_domain", "DOMAIN"),
        ("by_data_mode", "DATA MODE"),
        ("by_status", "STATUS"),
    ):
        counts = overview.get(key) or {}
        rows = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
        blocks.append(table(rows, [title, "COUNT"]))
    return "\n\n".join(blocks)


def show_status(info: dict[str, Any]) -> str:
    proxy = info["proxy"]
    active = info.get("active_session")
    lines = [
        f"postcap {info['version']}, up {human_ms(info['uptime_s'] * 1000)}",
        f"proxy: port {proxy['port']}, {'enabled' if proxy['enabled'] else 'disabled'}",
        f"data dir: {info['data_dir']}",
    ]
    if active:
        lines.append(
            f"session: {active['name']} ({active['id']}), {active['state']}, "
            f"{active['request_count']} requests, {human_bytes(active['total_bytes'])}"
        )
    else:
        lines.append("session: none active")
    return "\n".join(lines)


def show_cookies(result: dict[str, Any]) -> str:
    return table(
        [
            [
                c.get("id"),
                c.get("domain"),
                c.get("path"),
                c.get("name"),
                str(c.get("value", ""))[:40],
                c.get("expires"),
            ]
            for c in result["items"]
        ],
        ["ID", "DOMAIN", "PATH", "NAME", "VALUE", "EXPIRES"],
    ) + ("\n" + shown_of(len(result["items"]), result["total"], "cookies")
         if "total" in result else "")


# -- progress -----------------------------------------------------------------------------


class Progress:
    """A one-line progress indicator on stderr, only when stderr is a terminal."""

    def __init__(self, stream: Any = None, noun: str | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.noun = noun  # counts of this noun, else bytes

    def _amount(self, value: int) -> str:
        return f"{value:,}" if self.noun else human_bytes(value)

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if total:
            filled = int(30 * done / total)
            bar = "#" * filled + "." * (30 - filled)
            text = f"\r[{bar}] {self._amount(done)} / {self._amount(total)}"
            text += f" {self.noun}" if self.noun else ""
        else:
            text = f"\r{self._amount(done)} {self.noun or 'received'}"
        self.stream.write(text)
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")
