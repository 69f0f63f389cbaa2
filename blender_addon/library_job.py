"""Build Model from Library, Retrain and Restore from the add-on: the backend does the work, a thread follows it.

The backend builds models itself (``POST /v1/index``: capture, train, embed, tags, neighbours; ``POST /v1/train``
``{"what": "decoder"}``: retrain on every stored asset) and keeps serving the old model until the new one is ready.
The add-on only starts such a job and follows it. A :class:`LibraryTask` owns one worker thread (no bpy) that

- follows a backend job: polls ``GET /v1/jobs/{id}`` every :data:`POLL_S` seconds into :attr:`progress` /
  :attr:`message` (the backend's stage and ETA), forwards a Cancel, tolerates a few failed polls of a busy backend;
- or restores a model (``POST /v1/models/restore``, which loads a model: seconds, so never on Blender's main thread);
- and at the end fetches ``/v1/info`` into :attr:`info`, so the panel shows the model now served.

The panel's timer (:mod:`blender_addon.library_ui`) only reads these fields; tests call :func:`pump`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .client import BackendError, Client

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
FINAL = (DONE, FAILED, CANCELLED)
#: Seconds between two polls of the backend job.
POLL_S = 1.0
#: Consecutive failed polls (a busy or restarting backend) tolerated before the task stops following the job.
MAX_POLL_FAILURES = 5
#: Seconds to wait for the backend to confirm a Cancel (it stops at its next check) before reporting it anyway.
CANCEL_WAIT_S = 60.0
#: What each kind of task is called in messages.
KIND_NAMES = {"index": "building the model from the library", "retrain": "retraining the model",
              "restore": "restoring the model", "follow": "the backend's background job"}


class LibraryTask:
    """One library action in a worker thread.

    ``kind``: ``"index"`` or ``"retrain"`` (a backend job ``job_id`` already started, followed until it ends),
    ``"follow"`` (a background job found running on the backend, e.g. started from the CLI), or ``"restore"``
    (switch back to ``model_id``, None: the previous model). ``client`` is used from the worker thread only.
    """

    def __init__(self, kind: str, client: Client, job_id: str | None = None, model_id: str | None = None) -> None:
        if kind not in KIND_NAMES:
            raise ValueError(f"unknown library task {kind!r}")
        if kind != "restore" and not job_id:
            raise ValueError(f"a {kind!r} task follows a backend job: give its id")
        self.kind, self.client, self.job_id, self.model_id = kind, client, job_id, model_id
        self.url = client.url
        self.state, self.progress, self.message = RUNNING, 0.0, f"{KIND_NAMES[kind]} ..."
        self.info: dict[str, Any] | None = None  # the backend's /info once the task ended (None if unreachable)
        self.cancel = threading.Event()
        self.started = time.monotonic()
        self._wake = threading.Event()  # cuts a poll interval short (Cancel, detach)
        self._detached = False
        self._thread = threading.Thread(target=self._run, name=f"asset2vec-library-{kind}", daemon=True)
        self._thread.start()

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
        """Stop following (add-on unregister) without cancelling the backend's job."""
        self._detached = True
        self._wake.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread; True when it ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- worker thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.kind == "restore":
                self.client.restore_model(self.model_id)
                state, message = DONE, "restored"
            else:
                state, message = self._follow()
        except BackendError as e:
            state, message = FAILED, str(e)
        except Exception as e:  # noqa: BLE001 - a worker thread must always end with a state the panel can show
            state, message = FAILED, f"{self.name} failed unexpectedly: {type(e).__name__}: {e}"
        if state == DONE or self.kind != "restore":
            try:  # the model served now (the new one, or the old one after a failure/cancel)
                self.info = self.client.info()
            except BackendError:
                self.info = None
        served = (self.info or {}).get("model_id")
        if state == DONE:
            message = {"restore": f"restored model {served}",
                       "follow": f"the backend's background job finished: now serving model {served}"}.get(
                self.kind, f"{self.name} finished: now serving model {served}")
        elif state == CANCELLED and not self._detached:
            message = f"cancelled {self.name}" + (f": model {served} keeps serving" if served else "")
        if state == DONE:
            self.progress = 1.0
        self.message = message
        self.state = state  # last: the panel's timer reads info and message once the state is final

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
                except BackendError as e:
                    failures += 1
                    if failures >= MAX_POLL_FAILURES:
                        raise BackendError(f"could not cancel {self.name}: {e}") from None
            try:
                status = self.client.job(self.job_id)
                failures = 0
            except BackendError as e:
                failures += 1
                if failures >= MAX_POLL_FAILURES:
                    raise BackendError(f"lost contact with the backend while {self.name} ({e}); the job may still "
                                       f"run there: press Refresh in the Library Model panel to follow it again"
                                       ) from None
                status = None
            if status is not None:
                state = status.get("status")
                self.progress = min(1.0, max(0.0, float(status.get("progress") or 0.0)))
                if cancel_sent is None or state in FINAL:
                    self.message = str(status.get("message") or self.message)
                if state == DONE:
                    return DONE, self.message
                if state == FAILED:
                    return FAILED, f"{self.name} failed: {status.get('error') or self.message}"
                if state == CANCELLED:
                    return CANCELLED, self.message
            if cancel_sent is not None and time.monotonic() - cancel_sent > CANCEL_WAIT_S:
                return CANCELLED, "cancel sent; the backend has not confirmed it yet"
            self._wake.wait(POLL_S)
            self._wake.clear()
        return CANCELLED, "stopped following the job (it goes on on the backend)"


#: The task the panel shows (one at a time).
current: LibraryTask | None = None


def running() -> bool:
    """Whether a task is going."""
    return current is not None and current.state not in FINAL


def start(kind: str, client: Client, job_id: str | None = None, model_id: str | None = None) -> LibraryTask:
    """Start a :class:`LibraryTask` and make it :data:`current`. Raises BackendError when one already runs."""
    global current
    if running():
        raise BackendError(f"{current.name} is still going: wait for it or press Cancel")  # type: ignore[union-attr]
    current = LibraryTask(kind, client, job_id=job_id, model_id=model_id)
    return current


def cancel() -> bool:
    """Cancel the current task's backend job; False when none runs."""
    return current is not None and current.request_cancel()


def pump(timeout: float = 120.0) -> LibraryTask | None:
    """Wait until the current task ends (tests and headless use; the panel uses a timer instead)."""
    if current is not None and not current.join(timeout):
        raise TimeoutError(f"{current.name} did not finish within {timeout:.0f} s")
    return current


def clear() -> None:
    """Forget the current task (add-on unregister): stop following it; the backend's job goes on."""
    global current
    if current is not None:
        current.detach()
    current = None
