"""postcapctl's API commands without a server: output formats and the drift report."""

from __future__ import annotations

import json

import yaml
from twisted.trial.unittest import SynchronousTestCase

from postcap.ctl import build_parser
from postcap.ctl_api import openapi_text, show_drift

DOCUMENT = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/a": {}}}


class CtlApiTests(SynchronousTestCase):
    def test_yaml_by_extension_or_format_json_otherwise(self) -> None:
        self.assertEqual(yaml.safe_load(openapi_text(DOCUMENT, "api.yaml", None)), DOCUMENT)
        self.assertEqual(yaml.safe_load(openapi_text(DOCUMENT, "API.YML", None)), DOCUMENT)
        self.assertEqual(json.loads(openapi_text(DOCUMENT, "api.json", None)), DOCUMENT)
        self.assertEqual(json.loads(openapi_text(DOCUMENT, None, None)), DOCUMENT)
        self.assertTrue(openapi_text(DOCUMENT, "api.json", "yaml").startswith("openapi: 3.1.0"))
        self.assertTrue(openapi_text(DOCUMENT, "api.yaml", "json").startswith("{"))

    def test_drift_report(self) -> None:
        self.assertEqual(show_drift({"undocumented": [], "mismatches": [], "unused": []}),
                         "no drift: the traffic matches the spec")
        text = show_drift({
            "undocumented": [{"message": "GET /x is not in the spec", "sample": "t1"}],
            "mismatches": [],
            "unused": [{"message": "GET /y was never exercised"}],
        })
        self.assertEqual(text.splitlines(), [
            "Undocumented (seen in traffic, not in the spec): 1",
            "  - GET /x is not in the spec  [sample t1]",
            "Unused (in the spec, never exercised): 1",
            "  - GET /y was never exercised",
        ])

    def test_commands_parse(self) -> None:
        args = build_parser().parse_args(["export", "openapi", "S", "-o", "a.yaml", "--format", "yaml"])
        self.assertEqual((args.session, args.output, args.format_, args.handler.__name__),
                         ("S", "a.yaml", "yaml", "cmd_export_openapi"))
        args = build_parser().parse_args(["export", "har", "S"])
        self.assertEqual(args.handler.__name__, "cmd_export")
        args = build_parser().parse_args(["api", "diff", "S", "spec.yaml"])
        self.assertEqual((args.session, args.spec, args.handler.__name__), ("S", "spec.yaml", "cmd_api_diff"))
