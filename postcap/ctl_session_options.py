"""``postcapctl session start|update`` options: the argparse flags and the
``session.start`` / ``session.update`` options they become."""

from __future__ import annotations

import argparse
from typing import Any


def session_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in ("name", "source", "collection"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    if args.save_responses is not None:
        options["save_responses"] = args.save_responses
    if args.capture_cookies is not None:
        options["capture_cookies"] = args.capture_cookies
    if args.organize_by is not None:
        options["organize_by"] = [part for part in args.organize_by.split(",") if part]
    filters: dict[str, Any] = {}
    if args.url_contains is not None:
        filters["url_contains"] = args.url_contains
    if args.url_excludes is not None:
        filters["url_excludes"] = args.url_excludes
    if args.filter_method:
        filters["methods"] = [m.upper() for m in args.filter_method]
    if args.filter_status:
        filters["status_codes"] = [int(s) if s.isdigit() else s for s in args.filter_status]
    if args.exclude_resources:
        filters["exclude_resources"] = args.exclude_resources.split(",")
    if filters:
        options["filters"] = filters
    return options


def add_session_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name")
    parser.add_argument("--source", choices=["proxy", "interceptor"])
    parser.add_argument(
        "--save-responses", dest="save_responses", action="store_true", default=None
    )
    parser.add_argument("--no-save-responses", dest="save_responses", action="store_false")
    parser.add_argument(
        "--capture-cookies", dest="capture_cookies", action="store_true", default=None
    )
    parser.add_argument("--no-capture-cookies", dest="capture_cookies", action="store_false")
    parser.add_argument("--collection", help="collection id that also receives captures")
    parser.add_argument("--organize-by", help="comma-separated: domain,endpoint")
    parser.add_argument("--url-contains")
    parser.add_argument("--url-excludes")
    parser.add_argument(
        "--filter-method", action="append", help="capture only this method (repeatable)"
    )
    parser.add_argument(
        "--filter-status", action="append", help="capture only this status or class like 2xx"
    )
    parser.add_argument("--exclude-resources", help="comma-separated subset of image,js,css")
