"""From captured traffic to an API description: endpoint templates, merged JSON
schemas, security schemes, secret redaction, the OpenAPI 3.1 document and drift
against an existing specification.  Everything here is pure: details in, documents out."""

__all__ = [
    "document",
    "drift",
    "model",
    "redact",
    "schema",
    "security",
    "spec",
    "templates",
    "traffic",
    "values",
]
