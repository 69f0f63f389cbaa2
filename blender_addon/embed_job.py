"""The Embed flow without freezing Blender: capture on the main thread, talk to the backend in a worker thread.

An :class:`EmbedJob` is a :class:`~blender_addon.tasks.BackgroundTask` stepped from the session's timer (tests
call :func:`pump`, the same steps in a loop):

1. the worker thread (no bpy) first checks the backend (``/info``: not running, wrong version, token refused)
   with a short timeout, so the Embed operator itself never waits on the network;
2. the main-thread steps capture each asset or family variant with Cycles (bpy: main thread only) into a
   private temporary folder, in slices (:class:`~blender_addon.capture.Capture`: set up, one view per step, so
   Blender never freezes for a whole capture), then zip the bundle in memory and hand it to the worker thread;
3. the worker uploads each bundle and waits for its job (progress, cancel);
4. as soon as the backend has answered, a step writes the result into the asset's metadata (main thread,
   :mod:`blender_addon.writeback`), makes its captured thumbnail view the asset's Blender preview
   (:mod:`blender_addon.asset_preview`), optionally saves with Blender's own save, and finishes;
5. the neighbours' thumbnails are downloaded afterwards (:meth:`~blender_addon.session.Session.fetch_thumbnails`):
   the Similar list shows each picture as it comes. The tags never wait for them (a backend may render a
   thumbnail through its decoder first), and a thumbnail that cannot be fetched never fails the embed.

Cancel (:meth:`EmbedJob.request_cancel`) stops capturing at the next step and cancels the running backend job.
One embed runs at a time (the session's ``"embed"`` slot). An answer from an instant encoder (``refine_job``)
hands over to a :class:`~blender_addon.refinement.Refinement` that writes the refined answer when it comes.
"""

from __future__ import annotations

import queue
import shutil
from pathlib import Path
from typing import Any

import bpy

from . import session as session_mod
from . import tempdirs
from .backend_check import CHECK_TIMEOUT
from .capture import Capture, CaptureError
from .embed_target import EmbedError, Options, Target, combine_family, save_file, undo_push, write_answers
from .family import FamilyError, applied, discover_parameters, family_name, sample_family
from .protocol import api, bundle, naming
from .protocol import client as remote
from .refinement import Refinement, pump_refinements, refinement_of
from .tasks import CANCELLED, DONE, FAILED, FINAL, RUNNING, BackgroundTask
from .writeback import WritebackError, WriteReport

#: Share of the progress bar for capturing (the rest is the backend's inversion).
CAPTURE_SHARE = 0.3
#: Seconds between two capture slices: Blender handles the artist's input and redraws in between, and the capture
#: is not stretched by the session's usual pause (18 views x 0.1 s).
CAPTURE_INTERVAL = 0.01
SLOT = "embed"


