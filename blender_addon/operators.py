"""Thin operators over plain functions: capture, embed (with cancel), tag review, similar assets.

Long work never runs inside an operator and no operator waits on the network: Embed captures the first
asset (so a capture error is reported at once) and hands the rest to a background task
(:mod:`blender_addon.embed_job`) that the session's timer steps; its worker checks the backend. Check Backend
and Load Thumbnails are background tasks too. Every failure is an ``{'ERROR'}`` report the artist can act on
(or, for what fails later in the background, the panel's status line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import backend_check, capture_guard, capture_job, embed_job, forget, preferences, session, writeback
from .capture import CaptureError
from .embed_target import EmbedError, Options
from .family import FamilyError
from .protocol import bundle, naming
from .protocol import client as remote
from .similar import LinkError, add_similar
from .thumbnails import ThumbnailFetch


def capture_folder_for(settings: Any, target: Any) -> Path:
    """The bundle folder of ``target``: ``<output folder>/<target name>`` (``//`` resolved next to the .blend)."""
    base = settings.output_dir or "//asset2vec_views"
    if base.startswith("//") and not bpy.data.filepath:
        raise CaptureError("the output folder is relative ('//') but this file is not saved: save it or pick a folder")
    return Path(bpy.path.abspath(base)) / naming.safe_folder_name(target.name)


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
        # The views are rendered one per timer step (capture_job), as Embed does: Blender never freezes.
        try:
            out = capture_folder_for(settings, target)
            size, samples = preferences.view_settings(context)
            capture_job.start(target, out, size, samples)  # the first slice now: its error is reported here
        except (CaptureError, bundle.BundleError) as e:
            self.report({"ERROR"}, f"Asset2Vec: {e}")
            return {"CANCELLED"}
        except OSError as e:
            self.report({"ERROR"}, f"Asset2Vec: capture failed: {_os_message(e)}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Asset2Vec: capturing {target.name!r} to {out} in the background")
        return {"FINISHED"}


def active_target(context: Any, kind: str) -> Any:
    """The active object (``kind="OBJECT"``) or active collection (``"COLLECTION"``); raises EmbedError."""
    if kind == "COLLECTION":
        layer_coll = context.view_layer.active_layer_collection if context.view_layer else None
        target = layer_coll.collection if layer_coll is not None else None
        if target is None or target == context.scene.collection:
            raise EmbedError("make a collection active (the scene collection is not an asset)")
        return target
    if context.active_object is None:
        raise EmbedError("select an object (or switch the asset to 'Active Collection')")
    return context.active_object


def _settings(context: Any) -> Any:
    return context.scene.asset2vec


def _os_message(e: OSError) -> str:
    """A one-line reason for a file-system error (no traceback): ``<reason>: <path>``."""
    reason = e.strerror or str(e) or type(e).__name__
    return f"{reason}: {e.filename}" if e.filename else reason


def _fail(op: Any, message: str) -> set[str]:
    """Report an error to the artist and keep it on the panel's status line."""
    session.get().set_status("embed", "ERROR", message)
    op.report({"ERROR"}, f"Asset2Vec: {message}")
    return {"CANCELLED"}


def _embedded_target(op: Any, context: Any) -> Any:
    """The active asset if it has Asset2Vec data; reports and returns None otherwise."""
    try:
        target = active_target(context, _settings(context).capture_target)
    except EmbedError as e:
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
        size, samples = preferences.view_settings(context)
        assign_catalog, category_tags = preferences.catalog_settings(context)
        try:
            target = active_target(context, self._opt("target", "capture_target"))
            # The backend check ("not running / wrong version / token refused") runs in the job's worker thread:
            # its failure reaches the status line within seconds, and Blender never waits for it.
            options = Options(
                url=url, token=token, timeout=timeout,
                size=size, samples=samples,
                family=self._opt("mode", "embed_mode") == "FAMILY", variants=self._opt("variants", "family_variants"),
                family_mode=_settings(context).family_sampling, auto_accept=self._opt("auto_accept", "auto_accept"),
                mark_as_asset=self._opt("mark_as_asset", "mark_as_asset"),
                save_after=self._opt("save_after", "save_after"),
                assign_catalog=assign_catalog, category_tags=category_tags,
            )
            job = embed_job.start(target, options)
        except (remote.BackendError, CaptureError, FamilyError, EmbedError, bundle.BundleError) as e:
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


class ASSET2VEC_OT_capture_cancel(bpy.types.Operator):
    """Stop the running Capture Views (the views rendered so far stay in the output folder)"""

    bl_idname = "asset2vec.capture_cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        if not capture_job.cancel():
            self.report({"WARNING"}, "Asset2Vec: no capture is running")
            return {"CANCELLED"}
        self.report({"INFO"}, "Asset2Vec: cancelling the capture")
        return {"FINISHED"}


class ASSET2VEC_OT_check_backend(bpy.types.Operator):
    """Check that the backend answers and show which model it serves (in the background)"""

    bl_idname = "asset2vec.check_backend"
    bl_label = "Check Backend"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        url, token, timeout = preferences.connection(context)
        task = backend_check.check(session.get(), url, token, timeout)
        self.report({"INFO"}, f"Asset2Vec: {task.message}")
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


class ASSET2VEC_OT_forget_asset(bpy.types.Operator):
    """Remove this asset from the backend's catalogue (its codes, tags and stored views): it is no longer suggested
    as a similar asset. The .blend is not changed; embedding the asset again brings it back"""

    bl_idname = "asset2vec.forget_asset"
    bl_label = "Forget This Asset"
    bl_options = {"REGISTER", "INTERNAL"}

    def _names(self, context: Any) -> list[str] | None:
        """The catalogue names to forget (a family: every variant), or None after reporting why there are none."""
        target = _embedded_target(self, context)
        if target is None:
            return None
        names = forget.catalogue_names(target)
        if not names:
            _fail(self, f"{target.name!r} has no catalogue name: press Embed first")
            return None
        return names

    def invoke(self, context: Any, event: Any) -> set[str]:
        names = self._names(context)
        if names is None:
            return {"CANCELLED"}
        what = names[0] if len(names) == 1 else f"{len(names)} variants of this family"
        return context.window_manager.invoke_confirm(
            self, event, title="Forget This Asset", confirm_text="Forget", icon="WARNING",
            message=f"Remove {what} from the Asset2Vec catalogue? The .blend is not changed.")

    def execute(self, context: Any) -> set[str]:
        names = self._names(context)
        if names is None:
            return {"CANCELLED"}
        if session.get().running(forget.SLOT):
            self.report({"WARNING"}, "Asset2Vec: the backend is still forgetting the last asset")
            return {"CANCELLED"}
        url, token, timeout = preferences.connection(context)
        task = forget.start(url, token, timeout, names)
        self.report({"INFO"}, f"Asset2Vec: {task.message}")
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
        sess = session.get()
        if sess.running("thumbnails"):  # its thread would go on unseen, fetching the same files
            self.report({"WARNING"}, "Asset2Vec: thumbnails are already loading")
            return {"CANCELLED"}
        names = [n["name"] for n in writeback.neighbours(target)]
        url, token, timeout = preferences.connection(context)
        try:
            client = remote.Client(url, token, timeout=timeout)
        except remote.BackendError as e:
            return _fail(self, str(e))
        sess.start("thumbnails", ThumbnailFetch(sess.thumbnails, client, names))
        self.report({"INFO"}, f"Asset2Vec: loading {len(set(names))} thumbnail(s)")
        return {"FINISHED"}


class ASSET2VEC_OT_append_neighbour(bpy.types.Operator):
    """Append (or link) this similar asset from its .blend at the 3D cursor, selected"""

    bl_idname = "asset2vec.append_neighbour"
    bl_label = "Append Similar Asset"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})  # type: ignore[valid-type]
    asset_name: StringProperty(options={"SKIP_SAVE"})  # type: ignore[valid-type]
    link: BoolProperty(default=False, options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        try:
            new = add_similar(self.filepath, self.asset_name, self.link, context.scene, context.view_layer)
        except LinkError as e:
            return _fail(self, str(e))
        verb = "linked" if self.link else "appended"
        self.report({"INFO"}, f"Asset2Vec: {verb} {new.name!r} from {bpy.path.basename(self.filepath)} at the 3D "
                              f"cursor")
        return {"FINISHED"}


classes = (
    ASSET2VEC_OT_capture,
    ASSET2VEC_OT_embed,
    ASSET2VEC_OT_embed_cancel,
    ASSET2VEC_OT_capture_cancel,
    ASSET2VEC_OT_check_backend,
    ASSET2VEC_OT_tag_accept,
    ASSET2VEC_OT_tag_reject,
    ASSET2VEC_OT_remove_predicted_tags,
    ASSET2VEC_OT_forget_asset,
    ASSET2VEC_OT_refresh_similar,
    ASSET2VEC_OT_append_neighbour,
)


def register() -> None:
    # Stale capture datablocks (an undo step or an autosave taken mid-capture) go after every undo, redo and load.
    capture_guard.register_handlers()


def unregister() -> None:
    capture_guard.unregister_handlers()
