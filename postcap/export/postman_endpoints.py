"""Postman items by endpoint: one request item per method and path template, learnt
with the same model as the OpenAPI export (:mod:`postcap.apispec.templates`).

- the URL is ``{{baseUrl}}/users/:userId`` (one ``{{…}}`` variable per origin, kept on
  the item until :func:`lift_endpoint_variables` moves it to the collection), path
  variables declared in ``url.variable`` with the first value seen;
- credentials become the item's ``auth`` with a ``{{…}}`` variable (``bearerToken``,
  ``basicUsername``/``basicPassword``, ``apiKey``, ``sessionCookie``), never the captured
  value (:func:`lift_endpoint_variables` moves the most common one to the collection or
  folder); ``Authorization``, ``Cookie`` and API-key headers are dropped, secrets in
  bodies, queries and headers become ``{{name}}``;
- one saved example (``response``) per status code, redacted likewise (no
  ``Set-Cookie``);
- merging later traffic into existing items adds only new endpoints and new statuses.

Endpoint items carry an ``id`` of ``ep-`` + a digest of origin, method and template.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit

from postcap.apispec import security
from postcap.apispec.redact import CREDENTIAL_HEADERS, known_secrets, redact_text
from postcap.apispec.templates import PARAM, PathLearner, parameter_names, parse_template, split_path
from postcap.apispec.traffic import decoded_content, header, media_type, origin_of
from postcap.apispec.values import REDACTED, secret_name, secret_value
from postcap.export.postman import host_label

ITEM_PREFIX = "ep-"
_DROPPED_HEADERS = CREDENTIAL_HEADERS | {"content-length", "host", "connection", "transfer-encoding",
                                         "accept-encoding", "content-encoding"}
_WORD = re.compile(r"[A-Za-z0-9]+")
_RAW_LANGUAGES = (("json", "json"), ("xml", "xml"), ("html", "html"), ("javascript", "javascript"))

Existing = tuple[int, list[str], dict[str, Any]]


def _camel(name: str) -> str:
    words = _WORD.findall(name) or ["value"]
    return words[0].lower() + "".join(w[:1].upper() + w[1:].lower() for w in words[1:])


def _placeholder(name: str, value: str, known: frozenset[str] = frozenset()) -> str:
    if secret_name(name) or secret_value(value) or any(secret in value for secret in known):
        return "{{" + _camel(name) + "}}"
    return value


def is_endpoint_item(item: dict[str, Any]) -> bool:
    return str(item.get("id", "")).startswith(ITEM_PREFIX)


def _auth(headers: list[list[str]], query: list[tuple[str, str]]) -> dict[str, Any] | None:
    for name, scheme in security.recognise(headers, query):
        if scheme["type"] == "http" and scheme["scheme"] == "bearer":
            return {"type": "bearer", "bearer": [
                {"key": "token", "value": "{{bearerToken}}", "type": "string"}]}
        if scheme["type"] == "http" and scheme["scheme"] == "basic":
            return {"type": "basic", "basic": [
                {"key": "username", "value": "{{basicUsername}}", "type": "string"},
                {"key": "password", "value": "{{basicPassword}}", "type": "string"}]}
        if scheme["type"] == "apiKey" and scheme["in"] in ("header", "query"):
            return {"type": "apikey", "apikey": [
                {"key": "key", "value": scheme["name"], "type": "string"},
                {"key": "value", "value": "{{apiKey}}", "type": "string"},
                {"key": "in", "value": scheme["in"], "type": "string"}]}
    return None


def _headers(headers: list[list[str]], known: frozenset[str]) -> list[dict[str, str]]:
    kept = []
    for name, value in headers:
        lower = name.lower()
        if lower in _DROPPED_HEADERS or security.is_key_header(name) or lower.startswith(":"):
            continue
        kept.append({"key": name, "value": _placeholder(name, value, known)})
    return kept


def _response_headers(headers: list[list[str]], known: frozenset[str]) -> list[dict[str, str]]:
    return [{"key": name, "value": REDACTED if secret_name(name) or secret_value(value)
             or any(secret in value for secret in known) else value}
            for name, value in headers
            if name.lower() not in _DROPPED_HEADERS]


def _body(request: dict[str, Any], known: frozenset[str]) -> dict[str, Any] | None:
    body = request["body"]
    if not body.get("size"):
        return None
    data = decoded_content(body)
    if data is None:
        return None
    content_type = header(request["headers"], "content-type") or ""
    media = media_type(content_type)
    text = data.decode("utf-8", "replace")
    if media == "application/x-www-form-urlencoded":
        pairs = parse_qsl(text, keep_blank_values=True)
        return {"mode": "urlencoded", "urlencoded": [
            {"key": k, "value": _placeholder(k, v, known), "type": "text"} for k, v in pairs]}
    if media == "multipart/form-data":
        from postcap.apispec.traffic import parse_body

        parsed = parse_body(body, request["headers"])
        if parsed is not None and parsed.structured:
            return {"mode": "formdata", "formdata": [
                {"key": k, "type": "file", "src": []} if k in parsed.files
                else {"key": k, "value": _placeholder(k, str(v), known), "type": "text"}
                for k, v in parsed.value.items()]}
    language = next((lang for needle, lang in _RAW_LANGUAGES if needle in media), "text")
    return {"mode": "raw", "raw": redact_text(text, media, known), "options": {"raw": {"language": language}}}


def _response_text(response: dict[str, Any], known: frozenset[str]) -> str:
    data = decoded_content(response["body"])
    if data is None:
        return ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    return redact_text(text, media_type(header(response["headers"], "content-type")), known)


def _url(variable: str, template: tuple[str | None, ...], segments: Sequence[str],
         query: list[tuple[str, str]], known: frozenset[str]) -> dict[str, Any]:
    names = iter(parameter_names(template))
    path: list[str] = []
    variables: list[dict[str, str]] = []
    for segment, value in zip(template, segments):
        if segment is PARAM:
            name = next(names)
            path.append(":" + name)
            variables.append({"key": name, "value": value})
        else:
            path.append(segment)
    kept = [(k, v) for k, v in query if not security.is_key_query(k)]
    raw = "{{" + variable + "}}/" + "/".join(path)
    url: dict[str, Any] = {"raw": raw, "host": ["{{" + variable + "}}"], "path": path}
    if kept:
        url["query"] = [{"key": k, "value": _placeholder(k, v, known)} for k, v in kept]
        url["raw"] += "?" + "&".join(f"{q['key']}={q['value']}" for q in url["query"])
    if variables:
        url["variable"] = variables
    return url


def _example(detail: dict[str, Any], request: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    response = detail["response"]
    example: dict[str, Any] = {
        "name": f"{response['status']} {response['reason']}".strip(),
        "originalRequest": request,
        "status": response["reason"] or str(response["status"]),
        "code": response["status"],
        "header": _response_headers(response["headers"], known),
        "body": _response_text(response, known),
    }
    media = media_type(header(response["headers"], "content-type"))
    language = next((lang for needle, lang in _RAW_LANGUAGES if needle in media), None)
    if language:
        example["_postman_previewlanguage"] = language
    return example


def _origin_variables(existing: Iterable[Existing]) -> dict[str, str]:
    """origin → variable name, from what the collection's items already use."""
    found: dict[str, str] = {}
    for _, _, item in existing:
        for variable in item.get("variable", []):
            found.setdefault(variable["value"], variable["key"])
    return found


