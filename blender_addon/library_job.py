"""Build Model from Library, Retrain and Restore from the add-on: the backend does the work, a thread follows it.

The backend builds models itself (``POST /v1/index``: capture, train, embed, tags, neighbours; ``POST /v1/train``
``{"what": "decoder"}``: retrain on every stored asset) and keeps serving the old model until the new one is ready.
The add-on only starts such a job and follows it. A :class:`LibraryTask` is a
:class:`~blender_addon.tasks.BackgroundTask` whose worker thread (no bpy)

- starts the backend job (Build, Retrain) so Blender never waits for the request;
- follows a backend job: polls ``GET /v1/jobs/{id}`` every :data:`POLL_S` seconds into :attr:`progress` /
  :attr:`message` (the backend's stage and ETA), forwards a Cancel, tolerates a few failed polls of a busy backend;
- or restores a model (``POST /v1/models/restore``, which loads a model: seconds, so never on Blender's main thread);
- and at the end fetches ``/v1/info`` into :attr:`info`, so the panel shows the model now served.

The session's timer steps it; :mod:`blender_addon.library_ui` shows its outcome. This module has no bpy.
"""

from __future__ import annotations

import threading
import time

from .protocol import api
from .protocol import client as remote
from .tasks import CANCELLED, DONE, FAILED, FINAL, RUNNING, BackgroundTask

#: Seconds between two polls of the backend job.
POLL_S = 1.0
#: Consecutive failed polls (a busy or restarting backend) tolerated before the task stops following the job.
MAX_POLL_FAILURES = 5
#: Seconds to wait for the backend to confirm a Cancel (it stops at its next check) before reporting it anyway.
CANCEL_WAIT_S = 60.0
#: What each kind of task is called in messages.
KIND_NAMES = {"index": "building the model from the library", "retrain": "retraining the model",
              "restore": "restoring the model", "follow": "the backend's background job"}


class LibraryTask(BackgroundTask):
    """One library action in a worker thread.

    ``kind``: ``"index"`` (start building from ``folder``, or follow the already started ``job_id``), ``"retrain"``
    (start retraining, or follow ``job_id``), ``"follow"`` (a background job found running on the backend, e.g.
    started from the CLI), or ``"restore"`` (switch back to ``model_id``, None: the previous model). ``client`` is
    used from the worker thread only.
    """

    cancel_on_timeout = False

    def __init__(self, kind: str, client: remote.Client, job_id: str | None = None, model_id: str | None = None,
                 folder: str | None = None) -> None:
        if kind not in KIND_NAMES:
            raise ValueError(f"unknown library task {kind!r}")
        if kind == "follow" and not job_id:
            raise ValueError("a 'follow' task follows a backend job: give its id")
        if kind == "index" and not (job_id or folder):
            raise ValueError("an 'index' task needs the library folder (or the id of the job already started)")
        super().__init__(f"{KIND_NAMES[kind]} ...")
        self.kind, self.client, self.job_id, self.model_id, self.folder = kind, client, job_id, model_id, folder
        self.url = client.url
        self.title = KIND_NAMES[kind]
        self.info: api.ServerInfo | None = None  # the backend's /info once the task ended (None if unreachable)
        self._wake = threading.Event()  # cuts a poll interval short (Cancel, detach)
        self._detached = False
        self._outcome: tuple[str, str] | None = None

    @property
    def name(self) -> str:
        return KIND_NAMES[self.kind]

    def request_cancel(self) -> bool:
        """Cancel the backend job (the old model keeps serving); False when there is nothing to cancel."""
        if self.state in FINAL or self.kind == "restore":
            return False
        self.cancel.set()
        self._wake.set()
        return True

    def detach(self) -> None:
        """Stop following without cancelling the backend's job."""
        self._detached = True
        self._wake.set()

    def close(self) -> None:
        self.detach()  # add-on unregister: the backend's job goes on and a later Refresh finds it again

    # -- main thread --------------------------------------------------------------------------------

    def complete(self) -> None:
        state, message = self._outcome or (FAILED, self.error or f"{self.name} ended without an outcome")
        if state == DONE:
            self.progress = 1.0
        self.finish(state, message)

    # -- worker thread ----------------------------------------------------------------------------

    def work(self) -> None:
        try:
            if self.kind == "restore":
                self.client.restore_model(self.model_id)
                state, message = DONE, "restored"
            else:
                if self.job_id is None:  # start the backend job here, not on Blender's main thread
                    self.job_id = (self.client.start_index(self.folder) if self.kind == "index"
                                   else self.client.start_retrain())
                state, message = self._follow()
        except remote.BackendError as e:
            state, message = FAILED, str(e)
        except Exception as e:  # noqa: BLE001 - a worker thread must always end with a state the panel can show
            state, message = FAILED, f"{self.name} failed unexpectedly: {type(e).__name__}: {e}"
        if state == DONE or self.kind != "restore":
            try:  # the model served now (the new one, or the old one after a failure/cancel)
                self.info = self.client.info()
            except remote.BackendError:
                self.info = None
        served = self.info.model_id if self.info is not None else None
        if state == DONE:
            message = {"restore": f"restored model {served}",
                       "follow": f"the backend's background job finished: now serving model {served}"}.get(
                self.kind, f"{self.name} finished: now serving model {served}")
        elif state == CANCELLED and not self._detached:
            message = f"cancelled {self.name}" + (f": model {served} keeps serving" if served else "")
        self.message = message
        self._outcome = (state, message)  # last: the main thread applies it once the worker has ended

    def _follow(self) -> tuple[str, str]:
        """Poll the backend job until it ends; returns ``(state, message)``."""
        assert self.job_id is not None
        failures = 0
        cancel_sent: float | None = None
        while not self._detached:
            if self.cancel.is_set() and cancel_sent is None:
                try:
                    self.client.cancel_job(self.job_id)
                    cancel_sent = time.monotonic()
                    self.message = "cancelling: the current model keeps serving ..."
                except remote.BackendError as e:
                    failures += 1
                    if failures >= MAX_POLL_FAILURES:
                        raise remote.BackendError(f"could not cancel {self.name}: {e}") from None
            try:
                status = self.client.job(self.job_id)
                failures = 0
            except remote.BackendError as e:
                failures += 1
                if failures >= MAX_POLL_FAILURES:
                    raise remote.BackendError(f"lost contact with the backend while {self.name} ({e}); the job may still "
                                       f"run there: press Refresh in the Library Model panel to follow it again"
                                       ) from None
                status = None
            if status is not None:
                state = status.status
                self.progress = min(1.0, max(0.0, status.progress))
                if cancel_sent is None or status.final:
                    self.message = status.message or self.message
                if state == api.DONE:
                    return DONE, self.message
                if state == api.FAILED:
                    return FAILED, f"{self.name} failed: {status.error or self.message}"
                if state == api.CANCELLED:
                    return CANCELLED, self.message
            if cancel_sent is not None and time.monotonic() - cancel_sent > CANCEL_WAIT_S:
                return CANCELLED, "cancel sent; the backend has not confirmed it yet"
            self._wake.wait(POLL_S)
            self._wake.clear()
        return CANCELLED, "stopped following the job (it goes on on the backend)"


__all__ = ["CANCELLED", "DONE", "FAILED", "FINAL", "KIND_NAMES", "RUNNING", "LibraryTask"]
