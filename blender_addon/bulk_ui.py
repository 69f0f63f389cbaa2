"""Bulk Tag Folder in the Asset2Vec sidebar tab: pick a library folder, run ``asset2vec bulk-tag`` on it in the
background, follow its progress (files, assets, failures, ETA), Cancel it, open its report.

The work runs in a subprocess (:mod:`blender_addon.bulk_job`), a background task in the session's ``"bulk"``
slot that the session's timer follows while Blender stays responsive; this module holds the panel's settings
(``WindowManager.asset2vec_bulk``: per session, not saved into the open .blend), the operators and the sub-panel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from . import bulk_job, bulk_local, preferences, session
from .panels import _Asset2VecPanel, _message_box, _wrap

#: Failures listed in the panel (the report has all of them).
SHOWN_FAILURES = 5
SLOT = "bulk"


class Asset2VecBulkSettings(bpy.types.PropertyGroup):
    """Options of Bulk Tag Folder (see ``asset2vec bulk-tag --help``)."""

    folder: StringProperty(  # type: ignore[valid-type]
        name="Folder",
        description="Library folder to tag: every .blend (and .obj/.gltf/.glb) in it and its sub-folders",
        default="",
        subtype="DIR_PATH",
    )
    dry_run: BoolProperty(  # type: ignore[valid-type]
        name="Dry Run",
        description="Change no file: only write the report of the tags that would be added",
        default=False,
    )
    use_threshold: BoolProperty(  # type: ignore[valid-type]
        name="Own Threshold",
        description="Add predicted tags above this probability instead of the backend's threshold",
        default=False,
    )
    threshold: FloatProperty(  # type: ignore[valid-type]
        name="Threshold",
        description="Add predicted tags with at least this probability",
        default=0.5,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
    )
    workers: IntProperty(  # type: ignore[valid-type]
        name="Workers",
        description="Headless Blender processes tagging files in parallel (each needs about one CPU core and "
                    "some memory)",
        default=1,
        min=1,
        max=64,
    )


def request_from(context: Any) -> bulk_job.BulkRequest:
    """The :class:`bulk_job.BulkRequest` for the panel's settings and the add-on preferences."""
    settings = context.window_manager.asset2vec_bulk
    url, token, _ = preferences.connection(context)
    prefs = preferences.get(context)
    folder = bpy.path.abspath(settings.folder) if settings.folder else ""
    return bulk_job.BulkRequest(
        folder=folder.rstrip("/\\") or folder, url=url, token=token, dry_run=settings.dry_run,
        threshold=settings.threshold if settings.use_threshold else None, workers=settings.workers,
        size=prefs.capture_size if prefs is not None else 64, samples=prefs.capture_samples if prefs is not None else 8)


