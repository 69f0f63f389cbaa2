"""Small *real* view bundles of analytic scenes, ray-cast with numpy, for tests that must not wait for Blender.

Each scene is a few coloured primitives (spheres, axis-aligned boxes, Z-aligned cylinders)
inside the unit sphere, lit by a fixed directional light (so views differ in shading). Views use
the real rig (:mod:`shared.rig`) and are written as RGBA PNGs with ``shared.bundle.write_transforms``,
so :func:`shared.bundle.read_bundle` validates them like any captured asset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shared import bundle as B
from shared import rig

LIGHT = np.array([0.4, -0.5, 0.77]) / np.linalg.norm([0.4, -0.5, 0.77])


@dataclass
class Primitive:
    kind: str  # "sphere" | "box" | "cylinder"
    centre: tuple[float, float, float]
    size: tuple[float, float, float]  # sphere: (r, _, _); box: half extents; cylinder: (r, _, half height)
    colour: tuple[float, float, float]


def _hit(p: Primitive, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance ``[N]`` (inf on a miss) and normal ``[N, 3]`` of rays ``o, d [N, 3]`` against one primitive."""
    c = np.asarray(p.centre)
    oc = o - c
    n = np.zeros_like(o)
    if p.kind == "sphere":
        r = p.size[0]
        b = (oc * d).sum(-1)
        disc = b * b - ((oc * oc).sum(-1) - r * r)
        t = np.where(disc > 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf)
        t = np.where(t > 0, t, np.inf)
        n = oc + np.where(np.isfinite(t), t, 0.0)[:, None] * d
        n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
        return t, n
    if p.kind == "box":
        h = np.asarray(p.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-h - oc) / d, (h - oc) / d
        tn = np.minimum(t1, t2)
        tf = np.maximum(t1, t2)
        t_near, axis = tn.max(-1), tn.argmax(-1)
        t = np.where((t_near < tf.min(-1)) & (t_near > 0), t_near, np.inf)
        n[np.arange(len(o)), axis] = -np.sign(d[np.arange(len(o)), axis])
        return t, n
    if p.kind == "cylinder":
        r, hz = p.size[0], p.size[2]
        a = d[:, 0] ** 2 + d[:, 1] ** 2
        b = oc[:, 0] * d[:, 0] + oc[:, 1] * d[:, 1]
        cc = oc[:, 0] ** 2 + oc[:, 1] ** 2 - r * r
        disc = b * b - a * cc
        with np.errstate(divide="ignore", invalid="ignore"):
            ts = (-b - np.sqrt(np.maximum(disc, 0))) / a
        z = oc[:, 2] + ts * d[:, 2]
        side = (disc > 0) & (ts > 0) & (np.abs(z) <= hz)
        t = np.where(side, ts, np.inf)
        ns = np.stack([oc[:, 0] + ts * d[:, 0], oc[:, 1] + ts * d[:, 1], np.zeros(len(o))], -1) / r
        with np.errstate(divide="ignore", invalid="ignore"):
            tc = (np.sign(oc[:, 2]) * hz - oc[:, 2]) / d[:, 2]
        xy = oc[:, :2] + tc[:, None] * d[:, :2]
        cap = (tc > 0) & ((xy**2).sum(-1) <= r * r) & (tc < t)
        t = np.where(cap, tc, t)
        n = np.where(cap[:, None], np.stack([0 * tc, 0 * tc, np.sign(oc[:, 2])], -1), ns)
        return t, n
    raise ValueError(f"unknown primitive {p.kind!r}")


def render_view(prims: list[Primitive], c2w: list[list[float]], size: int, supersample: int = 2) -> np.ndarray:
    """Straight RGBA ``[size, size, 4]`` uint8 of the scene from one camera (OpenGL convention)."""
    m = np.asarray(c2w)
    s = size * supersample
    f = rig.focal_length_px(s)
    idx = np.arange(s) + 0.5
    v, u = np.meshgrid(idx, idx, indexing="ij")
    dc = np.stack([(u - s / 2) / f, -(v - s / 2) / f, -np.ones_like(u)], -1).reshape(-1, 3)
    d = dc @ m[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(m[:3, 3], d.shape)
    best = np.full(len(d), np.inf)
    rgb = np.zeros((len(d), 3))
    for p in prims:
        t, n = _hit(p, o, d)
        closer = t < best
        shade = 0.35 + 0.65 * np.clip((n * LIGHT).sum(-1), 0, 1)
        rgb[closer] = np.asarray(p.colour)[None, :] * shade[closer, None]
        best = np.where(closer, t, best)
    alpha = np.isfinite(best).astype(np.float64)
    # box-filter the supersamples on premultiplied colour, then un-premultiply for the PNG
    pre = np.concatenate([rgb * alpha[:, None], alpha[:, None]], -1).reshape(size, supersample, size, supersample, 4)
    pre = pre.mean(axis=(1, 3))
    a = pre[..., 3:]
    straight = np.where(a > 0, pre[..., :3] / np.maximum(a, 1e-9), 0.0)
    out = np.concatenate([straight, a], -1)
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def write_bundle(folder: Path, name: str, prims: list[Primitive], size: int = 32, **asset_fields) -> Path:
    """Render the 18 rig views of ``prims`` into ``folder`` as a bundle; returns the folder."""
    folder = Path(folder)
    (folder / B.VIEWS_DIR).mkdir(parents=True, exist_ok=True)
    for fr, view in zip(B.rig_frames(), rig.views(), strict=True):
        Image.fromarray(render_view(prims, view.camera_to_world(), size), "RGBA").save(folder / fr.file_path)
    B.write_transforms(folder, size, B.AssetInfo(name=name, **asset_fields))
    return folder


COLOURS = {
    "red": (0.85, 0.15, 0.1),
    "green": (0.15, 0.7, 0.2),
    "blue": (0.15, 0.3, 0.85),
    "yellow": (0.9, 0.8, 0.15),
}


def scene(kind: str, colour: str) -> list[Primitive]:
    """One of a few simple asset-like scenes in a named colour."""
    c = COLOURS[colour]
    if kind == "ball":
        return [Primitive("sphere", (0, 0, 0), (0.7, 0, 0), c)]
    if kind == "crate":
        return [Primitive("box", (0, 0, 0), (0.5, 0.4, 0.35), c)]
    if kind == "pillar":
        return [Primitive("cylinder", (0, 0, 0), (0.3, 0, 0.8), c)]
    if kind == "table":  # a top on a central column: a two-part shape
        return [
            Primitive("box", (0, 0, 0.3), (0.7, 0.5, 0.08), c),
            Primitive("cylinder", (0, 0, -0.3), (0.12, 0, 0.55), c),
        ]
    raise ValueError(f"unknown scene {kind!r}")


def make_library(root: Path, items: list[tuple[str, str]], size: int = 32) -> list[Path]:
    """Write one bundle per ``(kind, colour)`` under ``root/<kind>_<colour>``; returns the folders."""
    return [
        write_bundle(Path(root) / f"{k}_{c}", f"{k}_{c}", scene(k, c), size, category=k, tags=[k, c])
        for k, c in items
    ]
