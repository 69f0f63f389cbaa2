"""A contact sheet: one row per bundle, its 18 views side by side, on a checkerboard for alpha."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from shared.bundle import read_bundle


def write_contact_sheet(bundle_dirs: Sequence[Path], out: Path, max_rows: int = 24, cell: int = 64) -> Path:
    """Write a PNG with ``max_rows`` bundles (evenly picked) x 18 views, each ``cell`` px square."""
    dirs = [d for d in bundle_dirs if (d / "transforms.json").is_file()]
    if not dirs:
        raise ValueError("no bundles to show on the contact sheet")
    step = max(1, len(dirs) // max_rows)
    dirs = dirs[::step][:max_rows]
    first = read_bundle(dirs[0])
    cols = len(first.frames)
    sheet = Image.new("RGB", (cols * cell, len(dirs) * cell), "white")
    checker = _checker(cell)
    for r, d in enumerate(dirs):
        b = read_bundle(d)
        for c in range(cols):
            view = Image.open(io.BytesIO(b.image_bytes(c))).convert("RGBA").resize((cell, cell), Image.LANCZOS)
            tile = checker.copy()
            tile.alpha_composite(view)
            sheet.paste(tile.convert("RGB"), (c * cell, r * cell))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    sheet.save(tmp)
    tmp.replace(out)
    return out


def _checker(cell: int, square: int = 8) -> Image.Image:
    img = Image.new("RGBA", (cell, cell), (255, 255, 255, 255))
    px = img.load()
    for y in range(cell):
        for x in range(cell):
            if (x // square + y // square) % 2:
                px[x, y] = (225, 225, 225, 255)
    return img
