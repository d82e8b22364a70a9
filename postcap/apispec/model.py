"""The API model: every transaction folded into one accumulator per endpoint
(host, method and path template), in bounded memory.

:meth:`ApiModel.add` takes transaction details one at a time (stream them from the
history a page at a time); :meth:`ApiModel.operations` merges what was learnt into
:class:`Operation` accumulators keyed by method and final template.  What each keeps is
bounded: counts, merged schemas (:mod:`postcap.apispec.schema`), the first sample
transaction id, and one redacted example per body.
"""

from __future__ import annotations

import json
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Any

from postcap.apispec import security
from postcap.apispec.redact import redact_json
from postcap.apispec.schema import SchemaAccumulator
from postcap.apispec.templates import PARAM, PathLearner, Segments
from postcap.apispec.traffic import Observation, ParsedBody, observe
from postcap.apispec.values import typed_text

MAX_EXAMPLE_BYTES = 4096
#: query or header parameter names kept per operation (more are ignored: cache busters…)
MAX_PARAMETERS = 64

#: Request headers every client sends: not API parameters.
STANDARD_HEADERS = frozenset("""
accept accept-charset accept-encoding accept-language access-control-request-headers
access-control-request-method authorization cache-control connection content-encoding
content-length content-type cookie dnt expect forwarded host if-match if-modified-since
if-none-match if-range if-unmodified-since keep-alive origin pragma priority
proxy-authorization proxy-connection range referer te trailer transfer-encoding upgrade
upgrade-insecure-requests user-agent via x-forwarded-for x-forwarded-host x-forwarded-proto
x-requested-with purpose
""".split())


@lru_cache(maxsize=4096)
def _api_header(name: str) -> bool:
    lower = name.lower()
    return not (lower in STANDARD_HEADERS or lower.startswith(("sec-", ":"))
                or security.credential_parameter("header", name))


@dataclass(slots=True)
class BodyAccumulator:
    """One content type of a request or response body."""

    count: int = 0
    structured: bool = False
    schema: SchemaAccumulator = field(default_factory=SchemaAccumulator)
    files: set[str] = field(default_factory=set)
    example: Any = None
    has_example: bool = False

    def add(self, body: ParsedBody, sample: str, obs: Observation) -> None:
        self.count += 1
        if not body.structured:
            return
        self.structured = True
        self.schema.add(body.value, sample)
        self.files.update(body.files)
        if not self.has_example:
            try:
                example = redact_json(body.value, known=obs.secrets())
                if len(json.dumps(example)) <= MAX_EXAMPLE_BYTES:
                    self.example, self.has_example = example, True
            except RecursionError:  # nested deeper than Python recurses: no example
                pass

    def merge(self, other: "BodyAccumulator") -> None:
        self.count += other.count
        self.structured = self.structured or other.structured
        self.schema.merge(other.schema)
        self.files |= other.files
        if not self.has_example and other.has_example:
            self.example, self.has_example = other.example, True


@dataclass(slots=True)
class ResponseAccumulator:
    count: int = 0
    sample: str = ""
    bodies: dict[str, BodyAccumulator] = field(default_factory=dict)
    empty: int = 0

    def merge(self, other: "ResponseAccumulator") -> None:
        self.count += other.count
        self.empty += other.empty
        self.sample = self.sample or other.sample
        _merge_bodies(self.bodies, other.bodies)


def _merge_bodies(mine: dict[str, BodyAccumulator], other: dict[str, BodyAccumulator]) -> None:
    for media, body in other.items():
        if media in mine:
            mine[media].merge(body)
        else:
            mine[media] = body


def _merge_values(mine: dict[str, SchemaAccumulator], other: dict[str, SchemaAccumulator]) -> None:
    for name, accumulator in other.items():
        if name in mine:
            mine[name].merge(accumulator)
        else:
            mine[name] = accumulator


