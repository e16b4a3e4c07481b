"""One table of interval lengths, for every granularity an entry may declare (issue 26 §3)."""

from __future__ import annotations

import typing
from datetime import timedelta

from core.intervals import STEP
from core.models import Granularity


def test_every_granularity_has_one_step() -> None:
    assert set(typing.get_args(Granularity)) == set(STEP)
    lengths = dict(STEP)
    assert lengths == {"day": timedelta(days=1), "hour": timedelta(hours=1)}
