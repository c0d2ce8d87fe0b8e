"""The pure tier stays pure: stdlib and bencodepy only, no trio, no sockets, no clock;
only the FUSE layer (fuse.py, and multifs.py, its multi-torrent root) and cli.py
import pyfuse3. (DESIGN.md, "Layers".)"""

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "torrentfs"
PURE = ["geometry", "metainfo", "bitfield", "wire", "announce", "picker", "tree", "readahead",
        "choker", "ratelimit", "cache", "blame",
        "udptracker", "lsd", "krpc", "routing", "dhtlookup", "dhtstore",
        "magnet", "extension", "metadata", "pex", "config", "webseed", "watchdir"]
FORBIDDEN_IN_PURE = {"trio", "pyfuse3", "httpx", "socket", "time", "asyncio", "threading",
                     "selectors", "select", "subprocess", "anyio", "random", "secrets"}


def imports_of(module: str) -> set[str]:
    tree = ast.parse((PKG / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y
                names.add("torrentfs." + (node.module or "").split(".")[0])
            else:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_tier_imports(module):
    found = imports_of(module)
    stdlib = set(sys.stdlib_module_names)
    for name in found:
        if name.startswith("torrentfs."):
            assert name.split(".")[1] in PURE, f"{module} imports shell module {name}"
        else:
            assert name not in FORBIDDEN_IN_PURE, f"{module} imports {name}"
            assert name in stdlib or name == "bencodepy", f"{module} imports {name}"


def test_only_the_fuse_layer_and_cli_import_pyfuse3():
    for path in PKG.glob("*.py"):
        if path.stem not in ("fuse", "multifs", "cli"):
            assert "pyfuse3" not in imports_of(path.stem), path.name
