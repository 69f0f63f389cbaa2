"""The add-on's per-scene settings: ``bpy.types.Scene.asset2vec`` (an :class:`Asset2VecSettings`)."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, IntProperty, PointerProperty, StringProperty

from .protocol import bundle


class Asset2VecSettings(bpy.types.PropertyGroup):
    """Capture settings shown in the Asset2Vec sidebar tab."""

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


classes = (Asset2VecSettings,)


def register() -> None:
    bpy.types.Scene.asset2vec = PointerProperty(type=Asset2VecSettings)


def unregister() -> None:
    del bpy.types.Scene.asset2vec
