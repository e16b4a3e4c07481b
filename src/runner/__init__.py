"""Running pipelines: data intervals, locks, retries, timeouts and the run record."""
