"""The Embed flow without freezing Blender: capture on the main thread, talk to the backend in a thread.

An :class:`EmbedJob` is a small state machine driven by :meth:`EmbedJob.step`, which the add-on
calls from a ``bpy.app.timers`` callback (tests call :func:`pump`, the same steps in a loop):

1. each step captures one asset or one family variant with Cycles (bpy: main thread only) into a
   private temporary folder, zips the bundle and hands it to the worker thread;
2. the worker thread (no bpy) checks the backend, uploads each bundle, waits for its job
   (progress, cancel) and fetches the neighbours' thumbnails into a temporary folder;
3. when the worker is done, a step writes the result into the asset's metadata (main thread,
   :mod:`blender_addon.writeback`), optionally saves with Blender's own save, and finishes.

Cancel (:meth:`EmbedJob.request_cancel`) stops capturing at the next step and cancels the
running backend job. Only one job runs at a time (:data:`current`).

A backend whose model has an instant encoder answers at once (``code_source: "encoder"``) and refines
the code by inversion in a background job (``refine_job``). The job is then done (the asset already has
tags and suggestions), and a :class:`Refinement` waits for the refined answer in its own thread and
writes it into the asset when it comes (main thread, from its own timer); the panel shows "refining".
"""

from __future__ import annotations

import hashlib
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import bpy.utils.previews

from .capture import CaptureError, capture_asset
from .client import BackendError, Cancelled, Client
from .family import FamilyError, applied, discover_parameters, family_name, sample_family
from .protocol import bundle, naming
from .writeback import WritebackError, WriteReport, write_result

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
FINAL = (DONE, FAILED, CANCELLED)
#: Share of the progress bar for capturing (the rest is the backend's inversion).
CAPTURE_SHARE = 0.3
TIMER_INTERVAL = 0.1


class EmbedError(ValueError):
    """The embed cannot start; the message says what to fix."""


@dataclass
class Target:
    """The asset being embedded, held by name (an ID pointer may not survive undo while the job runs)."""

    kind: str  # "OBJECT" or "COLLECTION"
    name: str

    @classmethod
    def of(cls, id_: Any) -> Target:
        return cls("COLLECTION" if isinstance(id_, bpy.types.Collection) else "OBJECT", id_.name, bpy.data.filepath)

    blend: str = ""  # the .blend it lives in ("" when unsaved): another file opened meanwhile has other IDs

    def resolve(self) -> Any:
        """The ID, or None if it was deleted or renamed meanwhile, or another file was opened."""
        if bpy.data.filepath != self.blend:
            return None
        return (bpy.data.collections if self.kind == "COLLECTION" else bpy.data.objects).get(self.name)


@dataclass
class Options:
    """How to capture and write back (from the operator's options and the add-on preferences)."""

    url: str
    token: str | None = None
    timeout: float = 30.0
    size: int = 128
    samples: int = 16
    family: bool = False
    variants: int = 4
    family_mode: str = "grid"
    auto_accept: bool = True
    mark_as_asset: bool = False
    save_after: bool = False


