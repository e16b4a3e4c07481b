"""Extractors: where batches come from (HTTP APIs, databases, files)."""
