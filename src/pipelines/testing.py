"""Test your pipelines: run one for an interval against a throw-away embedded store.

In a few lines of pytest (``tests/pipelines/`` is yours; ``./run.sh test pipelines`` runs it)::

    from datetime import date

    from pipelines.testing import TestProject

    def test_orders_load_one_day(tmp_path):
        with TestProject(tmp_path) as project:
            result = project.run("orders", day=date(2026, 1, 15))
            assert result.status == "success", result.error
            assert len(result.rows) == result.record.rows_loaded == 42
            assert {row["country"] for row in result.rows} <= {"DE", "FR"}

A :class:`TestProject` is the project as the real commands see it -- your ``src/pipelines``
and ``migrations/sql`` (or the folders you pass) -- but with its own embedded ClickHouse store,
logs and run directory under ``directory``, whatever ``.env`` or the environment say about
CLICKHOUSE_HOST: a test never writes to a real database. A run goes through the same runner as
``./run.sh cron_run`` (locks, retries, the run record, the first run applies the migrations), on
the same kind of store: open while in use, not reopened for each query (docs/testing.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from audit.results import CHECKS_TABLE
from core.config import PROJECT_ROOT, Settings
from core.models import RunRecord
from core.store import Store
from ops.discovery import discover
from pipelines.pipeline_registry import PipelineSpec, Registry

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["RunOutcome", "TestProject"]


@dataclass
class RunOutcome:
    """What one run did: its status, the rows it wrote, its run record and check results."""

    status: str
    error: str
    run_id: str
    record: RunRecord | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "success"


class TestProject:
    """A throw-away copy of the project's runtime: embedded store, logs and run dir in ``directory``.

    ``pipelines_dir`` and ``migrations_dir`` default to the project's own; ``settings`` overrides
    any other setting (e.g. ``{"batch_size": 10}``). Use it as a context manager (or call
    :meth:`close`): the embedded store admits one process at a time.
    """

    __test__ = False  # a helper, not a test class, for pytest's collector

    def __init__(self, directory: Path | str, pipelines_dir: Path | str | None = None,
                 migrations_dir: Path | str | None = None, settings: dict[str, Any] | None = None) -> None:
        root = Path(directory)
        values: dict[str, Any] = {
            "data_dir": root / "data", "log_dir": root / "logs", "run_dir": root / "run",
            "pipelines_dir": Path(pipelines_dir) if pipelines_dir else PROJECT_ROOT / "src" / "pipelines",
            "migrations_dir": Path(migrations_dir) if migrations_dir else PROJECT_ROOT / "migrations" / "sql",
            **(settings or {}),
            # Never a real server, whatever the environment or .env say.
            "clickhouse_host": None, "clickhouse_url": None,
        }
        self.settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        self.store: Store = _ProjectStore(self.settings)
        self._registry: Registry | None = None

    # ---- the project --------------------------------------------------------------------

    @property
    def registry(self) -> Registry:
        """The pipelines discovered in ``pipelines_dir`` (a fresh discovery per project)."""
        if self._registry is None:
            self._registry = discover(self.settings.pipelines_dir.resolve())
        return self._registry

    def pipeline(self, name: str) -> PipelineSpec:
        """The registered pipeline ``name`` (a clear error when it is unknown or broken)."""
        return self.registry.get(name)

    # ---- running ------------------------------------------------------------------------

    def run(self, name: str, day: date | str | None = None, start: datetime | str | None = None,
            end: datetime | str | None = None) -> RunOutcome:
        """Run pipeline ``name`` for ``day`` (or ``start``..``end``; default: the current interval)."""
        from core.logging import setup_logging
        from ops.alerts.dispatch import notify_run
        from runner.runner import run_pipeline

        spec = self.pipeline(name)
        setup_logging(self.settings, console=False)
        result = run_pipeline(spec, self.settings, self.store, _interval(day, start, end), on_finish=notify_run)
        record = self.run_record(result.run_id)
        return RunOutcome(status=result.status, error=result.error, run_id=result.run_id, record=record,
                          rows=self._rows_of(spec, result.run_id), checks=self._checks_of(result.run_id))

    def run_record(self, run_id: str) -> RunRecord | None:
        from record.history import get_run

        return get_run(self.store, run_id)

    # ---- reading back -------------------------------------------------------------------

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a query on the project's store, as dicts (``{database}`` is not needed:
        the store's database is the current one)."""
        return self.store.query_dicts(sql, parameters)

    def table_rows(self, table: str, order_by: str | None = None) -> list[dict[str, Any]]:
        """Every row of ``table`` (in ``order_by`` order when given)."""
        order = f" ORDER BY {order_by}" if order_by else ""
        return self.query(f"SELECT * FROM {self.store.table(table)}{order}")

    def _rows_of(self, spec: PipelineSpec, run_id: str) -> list[dict[str, Any]]:
        """The rows the run wrote to its table (all of the table's rows if it has no run id column)."""
        from pipelines.tools.loaders.clickhouse_loader import RUN_ID_COLUMN

        table = spec.table_name
        if not table or not self.store.table_exists(table):
            return []
        if RUN_ID_COLUMN not in self.store.adapter.columns(table):
            return self.table_rows(table)
        return self.query(f"SELECT * FROM {self.store.table(table)} WHERE {RUN_ID_COLUMN} = {{r:String}}",
                          {"r": run_id})

    def _checks_of(self, run_id: str) -> list[dict[str, Any]]:
        if not self.store.table_exists(CHECKS_TABLE):
            return []
        return self.query(f"SELECT * FROM {self.store.table(CHECKS_TABLE)} WHERE run_id = {{r:String}}",
                          {"r": run_id})

    # ---- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Release the embedded store (another process can then open it) and the lock on it."""
        self.store.close()

    def __enter__(self) -> TestProject:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class _ProjectStore(Store):
    """A project's store: the same :class:`Store` as ``cron_run`` uses (default linger, so a run's
    queries share one open engine instead of opening and closing it around each of them -- that
    was 47 engine opens per run of the example), that hands the in-process engine over.

    chdb runs one engine per process, on one path at a time: before a project's store opens, the
    store of another project of this process (idle between its calls; tests run one at a time)
    is closed, so several TestProjects of a session may be used in turn as before.
    """

    _holder: ClassVar[_ProjectStore | None] = None

    def _open(self) -> Client:
        holder = _ProjectStore._holder
        if holder is not None and holder is not self:
            holder.close()
        client = super()._open()
        _ProjectStore._holder = self
        return client

    def close(self) -> None:
        super().close()
        if _ProjectStore._holder is self:
            _ProjectStore._holder = None


def _interval(day: date | str | None, start: datetime | str | None, end: datetime | str | None) -> Any:
    from core.intervals import day_interval, parse_date, parse_interval

    if day is not None and (start is not None or end is not None):
        raise ValueError("give either day or start/end, not both")
    if (start is None) != (end is None):
        raise ValueError("start and end go together")
    if day is not None:
        return day_interval(parse_date(day) if isinstance(day, str) else day)
    if start is not None and end is not None:
        return parse_interval(_iso(start), _iso(end))
    return None


def _iso(value: datetime | str) -> str:
    return value.isoformat() if isinstance(value, datetime) else value
