"""The package's folders are its layers: a module imports only from its own layer or the ones below
it, no imports go around a circle, and no stage imports another stage (README, Architecture).

Every import counts, at module level or inside a function: an import deferred to keep a command
fast is still a dependency.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from modularity.records.store import package_imports
from modularity.stages import registry

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "modularity"
#: Bottom to top.
LAYERS = ("base", "science", "records", "stages", "running", "showing")
#: The modules every stage stands on (the rest of ``stages/`` are the stages themselves).
FLOOR = {"stages", "stages.context", "stages.scores", "stages.cells", "stages.registry"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


#: Module -> the package's modules it imports (the graph the cache code version follows too).
GRAPH = {module_name(path): set(package_imports(module_name(path))) - {module_name(path)}
         for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The layer's position (``__init__``/``__main__`` of the package stand above every layer)."""
    head = module.split(".")[0]
    return LAYERS.index(head) if head in LAYERS else len(LAYERS)


def test_every_module_lives_in_a_layer_folder():
    top = {module for module in GRAPH if "." not in module and module not in LAYERS}
    assert top == {"", "__main__"}, f"modules outside the layer folders: {sorted(top - {'', '__main__'})}"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(LAYERS)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_only_its_layer_and_the_ones_below(module):
    upward = sorted(target for target in GRAPH[module] if layer_of(target) > layer_of(module))
    assert not upward, f"{module} ({LAYERS[layer_of(module)] if layer_of(module) < len(LAYERS) else 'top'}) " \
                       f"imports a layer above it: {upward}"


def test_no_import_goes_around_a_circle():
    """Depth-first search for a cycle in the import graph; the cycle found is named."""
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                return path + [module, target]
            if target not in state and (cycle := visit(target, path + [module])):
                return cycle
        state[module] = "done"
        return None

    for module in sorted(GRAPH):
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, " -> ".join(cycle[cycle.index(cycle[-1]):])


def test_no_stage_imports_another_stage():
    stage_modules = {f"stages.{s.name}" for s in registry.STAGES}
    assert stage_modules <= set(GRAPH)
    for module in stage_modules | FLOOR:
        others = {t for t in GRAPH[module] if t.startswith("stages") and t not in FLOOR}
        assert not others, f"{module} imports {sorted(others)}: stages stand on the floor {sorted(FLOOR)} only"


def test_the_floor_and_the_stages_are_every_module_of_stages():
    stage_modules = {f"stages.{s.name}" for s in registry.STAGES}
    assert {m for m in GRAPH if m.split(".")[0] == "stages"} == stage_modules | FLOOR
