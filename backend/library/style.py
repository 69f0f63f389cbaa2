"""Decoder renders for exploration: shape-i x texture-j grids, PCA direction strips, PNG image grids.

The renderer is anything with ``render(shape [M, D], texture [M, D], views, image_size) ->
[M, V, H, W, 4]`` (float straight RGBA in [0, 1]), i.e. a :class:`backend.training.run.TrainedRun`.
Grids are composed with Pillow so their pixel size is exact and predictable:
``rows * (H + pad) + pad + top`` by ``cols * (W + pad) + pad + left``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageDraw

from shared import rig

from .catalogue import CodeTable
from .errors import LibraryError

#: A three-quarter view from the middle ring: shows front, side and top at once.
DEFAULT_VIEW_INDEX = 7
LABEL_PX = 14  # height of the label band above columns / width per character is estimated


class Renderer(Protocol):
    def render(self, shape: np.ndarray, texture: np.ndarray, views: list[rig.RigView] | None = None,
               image_size: int = 64) -> np.ndarray: ...


def default_view() -> rig.RigView:
    return rig.views()[DEFAULT_VIEW_INDEX]


def on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite straight RGBA ``[..., 4]`` in [0, 1] over white -> uint8 RGB ``[..., 3]``."""
    rgba = np.clip(np.asarray(rgba, np.float32), 0.0, 1.0)
    if rgba.shape[-1] == 3:
        rgb = rgba
    else:
        a = rgba[..., 3:4]
        rgb = rgba[..., :3] * a + (1.0 - a)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def render_codes(renderer: Renderer, shape: np.ndarray, texture: np.ndarray, image_size: int = 64,
                 view: rig.RigView | None = None) -> np.ndarray:
    """One view of each code pair: ``[M, H, W, 4]`` float in [0, 1]."""
    shape = np.asarray(shape, np.float32).reshape(len(shape), -1)
    texture = np.asarray(texture, np.float32).reshape(len(texture), -1)
    out = np.asarray(renderer.render(shape, texture, views=[view or default_view()], image_size=image_size))
    if out.ndim != 5 or out.shape[:2] != (len(shape), 1) or out.shape[-1] != 4:
        raise LibraryError(f"renderer returned an array of shape {out.shape}, expected [M, 1, H, W, 4]")
    return out[:, 0]


def grid_size(rows: int, cols: int, h: int, w: int, pad: int = 2, labels: bool = False,
              left: int = 0) -> tuple[int, int]:
    """``(width, height)`` in pixels of the PNG :func:`save_grid` writes."""
    top = LABEL_PX if labels else 0
    return cols * (w + pad) + pad + left, rows * (h + pad) + pad + top


def save_grid(
    images: np.ndarray,
    path: str | os.PathLike[str],
    pad: int = 2,
    col_labels: list[str] | None = None,
    row_labels: list[str] | None = None,
    row_label_px: int = 0,
) -> Path:
    """Write images ``[R, C, H, W, 3|4]`` (float [0, 1] or uint8) as one PNG grid on white."""
    images = np.asarray(images)
    if images.ndim != 5 or images.shape[-1] not in (3, 4):
        raise LibraryError(f"image grid must be [rows, cols, H, W, 3|4], got {images.shape}")
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    rgb = on_white(images)
    r, c, h, w, _ = rgb.shape
    left = row_label_px if row_labels else 0
    width, height = grid_size(r, c, h, w, pad, labels=bool(col_labels), left=left)
    canvas = Image.new("RGB", (width, height), "white")
    top = LABEL_PX if col_labels else 0
    draw = ImageDraw.Draw(canvas)
    for i in range(r):
        for j in range(c):
            canvas.paste(Image.fromarray(rgb[i, j]), (left + pad + j * (w + pad), top + pad + i * (h + pad)))
    for j, text in enumerate(col_labels or []):
        draw.text((left + pad + j * (w + pad), 1), _fit(text, w), fill=(0, 0, 0))
    for i, text in enumerate(row_labels or []):
        draw.text((2, top + pad + i * (h + pad) + h // 2 - 5), _fit(text, max(left - 4, 6)), fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    canvas.save(tmp)
    os.replace(tmp, path)
    return path


def _fit(text: str, width_px: int) -> str:
    """Trim a label to roughly fit ``width_px`` with Pillow's default 6 px-wide font.

    Catalogue names are ``<file>/<asset>``: when the whole name does not fit, the asset part is what tells
    the rows apart, so the file part goes first.
    """
    n = max(1, width_px // 6)
    if len(text) > n and "/" in text:
        text = text.rsplit("/", 1)[1]
    return text if len(text) <= n else text[: max(1, n - 1)] + "~"


def style_grid(renderer: Renderer, table: CodeTable, shape_names: list[str], texture_names: list[str] | None = None,
               image_size: int = 64, view: rig.RigView | None = None) -> np.ndarray:
    """Shape of asset i x texture of asset j, rendered by the decoder: ``[len(shapes), len(textures), H, W, 4]``.

    The diagonal (same asset for both) reproduces the assets themselves; off-diagonal cells show
    whether shape and texture really separate.
    """
    texture_names = texture_names or shape_names
    if not shape_names or not texture_names:
        raise LibraryError("a style grid needs at least one asset")
    srows = [table.index_of(n) for n in shape_names]
    trows = [table.index_of(n) for n in texture_names]
    s = np.repeat(table.shape[srows], len(trows), axis=0)
    t = np.tile(table.texture[trows], (len(srows), 1))
    imgs = render_codes(renderer, s, t, image_size, view)
    return imgs.reshape(len(srows), len(trows), *imgs.shape[1:])


def pca_strips(renderer: Renderer, table: CodeTable, half: str, summary: dict[str, Any], n_dirs: int = 4,
               steps: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0), image_size: int = 64,
               view: rig.RigView | None = None) -> np.ndarray:
    """Renders along the first principal directions of one half: ``[n_dirs, len(steps), H, W, 4]``.

    Row d shows ``mean + t * sigma_d * direction_d`` for t in ``steps`` on that half, with the
    other half held at the library's mean code.
    """
    if half not in ("shape", "texture"):
        raise LibraryError(f"half must be 'shape' or 'texture', got {half!r}")
    mean = np.asarray(summary["mean"], np.float32)
    dirs = np.asarray(summary["directions"], np.float32)[:n_dirs]
    sigma = np.asarray(summary["sigma"], np.float32)[:n_dirs]
    varied = np.stack([mean + t * s * d for d, s in zip(dirs, sigma, strict=True) for t in steps])
    other = np.repeat((table.texture if half == "shape" else table.shape).mean(0, keepdims=True), len(varied), 0)
    shape, texture = (varied, other) if half == "shape" else (other, varied)
    imgs = render_codes(renderer, shape, texture, image_size, view)
    return imgs.reshape(len(dirs), len(steps), *imgs.shape[1:])


def png_bytes(rgba: np.ndarray) -> bytes:
    """One image ``[H, W, 4]`` float in [0, 1] as RGBA PNG bytes (thumbnails)."""
    import io

    arr = (np.clip(np.asarray(rgba, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGBA" if arr.shape[-1] == 4 else "RGB").save(buf, format="PNG")
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> ``[H, W, 4]`` float32 in [0, 1]."""
    import io

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGBA"), np.float32) / 255.0
