"""Thin operators over plain functions: capture, embed (with cancel), tag review, similar assets.

Long work never runs inside an operator: Embed captures the first asset (so a capture error is
reported at once) and hands the rest to :mod:`blender_addon.embed_job`'s timer. Every failure is
an ``{'ERROR'}`` report the artist can act on, and the panel's status line repeats it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import embed_job, preferences, writeback
from .capture import CaptureError, capture_asset
from .client import BackendError
from .family import FamilyError
from .protocol import bundle


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
        except (CaptureError, bundle.BundleError) as e:
            self.report({"ERROR"}, f"Asset2Vec: {e}")
            return {"CANCELLED"}
        except OSError as e:
            self.report({"ERROR"}, f"Asset2Vec: capture failed: {_os_message(e)}")
            return {"CANCELLED"}
        finally:
            wm.progress_end()
        sx, sy, sz = result.asset.size
        self.report({"INFO"}, f"Asset2Vec: captured {target.name!r} ({sx:.2f} x {sy:.2f} x {sz:.2f} m) to {out}")
        return {"FINISHED"}


class LinkError(ValueError):
    """A similar asset cannot be appended/linked; the message says why."""


def active_target(context: Any, kind: str) -> Any:
    """The active object (``kind="OBJECT"``) or active collection (``"COLLECTION"``); raises EmbedError."""
    if kind == "COLLECTION":
        layer_coll = context.view_layer.active_layer_collection if context.view_layer else None
        target = layer_coll.collection if layer_coll is not None else None
        if target is None or target == context.scene.collection:
            raise embed_job.EmbedError("make a collection active (the scene collection is not an asset)")
        return target
    if context.active_object is None:
        raise embed_job.EmbedError("select an object (or switch the asset to 'Active Collection')")
    return context.active_object


def append_from_blend(path: str, name: str, link: bool, scene: Any) -> Any:
    """Append (or link) the object or collection ``name`` from the .blend at ``path`` into ``scene``.

    A collection is added as a child collection when appended, as a collection-instance empty when
    linked (linked data cannot be edited in place). Returns the new ID. Raises :class:`LinkError`.
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
        return obj
    coll = dst.collections[0]
    if not link:
        scene.collection.children.link(coll)
        return coll
    empty = bpy.data.objects.new(coll.name, None)
    empty.instance_type, empty.instance_collection = "COLLECTION", coll
    scene.collection.objects.link(empty)
    return empty


def _settings(context: Any) -> Any:
    return context.scene.asset2vec


def _os_message(e: OSError) -> str:
    """A one-line reason for a file-system error (no traceback): ``<reason>: <path>``."""
    reason = e.strerror or str(e) or type(e).__name__
    return f"{reason}: {e.filename}" if e.filename else reason


def _fail(op: Any, message: str) -> set[str]:
    """Report an error to the artist and keep it on the panel's status line."""
    embed_job.last_status = ("ERROR", message)
    op.report({"ERROR"}, f"Asset2Vec: {message}")
    return {"CANCELLED"}


def _embedded_target(op: Any, context: Any) -> Any:
    """The active asset if it has Asset2Vec data; reports and returns None otherwise."""
    try:
        target = active_target(context, _settings(context).capture_target)
    except embed_job.EmbedError as e:
        _fail(op, str(e))
        return None
    if not writeback.read_metadata(target):
        _fail(op, f"{target.name!r} has no Asset2Vec data yet: press Embed first")
        return None
    return target


