"""The source trees a side-by-side benchmark compares: an older commit unpacked with ``git archive``
(nothing is added to the repository: no worktree, no branch) and this checkout as git sees it.

    from trees import ROOT, unpack
    with tempfile.TemporaryDirectory() as tmp:
        old = unpack("cf6f863", Path(tmp) / "old", "src", "migrations")
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def unpack(commit: str, target: Path, *paths: str) -> Path:
    """The tree of ``commit`` (only ``paths`` when given, e.g. ``"src", "migrations"``) in ``target``."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", commit, *paths], capture_output=True,
                          check=True).stdout
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(target, filter="data")
    return target


def copy_checkout(target: Path) -> Path:
    """This checkout as git sees it (tracked and new files, nothing ignored) in ``target``."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target
