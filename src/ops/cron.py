"""The project's block in the user's crontab: what the registry wants, what is installed, syncing.
(Reading and writing the crontab and the block's text: :mod:`ops.crontab`.)

Everything the framework writes lives between two marker lines naming the project directory::

    # BEGIN data-processor /srv/data-processor
    ...
    # END data-processor /srv/data-processor

Lines outside the block (the user's own entries, other projects' blocks) are never changed. The
real ``crontab`` command reads and writes the table; a write happens only when the block's text
changes, under a per-user lock so two projects syncing at once cannot lose each other's update.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.config import PROJECT_ROOT, Settings
from core.exceptions import CronError, DataProcessorError, ScheduleError
from core.logging import get_logger
from ops.crontab import (
    HEALTH,
    HOUSEKEEPING,
    MAINTENANCE,
    MAINTENANCE_SPEC,
    SCOPE_ALL,
    SCOPE_CHOSEN,
    Entry,
    block_scope,
    crontab_command,
    crontab_lock,
    parse_entries,
    read_crontab,
    render_block,
    replace_block,
    split_block,
    write_crontab,
)
from pipelines.pipeline_registry import PipelineSpec, Registry
from runner.schedule import CronPlan, cron_zone, translate

LOCK_TIMEOUT = 30.0


# ---- what the registry wants ----------------------------------------------------------------

def _escape(command: str) -> str:
    # In a crontab line an unescaped % ends the command (the rest becomes its stdin).
    return command.replace("%", r"\%")


def command_line(settings: Settings, args: list[str], root: Path = PROJECT_ROOT) -> str:
    """``cd <project> && [ENV_FILE=...] <project>/run.sh ARGS >> <LOG_DIR>/cron.log 2>&1``.

    ``run.sh`` uses the project's ``.venv`` and ``.env`` by itself, so cron's bare environment
    (HOME and PATH=/usr/bin:/bin) is enough. The entry names its settings file: ``ENV_FILE`` when
    this process was given one, else the project's ``.env`` when it exists, so a settings file
    deleted or moved later fails the run instead of switching it to a fresh embedded store.
    """
    for path in (root, settings.log_dir):
        if "\n" in str(path):
            raise CronError(f"cannot write a cron entry for a path containing a newline: {path!r}")
    env_file = os.environ.get("ENV_FILE") or (str(root / ".env") if (root / ".env").is_file() else None)
    prefix = f"ENV_FILE={shlex.quote(str(Path(env_file).resolve()))} " if env_file else ""
    log = settings.log_dir.resolve() / "cron.log"
    command = (f"cd {shlex.quote(str(root))} && {prefix}{shlex.quote(str(root / 'run.sh'))} "
               f"{' '.join(shlex.quote(a) for a in args)} >> {shlex.quote(str(log))} 2>&1")
    return _escape(command)


def plan_for(spec: PipelineSpec) -> CronPlan:
    assert spec.entry.schedule
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(spec.entry.timezone) if spec.entry.timezone else None
    return translate(spec.entry.schedule, zone, cron_zone())


def pipeline_entry(spec: PipelineSpec, settings: Settings, root: Path = PROJECT_ROOT) -> Entry:
    """The entry for one scheduled pipeline."""
    if not spec.entry.schedule:
        raise CronError(f"pipeline '{spec.name}' has no schedule; set 'schedule' in its entry in {spec.source}")
    try:
        plan = plan_for(spec)
    except ScheduleError as exc:
        raise CronError(f"pipeline '{spec.name}': {exc}") from None
    args = ["cron_run", spec.name, "--trigger", "cron"] + (["--if-due"] if plan.guarded else [])
    command = command_line(settings, args, root)
    zone = f" {spec.entry.timezone}" if spec.entry.timezone else ""
    comment = f"# pipeline {spec.name}: {spec.entry.schedule}{zone}" + (f" ({plan.note})" if plan.note else "")
    return Entry(spec.name, comment, [f"{spec_} {command}" for spec_ in plan.specs])


def maintenance_entry(settings: Settings, root: Path = PROJECT_ROOT) -> Entry:
    command = command_line(settings, ["clean", "--quiet"], root)
    return Entry(MAINTENANCE, "# maintenance clean: stale pid files, leftover staging tables, old logs",
                 [f"{MAINTENANCE_SPEC} {command}"])


def housekeeping(settings: Settings, root: Path = PROJECT_ROOT) -> dict[str, Entry]:
    """The clean entry, and the health check that alerts on stale data when CHECK_CRON_SCHEDULE is set."""
    entries = {MAINTENANCE: maintenance_entry(settings, root)}
    if settings.check_cron_schedule:
        command = command_line(settings, ["check", "--alert", "--quiet"], root)
        entries[HEALTH] = Entry(HEALTH, f"# maintenance {HEALTH}: health and freshness, alerts on stale data",
                                [f"{settings.check_cron_schedule} {command}"])
    return entries


def scheduled(registry: Registry) -> list[PipelineSpec]:
    """Pipelines cron should run: a schedule and ``enabled`` (the default)."""
    return [s for s in registry.pipelines.values() if s.entry.schedule and s.entry.enabled]


@dataclass
class Wanted:
    entries: dict[str, Entry]
    errors: dict[str, str]  # pipeline -> why it has no entry


def wanted_entries(registry: Registry, settings: Settings, root: Path = PROJECT_ROOT,
                   only: set[str] | None = None) -> Wanted:
    """The entries the block should hold: every scheduled pipeline, or those in ``only`` (the
    pipelines a block of chosen scope holds)."""
    entries: dict[str, Entry] = {}
    errors: dict[str, str] = {}
    for spec in scheduled(registry):
        if only is not None and spec.name not in only:
            continue
        try:
            entries[spec.name] = pipeline_entry(spec, settings, root)
        except CronError as exc:
            errors[spec.name] = str(exc)
    if entries:
        entries.update(housekeeping(settings, root))
    return Wanted(entries, errors)


# ---- operations -----------------------------------------------------------------------------

@dataclass
class SyncResult:
    changed: bool
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)      # unknown names kept because modules are broken
    errors: dict[str, str] = field(default_factory=dict)
    entries: dict[str, Entry] = field(default_factory=dict)
    scope: str = SCOPE_ALL  # what the written block records (see ops.crontab)


def _apply(update: Callable[[dict[str, Entry], str | None], SyncResult], root: Path = PROJECT_ROOT,
           lock_timeout: float = LOCK_TIMEOUT) -> SyncResult:
    """Read the crontab, let ``update(installed entries, installed scope or None without a block)
    -> SyncResult`` decide, write if changed."""
    lock = crontab_lock()
    if not lock.acquire(lock_timeout, note=f"crontab update by {root}"):
        raise CronError(f"another process has been updating the crontab for {lock_timeout:.0f} s "
                        f"({lock.holder()}); try again")
    try:
        text = read_crontab()
        _, inner, _ = split_block(text, root)
        installed = parse_entries(inner or [])
        result = update(dict(installed), None if inner is None else block_scope(inner))
        new_text = replace_block(text, render_block(result.entries, root, result.scope), root)
        result.changed = new_text != text
        if result.changed:
            write_crontab(new_text)
        return result
    finally:
        lock.release()


def _diff(installed: dict[str, Entry], wanted: dict[str, Entry], result: SyncResult) -> None:
    for name, entry in wanted.items():
        if name == MAINTENANCE:
            continue
        if name not in installed:
            result.added.append(name)
        elif installed[name].text() != entry.text():
            result.updated.append(name)


def sync_all(registry: Registry, settings: Settings, root: Path = PROJECT_ROOT,
             lock_timeout: float = LOCK_TIMEOUT, keep_scope: bool = False) -> SyncResult:
    """Make the block hold exactly the registry's scheduled pipelines (``setup_cron --all``).

    With ``keep_scope`` (a re-sync) a block of chosen scope keeps its choice: its pipelines are
    updated, or removed when no longer scheduled, and no other pipeline is added.
    While some modules are broken their pipelines are unknown, so installed entries of unknown
    pipelines are kept (a syntax error must not unschedule a pipeline silently).
    """

    def update(installed: dict[str, Entry], scope: str | None) -> SyncResult:
        scope = scope if keep_scope and scope else SCOPE_ALL
        wanted = wanted_entries(registry, settings, root, set(installed) if scope == SCOPE_CHOSEN else None)
        result = SyncResult(False, errors=wanted.errors, scope=scope)
        entries = dict(wanted.entries)
        _diff(installed, entries, result)
        for name, entry in installed.items():
            if name in entries or name == MAINTENANCE:
                continue
            if registry.broken and name not in registry.pipelines:
                entries[name] = entry
                result.kept.append(name)
            elif name in wanted.errors:
                entries[name] = entry  # keep the old entry rather than drop it over a bad schedule
                result.kept.append(name)
            else:
                result.removed.append(name)
        if any(name not in HOUSEKEEPING for name in entries) and MAINTENANCE not in entries:
            entries[MAINTENANCE] = maintenance_entry(settings, root)
        result.entries = entries
        return result

    return _apply(update, root, lock_timeout)


RESYNC_LOCK_TIMEOUT = 5.0  # a cron-fired run waits this long for another process's crontab update


def resync_if_drifted(registry: Registry, settings: Settings, root: Path = PROJECT_ROOT) -> SyncResult | None:
    """Bring an installed block in line with the registry; None when there is nothing to do.

    Every cron-fired run calls this after its work, so a pipeline added, changed or removed by a
    deploy or a ``git pull`` is (un)scheduled at the next fire of any scheduled pipeline, without a
    manual ``setup_cron``. Without a block (never installed, or removed with ``remove_cron --all``)
    nothing is installed: that stays the user's decision.
    """
    if crontab_command() is None:
        return None
    state = status(registry, settings, root)
    if not state.block_installed or all(st == "ok" for _, st, _, _ in state.rows):
        return None
    return sync_all(registry, settings, root, RESYNC_LOCK_TIMEOUT, keep_scope=True)


def resync_after_fire(registry: Registry, settings: Settings) -> None:
    """What a cron-fired run does after its runs: :func:`resync_if_drifted`, logged; a problem
    there is logged, never the run's failure."""
    log = get_logger("cron")
    try:
        result = resync_if_drifted(registry, settings)
    except DataProcessorError as exc:
        log.warning("Could not re-sync the cron block with the pipelines: %s", exc)
        return
    if result is not None and result.changed:
        changes = [f"{what} {', '.join(names)}" for what, names in
                   (("added", result.added), ("updated", result.updated), ("removed", result.removed)) if names]
        log.info("Cron block re-synced with the pipelines: %s", "; ".join(changes) or "housekeeping entry")


