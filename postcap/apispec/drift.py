"""Drift between captured traffic (an :class:`~postcap.apispec.model.ApiModel`) and an
existing OpenAPI document: what the traffic did that the spec lacks (``undocumented``),
what contradicts it (``mismatches``, each with a sample transaction id) and what it
never exercised (``unused``).  Every finding has a ``message`` for people."""

from __future__ import annotations

from typing import Any

from postcap.apispec.model import ApiModel, BodyAccumulator, Operation
from postcap.apispec.schema import SchemaAccumulator
from postcap.apispec.spec import (
    Resolver,
    SpecOperation,
    load_spec,
    segment_matches,
    server_hosts,
    spec_operations,
)
from postcap.apispec.templates import PARAM, render
from postcap.apispec.values import FORMATS

MAX_ALL_OF_DEPTH = 16
_JSON_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")


class _Report:
    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve
        #: id of a schema object with ``allOf`` → its flattened form
        self.flattened: dict[int, dict[str, Any]] = {}
        self.undocumented: list[dict[str, Any]] = []
        self.mismatches: list[dict[str, Any]] = []

    def undocumented_item(self, kind: str, op: SpecOperation | Operation, message: str,
                          sample: str | None, **extra: Any) -> None:
        self.undocumented.append({"kind": kind, **_where(op), **extra, "sample": sample,
                                  "message": message})

    def mismatch(self, kind: str, spec_op: SpecOperation, where: str, field: str, expected: Any,
                 observed: Any, sample: str | None, message: str) -> None:
        self.mismatches.append({"kind": kind, **_where(spec_op), "where": where, "field": field,
                                "expected": expected, "observed": observed, "sample": sample,
                                "message": f"{spec_op.method} {spec_op.path}: {where}"
                                           f"{' field ' + field if field else ''}: {message}"})


def _where(op: SpecOperation | Operation) -> dict[str, str]:
    if isinstance(op, SpecOperation):
        return {"method": op.method, "path": op.path}
    return {"method": op.method, "path": render(op.template)}


def _allowed_types(schema: dict[str, Any]) -> set[str] | None:
    declared = schema.get("type")
    if isinstance(declared, str):
        types = {declared}
    elif isinstance(declared, list):
        types = {t for t in declared if isinstance(t, str)}
    elif "properties" in schema or "additionalProperties" in schema:
        types = {"object"}
    elif "items" in schema:
        types = {"array"}
    else:
        return None
    if schema.get("nullable") is True:
        types.add("null")
    if "number" in types:
        types.add("integer")
    return types