@dataclass(slots=True)
class Operation:
    """Everything seen for one method on one endpoint template."""

    method: str
    template: Segments
    count: int = 0
    sample: str = ""
    origins: set[str] = field(default_factory=set)
    #: template position → values seen there
    path_values: dict[int, SchemaAccumulator] = field(default_factory=dict)
    query: dict[str, SchemaAccumulator] = field(default_factory=dict)
    #: lower-case name → values; ``header_names`` keeps the spelling first seen
    headers: dict[str, SchemaAccumulator] = field(default_factory=dict)
    header_names: dict[str, str] = field(default_factory=dict)
    #: query or header parameter → a sample transaction where it was absent
    absent: dict[str, str] = field(default_factory=dict)
    security: dict[str, dict[str, Any]] = field(default_factory=dict)
    anonymous_success: bool = False
    request_bodies: dict[str, BodyAccumulator] = field(default_factory=dict)
    no_body: int = 0
    no_body_sample: str = ""
    responses: dict[int, ResponseAccumulator] = field(default_factory=dict)

    def add(self, obs: Observation, shape: Segments) -> None:
        self.count += 1
        self.sample = self.sample or obs.id
        self.origins.add(obs.origin)
        for position, segment in enumerate(shape):
            if segment is PARAM:
                self.path_values.setdefault(position, SchemaAccumulator()).add(
                    typed_text(obs.segments[position]), obs.id)
        seen: set[str] = set()
        for name, value in obs.query:
            if not security.credential_parameter("query", name):
                if self._value(self.query, name, "query:" + name, typed_text(value), obs.id):
                    seen.add("query:" + name)
        for name, value in obs.request_headers:
            if _api_header(name):
                lower = name.lower()
                self.header_names.setdefault(lower, name)
                if self._value(self.headers, lower, "header:" + lower, typed_text(value), obs.id):
                    seen.add("header:" + lower)
        if len(seen) < len(self.query) + len(self.headers):
            for key in [*("query:" + n for n in self.query), *("header:" + n for n in self.headers)]:
                if key not in seen:
                    self.absent.setdefault(key, obs.id)
        credentials = security.recognise(obs.request_headers, obs.query)
        self.security.update(credentials)
        if not credentials and obs.status is not None and 200 <= obs.status < 300:
            self.anonymous_success = True
        if obs.request_body is None:
            self.no_body += 1
            self.no_body_sample = self.no_body_sample or obs.id
        else:
            self.request_bodies.setdefault(obs.request_body.media_type, BodyAccumulator()).add(
                obs.request_body, obs.id, obs)
        if obs.status is not None:
            response = self.responses.setdefault(obs.status, ResponseAccumulator())
            response.count += 1
            response.sample = response.sample or obs.id
            if obs.response_body is None:
                response.empty += 1
            else:
                response.bodies.setdefault(obs.response_body.media_type, BodyAccumulator()).add(
                    obs.response_body, obs.id, obs)

    def _value(self, values: dict[str, SchemaAccumulator], name: str, key: str, value: Any,
               sample: str) -> bool:
        """Fold a parameter value in; False when the parameter is one too many to keep."""
        accumulator = values.get(name)
        if accumulator is None:
            if len(values) >= MAX_PARAMETERS:
                return False
            accumulator = values[name] = SchemaAccumulator()
            if self.count > 1:
                self.absent.setdefault(key, self.sample)
        accumulator.add(value, sample)
        return True

    def merge(self, other: "Operation") -> None:
        for key in (self.query.keys() - other.query.keys()):
            self.absent.setdefault("query:" + key, other.sample)
        for key in (other.query.keys() - self.query.keys()):
            self.absent.setdefault("query:" + key, self.sample)
        for key in (self.headers.keys() - other.headers.keys()):
            self.absent.setdefault("header:" + key, other.sample)
        for key in (other.headers.keys() - self.headers.keys()):
            self.absent.setdefault("header:" + key, self.sample)
        for key, sample in other.absent.items():
            self.absent.setdefault(key, sample)
        self.count += other.count
        self.sample = self.sample or other.sample
        self.origins |= other.origins
        _merge_values(self.path_values, other.path_values)
        _merge_values(self.query, other.query)
        _merge_values(self.headers, other.headers)
        for lower, name in other.header_names.items():
            self.header_names.setdefault(lower, name)
        self.security.update(other.security)
        self.anonymous_success = self.anonymous_success or other.anonymous_success
        _merge_bodies(self.request_bodies, other.request_bodies)
        self.no_body += other.no_body
        self.no_body_sample = self.no_body_sample or other.no_body_sample
        for status, response in other.responses.items():
            if status in self.responses:
                self.responses[status].merge(response)
            else:
                self.responses[status] = response


class ApiModel:
    """Fold details in with :meth:`add`, read endpoints with :meth:`operations`."""

    def __init__(self, threshold: int | None = None) -> None:
        self.learner = PathLearner() if threshold is None else PathLearner(threshold)
        self._provisional: dict[tuple[str, str, Segments], tuple[Operation, tuple[str, ...]]] = {}
        self.transactions = 0

    def add(self, detail: dict[str, Any]) -> None:
        """Fold one transaction detail in."""
        self.add_observation(observe(detail))

    def add_observation(self, obs: Observation | None) -> None:
        """Fold one :func:`~postcap.apispec.traffic.observe` result in."""
        if obs is None or _not_api(obs):
            return
        obs.parse_bodies()
        self.transactions += 1
        shape = self.learner.add(obs.host, obs.segments)
        key = (obs.host, obs.method, shape)
        entry = self._provisional.get(key)
        if entry is None:
            entry = self._provisional[key] = (Operation(obs.method, shape), obs.segments)
        entry[0].add(obs, shape)

    def operations(self) -> dict[tuple[str, Segments], Operation]:
        """``(method, template)`` → everything seen, hosts merged, in a stable order."""
        merged: dict[tuple[str, Segments], Operation] = {}
        for (host, method, shape), (operation, segments) in self._provisional.items():
            template = self.learner.template(host, shape)
            for position, (before, after) in enumerate(zip(shape, template)):
                if before is not PARAM and after is PARAM:
                    operation.path_values.setdefault(position, SchemaAccumulator()).add(
                        typed_text(segments[position]), operation.sample)
            operation.template = template
            key = (method, template)
            if key in merged:
                merged[key].merge(operation)
            else:
                merged[key] = operation
        return dict(sorted(merged.items(), key=lambda item: (_sort_key(item[0][1]), item[0][0])))


_STATIC_SUFFIXES = (".js", ".mjs", ".css", ".map", ".png", ".jpg", ".jpeg", ".gif", ".svg",
                    ".ico", ".webp", ".woff", ".woff2", ".ttf", ".otf")


def _not_api(obs: Observation) -> bool:
    """Static files and CORS preflights describe no API operation."""
    if obs.path.lower().endswith(_STATIC_SUFFIXES):
        return True
    return obs.method == "OPTIONS" and any(
        name.lower() == "access-control-request-method" for name, _ in obs.request_headers)


def _sort_key(template: Segments) -> tuple[tuple[int, str], ...]:
    return tuple((1, "") if s is PARAM else (0, s) for s in template)


__all__ = ["ApiModel", "BodyAccumulator", "Operation", "ResponseAccumulator", "STANDARD_HEADERS"]