class EmbedJob(BackgroundTask):
    """One Embed: check the backend and upload (worker thread) while capturing (main thread) → write back."""

    title = "the embed"

    def __init__(self, session: session_mod.Session, target_id: Any, options: Options) -> None:
        target = Target.of(target_id)
        super().__init__(f"capturing {target.name!r}")
        self.session, self.target, self.options = session, target, options
        self.report: WriteReport | None = None
        self.info: api.ServerInfo | None = None  # the backend's /info, once the worker has checked it
        self._info_shown = False
        self.plan: list[dict[str, Any] | None] = [None]
        if options.family:
            if target.kind != "OBJECT":
                raise EmbedError("a parametric family is an object: select the object whose inputs make the variants")
            params = discover_parameters(target_id)  # not kept: they hold ID pointers an undo may free
            self.plan = list(sample_family(target_id, options.variants, mode=options.family_mode,
                                           params=params))
        self._tmp = tempdirs.make("embed")
        self.preview: Path = self._tmp / "preview.png"  # the captured thumbnail view
        self._next = 0
        self._capture: Capture | None = None  # the capture in progress (of plan[self._next])
        self._capture_label = ""
        self._queue: queue.Queue[tuple[int, str, bytes] | None] = queue.Queue()
        self._queue_closed = False
        self._results: dict[int, api.EmbedResult] = {}
        self._backend_fraction = 0.0
        self._client: remote.Client | None = None  # the worker's client (its /info checked), for the thumbnails

    # -- main thread ----------------------------------------------------------------------------

    def advance(self) -> bool:
        """Capture the next asset/variant while there is one; keep the progress and backend line current."""
        if self.info is not None and not self._info_shown:  # the panel shows the model as soon as it is known
            self._info_shown = True
            self.session.set_backend_info(self.info, self.options.url)
        if self.error is not None:
            self.cancel.set()  # stop capturing: the backend side already failed
        if self._next < len(self.plan) and not self.cancel.is_set():
            self._capture_step()
            return True
        self._close_capture()  # cancelled mid-capture: its temporary scene goes now
        self._close_queue()
        self._update_progress()
        return False

    @property
    def step_interval(self) -> float | None:
        """The pause the session's timer makes before the next step: short while capture slices remain."""
        return CAPTURE_INTERVAL if self._next < len(self.plan) and not self.cancel.is_set() else None

    def pump(self, timeout: float = 120.0, interval: float = 0.05) -> EmbedJob:
        """Step until the job ends (tests, headless use), pausing no longer between capture slices than the timer."""
        return super().pump(timeout, min(interval, CAPTURE_INTERVAL))

    def request_cancel(self) -> bool:
        """Stop after the current capture; the backend job (if any) is cancelled."""
        if not super().request_cancel():
            return False
        self.message = "cancelling..."
        return True

    def _capture_step(self) -> None:
        """One slice of the current capture (set up, one view, transforms.json); a finished one is zipped and queued."""
        i = self._next
        obj = self.target.resolve()
        if obj is None:
            raise EmbedError(f"{self.target.name!r} was deleted or renamed, or another file was opened, while embedding")
        if self._capture is None:
            self._capture = self._start_capture(i, obj)
        capture = self._capture
        if capture.step():
            done, label = capture.done, self._capture_label
            self.message = f"{label}: view {done}/{capture.total}" if done else f"{label} ({capture.total} views)"
            self._update_progress()
            return
        captured, self._capture = capture.bundle, None
        assert captured is not None
        if i == 0:  # the asset's Blender preview, set when the answer is written (a family: its first variant)
            self.preview.write_bytes(captured.image_bytes(api.THUMBNAIL_VIEW))
        data = bundle.archive_bytes(captured)  # the upload, zipped in memory: no second copy on disk
        shutil.rmtree(capture.out, ignore_errors=True)
        self._next += 1
        self.message = f"sending {captured.asset.name!r} to the backend"
        self._queue.put((i, captured.asset.name, data))
        self._update_progress()

    def _start_capture(self, i: int, obj: Any) -> Capture:
        """The capture of ``plan[i]``: the asset, or a family variant (its inputs applied only while evaluated)."""
        variant, folder, opts = self.plan[i], self._tmp / f"v{i:03d}", self.options
        if variant is None:
            self.message = self._capture_label = f"capturing {obj.name!r}"
            return Capture(obj, folder, size=opts.size, samples=opts.samples, resolve=self.target.resolve,
                           name=naming.catalogue_name(bpy.data.filepath, obj.name))
        fam = family_name(obj)
        self.message = self._capture_label = f"capturing variant {i + 1}/{len(self.plan)} of {fam!r}"
        return Capture(obj, folder, size=opts.size, samples=opts.samples,
                       name=naming.catalogue_name(bpy.data.filepath, f"{fam}__v{i:03d}"), family=fam,
                       parameters=variant, resolve=self.target.resolve,
                       # The asset found anew at each set-up, its parameters too (theirs hold ID pointers).
                       around_setup=lambda asset: applied(asset, variant))

    def _update_progress(self) -> None:
        n = len(self.plan)
        done, frac = len(self._results), self._backend_fraction
        views = self._capture.done / self._capture.total if self._capture is not None else 0.0
        self.progress = min(1.0, CAPTURE_SHARE * (self._next + views) / n + (1 - CAPTURE_SHARE) * (done + frac) / n)

    def complete(self) -> None:
        """Write the result(s) into the asset (main thread), save if asked, and finish."""
        if self.error is not None:
            if self.info is None:  # the check failed: the panel no longer claims a model
                self.session.set_backend_info(None)
            self.finish(FAILED, self.error)
            return
        if self.cancel.is_set():
            self.finish(CANCELLED, "cancelled: nothing was written to the asset")
            return
        obj = self.target.resolve()
        if obj is None:
            raise EmbedError(f"{self.target.name!r} was deleted or renamed, or another file was opened, while embedding: "
                             f"nothing was written")
        opts = self.options
        self.report = write_answers(obj, self._results, self.plan, opts, f"Asset2Vec: embed {obj.name}",
                                    mark_as_asset=opts.mark_as_asset, preview=self.preview)
        message = self.report.summary()
        saved = ""
        if opts.save_after:
            saved = save_file()
            message += "; " + saved
        if any(r.refine_job for r in self._results.values()):
            refinement = Refinement(self.session, self.target, opts, dict(self._results), self.plan,
                                    backed_up=saved.startswith("saved "))
            self.session.start_refinement(self.target.key, refinement)
            message += "; instant answer, the backend is refining it"
        self.progress = 1.0
        self.finish(DONE, message)
        # After the answer, never before it: the Similar list fills in while the artist already sees the tags.
        names = [n.name for r in self._results.values() for n in r.all_neighbours()]
        if self._client is not None:
            self.session.fetch_thumbnails(self._client, names)

    def failure_message(self, e: Exception) -> str:
        if isinstance(e, (CaptureError, FamilyError, WritebackError, EmbedError, OSError)):
            return str(e)
        return f"unexpected error ({type(e).__name__}: {e}); nothing more was written"

    def _close_queue(self) -> None:
        if not self._queue_closed:  # let the worker thread end
            self._queue.put(None)
            self._queue_closed = True

    def finished(self) -> None:
        self._close_capture()
        self._close_queue()
        tempdirs.remove(self._tmp)

    def close(self) -> None:
        """The add-on goes away (unregister): cancel, and wake a worker waiting for the next capture."""
        self.request_cancel()
        self._close_capture()
        self._close_queue()

    def _close_capture(self) -> None:
        """Remove a capture's temporary scene (cancel, error, unregister: no step will finish it)."""
        if self._capture is not None:
            self._capture.close()
            self._capture = None

    # -- worker thread (no bpy here) -------------------------------------------------------------

    def work(self) -> None:
        opts = self.options
        # The check the operator used to make on the main thread: a short timeout, so a backend that is down or
        # not answering is reported in seconds, not after the upload's timeout.
        self.info = remote.Client(opts.url, opts.token, timeout=min(opts.timeout, CHECK_TIMEOUT)).info()
        client = self._client = remote.Client(opts.url, opts.token, timeout=opts.timeout)
        while (item := self._queue.get()) is not None:
            if self.cancel.is_set():
                continue  # drain what was captured; nothing more is uploaded
            i, name, data = item
            self.message = f"embedding {name!r} on the backend"
            result = client.embed(data, progress_cb=self._on_progress, cancel=self.cancel)
            self._results[i] = result
            self._backend_fraction = 0.0

    def _on_progress(self, fraction: float, message: str) -> None:
        self._backend_fraction = float(fraction)
        if message:
            self.message = f"backend: {message}"


