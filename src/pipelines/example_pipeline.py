"""Example pipeline: a day of web-shop orders into ClickHouse table ``example_events``.

It runs offline on a fresh clone. ``data/samples/orders_day.csv`` holds one day of orders
(time of day, customer, country, product, quantity, price, status); the pipeline replays that
day for whatever day it runs for, so you can run and backfill it anywhere:

    ./run.sh cron_run example_pipeline                 # yesterday: the last complete day
    ./run.sh cron_run example_pipeline --date 2026-01-15

Its schedule (01:15 daily) loads the day that ended before each fire: yesterday, whole.

The table is defined by ``migrations/sql/0001_create_example_events.sql`` (daily partitions).
Each run replaces exactly its own day (loader mode ``interval``), so re-running a day never
duplicates rows.
"""

from datetime import date

import numpy as np
import pandas as pd

from pipelines.pipeline_factory import create_etl_pipeline
from pipelines.tools.extractors.file_extractor import create_file_extractor
from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader
from pipelines.tools.transformers.transformers import create_lambda_transformer

PIPELINE_REGISTRY = {}


# Share of the sample's orders that happen on each weekday (Monday first): busier weekends.
_WEEKDAY_SHARE = (0.80, 0.78, 0.79, 0.82, 0.88, 0.95, 0.99)


def kept(rows: np.ndarray, day: date) -> np.ndarray:
    """Which sample rows happen on ``day``: a fixed pseudo-random pick, so re-runs match."""
    draws = np.random.default_rng(day.toordinal()).random(int(rows.max(initial=-1)) + 1)
    return draws[rows] < _WEEKDAY_SHARE[day.weekday()]


def place_orders_on_run_day(df: pd.DataFrame, context) -> pd.DataFrame:
    """Date the sample's orders into the run's day; the volume varies by weekday."""
    day = pd.Timestamp(context.start)
    ordinal = day.toordinal()
    df = df[kept(df.index.to_numpy(), day.date())]
    out = pd.DataFrame({
        "event_id": ordinal * 10_000 + df.index.to_numpy(),
        "event_time": day + pd.to_timedelta(df["time_of_day"].astype(str)),
        "customer_id": df["customer_id"].astype("uint32"),
        "country": df["country"],
        "product": df["product"],
        "category": df["category"],
        "quantity": df["quantity"].astype("uint16"),
        "unit_price": df["unit_price"].astype("float64"),
        "amount": (df["quantity"] * df["unit_price"]).round(2),
        "status": df["status"],
        "loaded_at": pd.Timestamp.now(tz="UTC"),
    })
    # No event_date: the table computes it (DEFAULT toDate(event_time)), so its daily partitions
    # follow the time column and each run swaps exactly its day's partition, copying nothing.
    return out


def create_example_pipeline():
    # The transformer dates every row into the run's interval, so each run owns one day.
    extractor = create_file_extractor("data/samples/orders_day.csv", name="Sample orders (one day)",
                                      interval_aware=True)
    return create_etl_pipeline(
        extractor=extractor,
        transformer=create_lambda_transformer(place_orders_on_run_day, "Place orders on the run's day"),
        loader=create_clickhouse_loader("example_events", mode="interval", time_column="event_time"),
        name="Example orders",
    )


PIPELINE_REGISTRY["example_pipeline"] = {
    "pipeline": create_example_pipeline(),
    "description": "Sample web-shop orders, one day per run, into example_events",
    "schedule": "15 1 * * *",  # daily at 01:15
    "table_name": "example_events",
    "retries": 1,
}
