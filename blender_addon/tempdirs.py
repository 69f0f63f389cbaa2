"""The add-on's temporary folders (thumbnail cache, embed captures, bulk logs), removed when it goes away.

Every folder the add-on makes in the system's temporary directory is made here (:func:`make`) and remembered,
so that nothing is left behind by a Blender session:

- the session's close (add-on unregister) removes them all (:func:`remove_all`);
- Blender has no "quit" handler in ``bpy.app.handlers`` and does not unregister add-ons when it quits, but it
  finalizes Python, which runs :mod:`atexit` handlers: :func:`remove_all` is registered there too, once. It uses
  no bpy (bpy may already be torn down at that point), only :func:`shutil.rmtree`.
- a Blender that crashed or was killed runs neither: each folder names its owner process
  (:mod:`shared.tempfolders`), and the first :func:`make` of a session removes the folders of dead owners.

No bpy here: worker threads may ask for folders too.
"""

from __future__ import annotations

import atexit
import shutil
import threading
from pathlib import Path

from .protocol import tempfolders

#: Prefix of every temporary folder the add-on makes (``asset2vec-thumbs-*``, ``asset2vec-embed-*`` ...).
PREFIX = tempfolders.PREFIX

_lock = threading.Lock()
_live: set[Path] = set()
_swept = False


def make(kind: str) -> Path:
    """A new private temporary folder ``asset2vec-<kind>-XXXX``, removed at unregister or exit at the latest.

    The session's first call also removes the folders that crashed or killed processes left behind."""
    global _swept
    with _lock:
        sweep, _swept = not _swept, True
    if sweep:
        tempfolders.remove_stale(PREFIX)
    path = tempfolders.make(f"{PREFIX}{kind}-")
    with _lock:
        _live.add(path)
    return path


def remove(path: Path) -> None:
    """Remove one folder made by :func:`make` (already gone is fine)."""
    shutil.rmtree(path, ignore_errors=True)
    with _lock:
        _live.discard(path)


def remove_all() -> None:
    """Remove every folder still there (session close, Python exit)."""
    with _lock:
        paths = list(_live)
        _live.clear()
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def live() -> list[Path]:
    """The folders made and not removed yet (for tests and diagnostics)."""
    with _lock:
        return sorted(_live)


atexit.register(remove_all)
