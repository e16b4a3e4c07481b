-- Tables of the SQL pipelines (ELT inside ClickHouse) built on example_events:
--   daily_sales     one row per day and country   (src/pipelines/daily_sales_pipeline.py)
--   monthly_sales   one row per month and country (src/pipelines/monthly_sales_pipeline.py)
-- daily_sales is rebuilt one day at a time by the interval loader: monthly partitions are fine,
-- the loader keeps a partition's other days when it swaps one day in.
CREATE TABLE IF NOT EXISTS {database}.daily_sales{cluster}
(
    day        Date,
    country    LowCardinality(String),
    orders     UInt64,
    items      UInt64,
    revenue    Float64,
    _dp_run_id String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, country);

CREATE TABLE IF NOT EXISTS {database}.monthly_sales{cluster}
(
    month      Date,
    country    LowCardinality(String),
    days       UInt64,
    orders     UInt64,
    items      UInt64,
    revenue    Float64,
    _dp_run_id String
)
ENGINE = MergeTree
ORDER BY (month, country);
