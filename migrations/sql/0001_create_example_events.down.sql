-- Undo 0001: drops the example pipeline's table and its data.
DROP TABLE IF EXISTS {database}.example_events{cluster} SYNC;
