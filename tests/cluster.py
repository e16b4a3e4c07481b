"""A local ClickHouse cluster for tests and for users: a private ZooKeeper and two ClickHouse
nodes from the chdb wheel (``clickhouse_server``), all on 127.0.0.1, with a 2-shard cluster.

Each node is a ``clickhouse_server`` process (tests/server_process.py) whose configuration
directory gets a ``config.d/cluster.xml`` before it starts (clickhouse-local merges ``config.d``
like clickhouse-server does): ``<remote_servers>`` (:data:`CLUSTER`, shard *i* = node *i*, one
replica each, reached over the native protocol as the framework's user), ``<macros>``
(``{shard}``, ``{replica}``, ``{cluster}``), ``<zookeeper>`` and ``keeper_map_path_prefix``.

These nodes are clickhouse-local, not clickhouse-server. Measured: Distributed tables, inserts
through them, ``ReplicatedMergeTree`` creation and KeeperMap (strict mode) work; a
``ReplicatedMergeTree`` is read-only (no replication thread: Code 242 on INSERT), ``ON CLUSTER``
is refused (Code 392 "Replicated DDL queries are disabled"), a ``Replicated`` database needs an
interserver port they do not have (Code 139), and ``system.zookeeper`` does not exist.

ZooKeeper is Debian's (``/usr/share/java/zookeeper.jar`` run by ``java``), in the foreground with a
configuration in the cluster's directory, never the system service. ``scripts/local_cluster.py``
runs the same cluster for a user until Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from server_process import ServerProcess, start_server, wait_ready

CLUSTER = "dp_cluster"
REPLICAS = "dp_replicas"
ZOOKEEPER_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
READY_TIMEOUT = 60.0


def missing_tool() -> str | None:
    """What is missing to run the cluster (None: nothing)."""
    if not _which("java"):
        return "java is not installed (apt-get install zookeeper brings it)"
    if not ZOOKEEPER_JAR.is_file():
        return f"ZooKeeper is not installed ({ZOOKEEPER_JAR} missing: apt-get install zookeeper)"
    return None


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


def free_port(exclude: list[int]) -> int:
    from core.local_server import free_port as free

    return free("127.0.0.1", exclude=exclude)


@dataclass
class ZooKeeper:
    """A private ZooKeeper on ``127.0.0.1:port``."""

    process: subprocess.Popen[str]
    port: int
    directory: Path
    seconds_to_start: float = 0.0

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"ruok")
                return sock.recv(4) == b"imok"
        except OSError:
            return False

    def stop(self, timeout: float = 30) -> None:
        _terminate(self.process, timeout)


def start_zookeeper(directory: Path, port: int = 0) -> ZooKeeper:
    """Start ZooKeeper in the foreground on a free loopback port; return once it answers ``ruok``."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port([])
    config = directory / "zoo.cfg"
    config.write_text(f"tickTime=500\ndataDir={directory / 'data'}\nclientPort={port}\n"
                      "clientPortAddress=127.0.0.1\nadmin.enableServer=false\nmaxClientCnxns=0\n"
                      "4lw.commands.whitelist=ruok\n")
    started = time.monotonic()
    log = open(directory / "zookeeper.log", "w")  # noqa: SIM115  (owned by the process)
    process = subprocess.Popen(
        ["java", "-Xmx256m", f"-Dzookeeper.log.dir={directory}", "-cp", ZOOKEEPER_CLASSPATH,
         "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(config)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, cwd=directory)
    zookeeper = ZooKeeper(process, port, directory)
    while not zookeeper.answers():
        if process.poll() is not None or time.monotonic() - started > READY_TIMEOUT:
            zookeeper.stop()
            raise RuntimeError(f"ZooKeeper did not start: {(directory / 'zookeeper.log').read_text()[-2000:]}")
        time.sleep(0.05)
    zookeeper.seconds_to_start = time.monotonic() - started
    return zookeeper


def node_config(shard: int, tcp_ports: list[int], password: str, zookeeper_port: int, keeper_map: bool = True) -> str:
    """``config.d/cluster.xml`` of the node serving ``shard`` (1-based); ``keeper_map`` False: without
    ``keeper_map_path_prefix`` (KeeperMap tables refused: a cluster the framework's locks refuse)."""
    from xml.sax.saxutils import escape

    shards = "".join(
        f"<shard><replica><host>127.0.0.1</host><port>{port}</port><user>data_processor</user>"
        f"<password>{escape(password)}</password></replica></shard>" for port in tcp_ports)
    # REPLICAS: one shard whose two replicas are the two nodes (what a Distributed target is refused on).
    replicas = "".join(f"<replica><host>127.0.0.1</host><port>{port}</port><user>data_processor</user>"
                       f"<password>{escape(password)}</password></replica>" for port in tcp_ports)
    return (f"<clickhouse>\n  <remote_servers><{CLUSTER}>{shards}</{CLUSTER}>"
            f"<{REPLICAS}><shard>{replicas}</shard></{REPLICAS}></remote_servers>\n"
            f"  <macros><shard>{shard}</shard><replica>node{shard}</replica><cluster>{CLUSTER}</cluster></macros>\n"
            f"  <zookeeper><node><host>127.0.0.1</host><port>{zookeeper_port}</port></node></zookeeper>\n"
            + ("  <keeper_map_path_prefix>/keeper_map</keeper_map_path_prefix>\n" if keeper_map else "")
            + "</clickhouse>\n")


@dataclass
class LocalCluster:
    """ZooKeeper and the two nodes; node *i* serves shard *i + 1*."""

    zookeeper: ZooKeeper
    nodes: list[ServerProcess]
    tcp_ports: list[int]
    password: str
    name: str = CLUSTER
    seconds_to_start: float = 0.0
    databases: list[str] = field(default_factory=list)

    def client_env(self, database: str, node: int = 0) -> dict[str, str]:
        """Variables pointing the framework at ``node`` of this cluster (``CLICKHOUSE_CLUSTER`` set)."""
        return {**self.nodes[node].client_env(database), "CLICKHOUSE_CLUSTER": self.name}

    def client(self, node: int, database: str = "default"):
        return self.nodes[node].client(database)

    def rows(self, node: int, sql: str) -> list[tuple]:
        """The rows of ``sql`` on ``node``, as tuples."""
        client = self.client(node)
        try:
            return [tuple(row) for row in client.query(sql).result_rows]
        finally:
            client.close()

    def on_every_node(self, sql: str) -> list[object]:
        """Run ``sql`` on each node (the nodes cannot run ``ON CLUSTER``); their results in node order."""
        results = []
        for index in range(len(self.nodes)):
            client = self.client(index)
            try:
                results.append(client.command(sql))
            finally:
                client.close()
        return results

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.zookeeper.stop()


def start_cluster(directory: Path, nodes: int = 2, keeper_map: bool = True) -> LocalCluster:
    """ZooKeeper, then the nodes (one shard each) started side by side; return once every node answers.
    ``keeper_map`` False: the nodes have no ``keeper_map_path_prefix``."""
    started = time.monotonic()
    zookeeper = start_zookeeper(directory / "zookeeper")
    password = secrets.token_urlsafe(18)
    http_ports: list[int] = []
    tcp_ports: list[int] = []
    for _ in range(nodes):
        http_ports.append(free_port(http_ports + tcp_ports + [zookeeper.port]))
        tcp_ports.append(free_port(http_ports + tcp_ports + [zookeeper.port]))
    servers: list[ServerProcess] = []
    try:
        for index in range(nodes):
            data_dir = directory / f"node{index + 1}" / "data"
            conf = data_dir / "clickhouse-server" / "config.d"
            conf.mkdir(parents=True, exist_ok=True)
            fd = os.open(conf / "cluster.xml", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(node_config(index + 1, tcp_ports, password, zookeeper.port, keeper_map))
            servers.append(start_server(data_dir, port=http_ports[index], tcp_port=tcp_ports[index],
                                        extra_env={"CLICKHOUSE_PASSWORD": password}, wait=False))
        for node in servers:
            wait_ready(node)
    except BaseException:
        for node in servers:
            node.stop()
        zookeeper.stop()
        raise
    return LocalCluster(zookeeper, servers, tcp_ports, password, seconds_to_start=time.monotonic() - started)


def _terminate(process: subprocess.Popen[str], timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
