"""When checks run: declared (validated at build time), at run start, and just before publish.

Write-audit-publish: a loader that stages a run's rows in ClickHouse calls
``context.check_staged`` (the runner injects :func:`audit_staged` there) after the last batch
and before it changes the target. Every check runs there, on the staged slice only; its result is
stored in ``_dp_checks``. A failing ``error`` check stops the run:
nothing is published and the staged rows are kept (through ``Staged.keep``, under a name the
loader's clean-up leaves alone) for inspection until the next run of that interval or
``./run.sh clean``. A failing ``warn`` check is recorded and logged, and the rows are published.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from audit.checks import Check, Outcome
from audit.results import CheckResult, kept_tables_of, write_results
from audit.staged import Audit, Staged
from core.exceptions import CheckDefinitionError, CheckFailed, DataProcessorError, StoreError
from core.run_tables import STAGING_PREFIX

if TYPE_CHECKING:
    from pipelines.interfaces import Loader, RunContext

# Kept staged tables keep the staging prefix (so ``clean`` removes them) with a marker that the
# loader's own clean-up and the crash clean-up never match.
KEPT_MARKER = "kept_"


def resolve_checks(pipeline: str, checks: Any, loader: Loader) -> list[Check]:
    """Validate a pipeline's declared checks when it is built (no I/O); raise naming pipeline and check."""
    if checks is None:
        return []
    if isinstance(checks, Check) or not isinstance(checks, Sequence) or isinstance(checks, str):
        raise CheckDefinitionError(f"pipeline '{pipeline}': 'checks' must be a list of checks "
                                   f"(e.g. [not_null('id')]), got {type(checks).__name__}")
    names: set[str] = set()
    for check in checks:
        if not isinstance(check, Check):
            raise CheckDefinitionError(f"pipeline '{pipeline}': every check must be a Check (a built-in such as "
                                       f"not_null('id'), or one made with @data_check), got {check!r}")
        if check.name in names:
            raise CheckDefinitionError(f"pipeline '{pipeline}': two checks are named '{check.name}'; "
                                       "give one a name='...'")
        names.add(check.name)
        if not loader.supports_checks:
            raise CheckDefinitionError(
                f"pipeline '{pipeline}', check '{check.name}': the loader {loader.name!r} "
                f"({type(loader).__name__}) writes batches as they come, so it cannot check rows before "
                "publishing them; use the ClickHouse loader (it stages every run) or remove the checks")
        try:
            check.validate(loader)
        except CheckDefinitionError as exc:
            raise CheckDefinitionError(f"pipeline '{pipeline}', check '{check.name}': {exc}") from None
    return list(checks)


def _check_columns(context: RunContext, check: Check, columns: dict[str, str], table: str) -> None:
    for column in check.columns():
        if column not in columns:
            raise CheckDefinitionError(
                f"pipeline '{context.pipeline}', check '{check.name}': table '{table}' has no column "
                f"'{column}' (columns: {', '.join(columns)})")


def start_checks(context: RunContext, loader: Loader) -> None:
    """At run start: drop what failed runs of this interval kept, and validate the checks against
    the target table when it exists (columns, and the SQL parsed and planned by ClickHouse)."""
    checks: list[Check] = list(context.checks)
    table = loader.table
    if not loader.supports_checks or not table:
        return
    store = context.store
    for kept in kept_tables_of(store, context.pipeline, context.start):
        store.adapter.drop(kept)
        context.logger.info("Dropped %s, kept by an earlier failed run of this interval", kept)
    if not checks:
        return
    # Without the table yet (the first run creates it) only the syntax can be checked now; the
    # columns are checked on the staged rows before anything is published.
    exists = store.table_exists(table)
    columns = store.adapter.columns(table) if exists else {}
    audit = Audit(context, Staged(table, table, loader.mode or "append"), columns)
    for check in checks:
        if exists:
            _check_columns(context, check, columns, table)
        explain = check.sql_to_explain(audit)
        if explain:
            try:
                store.query_rows(f"EXPLAIN {'' if exists else 'SYNTAX '}{explain}", audit.params)
            except StoreError as exc:
                raise CheckDefinitionError(f"pipeline '{context.pipeline}', check '{check.name}': the query "
                                           f"does not run on table '{table}': {exc}") from None


