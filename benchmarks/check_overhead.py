"""What data checks cost: the same interval load with and without the built-in checks.

    .venv/bin/python benchmarks/check_overhead.py [--rows 1000000] [--repeat 5]

In-process on the real embedded engine, in a fresh temporary project: a day of ``--rows`` rows
(5 columns) loaded in interval mode, first with no checks (the baseline, measured in the same
run), then with seven built-in checks (row_count, not_null on two columns, unique, accepted_values,
range, freshness), then with one relative row_count only. The same for a tiny run (4 rows),
where the fixed cost per check shows. Prints the median seconds and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _project() -> None:
    home = Path(tempfile.mkdtemp(prefix="dp-bench-checks-"))
    (home / ".env").write_text("")
    os.environ.update(ENV_FILE=str(home / ".env"), DATA_DIR=str(home / "data"), LOG_DIR=str(home / "logs"),
                      RUN_DIR=str(home / "run"))


def _day_table(rows: int, day: datetime):
    import pyarrow as pa
    import pyarrow.compute as pc

    step = 86_400_000_000 // max(rows, 1)  # microseconds: the rows spread over the day
    micros = pc.add(pc.multiply(pa.array(range(rows), pa.int64()), step), int(day.timestamp()) * 1_000_000)
    ts = pc.cast(micros, pa.timestamp("us", tz="UTC"))
    return pa.table({"ts": ts, "id": pa.array(range(rows), pa.int64()),
                     "status": pa.array(["ok", "late"] * (rows // 2) + ["ok"] * (rows % 2)),
                     "amount": pc.cast(pa.array(range(rows), pa.int64()), pa.float64()),
                     "customer": pa.array(range(rows), pa.int64())})


def measure(rows: int, repeat: int, checks_by_label: dict[str, list]) -> dict[str, float]:
    from audit.run import AUDITOR
    from core.config import load_settings
    from core.logging import get_logger
    from core.store import Store
    from pipelines.interfaces import Extractor, RunContext
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
    from record.state import RunState
    from record.tables import ensure_framework_tables

    settings = load_settings()
    store = Store(settings)
    store.create_database()
    ensure_framework_tables(store)
    day = datetime(2026, 3, 10, tzinfo=UTC)
    data = _day_table(rows, day)

    class Fixed(Extractor):
        interval_aware = True

        def extract(self, context):
            for offset in range(0, data.num_rows, settings.batch_size):
                yield data.slice(offset, settings.batch_size)

    times: dict[str, list[float]] = {label: [] for label in checks_by_label}
    for i in range(repeat + 1):  # the first round warms up; suites interleave so drift hits all alike
        for label, checks in checks_by_label.items():
            loader = create_clickhouse_loader(f"bench_{rows}", time_column="ts")
            context = RunContext(run_id=f"{label}-{i}", pipeline=f"bench_{rows}", start=day,
                                 end=day + timedelta(days=1), logger=get_logger("bench"), settings=settings,
                                 store=store, state=RunState(store, "bench"), checks=checks,
                                 auditor=AUDITOR)
            started = time.perf_counter()
            create_el_pipeline(Fixed("fixed"), loader, "bench").run(context)
            if i:
                times[label].append(time.perf_counter() - started)
    medians = {label: statistics.median(values) for label, values in times.items()}
    # Where the time goes: each check's own duration, as recorded in _dp_checks.
    for name, seconds in store.query_rows(
            "SELECT check_name, quantileExact(0.5)(duration_seconds) FROM _dp_checks WHERE pipeline = {p:String} "
            "GROUP BY check_name ORDER BY 2 DESC", {"p": f"bench_{rows}"}):
        medians[f"  check {name}"] = seconds
    store.close()
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    _project()
    from audit import accepted_values, freshness, in_range, not_null, row_count, unique

    def suites() -> dict[str, list]:
        return {
            "no checks": [],
            "7 built-in checks": [row_count(min=1), not_null("id", "status"), unique("id"),
                                  accepted_values("status", ["ok", "late"]), in_range("amount", min=0),
                                  freshness("ts", "1d"), not_null("customer", name="customer_present")],
            "row_count(min_ratio)": [row_count(min_ratio=0.5)],
        }

    for rows in (args.rows, 4):
        medians = measure(rows, args.repeat, suites())
        base = medians["no checks"]
        print(f"{rows:,} rows, interval mode, median of {args.repeat} runs:")
        for label, seconds in medians.items():
            if label.startswith("  check "):
                print(f"    {label.strip():<30} {seconds * 1000:8.1f} ms")
            else:
                print(f"  {label:<32} {seconds:8.3f} s   x{seconds / base:5.2f} of no checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
