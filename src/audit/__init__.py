"""Data checks on a run's staged rows, run in ClickHouse before anything is published.

Declare them in a pipeline's entry::

    from audit import not_null, row_count, unique

    'checks': [row_count(min=1), not_null('id'), unique('id', severity='warn')]

See docs/checks-and-alerts.md.
"""

from audit.builtins import accepted_values, freshness, in_range, not_null, row_count, sql, unique
from audit.checks import Check, Outcome, data_check
from audit.staged import Audit

__all__ = ["Audit", "Check", "Outcome", "accepted_values", "data_check", "freshness", "in_range", "not_null",
           "row_count", "sql", "unique"]