class EmbedJob:
    """One Embed: capture (main thread) → upload and wait (worker thread) → write back (main thread)."""

    def __init__(self, target_id: Any, options: Options) -> None:
        self.target, self.options = Target.of(target_id), options
        self.state, self.progress, self.message = RUNNING, 0.0, f"capturing {self.target.name!r}"
        self.report: WriteReport | None = None
        self.cancel = threading.Event()
        self.started = time.monotonic()
        self._params: list[Any] = []
        self.plan: list[dict[str, Any] | None] = [None]
        if options.family:
            if self.target.kind != "OBJECT":
                raise EmbedError("a parametric family is an object: select the object whose inputs make the variants")
            self._params = discover_parameters(target_id)
            self.plan = list(sample_family(target_id, options.variants, mode=options.family_mode,
                                           params=self._params))
        self._tmp = Path(tempfile.mkdtemp(prefix="asset2vec-embed-"))
        self._next = 0
        self._queue: queue.Queue[tuple[int, str, bytes] | None] = queue.Queue()
        self._queue_closed = False
        self._lock = threading.Lock()
        self._results: dict[int, dict[str, Any]] = {}
        self._backend_fraction = 0.0
        self._error: str | None = None
        self._worker = threading.Thread(target=self._work, name="asset2vec-embed", daemon=True)
        self._worker.start()

    # -- main thread ----------------------------------------------------------------------------

    def step(self) -> bool:
        """Do the next piece of main-thread work; True while the job still runs. Never raises."""
        if self.state in FINAL:
            return False
        try:
            if self._error is not None:
                self.cancel.set()  # stop capturing: the backend side already failed
            if self._next < len(self.plan) and not self.cancel.is_set():
                self._capture_next()
                return True
            if not self._queue_closed:
                self._queue.put(None)
                self._queue_closed = True
            if self._worker.is_alive():
                self._update_progress()
                return True
            if self._error is not None:
                self._finish(FAILED, self._error)
            elif self.cancel.is_set():
                self._finish(CANCELLED, "cancelled: nothing was written to the asset")
            else:
                self._apply()
        except (CaptureError, FamilyError, WritebackError, EmbedError, OSError) as e:
            self.cancel.set()
            self._finish(FAILED, str(e))
        except Exception as e:  # noqa: BLE001 - a timer callback must end the job with a message, not a traceback
            self.cancel.set()
            self._finish(FAILED, f"unexpected error ({type(e).__name__}: {e}); nothing more was written")
        return self.state not in FINAL

    def request_cancel(self) -> None:
        """Stop after the current capture; the backend job (if any) is cancelled."""
        if self.state not in FINAL:
            self.cancel.set()
            self.message = "cancelling..."

    def _capture_next(self) -> None:
        i = self._next
        obj = self.target.resolve()
        if obj is None:
            raise EmbedError(f"{self.target.name!r} was deleted or renamed, or another file was opened, while embedding")
        variant = self.plan[i]
        folder = self._tmp / f"v{i:03d}"
        opts = self.options
        if variant is None:
            self.message = f"capturing {obj.name!r} (18 views)"
            captured = capture_asset(obj, folder, size=opts.size, samples=opts.samples,
                                     name=naming.asset_key(bpy.data.filepath, obj.name))
        else:
            fam = family_name(obj)
            self.message = f"capturing variant {i + 1}/{len(self.plan)} of {fam!r}"
            with applied(obj, variant, self._params):
                captured = capture_asset(obj, folder, size=opts.size, samples=opts.samples,
                                         name=naming.asset_key(bpy.data.filepath, f"{fam}__v{i:03d}"), family=fam,
                                         parameters=variant)
        archive = bundle.write_archive(captured, self._tmp / f"v{i:03d}.zip")
        data = archive.read_bytes()
        shutil.rmtree(folder, ignore_errors=True)
        archive.unlink(missing_ok=True)
        self._next += 1
        self.message = f"sending {captured.asset.name!r} to the backend"
        self._queue.put((i, captured.asset.name, data))
        self._update_progress()

    def _update_progress(self) -> None:
        n = len(self.plan)
        with self._lock:
            done, frac = len(self._results), self._backend_fraction
        self.progress = min(1.0, CAPTURE_SHARE * self._next / n + (1 - CAPTURE_SHARE) * (done + frac) / n)

    def _apply(self) -> None:
        """Write the result(s) into the asset (main thread), save if asked, and finish."""
        obj = self.target.resolve()
        if obj is None:
            raise EmbedError(f"{self.target.name!r} was deleted or renamed, or another file was opened, while embedding: "
                             f"nothing was written")
        opts = self.options
        results = [self._results[i] for i in sorted(self._results)]
        if opts.family:
            result, members = combine_family(results, self.plan)
        else:
            result, members = results[0], None
        self.report = write_result(obj, result, auto_accept=opts.auto_accept, mark_as_asset=opts.mark_as_asset,
                                   family_members=members)
        _undo_push(f"Asset2Vec: embed {obj.name}")
        message = self.report.summary()
        if opts.save_after:
            message += "; " + save_file()
        if any(r.get("refine_job") for r in results):
            start_refinement(Refinement(self.target, opts, dict(self._results), self.plan))
            message += "; instant answer, the backend is refining it"
        self.progress = 1.0
        self._finish(DONE, message)

    def _finish(self, state: str, message: str) -> None:
        self.state, self.message = state, message
        if not self._queue_closed:  # let the worker thread end
            self._queue.put(None)
            self._queue_closed = True
        shutil.rmtree(self._tmp, ignore_errors=True)
        global last_status
        last_status = ("ERROR" if state == FAILED else "INFO", message)

    # -- worker thread (no bpy here) -------------------------------------------------------------

    def _work(self) -> None:
        opts = self.options
        try:
            client = Client(opts.url, opts.token, timeout=opts.timeout)
            client.info()
            while (item := self._queue.get()) is not None:
                if self.cancel.is_set():
                    continue  # drain what was captured; nothing more is uploaded
                i, name, data = item
                self.message = f"embedding {name!r} on the backend"
                result = client.embed(data, progress_cb=self._on_progress, cancel=self.cancel)
                with self._lock:
                    self._results[i] = result
                    self._backend_fraction = 0.0
            if not self.cancel.is_set():
                self.message = "fetching thumbnails of similar assets"
                names = [n["name"] for r in self._results.values() for ns in r.get("neighbours", {}).values()
                         for n in ns]
                fetch_thumbnails(client, names, self.cancel)
        except Cancelled:
            self.cancel.set()
        except BackendError as e:
            self._error = str(e)
        except Exception as e:  # noqa: BLE001 - a worker thread must report, never die silently
            self._error = f"unexpected error while talking to the backend: {type(e).__name__}: {e}"

    def _on_progress(self, fraction: float, message: str) -> None:
        with self._lock:
            self._backend_fraction = float(fraction)
        if message:
            self.message = f"backend: {message}"


