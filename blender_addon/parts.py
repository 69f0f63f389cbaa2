"""An asset evaluated into plain world-space meshes: what capture renders and content_hash fingerprints.

Its own module so that :mod:`blender_addon.capture` and :mod:`blender_addon.content_hash` both build on
it without importing each other.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix

from .errors import CaptureError

#: Object types whose evaluated data converts to a renderable mesh.
GEOMETRY_TYPES = frozenset({"MESH", "CURVE", "SURFACE", "FONT", "META"})
#: Readable names for object types that can never be an asset on their own.
_NOT_GEOMETRY = {
    "LIGHT": "a light",
    "CAMERA": "a camera",
    "SPEAKER": "a speaker",
    "LIGHT_PROBE": "a light probe",
    "ARMATURE": "an armature",
    "LATTICE": "a lattice",
}

@dataclass
class Part:
    """One piece of the evaluated asset: a temporary mesh placed with a world matrix.

    ``key`` names its origin (object name + instance number) for stable hashing; ``materials``
    are the material slots of the evaluated object (object-linked materials included).
    """

    key: str
    mesh: Any  # bpy.types.Mesh
    matrix: Matrix
    materials: list[Any] = field(default_factory=list)


@dataclass
class Bounds:
    """World-space axis-aligned bounding box of the evaluated geometry and its bounding sphere."""

    min: tuple[float, float, float]
    max: tuple[float, float, float]

    @property
    def size(self) -> tuple[float, float, float]:
        return tuple(b - a for a, b in zip(self.min, self.max, strict=True))  # type: ignore[return-value]

    @property
    def center(self) -> tuple[float, float, float]:
        return tuple((a + b) / 2.0 for a, b in zip(self.min, self.max, strict=True))  # type: ignore[return-value]

    @property
    def radius(self) -> float:
        """Half the box diagonal: the sphere around the box centre that contains the box."""
        return 0.5 * math.sqrt(sum(s * s for s in self.size))


def describe(target: Any) -> str:
    kind = "collection" if isinstance(target, bpy.types.Collection) else "object"
    return f"{kind} {target.name!r}"


def _check_target(target: Any) -> None:
    if isinstance(target, bpy.types.Collection):
        if any(target == scene.collection for scene in bpy.data.scenes):
            raise CaptureError("a scene's own collection is not an asset: pick a collection inside it or an object")
        return
    if not isinstance(target, bpy.types.Object):
        raise CaptureError(f"cannot capture {target!r}: select a mesh object or a collection")
    if target.type in _NOT_GEOMETRY:
        raise CaptureError(
            f"{describe(target)} is {_NOT_GEOMETRY[target.type]}, not geometry: select a mesh object or a "
            f"collection to capture"
        )
    if target.type == "EMPTY" and target.instance_type == "NONE" and not target.children:
        raise CaptureError(
            f"{describe(target)} is an empty with no geometry: select a mesh object, or make the empty "
            f"instance a collection"
        )


@contextlib.contextmanager
def temp_scene(name: str) -> Iterator[Any]:
    """A new scene removed afterwards; the active scene is never changed."""
    scene = bpy.data.scenes.new(name)
    try:
        yield scene
    finally:
        bpy.data.scenes.remove(scene, do_unlink=True)


@contextlib.contextmanager
def evaluated_parts(target: Any) -> Iterator[list[Part]]:
    """Evaluate ``target`` (modifiers, Geometry Nodes, instances) into temporary world-space meshes.

    The target is linked into a temporary scene (so assets that live in no scene work too), its
    depsgraph evaluated, and every visible geometry instance converted with
    ``Mesh.new_from_object``. Instances sharing evaluated data share one temporary mesh. The
    meshes are removed when the context exits.
    """
    _check_target(target)
    meshes: list[Any] = []
    try:
        with temp_scene("Asset2Vec Evaluate") as scene:
            if isinstance(target, bpy.types.Collection):
                scene.collection.children.link(target)
                members = list(target.all_objects)
            else:
                members = [target, *target.children_recursive]
                for ob in members:
                    scene.collection.objects.link(ob)
            for ob in members:
                if ob.mode == "EDIT":  # edit-mode changes live in the edit mesh until flushed
                    ob.update_from_editmode()
            view_layer = scene.view_layers[0]
            view_layer.update()  # allocates and evaluates the scene's depsgraph
            depsgraph = view_layer.depsgraph
            parts: list[Part] = []
            cache: dict[tuple, Any] = {}
            for i, inst in enumerate(depsgraph.object_instances):
                ob = inst.object
                if ob.type not in GEOMETRY_TYPES or (inst.is_instance is False and ob.original.hide_render):
                    continue
                if not inst.is_instance and not inst.show_self:
                    continue  # an emitter/instancer that hides itself
                # Evaluated materials are copies freed with the depsgraph: keep the originals.
                materials = [slot.material.original if slot.material else None for slot in ob.material_slots]
                key = (ob.data.as_pointer() if ob.data else ob.as_pointer(), tuple(m.name if m else "" for m in materials))
                mesh = cache.get(key)
                if mesh is None:
                    mesh = bpy.data.meshes.new_from_object(ob, preserve_all_data_layers=True, depsgraph=depsgraph)
                    meshes.append(mesh)
                    cache[key] = mesh
                if not mesh.vertices:
                    continue
                parts.append(Part(f"{ob.original.name}#{i}" if inst.is_instance else ob.original.name, mesh,
                                  inst.matrix_world.copy(), materials))
        yield parts
    finally:
        for mesh in meshes:
            bpy.data.meshes.remove(mesh)


def world_bounds(parts: list[Part]) -> Bounds:
    """Exact world-space bounding box of the parts' vertices."""
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for part in parts:
        n = len(part.mesh.vertices)
        co = np.empty(n * 3, dtype=np.float32)
        part.mesh.vertices.foreach_get("co", co)
        m = np.array(part.matrix, dtype=np.float64)
        world = co.reshape(n, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
        lo = np.minimum(lo, world.min(axis=0))
        hi = np.maximum(hi, world.max(axis=0))
    return Bounds(tuple(float(v) for v in lo), tuple(float(v) for v in hi))  # type: ignore[arg-type]
