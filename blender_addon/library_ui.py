"""The "Library Model" sub-panel of the Asset2Vec sidebar tab: which model the backend serves, Build Model from
Library, Retrain, Cancel, Restore Previous Model, and the backend's advice to retrain.

The backend does the work in the background while the old model keeps serving; :mod:`blender_addon.library_job`
follows it from a thread. This module holds the panel's settings (``WindowManager.asset2vec_library``: per
session, not saved into the open .blend), thin operators, the panel, and the ``bpy.app.timers`` step that redraws
the progress and, once the task ends, shows its outcome. Network calls on the main thread (starting a job,
Refresh) use a short timeout; following a job and restoring a model run in the task's thread.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import bpy
from bpy.props import PointerProperty, StringProperty

from . import embed_job, library_job, preferences
from .client import BackendError, Client
from .panels import _Asset2VecPanel, _message_box, _wrap

TIMER_INTERVAL = 0.5
#: Seconds a request made on Blender's main thread may take (starting a job, Refresh): the UI waits for it.
MAIN_THREAD_TIMEOUT = 5.0
GENERIC_HELP = ("Generic starter model: build one from your own library. Pick the library folder (on the "
                "backend's machine) and press Build Model from Library: the backend captures every asset, trains, "
                "and tags them in the background while this model keeps serving.")

#: ``(level, message)`` shown under the panel ("INFO" / "ERROR"): the last start error or task outcome.
last_status: tuple[str, str] = ("INFO", "")
_applied: library_job.LibraryTask | None = None  # the finished task whose outcome was already shown


class Asset2VecLibrarySettings(bpy.types.PropertyGroup):
    """Options of Build Model from Library."""

    folder: StringProperty(  # type: ignore[valid-type]
        name="Library Folder",
        description="Folder of the library to learn (every .blend file with marked assets in it and its sub-folders), as a path "
                    "on the machine the backend runs on",
        default="",
        subtype="DIR_PATH",
    )


def _info(context: Any) -> dict[str, Any]:
    """The last ``/info`` of the backend the preferences point at ({} when not checked yet)."""
    url, _, _ = preferences.connection(context)
    info = embed_job.backend_info
    return info if info and info.get("url") == url else {}


def _background(info: dict[str, Any]) -> dict[str, Any] | None:
    """The backend's running background job (index/retrain) from ``info``, or None."""
    job = info.get("background")
    if isinstance(job, dict) and job.get("id") and job.get("status") not in library_job.FINAL:
        return job
    return None


def _client(context: Any, main_thread: bool) -> Client:
    """A client for the preferences' backend; ``main_thread``: with the short timeout the UI can wait for."""
    url, token, timeout = preferences.connection(context)
    return Client(url, token, timeout=min(timeout, MAIN_THREAD_TIMEOUT) if main_thread else timeout)


def format_created(created: Any) -> str:
    """A model's creation time (unix seconds or ISO text) as ``2025-01-31 14:05``; "" when unknown."""
    if isinstance(created, (int, float)) and created > 0:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(created))
    if isinstance(created, str) and created:
        try:
            return datetime.fromisoformat(created).astimezone().strftime("%Y-%m-%d %H:%M")  # local time
        except ValueError:
            return created.replace("T", " ")[:16]
    return ""


def model_lines(info: dict[str, Any]) -> list[str]:
    """What the panel says about the served model: id, trained on N assets (unless generic), created."""
    model = info.get("model") if isinstance(info.get("model"), dict) else {}
    details = model.get("info") if isinstance(model.get("info"), dict) else {}
    lines = [f"Model {model.get('model_id') or info.get('model_id', '?')}"]
    if not info.get("generic"):  # a generic model gets its own explanation box
        if details.get("trained_on") is not None:
            lines.append(f"Trained on {details['trained_on']} assets")
        elif info.get("assets") is not None:  # a model registered without its training record
            lines.append(f"{info['assets']} assets in its catalogue")
    created = format_created(model.get("created"))
    if created:
        lines.append(f"Created {created}")
    return lines


def apply_finished() -> bool:
    """Main thread: show the outcome of the task once it ended (status line, the model the panels show).

    Returns True when it did (once per task)."""
    global last_status, _applied
    task = library_job.current
    if task is None or task.state not in library_job.FINAL or task is _applied:
        return False
    _applied = task
    embed_job.backend_info.clear()
    if task.info is not None:
        embed_job.backend_info.update(task.info, url=task.url)
    last_status = ("ERROR" if task.state == library_job.FAILED else "INFO", task.message)
    return True


