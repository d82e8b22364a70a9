"""The checkout's top level holds only what the project brief allows (a stray test
artifact committed by mistake fails here)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"setup.cfg", "README.md", "postcap", "twisted", "tests", "certs", "docs", ".ci",
           "pyproject.toml", ".gitignore"}


def test_only_allowed_entries_at_the_top() -> None:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    top = {line.split("/", 1)[0] for line in listed.stdout.splitlines()}
    assert top <= ALLOWED, sorted(top - ALLOWED)
