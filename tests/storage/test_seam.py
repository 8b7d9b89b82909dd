"""The storage seam: `storage/` holds bytes and knows no database; nothing else sees where bytes are kept."""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import weightyard
from weightyard import storage
from weightyard.repos.content import ContentStore
from weightyard.storage import base

SOURCE = Path(weightyard.__file__).parent
STORAGE = SOURCE / "storage"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def test_storage_imports_nothing_that_reaches_a_database() -> None:
    for path in _modules(STORAGE):
        reached = {name for name in _imports(path) if name.split(".")[0] == "sqlalchemy" or ".db" in name}
        assert reached == set(), f"{path.relative_to(SOURCE)} imports {sorted(reached)}"


def test_no_module_outside_storage_names_an_implementation_of_the_interface() -> None:
    # Code outside storage/ holds an `ObjectStore` (or the `ContentStore` over it); under mypy --strict it
    # then can reach only what the interface offers, and the interface hands out no path.
    implementations = {"weightyard.storage.local", "weightyard.storage.s3"}
    private = {f"weightyard.storage.{name}" for name in dir(storage) if name.startswith(("Local", "S3"))}
    for path in _modules(SOURCE):
        if STORAGE in path.parents:
            continue
        named = {n for n in _imports(path) if n in private or any(n.startswith(m) for m in implementations)}
        assert named == set(), f"{path.relative_to(SOURCE)} imports {sorted(named)}"


def _annotations(cls: type) -> dict[str, object]:
    found: dict[str, object] = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
            continue
        function = member.fget if isinstance(member, property) else member
        hints = typing.get_type_hints(function)
        found |= {f"{cls.__name__}.{name}.{k}": v for k, v in hints.items()}
    return found


def test_the_interface_and_the_content_store_hand_out_no_filesystem_path() -> None:
    classes = [
        base.ObjectStore,
        base.ObjectWriter,
        base.ScratchFile,
        base.PartWriter,
        base.StagedUpload,
        base.StoredObject,
        ContentStore,
    ]
    for cls in classes:
        with_paths = [name for name, hint in _annotations(cls).items() if "Path" in str(hint)]
        assert with_paths == []
