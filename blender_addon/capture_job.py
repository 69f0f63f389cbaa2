"""Capture Views in slices: the button renders the 18 views one per timer step, so Blender never freezes.

A :class:`CaptureJob` is a :class:`~blender_addon.tasks.BackgroundTask` with no worker-thread work: each main-thread
step is one slice of :class:`~blender_addon.capture.Capture` (set up, one view, ``transforms.json``), as Embed
drives it (:mod:`blender_addon.embed_job`); the session's timer steps it, tests call :func:`pump`. The operator
takes the first slice itself, so an asset that cannot be captured (a light, an empty mesh) is reported at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import session as session_mod
from .capture import Capture, CaptureError
from .embed_target import Target
from .protocol import bundle
from .tasks import CANCELLED, DONE, FAILED, BackgroundTask

SLOT = "capture"
#: Seconds between two slices (as Embed's): the artist's input and redraws run in between.
CAPTURE_INTERVAL = 0.01


class CaptureJob(BackgroundTask):
    """The views of one object or collection rendered into ``out``, one slice per step."""

    title = "the capture"

    def __init__(self, target: Any, out: Path, size: int, samples: int) -> None:
        super().__init__(f"capturing {target.name!r}")
        self.name, self.out = target.name, out
        # Held by name, never by ID pointer (an undo or a load may free the ID between steps). The capture finds it
        # again by kind and name at each set-up (not with Target.resolve: a first save mid-capture changes the file
        # path, and the capture goes on; another file opened ends it).
        self.target = Target.of(target)
        self.capture = Capture(target, out, size=size, samples=samples)

    @property
    def step_interval(self) -> float | None:
        return CAPTURE_INTERVAL if self.running and not self.cancel.is_set() else None

    def advance(self) -> bool:
        if self.cancel.is_set():
            return False
        more = self.capture.step()
        self.progress = self.capture.done / self.capture.total
        self.message = f"capturing {self.name!r}: view {self.capture.done}/{self.capture.total}"
        return more

    def complete(self) -> None:
        if self.cancel.is_set():
            self.finish(CANCELLED, f"capture of {self.name!r} cancelled; the views rendered so far stay in {self.out}")
            return
        result = self.capture.bundle
        assert result is not None
        sx, sy, sz = result.asset.size
        self.finish(DONE, f"captured {self.name!r} ({sx:.2f} x {sy:.2f} x {sz:.2f} m) to {self.out}")

    def failure_message(self, e: Exception) -> str:
        if isinstance(e, (CaptureError, bundle.BundleError)):
            return str(e)
        if isinstance(e, OSError):
            reason = e.strerror or str(e) or type(e).__name__
            return f"capture failed: {reason}: {e.filename}" if e.filename else f"capture failed: {reason}"
        return f"unexpected error ({type(e).__name__}: {e})"

    def finished(self) -> None:
        self.capture.close()  # the temporary render scene goes whatever the outcome

    def close(self) -> None:
        """The add-on goes away (unregister): stop and remove the temporary scene now."""
        self.request_cancel()
        self.capture.close()


def current() -> CaptureJob | None:
    return session_mod.get().task(SLOT)


def start(target: Any, out: Path, size: int, samples: int) -> CaptureJob:
    """Start capturing ``target`` and take the first slice. Raises CaptureError (the message for the artist)."""
    session = session_mod.get()
    if session.running(SLOT):
        raise CaptureError(f"already capturing {session.task(SLOT).name!r}: wait for it")
    job = CaptureJob(target, out, size, samples)
    job.on_finish.append(lambda task: session.report(SLOT, task))
    session.start(SLOT, job)
    job.step()
    if job.state == FAILED:
        raise CaptureError(job.message)
    return job


def cancel() -> bool:
    """Cancel the running capture (the views rendered so far stay); False when none runs."""
    job = current()
    return job is not None and job.request_cancel()


def pump(timeout: float = 120.0) -> CaptureJob | None:
    """Step the current capture until it ends (what the timer does; for tests and headless use)."""
    job = current()
    if job is not None:
        job.pump(timeout, CAPTURE_INTERVAL)
    return job
