"""The package's folders are its layers, and imports point one way (DESIGN.md, "Layers";
docs/architecture.md):

    cli  ->  fs  ->  engine  ->  net  ->  disk  ->  core

A module may import its own folder and any folder below it, never one above it (the
network shells use disk/ only for their private state files: the DHT's node table,
fetched metadata); nothing imports the CLI; only fs/ and cli/ import pyfuse3; core/ imports only the
standard library, bencodepy and itself (no trio, no sockets, no clock, no randomness);
and no two modules import each other, directly or round a longer loop, counting
imports inside functions too. The rules are about folders: a new module is held to
them by where it is put, with no list to update."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "torrentfs"

# Rank of each layer: a module may import layers of lower rank and its own folder.
RANK = {"core": 0, "disk": 1, "net": 2, "engine": 3, "fs": 4, "cli": 5}
FORBIDDEN_IN_CORE = {"trio", "pyfuse3", "httpx", "socket", "time", "asyncio", "threading",
                     "selectors", "select", "subprocess", "anyio", "random", "secrets",
                     "appdirs", "rich"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def layer(module: str) -> str | None:
    """The layer folder of a torrentfs module (None for the top package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imports_of(module: str) -> set[str]:
    """Every module ``module`` imports, at its top or inside a function: torrentfs
    modules by their full names, others by their top-level name."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            # `from torrentfs.core import wire` imports the module torrentfs.core.wire
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
            found |= set(subs) if subs else {target}
    return {name if name.startswith("torrentfs") else name.split(".")[0] for name in found}


def test_every_module_is_in_a_layer_folder():
    for module in MODULES:
        assert module == "torrentfs" or layer(module) in RANK, \
            f"{module} is not in a layer folder ({', '.join(RANK)})"


@pytest.mark.parametrize("module", [m for m in MODULES if m != "torrentfs"])
def test_imports_point_down(module):
    mine = layer(module)
    for name in imports_of(module):
        if not name.startswith("torrentfs") or name == "torrentfs":
            continue
        theirs = layer(name)
        assert theirs in RANK, f"{module} imports {name}, which is in no layer"
        if theirs == mine:
            continue
        assert theirs != "cli", f"{module} imports the CLI ({name}): nothing may"
        assert RANK[theirs] < RANK[mine], \
            f"{module} ({mine}) imports {name} ({theirs}): a layer may import only below it"


@pytest.mark.parametrize("module", [m for m in MODULES if layer(m) == "core"])
def test_core_is_pure(module):
    stdlib = set(sys.stdlib_module_names)
    for name in imports_of(module):
        if name.startswith("torrentfs"):
            assert name == "torrentfs" or layer(name) == "core", f"{module} imports {name}"
        else:
            assert name not in FORBIDDEN_IN_CORE, f"{module} imports {name}"
            assert name in stdlib or name == "bencodepy", f"{module} imports {name}"


def test_only_the_fuse_layer_and_cli_import_pyfuse3():
    for module in MODULES:
        if layer(module) not in ("fs", "cli"):
            assert "pyfuse3" not in imports_of(module), module


def test_no_import_cycle():
    graph = {m: {n for n in imports_of(m) if n in MODULES and n != m} for m in MODULES}
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                cycles.append(sorted(component))

    for m in graph:
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checks_can_fail():
    """The rules above really look at imports: a made-up upward import is seen."""
    assert "torrentfs.core.wire" in imports_of("torrentfs.engine.upload")
    assert "torrentfs.engine.sources" in imports_of("torrentfs.engine.multi")  # in a function
    assert layer("torrentfs.cli.main") == "cli" and RANK["cli"] > RANK["engine"]
