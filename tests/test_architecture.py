"""The package's shape: no import cycle between its packages, whatever the import's position."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "growmerge"


def unit_of(module: str) -> str | None:
    """growmerge.merge.grid -> 'merge'; growmerge.names -> 'names'; other packages -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "growmerge" and len(parts) > 1 else None


def import_graph() -> dict[str, set[str]]:
    """{unit: units it imports}, counting imports inside functions too (lazy imports are still edges)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        src = unit_of(module) if module != "growmerge" else None
        if src is None:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                dst = unit_of(name)
                if dst and dst != src:
                    graph.setdefault(src, set()).add(dst)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return None


def test_no_import_cycle_between_packages():
    graph = import_graph()
    graph.pop("cli", None)  # the entry point imports every package's commands by design
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_the_ledger_sits_beneath_study_and_report():
    graph = import_graph()
    assert "ledger" in graph["study"] and "ledger" in graph["report"]
    assert not {"study", "report"} & graph.get("ledger", set())
    assert "study" not in graph["report"]
