"""Publishing what the framework knows: the status web page and its metrics."""
