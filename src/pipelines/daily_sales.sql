-- Daily sales per country from the raw order events of the run's day.
-- {start} and {end} are bound as DateTime64(6, 'UTC') query parameters (never pasted text).
SELECT
    event_date              AS day,
    country,
    count()                 AS orders,
    sum(quantity)           AS items,
    round(sum(amount), 2)   AS revenue
FROM example_events
WHERE event_time >= {start} AND event_time < {end}
  AND status = 'completed'
GROUP BY day, country
