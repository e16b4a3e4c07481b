"""Pipelines: the component interfaces, factories, discovery and your *_pipeline.py modules."""
