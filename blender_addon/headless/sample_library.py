"""A procedural furniture library with ground truth, for tests, benchmarks and the demo.

``build_sample_library(out_dir, seed)`` writes chairs.blend, tables.blend, sofas.blend, lamps.blend
(18 assets each: 72 assets), families.blend (a Geometry Nodes parametric table), an asset catalogue
file (blender_assets.cats.txt) and ``ground_truth.json``. Every asset is one mesh object with one
material, marked as an asset with artist tags and a catalogue.

Shape attributes (armrests, base, legs, seats, ...) and texture attributes (colour from a palette
of 6, material kind matte/glossy/metal) are assigned **independently**: each family has all
6 x 3 = 18 colour x material combinations exactly once, shuffled with the seed, and its shape
combinations cycle in a seeded order, so the ground truth tests whether shape and texture codes
really separate. Sizes are real-ish, in metres.
"""

from __future__ import annotations

import json
import math
import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy  # first: importing bpy makes bmesh importable

# isort: split
import bmesh
from mathutils import Matrix

from ..capture import quiet_stdout
from ..errors import AddonError
from ..protocol import metadata

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.05, 0.04),
    "yellow": (0.90, 0.72, 0.05),
    "green": (0.08, 0.55, 0.10),
    "blue": (0.05, 0.15, 0.80),
    "white": (0.90, 0.90, 0.88),
    "black": (0.03, 0.03, 0.03),
}
#: Material kind -> (metallic, roughness).
MATERIALS: dict[str, tuple[float, float]] = {"matte": (0.0, 0.9), "glossy": (0.0, 0.12), "metal": (1.0, 0.3)}
PER_FAMILY = len(COLORS) * len(MATERIALS)  # 18: every texture combination once per family
GROUND_TRUTH = "ground_truth.json"
CATALOG_FILE = "blender_assets.cats.txt"
#: Deterministic catalogue ids: uuid5 of the catalogue path in this namespace.
_CATALOG_NS = uuid.UUID("6f1c4a52-9d0e-4f57-9a53-a2e0c0ffee00")


class SampleLibraryError(AddonError, ValueError):
    """The sample library cannot be written; the message says why."""


@dataclass
class Shape:
    """A built mesh: its bmesh plus the ground-truth shape attributes and artist tags."""

    bm: Any
    attrs: dict[str, Any]
    tags: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# bmesh primitives; every helper builds in place, z up, in metres.


def _box(bm: Any, center: tuple[float, float, float], size: tuple[float, float, float], rot_z: float = 0.0) -> None:
    m = Matrix.Translation(center) @ Matrix.Rotation(rot_z, 4, "Z") @ Matrix.Diagonal((*size, 1.0))
    bmesh.ops.create_cube(bm, size=1.0, matrix=m)


def _cyl(bm: Any, center: tuple[float, float, float], r1: float, depth: float, r2: float | None = None,
         segments: int = 16) -> None:
    bmesh.ops.create_cone(bm, cap_ends=True, segments=segments, radius1=r1, radius2=r1 if r2 is None else r2,
                          depth=depth, matrix=Matrix.Translation(center))


def _sphere(bm: Any, center: tuple[float, float, float], r: float) -> None:
    bmesh.ops.create_uvsphere(bm, u_segments=16, v_segments=8, radius=r, matrix=Matrix.Translation(center))


def _legs(bm: Any, n: int, ring_r: float, height: float, r: float, offset: float = 0.0) -> None:
    for k in range(n):
        a = offset + 2 * math.pi * k / n
        _cyl(bm, (ring_r * math.cos(a), ring_r * math.sin(a), height / 2), r, height, segments=8)


# ---------------------------------------------------------------------------------------------
# families: each returns the combinations of its shape attributes and a builder


