"""The users, limits and ports of the project's own server (``clickhouse_server``): its ``config.xml``
and ``users.xml``, and the passwords they hold (hashes only).

Three users, the same on every port (HTTP and native TCP read the same ``users.xml``):

- ``default``, no password: clickhouse-local runs its own queries under ``default``'s profile
  (the listener's endless query among them), so it cannot get one, nor a time limit (the
  listener's query would end with it). It may start the listeners and read ``system.numbers``,
  nothing else; a client's query as ``default`` that runs longer than
  :data:`DEFAULT_USER_MAX_SECONDS` is killed by the server process (``LocalServer``), every
  second, whatever its settings.
- :data:`SERVER_USER` (``data_processor``): the framework. Every grant, file() and the other
  table functions included: push-down (ClickHouse reading a source itself) needs them.
  Password: ``CLICKHOUSE_PASSWORD``, or one generated into ``DATA_DIR/clickhouse-server.password``.
- :data:`BI_USER` (``bi_reader``): BI tools. ``SELECT`` and ``SHOW`` on every table and nothing
  else: no table functions (no file, URL, S3 or other server, no source grants), no writes, no
  temporary tables; ``readonly = 2`` (a BI tool may set query settings, not ``readonly``) and at
  most :data:`BI_MAX_SECONDS` per query. Password: ``CLICKHOUSE_BI_PASSWORD``, or one generated
  into ``DATA_DIR/clickhouse-server.bi-password``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from core.exceptions import StoreError

if TYPE_CHECKING:
    from core.config import Settings

SERVER_USER = "data_processor"
BI_USER = "bi_reader"
DEFAULT_USER_MAX_SECONDS = 10
BI_MAX_SECONDS = 3600


def password_file(settings: Settings, user: str = SERVER_USER) -> Path:
    """Where a generated password is kept (mode 0600) when none is configured."""
    suffix = "password" if user == SERVER_USER else "bi-password"
    return settings.data_dir / f"clickhouse-server.{suffix}"


def configured_password(settings: Settings, user: str = SERVER_USER) -> str:
    """The password set in the environment for ``user`` (empty: none)."""
    secret = settings.clickhouse_password if user == SERVER_USER else settings.clickhouse_bi_password
    return secret.get_secret_value()


def server_password(settings: Settings, create: bool = False, user: str = SERVER_USER) -> str:
    """The configured password of ``user``, else the generated one (made on first serve, mode 0600)."""
    configured = configured_password(settings, user)
    if configured:
        return configured
    path = password_file(settings, user)
    if path.is_file():
        return path.read_text().strip()
    if not create:
        raise StoreError(f"The local ClickHouse server's password file {path} is missing")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    password = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def users_xml(password: str, bi_password: str) -> str:
    """The three users (see the module's docstring), their profiles and grants."""
    anywhere = "<networks><ip>::/0</ip></networks>"
    bounded = "<constraints><max_execution_time><min>1</min><max>{0}</max></max_execution_time></constraints>"
    return f"""<clickhouse>
  <users>
    <default>
      <password></password><profile>default</profile><quota>default</quota>{anywhere}
      <!-- clickhouse-local's own queries run as default without a password: it may only
           start the listeners and run its sleeping query, nothing else (no tables, no files). -->
      <grants><query>GRANT SYSTEM LISTEN ON *.*</query><query>GRANT SELECT ON system.numbers</query></grants>
    </default>
    <{SERVER_USER}>
      <password_sha256_hex>{_digest(password)}</password_sha256_hex><profile>default</profile>
      <quota>default</quota>{anywhere}
    </{SERVER_USER}>
    <{BI_USER}>
      <password_sha256_hex>{_digest(bi_password)}</password_sha256_hex><profile>bi</profile>
      <quota>default</quota>{anywhere}
      <grants><query>GRANT SELECT, SHOW ON *.*</query></grants>
    </{BI_USER}>
  </users>
  <profiles>
    <default/>
    <bi>
      <readonly>2</readonly><max_execution_time>{BI_MAX_SECONDS}</max_execution_time>
      {bounded.format(BI_MAX_SECONDS)}
    </bi>
  </profiles>
  <quotas><default/></quotas>
</clickhouse>
"""


def write_config(directory: Path, host: str, ports: tuple[int, int], password: str, bi_password: str) -> None:
    """``config.xml`` (HTTP and native TCP ports, address) and ``users.xml``, readable by this user only."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    http_port, tcp_port = ports
    config = (f"<clickhouse><http_port>{http_port}</http_port><tcp_port>{tcp_port}</tcp_port>"
              f"<listen_host>{escape(host)}</listen_host>"
              "<keep_alive_timeout>1</keep_alive_timeout><users_config>users.xml</users_config></clickhouse>\n")
    for name, text in (("users.xml", users_xml(password, bi_password)), ("config.xml", config)):
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
