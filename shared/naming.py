"""Catalogue names of assets: one identity per asset, whichever way it was embedded.

:func:`catalogue_name` is THE name of an asset on the backend, used by the add-on's Embed, the headless
bulk tagger, the CLI capture and the library index alike: ``<file>/<asset>``, where ``<file>`` is the
.blend's path relative to its *library root* without ``.blend``. The root is found from the file alone
(:func:`find_library_root`: the nearest folder up from the .blend holding Blender's asset library marker
``blender_assets.cats.txt`` or Asset2Vec's ``.asset2vec/`` folder), so the panel, which is given no root,
names an asset exactly as bulk-tag and index do. A .blend outside any library root gets a stable name from
its absolute path (``<stem>@<8 hex digits>``); a file never saved is ``unsaved/<asset>``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PurePosixPath

#: The file part of the name of an asset in a .blend that was never saved.
UNSAVED = "unsaved"
#: A folder holding one of these is a library root: Blender's asset catalog file, or Asset2Vec's state folder
#: (bulk-tag's journal, an index home, or the marker ``asset2vec index`` leaves in the library it indexed).
CATALOG_FILE = "blender_assets.cats.txt"
STATE_DIR = ".asset2vec"


def is_unsaved(name: str) -> bool:
    """Whether a catalogue name is an embed of a file never saved (kept out of other assets' neighbours)."""
    return name.startswith(f"{UNSAVED}/")


def find_library_root(blend_path: str | os.PathLike[str]) -> Path | None:
    """The nearest folder at or above the .blend's folder that holds ``blender_assets.cats.txt`` or ``.asset2vec/``.

    The user's home folder is never a root (``~/.asset2vec`` is the default library home, not a library).
    ``None`` when no folder up to the file system's root is marked. Reads only folder entries (no bpy).
    """
    if not blend_path:
        return None
    folder = Path(os.path.abspath(os.path.expanduser(os.fspath(blend_path)))).parent
    try:
        homes = {Path.home(), Path.home().resolve()}
    except (OSError, RuntimeError):
        homes = set()
    for candidate in (folder, *folder.parents):
        if candidate in homes:
            continue
        try:
            if (candidate / CATALOG_FILE).is_file() or (candidate / STATE_DIR).is_dir():
                return candidate
        except OSError:  # an unreadable folder on the way up: not a root
            continue
    return None


def catalogue_name(blend_path: str | os.PathLike[str], asset_name: str,
                   default_root: str | os.PathLike[str] | None = None) -> str:
    """The asset's one identity: ``<.blend path under its library root, no suffix>/<asset name>``.

    The root is :func:`find_library_root` of the file; ``default_root`` is used only when no marked
    folder is found (a caller that was given a library folder). Outside any root the file part is
    ``<stem>@<hash of the absolute path>``: stable while the file stays where it is, and never the
    same for two files of one name. An empty ``blend_path`` (a file never saved) gives ``unsaved/<asset>``.
    """
    if not blend_path:
        return f"{UNSAVED}/{asset_name}"
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(blend_path))))
    root = find_library_root(path)
    if root is None and default_root is not None:
        root = Path(os.path.abspath(os.fspath(default_root)))
    if root is not None and path.is_relative_to(root):
        return asset_key(str(path), asset_name, root=str(root))
    digest = hashlib.sha1(path.as_posix().encode("utf-8")).hexdigest()[:8]
    stem = path.name[: -len(".blend")] if path.name.lower().endswith(".blend") else path.name
    return f"{stem}@{digest}/{asset_name}"


def name_collision(name: str, blend: str | os.PathLike[str], first: str | os.PathLike[str]) -> str:
    """The failure line of an asset whose catalogue name an asset of another file took first: two asset libraries
    (each with its own ``blender_assets.cats.txt``) under the indexed folder, laid out alike."""
    return (f"{blend}: not captured, its asset is named {name!r} like an asset of {first} (two asset libraries "
            f"under this folder with the same layout: names are relative to each library's catalog file); index "
            f"each library into its own home, or rename the file or the asset")


def asset_key(blend_path: str, asset_name: str, root: str | None = None) -> str:
    """``<blend file>/<asset name>`` with '/' separators, for an explicit ``root`` (prefer :func:`catalogue_name`).

    With ``root`` the file part is the .blend's path relative to ``root`` without its ``.blend``
    suffix (the file's stem if it is not under ``root``); without it, the file's stem. An empty
    ``blend_path`` (unsaved file) gives ``unsaved/<asset name>``.
    """
    if not blend_path:
        return f"{UNSAVED}/{asset_name}"
    path = Path(blend_path)
    rel: PurePosixPath | None = None
    if root is not None:
        try:
            rel = PurePosixPath(path.resolve().relative_to(Path(root).resolve()).as_posix())
        except ValueError:
            rel = None
    if rel is None:
        rel = PurePosixPath(path.name)
    if rel.suffix.lower() == ".blend":
        rel = rel.with_suffix("")
    return f"{rel.as_posix()}/{asset_name}"


def safe_folder_name(name: str) -> str:
    """A file-system-safe, still readable folder name for a catalogue name like ``chairs/Chair_01``.

    Bundle folders are named by it on both sides (headless capture and the backend's uploads).
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "__", name).strip("._") or "asset"
