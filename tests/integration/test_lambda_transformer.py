"""The lambda transformer through a real pipeline run: what a user function does not touch
reaches ClickHouse as it left the extractor (exact integers, NULLs kept)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from conftest import rows, run_cli
from core.store import Store

MODULE = textwrap.dedent('''
    import pandas as pd
    import pyarrow as pa
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_etl_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
    from pipelines.tools.transformers.transformers import create_lambda_transformer

    class Counts(Extractor):
        """A first batch without NULLs (the table is created from it), then one with a NULL."""
        def extract(self, context):
            yield pa.table({"id": [1, 2], "n": pa.array([10, 9007199254740993], pa.int64())})
            yield pa.table({"id": [3, 4], "n": pa.array([None, -9007199254740993], pa.int64())})

    def stamp(df):  # touches another column only, as the seed's Quick Start lambda does
        df["processed_at"] = pd.Timestamp("2026-01-15 12:00:00")
        return df

    PIPELINE_REGISTRY = {
        "counts": {"pipeline": create_etl_pipeline(Counts("counts"), create_lambda_transformer(stamp, "Stamp"),
                                                   create_clickhouse_loader("counts_t"), "counts")},
    }
''')


def test_a_lambda_keeps_an_untouched_nullable_integer_column_exact(pipelines_dir: Path, db: Store) -> None:
    (pipelines_dir / "counts_pipeline.py").write_text(MODULE)
    result = run_cli("cron_run", "counts")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "4 rows loaded (4 extracted)" in result.stdout
    assert rows(db, "SELECT id, n FROM counts_t ORDER BY id") == [
        (1, 10), (2, 9007199254740993), (3, None), (4, -9007199254740993)]
    assert rows(db, "SELECT type FROM system.columns WHERE table = 'counts_t' AND name = 'n' "
                    "AND database = currentDatabase()") == [("Nullable(Int64)",)]
