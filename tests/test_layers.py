"""The rooms of jobreport/ import one way: no import cycle between its modules (an import at
module level, inside a function or for type checking alike), and no room imports a room
above it (docs/architecture.md): the store, the sinks and delivery never import the
wrapper, the command line or ``job_metrics``. Read from the source with ``ast``, so that
an import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jobreport"

#: The rooms, from the top down; a module may import its own layer and those below it.
#: A module is in the layer of its longest listed prefix.
LAYERS: tuple[tuple[str, ...], ...] = (
    # the command line, and the package's lazy public API
    ("jobreport.cli", "jobreport.__main__", "jobreport"),
    # what the command line calls
    ("jobreport.instrument", "jobreport.wrapper", "jobreport.commands",
     "jobreport.monitoring"),
    # a run's life, the same both ways in
    ("jobreport.runs",),
    # store -> sinks
    ("jobreport.delivery",),
    ("jobreport.sinks", "jobreport.store", "jobreport.marker", "jobreport.protocols"),
    # what is carried
    ("jobreport.spec", "jobreport.fields", "jobreport.state", "jobreport.held", "jobreport.result", "jobreport.exposition",
     "jobreport.config", "jobreport.schedule", "jobreport.heartbeat"),
    # small nouns
    ("jobreport.errors", "jobreport.names", "jobreport.durations", "jobreport.sizes",
     "jobreport.outcomes", "jobreport.secrets", "jobreport.paths", "jobreport.logger",
     "jobreport.cron", "jobreport.liveness", "jobreport.numbers", "jobreport.threads",
     "jobreport._version"),
)

#: Cycles known on the other side of this round (sets of modules): none left.
KNOWN_CYCLES: list[frozenset[str]] = []


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``jobreport.cli`` for its __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = modules()


def imports(name: str) -> Iterator[tuple[str, int]]:
    """(module of jobreport imported, line) for every import statement in module ``name``,
    wherever it stands (top level, function, ``if TYPE_CHECKING``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # `from jobreport.x import y` imports jobreport.x.y when that is a module
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES
                       else module for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import jobreport.x.y` of a name
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target, node.lineno


GRAPH = {name: sorted({target for target, _ in imports(name)}) for name in MODULES}


def layer(name: str) -> int:
    """The index in ``LAYERS`` of module ``name`` (0 is the top)."""
    best, found = -1, None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    assert found is not None, f"{name} is in no layer of tests/test_layers.py: place it"
    return found


def cycles() -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_is_read_whole() -> None:
    """The reading sees imports at every level (the test would pass vacuously otherwise)."""
    assert "jobreport.runs" in GRAPH["jobreport.wrapper.wrapper"]  # in a function
    assert "jobreport.spec" in GRAPH["jobreport.wrapper.wrapper"]  # for type checking
    assert "jobreport.spec" in GRAPH["jobreport.cli.option_table"]  # at the top
    assert "jobreport.cli.app" in GRAPH["jobreport.cli.entry"]  # in a method
    assert len(MODULES) > 80


def test_no_import_cycles() -> None:
    """No two modules of jobreport/ import each other, however far round."""
    found = [c for c in cycles() if c not in KNOWN_CYCLES]
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)


def test_known_cycles_still_exist() -> None:
    """An exception above that no longer applies is removed, not kept."""
    now = cycles()
    for known in KNOWN_CYCLES:
        if not set(known) <= set(MODULES):
            continue  # its modules are gone: remove it from KNOWN_CYCLES
        assert known in now, f"{sorted(known)} is no cycle any more: remove it from the list"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_room_imports_a_room_above_it(name: str) -> None:
    """Layers point one way: cli -> (instrument, wrapper, commands) -> runs -> delivery ->
    sinks, store -> spec, state, result, exposition, config -> small nouns."""
    above = [f"{target} (line {line})" for target, line in imports(name)
             if layer(target) < layer(name)]
    assert above == [], f"{name} imports from above it: {', '.join(above)}"


@pytest.mark.parametrize("room", ["jobreport.store", "jobreport.sinks", "jobreport.delivery"])
def test_the_store_sinks_and_delivery_never_import_the_wrapper_cli_or_instrument(
        room: str) -> None:
    """Named once more, as the issue asks: nothing below imports from the top."""
    top = ("jobreport.wrapper", "jobreport.cli", "jobreport.instrument")
    for name in MODULES:
        if name == room or name.startswith(room + "."):
            bad = [t for t in GRAPH[name] if any(t == p or t.startswith(p + ".") for p in top)]
            assert bad == [], f"{name} imports {bad}"
