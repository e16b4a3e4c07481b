"""Python 3.11 is the minimum, stated everywhere; run.sh refuses older interpreters, saying how to
get 3.11 (deploy.sh's preflight: tests/integration/test_deploy.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT, python310

HOW = ("get one with uv (uv python install 3.12, see https://docs.astral.sh/uv/), pyenv (pyenv install 3.12) or, "
       "on Debian/Ubuntu, the deadsnakes PPA (apt-get install python3.12 python3.12-venv)")


@pytest.fixture
def py310() -> str:
    found = python310()
    if found is None:
        pytest.skip("no Python 3.10 interpreter here (pyenv versions, python3.10) to test the refusal with")
    return found


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    """run.sh in a directory without .venv, as in a fresh clone (nothing else is needed to refuse)."""
    root = tmp_path / "clone"
    root.mkdir()
    for name in ("run.sh", "requirements.txt"):
        shutil.copy2(ROOT / name, root / name)
    return root


def _bin_with(tmp_path: Path, python: str | None) -> Path:
    """A PATH holding only what run.sh needs before it looks for Python, and ``python`` as python3."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for tool in ("bash", "sha256sum", "cut", "cat", "dirname"):
        (directory / tool).symlink_to(shutil.which(tool))
    if python:
        (directory / "python3").symlink_to(python)
    return directory


def _run_sh(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shutil.which("bash"), str(root / "run.sh"), "help"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_run_sh_refuses_python_3_10_on_path(fresh: Path, tmp_path: Path, py310: str) -> None:
    version = subprocess.run([py310, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    result = _run_sh(fresh, {"PATH": str(_bin_with(tmp_path, py310)), "HOME": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr == (f"[run.sh] error: Python 3.11 or newer is required (python3 is {version}); {HOW}; "
                             "then run again, with PYTHON=/path/to/python3.12 if it is not on PATH\n")
    assert not (fresh / ".venv").exists()


def test_run_sh_refuses_a_too_old_PYTHON_instead_of_picking_another(fresh: Path, py310: str) -> None:  # noqa: N802
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(fresh), "PYTHON": py310}
    result = _run_sh(fresh, env)
    assert result.returncode == 1
    assert f"error: Python 3.11 or newer is required ({py310} is 3.10." in result.stderr
    assert not (fresh / ".venv").exists()


def test_run_sh_without_any_python(fresh: Path, tmp_path: Path) -> None:
    result = _run_sh(fresh, {"PATH": str(_bin_with(tmp_path, None)), "HOME": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.startswith(f"[run.sh] error: Python 3.11 or newer is required (no python3 found); {HOW}")


def test_3_11_is_the_minimum_everywhere() -> None:
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"] == ">=3.11"
    from core.health import MIN_PYTHON

    assert MIN_PYTHON == (3, 11)
    texts = {path: path.read_text() for path in [ROOT / "README.md", ROOT / "run.sh", ROOT / "deploy.sh",
                                                 *sorted((ROOT / "docs").glob("*.md"))]}
    stale = {str(p.relative_to(ROOT)): m.group(0) for p, text in texts.items()
             for m in [re.search(r"Python 3\.(9|10)\b|3\.(9|10)\+|3\.(9|10) or newer"
                                 r"|>= ?3\.(9|10)|>= \(3, (9|10)\)", text)]
             if m}
    assert stale == {}
    assert "Python 3.11" in texts[ROOT / "README.md"]
