"""RunCounts: a run's counters, by attribute for the standard ones and by name for any other."""

from __future__ import annotations

from pipelines.run_counts import RunCounts


def test_counters_read_as_attributes_and_keys() -> None:
    counts = RunCounts()
    assert (counts.rows_extracted, counts.rows_loaded, counts.batches, counts.rows_quarantined) == (0, 0, 0, 0)
    assert counts == {}  # nothing counted yet: nothing stored
    counts.batches += 1
    counts.rows_extracted += 10
    counts.add("rows_quarantined", 2)
    counts.add("files_read")
    counts.add("files_read")
    assert counts == {"batches": 1, "rows_extracted": 10, "rows_quarantined": 2, "files_read": 2}
    assert (counts.rows_quarantined, counts["files_read"], counts.get("http_requests", 0)) == (2, 2, 0)
