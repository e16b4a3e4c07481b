"""``clickhouse_server``: serve the project's store as a real ClickHouse server (foreground)."""

from __future__ import annotations

from cli.app import EXIT_OK, App, cli, pass_app
from cli.listen import listen_options
from core.exceptions import ConfigError


# Seconds clickhouse_server waits for the store (MAX_IDLE of a lingering holder, and its exit).
HANDOVER_WAIT = 10.0


@cli.command("clickhouse_server")
@listen_options(8123, "HTTP port (0: any free port).",
                "Address to listen on; anything but loopback requires CLICKHOUSE_PASSWORD.")
@pass_app
def clickhouse_server(app: App, port: int, host: str) -> int:
    """Serve DATA_DIR/clickhouse over HTTP until Ctrl-C/SIGTERM (BI tools, concurrent pipelines)."""
    from core.local_server import SERVER_USER, LocalServer, password_file
    from core.store_child import signal_waiting

    settings = app.settings
    if settings.url or settings.clickhouse_host:
        raise ConfigError("clickhouse_server serves the embedded store; unset CLICKHOUSE_HOST/CLICKHOUSE_URL")
    server = LocalServer(settings, host=host, port=port)
    # A process that merely keeps the store open between reads (the status page, a run between
    # batches) hands it over when it sees a waiter: wait that long, not a whole STORE_LOCK_TIMEOUT.
    record = server.start(wait=min(settings.store_lock_timeout, HANDOVER_WAIT), on_poll=lambda: signal_waiting(
        settings.data_dir / "clickhouse.lock.waiting"))
    try:
        secret = ("CLICKHOUSE_PASSWORD" if settings.clickhouse_password.get_secret_value()
                  else f"the password in {password_file(settings)}")
        app.err.print(f"Serving {record.store_path} at {record.url} (pid {record.pid}); user {SERVER_USER} "
                      f"with {secret}. The user 'default' can reach it without a password but may read "
                      "nothing. Framework commands of this project now use this server.")
        app.console.print(f"ready {record.url}", soft_wrap=True)
        server.wait()
    finally:
        server.stop()
        app.err.print("Stopped.")
    return EXIT_OK