def _chair(rng: random.Random, armrests: bool, base: str, back: str) -> Shape:
    bm = bmesh.new()
    w, d, h = rng.uniform(0.42, 0.52), rng.uniform(0.42, 0.50), 0.46
    _box(bm, (0, 0, h), (w, d, 0.06))
    bh = 0.28 if back == "low" else 0.6
    _box(bm, (0, d / 2 - 0.025, h + 0.03 + bh / 2), (w, 0.05, bh))
    if armrests:
        for s in (-1, 1):
            _box(bm, (s * (w / 2 - 0.025), -0.02, h + 0.23), (0.05, d * 0.8, 0.04))
            _box(bm, (s * (w / 2 - 0.025), -d * 0.3, h + 0.12), (0.04, 0.04, 0.2))
    if base == "swivel":
        _cyl(bm, (0, 0, (h + 0.1) / 2), 0.03, h - 0.1)
        for k in range(5):
            a = 2 * math.pi * k / 5
            _box(bm, (0.15 * math.cos(a), 0.15 * math.sin(a), 0.06), (0.3, 0.05, 0.04), rot_z=a)
            _sphere(bm, (0.29 * math.cos(a), 0.29 * math.sin(a), 0.025), 0.025)
    else:
        for sx in (-1, 1):
            for sy in (-1, 1):
                _box(bm, (sx * (w / 2 - 0.03), sy * (d / 2 - 0.03), (h - 0.03) / 2), (0.04, 0.04, h - 0.03))
    tags = ["chair", "seating"] + (["armrests"] if armrests else []) + (["swivel", "office"] if base == "swivel"
                                                                          else ["legs"]) + [f"{back}-back"]
    return Shape(bm, {"armrests": armrests, "base": base, "back": back}, tags)


def _table(rng: random.Random, top: str, legs: int, height: str) -> Shape:
    bm = bmesh.new()
    h = 0.75 if height == "dining" else 0.45
    w = rng.uniform(0.8, 1.2) if height == "dining" else rng.uniform(0.6, 0.9)
    if top == "round":
        _cyl(bm, (0, 0, h - 0.02), w / 2, 0.04, segments=32)
    else:
        _box(bm, (0, 0, h - 0.02), (w, w, 0.04))
    # Four legs go to the corners of a square top; three legs stand on a circle.
    _legs(bm, legs, w * (0.42 if top == "square" and legs == 4 else 0.33), h - 0.04, 0.025,
          offset=math.pi / 4 if legs == 4 else math.pi / 2)
    tags = ["table", f"{top}-top", f"{legs}-legs", "dining-table" if height == "dining" else "coffee-table"]
    return Shape(bm, {"top": top, "legs": legs, "height": height}, tags)


def _sofa(rng: random.Random, seats: int, arms: bool) -> Shape:
    bm = bmesh.new()
    seat_w, d = rng.uniform(0.55, 0.7), rng.uniform(0.85, 0.95)
    arm_w = 0.16 if arms else 0.0
    width = seats * seat_w + 2 * arm_w
    inner = width - 2 * arm_w  # base and back sit between the arms: no coplanar outer faces
    _box(bm, (0, 0, 0.1 + 0.12), (inner, d, 0.24))
    for sx in (-1, 1):
        for sy in (-1, 1):
            _box(bm, (sx * (width / 2 - 0.06), sy * (d / 2 - 0.06), 0.05), (0.05, 0.05, 0.1))
    for k in range(seats):
        x = -seats * seat_w / 2 + (k + 0.5) * seat_w
        _box(bm, (x, -0.08, 0.34 + 0.07), (seat_w - 0.02, d - 0.2, 0.14))
    _box(bm, (0, d / 2 - 0.1, 0.34 + 0.25), (inner, 0.2, 0.5))
    if arms:
        for s in (-1, 1):
            _box(bm, (s * (width / 2 - arm_w / 2), 0, 0.1 + 0.27), (arm_w, d, 0.54))
    tags = ["sofa", "seating", f"{seats}-seater"] + (["armrests"] if arms else ["armless"])
    return Shape(bm, {"seats": seats, "armrests": arms}, tags)


def _lamp(rng: random.Random, kind: str, shade: str) -> Shape:
    bm = bmesh.new()
    s = 1.0 if kind == "floor" else 0.45
    height = rng.uniform(1.5, 1.75) if kind == "floor" else rng.uniform(0.45, 0.55)
    _cyl(bm, (0, 0, 0.015 * s), 0.16 * s, 0.03 * s, segments=24)
    shade_h = 0.3 * s
    pole = height - shade_h * 0.6
    _cyl(bm, (0, 0, pole / 2), 0.015 * s if kind == "floor" else 0.012, pole, segments=8)
    z = height - shade_h / 2
    if shade == "cone":
        _cyl(bm, (0, 0, z), 0.24 * s, shade_h, r2=0.11 * s, segments=24)
    elif shade == "cylinder":
        _cyl(bm, (0, 0, z), 0.18 * s, shade_h, segments=24)
    else:
        _sphere(bm, (0, 0, z), 0.17 * s)
    tags = ["lamp", "lighting", f"{kind}-lamp", f"{shade}-shade"]
    return Shape(bm, {"kind": kind, "shade": shade}, tags)


