"""``./run.sh new``: start a pipeline from a template (module, migration, test)."""

from __future__ import annotations

import click

from cli.app import EXIT_OK, App, cli, pass_app
from core.config import PROJECT_ROOT


def _shown(path: object) -> str:
    try:
        return str(path.relative_to(PROJECT_ROOT))  # type: ignore[attr-defined]
    except ValueError:
        return str(path)


@cli.command("new")
@click.argument("name")
@click.option("--from", "source", type=click.Choice(["http", "db", "file", "sql"]), required=True,
              help="Where the data comes from: an HTTP API, a SQL database, files or a query over "
                   "the store's own tables (a SQL pipeline, run inside ClickHouse).")
@click.option("--loader", type=click.Choice(["clickhouse", "console"]), default="clickhouse", show_default=True,
              help="Where it goes: a ClickHouse table (with its migration) or the console.")
@pass_app
def new(app: App, name: str, source: str, loader: str) -> int:
    """Write a new pipeline: its module, its table's migration and a test that passes as written."""
    from ops.scaffold import plan, url_setting, write

    written = write(plan(name, source, app.settings, loader, known=set(app.registry.pipelines)))
    for path in written:
        app.console.print(f"wrote {_shown(path)}", markup=False, soft_wrap=True)
    steps = [f"./run.sh test tests/pipelines/test_{name}_pipeline.py   # passes as written"]
    if loader == "clickhouse":
        steps.append("./run.sh migrate                                   # creates the table")
    setting = url_setting(name, source)
    if setting:
        steps.append(f"set {setting} in .env, then ./run.sh cron_run {name}")
    elif source == "sql":
        steps.append(f"edit src/pipelines/{name}.sql (and depends_on), then ./run.sh cron_run {name}")
    else:
        steps.append(f"./run.sh cron_run {name} --date 2026-01-15          # the sample day")
    app.console.print("next:\n  " + "\n  ".join(steps), markup=False, soft_wrap=True)
    return EXIT_OK
