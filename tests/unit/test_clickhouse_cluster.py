"""What a Distributed or replicated table is made of, read from its engine clause (core.clickhouse_cluster)."""

from __future__ import annotations

import pytest

from core.clickhouse_cluster import Sharding, engine_arguments, plain_engine


@pytest.mark.parametrize(("engine", "plain"), [
    ("ReplicatedReplacingMergeTree('/clickhouse/x/{shard}/r', '{replica}', v) PARTITION BY toDate(ts) "
     "PRIMARY KEY id ORDER BY (id, ts) SETTINGS index_granularity = 4096",
     "ReplacingMergeTree(v) PARTITION BY toDate(ts) PRIMARY KEY id ORDER BY (id, ts) "
     "SETTINGS index_granularity = 4096"),
    ("ReplicatedMergeTree('/t/{shard}', '{replica}') ORDER BY id", "MergeTree ORDER BY id"),
    ("SharedMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}') ORDER BY id", "MergeTree ORDER BY id"),
    ("ReplicatedCollapsingMergeTree('/a,b)', '{replica}', sign) ORDER BY id", "CollapsingMergeTree(sign) ORDER BY id"),
    ("ReplicatedMergeTree ORDER BY id", "MergeTree ORDER BY id"),  # default path and replica name
    ("MergeTree PARTITION BY toDate(ts) ORDER BY id", None),
    ("ReplacingMergeTree(v) ORDER BY id", None),
    ("Distributed('c', 'db', 't', id)", None),
])
def test_a_replicated_engine_has_a_plain_twin_with_the_same_keys(engine: str, plain: str | None) -> None:
    assert plain_engine(engine) == plain


def test_a_distributed_engine_names_its_cluster_local_table_and_sharding_key() -> None:
    sharding = Sharding.of("ev", "Distributed('dp_cluster', 'db', 'ev_local', cityHash64(id, 'a,(b'))")
    assert sharding == Sharding("ev", "dp_cluster", "db", "ev_local", "cityHash64(id, 'a,(b')")
    assert sharding.points_at("db", "ev_local") and not sharding.points_at("other", "ev_local")
    assert Sharding.of("one", "Distributed(c, currentDatabase(), 'l')").key is None
    assert engine_arguments("Log") == ("Log", [], "")
