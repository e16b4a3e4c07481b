"""The module map holds: layers import only downwards, no import cycles, small modules and functions.

Read from the source with ``ast`` (imports inside functions count too; imports under
``TYPE_CHECKING`` are annotations only and do not). See docs/architecture/README.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
# Lower layers never import higher ones. pipelines/testing.py is the test harness: it runs
# pipelines as the CLI does, so it sits on top; runner/child.py is the entry point of the
# runner's child processes and wires the layers as main.py does.
LAYERS = {"core": 0, "pipelines": 1, "audit": 2, "record": 2, "runner": 3, "ops": 4, "publish": 5, "cli": 5}
ON_TOP = {"pipelines/testing.py", "main.py", "runner/child.py"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "pipelines" and rel.name.endswith("_pipeline.py"):
            continue  # the user's pipelines
        name = ".".join(rel.with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports inside ``if TYPE_CHECKING:`` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Framework modules ``name`` imports at run time."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        out.update(t for t in targets if t in known and t != name)
    return out


def test_layers_import_only_downwards() -> None:
    known = modules()
    upward = []
    for name, path in known.items():
        rel = str(path.relative_to(SRC))
        layer = LAYERS.get(name.split(".")[0])
        if layer is None or rel in ON_TOP:
            continue
        for target in imports(name, path, known):
            if LAYERS.get(target.split(".")[0], -1) > layer:
                upward.append(f"{name} imports {target}")
    assert upward == []


def test_there_are_no_import_cycles() -> None:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    cycles = []
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            cycles.append(" -> ".join([*stack[stack.index(name):], name]))
            return
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*stack, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert cycles == []


def test_modules_and_functions_stay_small() -> None:
    too_long = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        rel = path.relative_to(SRC)
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{rel}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{rel}:{node.lineno} {node.name}(): {length} lines")
    assert too_long == []
