"""The CLI's consoles: rich on a terminal; off a terminal (a pipe, a file, cron's ``logs/cron.log``)
nothing is wrapped and tables are plain TSV."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


def _plain(cell: Any) -> str:
    """A cell as one TSV field: markup removed, tabs and line breaks written ``\\t``, ``\\n`` (as
    ``sql`` writes them, ClickHouse's TSV convention)."""
    if isinstance(cell, str):
        text = Text.from_markup(cell, emoji=False).plain
    elif isinstance(cell, Text):
        text = cell.plain
    else:
        text = str(cell)
    return text.replace("\t", "\\t").replace("\r\n", "\n").replace("\n", "\\n")


class CliConsole(Console):
    """rich's Console for stdout (or stderr); ``plain`` when that stream is not a terminal.

    Plain output is never wrapped, whatever its length or ``COLUMNS``; a table is printed as TSV:
    a header line and one line per row, a blank line between two tables; its title (what it
    shows, not data) goes to stderr.
    """

    def __init__(self, stderr: bool = False) -> None:
        self.plain = not (sys.stderr if stderr else sys.stdout).isatty()
        # Other renderables off a terminal get room instead of rich's 80-column default.
        width = 200 if self.plain and not os.environ.get("COLUMNS") else None
        super().__init__(stderr=stderr, highlight=False, soft_wrap=self.plain, width=width)
        self._tables = 0

    def print(self, *objects: Any, as_table: bool = False, **kwargs: Any) -> None:
        """As rich prints, except that off a terminal tables are TSV (unless ``as_table``: asked
        for explicitly, e.g. ``sql --format table``) and nothing wraps."""
        if as_table or not self.plain or not any(isinstance(o, Table) for o in objects):
            super().print(*objects, **kwargs)
            return
        for item in objects:
            if isinstance(item, Table):
                self._print_tsv(item)
            else:
                super().print(item, **kwargs)

    def _print_tsv(self, table: Table) -> None:
        if table.title:
            sys.stderr.write(_plain(table.title) + "\n")
            sys.stderr.flush()
        lines = [""] if self._tables else []  # rich would expand the tabs: written as they are
        self._tables += 1
        lines.append("\t".join(_plain(c.header) for c in table.columns))
        cells = [list(c.cells) for c in table.columns]
        lines += ["\t".join(_plain(column[index]) for column in cells) for index in range(table.row_count)]
        self.file.write("".join(line + "\n" for line in lines))
        self.file.flush()
