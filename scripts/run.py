#!/usr/bin/env python3
"""``scripts/run.py ARGS`` is ``./run.sh cron_run ARGS``: run one pipeline for one data interval,
with its job log and run record (``./run.sh cron_run --help``).

A thin entry point kept for the seed's layout (as is ``scripts/backfill.py``): it hands over to
run.sh, so the virtualenv, the settings (.env), the logs and the exit code are exactly the
command's. Any python3 can start it.
"""

import os
import sys
from pathlib import Path

RUN_SH = Path(__file__).resolve().parents[1] / "run.sh"


def hand_over(command: str) -> None:
    """Replace this process with ``run.sh COMMAND ARGS...``."""
    os.execv(str(RUN_SH), [str(RUN_SH), command, *sys.argv[1:]])


if __name__ == "__main__":
    hand_over("cron_run")