def _run_one(context: RunContext, check: Check, staged: Staged, columns: dict[str, str],
             piece: bool = False) -> CheckResult:
    started = time.monotonic()
    try:
        outcome = check.evaluate(Audit(context, staged, columns, piece=piece))
        status = "pass" if outcome.passed else "fail"
    except Exception as exc:  # a broken check blocks publishing like a failing one
        text = str(exc) if isinstance(exc, DataProcessorError) else f"{type(exc).__name__}: {exc}"
        outcome, status = Outcome(1, [], f"the check could not run: {text}"), "error"
    return CheckResult(
        run_id=context.run_id, pipeline=context.pipeline, interval_start=context.start, interval_end=context.end,
        check_name=check.name, kind=check.kind, severity=check.severity, status=status, failing=outcome.failing,
        sample=outcome.sample, detail=outcome.detail[:2000], duration_seconds=time.monotonic() - started,
        kept_table="", checked_at=datetime.now(UTC))


def audit_staged(context: RunContext, staged: Staged) -> list[CheckResult]:
    """Run the context's checks on the staged rows; raise :class:`CheckFailed` if an ``error`` check fails."""
    checks: list[Check] = list(context.checks)
    if not checks:
        return []
    columns = context.store.adapter.columns(staged.staging)
    for check in checks:
        _check_columns(context, check, columns, staged.target)
    pieces = _pieces(context)
    results = [_run_one(piece, check, staged, columns, piece=piece is not context)
               for piece in pieces for check in checks]
    failed = [r for r in results if r.status != "pass"]
    blocking = [r for r in failed if r.severity == "error" or r.status == "error"]
    kept = _keep(context, staged) if blocking else ""
    for result in results:
        result.kept_table = kept
    write_results(context.store, results)
    for r in failed:
        level = context.logger.error if r in blocking else context.logger.warning
        level("Check %s (%s) %s: %s", r.check_name, r.severity, "failed" if r.status == "fail" else "errored", r.detail)
    context.logger.info("Data checks: %d passed, %d failed", len(results) - len(failed), len(failed))
    if blocking:
        listed = "; ".join(f"{r.check_name}{_of(r, len(pieces) > 1)}: {r.detail}" for r in blocking)
        raise CheckFailed(f"data check failed, nothing published; staged rows kept in {kept} "
                          f"(./run.sh checks {context.pipeline}): {listed}",
                          check=blocking[0].check_name, table=staged.target)
    return results


def _pieces(context: RunContext) -> list[RunContext]:
    """The contexts the checks run in: the run's own, or one per interval of a batch (each sees
    its interval's staged rows and bounds, as a run of that interval alone would)."""
    if not context.intervals:
        return [context]
    from dataclasses import replace

    return [replace(context, start=i.start, end=i.end, intervals=[]) for i in context.intervals]


def _of(result: CheckResult, batch: bool) -> str:
    """`` (2026-01-15)``: the interval of a failing check inside a batch."""
    if not batch:
        return ""
    from core.intervals import Interval

    return f" ({Interval(result.interval_start, result.interval_end).label})"


def _keep(context: RunContext, staged: Staged) -> str:
    """Keep the staged rows under a name no clean-up of the loader's matches (``Staged.keep``, or
    by renaming the staging table when the loader gives none); returns the kept name."""
    rest = staged.staging[len(STAGING_PREFIX):] if staged.staging.startswith(STAGING_PREFIX) else staged.staging
    kept = re.sub(r"[^A-Za-z0-9_]", "_", f"{STAGING_PREFIX}{KEPT_MARKER}{rest}")
    if staged.keep is not None:
        staged.keep(kept)
    else:
        context.store.adapter.rename(staged.staging, kept)
    return kept


class StagedChecks:
    """The auditor the runner injects into every run's context (:class:`pipelines.interfaces.Auditor`):
    the pipeline's checks validated at run start, then run on each loader's staged rows."""

    def start(self, context: RunContext, loader: Loader) -> None:
        start_checks(context, loader)

    def check(self, context: RunContext, staged: Staged) -> None:
        audit_staged(context, staged)


AUDITOR = StagedChecks()
