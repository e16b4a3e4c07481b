"""The status page's data layer on the suite's store (the embedded engine, or a server in ``--server``)."""

from __future__ import annotations

from core.store import Store


def test_check_results_are_read_from_the_checks_table(store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    from audit.results import CheckResult, write_results
    from publish.ui import data
    from record.tables import ensure_framework_tables

    ensure_framework_tables(store)
    assert data.latest_checks(store) == {} and data.run_checks(store, "r1") == []  # no _dp_checks yet
    assert not store.table_exists("_dp_checks")  # and reading did not create it

    def result(run_id: str, pipeline: str, name: str, status: str, hour: int, detail: str = "") -> CheckResult:
        # recent: results older than RUN_HISTORY_TTL_DAYS expire as they are written
        at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=12 - hour)
        return CheckResult(run_id, pipeline, at, at, name, "not_null", "error", status, 3 if status != "pass" else 0,
                           [], detail, 0.1, "", at)

    write_results(store, [
        result("r1", "orders", "not_null(id)", "fail", 10, "3 NULL ids"),
        result("r2", "orders", "not_null(id)", "pass", 11),  # fixed since
        result("r2", "orders", "row_count", "error", 11, "0 rows"),
        result("r3", "users", "unique(id)", "pass", 11),
    ])
    latest = {p: [(r.check_name, r.status) for r in results] for p, results in data.latest_checks(store).items()}
    assert latest == {"orders": [("not_null(id)", "pass"), ("row_count", "error")],  # the last checked run's
                      "users": [("unique(id)", "pass")]}
    checks = data.run_checks(store, "r1")
    assert [(c["check"], c["status"], c["detail"]) for c in checks] == [("not_null(id)", "fail", "3 NULL ids")]
