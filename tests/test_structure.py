"""The package's import structure, read from the source with ``ast`` (no module is imported): no import
cycles, and the conversion path (every module of ``convert/`` outside ``convert/factory/`` but the
allowed entry points, and the stage scripts at the project root) never imports the archive factory,
directly or through another module. Every import counts: module level and inside functions, absolute and relative.
(``importlib.import_module`` with a computed name is not seen; only ``convert/__main__.py`` and
``convert/families/__init__.py`` do that.)"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "convert"
FACTORY = "convert.factory"
# The modules outside the factory that may import it: the entry points that build archives.
FACTORY_CLIENTS = {"convert.__main__", "convert.bench"}
# The converter's reference graphs must stay an independent statement of slim: none of these, even indirectly.
REFERENCE = "convert.reference"
REFERENCE_FORBIDDEN = ("convert.families", "convert.keras_model", "convert.mapping", FACTORY)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def find_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package, and the scripts at the project root (``verify.py``, ...)."""
    return {module_name(p): p for p in sorted([*(root / PACKAGE).rglob("*.py"), *root.glob("*.py")])}


def imported(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` (module ``name``) imports: ``import a.b``, ``from a import b`` (``a.b``
    when that is a module, else ``a``), relative forms resolved against the module's package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import convert.x.y` where only convert.x is ours
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {name: imported(path, name, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan), as a path."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_path(graph, set(c)) for c in components]


def _cycle_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    start = min(component)
    path, seen = [start], {start}
    while True:
        nxt = min(w for w in graph[path[-1]] if w in component)
        if nxt in seen:
            return path[path.index(nxt):] + [nxt]
        path.append(nxt)
        seen.add(nxt)


def in_factory(name: str) -> bool:
    return name == FACTORY or name.startswith(FACTORY + ".")


def import_chain(graph: dict[str, set[str]], start: str, hit) -> list[str] | None:
    """The shortest import chain from ``start`` to a module ``hit`` accepts (breadth first), or None."""
    parent, queue = {start: None}, [start]
    while queue:
        v = queue.pop(0)
        if hit(v):
            chain = [v]
            while parent[chain[-1]] is not None:
                chain.append(parent[chain[-1]])
            return chain[::-1]
        for w in sorted(graph[v]):
            if w not in parent:
                parent[w] = v
                queue.append(w)
    return None


def factory_leaks(graph: dict[str, set[str]], clients=FACTORY_CLIENTS) -> dict[str, list[str]]:
    """Each conversion-path module (outside the factory, not a client) that reaches the factory, with
    one import chain from it into the factory."""
    chains = {start: import_chain(graph, start, in_factory) for start in sorted(graph)
              if not in_factory(start) and start not in clients}
    return {start: chain for start, chain in chains.items() if chain}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(find_modules())


def test_the_graph_sees_imports_of_every_form(graph):
    """The parser resolves the forms the package uses (sanity check on known edges)."""
    assert "convert.families" in graph["convert.manifest"]  # from .families import FAMILIES
    assert "convert.families.base" in graph["convert.archive"]  # from .families.base import ...
    assert "convert.factory.fixtures" in graph["convert.bench"]  # from .factory import fixtures, in a function
    assert "convert.pipeline" in graph["convert.factory.demo"]  # from ..pipeline import ...
    assert "convert.factory.graphs.v1" in graph["convert.factory.graphs"]  # from . import v1, v2, v3
    assert "convert.download" in graph["verify"]  # a root script: from convert import download (in a function)
    assert FACTORY_CLIENTS <= set(graph), "every allowed factory client exists"


def test_no_import_cycles(graph):
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_conversion_path_never_imports_the_factory(graph):
    leaks = factory_leaks(graph)
    assert not leaks, ("modules of the conversion path import convert.factory (allowed only in "
                       f"{sorted(FACTORY_CLIENTS)}):\n" + "\n".join(" -> ".join(c) for c in leaks.values()))


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def reference_leaks(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Each module of ``convert.reference`` that reaches a forbidden module (Keras-side family data, the
    factory), with one import chain."""
    forbidden = lambda v: any(_within(v, f) for f in REFERENCE_FORBIDDEN)  # noqa: E731
    chains = {start: import_chain(graph, start, forbidden) for start in sorted(graph) if _within(start, REFERENCE)}
    return {start: chain for start, chain in chains.items() if chain}


def test_the_reference_graphs_read_no_keras_side_data(graph):
    """``convert/reference/**`` imports neither the families' data, the Keras model, the name table nor the
    factory, directly or through another module; the factory builds from it."""
    assert {"convert.reference.build", "convert.reference.v3"} <= set(graph)
    assert "convert.reference" in graph["convert.factory.spec"]
    leaks = reference_leaks(graph)
    assert not leaks, "the reference graphs import Keras-side data or the factory:\n" + "\n".join(
        " -> ".join(c) for c in leaks.values())


def test_the_reference_check_catches_a_planted_import(tmp_path):
    """On a copy of the package whose reference ops take the gate constant from the V3 family data (what the
    factory did before), the check fails and names the chain."""
    import shutil

    copy = tmp_path / PACKAGE
    shutil.copytree(ROOT / PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    ops = copy / "reference" / "ops.py"
    ops.write_text(ops.read_text().replace("from .slim import", "from ..families.v3 import SE_GATE  # noqa\nfrom .slim import", 1))
    modules = {module_name(ROOT / p.relative_to(tmp_path)): p for p in sorted(copy.rglob("*.py"))}
    leaks = reference_leaks(import_graph(modules))
    assert leaks["convert.reference.ops"] == ["convert.reference.ops", "convert.families.v3"]
    assert leaks["convert.reference.build"][-2:] == ["convert.reference.ops", "convert.families.v3"]


def test_the_checks_catch_a_bad_import(tmp_path):
    """On a copy of the package with one function-level import added, both checks fail and name it."""
    import shutil

    copy = tmp_path / PACKAGE
    shutil.copytree(ROOT / PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = copy / "manifest.py"  # which fixtures imports: the bad import also closes a cycle
    manifest.write_text(manifest.read_text() + "\n\ndef _bad():\n    from .factory.fixtures import cache_root\n")
    modules = {module_name(ROOT / p.relative_to(tmp_path)): p for p in sorted(copy.rglob("*.py"))}
    graph = import_graph(modules)
    leaks = factory_leaks(graph)
    assert leaks["convert.manifest"] == ["convert.manifest", "convert.factory.fixtures"]
    assert leaks["convert.pipeline"][-2:] == ["convert.manifest", "convert.factory.fixtures"]  # transitively
    assert ["convert.factory.fixtures", "convert.manifest", "convert.factory.fixtures"] in cycles(graph)
