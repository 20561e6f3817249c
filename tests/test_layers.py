"""The package's modules form layers: no import circle, no private name shared.

The import graph is built from the sources with :mod:`ast` (nothing is
imported): every ``import mmspec_widgets.x``, ``from .x import y``,
``from ..x import y`` and ``from . import x``, at module level or inside a
function, is an edge from the importing module to the module it names (to the
submodule when the imported name is one).  Two rules:

* the graph has no cycle: a module low in the stack (``errors``, ``edges``,
  ``kernels``, ``utils``, ``reasons`` ...) never reaches back up to one that
  uses it, not even through an import deferred into a function;
* no module imports a leading-underscore name from another module (dunder
  names aside), imports a module whose name starts with an underscore, or
  reads a leading-underscore attribute of a package module it imported: what
  several modules share is public, in the module where it belongs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mmspec_widgets

PACKAGE = "mmspec_widgets"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def package_modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (source file, is a package ``__init__``)."""
    mods = {}
    for p in sorted(root.rglob("*.py")):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        mods[".".join(parts)] = (p, is_pkg)
    return mods


def _owner(name: str, mods) -> str | None:
    """The module that defines dotted ``name`` (itself, or its longest prefix)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path):
    """Edges ``{module: {imported module: [line, ...]}}`` and the private
    uses ``[(module, line, what)]`` of the package under ``root``."""
    mods = package_modules(root)
    edges: dict[str, dict[str, list[int]]] = {m: {} for m in mods}
    private: list[tuple[str, int, str]] = []

    def add(m: str, target: str | None, line: int, name: str | None = None) -> None:
        if target is None or target == m:
            return
        edges[m].setdefault(target, []).append(line)
        if name is not None and _private(name):
            private.append((m, line, f"imports {name} from {target}"))
        if any(_private(part) for part in target.split(".")[1:]):
            private.append((m, line, f"imports the private module {target}"))

    for m, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        here = m.split(".") if is_pkg else m.split(".")[:-1]  # the package of m
        aliases: dict[str, str] = {}  # local name -> package module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] != PACKAGE:
                        continue
                    target = _owner(a.name, mods)
                    add(m, target, node.lineno)
                    if a.asname and target == a.name:
                        aliases[a.asname] = target
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    if node.level - 1 > len(here) - 1:
                        continue  # beyond the top package: not ours
                    base = here[:len(here) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != PACKAGE:
                    continue
                for a in node.names:
                    if a.name == "*":
                        add(m, _owner(source, mods), node.lineno)
                    elif f"{source}.{a.name}" in mods:  # a submodule
                        add(m, f"{source}.{a.name}", node.lineno)
                        aliases[a.asname or a.name] = f"{source}.{a.name}"
                    else:
                        add(m, _owner(source, mods), node.lineno, a.name)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and aliases[node.value.id] != m
                    and _private(node.attr)):
                private.append((m, node.lineno,
                                f"uses {aliases[node.value.id]}.{node.attr}"))
    return edges, sorted(set(private))


def find_cycles(edges) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected component with a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    comps.append(sorted(comp))
    cycles = []
    for comp in comps:  # a shortest cycle through the component's first module
        inside = set(comp)
        first = comp[0]
        prev = {first: None}
        queue = [first]
        found = None
        while queue and found is None:
            nxt = []
            for v in queue:
                for w in sorted(edges[v]):
                    if w == first:
                        found = v
                        break
                    if w in inside and w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            queue = nxt
        path = [first]
        v = found
        while v is not None and v != first:
            path.append(v)
            v = prev[v]
        cycles.append([first, *reversed(path[1:]), first])
    return cycles


def _root() -> Path:
    return Path(mmspec_widgets.__file__).resolve().parent


def test_the_import_graph_is_built_from_the_sources():
    edges, _ = import_graph(_root())
    assert f"{PACKAGE}.kernels" in edges
    # imports inside functions and relative imports of every form count
    assert f"{PACKAGE}.kernels" in edges[f"{PACKAGE}.background"]
    assert f"{PACKAGE}.twin" in edges[f"{PACKAGE}.chain.synthetic"]  # inside synthetic_si
    assert f"{PACKAGE}.widgets.plots" in edges[f"{PACKAGE}.widgets.explorer"]  # from . import


def test_cycle_finder_reports_a_circle():
    edges = {"a": {"b": [1]}, "b": {"c": [1]}, "c": {"a": [1]}, "d": {"a": [1]}}
    assert find_cycles(edges) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b": [1]}, "b": {}}) == []


def test_no_import_circle():
    edges, _ = import_graph(_root())
    cycles = find_cycles(edges)
    lines = []
    for cyc in cycles:
        steps = [f"{a} -> {b} (line {', '.join(map(str, edges[a][b]))})"
                 for a, b in zip(cyc, cyc[1:], strict=False)]
        lines.append("circle: " + "; ".join(steps))
    assert not cycles, "\n".join(lines)


def test_ground_floor_imports_nothing_above_it():
    edges, _ = import_graph(_root())
    ground = {f"{PACKAGE}.errors", f"{PACKAGE}.utils"}
    for m in (f"{PACKAGE}.kernels", f"{PACKAGE}.utils", f"{PACKAGE}.reasons",
              f"{PACKAGE}.errors"):
        assert set(edges[m]) <= ground - {m}, (m, sorted(edges[m]))
    src = (_root() / "kernels.py").read_text(encoding="utf-8")
    assert "xarray" not in {a.name.split(".")[0] for n in ast.walk(ast.parse(src))
                            if isinstance(n, ast.Import) for a in n.names}
    chain = [m for m in edges if m == f"{PACKAGE}.pipeline" or m.startswith(f"{PACKAGE}.chain")]
    assert len(chain) > 2
    for m in chain:
        assert f"{PACKAGE}.demo" not in edges[m], m


def test_no_private_name_crosses_a_module_boundary():
    _, private = import_graph(_root())
    report = [f"{m} line {line}: {what}" for m, line, what in sorted(private)]
    assert not report, "\n".join(report)
