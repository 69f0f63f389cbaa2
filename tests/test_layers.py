"""The import layers hold: a check over the import graph of ``shared/``, ``blender_addon/`` and ``backend/``.

Every ``import`` statement of every ``.py`` file is read with :mod:`ast` (nothing is imported, so the
check takes a second and needs neither bpy nor torch). The rules:

1. ``shared`` imports nothing of ``blender_addon`` or ``backend``, and none of bpy (and Blender's
   other modules: mathutils, bmesh, ...), torch, pytorch3d or numpy: both sides import it, the
   built extension vendors it.
2. ``blender_addon`` imports nothing of ``backend`` and never torch or pytorch3d: the extension ships
   only ``blender_addon/`` and ``shared/``, and Blender's Python has no torch.
3. ``backend`` imports ``blender_addon`` only as ``blender_addon.headless`` (or a module under it),
   and only inside a function body, so importing any backend module never loads bpy.
   ``blender_addon.headless`` is the Blender side's headless API: the folder capture, the sample
   library, the OBJ/glTF import, the worker process. bpy is loaded in-process only on a command
   line's main thread (the ``asset2vec`` Blender commands, the starter-model build); everything else
   reaches Blender through a subprocess: the index pipeline's capture stage and the bulk tagger run
   ``python -m blender_addon.headless.bulk_worker``, and bulk-tag's Ray tasks run in Ray's worker
   processes (``backend/bulk/workers.py`` imports ``blender_addon.headless.bulk`` inside the task
   function, never in the driver).
   The service (``backend.service``) never imports ``blender_addon`` at all: its work runs in worker
   threads, and bpy is not thread-safe.
4. The domain packages (``backend.lifecycle``, ``backend.library``, ``backend.training``,
   ``backend.model``, ``backend.bulk``, ``backend.features``, ``backend.errors``) and the service
   (``backend.service``) never import the command line (``backend.commands``, ``backend.cli``): the
   CLI calls them, never the other way round.
5. The domain packages never import the service (``backend.service``).
6. No import cycles (:func:`import_cycles`): two modules that need each other become three.

:func:`check_tree` returns one line per broken rule; the last tests prove it catches a wrong import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shared", "blender_addon", "backend")
#: Blender's own modules: only inside Blender (or the bpy wheel).
BLENDER = ("bpy", "bmesh", "mathutils", "gpu", "gpu_extras", "bpy_extras", "aud", "blf", "bl_math", "idprop")
TORCH = ("torch", "pytorch3d", "torchvision")
DOMAIN = ("backend.lifecycle", "backend.library", "backend.training", "backend.model", "backend.bulk",
          "backend.features", "backend.errors")
CLI = ("backend.commands", "backend.cli")
HEADLESS = "blender_addon.headless"


@dataclass(frozen=True)
class Import:
    """One imported module: who imports it, where, and whether at module level (run on import)."""

    module: str  # the importing module, e.g. "backend.lifecycle.index"
    target: str  # the imported module, e.g. "backend.cli"
    path: Path
    line: int
    top_level: bool
    type_only: bool = False  # under ``if TYPE_CHECKING:``: never run


def _under(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(root: Path, path: Path, known: set[str]) -> list[Import]:
    """Every import of ``path``; relative imports resolved, ``from pkg import mod`` read as ``pkg.mod``."""
    module = _module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            typing_block = type_only or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(module, alias.name, path, child.lineno, not in_function, type_only))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)] if child.level > 1 else base
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module or ""
                for alias in child.names:
                    sub = f"{source}.{alias.name}"
                    found.append(Import(module, sub if sub in known else source, path, child.lineno, not in_function,
                                        type_only))
            visit(child, inner, typing_block)

    visit(tree, False, False)
    return found


def import_graph(root: Path) -> list[Import]:
    """All imports of every module of :data:`PACKAGES` under ``root``."""
    files = [p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py")) if (root / pkg).is_dir()]
    known = {_module_name(root, p) for p in files}
    return list(dict.fromkeys(imp for p in files for imp in _imports(root, p, known)))  # one per line and target


def _broken(imp: Import) -> str | None:
    """The rule ``imp`` breaks, or None."""
    src, dst = imp.module, imp.target
    if _under(src, "shared"):
        if _under(dst, ("blender_addon", "backend")):
            return "shared is imported by both sides and imports neither"
        if _under(dst, BLENDER + TORCH + ("numpy",)):
            return "shared imports no bpy, torch or numpy"
    if _under(src, "blender_addon"):
        if _under(dst, "backend"):
            return "the add-on never imports the backend (the extension ships without it)"
        if _under(dst, TORCH):
            return "the add-on never imports torch (Blender's Python has none)"
    if _under(src, "backend") and _under(dst, "blender_addon"):
        if _under(src, "backend.service"):
            return "the service never imports the Blender side (its threads must not run bpy); use a subprocess"
        if not _under(dst, HEADLESS):
            return f"the backend reaches the Blender side only through {HEADLESS}"
        if imp.top_level:
            return f"the backend imports {HEADLESS} only inside a function (importing the backend never loads bpy)"
    if _under(src, DOMAIN + ("backend.service",)) and _under(dst, CLI):
        return "domain modules and the service never import the command line; it calls them"
    if _under(src, DOMAIN) and _under(dst, "backend.service"):
        return "domain modules never import the service; it calls them"
    return None


def check_tree(root: Path) -> list[str]:
    """One line per import that breaks a layer rule (empty when the layers hold)."""
    return [f"{imp.path.relative_to(root)}:{imp.line}: {imp.module} imports {imp.target}: {rule}"
            for imp in import_graph(root) if (rule := _broken(imp)) is not None]


def import_cycles(root: Path) -> list[list[str]]:
    """Groups of modules that import each other at run time, directly or round a loop (function-level imports
    count: deferring an import hides a cycle, it does not remove it). A package's own modules importing the
    package (its ``__init__``) do not count: Python always imports the package first."""
    graph = import_graph(root)
    modules = {imp.module for imp in graph}
    edges: dict[str, set[str]] = {}
    for imp in graph:
        target = imp.target
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if imp.type_only or not target or target == imp.module or imp.module.startswith(target + "."):
            continue
        edges.setdefault(imp.module, set()).add(target)
    # Tarjan's strongly connected components (iterative: no recursion limit to meet).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    cycles.append(sorted(group))
    return sorted(cycles)


# -- tests --------------------------------------------------------------------------------------------------

def test_the_layers_hold() -> None:
    broken = check_tree(ROOT)
    assert not broken, "layer rules broken (see tests/test_layers.py):\n" + "\n".join(broken)


def test_no_import_cycles() -> None:
    """Two modules importing each other means one of them is in the wrong place (as capture.py and content_hash.py
    were, before what both need moved to parts.py)."""
    assert import_cycles(ROOT) == []


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    _write(tmp_path, "blender_addon/capture.py", "from . import typed\nfrom .content_hash import hash_parts\n")
    _write(tmp_path, "blender_addon/content_hash.py", "def content_hash():\n    from .capture import evaluated_parts\n")
    # An import only for type checkers never runs: no cycle.
    _write(tmp_path, "blender_addon/typed.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                                "    from .capture import Part\n")
    assert import_cycles(tmp_path) == [["blender_addon.capture", "blender_addon.content_hash"]]


def test_the_graph_sees_every_package() -> None:
    graph = import_graph(ROOT)
    importers = {imp.module.split(".")[0] for imp in graph}
    assert importers == set(PACKAGES)
    # A function-level import is seen too (the bulk's Ray task imports the headless worker there).
    assert any(imp.target == "blender_addon.headless.bulk" and not imp.top_level for imp in graph)


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.relative_to(root).parents:
        if str(parent) != ".":
            (root / parent / "__init__.py").touch()
    path.write_text(text)


def test_the_check_fails_on_wrong_imports(tmp_path: Path) -> None:
    """A tree with one wrong import per rule (and allowed ones beside them): each wrong one is reported."""
    _write(tmp_path, "shared/bundle.py", "import json\nimport numpy as np\n")
    _write(tmp_path, "shared/api.py", "from blender_addon import client\n")
    _write(tmp_path, "blender_addon/capture.py", "import bpy\nfrom ..shared import api\nfrom backend.errors import X\n")
    _write(tmp_path, "blender_addon/ui.py", "def f():\n    import torch\n")
    _write(tmp_path, "blender_addon/headless/bulk.py", "import bpy\nfrom ..capture import capture_asset\n")
    _write(tmp_path, "backend/cli.py", "from backend.lifecycle import index\n")
    _write(tmp_path, "backend/commands/blender.py",
           "from backend.cli import CommandError\n\ndef cmd():\n    from blender_addon.headless import bulk\n")
    _write(tmp_path, "backend/lifecycle/index.py",
           "def capture():\n    from blender_addon.headless.bulk import x\n    from backend.cli import CommandError\n")
    _write(tmp_path, "backend/lifecycle/home.py", "from blender_addon.headless import bulk\n")
    _write(tmp_path, "backend/library/tags.py", "from blender_addon.capture import capture_asset\n")
    _write(tmp_path, "backend/service/engine.py", "from ..commands.blender import cmd\n")
    _write(tmp_path, "backend/service/building.py",
           "def build():\n    from blender_addon.headless.capture_library import capture_library\n")
    _write(tmp_path, "backend/training/run.py", "from backend.service import engine\n")
    broken = check_tree(tmp_path)
    expected = [
        "backend/lifecycle/home.py:1: backend.lifecycle.home imports blender_addon.headless.bulk",
        "backend/lifecycle/index.py:3: backend.lifecycle.index imports backend.cli",
        "backend/library/tags.py:1: backend.library.tags imports blender_addon.capture",
        "backend/service/engine.py:1: backend.service.engine imports backend.commands.blender",
        "backend/service/building.py:2: backend.service.building imports blender_addon.headless.capture_library",
        "backend/training/run.py:1: backend.training.run imports backend.service.engine",
        "blender_addon/capture.py:3: blender_addon.capture imports backend.errors",
        "blender_addon/ui.py:2: blender_addon.ui imports torch",
        "shared/api.py:1: shared.api imports blender_addon",
        "shared/bundle.py:2: shared.bundle imports numpy",
    ]
    assert sorted(": ".join(line.split(": ", 2)[:2]) for line in broken) == sorted(expected), broken


def test_the_check_passes_the_tree_once_a_wrong_import_is_removed(tmp_path: Path) -> None:
    _write(tmp_path, "backend/lifecycle/index.py", "from backend.cli import CommandError\n")
    assert len(check_tree(tmp_path)) == 1
    _write(tmp_path, "backend/lifecycle/index.py", "from backend.errors import Asset2VecError\n")
    assert check_tree(tmp_path) == []
