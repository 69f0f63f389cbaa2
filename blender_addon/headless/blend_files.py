""".blend files opened headless: refuse a bad file before Blender reads it, open it, list its assets.

One set of helpers for every headless path that opens an artist's file (``asset2vec capture``, the
library index's capture stage, the bulk tagger), so they refuse the same files with the same words.
Errors are :class:`~blender_addon.errors.BlendFileError`; their messages do not name the file (a
caller reporting many files prefixes the path).
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import bpy

from ..capture import quiet_stdout
from ..errors import BlendFileError, CaptureError

#: Magic bytes of an uncompressed, gzip- or zstd-compressed .blend.
_MAGICS = (b"BLENDER", b"\x1f\x8b", b"\x28\xb5\x2f\xfd")


def blend_version(head: bytes) -> int | None:
    """Blender version (e.g. 500 for 5.0) that wrote an uncompressed .blend, from its header, or None.

    Headers are ``BLENDER-v402`` (pointer size, endianness, 3 digits) or, from 5.0 on,
    ``BLENDER17-01v0500`` (header size, format version, endianness, 4 digits).
    """
    m = re.match(rb"BLENDER(?:[-_][vV](\d{3})|\d\d-\d\d[vV](\d{4}))", head)
    return None if m is None else int(m.group(1) or m.group(2))


def is_read_only(path: Path) -> bool:
    """No owner write bit. Checked on the bits, not by trying: root may write anyway, but the owner said no."""
    return not (path.stat().st_mode & stat.S_IWUSR)


def _newer(major: int, minor: int) -> str:
    return (f"saved by Blender {major}.{minor}, newer than this Blender {bpy.app.version_string}: open it with a "
            f"Blender at least that new (or update bpy)")


def check_blend(path: Path, writable: bool = False) -> None:
    """Refuse a file before Blender reads it: missing, unreadable, not a .blend, from a newer Blender.

    ``writable`` also refuses a read-only file (a tagger must not propose changes it cannot make).
    """
    if not path.is_file():
        raise BlendFileError("no such .blend file")
    try:
        with path.open("rb") as f:
            head = f.read(17)
    except OSError as e:
        raise BlendFileError(f"cannot read it ({e.strerror or e}): check its permissions or whether another "
                             f"program locks it") from None
    if not head.startswith(_MAGICS):
        raise BlendFileError("not a .blend file, or it is corrupt (its header is wrong); restore it from a backup")
    saved_by = blend_version(head)
    mine = bpy.app.version[0] * 100 + bpy.app.version[1]
    if saved_by is not None and saved_by > mine:
        raise BlendFileError(_newer(saved_by // 100, saved_by % 100))
    if writable and is_read_only(path):
        raise BlendFileError("it is read-only (no write permission for its owner): make it writable "
                             "(chmod u+w) to tag it, or leave it out")


def load_blend(path: Path) -> None:
    """Open ``path`` headless (no UI) without checks first; a file Blender cannot read raises BlendFileError."""
    try:
        with quiet_stdout(True, fds=(1, 2)):
            bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
    except RuntimeError as e:
        # Blender's message repeats the path ("Loading '...' failed: Failed to read '...': Missing DNA block").
        detail = str(e).strip().splitlines()[-1].rsplit(": ", 1)[-1] if str(e).strip() else "unknown error"
        raise BlendFileError(f"Blender {bpy.app.version_string} cannot open it ({detail}): it may be truncated, "
                             f"corrupt or saved by a newer Blender; restore it from a backup") from None
    # A compressed file's header cannot be read before opening, so check_blend could not see its version.
    saved = tuple(bpy.data.version[:2])
    if saved > tuple(bpy.app.version[:2]):
        raise BlendFileError(_newer(*saved))


def open_blend(path: Path, writable: bool = False) -> None:
    """:func:`check_blend` then :func:`load_blend`."""
    check_blend(path, writable)
    load_blend(path)


def marked_assets(asset: str | None = None, all_objects: bool = False) -> list[Any]:
    """Marked object and collection assets of the open file (local only), sorted by kind and name.

    ``asset`` picks one object or collection by name instead (marked or not; CaptureError when there
    is none). ``all_objects`` adds every unmarked top-level mesh object (no parent), which the bulk
    tagger then tags through its ``asset2vec`` custom property only (it is not marked as an asset).
    """
    if asset:
        found = bpy.data.objects.get(asset) or bpy.data.collections.get(asset)
        if found is None:
            raise CaptureError(f"no object or collection named {asset!r} in {bpy.data.filepath}")
        return [found]
    items = [ob for ob in bpy.data.objects if ob.asset_data is not None and ob.library is None]
    items += [c for c in bpy.data.collections if c.asset_data is not None and c.library is None]
    if all_objects:
        items += [ob for ob in bpy.data.objects if ob.asset_data is None and ob.library is None and ob.type == "MESH"
                  and ob.parent is None and ob.users_scene]
    return sorted(items, key=lambda i: (type(i).__name__, i.name))
