"""The package's parts import each other one way only: no cycles, and never upwards.

Every import counts, including imports inside functions (which would otherwise hide a
cycle) and imports under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "edgevision"

# Lowest first. A part may import parts of its own layer (without a cycle) and of layers below.
LAYERS: list[set[str]] = [
    {"types", "errors"},
    {"files", "discovery", "signals"},
    {
        "media",
        "compare",
        "packages",
        "annotate",
        "variants",
        "samples",
        "checks",
        "modelfiles",
        "bundles",
    },  # the ground
    {"backends", "models"},  # run tensors; pre-process and decode
    {"conversion"},
    {"zoo"},  # the catalogue, pulling, the one assembly step
    {"quantization", "inspect", "pipeline"},
    {"watch"},  # the long-running service: cameras, store, web
    {"benchmark"},
    {"demo"},
    {"api", "edgevision"},  # the public API and the package's front door
    {"cli", "__main__"},
]
LAYER_OF = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def part_of(module: str) -> str:
    """``edgevision.zoo.pull`` -> ``zoo``; ``edgevision`` -> ``edgevision``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    names = list(rel.parts)
    return ".".join(names[:-1] if names[-1] == "__init__" else names)


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[str, int]]:
    """Every ``edgevision`` module ``path`` imports (absolute or relative), with the line."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found += [(base, node.lineno)] + [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return [(name, line) for name, line in found if name == "edgevision" or name.startswith("edgevision.")]


def part_graph(root: Path = PACKAGE) -> dict[str, dict[str, list[str]]]:
    """``{part: {imported part: ["file:line", ...]}}`` between different parts."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(root.rglob("*.py")):
        source = part_of(module_name(path, root))
        for name, line in imported_modules(path, root):
            target = part_of(name)
            if target != source:
                graph[source][target].append(f"{path.relative_to(root)}:{line}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of parts, as a path that starts and ends with the same part, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, {}):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if state.get(nxt) is None and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if state.get(start) is None and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle_between_parts():
    graph = part_graph()
    cycle = find_cycle(graph)
    where = [graph[a][b][0] for a, b in zip(cycle, cycle[1:])] if cycle else []
    assert cycle is None, f"import cycle {' -> '.join(cycle)} ({', '.join(where)})"


def module_graph(root: Path = PACKAGE) -> dict[str, dict[str, list[str]]]:
    """``{module: {imported module: ["file:line"]}}`` inside the package (names resolved to files)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for module, path in modules.items():
        for name, line in imported_modules(path, root):
            while name not in modules and "." in name:  # ``from pkg.mod import function``
                name = name.rsplit(".", 1)[0]
            if name != module and name in modules:
                graph[module].setdefault(name, []).append(f"{path.relative_to(root)}:{line}")
    return graph


def test_no_import_cycle_between_modules():
    cycle = find_cycle(module_graph())
    assert cycle is None, f"import cycle {' -> '.join(cycle)}"


def test_every_part_has_a_layer():
    parts = {part_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert parts - set(LAYER_OF) == set(), "give new parts a layer in LAYERS"


def test_no_part_imports_a_layer_above_it():
    upward = [
        f"{source} -> {target} ({where[0]})"
        for source, targets in part_graph().items()
        for target, where in targets.items()
        if LAYER_OF[target] > LAYER_OF[source]
    ]
    assert upward == []


def test_the_command_line_calls_only_the_public_api():
    allowed = {"api", "errors", "cli", "edgevision"}
    assert set(part_graph().get("cli", {})) <= allowed


@pytest.mark.parametrize(
    ("edges", "cyclic"),
    [
        ({}, False),
        ({"a": {"b": ["x:1"]}}, False),
        ({"a": {"b": ["x:1"]}, "b": {"a": ["y:2"]}}, True),
        ({"a": {"b": ["x:1"]}, "b": {"c": ["y:2"]}, "c": {"a": ["z:3"]}}, True),
        ({"a": {"b": ["x:1"], "c": ["x:2"]}, "b": {"c": ["y:1"]}}, False),
    ],
)
def test_cycle_finder(edges, cyclic):
    assert (find_cycle(edges) is not None) == cyclic


def test_imports_inside_functions_are_counted(tmp_path):
    pkg = tmp_path / "edgevision"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    (pkg / "a" / "__init__.py").write_text("from edgevision.b import thing\n")
    (pkg / "b" / "__init__.py").write_text("def f():\n    from edgevision.a import other\n")
    graph = part_graph(pkg)
    assert find_cycle(graph) in (["a", "b", "a"], ["b", "a", "b"])