class Refinement:
    """The backend refining an embed's instant-encoder code(s); the refined answer replaces the instant one.

    A worker thread (no bpy) waits for each ``refine_job`` and fetches the new neighbours' thumbnails;
    :meth:`step` (main thread, from :func:`_refine_tick`) then writes the refined result into the asset
    like the first answer was written (tags the artist accepted or rejected meanwhile stay as they are).
    """

    def __init__(self, target: Target, options: Options, results: dict[int, dict[str, Any]],
                 plan: list[dict[str, Any] | None]) -> None:
        self.target, self.options, self.plan = target, options, plan
        self.results = dict(results)  # plan index -> answer; refined ones are replaced when they come
        self.jobs = {i: str(r["refine_job"]) for i, r in results.items() if r.get("refine_job")}
        self.state, self.message = RUNNING, f"refining the code of {target.name!r} on the backend"
        self.refined = 0
        self.cancel = threading.Event()
        self._error: str | None = None
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="asset2vec-refine", daemon=True)
        self._worker.start()

    @property
    def key(self) -> tuple[str, str, str]:
        return refinement_key(self.target)

    def _work(self) -> None:
        opts = self.options
        try:
            client = Client(opts.url, opts.token, timeout=opts.timeout)
            for i, job in self.jobs.items():
                result = self._wait(client, job)
                if result is None:
                    return
                if not result.get("dropped"):  # dropped: nothing to refine any more (e.g. the model was switched)
                    with self._lock:
                        self.results[i] = result
                        self.refined += 1
            names = [n["name"] for r in self.results.values() for ns in r.get("neighbours", {}).values() for n in ns]
            fetch_thumbnails(client, names, self.cancel)
        except BackendError as e:
            self._error = str(e)
        except Exception as e:  # noqa: BLE001 - a worker thread must report, never die silently
            self._error = f"unexpected error while waiting for the refinement: {type(e).__name__}: {e}"

    def _wait(self, client: Client, job: str) -> dict[str, Any] | None:
        """The refine job's result; None when we stopped waiting. Never cancels the job: the backend's
        catalogue gets the refined code whether or not this Blender is still there to write it."""
        while not self.cancel.wait(REFINE_POLL):
            status = client.job(job)
            state = status.get("status")
            if state == "done":
                return client.result(job)
            if state == "failed":
                raise BackendError(status.get("error") or status.get("message") or "the refinement failed")
            if state == "cancelled":
                raise BackendError("the refinement was cancelled on the backend")
        return None

    def step(self) -> bool:
        """Write the refined answer once it is there (main thread); True while still waiting. Never raises."""
        if self.state in FINAL:
            return False
        if self._worker.is_alive():
            return True
        try:
            if self.cancel.is_set():
                self._finish(CANCELLED, f"stopped waiting for the refinement of {self.target.name!r}; the instant "
                                        "answer stays")
            elif self._error is not None:
                self._finish(FAILED, f"the refinement of {self.target.name!r} did not come back ({self._error}); "
                                     "the instant answer stays")
            elif not self.refined:
                self._finish(DONE, f"{self.target.name!r}: nothing to refine any more (the backend switched models "
                                   "or the asset was embedded again); the instant answer stays")
            else:
                self._apply()
        except Exception as e:  # noqa: BLE001 - a timer callback must end with a message, not a traceback
            self._finish(FAILED, f"could not write the refined answer ({type(e).__name__}: {e}); the instant answer "
                                 "stays")
        return False

    def _apply(self) -> None:
        obj = self.target.resolve()
        if obj is None:
            self._finish(CANCELLED, f"{self.target.name!r} was deleted or renamed, or another file was opened: the "
                                    "refined answer was not written")
            return
        results = [self.results[i] for i in sorted(self.results)]
        if self.options.family:
            result, members = combine_family(results, self.plan)
        else:
            result, members = results[0], None
        report = write_result(obj, result, auto_accept=self.options.auto_accept, family_members=members)
        _undo_push(f"Asset2Vec: refined {obj.name}")
        psnr = [r["psnr"] for r in results if r.get("psnr") is not None]
        message = f"refined {obj.name!r}" + (f" ({sum(psnr) / len(psnr):.1f} dB)" if psnr else "")
        if report.added:
            message += f"; added tag(s) {', '.join(report.added)}"
        if self.options.save_after:
            message += "; " + save_file()
        self._finish(DONE, message)

    def _finish(self, state: str, message: str) -> None:
        global last_status
        self.state, self.message = state, message
        # Only the status of the latest action is shown; an embed running now keeps its own line.
        if current is None or current.state in FINAL:
            last_status = ("ERROR" if state == FAILED else "INFO", message)


