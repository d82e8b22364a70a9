"""``postcapctl export openapi`` and ``postcapctl api diff``: API descriptions from a
session's traffic, and their drift from a spec (exit 1 on drift, for CI)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import yaml

EXIT_DRIFT = 1
_SECTIONS = (("undocumented", "Undocumented (seen in traffic, not in the spec)"),
             ("mismatches", "Mismatches (traffic contradicts the spec)"),
             ("unused", "Unused (in the spec, never exercised)"))


def openapi_text(document: dict[str, Any], output: str | None, chosen: str | None) -> str:
    """The document as YAML (``--format yaml``, or an output ending .yaml/.yml) or JSON."""
    fmt = chosen or ("yaml" if output and output.lower().endswith((".yaml", ".yml")) else "json")
    if fmt == "yaml":
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    return json.dumps(document, indent=2) + "\n"


def cmd_export_openapi(client: Any, args: argparse.Namespace) -> Any:
    document = client.session_export(args.session, format="openapi")
    text = openapi_text(document, args.output, args.format_)
    if not args.output:
        return document, lambda _: text.rstrip("\n")
    partial = args.output + ".part"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, args.output)
    result = {"path": os.path.abspath(args.output), "bytes": len(text.encode("utf-8")),
              "paths": len(document.get("paths", {}))}
    return result, lambda r: f"wrote {r['path']} ({r['paths']} paths)"


def show_drift(report: dict[str, list[dict[str, Any]]]) -> str:
    if not any(report.get(key) for key, _ in _SECTIONS):
        return "no drift: the traffic matches the spec"
    lines: list[str] = []
    for key, title in _SECTIONS:
        items = report.get(key) or []
        if not items:
            continue
        lines.append(f"{title}: {len(items)}")
        for item in items:
            sample = f"  [sample {item['sample']}]" if item.get("sample") else ""
            lines.append(f"  - {item['message']}{sample}")
    return "\n".join(lines)


def cmd_api_diff(client: Any, args: argparse.Namespace) -> Any:
    with open(args.spec, encoding="utf-8") as handle:
        spec_text = handle.read()
    report = client.api_diff(args.session, spec_text)
    if any(report.get(key) for key, _ in _SECTIONS):
        args.exit_status = EXIT_DRIFT
    return report, show_drift


def add_openapi_export(formats: Any, parser_class: type) -> None:
    openapi = formats.add_parser("openapi", help="OpenAPI 3.1 inferred from the session's traffic")
    openapi.add_argument("session")
    openapi.add_argument("-o", "--output", help="file to write (YAML for .yaml/.yml, else JSON); "
                                                "default: print")
    openapi.add_argument("--format", dest="format_", choices=("json", "yaml"),
                         help="force JSON or YAML")
    openapi.set_defaults(handler=cmd_export_openapi)


def add_api_commands(commands: Any, parser_class: type) -> None:
    api = commands.add_parser("api", help="API descriptions and drift")
    actions = api.add_subparsers(dest="action", required=True, parser_class=parser_class)
    diff = actions.add_parser("diff", help="compare a session's traffic with an OpenAPI spec "
                                           "(exit 1 when they drift)")
    diff.add_argument("session")
    diff.add_argument("spec", help="OpenAPI 3.0/3.1 document, YAML or JSON")
    diff.set_defaults(handler=cmd_api_diff)


__all__ = ["add_api_commands", "add_openapi_export", "openapi_text", "show_drift"]
