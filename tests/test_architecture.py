"""The architecture of ``../shared/design/ARCHITECTURE.md`` section 2, checked on the source itself.

Layers, top to bottom: the root of ``app`` (factory, ``python -m app``, runtime, CLI, sandbox, server),
then ``app.web`` and ``handlers`` (two entry adapters that never import each other), ``subscriptions``,
``app.records``, ``app.microsoft``, ``app.core``. A module may import its own package and the layers
below it, nothing above: every import counts, inside functions too, with no list of exceptions.

Each table is written (INSERT, UPDATE, DELETE) by exactly one module, of ``app.records`` or ``app.core``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from sqlite_utils import Database

from app.core.migrations import migrate

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "handlers", "subscriptions")
# Rank of each layer, and for layers that share a rank, their name: those never import each other.
LAYERS = {"app": (6, "app"), "app.web": (5, "web"), "handlers": (5, "handlers"), "subscriptions": (4, "subscriptions"),
          "app.records": (3, "records"), "app.microsoft": (2, "microsoft"), "app.core": (1, "core")}
WRITE = re.compile(r"\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+(\w+|\{)")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def layer(module: str) -> str:
    """The layer ``module`` belongs to: the longest layer name that prefixes it."""
    return max((name for name in LAYERS if module == name or module.startswith(name + ".")), key=len)


def imported(module: str, path: Path) -> set[str]:
    """The project modules ``module`` imports (``from x import y`` counts ``x.y`` when that is a module)."""
    names = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in names if name in MODULES}


def upward(module: str, target: str) -> bool:
    """Whether ``module`` importing ``target`` breaks the layers."""
    (rank, name), (target_rank, target_name) = LAYERS[layer(module)], LAYERS[layer(target)]
    if target == "app" and layer(module) != "app":
        return True  # the package root is the top layer (importing a submodule only runs it)
    return target_rank > rank or (target_rank == rank and target_name != name)


def test_every_module_has_a_layer():
    assert MODULES and all(layer(module) in LAYERS for module in MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down_the_layers(module):
    wrong = sorted(target for target in imported(module, MODULES[module]) if upward(module, target))
    assert not wrong, f"{module} ({layer(module)}) imports from above or beside it: {wrong}"


def test_the_layer_check_notices_a_wrong_import():
    assert upward("app.core.queue", "app.records.threads")
    assert upward("app.web.pages", "handlers.send") and upward("handlers.send", "app.web.pages")
    assert upward("app.records.outbox", "app")
    assert not upward("handlers.send", "app.records.outbox") and not upward("app.runtime", "handlers.worker")


def tables() -> set[str]:
    db = Database(memory=True)
    migrate(db)
    return {name for name in db.table_names() if not name.startswith("_")}


def writers() -> dict[str, set[str]]:
    """Per table, the modules whose source writes it (SQL in string literals, f-strings included)."""
    known = tables()
    found: dict[str, set[str]] = {table: set() for table in known}
    for module, path in MODULES.items():
        if module in ("app.core.migrations", "app.core.copy"):
            continue  # the schema's own business: every table is created and altered, or moved whole, there
        for table in WRITE.findall(path.read_text()):
            assert table != "{", f"{module} writes a table named at run time: no test could tell which"
            if table in known:
                found[table].add(module)
    return found


def test_each_table_is_written_by_one_module_of_the_domain_or_the_core():
    problems = {table: sorted(modules) for table, modules in writers().items()
                if len(modules) > 1 or any(layer(m) not in ("app.records", "app.core") for m in modules)}
    assert not problems, f"tables written by several modules, or from outside app.records/app.core: {problems}"


def test_every_table_has_its_writer():
    unwritten = sorted(table for table, modules in writers().items() if not modules)
    assert not unwritten, f"tables no module writes (dead schema?): {unwritten}"