def refinement_key(target: Target) -> tuple[str, str, str]:
    return (target.blend, target.kind, target.name)


#: Refinements still waiting, by asset (a new embed of the same asset replaces its refinement).
refinements: dict[tuple[str, str, str], Refinement] = {}
REFINE_INTERVAL = 0.25
#: Seconds between two status requests while waiting for a refinement.
REFINE_POLL = 0.5


def start_refinement(refinement: Refinement) -> None:
    """Wait for ``refinement`` in the background (replacing an older one of the same asset)."""
    old = refinements.pop(refinement.key, None)
    if old is not None:
        old.cancel.set()
    refinements[refinement.key] = refinement
    if not bpy.app.timers.is_registered(_refine_tick):
        bpy.app.timers.register(_refine_tick, first_interval=REFINE_INTERVAL)


def refinement_of(id_: Any) -> Refinement | None:
    """The refinement still running for asset ``id_`` (object or collection), or None."""
    if id_ is None:
        return None
    r = refinements.get(refinement_key(Target.of(id_)))
    return r if r is not None and r.state == RUNNING else None


def _step_refinements() -> bool:
    """One step of every waiting refinement; True while some still wait."""
    for key, r in list(refinements.items()):
        if not r.step():
            refinements.pop(key, None)
    return bool(refinements)