def install_one(spec: PipelineSpec, settings: Settings, root: Path = PROJECT_ROOT) -> SyncResult:
    """Install or update one pipeline's entry; the block's other entries stay as they are."""
    if not spec.entry.enabled:
        raise CronError(f"pipeline '{spec.name}' is disabled ('enabled': False in {spec.source}); "
                        f"not installing it (./run.sh remove_cron {spec.name} removes an old entry)")
    entry = pipeline_entry(spec, settings, root)

    def update(installed: dict[str, Entry], scope: str | None) -> SyncResult:
        result = SyncResult(False, scope=scope or SCOPE_CHOSEN)  # a new block holds what was chosen
        _diff(installed, {spec.name: entry}, result)
        installed[spec.name] = entry
        installed.update(housekeeping(settings, root))
        result.entries = installed
        return result

    return _apply(update, root)


def remove(name: str | None, root: Path = PROJECT_ROOT) -> SyncResult:
    """Remove one pipeline's entry, or (``name=None``) the whole block. Removing one is a choice:
    the block's scope becomes chosen, so a re-sync does not add it back."""

    def update(installed: dict[str, Entry], scope: str | None) -> SyncResult:
        result = SyncResult(False, scope=SCOPE_CHOSEN if name in installed else scope or SCOPE_ALL)
        if name is None:
            result.removed = [n for n in installed if n not in HOUSEKEEPING]
            result.entries = {}
        else:
            if name in installed:
                result.removed.append(name)
            installed.pop(name, None)
            result.entries = installed
        return result

    return _apply(update, root)


