"""Validation of exported documents against the schemas in ../shared/reference/.

Uses the reference folder's own ``validate.py`` (offline, schemas from the folder).
When the folder is missing, tests that need it skip with a loud reason; CI has it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def _validator_module() -> Any:
    script = REFERENCE / "validate.py"
    if not script.exists():
        pytest.skip(f"SCHEMAS MISSING: {REFERENCE} not found; exports are NOT being validated")
    spec = importlib.util.spec_from_file_location("shared_reference_validate", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def schema_errors(kind: str, document: Any) -> list[str]:
    """Every schema error of ``document`` ("har" or "collection"), as readable lines."""
    validator = _validator_module().build_validator(kind)
    return [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(document)]


def assert_valid(kind: str, document: Any) -> None:
    errors = schema_errors(kind, document)
    assert not errors, "\n".join(errors[:20])
