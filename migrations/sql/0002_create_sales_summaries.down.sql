-- Undo 0002: drops the summaries of the SQL pipelines (rebuild them with a backfill).
DROP TABLE IF EXISTS {database}.monthly_sales{cluster} SYNC;
DROP TABLE IF EXISTS {database}.daily_sales{cluster} SYNC;