def _variable_for(origin: str, variables: dict[str, str]) -> str:
    if origin not in variables:
        taken = set(variables.values())
        name, n = "baseUrl", 1
        while name in taken:
            n += 1
            name = f"baseUrl{n}"
        variables[origin] = name
    return variables[origin]


def _item_id(origin: str, method: str, template: tuple[str | None, ...]) -> str:
    key = json.dumps([origin, method, ["{}" if s is PARAM else s for s in template]])
    return ITEM_PREFIX + hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def plan_endpoint_items(existing: Sequence[Existing], details: Sequence[dict[str, Any]],
                        organize_by: Sequence[str]
                        ) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[list[str], dict[str, Any]]]]:
    """What adding ``details`` to a collection's endpoint items changes:
    ``(updated (seq, item), new (folders, item))``.  ``existing`` are the collection's
    endpoint items as ``(seq, folders, item)``."""
    learner = PathLearner()
    variables = _origin_variables(existing)
    origin_of_variable = {name: origin for origin, name in variables.items()}
    by_id: dict[str, tuple[int | None, list[str], dict[str, Any]]] = {}
    for seq, folders, item in existing:
        by_id[item["id"]] = (seq, folders, item)
        origin = origin_of_variable.get(item["request"]["url"]["host"][0].strip("{}"), "")
        learner.add(origin, parse_template("/" + "/".join(item["request"]["url"]["path"])))
    usable = []
    for detail in details:
        parts = urlsplit(detail["url"])
        if detail.get("kind") == "tunnel" or parts.scheme not in ("http", "https") or not parts.hostname:
            continue
        origin = origin_of(parts.scheme, parts.hostname, parts.port)
        segments = split_path(parts.path or "/")
        learner.add(origin, segments)
        usable.append((detail, origin, segments, parse_qsl(parts.query, keep_blank_values=True)))
    changed: dict[str, tuple[int | None, list[str], dict[str, Any]]] = {}
    for detail, origin, segments, query in usable:
        template = learner.template(origin, segments)
        method = detail["method"].upper()
        item_id = _item_id(origin, method, template)
        entry = changed.get(item_id) or by_id.get(item_id)
        request = detail["request"]
        response = detail.get("response")
        known = known_secrets(request["headers"], response["headers"] if response else [], query)
        if entry is None:
            variable = _variable_for(origin, variables)
            request_object: dict[str, Any] = {
                "method": method,
                "header": _headers(request["headers"], known),
                "url": _url(variable, template, segments, query, known),
            }
            auth = _auth(request["headers"], query)
            if auth is not None:
                request_object["auth"] = auth
            body = _body(request, known)
            if body is not None:
                request_object["body"] = body
            item = {"id": item_id, "name": f"{method} {'/' + '/'.join(request_object['url']['path'])}",
                    "request": request_object, "response": [],
                    "variable": [{"key": variable, "value": origin}]}
            folders = [host_label(detail["url"])] if "domain" in organize_by else []
            entry = (None, folders, item)
        else:
            entry = (entry[0], entry[1], json.loads(json.dumps(entry[2])))
        item = entry[2]
        if response is not None and all(r.get("code") != response["status"] for r in item["response"]):
            item["response"].append(_example(detail, item["request"], known))
            item["response"].sort(key=lambda r: r.get("code", 0))
            changed[item_id] = entry
        elif entry[0] is None:
            changed[item_id] = entry
    updates = [(seq, item) for seq, _, item in changed.values() if seq is not None]
    inserts = [(folders, item) for seq, folders, item in changed.values() if seq is None]
    return updates, inserts


