"""Transformers: batch -> batch (lambda, type casts, column operations, validation)."""
