"""The layers and who may import whom, read from the source (AST), so a wrong import fails
the suite before it tangles anything:

    kassa          the core: money, statuses, ids, errors, contracts, settings (nothing else)
    db             models and named queries                     (core)
    gateways       adapters and their emulators                 (core)
    orchestration  the client side of Temporal: start, signal,  (core)
                   update workflows by name
    activities     all I/O of the workflows                     (core, db, gateways, orchestration)
    workflows      deterministic workflow code                  (core, activities)
    api            the FastAPI service                          (core, db, gateways, orchestration)
    tooling        the CLI and the embedded dev stack           (anything but tests)

worker.py wires everything; tests and bench may import anything. No import cycles between
modules, lazy imports inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAY_IMPORT = {
    "kassa": {"kassa"},
    "db": {"kassa", "db"},
    "gateways": {"kassa", "gateways"},
    "orchestration": {"kassa", "orchestration"},
    "activities": {"kassa", "db", "gateways", "orchestration", "activities"},
    "workflows": {"kassa", "activities", "workflows"},
    "api": {"kassa", "db", "gateways", "orchestration", "api"},
    "tooling": {"kassa", "db", "gateways", "orchestration", "activities", "workflows", "api"}
    | {"tooling", "worker"},
}
OURS = set(MAY_IMPORT) | {"worker", "tests", "bench"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str) -> set[str]:
    """Kassa's modules that `source` (the text of `module`) imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from db import orders` imports the module db.orders
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in OURS}


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = {module_name(path): path for top in MAY_IMPORT for path in (root / top).rglob("*.py")}
    modules["worker"] = root / "worker.py"
    return {
        name: {imported for imported in imports_of(path.read_text(), name) if imported in modules}
        for name, path in modules.items()
    }


def broken_rules(edges: dict[str, set[str]]) -> list[str]:
    broken = []
    for module, imported in sorted(edges.items()):
        layer = module.split(".")[0]
        if layer not in MAY_IMPORT:
            continue
        for target in sorted(imported):
            if target.split(".")[0] not in MAY_IMPORT[layer]:
                broken.append(f"{module} imports {target}")
    return broken


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle (one per strongly connected group), by depth-first search."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt == node or nxt.startswith(node + "."):
                continue  # a package importing its own submodules is not a cycle
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def missing_modules(root: Path = ROOT) -> list[str]:
    """Kassa modules imported anywhere (lazy imports included) that do not exist: a module
    moved without its importers following."""
    known = {module_name(p) for top in OURS for p in (root / top).rglob("*.py")} | {"worker"}
    missing = []
    for top in OURS:
        for path in sorted((root / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                missing += [
                    f"{module_name(path)} imports {name}"
                    for name in names
                    if name.split(".")[0] in OURS and name not in known
                ]
    return missing


def test_every_imported_module_exists():
    assert missing_modules() == []


def test_every_import_keeps_to_its_layer():
    assert broken_rules(graph()) == []


def test_there_is_no_import_cycle():
    assert cycles(graph()) == []


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        ("kassa.money", "from db.models import Order", "kassa.money imports db.models"),
        ("activities.x", "from workflows.checkout import C", "activities.x imports workflows"),
        ("db.x", "def f():\n    import api.app", "db.x imports api.app"),
        ("api.x", "from workflows import checkout", "api.x imports workflows"),
    ],
)
def test_a_wrong_import_is_caught(module, source, broken):
    edges = {module: imports_of(source, module)}
    assert any(line.startswith(broken) for line in broken_rules(edges)), broken_rules(edges)


def test_a_cycle_is_caught():
    edges = {"db.a": {"db.b"}, "db.b": {"db.c"}, "db.c": {"db.a"}}
    assert cycles(edges) == [["db.a", "db.b", "db.c", "db.a"]]
