"""The ``./run.sh`` command group, its shared state and its error handling."""

from __future__ import annotations

import logging
import os
import sys
from functools import cached_property
from typing import TYPE_CHECKING, Any

import click

from cli.console import CliConsole
from core.exceptions import DataProcessorError

if TYPE_CHECKING:  # pydantic (~0.2 s) loads when a command first needs its settings, not for `help`
    from core.config import Settings

# Exit codes of the CLI (sysexits-style where one exists).
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Commands that work without valid settings (check reports a bad configuration as a FAIL line).
_WITHOUT_SETTINGS = {"help", "check", "test"}
# The variable click's shell completion scripts set when they ask ./run.sh for completions.
COMPLETE_VAR = "_RUN_SH_COMPLETE"


class App:
    """What commands share: settings, the store and the console, each built on first use."""

    def __init__(self, debug: bool = False) -> None:
        self.debug = debug
        # Off a terminal (pipes, cron, CI) nothing is wrapped and tables are TSV (cli/console.py).
        self.console = CliConsole()
        self.err = CliConsole(stderr=True)

    @cached_property
    def settings(self) -> Settings:
        from core.config import load_settings
        from core.logging import setup_logging

        settings = load_settings()
        if self.debug:
            settings.log_level = "DEBUG"
        setup_logging(settings, console=True)
        return settings

    @property
    def registry(self) -> Any:
        """The pipelines discovered in ``PIPELINES_DIR`` (discovery runs once per process)."""
        from ops.discovery import get_registry

        return get_registry(self.settings.pipelines_dir)

    @cached_property
    def store(self) -> Any:
        from core.store import Store

        return Store(self.settings)


class CommandGroup(click.Group):
    """Lists commands in the order they were added; an unknown command prints the help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.commands[name]
            if command.hidden:
                continue
            sub = click.Context(command, info_name=name, parent=ctx)
            usage = " ".join([name, *command.collect_usage_pieces(sub)]).replace(" [OPTIONS]", "")
            options = [o.opts[-1] for o in command.params
                       if isinstance(o, click.Option) and not o.hidden and o.opts[-1] != "--help"]
            if options:
                usage += " [" + "|".join(options) + "]"
            rows.append((usage, command.get_short_help_str(limit=200)))
        with formatter.section("Commands"):
            formatter.write_dl(rows, col_max=40)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands:
            click.echo(f"Unknown command '{args[0]}'.\n", err=True)
            click.echo(ctx.get_help(), err=True)
            ctx.exit(EXIT_USAGE)
        return super().resolve_command(ctx, args)


@click.group(
    cls=CommandGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--debug", "--verbose", "debug", is_flag=True, help="Show full tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """data-processor: ETL/ELT pipelines into ClickHouse, with nothing to babysit.

    Usage: ./run.sh COMMAND [ARGS]...  (./run.sh COMMAND --help for details)
    """
    wants_help = isinstance(ctx.obj, dict) and ctx.obj.get("help")
    ctx.obj = App(debug=debug)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
    elif ctx.invoked_subcommand not in _WITHOUT_SETTINGS and not wants_help:
        _ = ctx.obj.settings  # a bad configuration stops the command here, whatever it would catch later


pass_app = click.make_pass_decorator(App)


def _unwritable(exc: OSError) -> DataProcessorError | None:
    """A directory setting that cannot be written, as one line naming it (else None)."""
    from core.config import load_settings, unwritable_directory

    try:
        return unwritable_directory(exc, load_settings())
    except DataProcessorError:
        return None


def private_files() -> None:
    """What this process (and every process it starts) creates is its user's alone: the store,
    logs, run files and the local server's data are never group/other readable (umask 077)."""
    os.umask(os.umask(0o077) | 0o077)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; framework errors become one line on stderr."""
    private_files()
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or "--verbose" in args
    try:
        result = cli.main(args=args, prog_name="./run.sh", complete_var=COMPLETE_VAR, standalone_mode=False,
                          obj={"help": "-h" in args or "--help" in args})
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        exc.show()
        return EXIT_USAGE
    except click.Abort:
        click.echo("Aborted.", err=True)
        return EXIT_FAILED
    except DataProcessorError as exc:
        if debug or logging.getLogger("dp").isEnabledFor(logging.DEBUG):
            logging.getLogger("dp").exception("Command failed")
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except OSError as exc:
        problem = _unwritable(exc)
        if problem is None:
            raise
        click.echo(f"error: {problem}", err=True)
        return EXIT_FAILED
    return result if isinstance(result, int) else EXIT_OK
