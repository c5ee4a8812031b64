"""The import rules of docs/architecture.md, checked on every `jaxedit` import in the package
(module level and inside functions), so a room cannot quietly start depending on a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jaxedit"

BASE = ("errors", "orbax_logs", "attributes", "atomic", "io", "config", "modeldir")
LOWER = {
    # room: the rooms it may import (itself always), as the table in docs/architecture.md says
    "errors": set(),
    "orbax_logs": {"errors"},
    "attributes": {"errors", "orbax_logs"},
    "atomic": {"errors", "orbax_logs"},
    "io": {"errors", "orbax_logs", "attributes", "atomic"},
    "config": {"errors", "orbax_logs", "attributes", "atomic", "io"},
    "modeldir": {"errors", "orbax_logs", "attributes", "atomic", "io", "config"},
    "viz": {"errors", "atomic", "io"},
}
LOWER["stylegan2"] = LOWER["latent"] = {*BASE, "viz"}
LOWER["encoders"] = LOWER["stylegan2"] | {"stylegan2"}
LOWER["convert"] = LOWER["encoders"] | {"latent", "encoders"}
LOWER["data"] = LOWER["encoders"] | {"latent", "encoders"}
LOWER["editing"] = LOWER["data"] | {"data"}
LOWER["eval"] = LOWER["editing"] | {"editing"}
LOWER["training"] = LOWER["eval"] | {"eval"}
EVERYTHING = ("serve", "cli", "__init__", "__main__")
TRAINING_MAY_IMPORT_EVAL = {"pipeline.py"}


def _room(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0].removesuffix(".py")


def _imported_rooms(tree: ast.AST) -> set[str]:
    rooms = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "jaxedit":
            parts = node.module.split(".")
            rooms |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            rooms |= {a.name.split(".")[1] for a in node.names if a.name.startswith("jaxedit.")}
    return rooms


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_room_is_in_the_table():
    rooms = {_room(path) for path in MODULES}
    assert rooms <= set(LOWER) | set(EVERYTHING), rooms - set(LOWER) - set(EVERYTHING)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_architecture(path):
    room = _room(path)
    if room in EVERYTHING:
        return
    allowed = LOWER[room] | {room}
    if room == "training" and path.name not in TRAINING_MAY_IMPORT_EVAL:
        allowed = allowed - {"eval"}
    imported = _imported_rooms(ast.parse(path.read_text()))
    assert imported <= allowed, f"{room} imports {sorted(imported - allowed)}"


def test_the_check_catches_a_higher_import():
    tree = ast.parse("def f():\n    from jaxedit.training.sharding import make_mesh\n")
    assert _imported_rooms(tree) - LOWER["data"] == {"training"}
