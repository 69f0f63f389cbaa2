"""The Similar Assets list: filter the stored suggestions, and append or link one at the 3D cursor.

Plain functions beside the thin operator (:class:`blender_addon.operators.ASSET2VEC_OT_append_neighbour`) and
the panel (:class:`blender_addon.panels.ASSET2VEC_PT_similar`):

- :func:`matches` / :func:`filter_neighbours`: the panel's text filter over the neighbours stored in the asset's
  metadata (:func:`blender_addon.writeback.neighbours`). A neighbour matches when every word of the filter is
  found in its tags (when the backend sent them; today's wire has none), name, Blender name, category, family
  or .blend name, case-insensitively.
- :func:`add_similar`: append (or link) a suggestion from its .blend and place it the way Blender's own
  Append/Link from the Asset Browser does: at the scene's 3D cursor, selected and active, everything else
  deselected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from .errors import AddonError

#: Keys of a stored neighbour the filter looks at (``tags`` is a list; ``file`` is matched by its file name).
FILTER_KEYS = ("name", "asset_name", "category", "family")


class LinkError(AddonError, ValueError):
    """A similar asset cannot be appended/linked; the message says why."""


# -- the filter (no bpy) ----------------------------------------------------------------------------------


def filter_words(text: str) -> list[str]:
    """The filter's words, lower case: split on spaces and commas ("chair, wood" -> ["chair", "wood"])."""
    return [w for w in text.replace(",", " ").lower().split() if w]


def matches(neighbour: dict[str, Any], text: str) -> bool:
    """Whether a stored neighbour matches the filter ``text`` (every word somewhere; an empty filter: all)."""
    words = filter_words(text)
    if not words:
        return True
    fields = [str(t).lower() for t in neighbour.get("tags") or []]
    fields += [str(neighbour.get(k) or "").lower() for k in FILTER_KEYS]
    fields.append(Path(str(neighbour.get("file") or "")).stem.lower())
    return all(any(w in f for f in fields) for w in words)


def filter_neighbours(neighbours: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The neighbours matching ``text``, in their order (nearest first)."""
    return [n for n in neighbours if matches(n, text)]


# -- append / link at the 3D cursor --------------------------------------------------------------------


def append_from_blend(path: str, name: str, link: bool, scene: Any) -> Any:
    """Append (or link) the object or collection ``name`` from the .blend at ``path`` into ``scene``.

    A collection is added as a child collection when appended, as a collection-instance empty when linked
    (linked data cannot be edited in place); a linked object gets a library override, so it can be placed.
    Returns the new ID (object, collection or instance empty). Raises :class:`LinkError`.
    """
    if not path:
        raise LinkError(f"{name!r} has no source .blend recorded (it was embedded from an unsaved file)")
    abspath = Path(bpy.path.abspath(path))
    if not abspath.is_file():
        raise LinkError(f"the .blend of {name!r} is missing: {abspath} (moved, renamed or on a drive not mounted)")
    if bpy.data.filepath and abspath.resolve() == Path(bpy.data.filepath).resolve():
        raise LinkError(f"{name!r} is in this very file already: find it in the Outliner")
    kind = None
    try:
        with bpy.data.libraries.load(str(abspath), link=link) as (src, dst):
            if name in src.collections:
                dst.collections, kind = [name], "collection"
            elif name in src.objects:
                dst.objects, kind = [name], "object"
    except OSError as e:
        raise LinkError(f"cannot read {abspath}: {e}") from None
    if kind is None:
        raise LinkError(f"{abspath.name} has no object or collection named {name!r} (renamed since it was embedded?)")
    if kind == "object":
        obj = dst.objects[0]
        scene.collection.objects.link(obj)
        if link:  # a linked object cannot be moved: an override of it can (its data stays linked)
            obj = obj.override_create(remap_local_usages=True)
        return obj
    coll = dst.collections[0]
    if not link:
        scene.collection.children.link(coll)
        return coll
    empty = bpy.data.objects.new(coll.name, None)
    empty.instance_type, empty.instance_collection = "COLLECTION", coll
    scene.collection.objects.link(empty)
    return empty


def place_at_cursor(new: Any, scene: Any, view_layer: Any) -> Any:
    """Move what :func:`append_from_blend` added to the 3D cursor, select it and make it active; returns the
    active object.

    An object (or instance empty) gets its origin on the cursor; an appended collection is moved as a whole, its
    origin (``instance_offset``) on the cursor. Only the location changes (the cursor's rotation is ignored).
    """
    cursor = scene.cursor.location.copy()
    if isinstance(new, bpy.types.Collection):
        members = list(new.all_objects)
        roots = [o for o in members if o.parent is None or o.parent not in members]
        offset = cursor - new.instance_offset
        for obj in roots:
            if obj.parent is None:
                obj.location += offset
            else:  # parented to an object outside the collection
                _move_to(obj, obj.matrix_world.translation + offset)
    else:
        members = roots = [new]
        if new.parent is None:
            new.location = cursor
        else:
            _move_to(new, cursor)
    for obj in view_layer.objects:
        obj.select_set(False, view_layer=view_layer)
    shown = [obj for obj in members if _select(obj, view_layer)]
    active = next((o for o in roots if o in shown), None)
    if active is not None:
        view_layer.objects.active = active
    return active


def add_similar(path: str, name: str, link: bool, scene: Any, view_layer: Any) -> Any:
    """Append or link a similar asset at the 3D cursor, selected and active (the operator's work); returns the
    new ID. Raises :class:`LinkError`."""
    new = append_from_blend(path, name, link, scene)
    place_at_cursor(new, scene, view_layer)
    return new


def _select(obj: Any, view_layer: Any) -> bool:
    """Select ``obj`` in ``view_layer``; False when it is not in it (e.g. its collection is excluded there)."""
    try:
        obj.select_set(True, view_layer=view_layer)
    except RuntimeError:
        return False
    return True


def _move_to(obj: Any, location: Any) -> None:
    """Put a parented ``obj``'s origin at world ``location`` (its stored world matrix: right for a saved file)."""
    world = obj.matrix_world.copy()
    world.translation = location
    obj.matrix_world = world
