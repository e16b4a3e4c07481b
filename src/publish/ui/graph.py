"""The ``depends_on`` graph as an SVG drawn on the server (no script, no CDN), a node per pipeline.

Pipelines are laid out in columns by their depth (an upstream is left of what depends on it),
each node coloured by its freshness and saying how far its data reaches. Every text is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from publish.ui.data import PipelineRow, as_utc

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 190, 42, 70, 16, 8


def _depths(rows: Sequence[PipelineRow]) -> dict[str, int]:
    """Column of each pipeline: 0 without upstreams, else one more than its deepest upstream
    (an unknown upstream or a cycle counts as depth 0)."""
    upstreams = {row.name: [d for d in row.depends_on] for row in rows}
    depth: dict[str, int] = {}

    def of(name: str, seen: frozenset[str]) -> int:
        if name in depth:
            return depth[name]
        if name not in upstreams or name in seen:
            return -1
        value = max((of(u, seen | {name}) for u in upstreams[name]), default=-1) + 1
        depth[name] = value
        return value

    for row in rows:
        of(row.name, frozenset())
    return depth


def _reach(row: PipelineRow) -> str:
    until = getattr(row.status, "data_until", None)
    if until is not None:
        return "data until " + as_utc(until).strftime("%Y-%m-%d %H:%M")
    success = getattr(row.status, "last_success", None)
    return "no data loaded" if success is None else "last success " + as_utc(success).strftime("%Y-%m-%d %H:%M")


def dependency_svg(rows: Sequence[PipelineRow], link_prefix: str) -> Markup:
    """The graph of these pipelines (only those in a ``depends_on`` relation), or nothing; each
    node links to ``link_prefix`` + its name."""
    linked = {row.name for row in rows if row.depends_on} | {d for row in rows for d in row.depends_on}
    drawn = [row for row in rows if row.name in linked]
    if not drawn:
        return Markup("")
    depth = _depths(drawn)
    columns: dict[int, list[PipelineRow]] = {}
    for row in drawn:
        columns.setdefault(depth[row.name], []).append(row)
    place = {row.name: (PAD + d * (NODE_W + GAP_X), PAD + i * (NODE_H + GAP_Y))
             for d, column in columns.items() for i, row in enumerate(column)}
    width = PAD * 2 + (max(columns) + 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(len(c) for c in columns.values()) * (NODE_H + GAP_Y) - GAP_Y
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" id="graph" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="depends_on graph">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>']
    for row in drawn:
        x2, y2 = place[row.name]
        for upstream in row.depends_on:
            if upstream in place:
                x1, y1 = place[upstream]
                parts.append(f'<line class="edge" x1="{x1 + NODE_W}" y1="{y1 + NODE_H / 2}" x2="{x2}" '
                             f'y2="{y2 + NODE_H / 2}" marker-end="url(#arrow)"/>')
    for row in drawn:
        x, y = place[row.name]
        state, name = escape(row.freshness.state.replace("/", "")), escape(row.name)
        parts.append(f'<a href="{escape(link_prefix)}{name}"><g class="node {state}" id="node-{name}">'
                     f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="4"/>'
                     f'<text x="{x + 8}" y="{y + 17}" class="name">{name}</text>'
                     f'<text x="{x + 8}" y="{y + 34}" class="reach">{state}: {escape(_reach(row))}</text></g></a>')
    parts.append("</svg>")
    return Markup("".join(parts))
