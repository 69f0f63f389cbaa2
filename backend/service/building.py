"""Building a new model while the current one serves, then switching to it (library homes only).

:meth:`Builder.build` calls the index pipeline (:func:`backend.lifecycle.index.index_library`) with a
progress callback and a cancel event: capture (a library folder), train a new decoder and its instant
encoder, embed, tags, neighbours. The call runs in a child process (``multiprocessing``, spawned), not in
the server's threads: capturing opens .blend files with bpy, which must own a process's main thread, and
training would otherwise hold the server's memory after it ends. Progress events and the summary come
back over a queue as plain data; a cancel sets the child's stop event, which the pipeline checks at its
checkpoints (its work so far is kept). The new model is never activated behind the served one's back:
the pipeline stops before activation and :meth:`~backend.service.served.ServedModel.switch` swaps it in.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import api

from .errors import ServiceError
from .jobs import JobCancelled, ProgressFn

if TYPE_CHECKING:
    from .served import ServedModel

log = logging.getLogger(__name__)

#: A decoder retrained on fewer stored assets than this would be worse than the one serving.
MIN_RETRAIN_ASSETS = 8
#: Share of the job's progress bar for the pipeline (the rest: the switch).
PIPELINE_SHARE = 0.95
#: Seconds between checks of the job's cancel flag (and of the child being alive) while waiting for events.
POLL_S = 0.5


class Builder:
    """Builds models from a library folder (or the home's stored assets) for the served home."""

    def __init__(self, served: ServedModel, ray_address: str | None = None) -> None:
        self.served = served
        #: Build on this Ray cluster (IndexOptions.ray_address; ``serve --ray``), else on this machine only.
        self.ray_address = ray_address

    def build(self, folder: str | None, options: api.IndexRequest | api.TrainRequest, progress: ProgressFn,
              cancel: threading.Event) -> api.BuildResult:
        """Build a new model and switch to it. ``folder``: a library folder on this machine to capture first
        (None: retrain on the assets stored in the home). ``options``: ``steps``, ``minutes``, ``size``, ``samples``."""
        home = self.served.home
        if home is None:
            raise ServiceError("this backend serves a single run (--run); building models needs a library home")
        if folder is None and sum(1 for _ in home.bundles.glob("*/transforms.json")) < MIN_RETRAIN_ASSETS:
            raise ServiceError(f"too few assets to train a model on (fewer than {MIN_RETRAIN_ASSETS} embedded); "
                               "build one from a library folder instead", 409)
        # Always a new model (retrain), never activated by the pipeline: building from a folder while a library
        # model serves must not fit the folder's assets into the served model behind its back.
        kwargs: dict[str, Any] = {"retrain": True, "activate": False, "device": self.served.device or None,
                                  "target_precision": self.served.tag_target,  # None: the served tag model's own
                                  "ray_address": self.ray_address}
        kwargs.update({k: getattr(options, k) for k in ("steps", "minutes", "size", "samples")
                       if getattr(options, k) is not None})
        source = str(Path(folder).expanduser().resolve()) if folder else None

        def on_event(event: dict[str, Any]) -> None:
            eta = f", about {event['eta_s']:.0f} s left" if event.get("eta_s") else ""
            progress(PIPELINE_SHARE * float(event["fraction"]),
                     f"[{event['stage_index']}/{event['stages']}] {event['stage']}: {event['message']}{eta}")

        progress(0.0, "starting")
        summary = run_pipeline(source, str(home.root), kwargs, on_event, cancel)
        progress(0.96, f"switching to model {summary['model_id']}")
        self.served.switch(summary["model_id"], cancel=cancel)
        # Every IndexSummary field (pruned, moved, ...) goes on the wire: api.BuildResult mirrors it (a test ties them).
        # The answer names no server folder (issue 18): the home stays the backend's business.
        return api.BuildResult.from_json({**summary, "home": "", "serving": self.served.state.model_id})


def run_pipeline(folder: str | None, home_root: str, options: dict[str, Any], on_event: Any,
                 cancel: threading.Event) -> dict[str, Any]:
    """``index_library(folder, LibraryHome.at(home_root), IndexOptions(**options))`` in a spawned child process;
    ``on_event(event)`` gets its progress events here, ``cancel`` stops it. Returns the summary as a dict."""
    ctx = multiprocessing.get_context("spawn")  # never fork a threaded server (torch, uvicorn, the job workers)
    events = ctx.Queue()
    stop = ctx.Event()
    child = ctx.Process(target=_pipeline_child, args=(folder, home_root, options, events, stop),
                        name="asset2vec-build", daemon=True)
    child.start()
    try:
        outcome = _follow(child, events, stop, on_event, cancel)
    finally:
        if child.is_alive():
            stop.set()
        child.join(30)
        if child.is_alive():  # it did not stop at a checkpoint in time: it keeps nothing half-written
            child.terminate()
            child.join(5)
        events.close()
    kind, payload, cancelled = outcome
    if cancelled or cancel.is_set():
        raise JobCancelled()
    if kind != "done":
        raise ServiceError(f"building the model failed: {payload}", 500)
    return payload


def _follow(child: Any, events: Any, stop: Any, on_event: Any, cancel: threading.Event) -> tuple[str, Any, bool]:
    """Relay the child's progress until it reports its outcome: ``("done", summary, False)`` or
    ``("error", message, cancelled)``."""
    while True:
        if cancel.is_set():
            stop.set()
        try:
            kind, payload, cancelled = events.get(timeout=POLL_S)
        except queue.Empty:
            if child.is_alive():
                continue
            try:  # the outcome may have arrived just as the child ended
                kind, payload, cancelled = events.get(timeout=POLL_S)
            except queue.Empty:
                return "error", f"the build process ended without a result (exit code {child.exitcode})", False
        if kind == "progress":
            on_event(payload)
            continue
        return kind, payload, cancelled


def _pipeline_child(folder: str | None, home_root: str, options: dict[str, Any], events: Any, stop: Any) -> None:
    """The child process: run the pipeline, sending ``(kind, payload, cancelled)`` tuples to ``events``."""
    from backend.errors import Asset2VecError, Cancelled
    from backend.lifecycle.home import LibraryHome
    from backend.lifecycle.index import IndexOptions, index_library

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s build: %(message)s")
    opts = IndexOptions(**options, on_progress=lambda e: events.put(("progress", e, False)), cancel=stop)
    try:
        summary = index_library(folder, LibraryHome.at(home_root), opts)
    except Asset2VecError as e:
        events.put(("error", str(e), isinstance(e, Cancelled)))
    except Exception as e:  # noqa: BLE001 - reported to the job; the traceback goes to the server's log
        log.exception("building the model failed")
        events.put(("error", f"internal error ({type(e).__name__}: {e}); see the backend's log", False))
    else:
        events.put(("done", summary.as_dict(), False))
    finally:
        events.close()
        events.join_thread()  # flush the outcome before the process exits