def lift_endpoint_variables(document: dict[str, Any]) -> dict[str, Any]:
    """Move endpoint items' origin variables to the collection, and the most common
    auth of the endpoint items in each container (the collection, or a folder) to that
    container's ``auth`` (items there without auth get ``noauth``), declaring a ``{{…}}``
    variable, with no value, for each credential."""
    variables: dict[str, str] = {}
    if not _lift(document, variables):
        return document
    document["variable"] = [{"key": k, "value": v, "type": "string"} for k, v in variables.items()]
    return document


def _lift(container: dict[str, Any], variables: dict[str, str]) -> bool:
    """Lift within ``container`` and its folders; True when it holds endpoint items."""
    found = False
    items = []
    for child in container["item"]:
        if "item" in child:
            found = _lift(child, variables) or found
        elif is_endpoint_item(child):
            items.append(child)
    for item in items:
        for variable in item.pop("variable", []):
            variables.setdefault(variable["key"], variable["value"])
    counts: dict[str, int] = {}
    for item in items:
        auth = item["request"].get("auth")
        if auth is not None:
            key = json.dumps(auth, sort_keys=True)
            counts[key] = counts.get(key, 0) + 1
    if counts:
        chosen = max(sorted(counts), key=lambda k: counts[k])
        container["auth"] = json.loads(chosen)
        for item in items:
            auth = item["request"].get("auth")
            if auth is None:
                item["request"]["auth"] = {"type": "noauth"}
            elif json.dumps(auth, sort_keys=True) == chosen:
                del item["request"]["auth"]
        for key in counts:
            auth = json.loads(key)
            for attribute in auth.get(auth["type"], []):
                match = re.fullmatch(r"\{\{(\w+)\}\}", str(attribute.get("value", "")))
                if match:
                    variables.setdefault(match.group(1), "")
    return found or bool(items)


__all__ = ["ITEM_PREFIX", "is_endpoint_item", "lift_endpoint_variables", "plan_endpoint_items"]
