"""An existing OpenAPI 3.0/3.1 document, checked and read: operations with their
parameters, bodies and responses, local ``$ref``s resolved, 3.0's ``nullable`` read as
a ``null`` type."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from postcap.apispec.templates import split_path

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_REF_DEPTH = 64


class SpecError(ValueError):
    """The document is not an OpenAPI 3.x document; the message says why."""


def load_spec(value: Any) -> dict[str, Any]:
    """A spec given as an object, or as JSON or YAML text, checked enough to compare with."""
    document = value
    if isinstance(value, (bytes, str)):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        try:
            document = _parse(text)
        except RecursionError:
            raise SpecError("is nested too deeply") from None
    if not isinstance(document, dict):
        raise SpecError("must be an OpenAPI document (an object, or JSON/YAML text of one)")
    version = document.get("openapi")
    if not isinstance(version, str) or not re.match(r"^3\.[01]\.\d+", version):
        if "swagger" in document:
            raise SpecError("is Swagger 2.0; give an OpenAPI 3.0 or 3.1 document")
        raise SpecError('has no "openapi" version 3.0.x or 3.1.x')
    paths = document.get("paths", {})
    if not isinstance(paths, dict):
        raise SpecError('"paths" must be an object')
    for path, item in paths.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise SpecError(f'path {path!r} must start with "/"')
        if not isinstance(item, dict):
            raise SpecError(f'path item {path!r} must be an object')
    return document


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"is neither JSON nor YAML{where}") from None


class Resolver:
    """Follows local ``$ref``s (``#/components/…``); anything else counts as ``{}``."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def __call__(self, node: Any) -> Any:
        for _ in range(MAX_REF_DEPTH):
            if not isinstance(node, dict) or "$ref" not in node:
                return node
            node = self._pointer(node["$ref"])
        return {}

    def _pointer(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            return {}
        node: Any = self.document
        for token in ref[1:].split("/")[1:]:
            token = unquote(token).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return {}
        return node


@dataclass(slots=True)
class SpecOperation:
    method: str
    path: str
    #: path segments, base path included; a segment holding ``{…}`` is a pattern
    segments: tuple[str, ...]
    operation: dict[str, Any]
    parameters: dict[tuple[str, str], dict[str, Any]]


def _segment_pattern(segment: str) -> re.Pattern[str] | None:
    if "{" not in segment:
        return None
    pieces = re.split(r"(\{[^}]*\})", segment)
    return re.compile("^" + "".join("[^/]+" if p.startswith("{") else re.escape(p)
                                    for p in pieces) + "$")


def segment_matches(spec_segment: str, observed: str | None) -> bool:
    """Does an observed segment (None: a parameter) fit the spec's segment?"""
    pattern = _segment_pattern(spec_segment)
    if pattern is None:
        return observed == spec_segment
    return observed is None or bool(pattern.match(observed))


def base_paths(document: dict[str, Any]) -> list[tuple[str, ...]]:
    """The path prefixes the spec's servers put before every path."""
    found: list[tuple[str, ...]] = []
    for server in document.get("servers") or [{"url": "/"}]:
        url = server.get("url", "/") if isinstance(server, dict) else "/"
        variables = server.get("variables") or {} if isinstance(server, dict) else {}
        if isinstance(url, str):
            for name, variable in variables.items():
                if isinstance(variable, dict):
                    url = url.replace("{" + name + "}", str(variable.get("default", "")))
            path = urlsplit(url).path if "://" in url else url
            prefix = tuple(s for s in split_path(path.rstrip("/")) if s)
            if prefix not in found:
                found.append(prefix)
    return found or [()]


def server_hosts(document: dict[str, Any]) -> set[str]:
    """``host[:port]`` of the spec's absolute server URLs."""
    hosts = set()
    for server in document.get("servers") or []:
        url = server.get("url") if isinstance(server, dict) else None
        if isinstance(url, str) and "://" in url and "{" not in urlsplit(url).netloc:
            hosts.add(urlsplit(url).netloc.lower())
    return hosts


def spec_operations(document: dict[str, Any]) -> list[SpecOperation]:
    resolve = Resolver(document)
    found: list[SpecOperation] = []
    prefixes = base_paths(document)
    for path, raw_item in document.get("paths", {}).items():
        item = resolve(raw_item)
        if not isinstance(item, dict):
            continue
        shared = _parameters(resolve, item.get("parameters"))
        for method in METHODS:
            operation = resolve(item.get(method))
            if not isinstance(operation, dict):
                continue
            parameters = dict(shared)
            parameters.update(_parameters(resolve, operation.get("parameters")))
            for prefix in prefixes:
                found.append(SpecOperation(method.upper(), path, prefix + split_path(path),
                                           operation, parameters))
    return found


def _parameters(resolve: Resolver, listed: Any) -> dict[tuple[str, str], dict[str, Any]]:
    result: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in listed or []:
        parameter = resolve(raw)
        if isinstance(parameter, dict) and isinstance(parameter.get("name"), str):
            where = str(parameter.get("in", ""))
            name = parameter["name"].lower() if where == "header" else parameter["name"]
            result[(where, name)] = parameter
    return result


__all__ = ["METHODS", "Resolver", "SpecError", "SpecOperation", "base_paths", "load_spec",
           "segment_matches", "server_hosts", "spec_operations"]
