"""The status web page (./run.sh ui) and its /metrics."""
