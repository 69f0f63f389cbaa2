"""Small builders for test scenes (real bpy data, nothing mocked)."""

from __future__ import annotations

from typing import Any

import bpy  # first: importing bpy makes bmesh importable

# isort: split
import bmesh
import numpy as np
from mathutils import Matrix
from PIL import Image


def box(name: str = "Box", size: tuple[float, float, float] = (1.0, 1.0, 1.0),
        location: tuple[float, float, float] = (0.0, 0.0, 0.0), color: tuple[float, float, float] = (0.8, 0.05, 0.02),
        link: bool = True) -> Any:
    """An axis-aligned box mesh object of ``size`` metres centred at ``location`` with a coloured material."""
    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0, matrix=Matrix.Diagonal((*size, 1.0)))
    bm.to_mesh(mesh)
    bm.free()
    mat = bpy.data.materials.new(f"{name}_mat")
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*color, 1.0)
    mesh.materials.append(mat)
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    if link:
        bpy.context.scene.collection.objects.link(obj)
    return obj


def alpha(path: Any) -> np.ndarray:
    """The alpha channel of an RGBA PNG as a float array in 0..1, shape (H, W)."""
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        return np.asarray(im, dtype=np.float32)[..., 3] / 255.0


def rgba(path: Any) -> np.ndarray:
    """An RGBA PNG as a uint8 array, shape (H, W, 4)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))
