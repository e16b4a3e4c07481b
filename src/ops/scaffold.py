"""``./run.sh new NAME --from http|db|file|sql``: a pipeline module, its table's migration and its test
(and, for ``sql``, its query file next to the module).

The files are written from :mod:`ops.scaffold_templates`, only after every check passed (nothing
half-written): a valid, unused name, and none of the target files already there. The module, the
migration and the test agree with each other, so ``./run.sh test pipelines`` passes as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from core.config import PROJECT_ROOT, Settings
from core.exceptions import ScaffoldError
from ops import scaffold_templates as t

SOURCES = ("http", "db", "file", "sql")
LOADERS = ("clickhouse", "console")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_VERSION = re.compile(r"^(\d+)_")
SAMPLE_DAY = "2026-01-15"
#: A name longer than this is refused: it names files (``test_NAME_pipeline.py``, the migration) and
#: tables (the run-private ``_dp_stage_NAME_<run id>``), which have length limits of their own.
MAX_NAME_LENGTH = 64
_URL_WORDS = {"http": "API", "db": "DB"}


def url_setting(name: str, source: str) -> str | None:
    """The setting holding the source's URL (None for sources without one).

    The name in upper case, then the source's word (``API`` for http, ``DB`` for db), then ``_URL``;
    a name already ending with that word does not repeat it: ``orders`` -> ``ORDERS_DB_URL``,
    ``orders_db`` -> ``ORDERS_DB_URL`` (never ``ORDERS_DB_DB_URL``), ``shop_api`` -> ``SHOP_API_URL``."""
    word = _URL_WORDS.get(source)
    if word is None:
        return None
    upper = name.upper()
    return f"{upper}_URL" if upper.endswith(f"_{word}") else f"{upper}_{word}_URL"



@dataclass(frozen=True)
class Planned:
    path: Path
    text: str


def _placeholders(name: str, source: str, loader: str) -> dict[str, str]:
    clickhouse = loader == "clickhouse"
    return {
        "__LOADER_IMPORT__": ("from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader"
                              if clickhouse else
                              "from pipelines.tools.loaders.console_loader import create_console_loader"),
        "__LOADER__": t.CLICKHOUSE_LOADER if clickhouse else t.CONSOLE_LOADER,
        "__TABLE_NAME__": '        "table_name": "__NAME__",\n' if clickhouse else "",
        "__ROWS_ASSERTIONS__": t.ROWS_ASSERTIONS if clickhouse else t.CONSOLE_ROWS_ASSERTIONS,
        "__RERUN_ASSERTIONS__": t.RERUN_ASSERTIONS if clickhouse else t.CONSOLE_RERUN_ASSERTIONS,
        "__CLASS__": "".join(part.capitalize() for part in name.split("_")),
        "__URL_SETTING__": url_setting(name, source) or "",
        "__SOURCE__": source,
        "__NAME__": name,
    }


def _render(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():  # in order: inserted snippets may hold later placeholders
        template = template.replace(key, value)
    return template


def next_migration_version(directory: Path) -> int:
    """One above the highest ``NNNN_`` prefix in ``directory`` (1 when there is none)."""
    versions = [int(m.group(1)) for p in directory.glob("*.sql") if (m := _VERSION.match(p.name))]
    return max(versions, default=0) + 1


def check_name(name: str, known: set[str]) -> None:
    """A valid, unused pipeline name for ``new``; else a one-line ``ScaffoldError``."""
    if len(name) > MAX_NAME_LENGTH:
        raise ScaffoldError(f"the name is {len(name)} characters long; at most {MAX_NAME_LENGTH} (it names the "
                            "module, the table, the migration and the test)")
    if name.endswith("_pipeline"):
        raise ScaffoldError(f"give the pipeline's name without '_pipeline' (e.g. "
                            f"'{name.removesuffix('_pipeline')}'): the file will be {name}.py")
    if not _NAME.match(name):
        raise ScaffoldError(f"'{name}' is not a valid name: use lower-case letters, digits and '_', "
                            "starting with a letter (it names the module, the table and the test)")
    if name in known:
        raise ScaffoldError(f"a pipeline named '{name}' already exists (./run.sh list shows where)")


def plan(name: str, source: str, settings: Settings, loader: str = "clickhouse",
         known: set[str] | None = None, root: Path = PROJECT_ROOT) -> list[Planned]:
    """The files to write, checked: a :class:`ScaffoldError` when any cannot be."""
    if source not in SOURCES:
        raise ScaffoldError(f"unknown source '{source}': use one of {', '.join(SOURCES)}")
    if loader not in LOADERS:
        raise ScaffoldError(f"unknown loader '{loader}': use one of {', '.join(LOADERS)}")
    if source == "sql" and loader != "clickhouse":
        raise ScaffoldError("a SQL pipeline runs inside ClickHouse and writes a ClickHouse table: "
                            "use --loader clickhouse (the default)")
    check_name(name, known or set())
    values = _placeholders(name, source, loader)
    module, test, migration = {
        "http": (t.HTTP_MODULE, t.HTTP_TEST, t.MIGRATION), "db": (t.DB_MODULE, t.DB_TEST, t.MIGRATION),
        "file": (t.FILE_MODULE, t.FILE_TEST, t.MIGRATION), "sql": (t.SQL_MODULE, t.SQL_TEST, t.SQL_MIGRATION),
    }[source]
    files = [Planned(settings.pipelines_dir / f"{name}_pipeline.py", _render(module, values)),
             Planned(root / "tests" / "pipelines" / f"test_{name}_pipeline.py", _render(test, values))]
    if loader == "clickhouse":
        version = next_migration_version(settings.migrations_dir)
        stem = f"{version:04d}_create_{name}"
        files += [Planned(settings.migrations_dir / f"{stem}.sql", _render(migration, values)),
                  Planned(settings.migrations_dir / f"{stem}.down.sql", _render(t.MIGRATION_DOWN, values))]
    if source == "file":
        files.append(Planned(root / "data" / "samples" / name / f"{SAMPLE_DAY}.csv", t.SAMPLE_CSV))
    if source == "sql":
        files.append(Planned(settings.pipelines_dir / f"{name}.sql", _render(t.SQL_QUERY, values)))
    existing = [f.path for f in files if f.path.exists()]
    if existing:
        raise ScaffoldError(f"not overwriting {', '.join(map(str, existing))}: choose another name or remove "
                            f"{'it' if len(existing) == 1 else 'them'}")
    return files


def write(files: list[Planned]) -> list[Path]:
    for planned in files:
        planned.path.parent.mkdir(parents=True, exist_ok=True)
        planned.path.write_text(planned.text)
    return [f.path for f in files]
