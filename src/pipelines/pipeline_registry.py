"""Discovery: every ``*_pipeline.py`` under ``PIPELINES_DIR`` is imported and its entries registered.

A module contributes pipelines through ``get_pipeline_registry()`` or a module-level
``PIPELINE_REGISTRY`` dict ``{name: {'pipeline': ..., 'description': ..., 'schedule': ...,
'table_name': ...}}``. A module that fails to import, or an invalid entry, is recorded as broken
with its error; it never hides the other pipelines.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from core.config import PROJECT_ROOT
from core.exceptions import DataProcessorError, DiscoveryError, PipelineNotFound
from core.logging import get_logger
from core.models import PipelineEntry
from core.run_tables import FRAMEWORK_PREFIX, is_framework_table
from pipelines.pipeline_factory import Pipeline

#: A validation that a layer above this one adds to discovery (e.g. data checks, alert settings):
#: called with the pipeline's name and its valid entry, it may normalise the entry and raises a
#: ``DataProcessorError`` naming the pipeline (discovery prefixes it with the module).
EntryCheck = Callable[[str, PipelineEntry], None]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_SRC = PROJECT_ROOT / "src"
#: A module whose import (with its registry) takes longer is named in a warning: every command
#: discovers every module, so each of them waits for it.
SLOW_IMPORT_SECONDS = 2.0
_EXIT_HINT = "a pipeline module must not exit or parse the command line when imported"
log = get_logger("discovery")


@dataclass
class PipelineSpec:
    """A registered pipeline: its name, validated entry and the module that defined it."""

    name: str
    entry: PipelineEntry
    source: str

    @property
    def pipeline(self) -> Pipeline:
        return self.entry.pipeline

    @property
    def table_name(self) -> str | None:
        return self.entry.table_name or self.pipeline.loader.table


@dataclass
class Broken:
    """A module or entry that could not be registered, and why."""

    source: str
    error: str
    name: str | None = None


@dataclass
class Registry:
    pipelines: dict[str, PipelineSpec] = field(default_factory=dict)
    broken: list[Broken] = field(default_factory=list)

    def get(self, name: str) -> PipelineSpec:
        """The pipeline called ``name``; a clear error when it is broken or unknown."""
        if name in self.pipelines:
            return self.pipelines[name]
        for broken in self.broken:
            if broken.name == name:
                raise DiscoveryError(f"Pipeline '{name}' cannot run: {broken.error}")
        import difflib

        known = ", ".join(sorted(self.pipelines)) or "none"
        close = difflib.get_close_matches(name, list(self.pipelines), n=1, cutoff=0.6)
        guess = f"; did you mean '{close[0]}'?" if close else ""
        hint = f"; broken modules: {', '.join(b.source for b in self.broken)}" if self.broken else ""
        raise PipelineNotFound(f"No pipeline named '{name}'{guess} (known: {known}){hint}")


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _module_name(path: Path) -> str:
    # Inside src/ a module gets its package name (so it can import its neighbours the usual way);
    # elsewhere a private, collision-free name.
    try:
        return ".".join(path.relative_to(_SRC).with_suffix("").parts)
    except ValueError:
        return f"_dp_pipelines.{abs(hash(str(path.parent))):x}.{path.stem}"


def _import(path: Path) -> ModuleType:
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import_error(path: Path, exc: BaseException) -> str:
    """``file.py:12: NameError: name 'x' is not defined`` (the deepest line in that file)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == path:
            line = frame.lineno
    if isinstance(exc, SyntaxError) and exc.lineno:
        line = exc.lineno
    where = f"{_display(path)}:{line}" if line else _display(path)
    if isinstance(exc, SystemExit):  # sys.exit(), argparse's parse_args() on our command line
        return f"{where}: SystemExit: {exc.code} ({_EXIT_HINT})"
    return f"{where}: {type(exc).__name__}: {exc}"


def _load_entries(path: Path) -> dict[str, Any]:
    """Import one module and read its registry; names the module when that takes long."""
    started = time.monotonic()
    try:
        return _entries(_import(path))
    finally:
        took = time.monotonic() - started
        if took > SLOW_IMPORT_SECONDS:
            log.warning("importing %s took %.1f s (more than %g s): every command that discovers pipelines "
                        "waits for it; do slow work inside extract(), not at import",
                        _display(path), took, SLOW_IMPORT_SECONDS)


