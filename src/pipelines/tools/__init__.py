"""Reusable pipeline components: extractors, transformers and loaders."""
