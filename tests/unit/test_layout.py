"""The shape of the tree: one-way layers, no import cycle, a small engine.

Reads every module's top-level imports (ast, nothing imported): an import cycle, a module
outside the engine reaching into it (the CLI's lazy imports excepted: they sit inside
functions), or an engine module that outgrew its concern fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2] / "hakube"


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.parse(p.read_text()).body:  # top level only: TYPE_CHECKING blocks are ifs
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for a in node.names:
                    target = f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                    if target in mods and target != m:
                        graph[m].add(target)
            elif isinstance(node, ast.Import):
                graph[m].update(a.name for a in node.names if a.name in mods and a.name != m)
    return graph


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(u: str) -> None:
        state[u] = 1
        path.append(u)
        for v in graph[u]:
            if v.startswith(u + "."):  # a package importing its own submodule
                continue
            assert state.get(v) != 1, "import cycle: " + " -> ".join(path[path.index(v):] + [v])
            if not state.get(v):
                visit(v)
        path.pop()
        state[u] = 2

    for m in graph:
        if not state.get(m):
            visit(m)


def test_nothing_outside_the_engine_imports_it() -> None:
    graph = _graph()
    outside = sorted(m for m, targets in graph.items() if not m.startswith("hakube.engine")
                     and any(t.startswith("hakube.engine") for t in targets))
    assert outside == [], f"{outside} import the engine; use hakube.facts or hakube.transport instead"


def test_engine_modules_stay_small() -> None:
    big = {str(p.relative_to(ROOT)): n for p in (ROOT / "engine").rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 300}
    assert big == {}, f"split these by concern: {big}"


def test_units_are_declared_once_by_their_components() -> None:
    """The boot-order list (SSH faults), monitoring's unit list and the engine's units all
    come back to what the components declare."""
    from hakube.components import NAMES
    from hakube.components.monitoring import SYSTEMD_UNITS
    from hakube.components.units import CLUSTER_UNITS
    from hakube.engine.services import UNITS

    assert sorted(CLUSTER_UNITS) == sorted(UNITS), "components/units.py must list every declared unit once"
    services = {u.removesuffix(".timer") for u in UNITS}
    assert set(SYSTEMD_UNITS) <= services, set(SYSTEMD_UNITS) - services
    for u in UNITS.values():
        assert set(u.reads) <= set(NAMES), f"{u.unit} reads an unknown component: {u.reads}"


def test_components_reach_the_spec_only_through_topology() -> None:
    """Topology is the components' only door to the spec: no `topo.cluster...` in them."""
    reaching = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "components").rglob("*.py")
                for i, line in enumerate(p.read_text().splitlines(), 1) if ".cluster.spec" in line
                or "topo.cluster." in line]
    assert reaching == [], f"add what they need to Topology instead: {reaching}"


def test_no_import_inside_a_function_but_the_clis() -> None:
    """Imports at the top, where a reader looks for what a module depends on; only the CLIs
    import lazily (a fast `--help`, no lab on a host-only install)."""
    lazy = []
    for p in ROOT.rglob("*.py"):
        if p.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lazy += [f"{p.relative_to(ROOT)}:{n.lineno}" for n in ast.walk(node)
                         if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert lazy == [], f"move these imports to the top of their module: {lazy}"
