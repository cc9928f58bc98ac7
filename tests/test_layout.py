"""The package is grouped by data flow: no import cycle, and no import from a lower layer to a higher one.

Every import counts, including the ones inside functions and under `TYPE_CHECKING`: a lazy import
is still a dependency, and hiding an upward arrow in a function body is how cycles come back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "inspector"

# Lowest first; a module may import from its own layer and any layer below it. `docs/layout.md` draws
# the same order.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "overrides", "schema", "disk_cache", "lava_compat"),  # shared by every layer, import nothing above
    ("lm",),  # the float model: config, weights, tokenizer, generation, training
    ("quant",),  # calibration, conversion, the integer model and its kernels
    ("chip",),  # hardware limits, core map, probes and activity, costs, the estimate, published sizes
    ("backends",),  # where the integer model runs: the emulator, Lava
    ("compare",),  # float against integer: diffs, local error, A/B, perplexity, traces
    ("sweep",),  # sensitivity sweeps and the bit-width search on Ray
    ("views",),  # figures, the Learn tour's facts, export bundles
    ("serve",),  # what a shared server needs: run cache, locks, the job queue
    ("ui",),  # Streamlit glue shared by the pages
    ("cli", "__main__"),  # the command line
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The inspector modules `path` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {target for target in found if target in modules and target != name and target != "inspector"}


def layer_of(name: str) -> int:
    top = name.split(".")[1] if name.count(".") else ""
    for index, members in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"{name} belongs to no layer: add its package to LAYERS in tests/test_layout.py")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items() if name != "inspector"}


def test_every_module_has_a_layer(graph):
    for name in graph:
        layer_of(name)


def test_no_import_from_a_lower_layer_to_a_higher_one(graph):
    upward = sorted(
        f"{name} (layer {LAYERS[layer_of(name)][0]}) imports {target} (layer {LAYERS[layer_of(target)][0]})"
        for name, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(name)
    )
    assert upward == []


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that import each other in a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycle(graph):
    assert [group for group in strongly_connected(graph) if len(group) > 1] == []


def test_the_cycle_finder_finds_a_cycle():
    """The check above would pass on any graph if the finder never found anything."""
    circle = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [group for group in strongly_connected(circle) if len(group) > 1] == [["a", "b", "c"]]


def test_the_layer_check_sees_lazy_imports(tmp_path):
    """An import inside a function body is a dependency too."""
    source = tmp_path / "inspector" / "lm" / "model.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f():\n    from inspector.chip import mapper\n")
    found = imported_modules("inspector.lm.model", source, {"inspector.lm.model": source, "inspector.chip.mapper": source})
    assert found == {"inspector.chip.mapper"}
