"""The request "data mode": what kind of body a request carried.

Postman's overview groups requests by it; postcap decides it from the request's
Content-Type and body size when the transaction is stored:

=============  ===============================================================
mode           request
=============  ===============================================================
``none``       no body (size 0), whatever the headers say
``urlencoded`` ``application/x-www-form-urlencoded``
``formdata``   ``multipart/form-data``
``raw-json``   ``application/json`` or any ``+json`` type
``raw-xml``    ``application/xml``, ``text/xml`` or any ``+xml`` type
``raw-text``   any other ``text/*``, ``application/javascript``,
               ``application/graphql``
``binary``     anything else, including a body without a Content-Type
=============  ===============================================================
"""

from __future__ import annotations

DATA_MODES = ("none", "raw-json", "raw-xml", "raw-text", "urlencoded", "formdata", "binary")

_TEXT_APPLICATION_TYPES = frozenset(
    {"application/javascript", "application/x-javascript", "application/graphql",
     "application/ecmascript", "application/x-ndjson", "application/yaml",
     "application/x-yaml"}
)


def data_mode(media_type: str, body_size: int) -> str:
    """The data mode of a request with this (lower-cased, parameter-free) media type."""
    if body_size <= 0:
        return "none"
    if media_type == "application/x-www-form-urlencoded":
        return "urlencoded"
    if media_type == "multipart/form-data":
        return "formdata"
    if media_type == "application/json" or media_type.endswith("+json"):
        return "raw-json"
    if media_type in ("application/xml", "text/xml") or media_type.endswith("+xml"):
        return "raw-xml"
    if media_type.startswith("text/") or media_type in _TEXT_APPLICATION_TYPES:
        return "raw-text"
    return "binary"
