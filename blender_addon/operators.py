"""Thin operators over the plain functions in :mod:`blender_addon.capture`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from .capture import CaptureError, capture_asset


def capture_folder_for(settings: Any, target: Any) -> Path:
    """The bundle folder of ``target``: ``<output folder>/<target name>`` (``//`` resolved next to the .blend)."""
    base = settings.output_dir or "//asset2vec_views"
    if base.startswith("//") and not bpy.data.filepath:
        raise CaptureError("the output folder is relative ('//') but this file is not saved: save it or pick a folder")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in target.name)
    return Path(bpy.path.abspath(base)) / safe


class ASSET2VEC_OT_capture(bpy.types.Operator):
    """Render the 18 Asset2Vec views of the active object or collection into the output folder"""

    bl_idname = "asset2vec.capture"
    bl_label = "Capture Views"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: Any) -> bool:
        return context.scene is not None and hasattr(context.scene, "asset2vec")

    def execute(self, context: Any) -> set[str]:
        settings = context.scene.asset2vec
        if settings.capture_target == "COLLECTION":
            layer_coll = context.view_layer.active_layer_collection if context.view_layer else None
            target = layer_coll.collection if layer_coll is not None else None
            if target is None or target == context.scene.collection:
                self.report({"ERROR"}, "Asset2Vec: make a collection active (the scene collection is not an asset)")
                return {"CANCELLED"}
        else:
            target = context.active_object
            if target is None:
                self.report({"ERROR"}, "Asset2Vec: select an object to capture")
                return {"CANCELLED"}
        wm = context.window_manager
        wm.progress_begin(0, 18)
        try:
            out = capture_folder_for(settings, target)
            result = capture_asset(target, out, size=settings.capture_size, samples=settings.capture_samples,
                                   progress=lambda done, total: wm.progress_update(done))
        except CaptureError as e:
            self.report({"ERROR"}, f"Asset2Vec: {e}")
            return {"CANCELLED"}
        finally:
            wm.progress_end()
        sx, sy, sz = result.asset.size
        self.report({"INFO"}, f"Asset2Vec: captured {target.name!r} ({sx:.2f} x {sy:.2f} x {sz:.2f} m) to {out}")
        return {"FINISHED"}


classes = (ASSET2VEC_OT_capture,)
