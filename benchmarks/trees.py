"""An older commit's tree, for benchmarks that measure this checkout against it side by side.

    from trees import unpack
    src = unpack("cf6f863", Path(tmp)) / "src"
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def unpack(commit: str, target: Path, *paths: str) -> Path:
    """The tree of ``commit`` (only ``paths`` when given) in ``target``, with ``git archive``:
    nothing is added to the repository (no worktree, no checkout)."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", commit, *paths], capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(target, filter="data")
    return target
