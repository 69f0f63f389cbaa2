"""The "Library Model" sub-panel of the Asset2Vec sidebar tab: which model the backend serves, Build Model from
Library, Retrain, Cancel, Restore Previous Model, and the backend's advice to retrain.

The backend does the work in the background while the old model keeps serving; a
:class:`~blender_addon.library_job.LibraryTask` in the session's ``"library"`` slot starts and follows it from
its worker thread, and the session's timer shows its outcome (status line, the model served). This module holds
the panel's settings (``WindowManager.asset2vec_library``: per session, not saved into the open .blend), thin
operators and the panel. No operator waits on the network: starting a job, restoring a model and Refresh (a
:mod:`blender_addon.backend_check`) all run in worker threads.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import bpy
from bpy.props import PointerProperty, StringProperty

from . import backend_check, library_job, preferences, session
from .panels import _Asset2VecPanel, _message_box, _wrap
from .protocol import api
from .protocol import client as remote
from .tasks import BackgroundTask

SLOT = "library"
GENERIC_HELP = ("Generic starter model: build one from your own library. Pick the library folder (on the "
                "backend's machine) and press Build Model from Library: the backend captures every asset, trains, "
                "and tags them in the background while this model keeps serving.")

class Asset2VecLibrarySettings(bpy.types.PropertyGroup):
    """Options of Build Model from Library."""

    folder: StringProperty(  # type: ignore[valid-type]
        name="Library Folder",
        description="Folder of the library to learn (every .blend file with marked assets in it and its sub-folders), as a path "
                    "on the machine the backend runs on",
        default="",
        subtype="DIR_PATH",
    )


def _info(context: Any) -> api.ServerInfo | None:
    """The last ``/info`` of the backend the preferences point at (None when not checked yet)."""
    url, _, _ = preferences.connection(context)
    return session.get().info_for(url)


def _background(info: api.ServerInfo | None) -> api.JobStatus | None:
    """The backend's running background job (index/retrain) from ``info``, or None."""
    job = info.background if info is not None else None
    return job if job is not None and job.id and not job.final else None


def current() -> library_job.LibraryTask | None:
    """The session's last library task (running or finished), or None."""
    return session.get().task(SLOT)


def running() -> bool:
    """Whether a library task is going."""
    return session.get().running(SLOT)


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


def model_lines(info: api.ModelInfo) -> list[str]:
    """What the panel says about the served model: id, trained on N assets (unless generic), created."""
    model = info.model
    details = model.info if model is not None else {}
    lines = [f"Model {model.model_id if model is not None and model.model_id else info.model_id}"]
    if not info.generic:  # a generic model gets its own explanation box
        if details.get("trained_on") is not None:
            lines.append(f"Trained on {details['trained_on']} assets")
        else:  # a model registered without its training record
            lines.append(f"{info.assets} assets in its catalogue")
    created = format_created(model.created if model is not None else None)
    if created:
        lines.append(f"Created {created}")
    return lines


def _apply(sess: session.Session, task: BackgroundTask) -> None:
    """Main thread: show the outcome of a finished task (status line, the model the panels show)."""
    assert isinstance(task, library_job.LibraryTask)
    sess.set_backend_info(task.info, task.url)
    sess.report(SLOT, task)


def finish(timeout: float = 120.0) -> library_job.LibraryTask | None:
    """Wait for the current task and apply its outcome (what the timer does; for tests and headless use)."""
    return session.get().pump(SLOT, timeout)


def follow(kind: str, url: str, token: str | None, timeout: float, job_id: str | None = None,
           model_id: str | None = None, folder: str | None = None) -> library_job.LibraryTask:
    """Start ``kind`` (start/follow a backend job, or restore) in a worker thread. Raises remote.BackendError when a
    library task is still going (or the URL is not one)."""
    sess = session.get()
    task = sess.task(SLOT)
    if task is not None and task.running:
        raise remote.BackendError(f"{task.name} is still going: wait for it or press Cancel")
    task = library_job.LibraryTask(kind, remote.Client(url, token, timeout=timeout), job_id=job_id, model_id=model_id,
                                   folder=folder)
    task.on_finish.append(lambda t: _apply(sess, t))
    sess.set_status(SLOT, "INFO", "")
    return sess.start(SLOT, task)


