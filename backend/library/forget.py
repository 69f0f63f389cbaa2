"""Forgetting assets: out of the catalogue, and out of a library home's stored views.

One domain function for every way an artist or a TD removes an asset: ``asset2vec catalogue remove``
(:mod:`backend.commands.catalogue_hygiene`) and the service's ``DELETE /v1/assets/{name}``. Only the backend's
own files change (catalogue rows, the home's ``bundles/<asset>/`` folders); never an artist's .blend.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from shared.naming import safe_folder_name

from .catalogue import Catalogue


def forget_views(bundles: Path | None, names: Iterable[str]) -> None:
    """Remove the stored views of ``names`` from a library home's ``bundles`` folder: ``index`` would embed them
    again (and the next model train on them) otherwise. ``None`` or no such folder (a run folder keeps no views):
    nothing to do."""
    if bundles is None or not bundles.is_dir():
        return
    for name in names:
        shutil.rmtree(bundles / safe_folder_name(name), ignore_errors=True)


def forget_assets(catalogue: Catalogue, names: Iterable[str], bundles: Path | None = None) -> list[str]:
    """Remove assets from ``catalogue`` (rows, codes of every model, tags, review answers, neighbour entries: one
    transaction; :meth:`~backend.library.catalogue.Catalogue.remove_assets`), then their views in ``bundles``.

    An unknown name raises :class:`~backend.library.errors.LibraryError` (with close matches) and removes nothing.
    Returns the removed names.
    """
    removed = catalogue.remove_assets(list(names))
    forget_views(bundles, removed)
    return removed
