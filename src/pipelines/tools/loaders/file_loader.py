"""File loader: CSV, Parquet or JSON Lines, written atomically.

Batches stream into a temporary file beside the target; :meth:`FileLoader.commit` renames it
into place (atomic on one filesystem), so readers see the old file or the complete new one,
never half of it. A failed run removes the temporary file and leaves the old file untouched.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.config import PROJECT_ROOT
from core.exceptions import LoadError
from core.placeholders import render_placeholders
from pipelines.interfaces import Batch, Loader, RunContext, to_arrow
from pipelines.tools.factory import component_factory

# ``.<file name>.<run id>.tmp``: run ids are ``20260115T130501-3fa9c2d1`` (runner.new_run_id).
_TEMPORARY_RUN = re.compile(r"\.\d{8}T\d{6}-[0-9a-f]{8}\.tmp$")
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class FileLoader(Loader):
    """Write the run's rows to ``path`` (CSV, Parquet or JSON Lines, by extension or ``format``).

    Relative paths are relative to the project; placeholders ``{start_date}``, ``{end_date}``,
    ``{start}``, ``{end}``, ``{run_id}``, ``{pipeline}`` give one file per run or interval. The
    file appears only at commit (written to a temporary file, then renamed).
    """

    def __init__(self, path: str | Path, format: str | None = None, name: str | None = None) -> None:
        super().__init__(name or f"File {path}")
        self.path_template = str(path)
        suffix = Path(self.path_template).suffix.lower()
        fmt = format or FORMATS.get(suffix)
        if fmt not in ("csv", "parquet", "jsonl"):
            raise LoadError(f"File loader for {path}: format must be csv, parquet or jsonl "
                            f"(or a path ending in .csv, .parquet, .jsonl), got {format or suffix or 'none'}")
        self.format = fmt
        self._reset()

    def _reset(self) -> None:
        self._target: Path | None = None
        self._tmp: Path | None = None
        self._writer: Any = None
        self._handle: IO[str] | None = None
        self._schema: pa.Schema | None = None
        self._rows = 0

    def _resolve(self, context: RunContext) -> Path:
        text = render_placeholders(self.path_template, context.template_values(),
                                   source=f"File loader path {self.path_template}", error=LoadError)
        path = Path(text)
        return path if path.is_absolute() else PROJECT_ROOT / path

    def begin(self, context: RunContext) -> None:
        self._reset()
        self._target = self._resolve(context)
        try:
            self._target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LoadError(f"File loader: cannot create directory {self._target.parent} ({exc.strerror})") from None
        self._tmp = self._target.with_name(f".{self._target.name}.{context.run_id}.tmp")

    def write(self, batch: Batch, context: RunContext) -> int:
        data = to_arrow(batch)
        assert self._tmp is not None
        if self._schema is None:
            self._schema = data.schema
            self._open(data.schema)
        elif data.schema != self._schema:
            try:
                data = data.select(self._schema.names).cast(self._schema)
            except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise LoadError(f"File loader {self._target}: batch {self._rows and 'after row ' + str(self._rows)} "
                                f"does not match the first batch's columns ({exc})") from None
        if self.format == "jsonl":
            assert self._handle is not None
            for row in data.to_pylist():
                self._handle.write(json.dumps(row, default=str) + "\n")
        else:
            self._writer.write_table(data)
        self._rows += data.num_rows
        return data.num_rows

    def _open(self, schema: pa.Schema) -> None:
        assert self._tmp is not None
        try:
            if self.format == "parquet":
                self._writer = pq.ParquetWriter(self._tmp, schema)
            elif self.format == "csv":
                self._writer = pacsv.CSVWriter(str(self._tmp), schema)
            else:
                self._handle = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 (closed in _close)
        except OSError as exc:
            raise LoadError(f"File loader: cannot write {self._tmp} ({exc.strerror})") from None

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def commit(self, context: RunContext) -> None:
        assert self._target is not None and self._tmp is not None
        if self._schema is None:  # no rows: still replace the file, with an empty one
            self._tmp.write_text("")
        self._close()
        os.replace(self._tmp, self._target)
        context.logger.info("Wrote %d rows to %s", self._rows, self._target)

    def rollback(self, context: RunContext) -> None:
        self._close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def clean_up_run(self, store: Any, run_id: str) -> list[str]:
        """A run killed mid-write leaves its temporary file: remove it."""
        return self._remove_temporary(run_id, lambda found: found == run_id)

    def clean_up_leftovers(self, store: Any, live_run_ids: Collection[str]) -> list[str]:
        return self._remove_temporary("*", lambda found: found not in live_run_ids)

    def _remove_temporary(self, run_id: str, matches: Callable[[str], bool]) -> list[str]:
        """Temporary files of runs ``matches`` accepts (placeholders other than the run id match any value)."""
        values = {key: "*" for key in ("start", "end", "start_date", "end_date", "pipeline")}
        try:
            target = Path(render_placeholders(glob.escape(self.path_template), {**values, "run_id": run_id},
                                              error=LoadError))
        except LoadError:
            return []
        target = target if target.is_absolute() else PROJECT_ROOT / target
        removed = []
        for found in glob.glob(str(target.with_name(f".{target.name}.{run_id}.tmp"))):
            name = Path(found).name
            if matches(name[:-len(".tmp")].rsplit(".", 1)[-1]) and _TEMPORARY_RUN.search(name):
                Path(found).unlink(missing_ok=True)
                removed.append(f"temporary file {found}")
        return removed


create_file_loader = component_factory(FileLoader, "create_file_loader")
