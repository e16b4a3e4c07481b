"""``clickhouse_server``: serve the project's store as a real ClickHouse server (foreground)."""

from __future__ import annotations

import click

from cli.app import EXIT_OK, App, cli, pass_app
from cli.listen import listen_options
from core.exceptions import ConfigError

# Seconds clickhouse_server waits for the store (MAX_IDLE of a lingering holder, and its exit).
HANDOVER_WAIT = 10.0


@cli.command("clickhouse_server")
@listen_options(8123, "HTTP port (0: any free port).",
                "Address to listen on; anything but loopback requires CLICKHOUSE_PASSWORD.")
@click.option("--tcp-port", type=click.IntRange(0, 65535), default=9000, show_default=True,
              help="Native protocol port (clickhouse-client, clickhouse-driver; 0: any free port).")
@pass_app
def clickhouse_server(app: App, port: int, host: str, tcp_port: int) -> int:
    """Serve DATA_DIR/clickhouse over HTTP and the native protocol until Ctrl-C/SIGTERM (BI tools,
    concurrent pipelines)."""
    from core.local_server import BI_USER, SERVER_USER, LocalServer
    from core.local_server_config import configured_password, password_file
    from core.store_child import signal_waiting

    settings = app.settings
    if settings.url or settings.clickhouse_host:
        raise ConfigError("clickhouse_server serves the embedded store; unset CLICKHOUSE_HOST/CLICKHOUSE_URL")
    server = LocalServer(settings, host=host, port=port, tcp_port=tcp_port)
    # A process that merely keeps the store open between reads (the status page, a run between
    # batches) hands it over when it sees a waiter: wait that long, not a whole STORE_LOCK_TIMEOUT.
    record = server.start(wait=min(settings.store_lock_timeout, HANDOVER_WAIT), on_poll=lambda: signal_waiting(
        settings.data_dir / "clickhouse.lock.waiting"))
    try:
        def secret(user: str, variable: str) -> str:
            if configured_password(settings, user):
                return variable
            return f"the password in {password_file(settings, user)}"

        app.err.print(f"Serving {record.store_path} at {record.url} and native port {record.tcp_port} (pid "
                      f"{record.pid}); the framework's user {SERVER_USER} with "
                      f"{secret(SERVER_USER, 'CLICKHOUSE_PASSWORD')}, "
                      f"BI tools' read-only user {BI_USER} with {secret(BI_USER, 'CLICKHOUSE_BI_PASSWORD')}. "
                      "The user 'default' can reach it without a password but may read no table. "
                      "Framework commands of this project now use this server.")
        app.console.print(f"ready {record.url}", soft_wrap=True)
        server.wait()
    finally:
        server.stop()
        app.err.print("Stopped.")
    return EXIT_OK
