"""The "Asset2Vec" tab in the 3D viewport sidebar: backend status, Embed (progress, Cancel), predicted tags
to accept or reject, similar assets with thumbnails (append/link), and the Capture settings.

Panels only draw: every action is an operator (:mod:`blender_addon.operators`), every piece of state
comes from the scene settings, the add-on preferences, the add-on's session (:mod:`blender_addon.session`:
running tasks, status lines, backend info, thumbnails) and the asset's stored metadata
(:mod:`blender_addon.writeback`).
"""

from __future__ import annotations

from typing import Any

import bpy

from . import preferences, session, writeback
from .embed_target import EmbedError
from .operators import active_target
from .protocol import metadata as M
from .refinement import refinement_of
from .similar import filter_neighbours
from .tasks import RUNNING

#: Predicted tags less likely than this are only counted, not listed (the list stays short).
MIN_SHOWN_PROBABILITY = 0.05
_TAG_ICONS = {"added": "CHECKMARK", "artist": "USER", "rejected": "X", "proposed": "QUESTION"}
#: Shown while the backend has no tag to predict (its info has ``tags_help``): how tags start, in sidebar-short lines.
NO_TAGS_LINES = ("No tags yet. Tags start two ways:", "review a few (Review Tags), or", "asset2vec tags import FILE.csv")


def _target(context: Any) -> Any:
    """The asset the tab is about (active object or collection), or None."""
    settings = getattr(context.scene, "asset2vec", None)
    if settings is None:
        return None
    try:
        return active_target(context, settings.capture_target)
    except EmbedError:
        return None


def draw_backend(context: Any, layout: Any) -> None:
    """The backend line: model served (after a check or an embed) or the URL that is not checked yet."""
    url, _, _ = preferences.connection(context)
    info = session.get().info_for(url)
    row = layout.row(align=True)
    if info is not None:
        row.label(text=f"Model {info.model_id} ({info.device or '?'})", icon="LINKED")
        if info.generic:
            layout.label(text="Generic model: not trained on your library", icon="INFO")
        if info.tags_help and not info.tags:
            col = layout.column(align=True)
            for i, line in enumerate(NO_TAGS_LINES):
                col.label(text=line, icon="INFO" if i == 0 else "BLANK1")
    else:
        row.label(text=url, icon="UNLINKED")
    row.operator("asset2vec.check_backend", text="", icon="FILE_REFRESH")


class _Asset2VecPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Asset2Vec"


class ASSET2VEC_PT_main(_Asset2VecPanel, bpy.types.Panel):
    """Backend status and the Embed button."""

    bl_idname = "ASSET2VEC_PT_main"
    bl_label = "Asset2Vec"

    def draw(self, context: Any) -> None:
        layout = self.layout
        settings = getattr(context.scene, "asset2vec", None)
        if settings is None:
            layout.label(text="Asset2Vec is not registered", icon="ERROR")
            return
        draw_backend(context, layout)
        layout.prop(settings, "capture_target", text="Asset")
        target = _target(context)
        layout.label(text=target.name if target else "nothing selected",
                     icon="OUTLINER_COLLECTION" if settings.capture_target == "COLLECTION" else "OBJECT_DATA")
        layout.prop(settings, "embed_mode", expand=True)
        if settings.embed_mode == "FAMILY":
            row = layout.row(align=True)
            row.prop(settings, "family_variants")
            row.prop(settings, "family_sampling", text="")
        col = layout.column(align=True)
        col.prop(settings, "auto_accept")
        col.prop(settings, "mark_as_asset")
        col.prop(settings, "save_after")

        sess = session.get()
        job = sess.task("embed")
        if job is not None and job.state == RUNNING:
            layout.progress(factor=job.progress, text=job.message[:60])
            layout.operator("asset2vec.embed_cancel", icon="CANCEL")
        else:
            layout.operator("asset2vec.embed", icon="SHADERFX")
        if refinement_of(target) is not None:
            layout.label(text="Instant answer; refining on the backend...", icon="SORTTIME")
        if target is not None and writeback.read_metadata(target).get(M.ASSET_NAME):
            layout.operator("asset2vec.forget_asset", icon="TRASH")  # out of the catalogue; the .blend stays
        level, message = sess.status["embed"]
        if message:
            _message_box(layout, message, "ERROR" if level == "ERROR" else "INFO")

class ASSET2VEC_PT_tags(_Asset2VecPanel, bpy.types.Panel):
    """Predicted tags with probabilities; accept or reject each."""

    bl_idname = "ASSET2VEC_PT_tags"
    bl_label = "Predicted Tags"
    bl_parent_id = "ASSET2VEC_PT_main"

    def draw(self, context: Any) -> None:
        layout = self.layout
        target = _target(context)
        tags = writeback.pending_tags(target) if target is not None else []
        if not tags:
            layout.label(text="Embed the asset to see predicted tags")
            return
        shown = [t for t in tags if t[1] >= MIN_SHOWN_PROBABILITY or t[2] != "proposed"]
        for tag, p, state in shown:
            row = layout.row(align=True)
            row.label(text=f"{tag}  {p:.0%}", icon=_TAG_ICONS[state])
            if state in ("proposed", "rejected"):
                row.operator("asset2vec.tag_accept", text="", icon="ADD").tag = tag
            if state in ("proposed", "added"):
                row.operator("asset2vec.tag_reject", text="", icon="REMOVE").tag = tag
        if len(shown) < len(tags):
            layout.label(text=f"{len(tags) - len(shown)} more below {MIN_SHOWN_PROBABILITY:.0%}")
        if refinement_of(target) is not None:
            layout.label(text="From the instant encoder: refining...", icon="SORTTIME")
        elif writeback.read_metadata(target).get(M.CODE_SOURCE) == "encoder":
            layout.label(text="From the instant encoder (Embed again for the fitted code)", icon="INFO")
        if not writeback.is_asset(target):
            layout.label(text="Not an asset: tags kept in its custom property", icon="INFO")
        layout.operator("asset2vec.remove_predicted_tags", icon="TRASH")


