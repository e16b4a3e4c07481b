"""Tables spread over a cluster (issue 28): what a ``Distributed`` or replicated table is made of,
and the statements run on every shard's node to stage and publish into a ``Distributed`` target.

A ``Distributed`` target is staged per shard: a local staging table on every node, made ``AS`` the
target's local table with a plain (non-replicated) engine and its partition key, ORDER BY and
primary key, behind a ``Distributed`` staging table (on the node the framework talks to) with the
target's sharding key. Inserts go through the Distributed staging synchronously; publishing runs on
each node against its own local tables, so each shard replaces (or attaches) exactly what it staged.
The statements per node are run through ``core.shards``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.sql_literals import sql_literal

if TYPE_CHECKING:
    from core.store import Store

#: Engines whose tables cannot be copied with ``CREATE TABLE ... AS``: the copy would register a
#: second replica at the same path (Code 253 REPLICA_ALREADY_EXISTS). Their staging drops the prefix.
_REPLICATED = re.compile(r"^(Replicated|Shared)(\w*MergeTree)$")


def engine_arguments(engine_full: str) -> tuple[str, list[str], str]:
    """``Name(a, b) rest`` -> (``Name``, [``a``, ``b``], ``rest``): top-level arguments, quotes and
    nested parentheses respected; an engine without parentheses has no arguments."""
    match = re.match(r"\s*(\w+)", engine_full)
    if not match:
        return "", [], engine_full
    name, position = match.group(1), match.end()
    if engine_full[position:position + 1] != "(":
        return name, [], engine_full[position:]
    arguments, depth, quote, current, index = [], 0, "", "", position + 1
    while index < len(engine_full):
        char = engine_full[index]
        if quote:
            current += char
            if char == "\\" and index + 1 < len(engine_full):
                current += engine_full[index + 1]
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'`\"":
            quote, current = char, current + char
        elif char == "(":
            depth, current = depth + 1, current + char
        elif char == ")" and depth:
            depth, current = depth - 1, current + char
        elif char == ")":
            break
        elif char == "," and not depth:
            arguments.append(current.strip())
            current = ""
        else:
            current += char
        index += 1
    if current.strip():
        arguments.append(current.strip())
    return name, arguments, engine_full[index + 1:]


def plain_engine(engine_full: str) -> str | None:
    """The non-replicated twin of a ``Replicated*``/``Shared*`` engine clause (the replication path
    and replica name dropped, PARTITION BY/ORDER BY/PRIMARY KEY/SETTINGS kept); None for any other."""
    name, arguments, rest = engine_arguments(engine_full)
    match = _REPLICATED.match(name)
    if not match:
        return None
    if len(arguments) >= 2 and all(a[:1] == "'" for a in arguments[:2]):  # path and replica name
        arguments = arguments[2:]
    engine = match.group(2) + (f"({', '.join(arguments)})" if arguments else "")
    return f"{engine}{rest}"


def _unquote(argument: str) -> str:
    text = argument.strip()
    if text[:1] in "'`\"" and text[-1:] == text[:1]:
        return text[1:-1].replace("\\'", "'")
    return text


@dataclass(frozen=True)
class Sharding:
    """A ``Distributed`` table: its cluster, the local table on every node, its sharding key."""

    table: str
    cluster: str
    database: str
    local: str
    key: str | None

    @classmethod
    def of(cls, table: str, engine_full: str) -> Sharding:
        _, arguments, _ = engine_arguments(engine_full)
        cluster, database, local = (_unquote(a) for a in arguments[:3])
        return cls(table, cluster, database, local, arguments[3] if len(arguments) > 3 else None)

    def points_at(self, database: str, table: str) -> bool:
        return self.database in (database, "currentDatabase()") and self.local == table


def distributed_statement(staging: str, local: str, sharding: Sharding, store: Store) -> str:
    """``CREATE TABLE`` of the Distributed staging ``staging`` over the tables ``local`` of every node,
    with the structure of ``sharding``'s table and its cluster and sharding key."""
    arguments = [sql_literal(sharding.cluster), sql_literal(store.database), sql_literal(local)]
    if sharding.key:
        arguments.append(sharding.key)
    return (f"CREATE TABLE {store.table(staging)} AS {store.table(sharding.table)} "
            f"ENGINE = Distributed({', '.join(arguments)})")