# -- the session's embed slot ----------------------------------------------------------------------------


def current() -> EmbedJob | None:
    """The last Embed of this session (running or finished), or None."""
    return session_mod.get().task(SLOT)


def start(target_id: Any, options: Options, first_step: bool = True) -> EmbedJob:
    """Start embedding ``target_id``, stepped by the session's timer. Raises EmbedError/CaptureError/FamilyError.

    ``first_step``: capture the first asset/variant now, so a capture error reaches the caller (the operator's
    report) instead of only the status line. The backend check runs in the worker meanwhile: never here.
    """
    session = session_mod.get()
    running = session.task(SLOT)
    if running is not None and running.running:
        raise EmbedError(f"already embedding {running.target.name!r}: wait for it or press Cancel")
    job = EmbedJob(session, target_id, options)
    job.on_finish.append(lambda task: session.report(SLOT, task))
    session.drop_refinement(job.target.key)  # its answer is about to be outdated by this embed's
    session.start(SLOT, job)
    if first_step:
        job.step()
        if job.state == FAILED:
            raise EmbedError(job.message)
    return job


def cancel() -> bool:
    """Cancel the running embed; False when none runs."""
    job = session_mod.get().task(SLOT)
    return job is not None and job.request_cancel()


def pump(timeout: float = 120.0) -> EmbedJob | None:
    """Run the current embed's steps until it finishes (what the timer does; for tests and headless use)."""
    return session_mod.get().pump(SLOT, timeout)


__all__ = ["CANCELLED", "DONE", "FAILED", "FINAL", "RUNNING", "EmbedError", "EmbedJob", "Options", "Target",
           "cancel", "combine_family", "current", "pump", "pump_refinements", "refinement_of", "start", "undo_push"]
