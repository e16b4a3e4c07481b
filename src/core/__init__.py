"""Framework foundation: configuration, logging, errors and the ClickHouse store."""
