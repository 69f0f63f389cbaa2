"""A stable fingerprint of what an asset looks like: its evaluated geometry and its materials.

Unchanged assets hash the same across save and reopen (only stored data is hashed, rounded so float
noise in evaluation cannot flip it); any edit to geometry, modifiers, instancing, UVs, material
assignments, node values, links or image names changes it. Bulk runs use it to skip assets that
were already captured.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .parts import evaluated_parts

#: Positions are rounded to 10 micrometres, UVs to 1e-5.
POSITION_DECIMALS = 5
UV_DECIMALS = 5
#: Node RNA properties that are layout only, never appearance.
_LAYOUT_PROPS = frozenset({
    "name", "label", "location", "location_absolute", "width", "height", "dimensions", "select", "hide",
    "show_options", "show_preview", "show_texture", "use_custom_color", "color", "parent", "bl_idname",
    "bl_label", "bl_description", "bl_icon", "bl_static_type", "bl_width_default", "bl_width_min",
    "bl_width_max", "bl_height_default", "bl_height_min", "bl_height_max", "type", "internal_links", "inputs",
    "outputs", "rna_type", "warning_propagation", "color_tag",
})


def content_hash(target: Any) -> str:
    """sha256 (hex) of ``target``'s evaluated geometry and materials (an Object or a Collection)."""
    with evaluated_parts(target) as parts:
        return hash_parts(parts)


def hash_parts(parts: list[Any]) -> str:
    """Hash evaluated parts (see :class:`blender_addon.parts.Part`) independently of their order."""
    material_cache: dict[str, bytes] = {}
    digests = sorted(_part_digest(p, material_cache) for p in parts)
    h = hashlib.sha256(b"asset2vec-content-v1")
    for d in digests:
        h.update(d)
    return h.hexdigest()


def _part_digest(part: Any, material_cache: dict[str, bytes]) -> bytes:
    mesh = part.mesh
    h = hashlib.sha256()
    n = len(mesh.vertices)
    co = np.empty(n * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    m = np.array(part.matrix, dtype=np.float64)
    world = co.reshape(n, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
    # + 0.0 turns -0.0 into 0.0 so both round to the same bytes.
    h.update((np.round(world, POSITION_DECIMALS) + 0.0).tobytes())
    h.update(_array(mesh.polygons, "loop_total", np.int32))
    h.update(_array(mesh.loops, "vertex_index", np.int32))
    h.update(_array(mesh.polygons, "material_index", np.int32))
    for attr_name in ("sharp_face",):
        attr = mesh.attributes.get(attr_name)
        if attr is not None and attr.domain == "FACE":
            vals = np.empty(len(mesh.polygons), dtype=bool)
            attr.data.foreach_get("value", vals)
            h.update(attr_name.encode() + vals.tobytes())
    uv = mesh.uv_layers.active
    if uv is not None:
        uvs = np.empty(len(mesh.loops) * 2, dtype=np.float32)
        uv.uv.foreach_get("vector", uvs)
        h.update(b"uv" + (np.round(uvs.astype(np.float64), UV_DECIMALS) + 0.0).tobytes())
    for mat in part.materials:
        if mat is None:
            h.update(b"<no material>")
            continue
        if mat.name not in material_cache:
            material_cache[mat.name] = hashlib.sha256(repr(material_signature(mat)).encode()).digest()
        h.update(material_cache[mat.name])
    return h.digest()


def _array(seq: Any, prop: str, dtype: Any) -> bytes:
    out = np.empty(len(seq), dtype=dtype)
    seq.foreach_get(prop, out)
    return out.tobytes()


def material_signature(mat: Any) -> tuple:
    """What a material looks like: its node graph (types, values, links, images) or base values."""
    base = ("material", mat.name, _value(mat.diffuse_color), round(mat.metallic, 5), round(mat.roughness, 5),
            mat.blend_method if hasattr(mat, "blend_method") else "")
    if mat.node_tree is None:
        return base
    return (*base, node_tree_signature(mat.node_tree, set()))


def node_tree_signature(tree: Any, seen: set[str]) -> tuple:
    """Nodes (sorted by name) with their appearance-relevant properties and input values, plus links."""
    if tree.name in seen:  # recursive groups cannot happen in Blender, but be safe
        return ("tree", tree.name)
    seen = seen | {tree.name}
    nodes = []
    for node in sorted(tree.nodes, key=lambda n: n.name):
        props = []
        for prop in node.bl_rna.properties:
            pid = prop.identifier
            if pid in _LAYOUT_PROPS or pid.startswith("bl_"):
                continue
            value = getattr(node, pid, None)
            if prop.type in {"BOOLEAN", "INT", "FLOAT", "ENUM", "STRING"}:
                props.append((pid, _value(value)))
            elif prop.type == "POINTER" and value is not None:
                if pid == "node_tree":
                    props.append((pid, node_tree_signature(value, seen)))
                elif pid == "image":
                    props.append((pid, value.name, value.filepath, tuple(value.size)))
                elif isinstance(getattr(value, "name", None), str):
                    props.append((pid, value.name))
        inputs = [
            (s.identifier, _value(s.default_value)) for s in node.inputs if hasattr(s, "default_value") and s.enabled
        ]
        nodes.append((node.bl_idname, node.name, node.mute, tuple(props), tuple(inputs)))
    links = sorted(
        (lk.from_node.name, lk.from_socket.identifier, lk.to_node.name, lk.to_socket.identifier)
        for lk in tree.links
        if not lk.is_muted
    )
    return ("tree", tuple(nodes), tuple(links))


def _value(v: Any) -> Any:
    """A hashable, rounded representation of an RNA value (floats, vectors, colours, enums)."""
    if isinstance(v, float):
        return round(v, 5) + 0.0
    if isinstance(v, (bool, int, str)) or v is None:
        return v
    if isinstance(v, set):
        return tuple(sorted(v))
    try:
        return tuple(_value(x) for x in v)
    except TypeError:
        return repr(type(v).__name__)
