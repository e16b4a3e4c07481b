"""Command-line interface: ``./run.sh <command>`` dispatches here through ``src/main.py``."""
