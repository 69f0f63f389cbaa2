"""Which files of a library folder Asset2Vec works on: its .blend files and the loose models it can import.

bpy-free: bulk-tag's driver (backend), the add-on's own bulk run and the OBJ/glTF import share it.
"""

from __future__ import annotations

from pathlib import Path

#: Loose model files bulk-tag imports into a new .blend next to them.
MODEL_SUFFIXES = (".obj", ".gltf", ".glb")


def hidden(path: Path, root: Path) -> bool:
    """Inside a dot-folder (Asset2Vec's state folder, .git, ...) or a dot-file (temporary files)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def scan(root: Path) -> tuple[list[Path], list[Path]]:
    """``(blend files, loose models)`` under ``root``, sorted; hidden files and .blend1 backups are skipped."""
    blends, models = [], []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or hidden(p, root):
            continue
        if p.suffix.lower() == ".blend":
            blends.append(p)
        elif p.suffix.lower() in MODEL_SUFFIXES:
            models.append(p)
    return blends, models
