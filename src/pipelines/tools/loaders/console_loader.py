"""Console loader: a readable preview of what a pipeline produces (schema, row count, first rows)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from pipelines.interfaces import Batch, Loader, RunContext, to_arrow
from pipelines.tools.factory import component_factory


class ConsoleLoader(Loader):
    """A loader that prints a preview of the data instead of storing it (for trying pipelines out).

    Shows the schema and the first ``preview_rows`` rows; at commit, the total row count.
    ``console``: where to print (default: a new ``rich`` console on stdout).
    """

    def __init__(self, name: str | None = None, preview_rows: int = 10, console: Console | None = None) -> None:
        super().__init__(name or "Console")
        self.preview_rows = preview_rows
        self.console = console or Console(highlight=False)
        self._shown = 0
        self._rows = 0

    def begin(self, context: RunContext) -> None:
        self._shown = self._rows = 0

    def write(self, batch: Batch, context: RunContext) -> int:
        data = to_arrow(batch)
        if self._rows == 0:
            self.console.print(f"[bold]{self.name}[/] schema: " +
                               ", ".join(f"{f.name} {f.type}" for f in data.schema))
        room = self.preview_rows - self._shown
        if room > 0 and data.num_rows:
            preview = data.slice(0, room)
            table = Table(show_lines=False)
            for column in preview.column_names:
                table.add_column(column, overflow="fold")
            for row in preview.to_pylist():
                table.add_row(*("" if v is None else str(v) for v in row.values()))
            self.console.print(table)
            self._shown += preview.num_rows
        self._rows += data.num_rows
        return data.num_rows

    def commit(self, context: RunContext) -> None:
        more = f" (first {self._shown} shown)" if self._rows > self._shown else ""
        self.console.print(f"[bold]{self.name}[/]: {self._rows} rows{more}")


create_console_loader = component_factory(ConsoleLoader, "create_console_loader")
