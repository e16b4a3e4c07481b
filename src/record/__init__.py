"""What runs leave behind in ClickHouse: run history, incremental state, quarantined rows."""