@dataclass
class Family:
    name: str
    blend: str
    category: str
    combos: list[dict[str, Any]]
    build: Callable[..., Shape]


def _families() -> list[Family]:
    return [
        Family("chair", "chairs.blend", "Furniture/Chairs",
               [{"armrests": a, "base": b, "back": k} for a in (False, True) for b in ("legs", "swivel")
                for k in ("low", "high")], _chair),
        Family("table", "tables.blend", "Furniture/Tables",
               [{"top": t, "legs": n, "height": h} for t in ("round", "square") for n in (3, 4)
                for h in ("dining", "coffee")], _table),
        Family("sofa", "sofas.blend", "Furniture/Sofas",
               [{"seats": s, "arms": a} for s in (2, 3) for a in (False, True)], _sofa),
        Family("lamp", "lamps.blend", "Lighting/Lamps",
               [{"kind": k, "shade": s} for k in ("floor", "desk") for s in ("cone", "cylinder", "sphere")], _lamp),
    ]


#: Every shape attribute of every family: the ones a family does not have are null in the ground truth.
SHAPE_KEYS = ("armrests", "base", "back", "top", "legs", "height", "seats", "kind", "shade")


# ---------------------------------------------------------------------------------------------
# materials, catalogue, saving


def _material(color: str, kind: str) -> Any:
    mat = bpy.data.materials.new(f"{color}_{kind}")
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*COLORS[color], 1.0)
    metallic, roughness = MATERIALS[kind]
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.inputs["Roughness"].default_value = roughness
    mat.diffuse_color = (*COLORS[color], 1.0)  # viewport colour matches the render
    return mat


def catalog_id(path: str) -> str:
    """Deterministic catalogue UUID for a catalogue path such as ``Furniture/Chairs``."""
    return str(uuid.uuid5(_CATALOG_NS, path))


def write_catalog_file(out_dir: Path, paths: list[str]) -> Path:
    """Blender's asset catalogue definition file, so the asset browser shows the categories."""
    lines = ["# This is an Asset Catalog Definition file for Blender.", "", "VERSION 1", ""]
    lines += [f"{catalog_id(p)}:{p}:{p.replace('/', '-')}" for p in sorted(set(paths))]
    target = out_dir / CATALOG_FILE
    _atomic_text(target, "\n".join(lines) + "\n")
    return target


def read_catalog_file(folder: Path) -> dict[str, str]:
    """``{catalogue uuid: catalogue path}`` from the nearest blender_assets.cats.txt at or above ``folder``."""
    for d in [folder, *folder.parents]:
        f = d / CATALOG_FILE
        if f.is_file():
            out = {}
            for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split(":")
                if len(parts) >= 2 and not line.startswith(("#", "VERSION")):
                    out[parts[0].strip()] = parts[1].strip()
            return out
    return {}


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_blend_atomic(path: Path) -> None:
    """Save the session as ``path`` via a temporary file in the same folder and ``os.replace``."""
    tmp = path.with_name(f".{path.stem}.tmp.blend")
    with quiet_stdout(True):
        bpy.ops.wm.save_as_mainfile(filepath=str(tmp), check_existing=False, compress=False)
    os.replace(tmp, path)


def mark_asset(obj: Any, tags: list[str], category: str, description: str = "") -> None:
    """Mark ``obj`` as an asset with artist tags and a catalogue."""
    obj.asset_mark()
    for t in tags:
        if t not in obj.asset_data.tags:
            obj.asset_data.tags.new(t)
    obj.asset_data.catalog_id = catalog_id(category)
    if description:
        obj.asset_data.description = description


def _new_object(name: str, bm: Any, mat: Any, location: tuple[float, float, float]) -> Any:
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    mesh.materials.append(mat)
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    bpy.context.scene.collection.objects.link(obj)
    return obj


