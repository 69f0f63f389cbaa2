"""The add-on's per-scene settings: ``bpy.types.Scene.asset2vec`` (an :class:`Asset2VecSettings`).

The view size and samples are not per scene: they are one setting in the add-on preferences
(:mod:`blender_addon.preferences`); the scene's ``capture_size``/``capture_samples`` read and write that setting.
"""

from __future__ import annotations

from typing import Any

import bpy
from bpy.app.handlers import persistent
from bpy.props import BoolProperty, EnumProperty, IntProperty, PointerProperty, StringProperty

from . import preferences
from .protocol import bundle


# The scene's view size/samples read and write the preferences' (module functions: lambdas in the annotations
# could not see this module's names when Blender called them).
def _preference(name: str, default: int) -> int:
    prefs = preferences.get()
    return int(getattr(prefs, name)) if prefs is not None else default


def _set_preference(name: str, value: int) -> None:
    prefs = preferences.get()
    if prefs is not None:
        setattr(prefs, name, value)


def _get_size(_settings: Any) -> int:
    return _preference("capture_size", 128)


def _set_size(_settings: Any, value: int) -> None:
    _set_preference("capture_size", value)


def _get_samples(_settings: Any) -> int:
    return _preference("capture_samples", 16)


def _set_samples(_settings: Any, value: int) -> None:
    _set_preference("capture_samples", value)


class Asset2VecSettings(bpy.types.PropertyGroup):
    """Capture and Embed settings shown in the Asset2Vec sidebar tab (saved with the scene)."""

    # The view size and samples are ONE setting, in the add-on preferences (what Embed and Bulk Tag use, and the
    # Capture panel shows). These two only read and write it, so scripts that set them keep working; a value an
    # older file stored here is taken over once (:func:`migrate_view_settings`).
    capture_size: IntProperty(  # type: ignore[valid-type]
        name="View Size",
        description="The add-on preferences' View Size (one setting for Capture, Embed and Bulk Tag)",
        default=128, min=bundle.MIN_IMAGE_SIZE, max=bundle.MAX_IMAGE_SIZE,
        get=_get_size, set=_set_size,
    )
    capture_samples: IntProperty(  # type: ignore[valid-type]
        name="Samples",
        description="The add-on preferences' Samples (one setting for Capture, Embed and Bulk Tag)",
        default=16, min=1, max=4096,
        get=_get_samples, set=_set_samples,
    )
    output_dir: StringProperty(  # type: ignore[valid-type]
        name="Output Folder",
        description="Folder that receives one view bundle per captured asset ('//' means next to the .blend)",
        default="//asset2vec_views",
        subtype="DIR_PATH",
        options={"PATH_SUPPORTS_BLEND_RELATIVE"},
    )
    capture_target: EnumProperty(  # type: ignore[valid-type]
        name="Capture",
        description="What the Capture button renders",
        items=(
            ("OBJECT", "Active Object", "The active object (with its modifiers, instances and children)"),
            ("COLLECTION", "Active Collection", "Every object of the active collection"),
        ),
        default="OBJECT",
    )
    embed_mode: EnumProperty(  # type: ignore[valid-type]
        name="Embed",
        description="Embed the asset itself or sample variants of its parametric family",
        items=(
            ("ASSET", "Asset", "The active object or collection as it is"),
            ("FAMILY", "Family", "N variants of the active object's parametric family (its bounded inputs)"),
        ),
        default="ASSET",
    )
    family_variants: IntProperty(  # type: ignore[valid-type]
        name="Variants", description="How many variants of the family to capture and embed", default=4, min=1,
        max=256,
    )
    family_sampling: EnumProperty(  # type: ignore[valid-type]
        name="Sampling",
        items=(("grid", "Grid", "Evenly spaced values, extremes included"),
               ("random", "Random", "Uniform within each input's range")),
        default="grid",
    )
    auto_accept: BoolProperty(  # type: ignore[valid-type]
        name="Add Tags Above Threshold",
        description="Add predicted tags above the backend's threshold to the asset's tags (recorded as predicted, "
                    "removable with 'Remove Predicted Tags')",
        default=True,
    )
    mark_as_asset: BoolProperty(  # type: ignore[valid-type]
        name="Mark as Asset",
        description="Mark the object/collection as an asset if it is not one yet (otherwise the results are kept in "
                    "its custom property only)",
        default=False,
    )
    save_after: BoolProperty(  # type: ignore[valid-type]
        name="Save After Embedding",
        description="Save the .blend with Blender's own save when the embed finishes",
        default=False,
    )
    similar_space: EnumProperty(  # type: ignore[valid-type]
        name="Similar In",
        items=(("shape", "Shape", "Nearest in shape"), ("texture", "Texture", "Nearest in texture/material"),
               ("both", "Both", "Nearest in shape and texture")),
        default="both",
    )
    link_neighbours: BoolProperty(  # type: ignore[valid-type]
        name="Link", description="Link similar assets from their .blend instead of appending a copy", default=False,
    )
    similar_filter: StringProperty(  # type: ignore[valid-type]
        name="Filter",
        description="Show only the similar assets matching every word typed here, in their tags, name, category, "
                    "family or .blend name",
        default="",
        options={"TEXTEDIT_UPDATE"},
    )


#: The scene settings that moved to the add-on preferences (the same property names there).
MOVED_TO_PREFERENCES = ("capture_size", "capture_samples")


def migrate_view_settings(scenes: Any = None) -> list[str]:
    """Take over, once, a view size/samples an older .blend stored in its scene settings.

    The stored value goes to the preferences only while the artist has never set the preferences' own (so a
    file never overrides a choice made there), and is then deleted from the scene, so this happens once per
    file. Returns what was taken over (``"capture_size=64"``...).
    """
    prefs = preferences.get()
    taken: list[str] = []
    for scene in scenes if scenes is not None else bpy.data.scenes:
        settings = getattr(scene, "asset2vec", None)
        if settings is None:
            continue
        for name in MOVED_TO_PREFERENCES:
            value = settings.get(name)  # the raw stored value: the registered properties no longer store these
            if value is None:
                continue
            if prefs is not None and not prefs.is_property_set(name):
                setattr(prefs, name, int(value))
                taken.append(f"{name}={getattr(prefs, name)}")
            del settings[name]
    return taken


@persistent
def _on_load(*_args: Any) -> None:
    migrate_view_settings()


classes = (Asset2VecSettings,)


def register() -> None:
    bpy.types.Scene.asset2vec = PointerProperty(type=Asset2VecSettings)
    if _on_load not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_on_load)
    if isinstance(getattr(bpy.data, "scenes", None), bpy.types.bpy_prop_collection):  # not in restricted contexts
        migrate_view_settings()


def unregister() -> None:
    if _on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load)
    del bpy.types.Scene.asset2vec