def _refine_tick() -> float | None:
    running = _step_refinements()
    redraw_sidebar()
    return REFINE_INTERVAL if running else None


def pump_refinements(timeout: float = 120.0, interval: float = 0.05) -> None:
    """Drive the waiting refinements until they are written (what their timer does; for tests and headless use)."""
    deadline = time.monotonic() + timeout
    while _step_refinements():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the refinements did not finish within {timeout:.0f} s")
        time.sleep(interval)


def combine_family(results: list[dict[str, Any]], plan: list[dict[str, Any] | None]) -> tuple[dict[str, Any],
                                                                                                list[dict[str, Any]]]:
    """One result for the family object from its variants' results, plus the member list.

    The family's code is the mean of its variants' codes (shape [32], texture [32]); a tag's
    probability is its mean over the variants; the neighbours are those of the first variant.
    """
    n = len(results)
    first = results[0]
    tags = sorted({t for r in results for t in r.get("predicted_tags", {})})
    combined = {
        **first,
        "name": first.get("name", ""),
        "shape": [sum(r["shape"][k] for r in results) / n for k in range(len(first["shape"]))],
        "texture": [sum(r["texture"][k] for r in results) / n for k in range(len(first["texture"]))],
        "predicted_tags": {t: sum(r.get("predicted_tags", {}).get(t, 0.0) for r in results) / n for t in tags},
    }
    members = [
        {"name": r.get("name", ""), "parameters": p or {}, "code_shape": r.get("shape", []),
         "code_texture": r.get("texture", []), "predicted_tags": r.get("predicted_tags", {}), "psnr": r.get("psnr")}
        for r, p in zip(results, plan, strict=True)
    ]
    return combined, members


def save_file() -> str:
    """Save with Blender's own save (so .blend1 backups and undo behave as usual); returns a status phrase."""
    if not bpy.data.filepath:
        return "not saved: this file has never been saved (save it once, then the data is stored with it)"
    try:
        bpy.ops.wm.save_mainfile()
    except RuntimeError as e:
        return f"saving failed: {e}"
    return f"saved {bpy.path.basename(bpy.data.filepath)}"


def _undo_push(message: str) -> None:
    """Make the write-back one undo step (the timer runs outside any operator)."""
    try:
        bpy.ops.ed.undo_push(message=message)
    except RuntimeError:  # no window (headless): there is no undo stack to push to
        pass


# -- the one running job, its timer, and the status line -------------------------------------------

current: EmbedJob | None = None
#: ``(level, message)`` of the last finished job or check, shown in the panel ("INFO" / "ERROR").
last_status: tuple[str, str] = ("INFO", "")


def start(target_id: Any, options: Options, first_step: bool = True) -> EmbedJob:
    """Start embedding ``target_id`` and drive it from a timer. Raises EmbedError/CaptureError/FamilyError.

    ``first_step``: capture the first asset/variant now, so a capture error reaches the caller
    (the operator's report) instead of only the status line.
    """
    global current
    if current is not None and current.state not in FINAL:
        raise EmbedError(f"already embedding {current.target.name!r}: wait for it or press Cancel")
    job = EmbedJob(target_id, options)
    current = job
    older = refinements.pop(refinement_key(job.target), None)
    if older is not None:  # its answer is about to be outdated by this embed's
        older.cancel.set()
    if first_step:
        job.step()
        if job.state == FAILED:
            raise EmbedError(job.message)
    if job.state not in FINAL and not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=TIMER_INTERVAL)
    return job


def cancel() -> bool:
    """Cancel the running job; False when none runs."""
    if current is None or current.state in FINAL:
        return False
    current.request_cancel()
    return True