def build_sample_library(out_dir: str | os.PathLike[str], seed: int = 0) -> dict[str, Any]:
    """Build the library into ``out_dir`` and return the ground truth (also written as ground_truth.json).

    Resets the Blender session (headless use only). Deterministic for a given ``seed``.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SampleLibraryError(f"cannot create the library folder {out}: {e.strerror or e}") from None
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    families = _families()
    for fam in families:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        mats = {(c, k): _material(c, k) for c in COLORS for k in MATERIALS}
        textures = list(mats)
        rng.shuffle(textures)
        order = list(fam.combos)
        rng.shuffle(order)
        for i in range(PER_FAMILY):
            combo = order[i % len(order)]
            color, kind = textures[i]
            shape = fam.build(rng, **combo)
            name = f"{fam.name.capitalize()}_{i:02d}"
            obj = _new_object(name, shape.bm, mats[(color, kind)], ((i % 6) * 2.5, (i // 6) * 2.5, 0.0))
            size = [round(float(v), 4) for v in obj.dimensions]
            mark_asset(obj, [*shape.tags, color, kind], fam.category, f"{color} {kind} {fam.name}")
            records.append({
                "name": name, "blend": fam.blend, "family": fam.name, "category": fam.category,
                "tags": [t.name for t in obj.asset_data.tags], "size": size,
                "shape": {k: shape.attrs.get(k) for k in SHAPE_KEYS},
                "texture": {"color": color, "material": kind},
            })
        # Unused materials would be dropped on save anyway; remove them so files are tidy.
        for mat in mats.values():
            if mat.users == 0:
                bpy.data.materials.remove(mat)
        save_blend_atomic(out / fam.blend)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    param_obj = build_parametric_table()
    family_records = [{
        "name": param_obj.name, "blend": "families.blend", "family": param_obj[metadata.FAMILY_NAME],
        "category": "Furniture/Tables", "parameters": sorted(_param_keys(param_obj)),
    }]
    save_blend_atomic(out / "families.blend")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    write_catalog_file(out, [f.category for f in families])
    truth = {"seed": seed, "shape_keys": list(SHAPE_KEYS), "colors": list(COLORS), "materials": list(MATERIALS),
             "assets": records, "families": family_records}
    _atomic_text(out / GROUND_TRUTH, json.dumps(truth, indent=1))
    return truth


def _param_keys(obj: Any) -> list[str]:
    from ..family import discover_parameters

    return [p.key for p in discover_parameters(obj)]


# ---------------------------------------------------------------------------------------------
# the parametric family: a Geometry Nodes table


def build_parametric_table(name: str = "ParametricTable") -> Any:
    """A Geometry Nodes table with Width/Depth/Height/Legs inputs, a hue material parameter and a
    custom property ``a2v_top_thickness`` that drives the top's thickness through a driver."""
    ng = bpy.data.node_groups.new("A2V Parametric Table", "GeometryNodeTree")
    iface = ng.interface
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    sockets = {}
    for sname, stype, default, lo, hi in (
        ("Width", "NodeSocketFloat", 1.0, 0.6, 1.6),
        ("Depth", "NodeSocketFloat", 0.8, 0.5, 1.0),
        ("Height", "NodeSocketFloat", 0.75, 0.4, 1.0),
        ("Legs", "NodeSocketInt", 4, 3, 6),
        ("Top Thickness", "NodeSocketFloat", 0.04, 0.02, 0.1),
    ):
        s = iface.new_socket(sname, in_out="INPUT", socket_type=stype)
        s.default_value, s.min_value, s.max_value = default, lo, hi
        sockets[sname] = s
    nodes, links = ng.nodes, ng.links
    gin, gout = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")

    def math_node(op: str, a: Any, b: float) -> Any:
        n = nodes.new("ShaderNodeMath")
        n.operation = op
        links.new(a, n.inputs[0])
        n.inputs[1].default_value = b
        return n.outputs[0]

    def xyz(x: Any, y: Any, z: Any) -> Any:
        n = nodes.new("ShaderNodeCombineXYZ")
        for sock, v in zip(n.inputs, (x, y, z), strict=True):
            if isinstance(v, (int, float)):
                sock.default_value = v
            else:
                links.new(v, sock)
        return n.outputs[0]

    def transform(geo: Any, translation: Any = None, scale: Any = None) -> Any:
        n = nodes.new("GeometryNodeTransform")
        links.new(geo, n.inputs["Geometry"])
        if translation is not None:
            links.new(translation, n.inputs["Translation"])
        if scale is not None:
            links.new(scale, n.inputs["Scale"])
        return n.outputs[0]

    W, D, H = gin.outputs["Width"], gin.outputs["Depth"], gin.outputs["Height"]
    T = gin.outputs["Top Thickness"]
    top = nodes.new("GeometryNodeMeshCube")
    links.new(xyz(W, D, T), top.inputs["Size"])
    # The top's centre sits at Height - Thickness / 2.
    half_t = math_node("MULTIPLY", T, 0.5)
    sub = nodes.new("ShaderNodeMath")
    sub.operation = "SUBTRACT"
    links.new(H, sub.inputs[0])
    links.new(half_t, sub.inputs[1])
    top_geo = transform(top.outputs["Mesh"], translation=xyz(0.0, 0.0, sub.outputs[0]))
    circle = nodes.new("GeometryNodeMeshCircle")
    links.new(gin.outputs["Legs"], circle.inputs["Vertices"])
    circle.inputs["Radius"].default_value = 1.0
    ring = transform(circle.outputs["Mesh"], scale=xyz(math_node("MULTIPLY", W, 0.4), math_node("MULTIPLY", D, 0.4),
                                                         1.0))
    # Legs end under the top (height H - T): coplanar caps on the top's face would render as speckles.
    leg_h = nodes.new("ShaderNodeMath")
    leg_h.operation = "SUBTRACT"
    links.new(H, leg_h.inputs[0])
    links.new(T, leg_h.inputs[1])
    leg = nodes.new("GeometryNodeMeshCylinder")
    leg.inputs["Vertices"].default_value = 12
    leg.inputs["Radius"].default_value = 0.025
    links.new(leg_h.outputs[0], leg.inputs["Depth"])
    leg_geo = transform(leg.outputs["Mesh"], translation=xyz(0.0, 0.0, math_node("MULTIPLY", leg_h.outputs[0], 0.5)))
    inst = nodes.new("GeometryNodeInstanceOnPoints")
    links.new(ring, inst.inputs["Points"])
    links.new(leg_geo, inst.inputs["Instance"])
    real = nodes.new("GeometryNodeRealizeInstances")
    links.new(inst.outputs[0], real.inputs[0])
    join = nodes.new("GeometryNodeJoinGeometry")
    links.new(real.outputs[0], join.inputs[0])
    links.new(top_geo, join.inputs[0])
    setmat = nodes.new("GeometryNodeSetMaterial")
    links.new(join.outputs[0], setmat.inputs["Geometry"])
    links.new(setmat.outputs[0], gout.inputs[0])

    mat = bpy.data.materials.new("ParametricTable_wood")
    mt = mat.node_tree
    hsv = mt.nodes.new("ShaderNodeHueSaturation")
    hsv.inputs["Color"].default_value = (0.8, 0.1, 0.05, 1.0)
    # Only the hue is a family parameter; its range is given explicitly (the socket reports none).
    hsv[metadata.MATERIAL_PARAM_MARK] = {"Hue": [0.0, 1.0]}
    mt.links.new(hsv.outputs[0], mt.nodes["Principled BSDF"].inputs["Base Color"])
    setmat.inputs["Material"].default_value = mat

    mesh = bpy.data.meshes.new(name)
    mesh.materials.append(mat)
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    mod = obj.modifiers.new("Table", "NODES")
    mod.node_group = ng
    # A custom-property parameter: drives the Top Thickness input (which is then not a GN parameter).
    prop = f"{metadata.FAMILY_PARAM_PREFIX}top_thickness"
    obj[prop] = 0.04
    obj.id_properties_ui(prop).update(min=0.02, max=0.1, soft_min=0.02, soft_max=0.1)
    fcurve = mod.driver_add(f'["{sockets["Top Thickness"].identifier}"]')
    drv = fcurve.driver
    drv.type = "AVERAGE"
    var = drv.variables.new()
    var.targets[0].id = obj
    var.targets[0].data_path = f'["{prop}"]'
    obj[metadata.FAMILY_NAME] = "Parametric Table"
    mark_asset(obj, ["table", "parametric"], "Furniture/Tables", "Geometry Nodes table family")
    return obj
