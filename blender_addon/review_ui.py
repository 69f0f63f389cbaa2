"""Review Tags in the Asset2Vec sidebar tab: the tag predictions the backend is least sure of, to accept or reject.

Refresh asks the backend for its review queue (``GET /v1/review``) and fetches the assets' thumbnails;
Accept / Reject sends one answer (``POST /v1/review``): the backend stores it as an artist tag (or a
rejection), retrains its tag classifiers and sends back the next questions, so every answer improves
the next predictions. The answers live in the backend's catalogue (they survive re-embedding), not in
the open .blend: the assets asked about are usually in other files.

Every request runs in a worker thread (no bpy there); a ``bpy.app.timers`` step (or :func:`pump` in
tests) picks up the outcome on the main thread, so Blender never freezes while the backend retrains.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import bpy
from bpy.props import BoolProperty, StringProperty

from . import embed_job, preferences
from .client import BackendError, Client
from .panels import _Asset2VecPanel, _message_box

TIMER_INTERVAL = 0.1
#: Questions fetched (and shown) at once.
QUEUE_LIMIT = 8

#: The current questions: ``[{"name", "tag", "probability", "source_file", "asset_name", "thumbnail_url"}]``.
items: list[dict[str, Any]] = []
#: ``(level, message)`` of the last refresh or answer, shown in the panel ("INFO" / "ERROR").
last_status: tuple[str, str] = ("INFO", "")


class ReviewBusy(RuntimeError):
    """A request to the backend is still running."""


class _Request:
    """One call to the backend in a worker thread; :func:`step` applies its outcome on the main thread."""

    def __init__(self, what: str, call: Callable[[], dict[str, Any]]) -> None:
        self.what, self.result, self.error = what, None, None
        self.done = threading.Event()
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(call,), name=f"asset2vec-review-{what}", daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], dict[str, Any]]) -> None:
        try:
            self.result = call()
        except BackendError as e:
            self.error = str(e)
        except Exception as e:  # noqa: BLE001 - a worker thread must report, never die silently
            self.error = f"unexpected error while talking to the backend: {type(e).__name__}: {e}"
        finally:
            self.done.set()


current: _Request | None = None


def busy() -> bool:
    """Whether a refresh or an answer is on its way."""
    return current is not None and not current.done.is_set()


def fetch_queue(url: str, token: str | None, timeout: float, limit: int = QUEUE_LIMIT) -> dict[str, Any]:
    """The backend's review queue plus the questions' thumbnails on disk (any thread, no bpy)."""
    client = Client(url, token, timeout=timeout)
    queue = client.review_queue(limit)
    embed_job.fetch_thumbnails(client, [i["name"] for i in queue.get("items", [])])
    return queue


def send_answer(url: str, token: str | None, timeout: float, name: str, tag: str, accept: bool,
                limit: int = QUEUE_LIMIT) -> dict[str, Any]:
    """Send one answer; returns the backend's reply with the next questions (their thumbnails fetched)."""
    client = Client(url, token, timeout=timeout)
    reply = client.review_answer(name, tag, accept, limit)
    embed_job.fetch_thumbnails(client, [i["name"] for i in reply.get("queue", [])])
    return reply


def start(what: str, call: Callable[[], dict[str, Any]]) -> _Request:
    """Run ``call`` in a worker thread and follow it from a timer. Raises :class:`ReviewBusy`."""
    global current
    if busy():
        raise ReviewBusy("the backend is still answering the last request; wait a moment")
    current = _Request(what, call)
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=TIMER_INTERVAL)
    return current


def step() -> bool:
    """Apply a finished request to :data:`items` / :data:`last_status`; True while one is still running."""
    global current, last_status, items
    req = current
    if req is None:
        return False
    if not req.done.is_set():
        return True
    current = None
    if req.error is not None:
        last_status = ("ERROR", req.error)
        return False
    result = req.result or {}
    if req.what == "answer":
        items = list(result.get("queue", []))
        last_status = ("INFO", str(result.get("message", "answer stored")))
    else:
        items = list(result.get("items", []))
        last_status = ("INFO", str(result.get("message") or ""))
    return False


def pump(timeout: float = 60.0, interval: float = 0.05) -> None:
    """Wait for the running request and apply it (what the timer does; for tests and headless use)."""
    deadline = time.monotonic() + timeout
    while step():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the backend did not answer within {timeout:.0f} s")
        time.sleep(interval)


def _tick() -> float | None:
    running = step()
    embed_job.redraw_sidebar()
    return TIMER_INTERVAL if running else None


class ASSET2VEC_OT_review_refresh(bpy.types.Operator):
    """Ask the backend for the tag predictions it is least sure of"""

    bl_idname = "asset2vec.review_refresh"
    bl_label = "Refresh"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        url, token, timeout = preferences.connection(context)
        try:
            start("refresh", lambda: fetch_queue(url, token, timeout))
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
        try:
            start("answer", lambda: send_answer(url, token, timeout, name, tag, accept))
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
        waiting = busy()
        row = layout.row(align=True)
        row.enabled = not waiting
        row.operator("asset2vec.review_refresh", icon="FILE_REFRESH")
        if waiting:
            what = "retraining on your answer" if current is not None and current.what == "answer" else "asking"
            layout.label(text=f"Backend: {what} ...", icon="TIME")
        level, message = last_status
        if message:
            _message_box(layout, message, "ERROR" if level == "ERROR" else "INFO")
        if not items:
            if not message and not waiting:
                layout.label(text="Refresh to see the tags the model is least sure of")
            return
        for it in items:
            box = layout.box()
            row = box.row()
            icon = embed_job.icon_id(it["name"])
            if icon:
                row.template_icon(icon_value=icon, scale=2.5)
            else:  # no thumbnail (yet): keep the rows aligned
                row.label(text="", icon="IMAGE_DATA")
            col = row.column(align=True)
            col.label(text=f"{it['name']} — {it['tag']} ({it['probability']:.0%})")
            if it.get("learnt") is False:  # a tag too rare to learn yet: asked about assets like its examples
                col.label(text="new tag: like the assets that have it", icon="LIGHT")
            where = bpy.path.basename(it.get("source_file") or "")
            if where:
                col.label(text=where, icon="FILE_BLEND")
            buttons = col.row(align=True)
            buttons.enabled = not waiting
            for accept, text, op_icon in ((True, "Accept", "CHECKMARK"), (False, "Reject", "X")):
                op = buttons.operator("asset2vec.review_answer", text=text, icon=op_icon)
                op.name, op.tag, op.accept = it["name"], it["tag"], accept


classes = (ASSET2VEC_OT_review_refresh, ASSET2VEC_OT_review_answer, ASSET2VEC_PT_review)


def unregister() -> None:
    global current, items, last_status
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    current, items, last_status = None, [], ("INFO", "")  # a running request finishes unseen in its daemon thread