def finish(timeout: float = 120.0) -> library_job.LibraryTask | None:
    """Wait for the current task and apply its outcome (what the timer does; for tests and headless use)."""
    task = library_job.pump(timeout)
    apply_finished()
    return task


def _tick() -> float | None:
    """The ``bpy.app.timers`` callback: redraw the progress, show the outcome at the end."""
    running = library_job.running()
    apply_finished()
    embed_job.redraw_sidebar()
    return TIMER_INTERVAL if running else None


def _follow(kind: str, context: Any, job_id: str | None = None, model_id: str | None = None) -> library_job.LibraryTask:
    """Start following/doing ``kind`` in the task thread and the panel's timer."""
    global last_status
    task = library_job.start(kind, _client(context, main_thread=False), job_id=job_id, model_id=model_id)
    last_status = ("INFO", "")
    if not bpy.app.timers.is_registered(_tick):
        # persistent: the backend's job goes on while the artist opens other files; the panel keeps following it
        bpy.app.timers.register(_tick, first_interval=TIMER_INTERVAL, persistent=True)
    return task


def _fail(op: Any, message: str) -> set[str]:
    """Report an error and keep it on the panel's status line."""
    global last_status
    last_status = ("ERROR", message)
    op.report({"ERROR"}, f"Asset2Vec: {message}")
    return {"CANCELLED"}


class ASSET2VEC_OT_library_build(bpy.types.Operator):
    """Build a model from your library folder on the backend (capture, train, embed, tag), in the background; the
    current model keeps serving until the new one is ready"""

    bl_idname = "asset2vec.library_build"
    bl_label = "Build Model from Library"
    bl_options = {"REGISTER"}

    folder: StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        folder = self.folder or context.window_manager.asset2vec_library.folder
        folder = bpy.path.abspath(folder) if folder else ""
        folder = folder.rstrip("/\\") or folder
        if not folder:
            return _fail(self, "pick the library folder first (a folder on the backend's machine)")
        try:
            if library_job.running():
                raise BackendError(f"{library_job.current.name} is still going: wait for it or press Cancel")
            job_id = _client(context, main_thread=True).start_index(folder)
            _follow("index", context, job_id=job_id)
        except BackendError as e:
            return _fail(self, str(e))
        self.report({"INFO"}, f"Asset2Vec: building a model from {folder} on the backend (the current model keeps "
                               f"serving meanwhile)")
        return {"FINISHED"}


class ASSET2VEC_OT_library_retrain(bpy.types.Operator):
    """Retrain the model on every asset the backend has stored, in the background; the current model keeps serving
    until the new one is ready"""

    bl_idname = "asset2vec.library_retrain"
    bl_label = "Retrain"
    bl_options = {"REGISTER"}

    def execute(self, context: Any) -> set[str]:
        try:
            if library_job.running():
                raise BackendError(f"{library_job.current.name} is still going: wait for it or press Cancel")
            job_id = _client(context, main_thread=True).start_retrain()
            _follow("retrain", context, job_id=job_id)
        except BackendError as e:
            return _fail(self, str(e))
        self.report({"INFO"}, "Asset2Vec: retraining on the backend (the current model keeps serving meanwhile)")
        return {"FINISHED"}


class ASSET2VEC_OT_library_cancel(bpy.types.Operator):
    """Stop building/retraining the model; the current model keeps serving"""

    bl_idname = "asset2vec.library_cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        if not library_job.running():
            job = _background(_info(context))  # started elsewhere (CLI, another Blender): follow it to cancel it
            if job is None:
                self.report({"WARNING"}, "Asset2Vec: no model is being built")
                return {"CANCELLED"}
            try:
                _follow("follow", context, job_id=str(job["id"]))
            except BackendError as e:
                return _fail(self, str(e))
        library_job.cancel()
        self.report({"INFO"}, "Asset2Vec: cancelling; the current model keeps serving")
        return {"FINISHED"}


