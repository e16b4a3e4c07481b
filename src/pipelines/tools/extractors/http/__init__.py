"""The HTTP extractor package (imported by users as ``pipelines.tools.extractors.http_extractor``)."""