def pump(timeout: float = 120.0, interval: float = 0.05) -> EmbedJob | None:
    """Run the current job's steps until it finishes (what the timer does; for tests and headless use)."""
    deadline = time.monotonic() + timeout
    while current is not None and current.step():
        if time.monotonic() > deadline:
            current.request_cancel()
            raise TimeoutError(f"the embed did not finish within {timeout:.0f} s")
        time.sleep(interval)
    return current


def _tick() -> float | None:
    """The ``bpy.app.timers`` callback: one step, redraw the sidebar, come back while running."""
    running = current is not None and current.step()
    redraw_sidebar()
    return TIMER_INTERVAL if running else None


def redraw_sidebar() -> None:
    """Ask Blender to redraw the 3D viewports (the sidebar) and the preferences window."""
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


# -- backend status ----------------------------------------------------------------------------------

#: The last successful ``/info`` answer (``{"url": ..., **info}``), shown in the panel.
backend_info: dict[str, Any] = {}


def check_backend(url: str, token: str | None, timeout: float = 5.0) -> dict[str, Any]:
    """Ask the backend for its info (short timeout); remembers it for the panel. Raises BackendError."""
    global last_status
    try:
        info = Client(url, token, timeout=timeout).info()
    except BackendError as e:
        backend_info.clear()
        last_status = ("ERROR", str(e))
        raise
    backend_info.clear()
    backend_info.update(info, url=url)
    return info


# -- thumbnails of similar assets --------------------------------------------------------------------

_thumb_dir: Path | None = None
_previews: Any = None


def thumbnail_path(name: str) -> Path:
    """Where the PNG thumbnail of catalogued asset ``name`` is kept (a private temporary folder)."""
    global _thumb_dir
    if _thumb_dir is None:
        _thumb_dir = Path(tempfile.mkdtemp(prefix="asset2vec-thumbs-"))
    return _thumb_dir / f"{hashlib.sha1(name.encode()).hexdigest()[:16]}.png"


def fetch_thumbnails(client: Client, names: list[str], cancel: threading.Event | None = None) -> int:
    """Download the thumbnails of ``names`` not yet on disk (any thread, no bpy); returns how many were fetched.

    An asset without a thumbnail is skipped: the panel then shows it without a picture.
    """
    fetched = 0
    for name in dict.fromkeys(names):
        if cancel is not None and cancel.is_set():
            break
        path = thumbnail_path(name)
        if path.is_file():
            continue
        try:
            png = client.thumbnail(name)
        except BackendError:
            continue
        tmp = path.with_suffix(".part")
        tmp.write_bytes(png)
        tmp.replace(path)  # atomic: the panel never loads half a PNG
        fetched += 1
    return fetched


def start_thumbnail_fetch(url: str, token: str | None, names: list[str],
                          done: Callable[[int], None] | None = None) -> threading.Thread:
    """Fetch thumbnails in a background thread (the panel shows each once its file is there)."""

    def run() -> None:
        n = 0
        try:
            n = fetch_thumbnails(Client(url, token), names)
        except BackendError:
            pass
        if done is not None:
            done(n)

    thread = threading.Thread(target=run, name="asset2vec-thumbnails", daemon=True)
    thread.start()
    return thread


def icon_id(name: str) -> int:
    """The preview icon of ``name``'s thumbnail (loaded on first use), or 0 when there is none yet."""
    global _previews
    path = thumbnail_path(name)
    if _previews is None:
        _previews = bpy.utils.previews.new()
    if name not in _previews:
        if not path.is_file():
            return 0
        _previews.load(name, str(path), "IMAGE")
    return _previews[name].icon_id


def clear() -> None:
    """Free previews and stop the timer (add-on unregister)."""
    global _previews, current
    if current is not None:
        current.request_cancel()
    current = None
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    for r in refinements.values():
        r.cancel.set()  # stops waiting; the backend's refinement still replaces the code in its catalogue
    refinements.clear()
    if bpy.app.timers.is_registered(_refine_tick):
        bpy.app.timers.unregister(_refine_tick)
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