def report_url(job: bulk_job.BulkJob | None) -> str:
    """``file://`` URL of the finished job's report index.html ("" when there is none)."""
    if job is None or not job.report_html or not Path(job.report_html).is_file():
        return ""
    return Path(job.report_html).resolve().as_uri()


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` lies under ``folder``."""
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except OSError:
        return False


def current() -> bulk_job.BulkJob | None:
    """The session's last bulk run (running or finished), or None."""
    return session.get().task(SLOT)


def start(executable: str, req: bulk_job.BulkRequest) -> bulk_job.BulkJob:
    """Start a bulk run (one at a time), followed by the session's timer. Raises BulkJobError.

    ``executable`` "": no ``asset2vec`` command here, so the add-on's own run in a background Blender
    (:mod:`blender_addon.bulk_local`): only the extension is needed, the backend may be a remote server.
    """
    sess = session.get()
    if sess.running(SLOT):
        raise bulk_job.BulkJobError("a bulk run is already going: wait for it or press Cancel")
    own = bulk_local.command(req, bpy.app.binary_path) if not executable else None
    return sess.start(SLOT, bulk_job.BulkJob(executable, req, command=own))


def pump(timeout: float = 120.0) -> bulk_job.BulkJob | None:
    """Step the current run until it ends (what the timer does; for tests and headless use)."""
    return session.get().pump(SLOT, timeout)


class ASSET2VEC_OT_bulk_tag(bpy.types.Operator):
    """Tag every asset of the folder's .blend files in the background (asset2vec bulk-tag): resumable and safe"""

    bl_idname = "asset2vec.bulk_tag"
    bl_label = "Bulk Tag Folder"
    bl_options = {"REGISTER"}

    def execute(self, context: Any) -> set[str]:
        sess = session.get()
        prefs = preferences.get(context)
        try:
            req = request_from(context)
            if not req.folder:
                raise bulk_job.BulkJobError("pick the library folder to tag first")
            configured = prefs.asset2vec_command if prefs is not None else ""
            try:
                executable = bulk_job.find_command(configured)
            except bulk_job.BulkJobError:
                if configured:  # a path the artist set that does not work: say so rather than run without it
                    raise
                executable = ""  # not installed: the add-on's own run (no torch here; the backend does the work)
            job = start(executable, req)
        except bulk_job.BulkJobError as e:
            sess.set_status(SLOT, "ERROR", str(e))
            self.report({"ERROR"}, f"Asset2Vec: {e}")
            return {"CANCELLED"}
        sess.set_status(SLOT, "INFO", "")
        what = "dry run of" if req.dry_run else "tagging"
        note = ""
        if not req.dry_run and bpy.data.filepath and _inside(bpy.data.filepath, req.folder):
            note = " (the open file is in this folder: File > Revert after the run to see its new tags)"
        self.report({"INFO"}, f"Asset2Vec: {what} {job.request.folder} in the background{note}")
        return {"FINISHED"}


class ASSET2VEC_OT_bulk_cancel(bpy.types.Operator):
    """Stop the bulk run: files are either untouched or fully tagged, and the next run continues from there"""

    bl_idname = "asset2vec.bulk_cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        job = current()
        if job is None or not job.request_cancel():
            self.report({"WARNING"}, "Asset2Vec: no bulk run is going")
            return {"CANCELLED"}
        self.report({"INFO"}, "Asset2Vec: stopping the bulk run ...")
        return {"FINISHED"}


class ASSET2VEC_OT_bulk_open_report(bpy.types.Operator):
    """Open the last bulk run's report (index.html) in the web browser"""

    bl_idname = "asset2vec.bulk_open_report"
    bl_label = "Open Report"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        url = report_url(current())
        if not url:
            self.report({"ERROR"}, "Asset2Vec: no report yet: run Bulk Tag Folder first (the report may have been "
                                   "deleted)")
            return {"CANCELLED"}
        bpy.ops.wm.url_open(url=url)
        return {"FINISHED"}


class ASSET2VEC_PT_bulk(_Asset2VecPanel, bpy.types.Panel):
    """Folder, options, Bulk Tag / Cancel, progress and the last run's summary."""

    bl_idname = "ASSET2VEC_PT_bulk"
    bl_label = "Bulk Tag Folder"
    bl_parent_id = "ASSET2VEC_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: Any) -> None:
        layout = self.layout
        settings = getattr(context.window_manager, "asset2vec_bulk", None)
        if settings is None:
            layout.label(text="Asset2Vec is not registered", icon="ERROR")
            return
        job = current()
        running = job is not None and job.state == bulk_job.RUNNING
        col = layout.column()
        col.enabled = not running
        col.prop(settings, "folder")
        row = col.row(align=True)
        row.prop(settings, "dry_run")
        row.prop(settings, "workers")
        row = col.row(align=True)
        row.prop(settings, "use_threshold")
        sub = row.row(align=True)
        sub.enabled = settings.use_threshold
        sub.prop(settings, "threshold", text="")
        if running:
            layout.progress(factor=job.fraction, text=job.status_line()[:60])
            for line in _wrap(job.message, 48)[:2]:
                layout.label(text=line)
            layout.operator("asset2vec.bulk_cancel", icon="CANCEL")
            return
        layout.operator("asset2vec.bulk_tag", text="Dry Run" if settings.dry_run else "Bulk Tag Folder",
                        icon="FILE_FOLDER")
        level, message = session.get().status[SLOT]
        if message:
            _message_box(layout, message, "ERROR" if level == "ERROR" else "INFO")
        elif job is not None:
            icon = {bulk_job.DONE: "CHECKMARK", bulk_job.CANCELLED: "CANCEL"}.get(job.state, "ERROR")
            _message_box(layout, job.message, icon)
            failures = job.failures
            if failures:
                box = layout.box()
                box.label(text=f"{len(failures)} failed", icon="ERROR")
                for f in failures[:SHOWN_FAILURES]:
                    box.label(text=f"{Path(f.get('path', '')).name}: {f.get('error', '')}"[:70])
                if len(failures) > SHOWN_FAILURES:
                    box.label(text=f"... {len(failures) - SHOWN_FAILURES} more in the report")
            if report_url(job):
                layout.operator("asset2vec.bulk_open_report", icon="URL")


classes = (Asset2VecBulkSettings, ASSET2VEC_OT_bulk_tag, ASSET2VEC_OT_bulk_cancel, ASSET2VEC_OT_bulk_open_report,
           ASSET2VEC_PT_bulk)


def register() -> None:
    bpy.types.WindowManager.asset2vec_bulk = PointerProperty(type=Asset2VecBulkSettings)


def unregister() -> None:
    # The session closes a running bulk run: never left going without a panel to follow or cancel it.
    del bpy.types.WindowManager.asset2vec_bulk
