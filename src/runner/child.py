"""Entry point of the runner's child processes: ``python -m runner.child`` (request on stdin).

The request and how children are started: :mod:`runner.child_protocol`. Like ``src/main.py``
this module sits on top of the layers: it wires settings, discovery with every layer's checks
(:mod:`ops.discovery`), alerts and the spool replay (:mod:`ops`) and hands the request to the
runner (:mod:`runner.fire`, :mod:`runner.backfill.worker`,
:mod:`runner.cascade`). A bad request is one ``error:``
line on stderr and exit 2; a framework error is one line and its exit code, as in the CLI.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from core.exceptions import DataProcessorError
from runner.child_protocol import CHILD_MODULE, ChildRequest, parse_request

if TYPE_CHECKING:
    from core.config import Settings
    from core.models import RunRecord
    from pipelines.pipeline_registry import Registry


def _writer(stream: TextIO) -> Callable[[str], None]:
    def write(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()
    return write


def _report(settings: Settings) -> Callable[[RunRecord], int]:
    from runner.cascade import result_lines

    def report(result: RunRecord) -> int:
        stream = sys.stdout if result.status == "success" else sys.stderr
        for line in result_lines(settings, result):
            _writer(stream)(line)
        return int(result.exit_code)
    return report


def serve(request: ChildRequest, settings: Settings, registry: Registry) -> int:
    """Do what ``request`` asks on this process's own store; the exit code."""
    from core.store import Store
    from ops.alerts.dispatch import notify_run
    from ops.cron import resync_after_fire
    from ops.spooled_runs import replay_spooled_runs
    from runner.backfill.worker import WORKER_STORE_LINGER, serve_worker
    from runner.cascade import Outlet, serve_cascade
    from runner.fire import run_intervals, run_scheduled_fire

    if request.kind == "worker":
        return serve_worker(settings, registry, Store(settings, linger=WORKER_STORE_LINGER))
    if request.kind == "cascade":
        assert request.cascade is not None  # (parse_request requires it)
        return serve_cascade(request.cascade, settings, registry, Store(settings), notify_run)
    store = Store(settings)
    try:
        replay_spooled_runs(store, settings, registry)
        out = Outlet(say=_writer(sys.stdout), warn=_writer(sys.stderr), report=_report(settings), on_finish=notify_run)
        if request.kind == "fire":
            assert request.fired_at is not None  # (parse_request requires it)
            resync = (lambda: resync_after_fire(registry, settings)) if request.trigger == "cron" else None
            return run_scheduled_fire(registry.get(request.pipeline), settings, store, registry, request.fired_at,
                                      request.trigger, out, downstream=request.downstream, after_fire=resync)
        work = [(w.pipeline, interval) for w in request.work for interval in w.intervals]
        return run_intervals(settings, store, registry, work, request.trigger, out, downstream=request.downstream)
    finally:
        store.close()


def main() -> int:
    """Read the request from stdin's first line and serve it."""
    # What `ps`, `kill` and the run's record show: the command line as the OS has it (after python).
    sys.argv = ["-m", CHILD_MODULE, *sys.argv[1:]]
    try:
        request = parse_request(sys.stdin.readline())
        from core.config import load_settings
        from core.logging import setup_logging
        from ops.discovery import get_registry

        settings = load_settings()
        setup_logging(settings, console=True)
        return serve(request, settings, get_registry(settings.pipelines_dir))
    except DataProcessorError as exc:
        _writer(sys.stderr)(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _writer(sys.stderr)("Interrupted.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
