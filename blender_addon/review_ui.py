"""Review Tags in the Asset2Vec sidebar tab: the tag predictions the backend is least sure of, to accept or reject.

Refresh asks the backend for its review queue (``GET /v1/review``) and fetches the assets' thumbnails;
Accept / Reject sends one answer (``POST /v1/review``): the backend stores it as an artist tag (or a
rejection), retrains its tag classifiers and sends back the next questions, so every answer improves
the next predictions. The answers live in the backend's catalogue (they survive re-embedding), not in
the open .blend: the assets asked about are usually in other files.

Every request is a :class:`~blender_addon.tasks.CallTask` (a worker thread, no bpy there) in the session's
``"review"`` slot; the session's timer (or :func:`pump` in tests) applies its outcome on the main thread, so
Blender never freezes while the backend retrains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bpy
from bpy.props import BoolProperty, StringProperty

from . import preferences, session
from .errors import AddonError
from .panels import _Asset2VecPanel, _message_box
from .protocol import api
from .protocol import client as remote
from .tasks import DONE, BackgroundTask, CallTask
from .thumbnails import Thumbnails

#: Questions fetched (and shown) at once.
QUEUE_LIMIT = 8
SLOT = "review"


class ReviewBusy(AddonError, RuntimeError):
    """A request to the backend is still running."""


def busy() -> bool:
    """Whether a refresh or an answer is on its way."""
    return session.get().running(SLOT)


def fetch_queue(thumbs: Thumbnails, url: str, token: str | None, timeout: float,
                limit: int = QUEUE_LIMIT) -> api.ReviewQueue:
    """The backend's review queue plus the questions' thumbnails on disk (any thread, no bpy)."""
    client = remote.Client(url, token, timeout=timeout)
    queue = client.review_queue(limit)
    thumbs.fetch(client, [i.name for i in queue.items])
    return queue


def send_answer(thumbs: Thumbnails, url: str, token: str | None, timeout: float, name: str, tag: str, accept: bool,
                limit: int = QUEUE_LIMIT) -> api.ReviewResult:
    """Send one answer; returns the backend's reply with the next questions (their thumbnails fetched)."""
    client = remote.Client(url, token, timeout=timeout)
    reply = client.review_answer(name, tag, accept, limit)
    thumbs.fetch(client, [i.name for i in reply.queue])
    return reply


def start(what: str, call: Callable[[], api.ReviewQueue | api.ReviewResult]) -> CallTask:
    """Run ``call`` in a worker thread, stepped by the session's timer. Raises :class:`ReviewBusy`."""
    sess = session.get()
    if busy():
        raise ReviewBusy("the backend is still answering the last request; wait a moment")
    task = CallTask(what, call)
    task.on_finish.append(lambda t: _apply(sess, t))
    return sess.start(SLOT, task)


def _apply(sess: session.Session, task: BackgroundTask) -> None:
    """Main thread: a finished request's outcome becomes the questions and the status line."""
    assert isinstance(task, CallTask)
    if task.state != DONE:
        sess.set_status(SLOT, "ERROR", task.message)
        return
    result = task.result
    if isinstance(result, api.ReviewResult):
        sess.review_items = list(result.queue)
        sess.set_status(SLOT, "INFO", result.message or "answer stored")
    elif isinstance(result, api.ReviewQueue):
        sess.review_items = list(result.items)
        sess.set_status(SLOT, "INFO", result.message)


def pump(timeout: float = 60.0) -> None:
    """Wait for the running request and apply it (what the timer does; for tests and headless use)."""
    session.get().pump(SLOT, timeout)


class ASSET2VEC_OT_review_refresh(bpy.types.Operator):
    """Ask the backend for the tag predictions it is least sure of"""

    bl_idname = "asset2vec.review_refresh"
    bl_label = "Refresh"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        url, token, timeout = preferences.connection(context)
        try:
            thumbs = session.get().thumbnails
            start("refresh", lambda: fetch_queue(thumbs, url, token, timeout))
        except ReviewBusy as e:
            self.report({"WARNING"}, f"Asset2Vec: {e}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Asset2Vec: asking {url} for tags to review ...")
        return {"FINISHED"}