@dataclass
class Status:
    """Installed versus wanted, per pipeline: ok, missing, changed, extra."""

    block_installed: bool
    rows: list[tuple[str, str, list[str], list[str]]]  # (name, state, wanted lines, installed lines)
    errors: dict[str, str]
    scope: str = SCOPE_ALL

    @property
    def in_sync(self) -> bool:
        return all(state == "ok" for _, state, _, _ in self.rows) and not self.errors

    @property
    def how_to_sync(self) -> str:
        """The command that brings the block in line, within the user's choice."""
        if self.scope == SCOPE_CHOSEN:
            return ("run ./run.sh setup_cron NAME for a changed pipeline, ./run.sh remove_cron NAME for an extra "
                    "one (the block holds chosen pipelines; setup_cron --all would schedule every one)")
        return "run ./run.sh setup_cron --all"


def status(registry: Registry, settings: Settings, root: Path = PROJECT_ROOT) -> Status:
    """Installed against wanted; a block of chosen scope wants only the pipelines it holds."""
    _, inner, _ = split_block(read_crontab(), root)
    installed = parse_entries(inner or [])
    chosen = inner is not None and block_scope(inner) == SCOPE_CHOSEN
    wanted = wanted_entries(registry, settings, root, set(installed) if chosen else None)
    rows = []
    for name in sorted(set(wanted.entries) | set(installed), key=lambda n: (n in HOUSEKEEPING, n)):
        want, have = wanted.entries.get(name), installed.get(name)
        if want and have:  # noqa: SIM108 (a nested conditional expression reads worse)
            state = "ok" if want.text() == have.text() else "changed"
        else:
            state = "missing" if want else "extra"
        rows.append((name, state, want.lines if want else [], have.lines if have else []))
    return Status(inner is not None, rows, wanted.errors, SCOPE_CHOSEN if chosen else SCOPE_ALL)
