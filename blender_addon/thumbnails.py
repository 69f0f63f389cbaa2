"""Thumbnails of catalogued assets (similar assets, review questions): PNGs in a private temporary folder, shown
in the panels as Blender preview icons.

Fetching runs in worker threads (no bpy: :meth:`Thumbnails.fetch`); loading a preview is main-thread only
(:meth:`Thumbnails.icon_id`). The session owns one :class:`Thumbnails` and closes it at unregister, which frees
the previews and removes the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from . import tempdirs
from .protocol import client as remote
from .tasks import DONE, FAILED, BackgroundTask


class Thumbnails:
    """The thumbnail cache: one PNG per asset name on disk, one preview per name once drawn."""

    def __init__(self) -> None:
        # Made now, not on first use: worker threads ask for paths concurrently.
        self.folder = tempdirs.make("thumbs")
        self._previews: Any = None

    def path(self, name: str) -> Path:
        """Where the PNG thumbnail of catalogued asset ``name`` is kept."""
        return self.folder / f"{hashlib.sha1(name.encode()).hexdigest()[:16]}.png"

    def fetch(self, client: remote.Client, names: list[str], cancel: threading.Event | None = None) -> int:
        """Download the thumbnails of ``names`` not yet on disk (any thread, no bpy); returns how many were fetched.

        An asset without a thumbnail, or one that cannot be stored, is skipped: the panel then shows it without a
        picture (never a failed Embed). Several threads may fetch the same name at once (an Embed's worker and
        Load Thumbnails): each download goes to its own temporary file, moved into place atomically.
        """
        fetched = 0
        for name in dict.fromkeys(names):
            if cancel is not None and cancel.is_set():
                break
            path = self.path(name)
            if path.is_file():
                continue
            try:
                png = client.thumbnail(name)
            except remote.BackendError:
                continue
            if not self.folder.is_dir():  # closed meanwhile (add-on unregistered)
                break
            try:
                self._store(path, png)
            except OSError:
                continue
            fetched += 1
        return fetched

    def _store(self, path: Path, png: bytes) -> None:
        """Write ``png`` to ``path`` atomically: the panel never loads half a PNG, concurrent writers never clash."""
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(png)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def icon_id(self, name: str) -> int:
        """The preview icon of ``name``'s thumbnail (loaded on first use), or 0 when there is none yet (main thread)."""
        import bpy.utils.previews

        path = self.path(name)
        if self._previews is None:
            self._previews = bpy.utils.previews.new()
        if name not in self._previews:
            if not path.is_file():
                return 0
            self._previews.load(name, str(path), "IMAGE")
        return self._previews[name].icon_id

    def close(self) -> None:
        """Free the previews and remove the folder (add-on unregister)."""
        if self._previews is not None:
            import bpy.utils.previews

            bpy.utils.previews.remove(self._previews)
            self._previews = None
        tempdirs.remove(self.folder)


class ThumbnailFetch(BackgroundTask):
    """Load Thumbnails: fetch the stored similar assets' thumbnails in the background."""

    title = "loading thumbnails"

    def __init__(self, thumbs: Thumbnails, client: remote.Client, names: list[str]) -> None:
        super().__init__(f"loading {len(set(names))} thumbnail(s)")
        self.thumbs, self.client, self.names = thumbs, client, names
        self.fetched = 0

    def work(self) -> None:
        self.fetched = self.thumbs.fetch(self.client, self.names, self.cancel)

    def complete(self) -> None:
        # A missing thumbnail is no failure (the panel shows a placeholder); only say what came.
        self.finish(DONE if self.error is None else FAILED, self.error or f"loaded {self.fetched} thumbnail(s)")
