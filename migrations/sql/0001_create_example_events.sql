-- The example pipeline's table: web-shop order events, one row per event.
-- Daily partitions so the interval loader can replace one day atomically
-- (ALTER TABLE ... REPLACE PARTITION), ordered by day then event id.
CREATE TABLE IF NOT EXISTS {database}.example_events{cluster}
(
    event_id    UInt64,
    event_time  DateTime64(3, 'UTC'),
    event_date  Date DEFAULT toDate(event_time),
    customer_id UInt32,
    country     LowCardinality(String),
    product     String,
    category    LowCardinality(String),
    quantity    UInt16,
    unit_price  Float64,
    amount      Float64,
    status      LowCardinality(String),
    loaded_at   DateTime64(3, 'UTC'),
    _dp_run_id  String
)
ENGINE = MergeTree
PARTITION BY event_date
ORDER BY (event_date, event_id);