class ASSET2VEC_OT_embed(bpy.types.Operator):
    """Capture the active asset (or variants of its family), embed it with the backend, and write predicted tags and
    similar assets into its metadata"""

    bl_idname = "asset2vec.embed"
    bl_label = "Embed"
    bl_options = {"REGISTER"}

    # Unset options fall back to the scene's Asset2Vec settings (what the panel shows).
    target: EnumProperty(  # type: ignore[valid-type]
        items=(("OBJECT", "Active Object", ""), ("COLLECTION", "Active Collection", "")), options={"SKIP_SAVE"})
    mode: EnumProperty(  # type: ignore[valid-type]
        items=(("ASSET", "Asset", ""), ("FAMILY", "Family", "")), options={"SKIP_SAVE"})
    variants: IntProperty(default=4, min=1, max=256, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    auto_accept: BoolProperty(default=True, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    mark_as_asset: BoolProperty(default=False, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    save_after: BoolProperty(default=False, options={"SKIP_SAVE"})  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: Any) -> bool:
        return context.scene is not None and hasattr(context.scene, "asset2vec")

    def _opt(self, name: str, scene_name: str) -> Any:
        return getattr(self, name) if self.properties.is_property_set(name) else getattr(
            _settings(bpy.context), scene_name)

    def execute(self, context: Any) -> set[str]:
        url, token, timeout = preferences.connection(context)
        prefs = preferences.get(context)
        try:
            target = active_target(context, self._opt("target", "capture_target"))
            # A quick check first, so "not running / wrong version / token refused" is reported right away.
            embed_job.check_backend(url, token, timeout=min(timeout, 5.0))
            options = embed_job.Options(
                url=url, token=token, timeout=timeout,
                size=prefs.capture_size if prefs else 128, samples=prefs.capture_samples if prefs else 16,
                family=self._opt("mode", "embed_mode") == "FAMILY", variants=self._opt("variants", "family_variants"),
                family_mode=_settings(context).family_sampling, auto_accept=self._opt("auto_accept", "auto_accept"),
                mark_as_asset=self._opt("mark_as_asset", "mark_as_asset"),
                save_after=self._opt("save_after", "save_after"),
            )
            job = embed_job.start(target, options)
        except (BackendError, CaptureError, FamilyError, embed_job.EmbedError, bundle.BundleError) as e:
            return _fail(self, str(e))
        except OSError as e:
            return _fail(self, f"embed failed: {_os_message(e)}")
        self.report({"INFO"}, f"Asset2Vec: {job.message}")
        return {"FINISHED"}


class ASSET2VEC_OT_embed_cancel(bpy.types.Operator):
    """Stop the running embed (nothing is written to the asset)"""

    bl_idname = "asset2vec.embed_cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        if not embed_job.cancel():
            self.report({"WARNING"}, "Asset2Vec: no embed is running")
            return {"CANCELLED"}
        self.report({"INFO"}, "Asset2Vec: cancelling the embed")
        return {"FINISHED"}


class ASSET2VEC_OT_check_backend(bpy.types.Operator):
    """Check that the backend answers and show which model it serves"""

    bl_idname = "asset2vec.check_backend"
    bl_label = "Check Backend"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        url, token, timeout = preferences.connection(context)
        try:
            info = embed_job.check_backend(url, token, timeout=min(timeout, 5.0))
        except BackendError as e:
            return _fail(self, str(e))
        embed_job.last_status = ("INFO", f"backend at {url}: model {info.get('model_id', '?')}")
        self.report({"INFO"}, f"Asset2Vec: {embed_job.last_status[1]}")
        return {"FINISHED"}


class ASSET2VEC_OT_tag_accept(bpy.types.Operator):
    """Add this predicted tag to the asset's tags (recorded as predicted)"""

    bl_idname = "asset2vec.tag_accept"
    bl_label = "Accept Tag"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    tag: StringProperty()  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        target = _embedded_target(self, context)
        if target is None:
            return {"CANCELLED"}
        where = "its tags" if writeback.is_asset(target) else f"its '{writeback.M.NAMESPACE}' property (not an asset)"
        if not writeback.accept_tag(target, self.tag):
            self.report({"INFO"}, f"Asset2Vec: {target.name!r} already has the tag {self.tag!r}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Asset2Vec: added {self.tag!r} to {where}")
        return {"FINISHED"}


class ASSET2VEC_OT_tag_reject(bpy.types.Operator):
    """Reject this predicted tag (removed if Asset2Vec added it; never proposed again)"""

    bl_idname = "asset2vec.tag_reject"
    bl_label = "Reject Tag"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    tag: StringProperty()  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        target = _embedded_target(self, context)
        if target is None:
            return {"CANCELLED"}
        removed = writeback.reject_tag(target, self.tag)
        self.report({"INFO"}, f"Asset2Vec: rejected {self.tag!r}" + (" and removed it" if removed else ""))
        return {"FINISHED"}


class ASSET2VEC_OT_remove_predicted_tags(bpy.types.Operator):
    """Remove every tag Asset2Vec added to the asset (your own tags stay)"""

    bl_idname = "asset2vec.remove_predicted_tags"
    bl_label = "Remove Predicted Tags"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: Any) -> set[str]:
        target = _embedded_target(self, context)
        if target is None:
            return {"CANCELLED"}
        removed = writeback.remove_predicted_tags(target)
        self.report({"INFO"}, f"Asset2Vec: removed {', '.join(removed)}" if removed else
                    "Asset2Vec: no predicted tags to remove")
        return {"FINISHED"}


class ASSET2VEC_OT_refresh_similar(bpy.types.Operator):
    """Download the thumbnails of the stored similar assets from the backend (in the background)"""

    bl_idname = "asset2vec.refresh_similar"
    bl_label = "Load Thumbnails"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        target = _embedded_target(self, context)
        if target is None:
            return {"CANCELLED"}
        names = [n["name"] for n in writeback.neighbours(target)]
        url, token, _ = preferences.connection(context)
        embed_job.start_thumbnail_fetch(url, token, names)
        self.report({"INFO"}, f"Asset2Vec: loading {len(set(names))} thumbnail(s)")
        return {"FINISHED"}


class ASSET2VEC_OT_append_neighbour(bpy.types.Operator):
    """Append (or link) this similar asset from its .blend into the scene"""

    bl_idname = "asset2vec.append_neighbour"
    bl_label = "Append Similar Asset"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})  # type: ignore[valid-type]
    asset_name: StringProperty(options={"SKIP_SAVE"})  # type: ignore[valid-type]
    link: BoolProperty(default=False, options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        try:
            new = append_from_blend(self.filepath, self.asset_name, self.link, context.scene)
        except LinkError as e:
            return _fail(self, str(e))
        verb = "linked" if self.link else "appended"
        self.report({"INFO"}, f"Asset2Vec: {verb} {new.name!r} from {bpy.path.basename(self.filepath)}")
        return {"FINISHED"}


classes = (
    ASSET2VEC_OT_capture,
    ASSET2VEC_OT_embed,
    ASSET2VEC_OT_embed_cancel,
    ASSET2VEC_OT_check_backend,
    ASSET2VEC_OT_tag_accept,
    ASSET2VEC_OT_tag_reject,
    ASSET2VEC_OT_remove_predicted_tags,
    ASSET2VEC_OT_refresh_similar,
    ASSET2VEC_OT_append_neighbour,
)


def unregister() -> None:
    embed_job.clear()
