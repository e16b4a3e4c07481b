"""The project's own ruff configuration (pyproject.toml) finds nothing: lint stays at zero."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINTED = ("src", "tests", "scripts", "benchmarks", "migrations")


def test_ruff_finds_nothing() -> None:
    # ruff is pinned in requirements.txt, so it is in every .venv that runs this suite.
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                             *LINTED], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
