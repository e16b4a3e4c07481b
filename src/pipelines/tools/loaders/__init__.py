"""Loaders: where batches go (ClickHouse, console, files)."""