def _entries(module: ModuleType) -> dict[str, Any]:
    getter = getattr(module, "get_pipeline_registry", None)
    entries = getter() if callable(getter) else getattr(module, "PIPELINE_REGISTRY", None)
    if entries is None:
        raise TypeError("defines neither get_pipeline_registry() nor PIPELINE_REGISTRY")
    if not isinstance(entries, dict):
        raise TypeError(f"its pipeline registry must be a dict, got {type(entries).__name__}")
    return entries


def _unknown_key(key: str) -> str:
    """'unknown key; did you mean 'schedule'?' for a typo, else the list of valid keys."""
    import difflib

    known = list(PipelineEntry.model_fields)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    return f"unknown key (valid keys: {', '.join(known)})"


def _validate(name: str, raw: Any, source: str, entry_checks: Sequence[EntryCheck] = ()) -> PipelineEntry:
    where = f"pipeline '{name}' in {source}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise DiscoveryError(f"{where}: the name must use letters, digits, '_', '-' or '.'")
    if not isinstance(raw, dict):
        raise DiscoveryError(f"{where}: the entry must be a dict, got {type(raw).__name__}")
    if "pipeline" not in raw:
        raise DiscoveryError(f"{where}: missing 'pipeline' (the object create_etl_pipeline() returns)")
    try:
        entry = PipelineEntry(**raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'entry'}: "
            + (_unknown_key(str(e["loc"][0])) if e["type"] == "extra_forbidden" else
               e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        )
        raise DiscoveryError(f"{where}: {problems}") from None
    if not isinstance(entry.pipeline, Pipeline):
        raise DiscoveryError(f"{where}: 'pipeline' must be a Pipeline (from create_etl_pipeline() or "
                             f"create_el_pipeline()), got {type(entry.pipeline).__name__}")
    _reserved_tables(entry, where)
    _one_table(entry, where)
    _declared_extras(name, entry, where, entry_checks)
    for key in ("lookback", "refresh_current"):
        if getattr(entry, key) and not entry.pipeline.interval_aware:
            raise DiscoveryError(f"{where}: {key} needs an interval-aware pipeline (an extractor with "
                                 "interval_aware = True and the ClickHouse loader in mode 'interval'): its runs "
                                 "would not own an interval to re-load")
    _batch_size(entry, where)
    return entry


def _batch_size(entry: PipelineEntry, where: str) -> None:
    """``batch_size`` > 1 only where one run of several intervals gives each its own rows: the
    loader replaces exactly the run's range, and the extractor reads exactly that range."""
    if entry.batch_size == 1:
        return
    loader, extractor = entry.pipeline.loader, entry.pipeline.extractor
    if not loader.interval_scoped:
        how = f"writes in mode '{loader.mode}'" if loader.mode else f"({type(loader).__name__}) is not interval-scoped"
        raise DiscoveryError(f"{where}: batch_size {entry.batch_size} needs interval-scoped writes (the ClickHouse "
                             f"loader with time_column, mode 'interval'), but its loader {how}; remove batch_size")
    if not extractor.reads_range:
        reason = extractor.range_refusal or (f"its extractor ({type(extractor).__name__}) does not declare "
                                             "reads_range = True")
        raise DiscoveryError(f"{where}: batch_size {entry.batch_size} refused: {reason}; remove batch_size")


def _reserved_tables(entry: PipelineEntry, where: str) -> None:
    """A pipeline never writes the framework's own tables (its run history, coverage, state)."""
    reserved = (f"names starting with '{FRAMEWORK_PREFIX}' are the framework's own tables (run history, coverage, "
                "state); choose another")
    for label, table in (("table_name", entry.table_name), ("the loader's table", entry.pipeline.loader.table)):
        if isinstance(table, str) and is_framework_table(table):
            raise DiscoveryError(f"{where}: {label} '{table}' is reserved: {reserved}")


def _one_table(entry: PipelineEntry, where: str) -> None:
    """``table_name`` names the table the loader writes, when it writes one (``list`` shows the entry's,
    counts read the loader's): a console loader may carry any ``table_name``."""
    written = entry.pipeline.loader.table
    if entry.table_name and isinstance(written, str) and written and entry.table_name != written:
        raise DiscoveryError(f"{where}: table_name '{entry.table_name}' is not the table its loader writes "
                             f"('{written}'): name the loader's table, or leave table_name out")


def _declared_extras(name: str, entry: PipelineEntry, where: str, entry_checks: Sequence[EntryCheck]) -> None:
    """The higher layers' validations (data checks, alert settings), when the pipeline is built."""
    try:
        for check in entry_checks:
            check(name, entry)
    except DataProcessorError as exc:
        raise DiscoveryError(f"{where}: {exc}") from None