def _follow(kind: str, context: Any, job_id: str | None = None, model_id: str | None = None,
            folder: str | None = None) -> library_job.LibraryTask:
    """:func:`follow` with the backend of the add-on's preferences."""
    return follow(kind, *preferences.connection(context), job_id=job_id, model_id=model_id, folder=folder)


def _fail(op: Any, message: str) -> set[str]:
    """Report an error and keep it on the panel's status line."""
    session.get().set_status(SLOT, "ERROR", message)
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
            _follow("index", context, folder=folder)  # the worker asks the backend to start (and checks the folder)
        except remote.BackendError as e:
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
            _follow("retrain", context)
        except remote.BackendError as e:
            return _fail(self, str(e))
        self.report({"INFO"}, "Asset2Vec: retraining on the backend (the current model keeps serving meanwhile)")
        return {"FINISHED"}


class ASSET2VEC_OT_library_cancel(bpy.types.Operator):
    """Stop building/retraining the model; the current model keeps serving"""

    bl_idname = "asset2vec.library_cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        if not running():
            job = _background(_info(context))  # started elsewhere (CLI, another Blender): follow it to cancel it
            if job is None:
                self.report({"WARNING"}, "Asset2Vec: no model is being built")
                return {"CANCELLED"}
            try:
                _follow("follow", context, job_id=job.id)
            except remote.BackendError as e:
                return _fail(self, str(e))
        current().request_cancel()  # type: ignore[union-attr]
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
        info = _info(context)
        target = self.model_id or (info.previous_model if info is not None else None) or None
        try:
            _follow("restore", context, model_id=target)
        except remote.BackendError as e:
            return _fail(self, str(e))
        self.report({"INFO"}, f"Asset2Vec: restoring model {target or '(the previous one)'} ...")
        return {"FINISHED"}


class ASSET2VEC_OT_library_refresh(bpy.types.Operator):
    """Ask the backend which model it serves and whether it is building one (and follow that job), in the
    background"""

    bl_idname = "asset2vec.library_refresh"
    bl_label = "Refresh"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        url, token, timeout = preferences.connection(context)

        def then(check: backend_check.BackendCheck) -> None:
            job = _background(check.info)
            if job is not None and not running():
                try:
                    follow("follow", url, token, timeout, job_id=job.id)
                except remote.BackendError as e:
                    session.get().set_status(SLOT, "ERROR", str(e))

        task = backend_check.check(session.get(), url, token, timeout, channel=SLOT, then=then)
        self.report({"INFO"}, f"Asset2Vec: {task.message}")
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
        task = current()
        busy = running()
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
            if info.generic:
                _message_box(layout, GENERIC_HELP, "INFO")
            if info.retrain_advice:
                _message_box(layout, info.retrain_advice, "INFO")

        background = None if busy else _background(info)
        if busy or background is not None:
            if busy and task is not None and task.kind == "restore":
                layout.label(text=task.message, icon="SORTTIME")
                return
            progress = task.progress if busy and task is not None else background.progress  # type: ignore[union-attr]
            message = task.message if busy and task is not None else background.message  # type: ignore[union-attr]
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
        previous = info.previous_model if info is not None else None
        if previous:
            op = layout.operator("asset2vec.library_restore", text=f"Restore Previous Model ({previous})",
                                 icon="LOOP_BACK")
            op.model_id = str(previous)
        level, message = session.get().status[SLOT]
        if message:
            _message_box(layout, message, "ERROR" if level == "ERROR" else "INFO")


classes = (Asset2VecLibrarySettings, ASSET2VEC_OT_library_build, ASSET2VEC_OT_library_retrain,
           ASSET2VEC_OT_library_cancel, ASSET2VEC_OT_library_restore, ASSET2VEC_OT_library_refresh,
           ASSET2VEC_PT_library)


def register() -> None:
    bpy.types.WindowManager.asset2vec_library = PointerProperty(type=Asset2VecLibrarySettings)


def unregister() -> None:
    # The session closes the task: it stops following; the backend's job goes on and a later Refresh finds it.
    del bpy.types.WindowManager.asset2vec_library
