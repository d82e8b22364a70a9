"""The OpenAPI 3.1 document of an :class:`~postcap.apispec.model.ApiModel`."""

from __future__ import annotations

import re
from collections import Counter
from http import HTTPStatus
from typing import Any

from postcap._version import __version__
from postcap.apispec.model import ApiModel, BodyAccumulator, Operation
from postcap.apispec.templates import PARAM, parameter_names, render

OPENAPI_VERSION = "3.1.0"
_WORD = re.compile(r"[A-Za-z0-9]+")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Status {status}"


def _without_enum(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "enum"}


def _media_schema(media: str, body: BodyAccumulator) -> dict[str, Any]:
    if body.structured:
        schema = body.schema.schema()
        for name in sorted(body.files):
            schema.setdefault("properties", {})[name] = {"type": "string", "format": "binary"}
        return schema
    if media.startswith("text/") or media in ("application/xml", "application/javascript"):
        return {"type": "string"}
    if "json" in media:  # not stored whole, or not parseable: any JSON
        return {}
    return {"type": "string", "format": "binary"}


def content(bodies: dict[str, BodyAccumulator]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for media in sorted(bodies):
        body = bodies[media]
        entry: dict[str, Any] = {"schema": _media_schema(media, body)}
        if body.has_example:
            entry["example"] = body.example
        result[media] = entry
    return result


def operation_id(method: str, path: str, taken: set[str]) -> str:
    words = _WORD.findall(path.replace("{", " by ").replace("}", " "))
    base = method.lower() + "".join(w[:1].upper() + w[1:] for w in words) or method.lower()
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}{n}"
    taken.add(name)
    return name


_VERSION_SEGMENT = re.compile(r"^(v\d+(\.\d+)*|api|rest)$", re.IGNORECASE)


def tag_of(operation: Operation) -> str:
    """The resource an operation is about: its first literal path segment that is not a
    version or ``api`` (``/v1/users/{userId}`` → ``users``), else ``default``."""
    for segment in operation.template:
        if segment is not PARAM and segment and not _VERSION_SEGMENT.match(segment):
            return segment
    return "default"


def parameters(operation: Operation) -> list[dict[str, Any]]:
    names = parameter_names(operation.template)
    result: list[dict[str, Any]] = []
    positions = [i for i, s in enumerate(operation.template) if s is PARAM]
    for name, position in zip(names, positions):
        values = operation.path_values.get(position)
        schema = _without_enum(values.schema()) if values is not None else {"type": "string"}
        result.append({"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}})
    for name in sorted(operation.query):
        values = operation.query[name]
        result.append({"name": name, "in": "query", "required": f"query:{name}" not in operation.absent,
                       "schema": values.schema()})
    for lower in sorted(operation.headers):
        values = operation.headers[lower]
        result.append({"name": operation.header_names[lower], "in": "header",
                       "required": f"header:{lower}" not in operation.absent,
                       "schema": _without_enum(values.schema())})
    return result


def operation_object(operation: Operation, path: str, taken: set[str]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "tags": [tag_of(operation)],
        "operationId": operation_id(operation.method, path, taken),
        "summary": f"{operation.method} {path}",
        "description": f"Seen {operation.count} time(s); first in transaction {operation.sample}.",
    }
    listed = parameters(operation)
    if listed:
        result["parameters"] = listed
    if operation.request_bodies:
        result["requestBody"] = {"required": operation.no_body == 0,
                                 "content": content(operation.request_bodies)}
    responses: dict[str, Any] = {}
    for status in sorted(operation.responses):
        response = operation.responses[status]
        entry: dict[str, Any] = {"description": _reason(status)}
        if response.bodies:
            entry["content"] = content(response.bodies)
        responses[str(status)] = entry
    result["responses"] = responses or {"default": {"description": "No response was captured"}}
    if operation.security:
        result["security"] = [{name: []} for name in sorted(operation.security)]
        if operation.anonymous_success:
            result["security"].append({})
    return result


def openapi_document(model: ApiModel, title: str = "API seen by postcap") -> dict[str, Any]:
    """The OpenAPI 3.1 document describing everything folded into ``model``."""
    operations = model.operations()
    origin_counts: Counter[str] = Counter()
    for operation in operations.values():
        for origin in operation.origins:
            origin_counts[origin] += operation.count
    servers = sorted(origin_counts, key=lambda o: (-origin_counts[o], o))
    paths: dict[str, Any] = {}
    path_origins: dict[str, set[str]] = {}
    schemes: dict[str, Any] = {}
    taken: set[str] = set()
    for (method, template), operation in operations.items():
        path = render(template)
        item = paths.setdefault(path, {})
        item[method.lower() if method.lower() in _METHODS else f"x-{method.lower()}"] = \
            operation_object(operation, path, taken)
        path_origins.setdefault(path, set()).update(operation.origins)
        schemes.update(operation.security)
    for path, origins in path_origins.items():
        if len(servers) > 1 and origins != set(servers):
            paths[path]["servers"] = [{"url": origin} for origin in servers if origin in origins]
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": "1.0.0",
            "description": f"Inferred by postcap {__version__} from {model.transactions} captured "
                           f"transaction(s): {len(operations)} operation(s) on {len(paths)} path(s).",
        },
        "servers": [{"url": origin} for origin in servers],
        "paths": paths,
    }
    if schemes:
        document["components"] = {"securitySchemes": dict(sorted(schemes.items()))}
    return document


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

__all__ = ["OPENAPI_VERSION", "openapi_document", "operation_id", "parameters"]
