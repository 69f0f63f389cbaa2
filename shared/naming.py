"""Catalogue names of assets, unique across the files of a library.

One helper for the add-on's Embed, the headless bulk tagger and the CLI capture, so an asset
gets the same name on the backend whichever way it was embedded: ``<file>/<asset>``, where
``<file>`` is the .blend's path relative to the library root without ``.blend`` (or the file's
stem when there is no root, or ``unsaved`` for a file never saved).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

#: The file part of the name of an asset in a .blend that was never saved.
UNSAVED = "unsaved"


def asset_key(blend_path: str, asset_name: str, root: str | None = None) -> str:
    """``<blend file>/<asset name>`` with '/' separators.

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
