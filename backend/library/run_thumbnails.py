"""The captured thumbnail views of a run's assets, kept beside its codes (``RUN/thumbnails.npz``).

A run whose training bundles are not in the home (the starter model, built from sample-library captures in a
cache) carries each asset's thumbnail view (:data:`shared.api.THUMBNAIL_VIEW`, the PNG bytes from its bundle) in
this file, so :func:`backend.library.catalogue.import_run` stores them with the codes and the service answers
``GET /assets/{name}/thumbnail`` with the captured view instead of rendering one through the decoder.

Format: one ``.npz`` of plain arrays, read with ``allow_pickle=False``: ``names`` (unicode), ``offsets`` (int64,
``len(names) + 1``) and ``data`` (uint8, the PNGs one after the other: asset ``i`` is
``data[offsets[i]:offsets[i + 1]]``). A run without the file (an older starter model) has no stored thumbnails.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from shared.atomic import atomic_write

THUMBNAILS_FILE = "thumbnails.npz"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

log = logging.getLogger(__name__)


def write_thumbnails(path: str | os.PathLike[str], pngs: Mapping[str, bytes]) -> int:
    """Write ``{asset name: PNG bytes}`` to ``path`` atomically (sorted by name); returns how many."""
    names = sorted(pngs)
    sizes = np.array([len(pngs[n]) for n in names], np.int64)
    offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(sizes, dtype=np.int64)])
    data = np.frombuffer(b"".join(pngs[n] for n in names), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, names=np.array(names, dtype=str if names else "<U1"), offsets=offsets, data=data)
    atomic_write(Path(path), buf.getvalue())
    return len(names)


def read_thumbnails(run_dir: str | os.PathLike[str] | None) -> dict[str, bytes]:
    """The thumbnails stored in ``run_dir`` (``{}`` without the file). A damaged file is logged and ignored: the
    service then renders thumbnails through the decoder as it did before the file existed."""
    if run_dir is None:
        return {}
    path = Path(run_dir) / THUMBNAILS_FILE
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            names, offsets, data = z["names"], z["offsets"], z["data"]
        if names.ndim != 1 or names.dtype.kind != "U" or offsets.shape != (len(names) + 1,) \
                or data.dtype != np.uint8 or offsets[0] != 0 or offsets[-1] != data.size or np.any(np.diff(offsets) < 0):
            raise ValueError("its arrays do not fit together")
        raw = data.tobytes()
        out = {str(n): raw[int(a):int(b)] for n, a, b in zip(names, offsets[:-1], offsets[1:], strict=True)}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        log.warning("ignoring the stored thumbnails %s (%s): thumbnails are rendered by the decoder instead", path, e)
        return {}
    return {n: png for n, png in out.items() if png.startswith(PNG_MAGIC)}