def _flatten(schema: Any, resolve: Resolver, depth: int = 0,
             memo: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """``allOf`` merged into one schema (properties, required, type); each schema object
    is flattened once (``memo``), so shared parts cost nothing however often they appear."""
    schema = resolve(schema)
    if not isinstance(schema, dict) or depth > MAX_ALL_OF_DEPTH:
        return {}
    if "allOf" not in schema or not isinstance(schema["allOf"], list):
        return schema
    memo = {} if memo is None else memo
    if id(schema) in memo:
        return memo[id(schema)]
    memo[id(schema)] = {}
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    memo[id(schema)] = merged
    for part in schema["allOf"]:
        flat = _flatten(part, resolve, depth + 1, memo)
        for key, value in flat.items():
            if key == "properties":
                merged.setdefault("properties", {}).update(value)
            elif key == "required":
                merged["required"] = sorted(set(merged.get("required", [])) | set(value))
            else:
                merged.setdefault(key, value)
    return merged


def _fits(schema: dict[str, Any], observed: SchemaAccumulator) -> bool:
    allowed = _allowed_types(schema)
    return allowed is None or set(observed.kinds) <= allowed


def _compare(report: _Report, spec_op: SpecOperation, where: str, field: str, schema: Any,
             observed: SchemaAccumulator) -> None:
    schema = _flatten(schema, report.resolve, memo=report.flattened)
    if not schema or not observed.kinds:
        return
    alternatives = schema.get("oneOf") or schema.get("anyOf")
    if isinstance(alternatives, list) and alternatives:
        flat = [_flatten(a, report.resolve, memo=report.flattened) for a in alternatives]
        fitting = [a for a in flat if _fits(a, observed)]
        if fitting:
            best = max(fitting, key=lambda a: len(set(a.get("properties", {}))
                                                   & {k for s in observed.object_shapes() for k in s.properties}))
            _compare(report, spec_op, where, field, best, observed)
            return
        schema = {"type": sorted({t for a in flat for t in (_allowed_types(a) or set(_JSON_TYPES))})}
    allowed = _allowed_types(schema)
    if allowed is not None:
        for kind_name, kind in observed.kinds.items():
            if kind_name not in allowed:
                expected = sorted(allowed - {"integer"} if "number" in allowed else allowed)
                report.mismatch("type", spec_op, where, field, expected, kind_name, kind.sample,
                                f"the spec says {' or '.join(expected)}, the traffic sent {kind_name}")
    strings_allowed = allowed is None or "string" in allowed
    spec_format = schema.get("format")
    if "string" in observed.kinds and strings_allowed and spec_format in FORMATS:
        for fmt, sample in observed.format_samples().items():
            if fmt != spec_format:
                report.mismatch("format", spec_op, where, field, spec_format, fmt, sample,
                                f"the spec says format {spec_format}, the traffic sent "
                                f"{'a ' + fmt if fmt else 'a string without it'}")
                break
    if "object" in observed.kinds and (allowed is None or "object" in allowed):
        _compare_object(report, spec_op, where, field, schema, observed)
    if "array" in observed.kinds and observed.items is not None and "items" in schema:
        _compare(report, spec_op, where, field + "[]", schema["items"], observed.items)


def _compare_object(report: _Report, spec_op: SpecOperation, where: str, field: str,
                    schema: dict[str, Any], observed: SchemaAccumulator) -> None:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    extra = report.resolve(schema.get("additionalProperties"))
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    prefix = field + "." if field else ""
    for shape in observed.object_shapes():
        if shape.map_values is not None:
            if isinstance(extra, dict):
                _compare(report, spec_op, where, prefix + "*", extra, shape.map_values)
            continue
        for name, values in sorted(shape.properties.items()):
            if name in properties:
                _compare(report, spec_op, where, prefix + name, properties[name], values)
            elif isinstance(extra, dict) and extra:
                _compare(report, spec_op, where, prefix + name, extra, values)
            elif properties or extra is False:
                first = next(iter(values.kinds.values()), None)
                report.undocumented_item(
                    "field", spec_op,
                    f"{spec_op.method} {spec_op.path}: {where} field {prefix + name} is not in the spec",
                    first.sample if first else shape.sample, where=where, field=prefix + name)
        for name in required:
            if not isinstance(name, str) or not shape.count:
                continue
            values = shape.properties.get(name)
            if values is None or values.count < shape.count:
                report.mismatch("required", spec_op, where, prefix + name, "required",
                                "absent" if values is None else "sometimes absent",
                                shape.missing.get(name) or shape.sample,
                                "the spec requires it, the traffic left it out")


def _media_match(spec_content: dict[str, Any], media: str) -> str | None:
    if media in spec_content:
        return media
    major = media.split("/", 1)[0] + "/*"
    for candidate in (major, "*/*"):
        if candidate in spec_content:
            return candidate
    for candidate in spec_content:
        if candidate.split(";", 1)[0].strip().lower() == media:
            return candidate
    return None


def _compare_bodies(report: _Report, spec_op: SpecOperation, where: str, spec_content: Any,
                    bodies: dict[str, BodyAccumulator], sample: str) -> None:
    if not isinstance(spec_content, dict):
        if any(b.structured for b in bodies.values()):
            report.undocumented_item("content_type", spec_op,
                                     f"{spec_op.method} {spec_op.path}: {where} has a body the spec does not describe",
                                     sample, where=where, content_type=sorted(bodies)[0])
        return
    for media, body in sorted(bodies.items()):
        chosen = _media_match(spec_content, media)
        first = next(iter(body.schema.kinds.values()), None)
        body_sample = first.sample if first else sample
        if chosen is None:
            report.undocumented_item("content_type", spec_op,
                                     f"{spec_op.method} {spec_op.path}: {where} content type {media} is not in the spec",
                                     body_sample, where=where, content_type=media)
            continue
        entry = report.resolve(spec_content[chosen])
        if body.structured and isinstance(entry, dict) and "schema" in entry:
            _compare(report, spec_op, f"{where} body", "", entry["schema"], body.schema)


def _status_documented(responses: dict[Any, Any], status: int) -> Any:
    """The ``responses`` key that covers ``status`` (YAML may give ``200`` unquoted: an int)."""
    for key in (str(status), status, f"{status // 100}XX", f"{status // 100}xx", "default"):
        if key in responses:
            return key
    return None


def _compare_parameters(report: _Report, spec_op: SpecOperation, op: Operation) -> None:
    for (where, name), values, display in (
        *((("query", n), v, n) for n, v in op.query.items()),
        *((("header", n), v, op.header_names[n]) for n, v in op.headers.items()),
    ):
        parameter = spec_op.parameters.get((where, name))
        if parameter is None:
            first = next(iter(values.kinds.values()), None)
            report.undocumented_item("parameter", spec_op,
                                     f"{spec_op.method} {spec_op.path}: {where} parameter {display} is not in the spec",
                                     first.sample if first else op.sample, **{"in": where, "name": display})
            continue
        if "schema" in parameter:
            _compare(report, spec_op, f"{where} parameter {display}", "", parameter["schema"], values)
        if parameter.get("required") is True and f"{where}:{name}" in op.absent:
            report.mismatch("required", spec_op, f"{where} parameter {display}", "", "required",
                            "sometimes absent", op.absent.get(f"{where}:{name}", op.sample),
                            "the spec requires it, the traffic left it out")
    seen = {("query", n) for n in op.query} | {("header", n) for n in op.headers}
    for (where, name), parameter in sorted(spec_op.parameters.items()):
        if where in ("query", "header") and parameter.get("required") is True and (where, name) not in seen:
            report.mismatch("required", spec_op, f"{where} parameter {parameter['name']}", "", "required",
                            "absent", op.sample, "the spec requires it, the traffic never sent it")
    _compare_path_parameters(report, spec_op, op)


def _compare_path_parameters(report: _Report, spec_op: SpecOperation, op: Operation) -> None:
    for position, segment in enumerate(spec_op.segments):
        if segment.startswith("{") and segment.endswith("}") and segment.count("{") == 1:
            parameter = spec_op.parameters.get(("path", segment[1:-1]))
            values = op.path_values.get(position)
            if parameter is not None and values is not None and "schema" in parameter:
                _compare(report, spec_op, f"path parameter {segment[1:-1]}", "", parameter["schema"], values)


def _match(op: Operation, candidates: list[SpecOperation]) -> SpecOperation | None:
    best, best_score = None, -1
    for spec_op in candidates:
        if spec_op.method != op.method or len(spec_op.segments) != len(op.template):
            continue
        if all(segment_matches(s, o) for s, o in zip(spec_op.segments, op.template)):
            score = sum(1 for s in spec_op.segments if "{" not in s)
            if score > best_score:
                best, best_score = spec_op, score
    return best


def api_diff(model: ApiModel, spec: Any) -> dict[str, list[dict[str, Any]]]:
    """``{undocumented, mismatches, unused}``; ``spec`` as for :func:`load_spec`
    (raises :class:`~postcap.apispec.spec.SpecError`)."""
    document = load_spec(spec)
    report = _Report(Resolver(document))
    candidates = spec_operations(document)
    hosts = server_hosts(document)
    operations = list(model.operations().values())
    if hosts and any(o.split("://", 1)[1].lower() in hosts for op in operations for o in op.origins):
        operations = [op for op in operations
                      if any(o.split("://", 1)[1].lower() in hosts for o in op.origins)]
    used: set[tuple[str, str]] = set()
    for op in operations:
        spec_op = _match(op, candidates)
        if spec_op is None:
            report.undocumented_item("operation", op,
                                     f"{op.method} {render(op.template)} is not in the spec "
                                     f"(seen {op.count} time(s))", op.sample, count=op.count)
            continue
        used.add((spec_op.method, spec_op.path))
        _compare_parameters(report, spec_op, op)
        request_body = report.resolve(spec_op.operation.get("requestBody"))
        if isinstance(request_body, dict) and request_body.get("required") is True and op.no_body:
            report.mismatch("required", spec_op, "request body", "", "required", "sometimes absent",
                            op.no_body_sample, "the spec requires a body, the traffic sent none")
        if op.request_bodies:
            _compare_bodies(report, spec_op, "request",
                            request_body.get("content") if isinstance(request_body, dict) else None,
                            op.request_bodies, op.sample)
        responses = report.resolve(spec_op.operation.get("responses")) or {}
        for status, response in sorted(op.responses.items()):
            key = _status_documented(responses, status) if isinstance(responses, dict) else None
            if key is None:
                report.undocumented_item("status", spec_op,
                                         f"{spec_op.method} {spec_op.path}: status {status} is not in the spec",
                                         response.sample, status=status)
                continue
            spec_response = report.resolve(responses[key])
            if response.bodies and isinstance(spec_response, dict):
                _compare_bodies(report, spec_op, f"response {status}", spec_response.get("content"),
                                response.bodies, response.sample)
    unused = []
    for spec_op in candidates:
        key = (spec_op.method, spec_op.path)
        if key not in used and not any(u["method"] == key[0] and u["path"] == key[1] for u in unused):
            unused.append({"kind": "operation", "method": spec_op.method, "path": spec_op.path,
                           "message": f"{spec_op.method} {spec_op.path} was never exercised"})
    return {"undocumented": report.undocumented, "mismatches": report.mismatches, "unused": unused}


__all__ = ["api_diff"]
