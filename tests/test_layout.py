"""The package's shape: no module over 400 lines, no import cycles between modules at import
time, the data path's direction kept (format imports neither Ray nor the later stages), and
no reach into other libraries' private modules."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import ray_ingest

ROOT = Path(ray_ingest.__file__).parent
STAGES = ["format", "convert", "read", "augment", "train", "bench"]


def _modules() -> Dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _top_level_imports(path: Path, name: str, is_package: bool) -> Set[str]:
    """Modules imported when ``name`` is imported: its module-level imports (not those inside
    functions, nor under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    found: Set[str] = set()
    package = name if is_package else name.rpartition(".")[0]

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module or ""
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)

    visit(tree.body)
    return found


def _graph() -> Dict[str, List[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = _top_level_imports(path, name, path.name == "__init__.py")
        graph[name] = sorted(d for d in deps if d in mods and d != name)
    return graph


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_no_import_cycles():
    graph = _graph()
    # A package's __init__ importing its own modules is the package's face, not a cycle:
    # only module-to-module edges count, with a package standing for its __init__.
    state: Dict[str, int] = {}
    stack: List[str] = []

    def walk(node):
        state[node] = 1
        stack.append(node)
        for dep in graph[node]:
            if node.startswith(dep + "."):  # a module importing its own package's __init__
                continue
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                walk(dep)
        stack.pop()
        state[node] = 2

    for name in graph:
        if name not in state:
            walk(name)


def test_the_data_path_runs_one_way():
    """A stage imports only the stages before it: format -> convert -> read -> augment ->
    train; bench measures them all."""
    graph = _graph()
    for name, deps in graph.items():
        parts = name.split(".")
        if len(parts) < 2 or parts[1] not in STAGES:
            continue
        mine = STAGES.index(parts[1])
        for dep in deps:
            dparts = dep.split(".")
            if len(dparts) >= 2 and dparts[1] in STAGES:
                assert STAGES.index(dparts[1]) <= mine, f"{name} imports {dep}"


def test_format_imports_neither_ray_nor_a_framework():
    for name, path in _modules().items():
        if name.startswith("ray_ingest.format"):
            deps = _top_level_imports(path, name, path.name == "__init__.py")
            heavy = {d for d in deps if d.split(".")[0] in ("ray", "tensorflow", "torch")}
            assert not heavy, (name, heavy)


def test_no_private_modules_of_other_libraries():
    for path in ROOT.rglob("*.py"):
        src = path.read_text()
        for banned in ("ray._private", "ray.data._internal", "ray.train.v2._internal",
                       "_logical_plan"):
            assert banned not in src, (str(path.relative_to(ROOT)), banned)