class ASSET2VEC_OT_library_restore(bpy.types.Operator):
    """Switch the backend back to the model it served before (in the background)"""

    bl_idname = "asset2vec.library_restore"
    bl_label = "Restore Previous Model"
    bl_options = {"REGISTER"}

    model_id: StringProperty(  # type: ignore[valid-type]
        name="Model", description="The model to restore (empty: the previous one)", options={"SKIP_SAVE"})

    def execute(self, context: Any) -> set[str]:
        target = self.model_id or _info(context).get("previous_model") or None
        try:
            _follow("restore", context, model_id=target)
        except BackendError as e:
            return _fail(self, str(e))
        self.report({"INFO"}, f"Asset2Vec: restoring model {target or '(the previous one)'} ...")
        return {"FINISHED"}


class ASSET2VEC_OT_library_refresh(bpy.types.Operator):
    """Ask the backend which model it serves and whether it is building one (and follow that job)"""

    bl_idname = "asset2vec.library_refresh"
    bl_label = "Refresh"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        url, token, timeout = preferences.connection(context)
        try:
            info = embed_job.check_backend(url, token, timeout=min(timeout, 5.0))
            job = _background(info)
            if job is not None and not library_job.running():
                _follow("follow", context, job_id=str(job["id"]))
        except BackendError as e:
            return _fail(self, str(e))
        self.report({"INFO"}, f"Asset2Vec: the backend serves model {info.get('model_id', '?')}")
        return {"FINISHED"}


class ASSET2VEC_PT_library(_Asset2VecPanel, bpy.types.Panel):
    """The served model, Build Model from Library / Retrain / Restore, and the background job's progress."""

    bl_idname = "ASSET2VEC_PT_library"
    bl_label = "Library Model"
    bl_parent_id = "ASSET2VEC_PT_main"

    def draw(self, context: Any) -> None:
        layout = self.layout
        settings = getattr(context.window_manager, "asset2vec_library", None)
        if settings is None:
            layout.label(text="Asset2Vec is not registered", icon="ERROR")
            return
        info = _info(context)
        task = library_job.current
        busy = library_job.running()
        row = layout.row(align=True)
        if not info:
            row.label(text="Backend not checked yet", icon="UNLINKED")
            row.operator("asset2vec.library_refresh", text="", icon="FILE_REFRESH")
        else:
            lines = model_lines(info)
            row.label(text=lines[0], icon="LINKED")
            row.operator("asset2vec.library_refresh", text="", icon="FILE_REFRESH")
            for line in lines[1:]:
                layout.label(text=line)
            if info.get("generic"):
                _message_box(layout, GENERIC_HELP, "INFO")
            if info.get("retrain_advice"):
                _message_box(layout, str(info["retrain_advice"]), "INFO")

        background = None if busy else _background(info)
        if busy or background is not None:
            if busy and task is not None and task.kind == "restore":
                layout.label(text=task.message, icon="SORTTIME")
                return
            progress = task.progress if busy and task is not None else float(background.get("progress") or 0.0)
            message = task.message if busy and task is not None else str(background.get("message") or "")
            layout.progress(factor=progress, text=f"{progress:.0%}")
            for line in _wrap(message, 48)[:3]:
                layout.label(text=line)
            layout.operator("asset2vec.library_cancel", icon="CANCEL")
            return

        col = layout.column()
        col.prop(settings, "folder")
        col.operator("asset2vec.library_build", icon="FILE_FOLDER")
        if info:
            layout.operator("asset2vec.library_retrain", icon="FILE_REFRESH")
        previous = info.get("previous_model")
        if previous:
            op = layout.operator("asset2vec.library_restore", text=f"Restore Previous Model ({previous})",
                                 icon="LOOP_BACK")
            op.model_id = str(previous)
        level, message = last_status
        if message:
            _message_box(layout, message, "ERROR" if level == "ERROR" else "INFO")


classes = (Asset2VecLibrarySettings, ASSET2VEC_OT_library_build, ASSET2VEC_OT_library_retrain,
           ASSET2VEC_OT_library_cancel, ASSET2VEC_OT_library_restore, ASSET2VEC_OT_library_refresh,
           ASSET2VEC_PT_library)


def register() -> None:
    bpy.types.WindowManager.asset2vec_library = PointerProperty(type=Asset2VecLibrarySettings)


def unregister() -> None:
    global last_status, _applied
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    library_job.clear()  # stop following; the backend's job goes on and a later Refresh finds it again
    last_status, _applied = ("INFO", ""), None
    del bpy.types.WindowManager.asset2vec_library
