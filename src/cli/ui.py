"""The ``ui`` command: serve the read-only status page and ``/metrics``."""

from __future__ import annotations

import signal
import tempfile
from types import FrameType

from cli.app import EXIT_OK, App, cli, pass_app
from cli.listen import is_loopback, listen_options
from core.config import Settings, unwritable_directory
from core.exceptions import ConfigError, UsageError

UI_THREADS = 4


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _check_data_dir(settings: Settings) -> None:
    """The embedded store's lock lives in DATA_DIR: refuse at start, in one line, as every
    command does, rather than answer each request with an error."""
    if not settings.is_embedded:
        return
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=settings.data_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise unwritable_directory(exc, settings) or ConfigError(
            f"DATA_DIR {settings.data_dir} is not writable ({exc.strerror or exc})") from None


@cli.command("ui")
@listen_options(8080, "Port to listen on (0: any free port, printed at start-up).",
                "Address to listen on; another than 127.0.0.1 requires UI_PASSWORD.")
@pass_app
def ui(app: App, port: int, host: str) -> int:
    """Serve the status page (pipelines, coverage, rows per day, runs) and /metrics, read-only."""
    from waitress import create_server

    from publish.ui.web import StatusPage, create_app

    settings = app.settings
    protected = bool(settings.ui_password.get_secret_value())
    if not is_loopback(host) and not protected:
        raise UsageError(f"--host {host} makes the status page reachable from other machines: set UI_PASSWORD "
                         "(in .env or the environment) to require HTTP basic auth, or keep the default 127.0.0.1")
    _check_data_dir(settings)
    page = StatusPage(settings, lambda: app.registry)
    server = create_server(create_app(page), host=host, port=port, threads=UI_THREADS, ident="data-processor")
    shown = f"[{server.effective_host}]" if ":" in str(server.effective_host) else server.effective_host
    app.err.print(f"Status page on http://{shown}:{server.effective_port}/ (read-only, metrics at /metrics; "
                  f"store: {settings.store_description})")
    app.err.print("HTTP basic auth required (UI_PASSWORD, any user name), also for /metrics" if protected
                  else "No password: reachable from this machine only" if is_loopback(host) else "")
    app.err.print("Ctrl-C to stop")
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        page.gate.close()
    return EXIT_OK
