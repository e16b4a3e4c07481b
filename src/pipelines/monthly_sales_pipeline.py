"""Example SQL pipeline, second level: monthly sales per country from ``daily_sales``.

The rollup is small, so each run recomputes every month from ``daily_sales`` and swaps the
table whole (loader mode ``replace``): it is always exactly the sum of the daily rows. It runs
after ``daily_sales`` (``depends_on``), so a re-loaded raw day updates both summaries.
"""

from pipelines.tools.extractors.sql_source import create_sql_pipeline
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

MONTHLY_SQL = """
SELECT
    toStartOfMonth(day)     AS month,
    country,
    count()                 AS days,
    sum(orders)             AS orders,
    sum(items)              AS items,
    round(sum(revenue), 2)  AS revenue
FROM daily_sales
GROUP BY month, country
"""

PIPELINE_REGISTRY = {
    "monthly_sales": {
        "pipeline": create_sql_pipeline(
            MONTHLY_SQL, create_clickhouse_loader("monthly_sales", mode="replace"), name="Monthly sales"),
        "description": "Daily sales rolled up per month and country (SQL in ClickHouse)",
        "depends_on": ["daily_sales"],
        "table_name": "monthly_sales",
    },
}
