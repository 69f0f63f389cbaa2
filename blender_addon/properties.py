"""The add-on's per-scene settings: ``bpy.types.Scene.asset2vec`` (an :class:`Asset2VecSettings`)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, PointerProperty, StringProperty

from .protocol import bundle


class Asset2VecSettings(bpy.types.PropertyGroup):
    """Capture and Embed settings shown in the Asset2Vec sidebar tab (saved with the scene)."""

    capture_size: IntProperty(  # type: ignore[valid-type]
        name="View Size",
        description="Width and height of each of the 18 captured views, in pixels",
        default=128,
        min=bundle.MIN_IMAGE_SIZE,
        max=bundle.MAX_IMAGE_SIZE,
    )
    capture_samples: IntProperty(  # type: ignore[valid-type]
        name="Samples",
        description="Cycles samples per pixel for the captured views (more is slower and less noisy)",
        default=16,
        min=1,
        max=4096,
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


classes = (Asset2VecSettings,)


def register() -> None:
    bpy.types.Scene.asset2vec = PointerProperty(type=Asset2VecSettings)


def unregister() -> None:
    del bpy.types.Scene.asset2vec
