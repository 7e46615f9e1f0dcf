"""One storage layer owns all file I/O (issue #16 item 1): no module outside `bhds.storage` opens,
renames, removes or reads a data file itself, so the object-store protocol has one place to live.

The check parses every module under `bhds/` and names each raw I/O call outside ALLOWED.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bhds"

# The only modules allowed raw file I/O, each with why. A path ending in "/" covers a folder.
ALLOWED = {
    "bhds/storage/": "the storage layer itself",
    "bhds/objstore/": "the bucket driver and the working-copy sync: storage's other half",
}

# Builtin `open`, and these functions of `os` and of `shutil` (every one of shutil's).
OS_CALLS = {"open", "replace", "rename", "renames", "remove", "unlink", "link", "symlink", "utime", "rmdir", "removedirs",
            "truncate"}
# Method names that only a file path has. `.replace(` is not listed: str.replace is everywhere, and
# Path.replace cannot be told from it without types (it is rare: review catches it).
PATH_METHODS = {"rename", "unlink", "write_bytes", "write_text", "read_bytes", "read_text", "rmdir", "touch", "open",
                "hardlink_to", "symlink_to"}
# pyarrow.parquet's reader and writer entry points.
PARQUET_CALLS = {"ParquetFile", "ParquetWriter", "ParquetDataset", "read_table", "read_pandas", "read_metadata",
                 "read_schema", "write_table", "write_to_dataset", "write_metadata"}


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> the module or object it stands for (`pq` -> "pyarrow.parquet", `ZipFile` -> "zipfile.ZipFile")."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """`a.b.c` of a Name/Attribute chain, its first name resolved through the imports."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _raw_io(call: ast.Call, aliases: dict[str, str]) -> str | None:
    """What raw I/O `call` does, or None."""
    func = call.func
    name = _dotted(func, aliases)
    if isinstance(func, ast.Name) and func.id == "open" and func.id not in aliases:
        return "open()"
    if name:
        module, _, attr = name.rpartition(".")
        if module == "os" and attr in OS_CALLS:
            return f"os.{attr}()"
        if module in ("shutil", "filecmp"):  # filecmp reads both files' bytes
            return f"{module}.{attr}()"
        if module == "pyarrow.parquet" and attr in PARQUET_CALLS:
            return f"pyarrow.parquet.{attr}()"
        if name in ("zipfile.ZipFile", "io.open", "builtins.open", "pyarrow.dataset.dataset"):
            return f"{name}()"
    if isinstance(func, ast.Attribute) and func.attr in PATH_METHODS:
        receiver = _dotted(func.value, aliases) or ""
        # `.open(` is left out: `archive.open(member)` reads inside a zip that storage opened. `storage.*`
        # is the layer itself; `os.*` and `pyarrow.*` were judged above.
        if func.attr == "open" or receiver.split(".")[0] in ("os", "pyarrow", "fcntl") or receiver.startswith("bhds.storage"):
            return None
        return f".{func.attr}()"
    return None


def _allowed(relative: str) -> bool:
    return any(relative == key or (key.endswith("/") and relative.startswith(key)) for key in ALLOWED)


def raw_io_calls() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        if _allowed(relative):
            continue
        tree = ast.parse(path.read_text(), relative)
        aliases = _aliases(tree)
        calls = sorted((node for node in ast.walk(tree) if isinstance(node, ast.Call)), key=lambda node: node.lineno)
        found += [f"{relative}:{node.lineno}: {what}" for node in calls if (what := _raw_io(node, aliases))]
    return found


def test_only_the_storage_layer_does_file_io() -> None:
    found = raw_io_calls()
    assert not found, (f"{len(found)} raw file I/O call(s) outside bhds.storage (route them through it, or add the "
                       "module to ALLOWED in tests/test_storage_owns_io.py with a reason):\n" + "\n".join(found))


def test_the_check_finds_each_kind_of_call() -> None:
    source = """
import filecmp, os, shutil, zipfile
import pyarrow.parquet as pq
from pathlib import Path
open("x")
os.replace("a", "b")
shutil.rmtree("d")
pq.ParquetFile("f")
zipfile.ZipFile("z")
filecmp.cmp("a", "b")
Path("p").unlink()
Path("p").write_bytes(b"")
"x".replace("a", "b")
"""
    tree = ast.parse(source)
    aliases = _aliases(tree)
    kinds = [what for node in ast.walk(tree) if isinstance(node, ast.Call) and (what := _raw_io(node, aliases))]
    assert kinds == ["open()", "os.replace()", "shutil.rmtree()", "pyarrow.parquet.ParquetFile()", "zipfile.ZipFile()",
                     "filecmp.cmp()", ".unlink()", ".write_bytes()"]


def test_every_allowed_module_exists() -> None:
    for key in ALLOWED:
        assert (PACKAGE.parent / key).exists(), f"ALLOWED names {key}, which is gone: drop it"
