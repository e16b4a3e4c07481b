"""Example SQL pipeline (ELT): daily sales per country, computed inside ClickHouse.

It reads ``example_events`` (written by ``example_pipeline``) with the query in
``daily_sales.sql`` next to this file and rebuilds one day of ``daily_sales`` per run
(loader mode ``interval``): no row passes through Python, and re-running a day replaces it.
``depends_on`` makes it run by itself after each successful ``example_pipeline`` day, and makes
``backfill daily_sales`` refuse days whose raw events are not complete.
"""

from pipelines.tools.extractors.sql_source import create_sql_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

PIPELINE_REGISTRY = {
    "daily_sales": {
        "pipeline": create_sql_pipeline(
            sql_file="daily_sales.sql",
            loader=create_clickhouse_loader("daily_sales", mode="interval", time_column="day"),
            name="Daily sales",
        ),
        "description": "Completed orders per day and country, from example_events (SQL in ClickHouse)",
        "depends_on": ["example_pipeline"],
        "table_name": "daily_sales",
    },
}
