"""Run the local 2-shard ClickHouse cluster the cluster tests use, until Ctrl-C.

``.venv/bin/python scripts/local_cluster.py [DIRECTORY]``: a private ZooKeeper (Debian's
``zookeeper`` package, run in the foreground) and two ClickHouse nodes from the chdb wheel on
127.0.0.1, with the cluster ``dp_cluster`` (2 shards, one replica each). Prints, for each node,
the variables that point the framework at it. DIRECTORY (default: a new temporary directory)
holds ZooKeeper's data, each node's store and logs. See docs/deployment.md, "Clusters and Cloud".
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from cluster import missing_tool, start_cluster  # noqa: E402


def main(argv: list[str]) -> int:
    missing = missing_tool()
    if missing:
        sys.stderr.write(f"error: {missing}\n")
        return 1
    directory = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="dp-local-cluster-"))
    cluster = start_cluster(directory.resolve())
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        sys.stdout.write(f"ZooKeeper on 127.0.0.1:{cluster.zookeeper.port} "
                         f"(ready after {cluster.zookeeper.seconds_to_start:.1f} s); cluster "
                         f"'{cluster.name}' ready after {cluster.seconds_to_start:.1f} s in {directory}\n")
        for index in range(len(cluster.nodes)):
            env = " ".join(f"{k}={v}" for k, v in cluster.client_env("data_warehouse", index).items())
            sys.stdout.write(f"node{index + 1} (shard {index + 1}, native port "
                             f"{cluster.tcp_ports[index]}): {env}\n")
        sys.stdout.write("Ctrl-C stops the cluster\n")
        sys.stdout.flush()
        stop.wait()
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
