"""The "Asset2Vec" tab in the 3D viewport sidebar: capture settings and the Capture button."""

from __future__ import annotations

from typing import Any

import bpy


class ASSET2VEC_PT_capture(bpy.types.Panel):
    """Capture settings and button."""

    bl_idname = "ASSET2VEC_PT_capture"
    bl_label = "Capture"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Asset2Vec"

    def draw(self, context: Any) -> None:
        layout = self.layout
        settings = getattr(context.scene, "asset2vec", None)
        if settings is None:
            layout.label(text="Asset2Vec is not registered", icon="ERROR")
            return
        layout.prop(settings, "capture_target")
        col = layout.column(align=True)
        col.prop(settings, "capture_size")
        col.prop(settings, "capture_samples")
        layout.prop(settings, "output_dir")
        layout.operator("asset2vec.capture", icon="RENDER_STILL")


classes = (ASSET2VEC_PT_capture,)