def discover(pipelines_dir: Path, entry_checks: Sequence[EntryCheck] = ()) -> Registry:
    """Import every ``*_pipeline.py`` under ``pipelines_dir`` (sorted) and register its entries.

    ``entry_checks`` are the validations of the layers above this one, run on each valid entry in
    order (the project's full list: ``ops.discovery.ENTRY_CHECKS``)."""
    registry = Registry()
    if str(_SRC) not in sys.path:
        sys.path.insert(0, str(_SRC))
    if not pipelines_dir.is_dir():
        return registry
    owners: dict[str, str] = {}
    duplicates: set[str] = set()
    for path in sorted(pipelines_dir.rglob("*_pipeline.py")):
        if any(part.startswith((".", "__")) for part in path.relative_to(pipelines_dir).parts):
            continue
        source = _display(path)
        try:
            entries = _load_entries(path)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a broken module (even one that exits) must not hide the others
            registry.broken.append(Broken(source, _import_error(path, exc)))
            continue
        for name, raw in entries.items():
            if name in owners:
                duplicates.add(name)
                registry.broken.append(Broken(
                    source, f"pipeline name '{name}' is defined in both {owners[name]} and {source}", name))
                continue
            owners[name] = source
            try:
                registry.pipelines[name] = PipelineSpec(name, _validate(name, raw, source, entry_checks), source)
            except DiscoveryError as exc:
                registry.broken.append(Broken(source, str(exc), name))
    for name in duplicates:  # neither definition runs until the clash is resolved
        registry.pipelines.pop(name, None)
    check_graph(registry)  # depends_on: unknown names and cycles are broken
    return registry


def check_graph(registry: Registry) -> None:
    """Move pipelines with a dependency cycle or an unknown (or broken) upstream to ``broken``."""
    specs = registry.pipelines
    for cycle in _cycles(registry):
        path = " -> ".join(f"{name} ({specs[name].source})" for name in [*cycle, cycle[0]])
        for name in cycle:
            if name in specs:
                registry.broken.append(Broken(specs.pop(name).source, f"dependency cycle: {path}", name))
    changed = True
    while changed:  # a pipeline whose upstream was just removed is broken too
        changed = False
        for name, spec in list(specs.items()):
            missing = [up for up in spec.entry.depends_on if up not in specs]
            if missing:
                registry.broken.append(Broken(spec.source, _unknown_message(registry, spec, missing[0]), name))
                del specs[name]
                changed = True


def _unknown_message(registry: Registry, spec: PipelineSpec, upstream: str) -> str:
    where = f"pipeline '{spec.name}' in {spec.source}"
    broken = next((b for b in registry.broken if b.name == upstream), None)
    if broken is not None:
        return f"{where} depends on '{upstream}' ({broken.source}), which is broken: {broken.error}"
    known = ", ".join(sorted(n for n in registry.pipelines if n != spec.name)) or "none"
    return f"{where}: depends_on names '{upstream}', which is not a pipeline (known: {known})"


def _cycles(registry: Registry) -> list[list[str]]:
    """Each dependency cycle once (depth-first search; a self-dependency is a cycle of one)."""
    specs = registry.pipelines
    state: dict[str, str] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(name: str) -> None:
        state[name] = "open"
        stack.append(name)
        for up in specs[name].entry.depends_on:
            if up not in specs:
                continue
            if state.get(up) == "open":
                found.append(stack[stack.index(up):])
            elif up not in state:
                visit(up)
        stack.pop()
        state[name] = "done"

    for name in sorted(specs):
        if name not in state:
            visit(name)
    return found


# The pipeline registry: the one piece of process-wide state (discovery runs once per process and
# set of entry checks: a registry discovered without the upper layers' checks is never handed to a
# caller that asked for them).
_REGISTRIES: dict[tuple[Path, tuple[EntryCheck, ...]], Registry] = {}


def get_registry(pipelines_dir: Path, refresh: bool = False, entry_checks: Sequence[EntryCheck] = ()) -> Registry:
    """The registry for ``pipelines_dir`` discovered with ``entry_checks`` (on first use of that
    directory with those checks)."""
    key = (pipelines_dir.resolve(), tuple(entry_checks))
    if refresh or key not in _REGISTRIES:
        _REGISTRIES[key] = discover(key[0], entry_checks)
    return _REGISTRIES[key]
