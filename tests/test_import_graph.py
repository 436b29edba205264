"""Imports only go down: the package's import graph has no cycle.

The graph holds every ``import audit...`` / ``from audit... import`` in every module of the
package, at module level and inside functions (a lazy import is still an edge: ``core/adapter``
once imported ``core/onnx`` inside ``load_model`` while ``onnx`` imported ``adapter`` at the top),
but not the ones under ``if TYPE_CHECKING``, which never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "audit"


def _module_names() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere but under ``if TYPE_CHECKING``)."""
    modules = _module_names()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()

        class Visitor(ast.NodeVisitor):
            def visit_If(self, node: ast.If) -> None:
                if "TYPE_CHECKING" in ast.unparse(node.test):
                    for child in node.orelse:
                        self.visit(child)
                    return
                self.generic_visit(node)

            def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
                if node.level == 0 and node.module and node.module.split(".")[0] == "audit":
                    for alias in node.names:  # `from audit.core import onnx` names a module too
                        sub = f"{node.module}.{alias.name}"
                        found.add(sub if sub in modules else node.module)

            def visit_Import(self, node: ast.Import) -> None:
                found.update(a.name for a in node.names if a.name.split(".")[0] == "audit")

        Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_import_graph_has_no_cycle():
    graph = import_graph()
    assert "audit.core.onnx" in graph["audit.core.loading"]  # the graph sees lazy imports
    assert cycles(graph) == []


@pytest.mark.parametrize("order", [("audit.core.adapter", "audit.core.onnx", "audit.core.boosters"),
                                   ("audit.core.onnx", "audit.core.boosters", "audit.core.adapter"),
                                   ("audit.core.boosters", "audit.core.loading", "audit.core.adapter")])
def test_the_model_modules_import_in_any_order_in_a_fresh_interpreter(order):
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    done = subprocess.run([sys.executable, "-c", code, *order], cwd=PACKAGE.parent,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_gate_reads_only_the_fairness_methods_public_surface():
    """audit.gate imports public names of the methods it judges (fairness, performance) only, and
    reads no private attribute of a result (it used to read AttributeResult._bounds)."""
    import audit.methods.fairness as fairness
    import audit.methods.performance as performance

    public = {"audit.methods.fairness": fairness.__all__, "audit.methods.performance": performance.__all__}
    tree = ast.parse((PACKAGE / "gate.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("audit.methods"):
            assert node.module in public
            assert {a.name for a in node.names} <= set(public[node.module])
        if isinstance(node, ast.Attribute):
            assert not (node.attr.startswith("_") and not node.attr.startswith("__")), node.attr
