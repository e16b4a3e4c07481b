#!/usr/bin/env python3
"""``scripts/backfill.py ARGS`` is ``./run.sh backfill ARGS``: run pipelines over past intervals,
resumably (``./run.sh backfill --help``). A thin entry point, like ``scripts/run.py``."""

from run import hand_over  # scripts/ is sys.path[0] when this file is run

if __name__ == "__main__":
    hand_over("backfill")