class ASSET2VEC_PT_similar(_Asset2VecPanel, bpy.types.Panel):
    """Nearest assets in shape, texture or both, filtered by a text, with thumbnails and Append/Link (at the 3D
    cursor)."""

    bl_idname = "ASSET2VEC_PT_similar"
    bl_label = "Similar Assets"
    bl_parent_id = "ASSET2VEC_PT_main"

    def draw(self, context: Any) -> None:
        layout = self.layout
        settings = context.scene.asset2vec
        target = _target(context)
        layout.prop(settings, "similar_space", expand=True)
        stored = writeback.neighbours(target, settings.similar_space) if target is not None else []
        if not stored:
            layout.label(text="Embed the asset to see similar assets")
            return
        layout.prop(settings, "similar_filter", text="", icon="VIEWZOOM")
        found = filter_neighbours(stored, settings.similar_filter)
        row = layout.row(align=True)
        row.prop(settings, "link_neighbours")
        row.operator("asset2vec.refresh_similar", text="", icon="IMAGE_DATA")
        if len(found) < len(stored):
            layout.label(text=f"{len(found)} of {len(stored)} match the filter" if found else
                         f"None of {len(stored)} matches the filter", icon="FILTER")
        for n in found:
            box = layout.box()
            row = box.row()
            icon = session.get().thumbnails.icon_id(n["name"])
            if icon:
                row.template_icon(icon_value=icon, scale=3.0)
            else:  # thumbnail not loaded yet (or none on the backend)
                row.label(text="", icon="IMAGE_DATA")
            col = row.column(align=True)
            col.label(text=n["name"])
            col.label(text=f"distance {n['distance']:.3f}" + (f"  {n['category']}" if n.get("category") else ""))
            if int(n.get("copies") or 1) > 1:  # one object saved in several files: one suggestion
                col.label(text=copies_label(n), icon="DUPLICATE")
            col.label(text=bpy.path.basename(n.get("file", "")) or "no .blend recorded")
            op = col.operator("asset2vec.append_neighbour", text="Link" if settings.link_neighbours else "Append",
                              icon="LINK_BLEND" if settings.link_neighbours else "APPEND_BLEND")
            op.filepath, op.asset_name = n.get("file", ""), n.get("asset_name") or n["name"]
            op.link = settings.link_neighbours


class ASSET2VEC_PT_capture(_Asset2VecPanel, bpy.types.Panel):
    """Capture settings and button (views only, no backend). The view size and samples shown are the add-on
    preferences' (one setting for Capture, Embed and Bulk Tag)."""

    bl_idname = "ASSET2VEC_PT_capture"
    bl_label = "Capture"
    bl_parent_id = "ASSET2VEC_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: Any) -> None:
        layout = self.layout
        settings = getattr(context.scene, "asset2vec", None)
        if settings is None:
            layout.label(text="Asset2Vec is not registered", icon="ERROR")
            return
        prefs = preferences.get(context)
        if prefs is not None:  # the one view size/samples setting (also in the add-on preferences)
            col = layout.column(align=True)
            col.prop(prefs, "capture_size")
            col.prop(prefs, "capture_samples")
        layout.prop(settings, "output_dir")
        job = session.get().task("capture")  # Capture Views renders in slices (capture_job): its progress
        if job is not None and job.state == RUNNING:
            layout.progress(factor=job.progress, text=job.message[:60])
            layout.operator("asset2vec.capture_cancel", icon="CANCEL")
        else:
            layout.operator("asset2vec.capture", icon="RENDER_STILL")
        level, message = session.get().status.get("capture", ("INFO", ""))
        if message:
            _message_box(layout, message, "ERROR" if level == "ERROR" else "INFO")


def copies_label(neighbour: dict[str, Any]) -> str:
    """The Similar list's line for a suggestion that stands for several near-identical assets."""
    return f"\u00d7{int(neighbour.get('copies') or 1)} copies (same object in several files)"


def _message_box(layout: Any, message: str, icon: str) -> None:
    """A status message in a box, wrapped to the sidebar's width; the icon on its first line."""
    box = layout.box()
    for i, line in enumerate(_wrap(message, 48)):
        box.label(text=line, icon=icon if i == 0 else "BLANK1")


def _wrap(text: str, width: int) -> list[str]:
    """Split a status message into lines the sidebar can show."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


classes = (ASSET2VEC_PT_main, ASSET2VEC_PT_tags, ASSET2VEC_PT_similar, ASSET2VEC_PT_capture)