class ASSET2VEC_OT_review_answer(bpy.types.Operator):
    """Answer this question: the backend stores it as the asset's tag (or a rejection) and retrains its tags"""

    bl_idname = "asset2vec.review_answer"
    bl_label = "Answer"
    bl_options = {"REGISTER", "INTERNAL"}

    name: StringProperty(name="Asset")  # type: ignore[valid-type]
    tag: StringProperty(name="Tag")  # type: ignore[valid-type]
    accept: BoolProperty(name="Accept", default=True)  # type: ignore[valid-type]

    @classmethod
    def description(cls, context: Any, properties: Any) -> str:
        verb = "Add" if properties.accept else "Reject"
        return f"{verb} the tag '{properties.tag}' for {properties.name}; the backend retrains its tag classifiers"

    def execute(self, context: Any) -> set[str]:
        if not self.name or not self.tag:
            self.report({"ERROR"}, "Asset2Vec: refresh the review queue first (no question was chosen)")
            return {"CANCELLED"}
        url, token, timeout = preferences.connection(context)
        name, tag, accept = self.name, self.tag, self.accept
        thumbs = session.get().thumbnails
        try:
            start("answer", lambda: send_answer(thumbs, url, token, timeout, name, tag, accept))
        except ReviewBusy as e:
            self.report({"WARNING"}, f"Asset2Vec: {e}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Asset2Vec: {'accepting' if accept else 'rejecting'} '{tag}' for {name} ...")
        return {"FINISHED"}


class ASSET2VEC_PT_review(_Asset2VecPanel, bpy.types.Panel):
    """The backend's least sure tag predictions, with Accept / Reject per question."""

    bl_idname = "ASSET2VEC_PT_review"
    bl_label = "Review Tags"
    bl_parent_id = "ASSET2VEC_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: Any) -> None:
        layout = self.layout
        sess = session.get()
        waiting = busy()
        row = layout.row(align=True)
        row.enabled = not waiting
        row.operator("asset2vec.review_refresh", icon="FILE_REFRESH")
        if waiting:
            task = sess.task(SLOT)
            what = "retraining on your answer" if getattr(task, "what", "") == "answer" else "asking"
            layout.label(text=f"Backend: {what} ...", icon="TIME")
        level, message = sess.status[SLOT]
        items = sess.review_items
        if message:
            _message_box(layout, message, "ERROR" if level == "ERROR" else "INFO")
        if not items:
            if not message and not waiting:
                layout.label(text="Refresh to see the tags the model is least sure of")
            return
        for it in items:
            box = layout.box()
            row = box.row()
            icon = sess.thumbnails.icon_id(it.name)
            if icon:
                row.template_icon(icon_value=icon, scale=2.5)
            else:  # no thumbnail (yet): keep the rows aligned
                row.label(text="", icon="IMAGE_DATA")
            col = row.column(align=True)
            col.label(text=f"{it.name} — {it.tag} ({it.probability:.0%})")
            if not it.learnt:  # a tag too rare to learn yet: asked about assets like its examples
                col.label(text="new tag: like the assets that have it", icon="LIGHT")
            where = bpy.path.basename(it.source_file)
            if where:
                col.label(text=where, icon="FILE_BLEND")
            buttons = col.row(align=True)
            buttons.enabled = not waiting
            for accept, text, op_icon in ((True, "Accept", "CHECKMARK"), (False, "Reject", "X")):
                op = buttons.operator("asset2vec.review_answer", text=text, icon=op_icon)
                op.name, op.tag, op.accept = it.name, it.tag, accept


classes = (ASSET2VEC_OT_review_refresh, ASSET2VEC_OT_review_answer, ASSET2VEC_PT_review)
