"""A year's backfill of a SQL pipeline in batches (``batch_size``) against one hand-written
``INSERT ... SELECT`` of the whole year, in the same run (issue 27, section 1).

    .venv/bin/python benchmarks/batched_backfill.py [--rows-per-day 2000] [--batch-size 31]
                                                    [--reference-days 365] [--repeat 1]

In a fresh temporary project (own DATA_DIR, embedded engine), every step a new process:

1. the source table ``src``: ``--rows-per-day`` rows a day over 2023 (730k by default);
2. ``hand``: one process that opens the store and runs one ``INSERT INTO hand_t SELECT ... FROM src
   WHERE ts >= '2023-01-01' AND ts < '2024-01-01'`` (what a person would write; no run records,
   no staging, no checks);
3. ``batched``: ``./run.sh backfill year_batched --start 2023-01-01 --end 2023-12-31``, the same
   query as a SQL pipeline with ``batch_size`` 31 into a table partitioned by month (12
   partitions): 365 covered days in 12 runs;
4. ``one by one``: the same pipeline without ``batch_size`` over ``--reference-days`` days (one run
   per day, what a backfill did before batches).

Every target's rows are compared with the source's (count and sums); wall times are whole
processes (Python start and store open included). Prints the ratios.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import date, timedelta
from pathlib import Path

from backfill_overhead import ROOT, SRC, env_for  # the same temporary project

FIRST = date(2023, 1, 1)

QUERY = ("SELECT ts, user_id, amount, amount * 1.2 AS gross, if(amount > 500, 'big', 'small') AS size "
         "FROM src WHERE ts >= {start} AND ts < {end}")
DDL = ("CREATE TABLE {table} (ts DateTime64(3, 'UTC'), user_id UInt32, amount Float64, gross Float64, "
       "size String, _dp_run_id String DEFAULT '') ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY ts")


def module(batch_size: int) -> str:
    return textwrap.dedent(f'''
        from pipelines.tools.extractors.sql_source import create_sql_pipeline
        from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

        QUERY = {QUERY!r}

        def loader(table):
            return create_clickhouse_loader(table, time_column="ts", partition_by="toYYYYMM(ts)")

        PIPELINE_REGISTRY = {{
            "year_batched": {{"pipeline": create_sql_pipeline(QUERY, loader("batched_t"), name="year_batched"),
                             "batch_size": {batch_size}}},
            "year_daily": {{"pipeline": create_sql_pipeline(QUERY, loader("daily_t"), name="year_daily")}},
        }}
    ''')


def store_script(statements: list[str]) -> str:
    """A process that opens the store and runs ``statements`` (what a hand-written load does)."""
    return textwrap.dedent(f'''
        from core.config import load_settings
        from core.store import Store
        store = Store(load_settings())
        store.create_database()
        for sql in {statements!r}:
            store.command(sql.replace("{{db}}", store.database))
        store.close()
    ''')


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    result = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(args[:4])} failed ({result.returncode}):\n{result.stdout[-2000:]}\n"
                 f"{result.stderr[-2000:]}")
    return took


def query(env: dict[str, str], sql: str) -> str:
    script = ("from core.config import load_settings\nfrom core.store import Store\n"
              f"s = Store(load_settings())\nprint(s.query_rows({sql!r}.replace('{{db}}', s.database)))\ns.close()")
    return subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def measure(project: Path, rows_per_day: int, batch_size: int, reference_days: int) -> dict[str, float]:
    env = env_for(project)
    (project / "pipelines").mkdir(parents=True)
    (project / ".env").write_text("")
    (project / "pipelines" / "year_pipeline.py").write_text(module(batch_size))
    total = rows_per_day * 365
    timed([sys.executable, "-c", store_script([
        "CREATE TABLE {db}.src (ts DateTime64(3, 'UTC'), user_id UInt32, amount Float64) ENGINE = MergeTree "
        "ORDER BY ts",
        f"INSERT INTO {{db}}.src SELECT toDateTime64('2023-01-01 00:00:00', 3, 'UTC') + toIntervalMillisecond("
        f"intDiv(number * 86400000, {rows_per_day})), number % 9973, (number * 7919) % 1000 / 10 FROM numbers({total})",
        DDL.format(table="{db}.hand_t")])], env)
    timed([sys.executable, str(SRC / "main.py"), "migrate"], env)  # the store as a project has it
    last = FIRST + timedelta(days=364)
    hand = timed([sys.executable, "-c", store_script([
        "INSERT INTO {db}.hand_t (ts, user_id, amount, gross, size) "
        + QUERY.replace("{start}", "'2023-01-01 00:00:00'").replace("{end}", "'2024-01-01 00:00:00'")
        .replace("FROM src", "FROM {db}.src")])], env)
    batched = timed([sys.executable, str(SRC / "main.py"), "backfill", "year_batched", "--start", FIRST.isoformat(),
                     "--end", last.isoformat(), "--no-downstream"], env)
    daily = timed([sys.executable, str(SRC / "main.py"), "backfill", "year_daily", "--start", FIRST.isoformat(),
                   "--end", (FIRST + timedelta(days=reference_days - 1)).isoformat(), "--no-downstream"], env)
    check = "SELECT count(), round(sum(gross), 2), uniqExact(_partition_id) FROM {db}.%s"
    found = {t: query(env, check % t) for t in ("hand_t", "batched_t")}
    if found["hand_t"] != found["batched_t"]:
        sys.exit(f"rows differ: {found}")
    runs = query(env, "SELECT count(), round(sum(duration_seconds), 2) FROM {db}._dp_runs FINAL "
                      "WHERE pipeline = 'year_batched'")
    covered = query(env, "SELECT count() FROM {db}._dp_coverage FINAL WHERE pipeline = 'year_batched'")
    daily_rows = query(env, "SELECT count() FROM {db}.daily_t")
    print(f"  rows {found['batched_t']} (count, sum, partitions) in both; batched: {runs} runs (run time), "
          f"{covered} covered days; one by one: {daily_rows} rows", flush=True)
    return {"hand": hand, "batched": batched, "daily": daily}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=31)
    parser.add_argument("--reference-days", type=int, default=365, help="days backfilled one run per day")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    results = []
    for n in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="dp-batched-bench-") as tmp:
            print(f"round {n + 1}:", flush=True)
            results.append(measure(Path(tmp), args.rows_per_day, args.batch_size, args.reference_days))
    best = {k: min(r[k] for r in results) for k in results[0]}
    per_day = best["daily"] / args.reference_days
    print(f"\n{args.rows_per_day * 365:,} source rows, 365 days, embedded engine, whole processes (best of "
          f"{args.repeat}); load average after: {os.getloadavg()[0]:.2f}")
    print(f"  hand-written INSERT ... SELECT of the year   {best['hand']:7.2f} s   1.00x")
    print(f"  backfill, batch_size {args.batch_size:<3} ({-(-365 // args.batch_size)} runs)   "
          f"{best['batched']:7.2f} s   {best['batched'] / best['hand']:.2f}x (target <= 3x)")
    print(f"  backfill, batch_size 1, {args.reference_days} days           {best['daily']:7.2f} s   "
          f"({per_day:.3f} s/day; a year: ~{per_day * 365:.0f} s = {per_day * 365 / best['hand']:.1f}x)")


if __name__ == "__main__":
    main()
